//! What a run measures: per-message delivery records, samples of the neighbor graph over time,
//! counters summed over every node, a hash of the run's trace, and the report built from them.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};

use peerchannel_core::{CloseReason, MessageId, Stats};
use serde::{Deserialize, Serialize};

/// A node that never joined or never died.
pub const NEVER: u64 = u64::MAX;

/// Hashes message IDs by their first eight bytes: they are random already, and the map is never
/// iterated, so this cannot affect determinism.
#[derive(Clone, Copy, Default)]
pub(crate) struct IdHash;

/// The hasher of [`IdHash`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(b)).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// A running 64-bit hash of a sequence of words (FxHash-style mixing). Cheap enough to feed
/// with every output of every node.
#[derive(Clone, Copy, Debug)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xCBF2_9CE4_8422_2325)
    }
}

impl TraceHash {
    /// Mixes in one word.
    #[inline]
    pub fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517C_C1B7_2722_0A95);
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// One delivery of one message.
#[derive(Clone, Copy, Debug)]
struct Delivery {
    node: u32,
    /// Nanoseconds after the send.
    latency: u64,
    hops: u8,
}

#[derive(Debug)]
struct MessageRecord {
    origin: u32,
    sent: u64,
    deliveries: Vec<Delivery>,
}

/// A node's membership, for deciding whether it counts toward a message's reliability.
#[derive(Clone, Copy, Debug)]
pub struct Lifetime {
    /// When it first had a neighbor ([`NEVER`] if it never did).
    pub joined: u64,
    /// When it crashed or left ([`NEVER`] if alive at the end).
    pub died: u64,
}

/// The neighbor graph and the population at one instant.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    /// Seconds of simulated time.
    pub t: f64,
    /// Nodes alive and open.
    pub alive: usize,
    /// Of those, nodes that have joined (had a neighbor at least once).
    pub joined: usize,
    /// Connected components of the neighbor graph among joined nodes.
    pub components: usize,
    /// Nodes in the largest component.
    pub largest_component: usize,
    /// Nodes in the second largest component (0 if there is one).
    pub second_component: usize,
    /// Joined nodes with no neighbor (each its own component).
    pub isolated: usize,
    /// Smallest degree among joined nodes.
    pub degree_min: usize,
    /// Largest degree among alive nodes.
    pub degree_max: usize,
    /// Mean degree among joined nodes.
    pub degree_mean: f64,
    /// Joined nodes with fewer than `min_neighbors` neighbors.
    pub below_min: usize,
}

/// A time a joined node spent below `min_neighbors`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dip {
    /// Start, seconds.
    pub t: f64,
    /// The node's dense index.
    pub node: u32,
    /// How long, seconds.
    pub secs: f64,
    /// It started when the node joined with fewer than `min` neighbors (growing, not a loss).
    pub joining: bool,
}

/// Dips below `min_neighbors` as they end.
#[derive(Clone, Debug, Default)]
pub struct Dips {
    list: Vec<Dip>,
    count: usize,
    after_join: usize,
    longest: f64,
    longest_after_join: f64,
}

impl Dips {
    /// Records one ended dip (the first 10,000 are kept in full).
    pub fn push(&mut self, d: Dip) {
        self.count += 1;
        self.longest = self.longest.max(d.secs);
        if !d.joining {
            self.after_join += 1;
            self.longest_after_join = self.longest_after_join.max(d.secs);
        }
        if self.list.len() < 10_000 {
            self.list.push(d);
        }
    }

    /// The summary, given the dips still open (their lengths so far).
    pub fn summary(&self, open: impl Iterator<Item = f64>) -> DipSummary {
        let open: Vec<f64> = open.collect();
        DipSummary {
            count: self.count,
            after_join: self.after_join,
            longest_s: self.longest,
            longest_after_join_s: self.longest_after_join,
            open_at_end: open.len(),
            longest_open_s: open.iter().copied().fold(0.0, f64::max),
            list: self.list.clone(),
        }
    }
}

