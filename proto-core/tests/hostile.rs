//! Hostile and malformed input: each case closes only the offending link, with the expected
//! typed reason, and the node keeps serving its healthy neighbor.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use peerchannel_core::wire::*;
use peerchannel_core::*;
use smallvec::smallvec;

mod support;
use support::frames::{cat, connect, frame, hello, nid, raw};

const ME: u64 = 0x1000;
const HEALTHY: u64 = 0x2000;
const HOSTILE: u64 = 0x3000;

fn flood(hops_left: u8, hop_limit: u8, id: u8, path: &[u8], payload: Bytes) -> Bytes {
    let mut out = BytesMut::new();
    encode_flood_header(hops_left, hop_limit, &[id; 16], 77, path, payload.len(), &mut out);
    out.put_slice(&payload);
    out.freeze()
}

struct Fixture {
    node: Node,
    now: Instant,
    healthy: LinkId,
    outputs: Vec<Output>,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(|_| {})
    }

    fn with(tweak: impl Fn(&mut Config)) -> Fixture {
        let mut cfg = Config::new(MeshId::new("soccerpals").unwrap(), 1);
        tweak(&mut cfg);
        cfg.node_id = Some(nid(ME));
        cfg.listen_addrs = vec!["10.0.0.1:4000".parse().unwrap()];
        let mut node = Node::new(cfg, Instant::ZERO).unwrap();
        node.open_channel(ChannelPath::new("/chat").unwrap());
        node.handle_input(Instant::ZERO, Input::Open);
        let mut f = Fixture { node, now: Instant::from_millis(1), healthy: LinkId(0), outputs: Vec::new() };
        f.drain();
        f.healthy = f.inbound(HEALTHY);
        f
    }

    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            self.outputs.push(o);
        }
    }

    fn feed(&mut self, link: LinkId, data: Bytes) {
        self.now = self.now + std::time::Duration::from_millis(1);
        self.node.handle_input(self.now, Input::Received { link, data });
        self.drain();
    }

    /// An accepted link whose peer completed the handshake as `node_id`.
    fn inbound(&mut self, node_id: u64) -> LinkId {
        let remote: SocketAddr = format!("10.9.0.{}:5000", node_id % 200).parse().unwrap();
        let link = self.node.accept(self.now, remote).unwrap();
        self.feed(link, cat(&[hello("soccerpals"), connect(node_id)]));
        assert!(self.node.neighbors().iter().any(|n| n.link == link), "handshake of {node_id:x} failed");
        link
    }

    /// An accepted link that has only been opened (nothing received yet).
    fn fresh(&mut self) -> LinkId {
        self.node.accept(self.now, "10.9.9.9:5000".parse().unwrap()).unwrap()
    }

    fn closed_reason(&self, link: LinkId) -> Option<CloseReason> {
        self.outputs.iter().find_map(|o| match o {
            Output::CloseLink { link: l, reason } if *l == link => Some(*reason),
            _ => None,
        })
    }

    fn healthy_still_works(&mut self, tag: u8) {
        assert!(self.node.neighbors().iter().any(|n| n.link == self.healthy), "healthy neighbor lost");
        let before = self.node.stats().delivered;
        let healthy = self.healthy;
        self.feed(healthy, flood(3, 8, tag, b"/chat", Bytes::from_static(b"still here")));
        assert_eq!(self.node.stats().delivered, before + 1, "node stopped delivering");
        self.node.check_invariants().unwrap();
    }
}

enum Phase {
    /// Bytes are the first thing the peer sends after the transport connected.
    Fresh,
    /// Bytes follow a good Hello.
    AfterHello,
    /// Bytes follow a complete handshake.
    Connected,
}

