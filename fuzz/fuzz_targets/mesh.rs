//! `mesh`: a tiny arbitrary scenario on a deterministic in-memory network of real nodes.
//!
//! Up to 8 node slots; the fuzzer picks joins (a crashed or departed slot rejoins as a new node
//! with a new ID on the same address), graceful leaves, crashes (silent: the host vanishes and
//! dials to it hang; or reset: peers see a reset), sends, partitions of the slots into two
//! sides (bytes across the cut stall as on a TCP stream and arrive after the heal; dials across
//! it hang until the dialer's connect timeout), heals and runs of virtual time.
//!
//! Checked throughout:
//! - a node's `check_invariants()` after every event it handles, and every node's after every
//!   scenario step;
//! - at most once: no node delivers a message twice (while its seen cache guarantees to
//!   remember it), and no node gets its own message back;
//! - exactly once among nodes connected throughout: after each send the network runs a quiet
//!   window (timers fire, no scenario actions); every node reachable from the origin through
//!   links that were neighbor links on both ends, uncut, at the send and still at the end of
//!   the window got the message exactly once.
//!
//! At the end the partition heals, the mesh runs a minute, and every open node sends once more
//! under the same check.
//!
//! This network is adapted from `proto-core/tests/support/mod.rs` (fixed latency, in-order
//! links) with partitions, crash modes and rejoins added. The simulator crate (`sim/`) runs the
//! same core nodes at scale, but its public API does not yet expose per-node deliveries, joins
//! of chosen nodes or partitions of chosen nodes, which this check needs (see HOSTILE.md).
#![no_main]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use peerchannel_core::{ChannelPath, Config, Input, Instant, LinkId, MeshId, MessageId, Node, Output, Rng};

const LATENCY: Duration = Duration::from_millis(5);
const QUIET: Duration = Duration::from_millis(500);
const SLOTS: usize = 8;

#[derive(Arbitrary, Debug)]
struct Scenario {
    seed: u64,
    /// Slots in use: 2..=8.
    slots: u8,
    /// min / ideal / max neighbors: (1,2,3), (2,3,4) or the defaults (2,3,7).
    counts: u8,
    ops: Vec<MeshOp>,
}

#[derive(Arbitrary, Debug)]
enum MeshOp {
    Join(u8),
    Leave(u8),
    Crash {
        slot: u8,
        reset: bool,
    },
    Send {
        slot: u8,
        len: u8,
    },
    /// Slots whose bit is set are cut off from the others.
    Partition(u8),
    Heal,
    /// Runs the network for up to about 33 s of virtual time.
    Run(u16),
}

/// Generation-tagged node handle: a slot's node after a crash or leave is a different node.
type Gen = u32;

#[derive(Debug)]
enum Ev {
    Input { slot: usize, gen: Gen, input: Input },
    DialArrives { from: usize, gen: Gen, link: LinkId, to: usize },
}

struct Slot {
    node: Option<Node>,
    gen: Gen,
    /// A crashed silent host: dials to it hang.
    silent: bool,
    side: bool,
}

/// One direction of a connection, for stalled bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct End {
    slot: usize,
    gen: Gen,
    link: LinkId,
}

enum Stalled {
    Data(Bytes),
    Fin(Option<ErrorKind>),
}

struct Net {
    slots: Vec<Slot>,
    now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    pairs: BTreeMap<End, End>,
    /// Bytes and ends of stream held at a cut, in order, delivered at the heal.
    stalled: Vec<(End, Stalled)>,
    /// (slot, gen, message) → deliveries: (count, first time, seen cache early evictions then).
    deliveries: BTreeMap<(usize, Gen, MessageId), (u32, Instant, u64)>,
    rng: Rng,
    seed: u64,
    counts: (usize, usize, usize),
}

fn addr_of(slot: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, slot as u8 + 1], 4000))
}

fn slot_of(addr: SocketAddr) -> Option<usize> {
    match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.octets()[..3] == [10, 0, 0] && addr.port() == 4000 => {
            usize::from(v4.octets()[3]).checked_sub(1).filter(|s| *s < SLOTS)
        }
        _ => None,
    }
}