/// How often and how long joined nodes had fewer than `min_neighbors` neighbors.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DipSummary {
    /// Dips that ended.
    pub count: usize,
    /// Of those, dips of nodes that had reached `min` before (losses, not joins).
    pub after_join: usize,
    /// Longest ended dip, seconds.
    pub longest_s: f64,
    /// Longest ended dip after reaching `min`, seconds.
    pub longest_after_join_s: f64,
    /// Nodes below `min` at the end.
    pub open_at_end: usize,
    /// Longest of those so far, seconds.
    pub longest_open_s: f64,
    /// The dips (first 10,000).
    pub list: Vec<Dip>,
}

/// Counters summed over every node of the run (crashed and departed ones included).
///
/// With transport security, `bytes_sent` is what went on the wire: TLS records, handshakes and
/// alerts included. `control_bytes` always counts control frames before encryption (the core
/// encrypts control frames and floods together in one record stream, so their ciphertext
/// cannot be told apart), so `flood_bytes` then also holds the TLS overhead.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Traffic {
    /// Bytes handed to the network by all nodes (with TLS: ciphertext, handshakes included).
    pub bytes_sent: u64,
    /// Bytes of control frames (everything but floods), before any encryption. In
    /// `transport+message` mode this includes the Credential frames that introduce signers.
    pub control_bytes: u64,
    /// `bytes_sent − control_bytes`: flood frames (signatures included), plus with TLS the
    /// handshakes and record overhead of every frame.
    pub flood_bytes: u64,
    /// Payload bytes in flood copies received.
    pub payload_bytes_received: u64,
    /// Flood copies received (first copies and duplicates).
    pub flood_copies_received: u64,
    /// First copies.
    pub flood_first_copies: u64,
    /// Duplicate copies dropped.
    pub duplicates: u64,
    /// Floods sent by publishers.
    pub floods_sent: u64,
    /// Dials made.
    pub dials: u64,
    /// Dials that did not produce a neighbor.
    pub dial_failures: u64,
    /// Resolver requests.
    pub resolves: u64,
    /// Neighbors lost, by reason.
    pub neighbors_down: BTreeMap<String, u64>,
    /// Publishes the core refused (Busy, not open).
    pub send_refused: u64,
    /// Peers that failed authentication (wrong password, missing or bad proof).
    pub auth_failures: u64,
    /// Signed floods whose signature verified (first copies only).
    pub signatures_verified: u64,
    /// Signed floods dropped because their signature did not verify.
    pub invalid_signatures: u64,
    /// Signed floods not sent on a link because their origin's credential was forgotten.
    pub floods_unintroduced: u64,
}

impl Traffic {
    /// Adds one node's counters.
    pub fn add(&mut self, s: &Stats) {
        self.bytes_sent += s.bytes_sent;
        self.control_bytes += s.control_bytes_sent;
        self.payload_bytes_received += s.payload_bytes_received;
        self.flood_copies_received += s.floods_received;
        self.flood_first_copies += s.floods_first;
        self.duplicates += s.duplicates;
        self.floods_sent += s.floods_sent;
        self.dials += s.dials;
        self.dial_failures += s.dial_failures;
        self.resolves += s.resolves;
        self.auth_failures += s.auth_failures;
        self.signatures_verified += s.signatures_verified;
        self.invalid_signatures += s.invalid_signatures;
        self.floods_unintroduced += s.floods_unintroduced;
        for r in CloseReason::ALL {
            let n = s.neighbors_down_for(r);
            if n > 0 {
                *self.neighbors_down.entry(format!("{r:?}")).or_default() += n;
            }
        }
        self.flood_bytes = self.bytes_sent.saturating_sub(self.control_bytes);
    }
}

/// Delivery latency percentiles, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest delivery.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of sorted nanosecond figures (all 0 for none).
    fn of_sorted(sorted: &[u64]) -> Latency {
        let pct = |p: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() - 1) as f64 * p).round() as usize;
            ms(sorted[i.min(sorted.len() - 1)])
        };
        Latency { p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: pct(1.0) }
    }
}

/// One scored message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MessageReport {
    /// Send time, seconds.
    pub t: f64,
    /// Nodes that counted (joined before the send, alive through the window, not the origin).
    pub eligible: usize,
    /// Of those, how many got it within the window.
    pub delivered: usize,
    /// `delivered / eligible` (1.0 when nobody was eligible).
    pub reliability: f64,
    /// Hops of the last delivery to a member (a node joined by the send).
    pub last_hop: u8,
    /// Slowest delivery to a member, ms.
    pub latency_max_ms: f64,
}