#[test]
fn hostile_frames_close_only_the_offending_link() {
    let big_payload = Bytes::from(vec![0u8; 64 * 1024 + 1]);
    let mut too_many_refs = vec![0x05, CloseReason::LeavingMesh.code(), 11];
    for i in 0..11u64 {
        too_many_refs.extend_from_slice(&(i + 1).to_be_bytes());
        too_many_refs.extend_from_slice(&[4, 10, 0, 0, 1, 0, 80]);
    }
    let mut too_many_addrs = vec![0x02];
    too_many_addrs.extend_from_slice(&HOSTILE.to_be_bytes());
    too_many_addrs.push(9);
    let mut hello_v2 = vec![0x01];
    hello_v2.extend_from_slice(b"PCHN");
    hello_v2.extend_from_slice(&[2, 0, 1, b'x']);
    let secure_hello =
        frame(&Frame::Hello(Hello { version: VERSION, security: 1, mesh: MeshId::new("soccerpals").unwrap() }));
    let welcome = frame(&Frame::Welcome(Welcome { node: nid(HOSTILE), referrals: vec![] }));
    let mut too_many_ids = vec![0x09, 1, 1];
    too_many_ids.extend(std::iter::repeat_n(7u8, 16 * 257));
    let too_many_ids = raw(&too_many_ids);
    let refuse = frame(&Frame::Refuse(Refuse { reason: CloseReason::NodeBusy, referrals: vec![] }));

    use CloseReason::*;
    let cases: Vec<(&str, Phase, Bytes, CloseReason)> = vec![
        ("truncated body", Phase::Connected, raw(&[0x07, 1, 2, 3]), ProtocolViolation),
        ("oversized length", Phase::Connected, Bytes::from_static(&[0x7f, 0, 0, 0]), ProtocolViolation),
        ("zero length", Phase::Connected, Bytes::from_static(&[0, 0, 0, 0]), ProtocolViolation),
        ("unknown type", Phase::Connected, raw(&[0x77]), ProtocolViolation),
        ("reserved security type", Phase::AfterHello, raw(&[0x20, 0]), ProtocolViolation),
        ("not a Hello first", Phase::Fresh, connect(HOSTILE), ProtocolViolation),
        ("garbage instead of Hello", Phase::Fresh, Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n"), ProtocolViolation),
        ("bad magic", Phase::Fresh, raw(&[0x01, b'X', b'X', b'X', b'X', 1, 0, 1, b'x']), ProtocolViolation),
        ("other protocol version", Phase::Fresh, raw(&hello_v2), Incompatible),
        ("wrong mesh", Phase::Fresh, hello("othermesh"), WrongMesh),
        ("security mismatch", Phase::Fresh, secure_hello, SecurityMismatch),
        ("own NodeId", Phase::AfterHello, connect(ME), DuplicateNodeId),
        ("node id zero", Phase::AfterHello, raw(&[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0]), ProtocolViolation),
        ("too many addresses", Phase::AfterHello, raw(&too_many_addrs), ProtocolViolation),
        ("Welcome from a node we did not dial", Phase::AfterHello, welcome.clone(), ProtocolViolation),
        ("Refuse sent to the responder", Phase::AfterHello, refuse.clone(), ProtocolViolation),
        ("flood before the handshake", Phase::AfterHello, flood(2, 2, 1, b"/chat", Bytes::new()), ProtocolViolation),
        (
            "utility report before the handshake",
            Phase::AfterHello,
            frame(&Frame::LinkUtility(LinkUtilityReport { useful: 0, total: 0 })),
            ProtocolViolation,
        ),
        ("second Hello", Phase::Connected, hello("soccerpals"), ProtocolViolation),
        ("second Connect", Phase::Connected, connect(HOSTILE), ProtocolViolation),
        ("Welcome after connected", Phase::Connected, welcome, ProtocolViolation),
        ("hop count 0", Phase::Connected, flood(0, 5, 2, b"/chat", Bytes::new()), ProtocolViolation),
        ("hops left above limit", Phase::Connected, flood(9, 5, 3, b"/chat", Bytes::new()), ProtocolViolation),
        ("path not absolute", Phase::Connected, flood(1, 1, 4, b"chat", Bytes::new()), ProtocolViolation),
        // The node remembers the last good path: a bad one right after it, of the same length,
        // is still checked.
        (
            "bad path after a good one",
            Phase::Connected,
            cat(&[flood(2, 8, 7, b"/chat", Bytes::new()), flood(2, 8, 8, b"/ch#t", Bytes::new())]),
            ProtocolViolation,
        ),
        (
            "path too long",
            Phase::Connected,
            flood(1, 1, 5, format!("/{}", "a".repeat(4096)).as_bytes(), Bytes::new()),
            ProtocolViolation,
        ),
        ("payload above the limit", Phase::Connected, flood(1, 1, 6, b"/chat", big_payload), ProtocolViolation),
        ("useful > total", Phase::Connected, raw(&[0x06, 0, 0, 0, 9, 0, 0, 0, 3]), ProtocolViolation),
        (
            "report of floods never sent",
            Phase::Connected,
            frame(&Frame::LinkUtility(LinkUtilityReport { useful: 1, total: 1 })),
            ProtocolViolation,
        ),
        ("too many referrals", Phase::Connected, raw(&too_many_refs), ProtocolViolation),
        ("unknown reason code", Phase::Connected, raw(&[0x05, 99, 0]), ProtocolViolation),
        ("Refuse after connected", Phase::Connected, refuse, ProtocolViolation),
        (
            "Want for floods never offered",
            Phase::Connected,
            frame(&Frame::Want(vec![MessageId([1; 16])])),
            ProtocolViolation,
        ),
        (
            "second Digest",
            Phase::Connected,
            cat(&[frame(&Frame::Digest(vec![MessageId([1; 16])])), frame(&Frame::Digest(vec![]))]),
            ProtocolViolation,
        ),
        ("too many IDs in a Digest", Phase::Connected, too_many_ids, ProtocolViolation),
        ("Digest before the handshake", Phase::AfterHello, frame(&Frame::Digest(vec![])), ProtocolViolation),
    ];
    assert!(cases.len() >= 20);
    for (i, (name, phase, bytes, want)) in cases.into_iter().enumerate() {
        let mut f = Fixture::new();
        let link = match phase {
            Phase::Fresh => f.fresh(),
            Phase::AfterHello => {
                let l = f.fresh();
                f.feed(l, hello("soccerpals"));
                assert_eq!(f.closed_reason(l), None, "{name}: good Hello refused");
                l
            }
            Phase::Connected => f.inbound(HOSTILE),
        };
        f.feed(link, bytes);
        assert_eq!(f.closed_reason(link), Some(want), "case {i} `{name}`");
        assert!(f.node.stats().closed_for(want) >= 1, "{name}: not counted");
        let reported = f.outputs.iter().any(|o| match o {
            Output::Event(Event::NeighborDown { link: l, reason, by_peer: false, .. }) => *l == link && *reason == want,
            Output::Event(Event::InboundRefused { reason, .. }) => *reason == want,
            _ => false,
        });
        assert!(reported, "{name}: no event with the reason");
        // Nothing more is accepted from the closed link.
        f.feed(link, flood(3, 8, 200, b"/chat", Bytes::new()));
        f.healthy_still_works(100 + i as u8);
    }
}

#[test]
fn wrong_mesh_peer_is_told_why() {
    let mut f = Fixture::new();
    let link = f.fresh();
    f.feed(link, hello("othermesh"));
    let mut sent = BytesMut::new();
    while let Some(b) = f.node.poll_transmit(link, usize::MAX) {
        sent.put_slice(&b);
    }
    let mut sent = sent.freeze();
    let mut frames = Vec::new();
    while let Ok(Some(fr)) = split_frame(&mut sent, 1 << 20) {
        frames.push(decode_frame(&fr).unwrap());
    }
    assert!(matches!(frames[0], Frame::Hello(_)));
    assert!(matches!(&frames[1], Frame::Refuse(r) if r.reason == CloseReason::WrongMesh), "{frames:?}");
}

#[test]
fn forwarded_floods_share_the_received_buffer() {
    let mut f = Fixture::new();
    let other = f.inbound(0x4000);
    let payload = Bytes::from(vec![5u8; 1024]);
    let wire = flood(4, 8, 9, b"/chat", payload);
    let healthy = f.healthy;
    while f.node.poll_transmit(other, usize::MAX).is_some() {}
    f.feed(healthy, wire.clone());
    let fl = forwarded(&mut f, other, &wire);
    assert_eq!(f.node.stats().reassembly_copied_bytes, 0);
    // The forwarded frame is the received one with one hop less.
    assert_eq!((fl.hops_left, fl.hop_limit, fl.id), (3, 8, MessageId([9; 16])));
}

/// The one flood queued to `to`, decoded; its payload must be a slice of `received`, not a copy.
fn forwarded(f: &mut Fixture, to: LinkId, received: &Bytes) -> Flood {
    let chunks: Vec<Bytes> = std::iter::from_fn(|| f.node.poll_transmit(to, usize::MAX)).collect();
    let range = received.as_ptr() as usize..received.as_ptr() as usize + received.len();
    let big: Vec<&Bytes> = chunks.iter().filter(|c| c.len() >= 1024).collect();
    assert_eq!(big.len(), 1, "{chunks:?}");
    assert!(range.contains(&(big[0].as_ptr() as usize)), "forwarded payload was copied");
    let mut all = BytesMut::new();
    for c in &chunks {
        all.put_slice(c);
    }
    let mut all = all.freeze();
    let fr = split_frame(&mut all, 1 << 20).unwrap().unwrap();
    let Frame::Flood(fl) = decode_frame(&fr).unwrap() else { panic!("not a flood: {fr:?}") };
    fl
}

#[test]
fn a_flood_read_as_a_relay_wrote_it_is_forwarded_and_delivered_without_copying_its_body() {
    // A relay writes a flood as its forward head (length prefix, type, hops left), then the
    // body it received. A transport that hands those chunks on as they are delivers them as two
    // buffers: in one input, or in two reads one after the other.
    for (i, as_two_reads) in [false, true].into_iter().enumerate() {
        let mut f = Fixture::new();
        let other = f.inbound(0x4000);
        let healthy = f.healthy;
        while f.node.poll_transmit(other, usize::MAX).is_some() {}
        let wire = flood(4, 8, 9 + i as u8, b"/chat", Bytes::from(vec![5u8; 1024]));
        let (head, body) = (wire.slice(..FORWARD_HEAD_LEN), wire.slice(FORWARD_HEAD_LEN..));
        f.outputs.clear();
        if as_two_reads {
            f.feed(healthy, head);
            assert!(f.outputs.is_empty(), "a head alone is not a frame: {:?}", f.outputs);
            f.feed(healthy, body.clone());
        } else {
            f.now = f.now + std::time::Duration::from_millis(1);
            f.node.handle_input(f.now, Input::ReceivedChunks { link: healthy, chunks: [head, body.clone()].into() });
            f.drain();
        }
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        let delivered: Vec<&Bytes> = f
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Deliver(m) => Some(&m.payload),
                _ => None,
            })
            .collect();
        assert_eq!(delivered.len(), 1, "two reads: {as_two_reads}");
        assert!(range.contains(&(delivered[0].as_ptr() as usize)), "delivered payload was copied");
        let fl = forwarded(&mut f, other, &body);
        // Only the head's bytes waited in the reassembly buffer.
        assert_eq!(f.node.stats().reassembly_copied_bytes, FORWARD_HEAD_LEN as u64);
        assert_eq!((fl.hops_left, fl.hop_limit, fl.id), (3, 8, MessageId([9 + i as u8; 16])));
        assert_eq!(fl.payload, Bytes::from(vec![5u8; 1024]));
        f.healthy_still_works(60 + i as u8);
    }
}

