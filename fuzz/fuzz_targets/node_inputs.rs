//! `node_inputs`: an arbitrary sequence of inputs to one node.
//!
//! The fuzzer picks a configuration (small bounds, so the limits are reached) and a sequence of
//! operations: accepted connections, dial outcomes, closed links, well-formed frames built from
//! arbitrary fields (handshakes, referrals, reports, pings, recovery digests and wants, floods with arbitrary hops, IDs,
//! paths and payload sizes), several frames in one read, raw bytes, frames cut at arbitrary
//! points, local sends, resolver replies and failures, time jumps, partial drains, channel
//! changes, open and close.
//!
//! After every step:
//! - `check_invariants()` holds (neighbors ≤ max, seen cache ≤ capacity, every send queue ≤ its
//!   bound, inbound handshakes ≤ their bound, reassembly ≤ one frame, referral cache ≤ its size);
//! - no message is delivered twice while the seen cache still guarantees to remember it (less
//!   than `seen_ttl` since the first delivery and no early eviction since), and no echo of the
//!   node's own send is delivered;
//! - deliveries are only for channels that are open, with a hop count within the hop limit;
//! - everything the node transmits on any link decodes as valid frames (the node never sends
//!   what it would itself reject);
//! - after `handle_timeout(now)`, the next deadline is in the future.
#![no_main]

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use peerchannel_core::wire::{
    decode_frame, encode_control, encode_flood_header, max_frame_len, split_frame, Connect, Disconnect, Frame, Hello,
    LinkUtilityReport, Referral, Refuse, Welcome, MAX_ID_LIST, VERSION,
};
use peerchannel_core::{
    ChannelPath, CloseReason, Config, Input, Instant, LinkId, MeshId, MessageId, Node, NodeId, Output,
};

const ME: u64 = 3;
const PATHS: [&str; 3] = ["/chat", "/other", "/chat/sub"];

