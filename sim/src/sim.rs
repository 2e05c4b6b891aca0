//! The simulation: real `peerchannel-core` nodes on virtual time, wired through the network
//! model, driven by the scenario's actions.
//!
//! Every node is a [`Node`] stored in a `Vec` under a dense index; its timer is one entry in the
//! event queue, scheduled lazily: the simulator remembers the deadline it armed for each node
//! and skips queue entries that no longer match it, so a node whose deadline moves does not
//! need its old entry removed. Bytes are pulled from the core whole (or up to the uplink's
//! room when bandwidth is limited) and travel as one buffer per write; writes of the same chunks
//! (a relayed flood to each neighbor) share one buffer.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerchannel_core::{ChannelPath, Config, Event, Input, Instant, LinkId, MeshId, Node, Output, Rng};
use smallvec::SmallVec;

use crate::metrics::{self, EventKinds, Lifetime, Phases, Recorder, Report, Sample, Traffic, NEVER};
use crate::network::{ephemeral_addr, host_addr, host_of, Network, Stream, Uplink};
use crate::queue::EventQueue;
use crate::registry::Registry;
use crate::scenario::{secs, CrashMode, Replacement, Scenario, ScenarioError};

/// "No node / no connection".
const NONE: u32 = u32::MAX;

/// Link IDs a node maps to connections without a separate allocation.
const LINKS_INLINE: usize = 24;

/// How a node left the run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Departure {
    /// Crashed (silently or with resets, per the scenario's crash mode).
    Crash,
    /// Closed gracefully (Disconnect LeavingMesh to every neighbor).
    Leave,
}

/// Something scheduled on the event queue.
#[derive(Debug)]
enum Ev {
    /// A node's armed deadline (valid only if it still equals the node's `armed`).
    Timer { node: u32 },
    /// A dial's SYN reaches the target host.
    DialArrives { conn: u32 },
    /// The dialer learns whether the connection was established.
    DialDone { conn: u32, ok: bool },
    /// Bytes arrive at end `to` of a connection.
    Data { conn: u32, to: u8, data: Write },
    /// End of stream (or reset) arrives at end `to`.
    Fin { conn: u32, to: u8, reset: bool },
    /// The resolver's answer reaches a node.
    Resolve { node: u32, id: u64, max: u32 },
    /// A node's uplink has room again.
    UplinkWake { node: u32 },
    /// A node starts (on `host`, or on a new host) and opens.
    Spawn { host: u32 },
    /// A publisher sends the next flood.
    Publish,
    /// The next churn departure.
    Churn,
    /// A scheduled mass failure.
    MassFailure { k: u32 },
    /// A scheduled partition starts.
    PartitionStart { k: u32 },
    /// A scheduled partition heals.
    Heal,
    /// Metrics sample.
    Sample,
    /// A crash or leave requested from outside (tests, tools).
    Depart { node: u32, how: Departure },
}

/// `repr(C)`, hot fields first: an event reads the node's handle, its armed deadline and its
/// link map, and a write its uplink; in this order they share the first lines.
#[derive(Debug)]
#[repr(C)]
struct SimNode {
    /// Boxed: inline, `Option<Node>` kept its tag in the node's last bytes (the compiler's
    /// choice of a spare bit pattern), so checking that a node is alive read a cache line of
    /// its own, at every event. Here the tag is the pointer, beside `armed`.
    node: Option<Box<Node>>,
    /// The deadline this node's timer entry in the queue stands for (`NEVER`: none).
    armed: u64,
    uplink: Uplink,
    /// `LinkId.0` → connection index (`NONE` where unused). Link IDs are dense per node.
    /// Inline for the first IDs (most nodes of a run never pass them): every write looks its
    /// connection up here, and a separate allocation was a cache miss per write.
    links: SmallVec<[u32; LINKS_INLINE]>,
    host: u32,
    joined: u64,
    died: u64,
    /// Links with bytes waiting for uplink room (bandwidth-limited runs only).
    pending_tx: Vec<LinkId>,
    /// When an `UplinkWake` is scheduled (`NEVER`: none).
    wake_at: u64,
    /// Position in `Simulation::live`.
    live_pos: u32,
    /// Neighbors, counted from NeighborUp / NeighborDown events.
    degree: u32,
    /// Since when the node is joined but below `min_neighbors` (`NEVER`: it is not).
    below_since: u64,
    /// The current dip started when the node joined (it is still growing to `min`).
    below_joining: bool,
}

#[derive(Debug, Clone, Copy)]
struct Host {
    /// The node running on it now.
    node: u32,
    /// Its last node crashed silently: connects hang instead of being refused.
    silent: bool,
    /// Partition side; hosts on different sides cannot reach each other.
    side: u8,
}

#[derive(Debug, Clone, Copy)]
struct End {
    node: u32,
    host: u32,
    link: u64,
    open: bool,
}

const NO_END: End = End { node: NONE, host: NONE, link: 0, open: false };

/// A transport connection: end 0 dialed, end 1 accepted. Direction `d` carries bytes from end
/// `d` to end `1 - d`.
#[derive(Debug)]
struct Conn {
    ends: [End; 2],
    streams: [Stream; 2],
    latency: u64,
    target_host: u32,
}

/// One write on a stream: one buffer, or two, read as they are (see `pull`).
#[derive(Debug)]
struct Write {
    first: Bytes,
    /// Empty for a write of one buffer.
    then: Bytes,
}

impl Write {
    fn len(&self) -> usize {
        self.first.len() + self.then.len()
    }
}

/// Bytes (and possibly the end of stream) held on one direction of a link across a cut.
#[derive(Debug, Default)]
struct Stalled {
    data: Vec<Write>,
    fin: Option<bool>,
}

/// Progress of a run, for progress bars.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Simulated time reached.
    pub now: Duration,
    /// Simulated time the run ends at.
    pub end: Duration,
    /// Events processed.
    pub events: u64,
}