#[test]
fn too_large_send_is_a_clear_error_and_nothing_is_sent() {
    let mut f = Fixture::new();
    let path = ChannelPath::new("/chat").unwrap();
    let err = f.node.send(f.now, &path, Bytes::from(vec![0; 64 * 1024 + 1])).unwrap_err();
    assert_eq!(err, SendError::MessageTooLarge { size: 64 * 1024 + 1, max: 64 * 1024 });
    assert!(err.to_string().contains("max_message_size"));
    assert_eq!(f.node.stats().floods_sent, 0);
    assert!(f.node.send(f.now, &path, Bytes::from(vec![0; 64 * 1024])).is_ok());
}

#[test]
fn a_neighbor_that_never_drains_is_evicted_and_memory_stays_bounded() {
    let mut f = Fixture::new();
    let slow = f.inbound(0x5000);
    let healthy = f.healthy;
    // The healthy neighbor relays floods; the slow one never has its queue pulled.
    for i in 0..400u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let mut out = BytesMut::new();
        encode_flood_header(4, 8, &id, 77, b"/chat", 1024, &mut out);
        out.put_slice(&[1u8; 1024]);
        f.feed(healthy, out.freeze());
        f.node.check_invariants().unwrap();
        while f.node.poll_transmit(healthy, usize::MAX).is_some() {}
    }
    assert_eq!(f.closed_reason(slow), Some(CloseReason::NodeTooSlow));
    assert!(f.node.stats().queued_bytes <= f.node.config().link_queue_bytes + 16 * 1024);
    f.healthy_still_works(250);
}

#[test]
fn a_peer_that_sends_pings_and_never_reads_is_evicted() {
    let mut f = Fixture::new();
    let rude = f.inbound(0x6000);
    let mut pings = BytesMut::new();
    for n in 0..40_000u64 {
        encode_control(&Frame::Ping(n), &mut pings);
    }
    f.feed(rude, pings.freeze());
    assert_eq!(f.closed_reason(rude), Some(CloseReason::NodeTooSlow));
    f.node.check_invariants().unwrap();
    f.healthy_still_works(251);
}

