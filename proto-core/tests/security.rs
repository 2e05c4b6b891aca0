//! Security through the core: password and certificate meshes, refusals with their reasons,
//! proofs that cannot be replayed, and signed floods that relays cannot alter.

mod support;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerchannel_core::security::*;
use peerchannel_core::wire::{self, Frame};
use peerchannel_core::*;
use support::pki::{Ca, Leaf, NOW_SECS};
use support::Net;

/// Few PBKDF2 rounds keep tests fast; the construction is the same as with the default.
fn password(pw: &str) -> Credentials {
    Credentials::password_with_iterations(&MeshId::new("test").unwrap(), pw, NonZeroU32::new(10).unwrap())
}

fn certificate(ca: &Ca, leaf: &Leaf, tune: impl FnOnce(&mut CertificateCredentials)) -> Credentials {
    let mut c = CertificateCredentials::new(vec![leaf.cert.clone()], leaf.key.clone_key(), vec![ca.cert.clone()]);
    tune(&mut c);
    Credentials::Certificate(Arc::new(c))
}

fn all_delivered_once(net: &mut Net, origins: &[usize], receivers: &[usize]) {
    for &origin in origins {
        let id = net.send(origin, b"hello");
        net.run_for(Duration::from_secs(2));
        for &r in receivers.iter().filter(|r| **r != origin) {
            assert_eq!(net.deliveries.get(&(r, id)).copied(), Some(1), "message from {origin} at {r}");
        }
    }
}

