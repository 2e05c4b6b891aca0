//! What security costs, each figure beside its reference in the same run:
//!
//! - `signed/raw_verify`: ring's Ed25519 verify of a 32-byte digest, the floor of a signed
//!   flood's cost; `signed/relay`: a 1 KiB signed flood received, verified, delivered and
//!   forwarded to one neighbor (and pulled, as an adapter would); `signed/unsigned_relay`: the
//!   same flood path without signatures.
//! - `handshake/password` and `handshake/certificate`: two nodes from TCP-connected to
//!   neighbors (TLS 1.3 + password proofs, or TLS with certificate checks), in memory.
//! - `pbkdf2/default`: deriving the mesh key at the default 600,000 iterations.
//!
//! Run: `cargo bench -p peerchannel-core --bench security`

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use peerchannel_core::security::*;
use peerchannel_core::wire::{self, Frame};
use peerchannel_core::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const FLOODS: usize = 256;
const NOW_SECS: u64 = 1_893_456_000;
const REMOTE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)), 1);

struct Pki {
    ca: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "bench CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap().der().clone();
        Pki { ca, issuer: Issuer::new(params, key) }
    }

    fn credentials(&self) -> Credentials {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = CertificateParams::default().signed_by(&key, &self.issuer).unwrap().der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Credentials::Certificate(Arc::new(CertificateCredentials::new(vec![cert], key, vec![self.ca.clone()])))
    }

    fn identity(&self) -> NodeIdentity {
        let Credentials::Certificate(c) = self.credentials() else { unreachable!() };
        NodeIdentity::from_certificate(c.chain.clone(), &c.key).unwrap()
    }
}

fn node(security: Security, seed: u64) -> Node {
    let mut cfg = Config::new(MeshId::new("bench").unwrap(), seed);
    cfg.security = security;
    cfg.listen_addrs = vec![SocketAddr::from(([10, 0, 0, seed as u8], 7000))];
    let mut n = Node::new(cfg, Instant::ZERO).unwrap();
    n.handle_input(Instant::ZERO, Input::WallClock { unix_secs: NOW_SECS });
    n.open_channel(ChannelPath::new("/chat").unwrap());
    n
}

fn encode(frames: &[Frame]) -> Bytes {
    let mut b = BytesMut::new();
    for f in frames {
        wire::encode_control(f, &mut b);
    }
    b.freeze()
}

fn drain(n: &mut Node, links: &[LinkId]) {
    while n.poll_output().is_some() {}
    for l in links {
        while n.poll_transmit(*l, usize::MAX).is_some() {}
    }
}

/// A node with two hand-driven neighbors, ready for floods of `origin` (introduced on link 0).
fn relay(security: Security, origin: Option<&NodeIdentity>) -> (Node, [LinkId; 2]) {
    let mut n = node(security, 1);
    n.handle_input(Instant::ZERO, Input::Open);
    let setting = n.config().security.setting().0;
    let links = [1u64, 2].map(|i| {
        let link = n.accept(Instant::ZERO, REMOTE).unwrap();
        let hello =
            Frame::Hello(wire::Hello { version: wire::VERSION, security: setting, mesh: n.config().mesh.clone() });
        let connect = Frame::Connect(wire::Connect { node: NodeId::new(100 + i).unwrap(), addrs: Default::default() });
        n.handle_input(Instant::ZERO, Input::Received { link, data: encode(&[hello, connect]) });
        link
    });
    if let Some(o) = origin {
        let cred = Frame::Credential(wire::CredentialFrame { origin: o.node_id(), credential: o.credential().clone() });
        n.handle_input(Instant::ZERO, Input::Received { link: links[0], data: encode(&[cred]) });
    }
    drain(&mut n, &links);
    (n, links)
}