#[test]
fn a_connection_flood_from_one_address_cannot_take_every_handshake_slot() {
    let mut f = Fixture::new();
    let attacker: SocketAddr = "10.66.0.1:1".parse().unwrap();
    for _ in 0..8 {
        f.node.accept(f.now, attacker).unwrap();
    }
    assert_eq!(f.node.accept(f.now, attacker), Err(AcceptError::TooManyFromAddress));
    // Others still get in, up to the global bound.
    let other = f.node.accept(f.now, "10.67.0.1:1".parse().unwrap()).unwrap();
    f.feed(other, cat(&[hello("soccerpals"), connect(0x7000)]));
    assert!(f.node.neighbors().iter().any(|n| n.link == other));
    // 8 from the attacker + 8 from other hosts fill the 16 handshake slots.
    for i in 0..8 {
        f.node.accept(f.now, format!("10.68.0.{i}:1").parse().unwrap()).unwrap();
    }
    assert_eq!(f.node.accept(f.now, "10.69.0.1:1".parse().unwrap()), Err(AcceptError::TooManyHandshakes));
    // Handshake slots are freed by the connect timeout.
    f.now = f.now + std::time::Duration::from_secs(11);
    f.node.handle_timeout(f.now);
    assert!(f.node.accept(f.now, attacker).is_ok());
    f.node.check_invariants().unwrap();
}

#[test]
fn poisoned_referrals_are_dropped_and_counted() {
    let mut f = Fixture::new();
    let link = f.inbound(0x7100);
    let bad = ["0.0.0.0:80", "224.0.0.1:80", "255.255.255.255:80", "10.1.2.3:0", "10.0.0.1:4000"];
    let mut referrals: Vec<Referral> = bad
        .iter()
        .enumerate()
        .map(|(i, a)| Referral { node: nid(0x9000 + i as u64), addr: a.parse().unwrap() })
        .collect();
    referrals.push(Referral { node: nid(ME), addr: "10.5.5.5:1".parse().unwrap() });
    referrals.push(Referral { node: nid(0x9999), addr: "10.5.5.6:1".parse().unwrap() });
    f.feed(link, frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals })));
    // Six poisoned (unroutable, own listen address, own NodeId), one good.
    assert_eq!(f.node.stats().referrals_rejected, 6);
    let dialed: Vec<SocketAddr> = f
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Dial { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    assert!(dialed.iter().all(|a| *a == "10.5.5.6:1".parse::<SocketAddr>().unwrap()), "{dialed:?}");
}

#[test]
fn a_peer_trickling_one_frame_is_cut_off() {
    let mut f = Fixture::new();
    let slow = f.inbound(0x7200);
    let ping = frame(&Frame::Ping(1));
    // One byte every 4 s keeps the idle timer happy but never completes a frame.
    for i in 0..5 {
        f.now = f.now + std::time::Duration::from_secs(4);
        f.node.handle_timeout(f.now);
        let healthy = f.healthy;
        f.feed(healthy, frame(&Frame::Ping(100 + i)));
        while f.node.poll_transmit(healthy, usize::MAX).is_some() {}
        f.feed(slow, ping.slice(i as usize..i as usize + 1));
    }
    assert_eq!(f.closed_reason(slow), Some(CloseReason::NodeTooSlow));
    f.healthy_still_works(252);
}

/// The other side of the trickle rule: a frame split across two reads is finished, and from
/// then on the link carries only whole floods, a read each (the frame loop's shortest way out).
/// The finished split must not be held against the link later: it stays up long past the
/// time that cuts off a trickling peer.
#[test]
fn a_split_frame_once_finished_is_not_held_against_a_link_of_single_floods() {
    let mut f = Fixture::new();
    let peer = f.inbound(0x7250);
    let split = flood(3, 8, 0x51, b"/chat", Bytes::from_static(b"split in two"));
    f.feed(peer, split.slice(..10));
    f.feed(peer, split.slice(10..));
    assert_eq!(f.node.stats().delivered, 1);
    let idle = f.node.config().idle_timeout;
    let step = idle / 4;
    for i in 0..12u8 {
        f.now = f.now + step;
        f.node.handle_timeout(f.now);
        let healthy = f.healthy;
        f.feed(healthy, frame(&Frame::Ping(u64::from(i))));
        f.feed(peer, flood(3, 8, 0x60 + i, b"/chat", Bytes::from_static(b"whole")));
        for link in [healthy, peer] {
            while f.node.poll_transmit(link, usize::MAX).is_some() {}
        }
    }
    assert_eq!(f.closed_reason(peer), None, "a finished split frame was held against the link");
    assert_eq!(f.node.stats().delivered, 13);
    f.healthy_still_works(249);
}