fn auth_failures_at(net: &Net, nodes: &[usize]) -> Vec<AuthFailure> {
    net.observed
        .iter()
        .filter(|(i, _)| nodes.contains(i))
        .filter_map(|(_, e)| match e {
            Event::AuthenticationFailed { failure, .. } => Some(failure.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_password_mesh_forms_and_delivers_exactly_once() {
    let creds = password("hunter2");
    for mode in [SecurityMode::Transport, SecurityMode::TransportAndMessage] {
        let mut net = Net::new(8, 1, |c| c.security = Security::new(mode, creds.clone()));
        net.open_all(Duration::from_millis(50));
        net.run_for(Duration::from_secs(20));
        assert_eq!(net.components(), 1, "{mode:?}");
        let all: Vec<usize> = (0..8).collect();
        all_delivered_once(&mut net, &[0, 4, 7], &all);
        assert!(auth_failures_at(&net, &all).is_empty());
        assert!(net.node(3).stats().signatures_verified > 0 || mode == SecurityMode::Transport);
    }
}

#[test]
fn a_wrong_password_is_refused_on_both_ends_and_the_rest_is_unaffected() {
    let (good, bad) = (password("hunter2"), password("hunter3"));
    let mut net = Net::new_each(6, 2, |i, c| {
        c.security = Security::new(SecurityMode::Transport, if i == 5 { bad.clone() } else { good.clone() })
    });
    net.open_all(Duration::from_millis(50));
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.node(5).neighbor_count(), 0);
    let honest: Vec<usize> = (0..5).collect();
    assert!(auth_failures_at(&net, &honest).contains(&AuthFailure::WrongPassword));
    assert!(!auth_failures_at(&net, &[5]).is_empty(), "the outsider is told too");
    assert!(net.node(5).stats().handshakes_failed_for(CloseReason::AuthenticationFailure) > 0);
    // The five honest nodes form one mesh and deliver exactly once.
    all_delivered_once(&mut net, &[0, 4], &honest);
}

#[test]
fn a_node_without_a_password_is_refused_as_a_security_mismatch() {
    let good = password("hunter2");
    let mut net = Net::new_each(4, 3, |i, c| {
        if i != 3 {
            c.security = Security::new(SecurityMode::Transport, good.clone());
        }
    });
    net.open_all(Duration::from_millis(50));
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.node(3).neighbor_count(), 0);
    assert!(net.node(3).stats().closed_for(CloseReason::SecurityMismatch) > 0);
    assert!((0..3).any(|i| net.node(i).stats().closed_for(CloseReason::SecurityMismatch) > 0));
}

#[test]
fn certificate_meshes_accept_valid_chains_and_name_each_failed_check() {
    let ca = Ca::new("mesh CA");
    let other = Ca::new("another CA");
    let leaves: Vec<Leaf> = (1..=3).map(|s| ca.leaf(s)).collect();
    let rejected = ca.leaf(98);
    let rejected_der = rejected.cert.clone();
    let cases: Vec<(&str, Leaf, AuthFailure)> = vec![
        ("expired", ca.leaf_valid(99, 2020, 2025), AuthFailure::Expired),
        ("not yet valid", ca.leaf_valid(99, 2031, 2035), AuthFailure::NotYetValid),
        ("unknown CA", other.leaf(99), AuthFailure::UnknownIssuer),
        ("revoked", ca.leaf(97), AuthFailure::Revoked),
        ("rejected by validator", rejected, AuthFailure::RejectedByValidator("banned".into())),
    ];
    let crl = ca.crl(&[97]);
    for (name, bad, expected) in cases {
        let honest_creds: Vec<Credentials> = leaves
            .iter()
            .map(|l| {
                certificate(&ca, l, |c| {
                    c.revocations = vec![crl.clone()];
                    let banned = rejected_der.clone();
                    c.validator = Some(Arc::new(move |chain: &[rustls_pki_types::CertificateDer<'_>]| {
                        if chain[0].as_ref() == banned.as_ref() {
                            Err("banned".to_string())
                        } else {
                            Ok(())
                        }
                    }));
                })
            })
            .collect();
        let bad_creds = certificate(&ca, &bad, |_| {});
        let mut net = Net::new_each(4, 4, |i, c| {
            let creds = if i < 3 { honest_creds[i].clone() } else { bad_creds.clone() };
            c.security = Security::new(SecurityMode::Transport, creds);
        });
        for i in 0..4 {
            net.nodes[i].as_mut().unwrap().handle_input(Instant::ZERO, Input::WallClock { unix_secs: NOW_SECS });
        }
        net.open_all(Duration::from_millis(50));
        net.run_for(Duration::from_secs(25));
        assert_eq!(net.node(3).neighbor_count(), 0, "{name}");
        let seen = auth_failures_at(&net, &[0, 1, 2]);
        assert!(seen.contains(&expected), "{name}: honest nodes saw {seen:?}");
        all_delivered_once(&mut net, &[0], &[0, 1, 2]);
    }
}

#[test]
fn without_a_wall_clock_certificates_are_not_yet_valid() {
    let ca = Ca::new("mesh CA");
    let creds: Vec<Credentials> = (1..=2).map(|s| certificate(&ca, &ca.leaf(s), |_| {})).collect();
    let mut net = Net::new_each(2, 5, |i, c| c.security = Security::new(SecurityMode::Transport, creds[i].clone()));
    net.open_all(Duration::from_millis(50));
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.node(0).neighbor_count(), 0);
    assert!(auth_failures_at(&net, &[0, 1]).contains(&AuthFailure::NotYetValid));
}

// ----- a hand-driven peer ---------------------------------------------------------------

/// The other end of one link, driven by the test: raw frames before the Hello, then (with
/// TLS) its own TLS session.
struct Manual {
    tls: Option<TlsSession>,
    raw: BytesMut,
    hello_seen: bool,
    plain: BytesMut,
}

impl Manual {
    fn new(tls: Option<TlsSession>) -> Self {
        Manual { tls, raw: BytesMut::new(), hello_seen: false, plain: BytesMut::new() }
    }

    /// Takes bytes from the node; returns the frames they completed.
    fn recv(&mut self, data: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        if !self.hello_seen {
            self.raw.extend_from_slice(data);
            let mut b = self.raw.split().freeze();
            match wire::split_frame(&mut b, 1 << 20).unwrap() {
                Some(f) => {
                    frames.push(wire::decode_frame(&f).unwrap());
                    self.hello_seen = true;
                }
                None => {
                    self.raw.extend_from_slice(&b);
                    return frames;
                }
            }
            return [frames, self.recv_after_hello(&b)].concat();
        }
        self.recv_after_hello(data)
    }

    fn recv_after_hello(&mut self, data: &[u8]) -> Vec<Frame> {
        match self.tls.as_mut() {
            Some(t) => self.plain.extend_from_slice(&t.receive(data).unwrap()),
            None => self.plain.extend_from_slice(data),
        }
        let mut b = self.plain.split().freeze();
        let mut frames = Vec::new();
        while let Some(f) = wire::split_frame(&mut b, 1 << 20).unwrap() {
            frames.push(wire::decode_frame(&f).unwrap());
        }
        self.plain.extend_from_slice(&b);
        frames
    }

    /// Bytes to hand to the node: `frames` (encrypted once TLS is up) plus TLS's own output.
    fn send(&mut self, frames: &[Frame]) -> Vec<u8> {
        let mut enc = BytesMut::new();
        for f in frames {
            wire::encode_control(f, &mut enc);
        }
        let mut out = Vec::new();
        match self.tls.as_mut() {
            Some(t) => {
                if !enc.is_empty() {
                    t.encrypt(&[enc.freeze()]);
                }
                t.write_into(&mut out);
            }
            None => out.extend_from_slice(&enc),
        }
        out
    }
}

const REMOTE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 9, 9)), 5000);