/// A deterministic simulation of one scenario.
#[derive(Debug)]
pub struct Simulation {
    sc: Scenario,
    now: u64,
    end: u64,
    queue: EventQueue<Ev>,
    /// Chunks pulled from a core for one write (reused).
    tx_scratch: Vec<Bytes>,
    /// Writes of more than two chunks joined into a new buffer, and writes passed on as their
    /// two chunks (see `pull`).
    joined_writes: u64,
    chunked_writes: u64,
    nodes: Vec<SimNode>,
    hosts: Vec<Host>,
    conns: Vec<Conn>,
    stalled: BTreeMap<(u32, u8), Stalled>,
    /// Alive nodes (dense indices), for uniform random choice.
    live: Vec<u32>,
    registry: Registry,
    net: Network,
    /// Scenario choices: churn victims, publishers, partition sides, node seeds.
    rng: Rng,
    rec: Recorder,
    traffic: Traffic,
    samples: Vec<Sample>,
    phases: Phases,
    template: Config,
    paths: Vec<ChannelPath>,
    payload: Bytes,
    published: u64,
    events: u64,
    /// Timers and writes among `events` (the rest is derived).
    kinds: EventKinds,
    /// Timer entries popped after their node re-armed elsewhere (counted in `events`).
    stale: u64,
    crashes: usize,
    leaves: usize,
    resolve_buf: Vec<u32>,
    dips: metrics::Dips,
    event_log: Option<Vec<(u64, u32, Event)>>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// SplitMix64 finalizer over (seed, i): independent node seeds from one run seed.
fn derive_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The key of the simulated registry's IDs, fixed by the seed (a service draws it from the OS).
fn registry_secret(seed: u64) -> [u8; 32] {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&derive_seed(seed, u64::MAX - 1).to_le_bytes());
    secret
}