#[test]
fn a_message_storm_from_one_neighbor_is_capped_when_a_rate_is_set() {
    let mut f = Fixture::with(|c| c.max_floods_per_neighbor_per_sec = Some(100));
    let stormy = f.inbound(0x7300);
    let mut storm = BytesMut::new();
    for i in 0..300u32 {
        let mut id = [7u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        encode_flood_header(4, 8, &id, 77, b"/chat", 0, &mut storm);
    }
    f.feed(stormy, storm.freeze());
    let s = f.node.stats();
    assert_eq!(s.floods_rate_limited, 200);
    assert_eq!(s.delivered, 100);
    // The allowance refills with time.
    f.now = f.now + std::time::Duration::from_secs(1);
    f.feed(stormy, flood(4, 8, 0xA1, b"/chat", Bytes::new()));
    assert_eq!(f.node.stats().delivered, 101);
    f.healthy_still_works(253);
}

#[test]
fn a_neighbor_that_stops_reading_is_evicted_even_when_nothing_overflows() {
    let mut f = Fixture::new();
    let stuck = f.inbound(0x7400);
    let path = ChannelPath::new("/chat").unwrap();
    // Own sends only: the stuck neighbor's queue fills until sends are refused (Busy)...
    let mut sent = 0;
    while f.node.send(f.now, &path, Bytes::from(vec![1u8; 16 * 1024])).is_ok() {
        sent += 1;
        let healthy = f.healthy;
        while f.node.poll_transmit(healthy, usize::MAX).is_some() {}
        assert!(sent < 100, "the queue bound never refused a send");
    }
    f.drain();
    // ...and nothing overflows, but nothing is pulled either: after the idle timeout it goes.
    for _ in 0..16 {
        f.now = f.now + std::time::Duration::from_secs(1);
        f.node.handle_timeout(f.now);
        let healthy = f.healthy;
        f.feed(healthy, frame(&Frame::Ping(1)));
        while f.node.poll_transmit(healthy, usize::MAX).is_some() {}
        // The stuck peer is alive (its keepalives arrive); it just does not read.
        f.feed(stuck, frame(&Frame::Ping(2)));
        f.drain();
    }
    assert_eq!(f.closed_reason(stuck), Some(CloseReason::NodeTooSlow));
    f.healthy_still_works(254);
}

#[test]
fn an_inbound_neighbor_is_reported_at_its_listen_address() {
    let mut f = Fixture::new();
    let link = f.node.accept(f.now, "10.9.0.77:51234".parse().unwrap()).unwrap();
    let connect =
        frame(&Frame::Connect(Connect { node: nid(0x7500), addrs: smallvec!["10.9.0.77:7000".parse().unwrap()] }));
    f.feed(link, cat(&[hello("soccerpals"), connect]));
    let info = f.node.neighbors().into_iter().find(|n| n.link == link).unwrap();
    assert_eq!(info.addr, "10.9.0.77:7000".parse::<SocketAddr>().unwrap());
    assert_eq!(info.remote, "10.9.0.77:51234".parse::<SocketAddr>().unwrap());
    let up = f.outputs.iter().find_map(|o| match o {
        Output::Event(Event::NeighborUp { link: l, addr, .. }) if *l == link => Some(*addr),
        _ => None,
    });
    assert_eq!(up, Some("10.9.0.77:7000".parse().unwrap()));
}

#[test]
fn transmit_in_batches_respects_the_byte_limit_and_order() {
    let mut f = Fixture::new();
    let healthy = f.healthy;
    while f.node.poll_transmit(healthy, usize::MAX).is_some() {}
    let path = ChannelPath::new("/chat").unwrap();
    for _ in 0..5 {
        f.node.send(f.now, &path, Bytes::from(vec![3u8; 1000])).unwrap();
    }
    // Into any `Extend<Bytes>`: here an adapter's write queue.
    let mut out = std::collections::VecDeque::new();
    // The queue holds more than asked for: exactly the limit comes out (less would mean the
    // queue ran dry, which adapters rely on to stop asking).
    let first = f.node.poll_transmit_into(healthy, 2500, &mut out);
    assert_eq!(first, 2500);
    assert_eq!(out.iter().map(Bytes::len).sum::<usize>(), first);
    let rest = f.node.poll_transmit_into(healthy, usize::MAX, &mut out);
    assert!(rest > 2000 && rest < usize::MAX, "{rest}");
    assert_eq!(f.node.poll_transmit_into(healthy, usize::MAX, &mut out), 0);
    let all = cat(&Vec::from(out));
    assert_eq!(all.len(), first + rest);
    let mut all = all;
    let mut floods = 0;
    while let Some(fr) = split_frame(&mut all, 1 << 20).unwrap() {
        assert!(matches!(decode_frame(&fr).unwrap(), Frame::Flood(fl) if fl.payload.len() == 1000));
        floods += 1;
    }
    assert_eq!(floods, 5);
}

#[test]
fn with_referral_sharing_off_none_are_sent_or_learned() {
    let mut f = Fixture::with(|c| c.share_referrals = false);
    let a = f.inbound(0x7600);
    let b = f.node.accept(f.now, "10.9.0.99:5000".parse().unwrap()).unwrap();
    f.feed(b, cat(&[hello("soccerpals"), connect(0x7700)]));
    // b's Welcome would normally refer it to the healthy neighbor and to a.
    let mut sent = Vec::new();
    while let Some(c) = f.node.poll_transmit(b, usize::MAX) {
        sent.push(c);
    }
    let mut wire = cat(&sent);
    let mut welcomed = false;
    while let Some(fr) = split_frame(&mut wire, 1 << 20).unwrap() {
        if let Frame::Welcome(w) = decode_frame(&fr).unwrap() {
            assert!(w.referrals.is_empty());
            welcomed = true;
        }
    }
    assert!(welcomed);
    let referrals = vec![Referral { node: nid(0x9999), addr: "10.5.5.6:1".parse().unwrap() }];
    f.feed(a, frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals })));
    assert_eq!(f.node.stats().referrals_ignored, 1);
    assert!(!f
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Dial { addr, .. } if *addr == "10.5.5.6:1".parse::<SocketAddr>().unwrap())));
}

/// Ten routable referrals, distinct per `batch`.
fn referral_batch(batch: u64) -> Vec<Referral> {
    (0..10u64)
        .map(|i| Referral {
            node: nid(0xA000 + batch * 16 + i),
            addr: format!("10.{batch}.0.{}:7000", i + 1).parse().unwrap(),
        })
        .collect()
}