impl Net {
    fn new(sc: &Scenario) -> Net {
        let n = usize::from(sc.slots % 7) + 2;
        let slots = (0..n).map(|_| Slot { node: None, gen: 0, silent: false, side: false }).collect();
        Net {
            slots,
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            pairs: BTreeMap::new(),
            stalled: Vec::new(),
            deliveries: BTreeMap::new(),
            rng: Rng::from_seed(sc.seed ^ 0x5EED),
            seed: sc.seed,
            counts: match sc.counts % 3 {
                0 => (1, 2, 3),
                1 => (2, 3, 4),
                _ => (2, 3, 7),
            },
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        let k = self.seq;
        self.seq += 1;
        self.events.insert(k, ev);
        self.queue.push(Reverse((at, k)));
    }

    fn alive(&self, slot: usize, gen: Gen) -> bool {
        self.slots[slot].gen == gen && self.slots[slot].node.is_some()
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.slots[a].side != self.slots[b].side
    }

    /// Starts a new node in `slot` (a new node ID; the address stays).
    fn join(&mut self, slot: usize) {
        let s = &self.slots[slot];
        if s.node.as_ref().is_some_and(|n| n.is_open()) {
            return;
        }
        if s.node.is_some() {
            // Left gracefully earlier: the process ends before a new one starts.
            self.crash(slot, true);
        }
        let gen = self.slots[slot].gen + 1;
        let mut cfg = Config::new(MeshId::new("fuzz").unwrap(), self.seed ^ ((slot as u64) << 32 | u64::from(gen)));
        cfg.listen_addrs = vec![addr_of(slot)];
        (cfg.min_neighbors, cfg.ideal_neighbors, cfg.max_neighbors) = self.counts;
        let mut node = Node::new(cfg, self.now).expect("valid config");
        node.open_channel(ChannelPath::new("/chat").unwrap());
        node.handle_input(self.now, Input::Open);
        let s = &mut self.slots[slot];
        s.node = Some(node);
        s.gen = gen;
        s.silent = false;
        self.drain(slot);
    }

    fn leave(&mut self, slot: usize) {
        if let Some(node) = self.slots[slot].node.as_mut() {
            node.handle_input(self.now, Input::Close);
            self.drain(slot);
        }
    }

    fn crash(&mut self, slot: usize, reset: bool) {
        if self.slots[slot].node.take().is_none() {
            return;
        }
        let gen = self.slots[slot].gen;
        self.slots[slot].gen += 1;
        self.slots[slot].silent = !reset;
        let ends: Vec<End> = self.pairs.keys().filter(|e| e.slot == slot && e.gen == gen).copied().collect();
        for e in ends {
            if let Some(p) = self.pairs.remove(&e) {
                self.pairs.remove(&p);
                if reset {
                    self.send_fin(slot, p, Some(ErrorKind::ConnectionReset));
                }
            }
        }
    }

    /// A new cut replaces the old one: what the old one held is released first, so stalled
    /// bytes only ever sit on links that are cut now.
    fn partition(&mut self, mask: u8) {
        self.heal();
        for (i, s) in self.slots.iter_mut().enumerate() {
            s.side = mask & (1 << i) != 0;
        }
    }

    fn heal(&mut self) {
        for s in &mut self.slots {
            s.side = false;
        }
        let at = self.now + LATENCY;
        for (to, what) in std::mem::take(&mut self.stalled) {
            let input = match what {
                Stalled::Data(data) => Input::Received { link: to.link, data },
                Stalled::Fin(error) => Input::LinkClosed { link: to.link, error },
            };
            self.schedule(at, Ev::Input { slot: to.slot, gen: to.gen, input });
        }
    }

    fn send_data(&mut self, from: usize, to: End, data: Bytes) {
        if self.cut(from, to.slot) || self.stalled.iter().any(|(e, _)| *e == to) {
            self.stalled.push((to, Stalled::Data(data)));
        } else {
            let input = Input::Received { link: to.link, data };
            self.schedule(self.now + LATENCY, Ev::Input { slot: to.slot, gen: to.gen, input });
        }
    }

    fn send_fin(&mut self, from: usize, to: End, error: Option<ErrorKind>) {
        if self.cut(from, to.slot) || self.stalled.iter().any(|(e, _)| *e == to) {
            self.stalled.push((to, Stalled::Fin(error)));
        } else {
            let input = Input::LinkClosed { link: to.link, error };
            self.schedule(self.now + LATENCY, Ev::Input { slot: to.slot, gen: to.gen, input });
        }
    }

    fn next_timer(&self) -> Option<(Instant, usize)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| Some((s.node.as_ref()?.poll_timeout()?, i))).min()
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let ev_at = self.queue.peek().map(|Reverse((t, _))| *t);
            let timer = self.next_timer();
            let take_timer = match (ev_at, timer) {
                (None, None) => break,
                (Some(e), Some((t, _))) => t < e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if take_timer {
                let (t, i) = timer.unwrap();
                if t > until {
                    break;
                }
                self.now = self.now.max(t);
                self.slots[i].node.as_mut().unwrap().handle_timeout(self.now);
                if let Some(next) = self.slots[i].node.as_ref().unwrap().poll_timeout() {
                    assert!(next > self.now, "slot {i}: deadline {next:?} not after handle_timeout({:?})", self.now);
                }
                self.drain(i);
                if let Err(e) = self.slots[i].node.as_ref().unwrap().check_invariants() {
                    panic!("slot {i}: {e}");
                }
            } else {
                let Reverse((t, k)) = *self.queue.peek().unwrap();
                if t > until {
                    break;
                }
                self.queue.pop();
                self.now = self.now.max(t);
                let ev = self.events.remove(&k).unwrap();
                self.apply(ev);
            }
        }
        self.now = until;
    }

    /// Applies one event; checks the invariants of the node it touched.
    fn apply(&mut self, ev: Ev) {
        let touched = match ev {
            Ev::Input { slot, gen, input } => {
                if !self.alive(slot, gen) {
                    return;
                }
                self.slots[slot].node.as_mut().unwrap().handle_input(self.now, input);
                self.drain(slot);
                slot
            }
            Ev::DialArrives { from, gen, link, to } => {
                let peer = self.slots[to].node.as_mut();
                let accepted = peer.and_then(|n| {
                    let remote = SocketAddr::from(([192, 168, 0, from as u8], 50_000u16.wrapping_add(link.0 as u16)));
                    n.accept(self.now, remote).ok()
                });
                match accepted {
                    Some(peer_link) => {
                        let a = End { slot: from, gen, link };
                        let b = End { slot: to, gen: self.slots[to].gen, link: peer_link };
                        if self.alive(from, gen) {
                            self.pairs.insert(a, b);
                            self.pairs.insert(b, a);
                            let input = Input::LinkConnected { link };
                            self.schedule(self.now + LATENCY, Ev::Input { slot: from, gen, input });
                        } else {
                            // The dialer died meanwhile: its connection is reset.
                            self.schedule(
                                self.now + LATENCY,
                                Ev::Input {
                                    slot: to,
                                    gen: b.gen,
                                    input: Input::LinkClosed {
                                        link: peer_link,
                                        error: Some(ErrorKind::ConnectionReset),
                                    },
                                },
                            );
                        }
                        self.drain(to);
                    }
                    None => {
                        let input = Input::DialFailed { link, error: ErrorKind::ConnectionRefused };
                        self.schedule(self.now + LATENCY, Ev::Input { slot: from, gen, input });
                    }
                }
                to
            }
        };
        if let Some(n) = &self.slots[touched].node {
            if let Err(e) = n.check_invariants() {
                panic!("slot {touched}: {e}");
            }
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(n) = &s.node {
                n.check_invariants().map_err(|e| format!("slot {i}: {e}"))?;
            }
        }
        Ok(())
    }

    fn drain(&mut self, slot: usize) {
        let gen = self.slots[slot].gen;
        loop {
            let Some(out) = self.slots[slot].node.as_mut().and_then(|n| n.poll_output()) else { break };
            match out {
                Output::Dial { link, addr } => {
                    let target = slot_of(addr).filter(|t| *t < self.slots.len());
                    match target {
                        // Dials across the cut and to vanished hosts hang: the dialer's connect
                        // timeout must end them.
                        Some(t) if self.cut(slot, t) || (self.slots[t].silent && self.slots[t].node.is_none()) => {}
                        Some(t) => self.schedule(self.now + LATENCY, Ev::DialArrives { from: slot, gen, link, to: t }),
                        None => {
                            let input = Input::DialFailed { link, error: ErrorKind::ConnectionRefused };
                            self.schedule(self.now + LATENCY, Ev::Input { slot, gen, input });
                        }
                    }
                }
                Output::Transmit { link } => self.flush(slot, link),
                Output::CloseLink { link, .. } => {
                    self.flush(slot, link);
                    let me = End { slot, gen, link };
                    if let Some(p) = self.pairs.remove(&me) {
                        self.pairs.remove(&p);
                        self.send_fin(slot, p, None);
                    }
                }
                Output::Deliver(m) => {
                    let evicted = self.slots[slot].node.as_ref().unwrap().stats().seen_evicted_early;
                    let ttl = self.slots[slot].node.as_ref().unwrap().config().seen_ttl;
                    let now = self.now;
                    let e = self.deliveries.entry((slot, gen, m.id)).or_insert((0, now, evicted));
                    let remembered = now.saturating_duration_since(e.1) < ttl && evicted == e.2;
                    e.0 += 1;
                    assert!(
                        e.0 == 1 || !remembered,
                        "slot {slot}: message {:?} delivered {} times (hops {})",
                        m.id,
                        e.0,
                        m.hops
                    );
                }
                Output::Resolve { id, max_addresses, .. } => {
                    let mut addrs: Vec<SocketAddr> = (0..self.slots.len())
                        .filter(|j| *j != slot && self.slots[*j].node.as_ref().is_some_and(|n| n.is_open()))
                        .map(addr_of)
                        .collect();
                    self.rng.sample_in_place(&mut addrs, max_addresses);
                    addrs.truncate(max_addresses);
                    let input = Input::Resolved { id, addrs };
                    self.schedule(self.now + LATENCY * 2, Ev::Input { slot, gen, input });
                }
                Output::Event(_) => {}
            }
        }
    }

    fn flush(&mut self, slot: usize, link: LinkId) {
        let gen = self.slots[slot].gen;
        let mut all = BytesMut::new();
        while let Some(b) = self.slots[slot].node.as_mut().and_then(|n| n.poll_transmit(link, usize::MAX)) {
            all.extend_from_slice(&b);
        }
        if all.is_empty() {
            return;
        }
        if let Some(&p) = self.pairs.get(&End { slot, gen, link }) {
            self.send_data(slot, p, all.freeze());
        }
    }

    /// Neighbor links that both ends consider neighbor links and that no cut stalls.
    fn stable_links(&self) -> BTreeSet<(End, End)> {
        let mut out = BTreeSet::new();
        for (a, b) in &self.pairs {
            if a > b || !self.alive(a.slot, a.gen) || !self.alive(b.slot, b.gen) || self.cut(a.slot, b.slot) {
                continue;
            }
            let na = self.slots[a.slot].node.as_ref().unwrap().neighbors();
            let nb = self.slots[b.slot].node.as_ref().unwrap().neighbors();
            if na.iter().any(|n| n.link == a.link) && nb.iter().any(|n| n.link == b.link) {
                out.insert((*a, *b));
            }
        }
        out
    }

    /// Sends from `slot` and checks exactly-once delivery among the nodes connected to it
    /// throughout a quiet window.
    fn send_and_check(&mut self, slot: usize, len: usize) {
        let gen = self.slots[slot].gen;
        let now = self.now;
        let Some(node) = self.slots[slot].node.as_mut() else { return };
        let path = ChannelPath::new("/chat").unwrap();
        let Ok(id) = node.send(now, &path, Bytes::from(vec![0x5A; len])) else { return };
        self.drain(slot);
        let before = self.stable_links();
        self.run_for(QUIET);
        let after = self.stable_links();
        let links: Vec<(End, End)> = before.intersection(&after).copied().collect();
        // Nodes reachable from the origin over links that were up the whole time.
        let mut reached = BTreeSet::from([(slot, gen)]);
        loop {
            let mut grew = false;
            for (a, b) in &links {
                let (ka, kb) = ((a.slot, a.gen), (b.slot, b.gen));
                if reached.contains(&ka) && reached.insert(kb) || reached.contains(&kb) && reached.insert(ka) {
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        assert!(self.deliveries.get(&(slot, gen, id)).is_none(), "origin {slot} got its own message back");
        for &(s, g) in &reached {
            if (s, g) == (slot, gen) {
                continue;
            }
            let got = self.deliveries.get(&(s, g, id)).map_or(0, |d| d.0);
            assert_eq!(got, 1, "slot {s} (connected to origin {slot} throughout) got message {id:?} {got} times");
        }
    }
}

fuzz_target!(|sc: Scenario| {
    let mut net = Net::new(&sc);
    let n = net.slots.len();
    for op in sc.ops.iter().take(48) {
        match *op {
            MeshOp::Join(s) => net.join(usize::from(s) % n),
            MeshOp::Leave(s) => net.leave(usize::from(s) % n),
            MeshOp::Crash { slot, reset } => net.crash(usize::from(slot) % n, reset),
            MeshOp::Send { slot, len } => net.send_and_check(usize::from(slot) % n, usize::from(len) * 64),
            MeshOp::Partition(mask) => net.partition(mask),
            MeshOp::Heal => net.heal(),
            MeshOp::Run(ms) => net.run_for(Duration::from_millis(u64::from(ms) / 2)),
        }
        if let Err(e) = net.check_invariants() {
            panic!("{e}");
        }
    }
    net.heal();
    net.run_for(Duration::from_secs(60));
    for s in 0..n {
        if net.slots[s].node.as_ref().is_some_and(|n| n.is_open()) {
            net.send_and_check(s, 100);
        }
    }
});