/// An eligible node that did not get a message within its window (the first 1000 are kept).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Miss {
    /// Send time of the message, seconds.
    pub t: f64,
    /// The node's dense index in the run.
    pub node: u32,
    /// When the node joined, seconds.
    pub joined: f64,
    /// When it got the message anyway (after the window), seconds after the send.
    pub late_by: Option<f64>,
}

/// Messages sent in one phase of the scenario (between two disruptions).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PhaseReport {
    /// What the phase is ("before any failure", "after failure 1: 50% of the live nodes crash", ...).
    pub label: String,
    /// Start, seconds.
    pub from: f64,
    /// End, seconds.
    pub to: f64,
    /// Scored messages in it.
    pub messages: usize,
    /// Mean reliability.
    pub reliability_mean: f64,
    /// Worst message.
    pub reliability_min: f64,
    /// Messages that reached every eligible node.
    pub perfect: usize,
}

/// Totals over all scored messages.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeliverySummary {
    /// Messages sent.
    pub sent: usize,
    /// Messages whose window ended within the run.
    pub scored: usize,
    /// Mean reliability of scored messages.
    pub reliability_mean: f64,
    /// Worst scored message.
    pub reliability_min: f64,
    /// Scored messages that reached every eligible node.
    pub perfect: usize,
    /// Relative message redundancy: flood copies received / first copies − 1 (over all
    /// messages; per message it is copies / (nodes − 1) − 1).
    pub rmr: f64,
    /// Mean last delivery hop.
    pub last_hop_mean: f64,
    /// Largest last delivery hop.
    pub last_hop_max: u8,
    /// Delivery latency over the deliveries of scored messages to their members: nodes that
    /// had joined by the send, whether or not they lived through the window.
    pub latency: Latency,
    /// Deliveries of scored messages to nodes that joined after the send (the recovery hands a
    /// newcomer the floods of the last `recovery_window`); kept out of `latency` and the last
    /// delivery hop, which are about the flood.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// Floods a node got although it joined after they were sent: the recovery's catch-up.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CatchUp {
    /// Such deliveries (within the scoring window).
    pub deliveries: usize,
    /// How long after joining they arrived: percentiles in ms (all 0 when there were none).
    pub after_join: Latency,
}

/// Everything measured in a run except wall-clock speed; two runs with the same scenario and
/// seed produce equal reports.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// The security mode and credentials every node ran with ("none", or e.g.
    /// "transport+message (mesh password, PBKDF2 1000 iterations)"); never the password.
    pub security: String,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Nodes created (initial + replacements).
    pub nodes_created: usize,
    /// Nodes alive at the end.
    pub nodes_alive: usize,
    /// Crashes.
    pub crashes: usize,
    /// Graceful leaves.
    pub leaves: usize,
    /// Delivery summary.
    pub delivery: DeliverySummary,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
    /// Per scored message.
    pub messages: Vec<MessageReport>,
    /// Eligible nodes that missed a message (first 1000).
    pub misses: Vec<Miss>,
    /// The graph over time.
    pub samples: Vec<Sample>,
    /// Time joined nodes spent below `min_neighbors`.
    pub dips: DipSummary,
    /// Degree histogram of alive joined nodes at the end (index = degree).
    pub degree_histogram: Vec<usize>,
    /// Sorted delivery latencies to members (as `delivery.latency`) for the CDF plot, in ms,
    /// thinned to at most 2000 points.
    pub latency_cdf_ms: Vec<f64>,
    /// Byte and frame counters.
    pub traffic: Traffic,
    /// Events processed (popped from the queue).
    pub events: u64,
    /// Of those, timer entries skipped because their node had re-armed its deadline since.
    pub stale_timer_events: u64,
    /// The events by kind.
    #[serde(default)]
    pub event_kinds: EventKinds,
    /// Hash of every output of every node (with its time and node).
    pub trace_hash: String,
    /// Hash of every delivery (node, message, time).
    pub delivery_hash: String,
}