/// `FLOODS` 1 KiB floods with distinct IDs, signed by `origin` if given, in one read buffer.
fn floods(origin: Option<&NodeIdentity>) -> Bytes {
    let payload = Bytes::from(vec![0xAB; 1024]);
    let frames: Vec<Frame> = (0..FLOODS)
        .map(|i| {
            let mut id = MessageId::default();
            id.0[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            let origin_id = origin.map_or(NodeId::new(77).unwrap(), |o| o.node_id());
            let signature = origin.map(|o| {
                let d = flood_digest(&id, origin_id, b"/chat", &payload);
                Bytes::copy_from_slice(&o.signer().sign(&d))
            });
            Frame::Flood(wire::Flood {
                hops_left: 8,
                hop_limit: 8,
                id,
                origin: origin_id,
                path: Bytes::from_static(b"/chat"),
                signature,
                payload: payload.clone(),
            })
        })
        .collect();
    encode(&frames)
}

fn signed(c: &mut Criterion) {
    let pki = Pki::new();
    let origin = pki.identity();
    let mut g = c.benchmark_group("signed");
    g.throughput(Throughput::Elements(FLOODS as u64));

    // The floor: ring verifying the same digests with the same key, nothing else.
    let payload = vec![0xAB; 1024];
    let digests: Vec<[u8; 32]> = (0..FLOODS)
        .map(|i| {
            let mut id = MessageId::default();
            id.0[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            flood_digest(&id, origin.node_id(), b"/chat", &payload)
        })
        .collect();
    let sigs: Vec<_> = digests.iter().map(|d| origin.signer().sign(d)).collect();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, origin.signer().public_key().to_vec());
    g.bench_function("raw_verify", |b| {
        b.iter(|| {
            for (d, s) in digests.iter().zip(&sigs) {
                assert!(key.verify(d, s).is_ok());
            }
        })
    });

    let data = floods(Some(&origin));
    let sec = Security::new(SecurityMode::Message, pki.credentials());
    g.bench_function("relay", |b| {
        b.iter_batched(
            || relay(sec.clone(), Some(&origin)),
            |(mut n, links)| {
                n.handle_input(Instant::ZERO, Input::Received { link: links[0], data: data.clone() });
                assert_eq!(n.stats().signatures_verified, FLOODS as u64);
                drain(&mut n, &links);
                n
            },
            BatchSize::PerIteration,
        )
    });

    let plain = floods(None);
    g.bench_function("unsigned_relay", |b| {
        b.iter_batched(
            || relay(Security::none(), None),
            |(mut n, links)| {
                n.handle_input(Instant::ZERO, Input::Received { link: links[0], data: plain.clone() });
                assert_eq!(n.stats().delivered, FLOODS as u64);
                drain(&mut n, &links);
                n
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let pw = Credentials::password_with_iterations(&MeshId::new("bench").unwrap(), "pw", NonZeroU32::new(10).unwrap());
    let pki = Pki::new();
    let (ca, cb) = (pki.credentials(), pki.credentials());
    for (name, sa, sb) in [
        ("password", Security::new(SecurityMode::Transport, pw.clone()), Security::new(SecurityMode::Transport, pw)),
        ("certificate", Security::new(SecurityMode::Transport, ca), Security::new(SecurityMode::Transport, cb)),
    ] {
        g.bench_function(name, |bench| {
            bench.iter_batched(
                || (pair(sa.clone(), 2), node(sb.clone(), 3)),
                |((a, la), b)| connect(a, la, b),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

/// A node that has dialed and has its link handle (it dials its bootstrap address on Open).
fn pair(sec: Security, seed: u64) -> (Node, LinkId) {
    let mut cfg = Config::new(MeshId::new("bench").unwrap(), seed);
    cfg.security = sec;
    cfg.bootstrap = vec![REMOTE];
    let mut n = Node::new(cfg, Instant::ZERO).unwrap();
    n.handle_input(Instant::ZERO, Input::WallClock { unix_secs: NOW_SECS });
    n.handle_input(Instant::ZERO, Input::Open);
    let link = std::iter::from_fn(|| n.poll_output())
        .find_map(|o| match o {
            Output::Dial { link, .. } => Some(link),
            _ => None,
        })
        .unwrap();
    (n, link)
}

fn connect(mut a: Node, la: LinkId, mut b: Node) -> (Node, Node) {
    b.handle_input(Instant::ZERO, Input::Open);
    let lb = b.accept(Instant::ZERO, REMOTE).unwrap();
    a.handle_input(Instant::ZERO, Input::LinkConnected { link: la });
    for _ in 0..16 {
        let ab = carry(&mut a, la, &mut b, lb);
        let ba = carry(&mut b, lb, &mut a, la);
        if !ab && !ba {
            break;
        }
    }
    assert_eq!((a.neighbor_count(), b.neighbor_count()), (1, 1));
    (a, b)
}

/// Moves everything `from` has for its link `lf` to `to`'s link `lt`; false if nothing.
fn carry(from: &mut Node, lf: LinkId, to: &mut Node, lt: LinkId) -> bool {
    let mut bytes = BytesMut::new();
    while let Some(x) = from.poll_transmit(lf, usize::MAX) {
        bytes.extend_from_slice(&x);
    }
    if bytes.is_empty() {
        return false;
    }
    to.handle_input(Instant::ZERO, Input::Received { link: lt, data: bytes.freeze() });
    true
}

fn pbkdf2(c: &mut Criterion) {
    let mut g = c.benchmark_group("pbkdf2");
    g.sample_size(10);
    let mesh = MeshId::new("bench").unwrap();
    g.bench_function("default", |b| b.iter(|| Credentials::password(&mesh, "correct horse battery staple")));
    g.finish();
}

criterion_group!(benches, signed, handshakes, pbkdf2);
criterion_main!(benches);