fn pull(node: &mut Node, link: LinkId) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = node.poll_transmit(link, usize::MAX) {
        out.extend_from_slice(&b);
    }
    out
}

fn outputs(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

fn hello_of(node: &Node) -> Frame {
    Frame::Hello(wire::Hello {
        version: wire::VERSION,
        security: node.config().security.setting().0,
        mesh: node.config().mesh.clone(),
    })
}

fn node_with(security: Security, seed: u64) -> Node {
    let mut cfg = Config::new(MeshId::new("test").unwrap(), seed);
    cfg.bootstrap = vec![REMOTE];
    cfg.security = security;
    let mut node = Node::new(cfg, Instant::ZERO).unwrap();
    node.handle_input(Instant::ZERO, Input::WallClock { unix_secs: NOW_SECS });
    node.open_channel(ChannelPath::new("/chat").unwrap());
    node.handle_input(Instant::ZERO, Input::Open);
    node
}

/// Pumps bytes between `node`'s link and `m` until neither has more; returns the frames `m` got.
fn pump(node: &mut Node, link: LinkId, m: &mut Manual, mut to_node: Vec<u8>) -> Vec<Frame> {
    let mut got = Vec::new();
    for _ in 0..20 {
        if !to_node.is_empty() {
            node.handle_input(Instant::ZERO, Input::Received { link, data: Bytes::from(std::mem::take(&mut to_node)) });
        }
        let from_node = pull(node, link);
        if from_node.is_empty() && to_node.is_empty() {
            break;
        }
        got.extend(m.recv(&from_node));
        to_node = m.send(&[]);
    }
    got
}

#[test]
fn a_recorded_password_proof_is_rejected_on_another_link() {
    let creds = password("hunter2");
    let sec = Security::new(SecurityMode::Transport, creds);
    // The eavesdropper is a TLS endpoint with its own (self-signed) identity but no password.
    let identity = NodeIdentity::self_signed(&[7; 32]).unwrap();
    let configs = TlsConfigs::new(&identity, Arc::new(PeerVerifier::password()), &WallClock::default()).unwrap();

    // 1. An honest node dials the eavesdropper, which plays responder and records the proof.
    let mut honest = node_with(sec.clone(), 1);
    let dial = outputs(&mut honest).into_iter().find_map(|o| match o {
        Output::Dial { link, .. } => Some(link),
        _ => None,
    });
    let link = dial.expect("the node dials its bootstrap address");
    honest.handle_input(Instant::ZERO, Input::LinkConnected { link });
    let mut m = Manual::new(Some(configs.session(false).unwrap()));
    let mut hello = BytesMut::new();
    wire::encode_control(&hello_of(&honest), &mut hello);
    let frames = pump(&mut honest, link, &mut m, hello.to_vec());
    let proof = frames.iter().find_map(|f| match f {
        Frame::Proof(p) => Some(*p),
        _ => None,
    });
    let proof = proof.expect("the initiator proves itself once TLS is up");

    // 2. It replays that proof to a victim on a new link.
    let mut victim = node_with(sec, 2);
    let vlink = victim.accept(Instant::ZERO, REMOTE).unwrap();
    let mut m2 = Manual::new(Some(configs.session(true).unwrap()));
    let mut first = BytesMut::new();
    wire::encode_control(&hello_of(&victim), &mut first);
    first.extend_from_slice(&m2.send(&[]));
    pump(&mut victim, vlink, &mut m2, first.to_vec());
    assert!(m2.tls.as_ref().unwrap().is_established(), "TLS itself completes");
    let connect = Frame::Connect(wire::Connect { node: NodeId::new(5).unwrap(), addrs: Default::default() });
    let replay = m2.send(&[Frame::Proof(proof), connect]);
    let answer = pump(&mut victim, vlink, &mut m2, replay);
    let outs = outputs(&mut victim);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::AuthenticationFailed { failure: AuthFailure::WrongPassword, .. }))));
    assert!(outs.iter().any(|o| matches!(o, Output::CloseLink { reason: CloseReason::AuthenticationFailure, .. })));
    assert!(answer.iter().any(|f| matches!(f,
        Frame::Refuse(r) if r.reason == CloseReason::AuthenticationFailure)));
    assert_eq!(victim.neighbor_count(), 0);
}