/// Wall-clock figures of a run; they differ between runs and machines.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Speed {
    /// Wall seconds.
    pub wall_s: f64,
    /// Events per wall second.
    pub events_per_s: f64,
    /// Simulated seconds per wall second.
    pub sim_s_per_wall_s: f64,
    /// Peak resident memory of the process (VmHWM), MiB; `None` where /proc is missing.
    pub peak_rss_mib: Option<f64>,
    /// Whether the run asked glibc's malloc for transparent huge pages (the binary's default;
    /// see its `--no-huge-pages`).
    #[serde(default)]
    pub huge_pages: bool,
    /// Memory in transparent huge pages at the end of the run (AnonHugePages), MiB; `None`
    /// where /proc is missing.
    #[serde(default)]
    pub huge_pages_mib: Option<f64>,
    /// The same figures from the first publish on (`None` when nothing is published, or
    /// publishing starts at 0): the rate the engine sustains under traffic, apart from the
    /// mesh's formation, whose events (handshakes, timers) are several times cheaper.
    #[serde(default)]
    pub under_traffic: Option<SpeedWindow>,
}

/// Wall-clock figures of a part of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SpeedWindow {
    /// Simulated time the part starts at, in seconds.
    pub from_s: f64,
    /// Events processed in it.
    pub events: u64,
    /// Wall seconds it took.
    pub wall_s: f64,
    /// Events per wall second.
    pub events_per_s: f64,
    /// Its events by kind.
    #[serde(default)]
    pub kinds: EventKinds,
}

/// Events processed, by kind: what a rate in events per second is made of.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventKinds {
    /// Node deadlines (stale entries included).
    pub timers: u64,
    /// Writes that arrive as two buffers: nearly always a relay's flood, its forward head and
    /// the body it received; now and then two frames that were queued together.
    pub two_buffer_writes: u64,
    /// Writes that arrive as one buffer: an origin's flood, control frames, joined writes.
    pub one_buffer_writes: u64,
    /// Everything else: dials, ends of stream, resolver answers, uplink wake-ups, spawns,
    /// publishes, churn, failures, partitions, samples.
    pub other: u64,
}

impl EventKinds {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.timers + self.two_buffer_writes + self.one_buffer_writes + self.other
    }

    /// The counts since `earlier`.
    pub fn since(&self, earlier: &EventKinds) -> EventKinds {
        EventKinds {
            timers: self.timers - earlier.timers,
            two_buffer_writes: self.two_buffer_writes - earlier.two_buffer_writes,
            one_buffer_writes: self.one_buffer_writes - earlier.one_buffer_writes,
            other: self.other - earlier.other,
        }
    }
}

/// Peak resident set size of this process in MiB, from `/proc/self/status` (Linux).
pub fn peak_rss_mib() -> Option<f64> {
    proc_kib("/proc/self/status", "VmHWM:").map(|kb| kb / 1024.0)
}

/// This process's anonymous memory in transparent huge pages now, MiB, from
/// `/proc/self/smaps_rollup` (Linux).
pub fn huge_pages_mib() -> Option<f64> {
    proc_kib("/proc/self/smaps_rollup", "AnonHugePages:").map(|kb| kb / 1024.0)
}

/// The kB figure of the line starting with `key` in a /proc file.
fn proc_kib(file: &str, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(file).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Records deliveries as the run goes.
#[derive(Debug, Default)]
pub struct Recorder {
    messages: Vec<MessageRecord>,
    index: hashbrown::HashMap<MessageId, u32, IdHash>,
    /// Hash of every output.
    pub trace: TraceHash,
    /// Hash of every delivery.
    pub deliveries: TraceHash,
}

impl std::fmt::Debug for IdHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdHash")
    }
}

/// The scores of a run's messages.
#[derive(Debug)]
pub struct Scored {
    /// Totals.
    pub summary: DeliverySummary,
    /// Per phase.
    pub phases: Vec<PhaseReport>,
    /// Per message.
    pub messages: Vec<MessageReport>,
    /// Thinned sorted latencies.
    pub latency_cdf_ms: Vec<f64>,
    /// Eligible nodes that missed a message.
    pub misses: Vec<Miss>,
}

