//! A small in-memory network for the core's own tests: N real nodes wired through their
//! outputs, with a fixed one-way latency and in-order delivery per link. (The full simulator
//! with bandwidth, jitter, partitions and churn is the `peerchannel-sim` crate.)
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use peerchannel_core::*;

/// One-way latency of every simulated link.
pub const LATENCY: Duration = Duration::from_millis(5);

pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 8) as u8, (i & 0xff) as u8, 1], 4000))
}

fn index_of(addr: SocketAddr) -> Option<usize> {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            Some((usize::from(o[1]) << 8) | usize::from(o[2]))
        }
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Input(usize, Input),
    /// The dial of (node, link) reaches the target node.
    DialArrives {
        from: usize,
        link: LinkId,
        to: usize,
    },
}

/// See [`Net::tamper`].
pub type Tamper = Box<dyn FnMut(usize, usize, &mut bytes::BytesMut)>;

pub struct Net {
    pub nodes: Vec<Option<Node>>,
    pub now: Instant,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: BTreeMap<usize, Ev>,
    seq: u64,
    /// (node, link) -> (peer node, peer link)
    pairs: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    /// Every (node, message) delivery, with a count.
    pub deliveries: BTreeMap<(usize, MessageId), u32>,
    /// Every output of every node, for determinism checks.
    pub trace: Vec<String>,
    pub record_trace: bool,
    rng: Rng,
    /// Nodes that crash silently stop answering but their peers are not told.
    pub silent: BTreeSet<usize>,
    /// Every event of every node.
    pub observed: Vec<(usize, Event)>,
    /// Extra one-way latency of everything a node sends (links stay in order).
    pub extra_latency: BTreeMap<usize, Duration>,
    /// Called on the bytes of every flush (from, to, stream bytes), to play a hostile relay.
    pub tamper: Option<Tamper>,
}

impl Net {
    pub fn new(n: usize, seed: u64, tweak: impl Fn(&mut Config)) -> Net {
        Self::new_each(n, seed, |_, cfg| tweak(cfg))
    }

    /// Like [`Net::new`], with the node's index passed to `tweak`.
    pub fn new_each(n: usize, seed: u64, tweak: impl Fn(usize, &mut Config)) -> Net {
        let mut net = Net {
            nodes: Vec::new(),
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            pairs: BTreeMap::new(),
            deliveries: BTreeMap::new(),
            trace: Vec::new(),
            record_trace: false,
            rng: Rng::from_seed(seed ^ 0xABCD),
            silent: BTreeSet::new(),
            observed: Vec::new(),
            extra_latency: BTreeMap::new(),
            tamper: None,
        };
        for i in 0..n {
            let mut cfg = Config::new(MeshId::new("test").unwrap(), seed.wrapping_mul(1000).wrapping_add(i as u64));
            cfg.listen_addrs = vec![addr_of(i)];
            tweak(i, &mut cfg);
            let mut node = Node::new(cfg, net.now).unwrap();
            node.open_channel(ChannelPath::new("/chat").unwrap());
            net.nodes.push(Some(node));
        }
        net
    }

    pub fn open_all(&mut self, stagger: Duration) {
        for i in 0..self.nodes.len() {
            let at = self.now + stagger * i as u32;
            self.schedule(at, Ev::Input(i, Input::Open));
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        let k = self.seq as usize;
        self.seq += 1;
        self.events.insert(k, ev);
        self.queue.push(Reverse((at, k as u64, k)));
    }

    fn next_timeout(&self) -> Option<(Instant, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.silent.contains(i))
            .filter_map(|(i, n)| Some((n.as_ref()?.poll_timeout()?, i)))
            .min()
    }