#[test]
fn a_stranger_that_never_became_a_neighbor_cannot_refer() {
    let mut f = Fixture::new();
    let link = f.fresh();
    let referrals = referral_batch(1);
    let bye = frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals: referrals.clone() }));
    f.feed(link, cat(&[hello("soccerpals"), bye]));
    assert_eq!(f.node.stats().referrals_ignored, 10);
    // Losing the healthy neighbor makes the node dial what it knows: none of the stranger's.
    let healthy = f.healthy;
    f.feed(healthy, frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals: vec![] })));
    f.now = f.now + std::time::Duration::from_secs(60);
    f.node.handle_timeout(f.now);
    f.drain();
    assert!(!f
        .outputs
        .iter()
        .any(|o| matches!(o, Output::Dial { addr, .. } if referrals.iter().any(|r| r.addr == *addr))));
    f.node.check_invariants().unwrap();
}

#[test]
fn referrals_beyond_the_rate_are_dropped_and_counted() {
    let mut f = Fixture::with(|c| c.max_referrals_per_sec = Some(1));
    // Three neighbors leave at once, ten referrals each: the bucket holds ten.
    let links: Vec<LinkId> = (0..3).map(|i| f.inbound(0x7200 + i)).collect();
    for (i, link) in links.into_iter().enumerate() {
        let referrals = referral_batch(i as u64 + 1);
        f.feed(link, frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals })));
    }
    assert_eq!(f.node.stats().referrals_rate_limited, 20);
    // Ten seconds later the bucket is full again.
    f.now = f.now + std::time::Duration::from_secs(10);
    let link = f.inbound(0x7300);
    f.feed(
        link,
        frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals: referral_batch(9) })),
    );
    assert_eq!(f.node.stats().referrals_rate_limited, 20);
    f.healthy_still_works(0x41);
}

#[test]
fn changed_listen_addresses_are_announced_in_later_connects() {
    let mut f = Fixture::new();
    let new: Vec<SocketAddr> = vec!["10.0.0.2:4000".parse().unwrap(), "0.0.0.0:1".parse().unwrap()];
    f.node.handle_input(f.now, Input::ListenAddrsChanged { addrs: new });
    assert_eq!(f.node.config().listen_addrs, vec!["10.0.0.2:4000".parse::<SocketAddr>().unwrap()]);
    // The node's next dial announces the new address in its Connect.
    let referral = Referral { node: nid(0x8800), addr: "10.8.8.8:1".parse().unwrap() };
    let healthy = f.healthy;
    f.feed(
        healthy,
        frame(&Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals: vec![referral] })),
    );
    let link = f
        .outputs
        .iter()
        .find_map(|o| match o {
            Output::Dial { link, addr } if *addr == referral.addr => Some(*link),
            _ => None,
        })
        .expect("dials the referral after losing its only neighbor");
    f.node.handle_input(f.now, Input::LinkConnected { link });
    let mut wire = cat(&std::iter::from_fn(|| f.node.poll_transmit(link, usize::MAX)).collect::<Vec<_>>());
    let mut announced = None;
    while let Some(fr) = split_frame(&mut wire, 1 << 20).unwrap() {
        if let Frame::Connect(c) = decode_frame(&fr).unwrap() {
            announced = Some(c.addrs.to_vec());
        }
    }
    assert_eq!(announced, Some(vec!["10.0.0.2:4000".parse().unwrap()]));
}

#[test]
fn a_flood_claiming_a_huge_hop_limit_is_forwarded_no_further_than_this_nodes() {
    let mut f = Fixture::new();
    let other = f.inbound(0x7800);
    while f.node.poll_transmit(other, usize::MAX).is_some() {}
    let healthy = f.healthy;
    f.feed(healthy, flood(250, 255, 0xB1, b"/chat", Bytes::from_static(b"far")));
    let mut wire = cat(&std::iter::from_fn(|| f.node.poll_transmit(other, usize::MAX)).collect::<Vec<_>>());
    let fr = split_frame(&mut wire, 1 << 20).unwrap().unwrap();
    let Frame::Flood(fl) = decode_frame(&fr).unwrap() else { panic!("not a flood") };
    assert_eq!(fl.hops_left, f.node.config().hop_limit);
    assert_eq!(fl.hop_limit, 255, "the origin's limit travels unchanged");
}

#[test]
fn closed_links_whose_farewell_is_never_pulled_do_not_pile_up() {
    let mut f = Fixture::new();
    for i in 0..100u32 {
        let remote: SocketAddr = format!("10.70.{}.{}:5000", i / 200, i % 200 + 1).parse().unwrap();
        let link = f.node.accept(f.now, remote).unwrap();
        // Another mesh: refused with a Refuse the adapter never pulls.
        f.feed(link, hello("othermesh"));
        assert_eq!(f.closed_reason(link), Some(CloseReason::WrongMesh));
        f.node.check_invariants().unwrap();
    }
    assert_eq!(f.node.stats().farewells_dropped, 100 - f.node.config().max_closing_links as u64);
    f.healthy_still_works(255);
}

#[test]
fn one_public_network_cannot_hold_every_neighbor_slot() {
    let mut f = Fixture::new();
    let join = |f: &mut Fixture, remote: &str, node: u64| {
        let link = f.node.accept(f.now, remote.parse().unwrap()).unwrap();
        f.feed(link, cat(&[hello("soccerpals"), connect(node)]));
        link
    };
    // Two neighbors from 203.0.113.0/24 (the default limit), then a third is refused.
    let a = join(&mut f, "203.0.113.1:5000", 0x8001);
    let b = join(&mut f, "203.0.113.2:5000", 0x8002);
    let c = join(&mut f, "203.0.113.3:5000", 0x8003);
    let neighbors: Vec<LinkId> = f.node.neighbors().iter().map(|n| n.link).collect();
    assert!(neighbors.contains(&a) && neighbors.contains(&b));
    assert_eq!(f.closed_reason(c), Some(CloseReason::TooManyFromAddress));
    assert_eq!(f.node.stats().handshakes_failed_for(CloseReason::TooManyFromAddress), 1);
    // Another network still gets in, and private addresses (a LAN, the healthy neighbor) are
    // not limited.
    let d = join(&mut f, "198.51.100.1:5000", 0x8004);
    let e = join(&mut f, "10.9.0.77:5000", 0x8005);
    let neighbors: Vec<LinkId> = f.node.neighbors().iter().map(|n| n.link).collect();
    assert!(neighbors.contains(&d) && neighbors.contains(&e));
    f.healthy_still_works(99);
}