impl Simulation {
    /// Prepares a run of `sc`: validates it, checks the node configuration with the core, and
    /// schedules the scenario's actions.
    pub fn new(sc: Scenario) -> Result<Simulation, ScenarioError> {
        sc.validate()?;
        let mesh = MeshId::new("sim").map_err(|e| ScenarioError::Core(e.to_string()))?;
        let mut template = Config::new(mesh.clone(), 0);
        sc.core.apply(&mut template);
        // The mesh key is derived here, once per run; every node's configuration is a clone of
        // the template and shares it. Each node's key pair (and in message modes its NodeId)
        // derives from its own seed, so a run stays reproducible.
        template.security = sc.security.to_core(&mesh)?;
        // Validate once here, so creating nodes later cannot fail.
        let mut probe = template.clone();
        probe.listen_addrs = vec![host_addr(0)];
        Node::new(probe, Instant::ZERO).map_err(|e| ScenarioError::Core(e.to_string()))?;
        let paths = sc
            .publish
            .paths
            .iter()
            .map(|p| ChannelPath::new(p).map_err(|e| ScenarioError::Invalid(format!("publish.paths: {p:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if sc.publish.size > template.max_message_size {
            return Err(ScenarioError::Invalid(format!(
                "publish.size = {} is above the core's max_message_size {}",
                sc.publish.size, template.max_message_size
            )));
        }
        let payload = Bytes::from((0..sc.publish.size).map(|i| i as u8).collect::<Vec<u8>>());
        let end = nanos(sc.duration());
        let mut sim = Simulation {
            now: 0,
            end,
            queue: EventQueue::default(),
            tx_scratch: Vec::new(),
            joined_writes: 0,
            chunked_writes: 0,
            nodes: Vec::with_capacity(sc.nodes),
            hosts: Vec::with_capacity(sc.nodes),
            conns: Vec::new(),
            stalled: BTreeMap::new(),
            live: Vec::with_capacity(sc.nodes),
            registry: Registry::new(mesh.clone(), registry_secret(sc.seed)),
            net: Network::new(&sc.network, sc.seed),
            rng: Rng::from_seed(derive_seed(sc.seed, u64::MAX)),
            rec: Recorder::default(),
            traffic: Traffic::default(),
            samples: Vec::new(),
            phases: Vec::new(),
            template,
            paths,
            payload,
            published: 0,
            events: 0,
            kinds: EventKinds::default(),
            stale: 0,
            crashes: 0,
            leaves: 0,
            resolve_buf: Vec::new(),
            dips: metrics::Dips::default(),
            event_log: None,
            sc,
        };
        sim.schedule_scenario();
        Ok(sim)
    }

    fn schedule_scenario(&mut self) {
        let n = self.sc.nodes as u64;
        let over = nanos(secs(self.sc.join_over_secs));
        for i in 0..n {
            self.queue.push(over / n * i, Ev::Spawn { host: NONE });
        }
        let mut phases: Phases = vec![(0, "start".into())];
        if self.sc.publish.rate_per_sec > 0.0 {
            self.queue.push(nanos(secs(self.sc.publish.start_secs)), Ev::Publish);
        }
        if let Some(c) = &self.sc.churn {
            if c.replace_per_min > 0.0 {
                let at = nanos(secs(c.start_secs));
                self.queue.push(at, Ev::Churn);
                phases.push((at, format!("churn: {}% replaced per minute", c.replace_per_min * 100.0)));
            }
        }
        let mut remaining = 1.0;
        for (k, m) in self.sc.mass_failure.iter().enumerate() {
            let at = nanos(secs(m.at_secs));
            self.queue.push(at, Ev::MassFailure { k: k as u32 });
            remaining *= 1.0 - m.fraction;
            phases.push((
                at,
                format!(
                    "after failure {}: {:.0}% of live nodes crash ({:.0}% of the initial nodes failed)",
                    k + 1,
                    m.fraction * 100.0,
                    (1.0 - remaining) * 100.0
                ),
            ));
        }
        for (k, p) in self.sc.partition.iter().enumerate() {
            let at = nanos(secs(p.at_secs));
            let heal = at + nanos(secs(p.duration_secs));
            self.queue.push(at, Ev::PartitionStart { k: k as u32 });
            self.queue.push(heal, Ev::Heal);
            phases.push((at, format!("partition {}: {:.0}% cut off", k + 1, p.fraction * 100.0)));
            phases.push((heal, format!("partition {} healed", k + 1)));
        }
        self.queue.push(0, Ev::Sample);
        phases.sort_by_key(|p| p.0);
        self.phases = phases;
    }

    // ----- running ------------------------------------------------------------------------

    /// Runs to the scenario's end and returns the report.
    pub fn run(&mut self) -> Report {
        self.run_with_progress(|_| {});
        self.report()
    }

    /// Runs to the end, calling `progress` every 65,536 events.
    pub fn run_with_progress(&mut self, mut progress: impl FnMut(Progress)) {
        let end = self.end;
        self.run_until_nanos(end, &mut progress);
    }

    /// Runs until simulated time `t` (capped at the scenario's end).
    pub fn run_until(&mut self, t: Duration) {
        self.run_until_with_progress(t, |_| {});
    }

    /// Runs until simulated time `t` (capped at the scenario's end), calling `progress` every
    /// 65,536 events.
    pub fn run_until_with_progress(&mut self, t: Duration, mut progress: impl FnMut(Progress)) {
        let t = nanos(t).min(self.end);
        self.run_until_nanos(t, &mut progress);
    }

    fn run_until_nanos(&mut self, t: u64, progress: &mut dyn FnMut(Progress)) {
        while let Some((at, ev)) = self.queue.pop_until(t) {
            self.now = at;
            self.events += 1;
            self.handle(at, ev);
            if self.events & 0xFFFF == 0 {
                progress(Progress {
                    now: Duration::from_nanos(self.now),
                    end: Duration::from_nanos(self.end),
                    events: self.events,
                });
            }
        }
        self.now = self.now.max(t);
    }

    fn handle(&mut self, at: u64, ev: Ev) {
        match ev {
            Ev::Timer { node } => {
                self.kinds.timers += 1;
                let n = &mut self.nodes[node as usize];
                if n.armed != at {
                    self.stale += 1;
                    return; // superseded by a later arming
                }
                n.armed = NEVER;
                let Some(core) = n.node.as_mut() else { return };
                core.handle_timeout(Instant::from_nanos(at));
                self.drain(node);
            }
            Ev::DialArrives { conn } => self.dial_arrives(conn),
            Ev::DialDone { conn, ok } => self.dial_done(conn, ok),
            Ev::Data { conn, to, data } => {
                if data.then.is_empty() {
                    self.kinds.one_buffer_writes += 1;
                } else {
                    self.kinds.two_buffer_writes += 1;
                }
                let e = self.conns[conn as usize].ends[to as usize];
                if !e.open {
                    return;
                }
                let Some(core) = self.nodes[e.node as usize].node.as_mut() else { return };
                let link = LinkId(e.link);
                let input = if data.then.is_empty() {
                    Input::Received { link, data: data.first }
                } else {
                    Input::ReceivedChunks { link, chunks: [data.first, data.then].into() }
                };
                core.handle_input(Instant::from_nanos(at), input);
                self.drain(e.node);
            }
            Ev::Fin { conn, to, reset } => {
                let e = &mut self.conns[conn as usize].ends[to as usize];
                if !e.open {
                    return;
                }
                e.open = false;
                let (node, link) = (e.node, e.link);
                let Some(core) = self.nodes[node as usize].node.as_mut() else { return };
                let error = reset.then_some(ErrorKind::ConnectionReset);
                core.handle_input(Instant::from_nanos(at), Input::LinkClosed { link: LinkId(link), error });
                self.drain(node);
            }
            Ev::Resolve { node, id, max } => {
                if self.nodes[node as usize].node.is_none() {
                    return;
                }
                let mut hosts = std::mem::take(&mut self.resolve_buf);
                self.registry.sample(at, node, max as usize, &mut hosts);
                let addrs = hosts.iter().map(|h| host_addr(*h)).collect();
                self.resolve_buf = hosts;
                if let Some(core) = self.nodes[node as usize].node.as_mut() {
                    core.handle_input(Instant::from_nanos(at), Input::Resolved { id, addrs });
                    self.drain(node);
                }
            }
            Ev::UplinkWake { node } => {
                if self.nodes[node as usize].wake_at == at {
                    self.nodes[node as usize].wake_at = NEVER;
                    self.pump(node);
                    self.rearm(node);
                }
            }
            Ev::Spawn { host } => {
                self.spawn(host);
            }
            Ev::Publish => self.publish(),
            Ev::Churn => self.churn(),
            Ev::MassFailure { k } => {
                let fraction = self.sc.mass_failure.get(k as usize).map_or(0.0, |m| m.fraction);
                for v in self.pick_live(fraction) {
                    self.crash(v);
                }
            }
            Ev::PartitionStart { k } => {
                let fraction = self.sc.partition.get(k as usize).map_or(0.0, |p| p.fraction);
                for v in self.pick_live(fraction) {
                    let h = self.nodes[v as usize].host;
                    self.hosts[h as usize].side = 1;
                }
            }
            Ev::Heal => self.heal(),
            Ev::Sample => {
                let s = self.sample_now();
                self.samples.push(s);
                let next = at + nanos(secs(self.sc.metrics.sample_secs)).max(1);
                if next <= self.end {
                    self.queue.push(next, Ev::Sample);
                }
            }
            Ev::Depart { node, how } => match how {
                Departure::Crash => self.crash(node),
                Departure::Leave => self.leave(node),
            },
        }
    }

    /// Carries out every pending output of `node`, then re-arms its timer.
    fn drain(&mut self, node: u32) {
        loop {
            let Some(out) = self.nodes[node as usize].node.as_mut().and_then(|n| n.poll_output()) else {
                break;
            };
            self.trace(node, &out);
            match out {
                Output::Dial { link, addr } => self.dial(node, link, addr),
                Output::Transmit { link } => {
                    if self.net.uplink_limited() {
                        let pending = &mut self.nodes[node as usize].pending_tx;
                        if !pending.contains(&link) {
                            pending.push(link);
                        }
                        self.pump(node);
                    } else {
                        self.flush(node, link, usize::MAX);
                    }
                }
                Output::CloseLink { link, .. } => self.close_link(node, link),
                Output::Deliver(m) => self.rec.delivered(node, m.id, self.now, m.hops),
                Output::Resolve { id, max_addresses, .. } => {
                    let at = self.now + nanos(crate::scenario::millis(self.sc.resolver.rtt_ms));
                    self.queue.push(at, Ev::Resolve { node, id, max: max_addresses.min(1024) as u32 });
                }
                Output::Event(e) => {
                    self.track_degree(node, &e);
                    if let Some(log) = self.event_log.as_mut() {
                        log.push((self.now, node, e));
                    }
                }
            }
        }
        self.rearm(node);
    }

    /// Follows each node's degree through its events, to time how long joined nodes spend
    /// below `min_neighbors`.
    fn track_degree(&mut self, node: u32, e: &Event) {
        let min = self.template.min_neighbors as u32;
        let now = self.now;
        let n = &mut self.nodes[node as usize];
        match e {
            Event::Online if n.joined == NEVER => {
                n.joined = now;
                if n.degree < min {
                    n.below_since = now;
                    n.below_joining = true;
                }
            }
            Event::NeighborUp { .. } => {
                n.degree += 1;
                if n.degree >= min && n.below_since != NEVER {
                    let dip = metrics::Dip {
                        t: metrics::secs(n.below_since),
                        node,
                        secs: metrics::secs(now - n.below_since),
                        joining: n.below_joining,
                    };
                    n.below_since = NEVER;
                    self.dips.push(dip);
                }
            }
            Event::NeighborDown { .. } => {
                n.degree = n.degree.saturating_sub(1);
                if n.degree < min && n.joined != NEVER && n.below_since == NEVER {
                    n.below_since = now;
                    n.below_joining = false;
                }
            }
            _ => {}
        }
    }

    fn rearm(&mut self, node: u32) {
        let n = &mut self.nodes[node as usize];
        let Some(core) = n.node.as_ref() else { return };
        match core.poll_timeout() {
            Some(t) => {
                let t = t.as_nanos().max(self.now);
                if t != n.armed {
                    n.armed = t;
                    self.queue.push(t, Ev::Timer { node });
                }
            }
            None => n.armed = NEVER,
        }
    }

    fn trace(&mut self, node: u32, out: &Output) {
        let h = &mut self.rec.trace;
        h.mix(self.now);
        h.mix(u64::from(node));
        match out {
            Output::Dial { link, addr } => {
                h.mix(1);
                h.mix(link.0);
                h.mix(host_of(*addr).map_or(u64::MAX, u64::from));
            }
            Output::Transmit { link } => {
                h.mix(2);
                h.mix(link.0);
            }
            Output::CloseLink { link, reason } => {
                h.mix(3);
                h.mix(link.0);
                h.mix(*reason as u64);
            }
            Output::Deliver(m) => {
                h.mix(4);
                h.mix(u64::from_le_bytes(m.id.0[..8].try_into().unwrap_or_default()));
                h.mix(u64::from_le_bytes(m.id.0[8..].try_into().unwrap_or_default()));
                h.mix(m.origin.get());
                h.mix(u64::from(m.hops));
            }
            Output::Resolve { id, max_addresses, .. } => {
                h.mix(5);
                h.mix(*id);
                h.mix(*max_addresses as u64);
            }
            Output::Event(e) => {
                h.mix(6);
                match e {
                    Event::Online => h.mix(0),
                    Event::Offline => h.mix(1),
                    Event::NeighborUp { link, node, .. } => {
                        h.mix(2);
                        h.mix(link.0);
                        h.mix(node.get());
                    }
                    Event::NeighborDown { link, node, reason, by_peer } => {
                        h.mix(3);
                        h.mix(link.0);
                        h.mix(node.get());
                        h.mix(*reason as u64 | u64::from(*by_peer) << 8);
                    }
                    Event::DialFailed { addr, .. } => {
                        h.mix(4);
                        h.mix(host_of(*addr).map_or(u64::MAX, u64::from));
                    }
                    Event::InboundRefused { reason, .. } => {
                        h.mix(5);
                        h.mix(*reason as u64);
                    }
                    Event::MessageDropped { .. } => h.mix(7),
                    Event::AuthenticationFailed { link, .. } => {
                        h.mix(8);
                        h.mix(link.0);
                    }
                    Event::InvalidSignature { link, origin, .. } => {
                        h.mix(9);
                        h.mix(link.0);
                        h.mix(origin.get());
                    }
                }
            }
        }
    }

    // ----- connections --------------------------------------------------------------------

    fn set_link(&mut self, node: u32, link: LinkId, conn: u32) {
        let links = &mut self.nodes[node as usize].links;
        let i = usize::try_from(link.0).unwrap_or(usize::MAX);
        if i >= links.len() {
            // A node's link IDs increase from 1 with few gaps (the core skips an ID only when
            // its table slot is taken); a huge one would be a core change, not a reason to
            // allocate without bound.
            if i > links.len() + 1_000_000 {
                return;
            }
            links.resize(i + 1, NONE);
        }
        links[i] = conn;
    }

    fn conn_of(&self, node: u32, link: LinkId) -> Option<(u32, usize)> {
        let conn = *self.nodes[node as usize].links.get(usize::try_from(link.0).ok()?)?;
        if conn == NONE {
            return None;
        }
        let c = &self.conns[conn as usize];
        let dir = if c.ends[0].node == node && c.ends[0].link == link.0 { 0 } else { 1 };
        Some((conn, dir))
    }

    fn cut(&self, a: u32, b: u32) -> bool {
        self.hosts[a as usize].side != self.hosts[b as usize].side
    }

    fn dial(&mut self, node: u32, link: LinkId, addr: std::net::SocketAddr) {
        let src = self.nodes[node as usize].host;
        let target = host_of(addr).filter(|h| (*h as usize) < self.hosts.len());
        let latency = target.map_or(0, |h| self.net.pair_latency(src, h));
        let conn = self.conns.len() as u32;
        self.conns.push(Conn {
            ends: [End { node, host: src, link: link.0, open: true }, NO_END],
            streams: [Stream::default(); 2],
            latency,
            target_host: target.unwrap_or(NONE),
        });
        self.set_link(node, link, conn);
        match target {
            // Nobody at that address: refused at once (a local RST).
            None => self.queue.push(self.now, Ev::DialDone { conn, ok: false }),
            Some(h) if self.cut(src, h) => {} // the SYN is lost; the core's connect timeout fires
            Some(_) => {
                let at = self.now + self.net.transit(latency);
                self.queue.push(at, Ev::DialArrives { conn });
            }
        }
    }

    fn dial_arrives(&mut self, conn: u32) {
        let c = &self.conns[conn as usize];
        if !c.ends[0].open {
            return; // the dialer gave up before the SYN arrived
        }
        let (src, h, latency) = (c.ends[0].host, c.target_host, c.latency);
        if self.cut(src, h) {
            return;
        }
        let host = self.hosts[h as usize];
        let accepted = match self.nodes.get_mut(host.node as usize).and_then(|n| n.node.as_mut()) {
            Some(core) => core.accept(Instant::from_nanos(self.now), ephemeral_addr(src, conn)).ok(),
            None if host.silent => return, // a vanished host does not answer: the dial hangs
            None => None,
        };
        let back = self.now + self.net.transit(latency);
        match accepted {
            Some(link) => {
                let synack = back + self.net.setup();
                let c = &mut self.conns[conn as usize];
                c.ends[1] = End { node: host.node, host: h, link: link.0, open: true };
                // The acceptor's first bytes must not reach the dialer before it is connected.
                c.streams[1].not_before(synack);
                self.set_link(host.node, link, conn);
                self.queue.push(synack, Ev::DialDone { conn, ok: true });
                self.drain(host.node);
            }
            None => self.queue.push(back, Ev::DialDone { conn, ok: false }),
        }
    }

    fn dial_done(&mut self, conn: u32, ok: bool) {
        let e = &mut self.conns[conn as usize].ends[0];
        if !e.open {
            return;
        }
        if !ok {
            e.open = false;
        }
        let (node, link) = (e.node, LinkId(e.link));
        let Some(core) = self.nodes[node as usize].node.as_mut() else { return };
        let now = Instant::from_nanos(self.now);
        if ok {
            core.handle_input(now, Input::LinkConnected { link });
        } else {
            core.handle_input(now, Input::DialFailed { link, error: ErrorKind::ConnectionRefused });
        }
        self.drain(node);
    }

    /// Pulls up to `max` bytes of `link` from the core as one write. Returns the write and
    /// whether the link's queue is now empty.
    ///
    /// A write of one flood is two chunks: its head, and its body (for a relay, the body it
    /// received, shared with its other neighbors' writes and its recovery store). It travels
    /// as those chunks and is read as they are, in one `Input::ReceivedChunks`; the receiver's
    /// assembler takes a flood's body that follows its first bytes without copying it (see
    /// `FrameAssembler`). So no relay copies a flood: every node holds slices of the buffer
    /// its origin's neighbors received. Joining each relay's chunks into a new buffer, as a
    /// socket's copy would, cost 1.1 KiB of allocation and copy per relayed flood and 18 of
    /// steady-1k's 49 MiB peak; see BENCHMARKS.md, section 2.
    ///
    /// A write of more chunks (several frames queued at once, rare) goes out joined into one
    /// buffer of its own, sized exactly: a receiver keeps frames it may be asked for again
    /// (the recovery store) as slices of the buffer they arrived in, and a buffer shared with
    /// other writes would keep those alive too.
    fn pull(&mut self, node: u32, link: LinkId, max: usize) -> (Option<Write>, bool) {
        let Some(core) = self.nodes[node as usize].node.as_mut() else { return (None, true) };
        let chunks = &mut self.tx_scratch;
        chunks.clear();
        let got = core.poll_transmit_into(link, max, chunks);
        // Less than asked for: the queue ran dry.
        let empty = got < max;
        let mut taken = chunks.drain(..);
        let data = match taken.len() {
            0 => None,
            1 | 2 => {
                let first = taken.next().unwrap_or_default();
                let then = taken.next().unwrap_or_default();
                if !then.is_empty() {
                    self.chunked_writes += 1;
                }
                Some(Write { first, then })
            }
            _ => {
                let mut joined = BytesMut::with_capacity(got);
                for c in taken {
                    joined.extend_from_slice(&c);
                }
                self.joined_writes += 1;
                Some(Write { first: joined.freeze(), then: Bytes::new() })
            }
        };
        (data, empty)
    }

    /// Sends everything `link` has queued (up to `max` bytes), through the uplink.
    fn flush(&mut self, node: u32, link: LinkId, max: usize) -> bool {
        let (data, empty) = self.pull(node, link, max);
        if let Some(data) = data {
            self.rec.trace.mix(data.len() as u64);
            let depart = self.nodes[node as usize].uplink.send(&self.net, self.now, data.len());
            self.send_data(node, link, data, depart);
        }
        empty
    }

    /// Moves bytes from the core's link queues onto a rate-limited uplink while it has room,
    /// round-robin over links; the rest stays in the core (its backpressure applies).
    fn pump(&mut self, node: u32) {
        let room = self.net.uplink_buffer;
        loop {
            let n = &self.nodes[node as usize];
            let Some(&link) = n.pending_tx.first() else { return };
            let backlog = self.net.backlog(self.now, n.uplink.busy_until);
            if backlog >= room {
                // Wake when half the buffer has drained.
                let wake = n.uplink.busy_until.saturating_sub(self.net.serialization(room / 2)).max(self.now + 1);
                let n = &mut self.nodes[node as usize];
                if n.wake_at == NEVER || n.wake_at > wake {
                    n.wake_at = wake;
                    self.queue.push(wake, Ev::UplinkWake { node });
                }
                return;
            }
            let empty = self.flush(node, link, room - backlog);
            let pending = &mut self.nodes[node as usize].pending_tx;
            pending.remove(0);
            if !empty {
                pending.push(link);
            }
        }
    }

    fn send_data(&mut self, node: u32, link: LinkId, data: Write, depart: u64) {
        let Some((conn, dir)) = self.conn_of(node, link) else { return };
        let c = &self.conns[conn as usize];
        let to = &c.ends[1 - dir];
        if to.node == NONE || !to.open {
            return; // the peer is gone: the bytes go nowhere
        }
        if self.cut(c.ends[dir].host, to.host) || self.stalled.contains_key(&(conn, dir as u8)) {
            self.stalled.entry((conn, dir as u8)).or_default().data.push(data);
            return;
        }
        let delay = self.net.transit(c.latency);
        let at = self.conns[conn as usize].streams[dir].arrival(depart, delay);
        self.queue.push(at, Ev::Data { conn, to: (1 - dir) as u8, data });
    }

    fn send_fin(&mut self, conn: u32, dir: usize, reset: bool, depart: u64) {
        let c = &self.conns[conn as usize];
        let to = &c.ends[1 - dir];
        if to.node == NONE || !to.open {
            return;
        }
        if self.cut(c.ends[dir].host, to.host) || self.stalled.contains_key(&(conn, dir as u8)) {
            self.stalled.entry((conn, dir as u8)).or_default().fin = Some(reset);
            return;
        }
        let delay = self.net.transit(c.latency);
        let at = self.conns[conn as usize].streams[dir].arrival(depart, delay);
        self.queue.push(at, Ev::Fin { conn, to: (1 - dir) as u8, reset });
    }

    fn close_link(&mut self, node: u32, link: LinkId) {
        // The farewell frame (if any) goes out first; once drained, the core forgets the link.
        self.flush(node, link, usize::MAX);
        self.nodes[node as usize].pending_tx.retain(|l| *l != link);
        let Some((conn, dir)) = self.conn_of(node, link) else { return };
        let e = &mut self.conns[conn as usize].ends[dir];
        if !e.open {
            return;
        }
        e.open = false;
        let depart = self.nodes[node as usize].uplink.busy_until.max(self.now);
        self.send_fin(conn, dir, false, depart);
    }

    fn heal(&mut self) {
        for h in &mut self.hosts {
            h.side = 0;
        }
        // Held bytes go out now, in order, as TCP retransmits them once the path is back.
        for ((conn, dir), st) in std::mem::take(&mut self.stalled) {
            let c = &self.conns[conn as usize];
            let (to, latency) = (c.ends[1 - dir as usize], c.latency);
            if !to.open {
                continue;
            }
            for data in st.data {
                let delay = self.net.transit(latency);
                let at = self.conns[conn as usize].streams[dir as usize].arrival(self.now, delay);
                self.queue.push(at, Ev::Data { conn, to: 1 - dir, data });
            }
            if let Some(reset) = st.fin {
                self.send_fin(conn, dir as usize, reset, self.now);
            }
        }
    }

    // ----- node life cycle ----------------------------------------------------------------

    fn spawn(&mut self, host: u32) -> Option<u32> {
        let h = if host == NONE || host as usize >= self.hosts.len() {
            let h = self.hosts.len() as u32;
            self.hosts.push(Host { node: NONE, silent: false, side: 0 });
            self.net.add_host(h, &mut self.rng);
            h
        } else {
            host
        };
        let idx = self.nodes.len() as u32;
        let mut cfg = self.template.clone();
        cfg.seed = derive_seed(self.sc.seed, u64::from(idx));
        cfg.listen_addrs = vec![host_addr(h)];
        let now = Instant::from_nanos(self.now);
        // The configuration was validated in `new`; a failure here would be a core bug.
        let mut core = Node::new(cfg, now).ok()?;
        for p in &self.paths {
            core.open_channel(p.clone());
        }
        core.handle_input(now, Input::Open);
        self.nodes.push(SimNode {
            node: Some(Box::new(core)),
            host: h,
            joined: NEVER,
            died: NEVER,
            armed: NEVER,
            links: SmallVec::new(),
            uplink: Uplink::default(),
            pending_tx: Vec::new(),
            wake_at: NEVER,
            live_pos: self.live.len() as u32,
            degree: 0,
            below_since: NEVER,
            below_joining: false,
        });
        self.live.push(idx);
        self.hosts[h as usize] = Host { node: idx, silent: false, side: self.hosts[h as usize].side };
        self.registry.register(self.now, idx, h);
        self.drain(idx);
        Some(idx)
    }

    fn remove_live(&mut self, node: u32) {
        let p = self.nodes[node as usize].live_pos as usize;
        if self.live.get(p) != Some(&node) {
            return;
        }
        self.live.swap_remove(p);
        if let Some(&moved) = self.live.get(p) {
            self.nodes[moved as usize].live_pos = p as u32;
        }
        self.nodes[node as usize].live_pos = NONE;
    }

    /// Drops a departed node's state, keeping its counters.
    fn bury(&mut self, node: u32) -> Option<()> {
        let core = self.nodes[node as usize].node.take()?;
        self.traffic.add(&core.stats());
        let n = &mut self.nodes[node as usize];
        n.died = self.now;
        n.armed = NEVER;
        n.pending_tx = Vec::new();
        let host = n.host;
        self.remove_live(node);
        if self.hosts[host as usize].node == node {
            self.hosts[host as usize].node = NONE;
        }
        Some(())
    }

    fn crash(&mut self, node: u32) {
        if self.bury(node).is_none() {
            return;
        }
        self.crashes += 1;
        let ttl = nanos(secs(self.sc.resolver.registration_ttl_secs));
        self.registry.expire_at(node, self.now.saturating_add(ttl));
        let host = self.nodes[node as usize].host;
        let mode = self.sc.crash.mode;
        self.hosts[host as usize].silent = mode == CrashMode::Silent;
        let detect = nanos(crate::scenario::millis(self.sc.crash.detection_delay_ms));
        let links = std::mem::take(&mut self.nodes[node as usize].links);
        for conn in links.into_iter().filter(|c| *c != NONE) {
            let c = &mut self.conns[conn as usize];
            let dir = if c.ends[0].node == node { 0 } else { 1 };
            if !c.ends[dir].open {
                continue;
            }
            c.ends[dir].open = false;
            if mode == CrashMode::Reset {
                self.send_fin(conn, dir, true, self.now + detect);
            }
        }
    }

    fn leave(&mut self, node: u32) {
        let Some(core) = self.nodes[node as usize].node.as_mut() else { return };
        core.handle_input(Instant::from_nanos(self.now), Input::Close);
        // Disconnect(LeavingMesh) to every neighbor, then end of stream.
        self.drain(node);
        self.registry.unregister(self.now, node);
        if self.bury(node).is_none() {
            return;
        }
        self.leaves += 1;
        let host = self.nodes[node as usize].host;
        self.hosts[host as usize].silent = false;
        let links = std::mem::take(&mut self.nodes[node as usize].links);
        for conn in links.into_iter().filter(|c| *c != NONE) {
            let c = &mut self.conns[conn as usize];
            let dir = if c.ends[0].node == node { 0 } else { 1 };
            if c.ends[dir].open {
                // The core closed every link it knew; anything left is closed by the OS.
                c.ends[dir].open = false;
                self.send_fin(conn, dir, false, self.now);
            }
        }
    }

    fn pick_live(&mut self, fraction: f64) -> Vec<u32> {
        let mut v = self.live.clone();
        let k = ((v.len() as f64) * fraction).round() as usize;
        self.rng.sample_in_place(&mut v, k);
        v.truncate(k);
        v
    }

    fn churn(&mut self) {
        let Some(c) = self.sc.churn.clone() else { return };
        if !self.live.is_empty() {
            let victim = self.live[self.rng.below(self.live.len())];
            let host = self.nodes[victim as usize].host;
            if unit(&mut self.rng) < c.graceful_fraction {
                self.leave(victim);
            } else {
                self.crash(victim);
            }
            let at = self.now + nanos(secs(c.restart_delay_secs));
            let host = if c.replacement == Replacement::Restart { host } else { NONE };
            self.queue.push(at, Ev::Spawn { host });
        }
        // Poisson departures: exponential gaps with mean 60 s / (rate × initial nodes).
        let per_sec = c.replace_per_min * self.sc.nodes as f64 / 60.0;
        if per_sec > 0.0 {
            let gap = -(1.0 - unit(&mut self.rng)).ln() / per_sec;
            self.queue.push(self.now + nanos(secs(gap)).max(1), Ev::Churn);
        }
    }

    fn publish(&mut self) {
        let rate = self.sc.publish.rate_per_sec;
        if rate > 0.0 {
            self.queue.push(self.now + nanos(secs(1.0 / rate)).max(1), Ev::Publish);
        }
        if self.live.is_empty() {
            return;
        }
        // A random online node; a few tries, since a node just joining may have no neighbor.
        let mut origin = None;
        for _ in 0..32 {
            let n = self.live[self.rng.below(self.live.len())];
            if self.nodes[n as usize].node.as_ref().is_some_and(|c| c.is_online()) {
                origin = Some(n);
                break;
            }
        }
        let Some(origin) = origin else { return };
        let path = &self.paths[(self.published % self.paths.len() as u64) as usize];
        self.published += 1;
        let Some(core) = self.nodes[origin as usize].node.as_mut() else { return };
        match core.send(Instant::from_nanos(self.now), path, self.payload.clone()) {
            Ok(id) => {
                self.rec.sent(id, origin, self.now);
                self.drain(origin);
            }
            Err(_) => self.traffic.send_refused += 1,
        }
    }

    // ----- observation --------------------------------------------------------------------

    /// The neighbor graph and population now.
    pub fn sample_now(&self) -> Sample {
        let n = self.nodes.len();
        let mut parent: Vec<u32> = (0..n as u32).collect();
        fn find(p: &mut [u32], mut x: u32) -> u32 {
            while p[x as usize] != x {
                let up = p[p[x as usize] as usize];
                p[x as usize] = up;
                x = up;
            }
            x
        }
        let min = self.template.min_neighbors;
        let mut s = Sample { t: metrics::secs(self.now), alive: self.live.len(), ..Sample::default() };
        let mut degree_sum = 0usize;
        s.degree_min = usize::MAX;
        for &i in &self.live {
            let sn = &self.nodes[i as usize];
            let Some(core) = sn.node.as_ref() else { continue };
            let neighbors = core.neighbors();
            s.degree_max = s.degree_max.max(neighbors.len());
            if sn.joined == NEVER {
                continue;
            }
            s.joined += 1;
            degree_sum += neighbors.len();
            s.degree_min = s.degree_min.min(neighbors.len());
            s.below_min += usize::from(neighbors.len() < min);
            for nb in neighbors {
                let Some((conn, dir)) = self.conn_of(i, nb.link) else { continue };
                let j = self.conns[conn as usize].ends[1 - dir].node;
                if j == NONE || self.nodes[j as usize].node.is_none() || self.nodes[j as usize].joined == NEVER {
                    continue;
                }
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[a as usize] = b;
                }
            }
        }
        if s.joined == 0 {
            s.degree_min = 0;
        }
        s.degree_mean = if s.joined == 0 { 0.0 } else { degree_sum as f64 / s.joined as f64 };
        let mut size: BTreeMap<u32, usize> = BTreeMap::new();
        for &i in &self.live {
            if self.nodes[i as usize].joined != NEVER && self.nodes[i as usize].node.is_some() {
                *size.entry(find(&mut parent, i)).or_default() += 1;
            }
        }
        s.components = size.len();
        let mut sizes: Vec<usize> = size.into_values().collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        s.largest_component = sizes.first().copied().unwrap_or(0);
        s.second_component = sizes.get(1).copied().unwrap_or(0);
        s.isolated = sizes.iter().filter(|n| **n == 1).count();
        s
    }

    /// The report of everything so far (messages whose window has not ended are not scored).
    pub fn report(&self) -> Report {
        let lives: Vec<Lifetime> = self.nodes.iter().map(|n| Lifetime { joined: n.joined, died: n.died }).collect();
        let window = nanos(secs(self.sc.metrics.window_secs));
        let scored = self.rec.score(&lives, self.now, window, &self.phases);
        let mut delivery = scored.summary;
        let mut traffic = self.traffic.clone();
        let mut hist = Vec::new();
        for &i in &self.live {
            let sn = &self.nodes[i as usize];
            let Some(core) = sn.node.as_ref() else { continue };
            traffic.add(&core.stats());
            if sn.joined != NEVER {
                let d = core.neighbor_count();
                if hist.len() <= d {
                    hist.resize(d + 1, 0);
                }
                hist[d] += 1;
            }
        }
        delivery.rmr = if traffic.flood_first_copies == 0 {
            0.0
        } else {
            traffic.flood_copies_received as f64 / traffic.flood_first_copies as f64 - 1.0
        };
        Report {
            scenario: self.sc.name.clone(),
            seed: self.sc.seed,
            security: self.sc.security.describe(),
            duration_s: metrics::secs(self.now),
            nodes_created: self.nodes.len(),
            nodes_alive: self.live.len(),
            crashes: self.crashes,
            leaves: self.leaves,
            delivery,
            phases: scored.phases,
            messages: scored.messages,
            misses: scored.misses,
            samples: self.samples.clone(),
            dips: self.dips.summary(self.live.iter().filter_map(|&i| {
                let n = &self.nodes[i as usize];
                (n.below_since != NEVER).then(|| metrics::secs(self.now - n.below_since))
            })),
            degree_histogram: hist,
            latency_cdf_ms: scored.latency_cdf_ms,
            traffic,
            events: self.events,
            stale_timer_events: self.stale,
            event_kinds: self.event_kinds(),
            trace_hash: format!("{:016x}", self.rec.trace.value()),
            delivery_hash: format!("{:016x}", self.rec.deliveries.value()),
        }
    }

    // ----- control and inspection for tests and tools -------------------------------------

    /// The scenario being run.
    pub fn scenario(&self) -> &Scenario {
        &self.sc
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// Events processed so far, by kind.
    pub fn event_kinds(&self) -> EventKinds {
        // Only the kinds the hot loop tells apart anyway are counted; the rest is what is left.
        EventKinds { other: self.events - self.kinds.total(), ..self.kinds }
    }

    /// Events processed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Writes of several chunks so far: how many were joined into a buffer of their own (more
    /// than two chunks), and how many were passed on as their two chunks (a flood's head and
    /// body).
    pub fn joined_and_chunked_writes(&self) -> (u64, u64) {
        (self.joined_writes, self.chunked_writes)
    }

    /// Alive nodes, by their dense index.
    pub fn live_nodes(&self) -> Vec<u32> {
        let mut v = self.live.clone();
        v.sort_unstable();
        v
    }

    /// The core node at index `i`, if alive.
    pub fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(i as usize)?.node.as_deref()
    }

    /// The host (the address's index) node `i` runs on; departed nodes keep theirs.
    pub fn host_of(&self, i: u32) -> Option<u32> {
        Some(self.nodes.get(i as usize)?.host)
    }

    /// The dense index of the node on the other end of neighbor link `link` of node `i`.
    pub fn peer_of(&self, i: u32, link: LinkId) -> Option<u32> {
        let (conn, dir) = self.conn_of(i, link)?;
        let j = self.conns[conn as usize].ends[1 - dir].node;
        (j != NONE).then_some(j)
    }

    /// Makes node `i` crash or leave at simulated time `at` (not before now).
    pub fn depart_at(&mut self, at: Duration, node: u32, how: Departure) {
        self.queue.push(nanos(at).max(self.now), Ev::Depart { node, how });
    }

    /// Sends a flood from node `i` on the scenario's first path now; `None` if it is not open
    /// or the core refused. The message is scored like a publisher's.
    pub fn send_from(&mut self, i: u32, payload: Bytes) -> Option<peerchannel_core::MessageId> {
        let path = self.paths.first()?.clone();
        let core = self.nodes.get_mut(i as usize)?.node.as_mut()?;
        let id = core.send(Instant::from_nanos(self.now), &path, payload).ok()?;
        self.rec.sent(id, i, self.now);
        self.drain(i);
        Some(id)
    }

    /// Keeps every node event (with its time and node) from now on, for tests.
    pub fn record_events(&mut self) {
        self.event_log.get_or_insert_with(Vec::new);
    }

    /// The node events recorded since [`record_events`](Self::record_events): (nanoseconds,
    /// node, event).
    pub fn event_log(&self) -> &[(u64, u32, Event)] {
        self.event_log.as_deref().unwrap_or(&[])
    }

    /// Checks every live node's invariants; returns the first broken one.
    pub fn check_invariants(&self) -> Result<(), String> {
        for &i in &self.live {
            if let Some(core) = self.nodes[i as usize].node.as_ref() {
                core.check_invariants().map_err(|e| format!("node {i}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Registry entries (live and lingering crashed members).
    pub fn registry_len(&self) -> usize {
        self.registry.len()
    }

    /// Events waiting in the queue.
    pub fn queued_events(&self) -> usize {
        self.queue.len()
    }
}