#[test]
fn a_peer_that_skips_the_proof_is_refused() {
    let mut victim = node_with(Security::new(SecurityMode::Transport, password("pw")), 3);
    let identity = NodeIdentity::self_signed(&[9; 32]).unwrap();
    let configs = TlsConfigs::new(&identity, Arc::new(PeerVerifier::password()), &WallClock::default()).unwrap();
    let link = victim.accept(Instant::ZERO, REMOTE).unwrap();
    let mut m = Manual::new(Some(configs.session(true).unwrap()));
    let mut first = BytesMut::new();
    wire::encode_control(&hello_of(&victim), &mut first);
    first.extend_from_slice(&m.send(&[]));
    pump(&mut victim, link, &mut m, first.to_vec());
    let connect = Frame::Connect(wire::Connect { node: NodeId::new(5).unwrap(), addrs: Default::default() });
    let bytes = m.send(&[connect]);
    let answer = pump(&mut victim, link, &mut m, bytes);
    assert!(answer.iter().any(|f| matches!(f, Frame::Refuse(r) if r.reason == CloseReason::AuthenticationFailure)));
    assert!(outputs(&mut victim)
        .iter()
        .any(|o| matches!(o, Output::Event(Event::AuthenticationFailed { failure: AuthFailure::MissingProof, .. }))));
}

// ----- signed floods ---------------------------------------------------------------------

struct Signer {
    identity: NodeIdentity,
}

impl Signer {
    fn new(ca: &Ca, serial: u64) -> Signer {
        let leaf = ca.leaf(serial);
        Signer { identity: NodeIdentity::from_certificate(vec![leaf.cert], &leaf.key).unwrap() }
    }

    fn id(&self) -> NodeId {
        self.identity.node_id()
    }

    fn credential(&self) -> Frame {
        Frame::Credential(wire::CredentialFrame { origin: self.id(), credential: self.identity.credential().clone() })
    }