/// The frames queued for `link`, decoded (the adapter's pulls, without a socket).
fn sent_frames(node: &mut Node, link: LinkId) -> Vec<Frame> {
    let mut bytes = BytesMut::new();
    while let Some(b) = node.poll_transmit(link, usize::MAX) {
        bytes.put_slice(&b);
    }
    let mut bytes = bytes.freeze();
    let mut frames = Vec::new();
    while let Some(f) = split_frame(&mut bytes, 1 << 20).unwrap() {
        frames.push(decode_frame(&f).unwrap());
    }
    frames
}

#[test]
fn an_echo_of_an_own_flood_is_dropped_and_its_id_never_wanted() {
    // Own IDs are recognised by their keyed tag, not by a seen-cache entry: an echo must still
    // be a duplicate (not delivered, not forwarded), and a Digest naming it must not make the
    // node ask for its own flood back.
    let mut f = Fixture::new();
    let echoer = f.inbound(HOSTILE);
    let chat = ChannelPath::new("/chat").unwrap();
    let id = f.node.send(f.now, &chat, Bytes::from_static(b"mine")).unwrap();
    f.drain();
    for link in [f.healthy, echoer] {
        assert!(sent_frames(&mut f.node, link).iter().any(|fr| matches!(fr, Frame::Flood(fl) if fl.id == id)));
    }

    let before = f.node.stats();
    let mut echo = BytesMut::new();
    encode_flood_header(7, 8, &id.0, ME, b"/chat", 4, &mut echo);
    echo.put_slice(b"mine");
    f.feed(echoer, echo.freeze());
    let after = f.node.stats();
    assert_eq!(after.duplicates, before.duplicates + 1, "the echo was not taken for a duplicate");
    assert_eq!(after.delivered, before.delivered, "the node delivered its own message");
    assert!(sent_frames(&mut f.node, f.healthy).is_empty(), "the echo was forwarded");

    // A new neighbor offers the node's own ID and a foreign one: only the foreign one is wanted.
    let offerer = f.inbound(HOSTILE + 1);
    let _ = sent_frames(&mut f.node, offerer);
    let foreign = MessageId([9; 16]);
    f.feed(offerer, frame(&Frame::Digest(vec![id, foreign])));
    let wants: Vec<Vec<MessageId>> = sent_frames(&mut f.node, offerer)
        .into_iter()
        .filter_map(|fr| match fr {
            Frame::Want(ids) => Some(ids),
            _ => None,
        })
        .collect();
    assert_eq!(wants, vec![vec![foreign]]);
}

