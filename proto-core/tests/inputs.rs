//! Property tests: arbitrary input sequences (arbitrary bytes on links included) never panic a
//! node, and its invariants hold after every step.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use peerchannel_core::wire::*;
use peerchannel_core::*;
use proptest::prelude::*;
use smallvec::smallvec;

#[derive(Clone, Debug)]
enum Op {
    Accept(u8),
    Connected(u8),
    DialFailed(u8),
    Closed(u8, bool),
    /// Well-formed frame (chosen by the selector) on a link.
    Frame(u8, FrameKind),
    /// Arbitrary bytes on a link.
    Garbage(u8, Vec<u8>),
    /// A frame cut at an arbitrary point, rest sent later.
    Split(u8, FrameKind, u16),
    Send(u16),
    Drain(u8, u16),
    Advance(u32),
    Resolved(u8),
    Close,
}

#[derive(Clone, Debug)]
enum FrameKind {
    Hello,
    Connect(u64),
    Welcome(u64),
    Refuse(u8),
    Disconnect(u8),
    Utility(u32, u32),
    Ping(u64),
    Flood(u8, u8, u8, bool),
    Digest(Vec<u8>),
    Want(Vec<u8>),
}

fn frame_kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        3 => Just(FrameKind::Hello),
        3 => (1u64..6).prop_map(FrameKind::Connect),
        2 => (1u64..6).prop_map(FrameKind::Welcome),
        1 => (1u8..17).prop_map(FrameKind::Refuse),
        1 => (1u8..17).prop_map(FrameKind::Disconnect),
        1 => (0u32..40, 0u32..40).prop_map(|(a, b)| FrameKind::Utility(a, b)),
        1 => any::<u64>().prop_map(FrameKind::Ping),
        6 => (any::<u8>(), 0u8..4, 0u8..6, any::<bool>()).prop_map(|(id, h, l, chat)| FrameKind::Flood(id, h, l, chat)),
        1 => proptest::collection::vec(any::<u8>(), 0..5).prop_map(FrameKind::Digest),
        1 => proptest::collection::vec(any::<u8>(), 0..5).prop_map(FrameKind::Want),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u8>().prop_map(Op::Accept),
        2 => any::<u8>().prop_map(Op::Connected),
        1 => any::<u8>().prop_map(Op::DialFailed),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(l, e)| Op::Closed(l, e)),
        10 => (any::<u8>(), frame_kind()).prop_map(|(l, f)| Op::Frame(l, f)),
        2 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(l, b)| Op::Garbage(l, b)),
        2 => (any::<u8>(), frame_kind(), any::<u16>()).prop_map(|(l, f, c)| Op::Split(l, f, c)),
        3 => (0u16..3000).prop_map(Op::Send),
        3 => (any::<u8>(), any::<u16>()).prop_map(|(l, m)| Op::Drain(l, m)),
        4 => (0u32..20_000).prop_map(Op::Advance),
        1 => (0u8..5).prop_map(Op::Resolved),
        1 => Just(Op::Close),
    ]
}

fn encode_kind(k: &FrameKind) -> Bytes {
    let mut out = BytesMut::new();
    let nid = |n: u64| NodeId::new(n).unwrap();
    let f = match *k {
        FrameKind::Hello => Frame::Hello(Hello { version: VERSION, security: 0, mesh: MeshId::new("m").unwrap() }),
        FrameKind::Connect(n) => Frame::Connect(Connect { node: nid(n), addrs: smallvec![] }),
        FrameKind::Welcome(n) => Frame::Welcome(Welcome {
            node: nid(n),
            referrals: vec![Referral { node: nid(n + 10), addr: "10.1.1.1:1".parse().unwrap() }],
        }),
        FrameKind::Refuse(r) => Frame::Refuse(Refuse {
            reason: CloseReason::from_code(r).filter(|r| Refuse::allowed(*r)).unwrap_or(CloseReason::NodeBusy),
            referrals: vec![],
        }),
        FrameKind::Disconnect(r) => Frame::Disconnect(Disconnect {
            reason: CloseReason::from_code(r).unwrap_or(CloseReason::LeavingMesh),
            referrals: vec![],
        }),
        FrameKind::Utility(a, b) => Frame::LinkUtility(LinkUtilityReport { useful: a.min(b), total: b }),
        FrameKind::Ping(n) => Frame::Ping(n),
        FrameKind::Digest(ref ids) => Frame::Digest(ids.iter().map(|i| MessageId([*i; 16])).collect()),
        FrameKind::Want(ref ids) => Frame::Want(ids.iter().map(|i| MessageId([*i; 16])).collect()),
        FrameKind::Flood(id, hops, extra, chat) => {
            let h = hops.max(1);
            encode_flood_header(h, h + extra, &[id; 16], 99, if chat { b"/chat" } else { b"/other" }, 3, &mut out);
            out.put_slice(b"abc");
            return out.freeze();
        }
    };
    encode_control(&f, &mut out);
    out.freeze()
}