    /// A SignedFlood of message `id` on `path`; `tamper` changes the frame after signing.
    fn flood(&self, id: MessageId, path: &str, payload: &[u8], tamper: impl FnOnce(&mut wire::Flood)) -> Frame {
        let digest = flood_digest(&id, self.id(), path.as_bytes(), payload);
        let sig = self.identity.signer().sign(&digest);
        let mut f = wire::Flood {
            hops_left: 8,
            hop_limit: 8,
            id,
            origin: self.id(),
            path: Bytes::copy_from_slice(path.as_bytes()),
            signature: Some(Bytes::copy_from_slice(&sig)),
            payload: Bytes::copy_from_slice(payload),
        };
        tamper(&mut f);
        Frame::Flood(f)
    }
}

/// A Message-mode node with two hand-driven neighbors introduced to signers `a` and `b`.
fn signed_node(ca: &Ca) -> (Node, [(LinkId, Manual); 2]) {
    let me = ca.leaf(50);
    let mut node = node_with(Security::new(SecurityMode::Message, certificate(ca, &me, |_| {})), 9);
    let links = [1u64, 2].map(|n| {
        let link = node.accept(Instant::ZERO, REMOTE).unwrap();
        let mut m = Manual::new(None);
        let connect = Frame::Connect(wire::Connect { node: NodeId::new(1000 + n).unwrap(), addrs: Default::default() });
        let bytes = m.send(&[hello_of(&node), connect]);
        pump(&mut node, link, &mut m, bytes);
        (link, m)
    });
    assert_eq!(node.neighbor_count(), 2);
    outputs(&mut node);
    (node, links)
}

fn feed(node: &mut Node, link: &mut (LinkId, Manual), frames: &[Frame]) -> Vec<Output> {
    let bytes = link.1.send(frames);
    node.handle_input(Instant::ZERO, Input::Received { link: link.0, data: Bytes::from(bytes) });
    outputs(node)
}

fn delivered(outs: &[Output], id: MessageId) -> usize {
    outs.iter().filter(|o| matches!(o, Output::Deliver(m) if m.id == id)).count()
}

#[test]
fn an_altered_or_forged_copy_is_dropped_its_link_closed_and_the_genuine_one_delivered() {
    let ca = Ca::new("mesh CA");
    let (a, b) = (Signer::new(&ca, 1), Signer::new(&ca, 2));
    let b_id = b.id();
    type Tamper = Box<dyn Fn(&mut wire::Flood)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("payload", Box::new(|f| f.payload = Bytes::from_static(b"evil"))),
        ("path", Box::new(|f| f.path = Bytes::from_static(b"/chaT"))),
        ("origin", Box::new(move |f| f.origin = b_id)),
        ("forged signature", Box::new(|f| f.signature = Some(Bytes::from(vec![7u8; 64])))),
    ];
    for (what, tamper) in cases {
        let (mut node, [mut l1, mut l2]) = signed_node(&ca);
        let id = MessageId([3; 16]);
        // The relay on l1 introduces both signers, then sends an altered copy first.
        let outs = feed(&mut node, &mut l1, &[a.credential(), b.credential(), a.flood(id, "/chat", b"hi", tamper)]);
        assert_eq!(delivered(&outs, id), 0, "{what}");
        assert!(
            outs.iter().any(|o| matches!(o, Output::Event(Event::InvalidSignature { link, .. }) if *link == l1.0)),
            "{what}"
        );
        assert!(
            outs.iter().any(|o| matches!(o,
            Output::CloseLink { link, reason: CloseReason::InvalidSignature } if *link == l1.0)),
            "{what}"
        );
        // The genuine copy on the other link is delivered: the forgery did not mark it seen.
        let outs = feed(&mut node, &mut l2, &[a.credential(), a.flood(id, "/chat", b"hi", |_| {})]);
        assert_eq!(delivered(&outs, id), 1, "{what}");
        assert_eq!(node.stats().invalid_signatures, 1);
    }
}