/// A read of `n` tiny floods (one payload byte each, IDs from `first`): the kind of read that
/// queues the most bookkeeping per received byte.
fn tiny_floods(first: u32, n: u32) -> Bytes {
    let mut out = BytesMut::new();
    for i in first..first + n {
        let mut id = [0x5A; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        encode_flood_header(4, 8, &id, 77, b"/chat", 1, &mut out);
        out.put_u8(1);
    }
    out.freeze()
}

/// A node whose healthy neighbor (upstream) sends 2,000 tiny floods, more than the queue of a
/// second neighbor that never drains can take: returns the fixture, that slow neighbor and the
/// upstream link.
fn upstream_outruns_a_slow_neighbor(tweak: impl Fn(&mut Config), slow_id: u64) -> (Fixture, LinkId, LinkId) {
    let mut f = Fixture::with(tweak);
    let slow = f.inbound(slow_id);
    let healthy = f.healthy;
    f.feed(healthy, tiny_floods(0, 2000));
    (f, slow, healthy)
}

/// 2,000 tiny floods charge a neighbor's queue more than its 256 KiB: the flood that does not
/// fit waits (and the node asks the adapter to stop reading its link) instead of the slow
/// neighbor being evicted, and goes on as the neighbor drains. Nothing is lost or duplicated.
#[test]
fn a_flood_without_room_waits_for_a_slow_neighbor_instead_of_evicting_it() {
    let (mut f, slow, healthy) = upstream_outruns_a_slow_neighbor(|_| {}, 0x7500);
    let held_at = f.node.stats().delivered;
    assert!(held_at < 2000, "everything fit: the test needs a fuller queue");
    assert!(f.node.reads_paused(healthy), "the upstream link should be paused");
    assert!(!f.node.reads_paused(slow));
    assert_eq!(f.closed_reason(slow), None);
    let mut out = Vec::new();
    while f.node.stats().delivered < 2000 {
        // The slow neighbor reads a little; the node asks to be woken at once and goes on.
        out.clear();
        let n = f.node.poll_transmit_into(slow, 16 * 1024, &mut out);
        assert!(n > 0, "held with nothing to drain (delivered {})", f.node.stats().delivered);
        assert!(f.node.poll_timeout().is_some_and(|t| t <= f.now), "no wake-up after the drain");
        f.node.handle_timeout(f.now);
        f.drain();
        f.node.check_invariants().unwrap();
    }
    assert!(!f.node.reads_paused(healthy));
    let s = f.node.stats();
    assert_eq!(s.delivered, 2000);
    assert!(s.forward_pauses >= 1);
    assert_eq!(s.forward_waits_expired, 0);
    assert_eq!(s.floods_queued, 2000, "every flood forwarded to the slow neighbor once");
    assert_eq!(f.closed_reason(slow), None, "the slow neighbor was evicted");
    f.healthy_still_works(240);
}

/// A neighbor that does not drain at all: the held flood waits `forward_wait`, then goes on and
/// the neighbor is evicted as NodeTooSlow (the memory bound); reads resume.
#[test]
fn a_held_flood_goes_on_after_forward_wait_and_evicts_a_neighbor_that_never_drains() {
    let (mut f, slow, healthy) = upstream_outruns_a_slow_neighbor(|_| {}, 0x7600);
    assert!(f.node.reads_paused(healthy));
    let wait = f.node.config().forward_wait;
    let due = f.node.poll_timeout().expect("a deadline for the held flood");
    assert!(due <= f.now + wait, "the wait is bounded by forward_wait");
    // Just before the wait is over, the flood still waits; once it is, the neighbor goes.
    f.node.handle_timeout(f.now + wait - std::time::Duration::from_millis(1));
    assert!(f.node.reads_paused(healthy), "the wait ended early");
    f.now = f.now + wait;
    f.node.handle_timeout(f.now);
    f.drain();
    assert_eq!(f.closed_reason(slow), Some(CloseReason::NodeTooSlow));
    assert!(!f.node.reads_paused(healthy));
    let s = f.node.stats();
    assert_eq!(s.delivered, 2000);
    assert_eq!(s.forward_waits_expired, 1);
    f.healthy_still_works(241);
}

/// A neighbor closed while a flood waits frees no room the waiting flood needs: pulling its
/// farewell must not wake the node again (fuzzing found a wake-up at `now` there, a deadline
/// the node had already handled). Only the slow neighbor's drain or the end of the wait moves
/// the flood on.
#[test]
fn a_closing_links_farewell_does_not_wake_a_held_flood() {
    let (mut f, slow, healthy) = upstream_outruns_a_slow_neighbor(|_| {}, 0x7900);
    assert!(f.node.reads_paused(healthy));
    let other = f.inbound(0x7901);
    // A frame of an unknown type: the node ends the link with a farewell still to send.
    f.feed(other, Bytes::from_static(&[0, 0, 0, 1, 0xEE]));
    f.node.handle_timeout(f.now);
    f.drain();
    assert!(f.node.reads_paused(healthy), "the flood still has no room at the slow neighbor");
    let mut out = Vec::new();
    assert!(f.node.poll_transmit_into(other, usize::MAX, &mut out) > 0, "no farewell to pull");
    let due = f.node.poll_timeout().expect("the held flood's deadline");
    assert!(due > f.now, "pulling a farewell woke the node at {due:?} (now {:?})", f.now);
    assert!(f.node.reads_paused(healthy));
    assert_eq!(f.closed_reason(slow), None);
    f.node.check_invariants().unwrap();
}

/// An adapter that reads on while the node asked it to pause: the held flood and the new bytes
/// go on at once (as with `forward_wait` zero), so nothing piles up in the node.
#[test]
fn bytes_read_despite_a_pause_end_it_at_once() {
    let (mut f, slow, healthy) = upstream_outruns_a_slow_neighbor(|_| {}, 0x7700);
    assert!(f.node.reads_paused(healthy));
    f.feed(healthy, tiny_floods(2000, 10));
    assert_eq!(f.closed_reason(slow), Some(CloseReason::NodeTooSlow));
    assert!(!f.node.reads_paused(healthy));
    assert_eq!(f.node.stats().delivered, 2010);
    f.node.check_invariants().unwrap();
}

/// With `forward_wait` zero the node never pauses: the neighbor is evicted at the first flood
/// it has no room for, as before the wait existed.
#[test]
fn a_zero_forward_wait_evicts_at_once() {
    let (f, slow, healthy) = upstream_outruns_a_slow_neighbor(|c| c.forward_wait = std::time::Duration::ZERO, 0x7800);
    assert!(!f.node.reads_paused(healthy));
    assert_eq!(f.closed_reason(slow), Some(CloseReason::NodeTooSlow));
    assert_eq!(f.node.stats().delivered, 2000);
}

/// Floods are delivered on exactly the channels that are open, whether the node has a few
/// (scanned) or many (searched by halving), and a closed channel delivers no more (the flood is
/// still forwarded and counted as having no channel).
#[test]
fn floods_reach_exactly_the_open_channels_however_many_there_are() {
    for extra in [0usize, 3, 40] {
        let mut f = Fixture::new();
        let paths: Vec<String> = (0..extra).map(|i| format!("/topic/{i:03}")).collect();
        for p in &paths {
            f.node.open_channel(ChannelPath::new(p).unwrap());
        }
        let healthy = f.healthy;
        let mut tag = 0u8;
        let mut delivered_on = |f: &mut Fixture, path: &str| {
            tag += 1;
            f.outputs.clear();
            f.feed(healthy, flood(3, 8, tag, path.as_bytes(), Bytes::from_static(b"x")));
            f.outputs
                .iter()
                .filter_map(|o| if let Output::Deliver(m) = o { Some(m.path.to_string()) } else { None })
                .collect::<Vec<_>>()
        };
        assert_eq!(delivered_on(&mut f, "/chat"), ["/chat"], "{extra} extra channels");
        for p in &paths {
            assert_eq!(delivered_on(&mut f, p), std::slice::from_ref(p));
        }
        assert!(delivered_on(&mut f, "/topic/none").is_empty());
        f.node.close_channel(&ChannelPath::new("/chat").unwrap());
        assert!(delivered_on(&mut f, "/chat").is_empty(), "a closed channel still delivers");
        f.node.open_channel(ChannelPath::new("/chat").unwrap());
        assert_eq!(delivered_on(&mut f, "/chat"), ["/chat"], "a reopened channel does not deliver");
        f.node.close_channel(&ChannelPath::new("/chat").unwrap());
        if let Some(p) = paths.get(1) {
            f.node.close_channel(&ChannelPath::new(p).unwrap());
            assert!(delivered_on(&mut f, p).is_empty());
            assert_eq!(delivered_on(&mut f, &paths[0]), [paths[0].clone()]);
        }
        assert_eq!(f.node.stats().no_channel, 2 + u64::from(extra > 1));
    }
}