#[derive(Arbitrary, Debug)]
struct Knobs {
    seed: u64,
    /// min / ideal / max neighbors: (1,1,1), (1,2,3), (2,3,4), (2,3,7).
    counts: u8,
    /// Seen cache capacity: 4, 16 or the default.
    seen: u8,
    /// Link queue: the smallest valid one or 64 KiB.
    small_queue: bool,
    /// Bootstrap addresses (else the node asks the resolver).
    bootstrap: bool,
    listen: bool,
    /// Recovery of recent floods on (the default) or off.
    no_recovery: bool,
    /// Per-neighbor flood rate: 0 = no limit, else 1..=8 floods a second.
    flood_rate: u8,
    /// Handshakes per remote IP: 1..=4.
    per_ip: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Open,
    Close,
    Accept {
        host: u8,
        port: u16,
    },
    Connected(u8),
    DialFailed(u8),
    Closed {
        link: u8,
        error: bool,
    },
    Frame {
        link: u8,
        frame: FrameSpec,
    },
    /// Several frames in one read.
    Frames {
        link: u8,
        frames: Vec<FrameSpec>,
    },
    Raw {
        link: u8,
        bytes: Vec<u8>,
    },
    /// Frames cut at arbitrary points, each piece a separate read, or all the pieces one
    /// input of several buffers (`Input::ReceivedChunks`).
    Split {
        link: u8,
        frames: Vec<FrameSpec>,
        cuts: Vec<u16>,
        in_one_input: bool,
    },
    Send {
        path: u8,
        len: u16,
    },
    Resolved {
        id: u8,
        addrs: Vec<AddrSpec>,
    },
    ResolveFailed {
        id: u8,
    },
    Advance {
        millis: u32,
    },
    Timeout,
    Drain {
        link: u8,
        max: u16,
    },
    DrainAll,
    OpenChannel(u8),
    CloseChannel(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum FrameSpec {
    Hello(HelloKind),
    Connect {
        node: NodeSel,
        addrs: Vec<AddrSpec>,
    },
    Welcome {
        node: NodeSel,
        referrals: Vec<(NodeSel, AddrSpec)>,
    },
    Refuse {
        reason: u8,
        referrals: Vec<(NodeSel, AddrSpec)>,
    },
    Disconnect {
        reason: u8,
        referrals: Vec<(NodeSel, AddrSpec)>,
    },
    Utility {
        useful: u32,
        total: u32,
    },
    Ping(u64),
    Pong(u64),
    /// Recovery: the IDs a neighbor offers, or wants resent (up to one more than allowed).
    Digest(Vec<IdSel>),
    Want(Vec<IdSel>),
    Flood {
        hops_left: u8,
        hop_limit: u8,
        id: IdSel,
        origin: NodeSel,
        path: PathSel,
        payload: u16,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum HelloKind {
    Good,
    WrongMesh,
    Version(u8),
    Security(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum NodeSel {
    /// One of node IDs 1..=8 (3 is the node's own).
    Small(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum IdSel {
    /// One of 16 IDs, so duplicates and replays are common.
    Small(u8),
    Any([u8; 16]),
}

#[derive(Arbitrary, Debug, Clone)]
enum PathSel {
    Known(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum AddrSpec {
    Small(u8),
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl NodeSel {
    fn get(self) -> NodeId {
        let n = match self {
            NodeSel::Small(n) => u64::from(n % 8) + 1,
            NodeSel::Any(n) => n,
        };
        NodeId::new(n).unwrap_or(NodeId::new(1).unwrap())
    }
}

impl IdSel {
    fn get(self) -> [u8; 16] {
        match self {
            IdSel::Small(n) => [n % 16; 16],
            IdSel::Any(id) => id,
        }
    }
}

impl AddrSpec {
    fn get(self) -> SocketAddr {
        match self {
            AddrSpec::Small(n) => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n % 8)), 4000),
            AddrSpec::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            AddrSpec::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        }
    }
}

fn referrals(refs: &[(NodeSel, AddrSpec)]) -> Vec<Referral> {
    // Up to 11: one more than the protocol allows, so the limit is exercised.
    refs.iter().take(11).map(|(n, a)| Referral { node: n.get(), addr: a.get() }).collect()
}

fn encode(spec: &FrameSpec, out: &mut BytesMut) {
    let frame = match spec {
        FrameSpec::Hello(kind) => {
            let (mesh, version, security) = match *kind {
                HelloKind::Good => ("m", VERSION, 0),
                HelloKind::WrongMesh => ("elsewhere", VERSION, 0),
                HelloKind::Version(v) => ("m", v, 0),
                HelloKind::Security(s) => ("m", VERSION, s),
            };
            Frame::Hello(Hello { version, security, mesh: MeshId::new(mesh).unwrap() })
        }
        FrameSpec::Connect { node, addrs } => {
            Frame::Connect(Connect { node: node.get(), addrs: addrs.iter().take(9).map(|a| a.get()).collect() })
        }
        FrameSpec::Welcome { node, referrals: r } => {
            Frame::Welcome(Welcome { node: node.get(), referrals: referrals(r) })
        }
        FrameSpec::Refuse { reason, referrals: r } => Frame::Refuse(Refuse {
            reason: CloseReason::from_code(*reason).filter(|r| Refuse::allowed(*r)).unwrap_or(CloseReason::NodeBusy),
            referrals: referrals(r),
        }),
        FrameSpec::Disconnect { reason, referrals: r } => Frame::Disconnect(Disconnect {
            reason: CloseReason::from_code(*reason).unwrap_or(CloseReason::LeavingMesh),
            referrals: referrals(r),
        }),
        FrameSpec::Utility { useful, total } => {
            Frame::LinkUtility(LinkUtilityReport { useful: (*useful).min(*total), total: *total })
        }
        FrameSpec::Ping(n) => Frame::Ping(*n),
        FrameSpec::Pong(n) => Frame::Pong(*n),
        FrameSpec::Digest(ids) => Frame::Digest(ids.iter().take(MAX_ID_LIST + 1).map(|i| MessageId(i.get())).collect()),
        FrameSpec::Want(ids) => Frame::Want(ids.iter().take(MAX_ID_LIST + 1).map(|i| MessageId(i.get())).collect()),
        FrameSpec::Flood { hops_left, hop_limit, id, origin, path, payload } => {
            let id = id.get();
            let path: &[u8] = match path {
                PathSel::Known(n) => PATHS[usize::from(*n) % PATHS.len()].as_bytes(),
                PathSel::Raw(p) => &p[..p.len().min(5000)],
            };
            // Payloads up to 20 KiB: the configured limit (16 KiB) is crossed both ways.
            let len = usize::from(*payload) % (20 * 1024);
            encode_flood_header(*hops_left, *hop_limit, &id, origin.get().get(), path, len, out);
            out.put_bytes(0xAB, len);
            return;
        }
    };
    encode_control(&frame, out);
}

struct Driver {
    node: Node,
    now: Instant,
    links: Vec<LinkId>,
    /// Bytes the node transmitted on each link and that do not yet form a whole frame.
    sent: BTreeMap<LinkId, BytesMut>,
    /// First delivery of each message: when, and the seen cache's early evictions then.
    delivered: BTreeMap<MessageId, (Instant, u64)>,
    /// Messages this node sent: when, and the early evictions then.
    own: BTreeMap<MessageId, (Instant, u64)>,
    channels: [bool; PATHS.len()],
    max_frame: usize,
    seen_ttl: Duration,
    /// Early evictions before the current step. A delivery is recorded with this, not with the
    /// count when outputs are drained: one read may hold many floods, and those after a
    /// delivered one may evict it within the same step, so a replay later in that read is
    /// legitimately new again.
    evicted_before_step: u64,
}

impl Driver {
    fn link(&self, i: u8) -> Option<LinkId> {
        (!self.links.is_empty()).then(|| self.links[usize::from(i) % self.links.len()])
    }

    /// Whether the seen cache still guarantees to remember an ID recorded at `at` with
    /// `evicted` early evictions so far.
    fn remembered(&self, at: Instant, evicted: u64) -> bool {
        self.now.saturating_duration_since(at) < self.seen_ttl && self.node.stats().seen_evicted_early == evicted
    }

    fn check_sent(&mut self, link: LinkId, chunk: &[u8]) {
        let buf = self.sent.entry(link).or_default();
        buf.extend_from_slice(chunk);
        loop {
            let mut whole = Bytes::copy_from_slice(buf);
            let before = whole.len();
            match split_frame(&mut whole, self.max_frame) {
                Ok(Some(frame)) => {
                    if let Err(e) = decode_frame(&frame) {
                        panic!("node sent an undecodable frame on {link:?}: {e} ({frame:?})");
                    }
                    let _ = buf.split_to(before - whole.len());
                }
                Ok(None) => break,
                Err(e) => panic!("node sent a bad frame header on {link:?}: {e}"),
            }
        }
    }

    fn pull(&mut self, link: LinkId, max: usize) {
        while let Some(chunk) = self.node.poll_transmit(link, max) {
            assert!(!chunk.is_empty() && chunk.len() <= max, "poll_transmit gave {} bytes for max {max}", chunk.len());
            self.check_sent(link, &chunk);
            if max != usize::MAX {
                break;
            }
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Dial { link, .. } => self.links.push(link),
                Output::Deliver(m) => {
                    let k = PATHS.iter().position(|p| *p == m.path.as_str()).expect("delivered on an unknown path");
                    assert!(self.channels[k], "delivered on closed channel {}", m.path.as_str());
                    assert!(m.hops >= 1, "hop count 0");
                    if let Some(&(at, evicted)) = self.own.get(&m.id) {
                        assert!(!self.remembered(at, evicted), "echo of own message {:?} delivered", m.id);
                    }
                    let evicted = self.evicted_before_step;
                    if let Some(&(at, before)) = self.delivered.get(&m.id) {
                        assert!(!self.remembered(at, before), "message {:?} delivered twice", m.id);
                    }
                    self.delivered.insert(m.id, (self.now, evicted));
                }
                Output::CloseLink { link, .. } => self.pull(link, usize::MAX),
                Output::Transmit { .. } | Output::Resolve { .. } | Output::Event(_) => {}
            }
        }
    }

    fn feed(&mut self, link: LinkId, data: Bytes) {
        self.node.handle_input(self.now, Input::Received { link, data });
        self.drain_outputs();
        self.check();
    }

    fn check(&self) {
        if let Err(e) = self.node.check_invariants() {
            panic!("invariant broken: {e}");
        }
    }

    fn step(&mut self, op: Op) {
        self.evicted_before_step = self.node.stats().seen_evicted_early;
        self.now = self.now + Duration::from_micros(100);
        let now = self.now;
        match op {
            Op::Open => self.node.handle_input(now, Input::Open),
            Op::Close => self.node.handle_input(now, Input::Close),
            Op::Accept { host, port } => {
                let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, host % 8)), port);
                if let Ok(l) = self.node.accept(now, remote) {
                    assert!(!self.links.contains(&l), "link handle {l:?} reused");
                    self.links.push(l);
                }
            }
            Op::Connected(i) => {
                if let Some(link) = self.link(i) {
                    self.node.handle_input(now, Input::LinkConnected { link });
                }
            }
            Op::DialFailed(i) => {
                if let Some(link) = self.link(i) {
                    self.node.handle_input(now, Input::DialFailed { link, error: ErrorKind::ConnectionRefused });
                }
            }
            Op::Closed { link, error } => {
                if let Some(link) = self.link(link) {
                    let error = error.then_some(ErrorKind::ConnectionReset);
                    self.node.handle_input(now, Input::LinkClosed { link, error });
                }
            }
            Op::Frame { link, frame } => {
                if let Some(link) = self.link(link) {
                    let mut out = BytesMut::new();
                    encode(&frame, &mut out);
                    self.feed(link, out.freeze());
                }
            }
            Op::Frames { link, frames } => {
                if let Some(link) = self.link(link) {
                    let mut out = BytesMut::new();
                    for f in frames.iter().take(64) {
                        encode(f, &mut out);
                    }
                    self.feed(link, out.freeze());
                }
            }
            Op::Raw { link, bytes } => {
                if let Some(link) = self.link(link) {
                    self.feed(link, Bytes::from(bytes));
                }
            }
            Op::Split { link, frames, cuts, in_one_input } => {
                if let Some(link) = self.link(link) {
                    let mut out = BytesMut::new();
                    for f in frames.iter().take(16) {
                        encode(f, &mut out);
                    }
                    let all = out.freeze();
                    let mut points: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % (all.len() + 1)).collect();
                    points.push(all.len());
                    points.sort_unstable();
                    let mut from = 0;
                    let mut chunks = smallvec::SmallVec::new();
                    for to in points {
                        if in_one_input {
                            chunks.push(all.slice(from..to));
                        } else {
                            self.feed(link, all.slice(from..to));
                        }
                        from = to;
                    }
                    if in_one_input {
                        self.node.handle_input(self.now, Input::ReceivedChunks { link, chunks });
                        self.drain_outputs();
                        self.check();
                    }
                }
            }
            Op::Send { path, len } => {
                let k = usize::from(path) % PATHS.len();
                let p = ChannelPath::new(PATHS[k]).unwrap();
                let evicted = self.node.stats().seen_evicted_early;
                if let Ok(id) = self.node.send(now, &p, Bytes::from(vec![7u8; usize::from(len) % (20 * 1024)])) {
                    assert!(self.own.insert(id, (now, evicted)).is_none(), "send reused message ID {id:?}");
                }
            }
            Op::Resolved { id, addrs } => {
                let addrs = addrs.iter().take(64).map(|a| a.get()).collect();
                self.node.handle_input(now, Input::Resolved { id: u64::from(id % 8), addrs });
            }
            Op::ResolveFailed { id } => self.node.handle_input(now, Input::ResolveFailed { id: u64::from(id % 8) }),
            Op::Advance { millis } => {
                // Up to about 70 minutes per jump.
                self.now = now + Duration::from_millis(u64::from(millis % (1 << 22)));
                self.node.handle_timeout(self.now);
                self.after_timeout();
            }
            Op::Timeout => {
                if let Some(t) = self.node.poll_timeout() {
                    self.now = self.now.max(t);
                    self.node.handle_timeout(self.now);
                    self.after_timeout();
                }
            }
            Op::Drain { link, max } => {
                if let Some(link) = self.link(link) {
                    self.pull(link, usize::from(max).max(1));
                }
            }
            Op::DrainAll => {
                for link in self.links.clone() {
                    self.pull(link, usize::MAX);
                }
            }
            Op::OpenChannel(k) => {
                let k = usize::from(k) % PATHS.len();
                self.node.open_channel(ChannelPath::new(PATHS[k]).unwrap());
                self.channels[k] = true;
            }
            Op::CloseChannel(k) => {
                let k = usize::from(k) % PATHS.len();
                self.node.close_channel(&ChannelPath::new(PATHS[k]).unwrap());
                self.channels[k] = false;
            }
        }
        self.drain_outputs();
        self.check();
    }

    fn after_timeout(&mut self) {
        self.drain_outputs();
        if let Some(t) = self.node.poll_timeout() {
            assert!(t > self.now, "deadline {t:?} not after handle_timeout({:?})", self.now);
        }
    }
}

fuzz_target!(|input: (Knobs, Vec<Op>)| {
    let (knobs, ops) = input;
    let mut cfg = Config::new(MeshId::new("m").unwrap(), knobs.seed);
    cfg.node_id = NodeId::new(ME);
    (cfg.min_neighbors, cfg.ideal_neighbors, cfg.max_neighbors) = match knobs.counts % 4 {
        0 => (1, 1, 1),
        1 => (1, 2, 3),
        2 => (2, 3, 4),
        _ => (2, 3, 7),
    };
    cfg.max_inbound_handshakes = 4;
    cfg.seen_capacity = match knobs.seen % 3 {
        0 => 4,
        1 => 16,
        _ => cfg.seen_capacity,
    };
    cfg.max_message_size = 16 * 1024;
    cfg.link_queue_bytes = if knobs.small_queue { 4 + max_frame_len(16 * 1024) } else { 64 * 1024 };
    if knobs.bootstrap {
        cfg.bootstrap = vec!["10.0.0.1:4000".parse().unwrap(), "10.0.0.2:4000".parse().unwrap()];
    }
    if knobs.no_recovery {
        cfg.recovery_window = None;
    }
    cfg.recovery_store_bytes = 64 * 1024;
    cfg.max_floods_per_neighbor_per_sec = (knobs.flood_rate % 9 != 0).then_some(u32::from(knobs.flood_rate % 9));
    cfg.max_handshakes_per_ip = usize::from(knobs.per_ip % 4) + 1;
    if knobs.listen {
        cfg.listen_addrs = vec!["10.0.0.3:4000".parse().unwrap()];
    }
    let max_frame = max_frame_len(cfg.max_message_size);
    let seen_ttl = cfg.seen_ttl;
    let mut node = Node::new(cfg, Instant::ZERO).expect("valid config");
    node.open_channel(ChannelPath::new("/chat").unwrap());
    let mut d = Driver {
        node,
        now: Instant::ZERO,
        links: Vec::new(),
        sent: BTreeMap::new(),
        delivered: BTreeMap::new(),
        own: BTreeMap::new(),
        channels: [true, false, false],
        max_frame,
        seen_ttl,
        evicted_before_step: 0,
    };
    d.node.handle_input(Instant::ZERO, Input::Open);
    d.drain_outputs();
    for op in ops.into_iter().take(512) {
        d.step(op);
    }
    d.node.handle_timeout(d.now);
    d.after_timeout();
});