    /// Runs until virtual time `until`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        loop {
            let ev_at = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let to = self.next_timeout();
            let take_timer = match (ev_at, to) {
                (None, None) => break,
                (Some(e), Some((t, _))) => t < e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if take_timer {
                let (t, i) = to.unwrap();
                if t > until {
                    break;
                }
                self.now = self.now.max(t);
                self.nodes[i].as_mut().unwrap().handle_timeout(self.now);
                self.drain(i);
            } else {
                let Reverse((t, _, k)) = *self.queue.peek().unwrap();
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

    fn apply(&mut self, ev: Ev) {
        match ev {
            Ev::Input(i, input) => {
                if self.silent.contains(&i) {
                    return;
                }
                let Some(node) = self.nodes[i].as_mut() else { return };
                node.handle_input(self.now, input);
                self.drain(i);
            }
            Ev::DialArrives { from, link, to } => {
                let alive = self.nodes.get(to).is_some_and(|n| n.is_some()) && !self.silent.contains(&to);
                let accepted = if alive {
                    let remote =
                        SocketAddr::from(([192, 168, (from >> 8) as u8, (from & 0xff) as u8], 50000 + link.0 as u16));
                    self.nodes[to].as_mut().unwrap().accept(self.now, remote).ok()
                } else {
                    None
                };
                match accepted {
                    Some(peer_link) => {
                        self.pairs.insert((from, link), (to, peer_link));
                        self.pairs.insert((to, peer_link), (from, link));
                        // The dialer learns it is connected before the acceptor's first bytes arrive.
                        self.schedule(self.now + LATENCY, Ev::Input(from, Input::LinkConnected { link }));
                        self.drain(to);
                    }
                    None => self.schedule(
                        self.now + LATENCY,
                        Ev::Input(from, Input::DialFailed { link, error: ErrorKind::ConnectionRefused }),
                    ),
                }
            }
        }
    }

    /// Carries out every pending output of node `i`.
    pub fn drain(&mut self, i: usize) {
        loop {
            let Some(out) = self.nodes[i].as_mut().and_then(|n| n.poll_output()) else { break };
            if self.record_trace {
                self.trace.push(format!("{:?} {i} {out:?}", self.now));
            }
            match out {
                Output::Dial { link, addr } => {
                    let to = index_of(addr).filter(|t| *t < self.nodes.len()).unwrap_or(usize::MAX);
                    self.schedule(self.now + LATENCY, Ev::DialArrives { from: i, link, to });
                }
                Output::Transmit { link } => self.flush(i, link),
                Output::CloseLink { link, .. } => {
                    self.flush(i, link);
                    if let Some((p, pl)) = self.pairs.remove(&(i, link)) {
                        self.pairs.remove(&(p, pl));
                        // After the link's last bytes, which may travel slower.
                        let at = self.now + LATENCY + self.extra_latency.get(&i).copied().unwrap_or_default();
                        self.schedule(at, Ev::Input(p, Input::LinkClosed { link: pl, error: None }));
                    }
                }
                Output::Deliver(m) => {
                    *self.deliveries.entry((i, m.id)).or_default() += 1;
                }
                Output::Resolve { id, max_addresses, .. } => {
                    let live: Vec<usize> = (0..self.nodes.len())
                        .filter(|j| *j != i && self.nodes[*j].as_ref().is_some_and(|n| n.is_open()))
                        .collect();
                    let mut addrs: Vec<SocketAddr> = live.iter().map(|j| addr_of(*j)).collect();
                    self.rng.sample_in_place(&mut addrs, max_addresses);
                    addrs.truncate(max_addresses);
                    self.schedule(self.now + LATENCY * 2, Ev::Input(i, Input::Resolved { id, addrs }));
                }
                Output::Event(e) => self.observed.push((i, e)),
            }
        }
    }

    fn flush(&mut self, i: usize, link: LinkId) {
        let mut chunks = Vec::new();
        while let Some(b) = self.nodes[i].as_mut().and_then(|n| n.poll_transmit(link, usize::MAX)) {
            chunks.push(b);
        }
        if chunks.is_empty() {
            return;
        }
        if let Some(&(p, pl)) = self.pairs.get(&(i, link)) {
            let mut all = bytes::BytesMut::new();
            for c in chunks {
                all.extend_from_slice(&c);
            }
            if let Some(t) = self.tamper.as_mut() {
                t(i, p, &mut all);
            }
            let at = self.now + LATENCY + self.extra_latency.get(&i).copied().unwrap_or_default();
            self.schedule(at, Ev::Input(p, Input::Received { link: pl, data: all.freeze() }));
        }
    }

    /// Sends a flood from node `i` on /chat.
    pub fn send(&mut self, i: usize, payload: &[u8]) -> MessageId {
        let path = ChannelPath::new("/chat").unwrap();
        let id = self.nodes[i].as_mut().unwrap().send(self.now, &path, Bytes::copy_from_slice(payload)).unwrap();
        self.drain(i);
        id
    }

    /// Kills node `i`: its peers see a connection reset.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        let links: Vec<(usize, LinkId)> = self.pairs.keys().filter(|(n, _)| *n == i).copied().collect();
        for key in links {
            if let Some((p, pl)) = self.pairs.remove(&key) {
                self.pairs.remove(&(p, pl));
                self.schedule(
                    self.now + LATENCY,
                    Ev::Input(p, Input::LinkClosed { link: pl, error: Some(ErrorKind::ConnectionReset) }),
                );
            }
        }
    }

    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.nodes[*i].is_some() && !self.silent.contains(i)).collect()
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    /// The nodes `i` has as neighbors now, in ascending order.
    pub fn neighbors_of(&self, i: usize) -> Vec<usize> {
        let mut out: Vec<usize> =
            self.node(i).neighbors().iter().filter_map(|nb| self.pairs.get(&(i, nb.link)).map(|(j, _)| *j)).collect();
        out.sort();
        out
    }

    /// Connected components of the neighbor graph among live nodes.
    pub fn components(&self) -> usize {
        let alive = self.alive();
        let mut parent: BTreeMap<usize, usize> = alive.iter().map(|i| (*i, *i)).collect();
        fn find(p: &mut BTreeMap<usize, usize>, x: usize) -> usize {
            let mut r = x;
            while p[&r] != r {
                r = p[&r];
            }
            p.insert(x, r);
            r
        }
        for &i in &alive {
            for j in self.neighbors_of(i) {
                if !parent.contains_key(&j) {
                    continue;
                }
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent.insert(a, b);
                }
            }
        }
        let roots: BTreeSet<usize> = alive.iter().map(|i| find(&mut parent, *i)).collect();
        roots.len()
    }

    /// How many live nodes (other than the origin) got message `id`, and the most copies any got.
    pub fn delivery_of(&self, id: MessageId, origin: usize) -> (usize, u32) {
        let mut got = 0;
        let mut most = 0;
        for i in self.alive() {
            if i == origin {
                continue;
            }
            if let Some(c) = self.deliveries.get(&(i, id)) {
                got += 1;
                most = most.max(*c);
            }
        }
        (got, most)
    }
}
pub mod frames;
pub mod pki;