#[test]
fn a_replayed_signed_flood_is_a_duplicate_and_is_not_verified_again() {
    let ca = Ca::new("mesh CA");
    let a = Signer::new(&ca, 1);
    let (mut node, [mut l1, mut l2]) = signed_node(&ca);
    let id = MessageId([4; 16]);
    let genuine = a.flood(id, "/chat", b"once", |_| {});
    let outs = feed(&mut node, &mut l1, &[a.credential(), genuine.clone()]);
    assert_eq!(delivered(&outs, id), 1);
    let verified = node.stats().signatures_verified;
    let outs = feed(&mut node, &mut l2, &[a.credential(), genuine.clone()]);
    let outs2 = feed(&mut node, &mut l1, &[genuine]);
    assert_eq!(delivered(&outs, id) + delivered(&outs2, id), 0);
    assert_eq!(node.stats().signatures_verified, verified, "duplicates are dropped before verifying");
    assert_eq!(node.stats().duplicates, 2);
}

#[test]
fn a_flood_before_its_origins_credential_closes_the_link() {
    let ca = Ca::new("mesh CA");
    let a = Signer::new(&ca, 1);
    let (mut node, [mut l1, _]) = signed_node(&ca);
    let outs = feed(&mut node, &mut l1, &[a.flood(MessageId([5; 16]), "/chat", b"x", |_| {})]);
    assert!(outs.iter().any(|o| matches!(o, Output::CloseLink { reason: CloseReason::ProtocolViolation, .. })));
}

#[test]
fn a_credential_from_another_ca_is_refused() {
    let ca = Ca::new("mesh CA");
    let stranger = Signer::new(&Ca::new("other CA"), 1);
    let (mut node, [mut l1, _]) = signed_node(&ca);
    let outs = feed(&mut node, &mut l1, &[stranger.credential()]);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Event(Event::AuthenticationFailed { failure: AuthFailure::UnknownIssuer, .. }))));
}

#[test]
fn a_relay_that_alters_every_flood_is_cut_off_and_everyone_still_receives() {
    let ca = Ca::new("mesh CA");
    let creds: Vec<Credentials> = (0..10).map(|s| certificate(&ca, &ca.leaf(s + 1), |_| {})).collect();
    let mut net = Net::new_each(10, 6, |i, c| c.security = Security::new(SecurityMode::Message, creds[i].clone()));
    for i in 0..10 {
        net.nodes[i].as_mut().unwrap().handle_input(Instant::ZERO, Input::WallClock { unix_secs: NOW_SECS });
    }
    net.open_all(Duration::from_millis(50));
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.components(), 1);
    // A relay turns hostile: it flips the last payload byte of every signed flood it forwards,
    // and its copies travel faster than everyone else's. It is a node with two neighbors that
    // are not neighbors of each other: a flood from one of them then reaches the other first
    // through the relay (two hops, one slow) rather than any other way (two slow hops at
    // least), so an altered copy is the first one there.
    let (hostile, origin) = (0..10)
        .find_map(|h| {
            let around = net.neighbors_of(h);
            let p = around.iter().find(|p| around.iter().any(|y| y != *p && !net.neighbors_of(**p).contains(y)))?;
            Some((h, *p))
        })
        .expect("a relay between two nodes that are not neighbors");
    for i in (0..10).filter(|i| *i != hostile) {
        net.extra_latency.insert(i, Duration::from_millis(3));
    }
    net.tamper = Some(Box::new(move |from, _to, bytes: &mut BytesMut| {
        if from != hostile {
            return;
        }
        let mut at = 0;
        while at + 5 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if bytes[at + 4] == wire::FrameType::SignedFlood as u8 {
                bytes[at + 4 + len - 1] ^= 0xFF;
            }
            at += 4 + len;
        }
    }));
    let all: Vec<usize> = (0..10).collect();
    let far = (0..10).find(|i| *i != hostile && *i != origin && !net.neighbors_of(hostile).contains(i)).unwrap();
    all_delivered_once(&mut net, &[origin, far], &all);
    let invalid: u64 = (0..10).map(|i| net.node(i).stats().invalid_signatures).sum();
    assert!(invalid > 0, "the altered copies were caught");
    assert!(
        net.node(hostile).stats().neighbors_down_for(CloseReason::InvalidSignature) > 0,
        "the relay's links were closed"
    );
}