/// The boundaries of the scenario's phases: (start, label).
pub type Phases = Vec<(u64, String)>;

impl Recorder {
    /// A message was sent by `origin` at `at`.
    pub fn sent(&mut self, id: MessageId, origin: u32, at: u64) {
        let i = self.messages.len() as u32;
        self.messages.push(MessageRecord { origin, sent: at, deliveries: Vec::new() });
        self.index.insert(id, i);
    }

    /// `node` delivered message `id` at `at`, `hops` away from its origin.
    pub fn delivered(&mut self, node: u32, id: MessageId, at: u64, hops: u8) {
        self.deliveries.mix(u64::from(node));
        self.deliveries.mix(u64::from_le_bytes(id.0[..8].try_into().unwrap_or_default()));
        self.deliveries.mix(at);
        let Some(&i) = self.index.get(&id) else { return };
        let m = &mut self.messages[i as usize];
        m.deliveries.push(Delivery { node, latency: at.saturating_sub(m.sent), hops });
    }

    /// Messages sent so far.
    pub fn sent_count(&self) -> usize {
        self.messages.len()
    }

    /// Scores every message whose window ended by `end`.
    pub fn score(&self, lives: &[Lifetime], end: u64, window: u64, phases: &Phases) -> Scored {
        let mut misses = Vec::new();
        let mut reports = Vec::new();
        let mut latencies: Vec<u64> = Vec::new();
        // Deliveries to nodes that joined after the send: how long after joining.
        let mut catch_up: Vec<u64> = Vec::new();
        let mut got = vec![u64::MAX; lives.len()];
        for (mi, m) in self.messages.iter().enumerate() {
            let close = m.sent.saturating_add(window);
            if close > end {
                continue;
            }
            // `got[node] == mi` marks a delivery of this message within the window.
            let mut last_hop = 0u8;
            let mut last_latency = 0u64;
            let mut latency_max = 0u64;
            for d in &m.deliveries {
                if d.latency <= window {
                    if let Some(g) = got.get_mut(d.node as usize) {
                        *g = mi as u64;
                    }
                    let at = m.sent + d.latency;
                    match lives.get(d.node as usize).map(|l| l.joined) {
                        Some(joined) if joined > m.sent => {
                            catch_up.push(at.saturating_sub(joined));
                            continue;
                        }
                        _ => {}
                    }
                    latencies.push(d.latency);
                    latency_max = latency_max.max(d.latency);
                    if d.latency >= last_latency {
                        last_latency = d.latency;
                        last_hop = d.hops;
                    }
                }
            }
            let mut eligible = 0usize;
            let mut delivered = 0usize;
            for (n, life) in lives.iter().enumerate() {
                if n as u32 == m.origin || life.joined > m.sent || life.died <= close {
                    continue;
                }
                eligible += 1;
                if got[n] == mi as u64 {
                    delivered += 1;
                } else if misses.len() < 1000 {
                    let late = m.deliveries.iter().find(|d| d.node == n as u32).map(|d| secs(d.latency));
                    misses.push(Miss { t: secs(m.sent), node: n as u32, joined: secs(life.joined), late_by: late });
                }
            }
            let reliability = if eligible == 0 { 1.0 } else { delivered as f64 / eligible as f64 };
            reports.push(MessageReport {
                t: secs(m.sent),
                eligible,
                delivered,
                reliability,
                last_hop,
                latency_max_ms: ms(latency_max),
            });
        }
        latencies.sort_unstable();
        catch_up.sort_unstable();
        let latency = Latency::of_sorted(&latencies);
        let step = latencies.len().div_ceil(2000).max(1);
        let cdf: Vec<f64> = latencies.iter().step_by(step).map(|l| ms(*l)).collect();
        let n = reports.len();
        let summary = DeliverySummary {
            sent: self.messages.len(),
            scored: n,
            reliability_mean: mean(reports.iter().map(|r| r.reliability)),
            reliability_min: reports.iter().map(|r| r.reliability).fold(1.0, f64::min),
            perfect: reports.iter().filter(|r| r.delivered == r.eligible).count(),
            rmr: 0.0,
            last_hop_mean: mean(reports.iter().map(|r| f64::from(r.last_hop))),
            last_hop_max: reports.iter().map(|r| r.last_hop).max().unwrap_or(0),
            latency,
            catch_up: CatchUp { deliveries: catch_up.len(), after_join: Latency::of_sorted(&catch_up) },
        };
        let mut phase_reports = Vec::new();
        for (k, (from, label)) in phases.iter().enumerate() {
            let to = phases.get(k + 1).map_or(end, |p| p.0);
            let in_phase: Vec<&MessageReport> =
                reports.iter().filter(|r| r.t >= secs(*from) && r.t < secs(to)).collect();
            phase_reports.push(PhaseReport {
                label: label.clone(),
                from: secs(*from),
                to: secs(to),
                messages: in_phase.len(),
                reliability_mean: mean(in_phase.iter().map(|r| r.reliability)),
                reliability_min: in_phase.iter().map(|r| r.reliability).fold(1.0, f64::min),
                perfect: in_phase.iter().filter(|r| r.delivered == r.eligible).count(),
            });
        }
        Scored { summary, phases: phase_reports, messages: reports, latency_cdf_ms: cdf, misses }
    }
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = it.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        1.0
    } else {
        sum / n as f64
    }
}