struct Driver {
    node: Node,
    now: Instant,
    links: Vec<LinkId>,
    delivered: BTreeSet<MessageId>,
}

impl Driver {
    fn link(&self, i: u8) -> Option<LinkId> {
        if self.links.is_empty() {
            None
        } else {
            Some(self.links[usize::from(i) % self.links.len()])
        }
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Dial { link, .. } => self.links.push(link),
                Output::Deliver(m) => {
                    prop_assert!(self.delivered.insert(m.id), "message {:?} delivered twice", m.id);
                    prop_assert_eq!(m.path.as_str(), "/chat");
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        self.now = self.now + Duration::from_micros(100);
        let now = self.now;
        match op {
            Op::Accept(i) => {
                if let Ok(l) = self.node.accept(now, format!("10.0.0.{i}:9").parse().unwrap()) {
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
                    self.node
                        .handle_input(now, Input::DialFailed { link, error: std::io::ErrorKind::ConnectionRefused });
                }
            }
            Op::Closed(i, err) => {
                if let Some(link) = self.link(i) {
                    let error = err.then_some(std::io::ErrorKind::ConnectionReset);
                    self.node.handle_input(now, Input::LinkClosed { link, error });
                }
            }
            Op::Frame(i, k) => {
                if let Some(link) = self.link(i) {
                    self.node.handle_input(now, Input::Received { link, data: encode_kind(&k) });
                }
            }
            Op::Garbage(i, b) => {
                if let Some(link) = self.link(i) {
                    self.node.handle_input(now, Input::Received { link, data: Bytes::from(b) });
                }
            }
            Op::Split(i, k, cut) => {
                if let Some(link) = self.link(i) {
                    let b = encode_kind(&k);
                    let c = usize::from(cut) % (b.len() + 1);
                    self.node.handle_input(now, Input::Received { link, data: b.slice(..c) });
                    self.drain()?;
                    self.node.check_invariants().map_err(TestCaseError::fail)?;
                    self.node.handle_input(now, Input::Received { link, data: b.slice(c..) });
                }
            }
            Op::Send(n) => {
                let path = ChannelPath::new("/chat").unwrap();
                let _ = self.node.send(now, &path, Bytes::from(vec![7u8; usize::from(n)]));
            }
            Op::Drain(i, max) => {
                if let Some(link) = self.link(i) {
                    let _ = self.node.poll_transmit(link, usize::from(max));
                }
            }
            Op::Advance(ms) => {
                self.now = now + Duration::from_millis(u64::from(ms));
                self.node.handle_timeout(self.now);
            }
            Op::Resolved(n) => {
                let addrs = (0..n).map(|i| format!("10.2.0.{i}:7").parse().unwrap()).collect();
                // Request IDs start at 1 and count up; any of the first few may be pending.
                for id in 1..4 {
                    self.node.handle_input(now, Input::Resolved { id, addrs: Vec::clone(&addrs) });
                }
            }
            Op::Close => self.node.handle_input(now, Input::Close),
        }
        self.drain()?;
        self.node.check_invariants().map_err(TestCaseError::fail)?;
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_inputs_never_break_a_node(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>()) {
        let mut cfg = Config::new(MeshId::new("m").unwrap(), seed);
        cfg.node_id = NodeId::new(3);
        cfg.max_neighbors = 4;
        cfg.ideal_neighbors = 3;
        cfg.max_inbound_handshakes = 4;
        cfg.seen_capacity = 16;
        cfg.max_message_size = 16 * 1024;
        cfg.link_queue_bytes = 24 * 1024;
        cfg.bootstrap = vec!["10.3.0.1:1".parse().unwrap(), "10.3.0.2:1".parse().unwrap()];
        let mut node = Node::new(cfg, Instant::ZERO).unwrap();
        node.open_channel(ChannelPath::new("/chat").unwrap());
        node.handle_input(Instant::ZERO, Input::Open);
        let mut d = Driver { node, now: Instant::ZERO, links: Vec::new(), delivered: BTreeSet::new() };
        d.drain()?;
        for op in ops {
            d.step(op)?;
        }
        // The node never holds a deadline it was already asked to handle.
        d.node.handle_timeout(d.now);
        prop_assert!(d.node.poll_timeout().is_none_or(|t| t > d.now));
    }
}