/// Nanoseconds as seconds.
pub fn secs(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Nanoseconds as milliseconds.
pub fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    #[test]
    fn reliability_counts_only_nodes_present_for_the_whole_window() {
        let mut r = Recorder::default();
        let w = 10;
        // Node 0 sends at t=100. Node 1 and 2 were there throughout; node 3 joined after the
        // send (and got it as a catch-up); node 4 got it, then died inside the window; node 5
        // got it only after the window.
        let lives = vec![
            Lifetime { joined: 0, died: NEVER },
            Lifetime { joined: 0, died: NEVER },
            Lifetime { joined: 0, died: NEVER },
            Lifetime { joined: 101, died: NEVER },
            Lifetime { joined: 0, died: 105 },
            Lifetime { joined: 0, died: NEVER },
        ];
        r.sent(id(1), 0, 100);
        r.delivered(1, id(1), 103, 1);
        r.delivered(3, id(1), 108, 2);
        r.delivered(4, id(1), 104, 4);
        r.delivered(5, id(1), 120, 3);
        let phases = vec![(0, "all".to_string())];
        let sc = r.score(&lives, 1000, w, &phases);
        let (sum, phases, msgs) = (sc.summary, sc.phases, sc.messages);
        assert_eq!(sc.misses.len(), 2);
        assert_eq!(sc.misses[1].late_by, Some(20e-9));
        assert_eq!(msgs.len(), 1);
        // Eligible: 1, 2, 5. Delivered in window: 1.
        assert_eq!((msgs[0].eligible, msgs[0].delivered), (3, 1));
        assert!((sum.reliability_min - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(phases[0].messages, 1);
        // Latency and the last hop are the flood's, over the members at the send (1 and 4, even
        // though 4 died in the window); node 3's catch-up is counted apart, from its join.
        assert_eq!(msgs[0].last_hop, 4, "the last delivery to a member inside the window was node 4's");
        assert_eq!(msgs[0].latency_max_ms, ms(4));
        assert_eq!(sum.latency.max_ms, ms(4), "node 3's later catch-up is not the flood's latency");
        assert_eq!(sum.catch_up.deliveries, 1);
        assert_eq!(sum.catch_up.after_join.max_ms, ms(7));
    }

    #[test]
    fn messages_whose_window_passes_the_end_are_not_scored() {
        let mut r = Recorder::default();
        r.sent(id(1), 0, 995);
        let lives = vec![Lifetime { joined: 0, died: NEVER }; 2];
        let sc = r.score(&lives, 1000, 10, &vec![(0, String::new())]);
        let (sum, msgs) = (sc.summary, sc.messages);
        assert_eq!((sum.sent, sum.scored, msgs.len()), (1, 0, 0));
    }

    #[test]
    fn trace_hash_depends_on_order_and_content() {
        let mut a = TraceHash::default();
        let mut b = TraceHash::default();
        a.mix(1);
        a.mix(2);
        b.mix(2);
        b.mix(1);
        assert_ne!(a.value(), b.value());
    }
}
