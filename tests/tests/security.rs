//! Security through the adapters' builders, on real sockets: errors for options that do not fit
//! together, secrets kept out of `Debug`, refusals reported as typed errors, links that speak
//! standard TLS 1.3 (a plain rustls client completes a handshake with a node), and certificate
//! meshes that keep out a node whose certificate comes from another CA.
//!
//! The password meshes themselves (forming, delivering exactly once, keeping out a wrong or
//! missing password) run in the shared suite for tokio, mio and mixed meshes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerchannel_core::security::{Credentials, Security};
use peerchannel_core::wire::{self, Connect, Frame, Hello, Refuse};
use peerchannel_tests::{fast_config, init_tracing, is_one_mesh, loopback, mesh_id, wait_until, PATIENCE};
use peerchannel_tokio::security::{
    AuthFailure, CertificateCredentials, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, SecurityConfigError,
    SecurityMode,
};
use peerchannel_tokio::{CloseReason, DialFailure, Error, Event, EventStream, NodeId, PeerNode};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const ITERATIONS: NonZeroU32 = match NonZeroU32::new(10) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// Waits (at most [`PATIENCE`]) for an event `pred` accepts.
async fn expect_event(events: &mut EventStream, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(e) = events.recv().await {
            if pred(&e) {
                return Some(e);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(e)) => e,
        Ok(None) => panic!("{what}: the node closed first"),
        Err(_) => panic!("{what}: no such event within {PATIENCE:?}"),
    }
}

// ----- options and their errors --------------------------------------------------------------

#[test]
fn debug_output_never_shows_the_password_or_the_key() {
    let pw = "open sesame 8f3c";
    let tokio_builder = PeerNode::builder().mesh("secrets").password(pw).password_iterations(ITERATIONS);
    let text = format!("{tokio_builder:?}");
    assert!(!text.contains(pw) && !text.contains("sesame"), "{text}");
    assert!(text.contains("Password(***)"), "the builder should say a password is set: {text}");

    let mio_builder = peerchannel_mio::MioNode::builder().mesh("secrets").password(pw);
    let text = format!("{mio_builder:?} {:#?}", mio_builder.clone());
    assert!(!text.contains(pw) && !text.contains("sesame"), "{text}");

    let mut config = fast_config("secrets");
    config.security = Security::new(
        SecurityMode::Transport,
        Credentials::password_with_iterations(&mesh_id("secrets"), pw, ITERATIONS),
    );
    let text = format!("{:?} {:?}", PeerNode::builder().config(config.clone()), config);
    assert!(!text.contains(pw) && !text.contains("sesame"), "{text}");
}

#[tokio::test]
async fn options_that_do_not_fit_fail_open_with_typed_errors() {
    let base = || PeerNode::builder().mesh("mismatched").listen(loopback()).open_alone().lan_discovery(false);
    let cases = [
        (base().security(SecurityMode::Transport), SecurityConfigError::ModeWithoutCredentials),
        (base().password("pw").security(SecurityMode::None), SecurityConfigError::CredentialsWithoutMode),
        (base().password("pw").security(SecurityMode::Message), SecurityConfigError::MessageModeNeedsCertificate),
    ];
    for (builder, want) in cases {
        match builder.password_iterations(ITERATIONS).open().await {
            Err(Error::Security(e)) => assert_eq!(e, want),
            Err(e) => panic!("expected Error::Security({want:?}), got {e}"),
            Ok(_) => panic!("expected Error::Security({want:?}), the node opened"),
        }
    }
    // Certificate credentials without a trust anchor.
    let ca = Ca::new("lonely");
    let leaf = ca.leaf("a");
    let creds = CertificateCredentials::new(vec![leaf.cert], leaf.key, Vec::new());
    match base().certificate(creds).open().await {
        Err(Error::Security(SecurityConfigError::NoTrustAnchors)) => {}
        other => panic!("expected NoTrustAnchors, got {:?}", other.map(|n| n.id())),
    }

    // The mio builder maps the same core checks to its own typed error.
    let poll = mio::Poll::new().expect("poll");
    let mio_base = || peerchannel_mio::MioNode::builder().mesh("mismatched").listen(loopback()).open_alone();
    match mio_base().security(SecurityMode::TransportAndMessage).open(poll.registry()) {
        Err(peerchannel_mio::Error::Security(SecurityConfigError::ModeWithoutCredentials)) => {}
        other => panic!("expected ModeWithoutCredentials, got {:?}", other.map(|n| n.id())),
    }
    match mio_base()
        .password("pw")
        .password_iterations(ITERATIONS)
        .security(SecurityMode::Message)
        .open(poll.registry())
    {
        Err(peerchannel_mio::Error::Security(SecurityConfigError::MessageModeNeedsCertificate)) => {}
        other => panic!("expected MessageModeNeedsCertificate, got {:?}", other.map(|n| n.id())),
    }
    // A password alone means Transport, and the mio node opens with it.
    let node =
        mio_base().password("pw").password_iterations(ITERATIONS).open(poll.registry()).expect("a password mesh opens");
    assert_eq!(node.core().config().security.mode, SecurityMode::Transport);
    assert!(node.core().config().security.key_seed.is_some(), "the adapter draws the key seed from the OS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reports_a_wrong_or_missing_password_as_a_typed_error() {
    init_tracing();
    let first = PeerNode::builder()
        .config(fast_config("typedrefusal"))
        .listen(loopback())
        .password("right")
        .password_iterations(ITERATIONS)
        .open_alone()
        .lan_discovery(false)
        .open()
        .await
        .expect("first node");
    let mut events = first.events();
    let join = |pw: Option<&str>| {
        let mut b =
            PeerNode::builder().config(fast_config("typedrefusal")).listen(loopback()).bootstrap([first.local_addr()]);
        if let Some(pw) = pw {
            b = b.password(pw).password_iterations(ITERATIONS);
        }
        b.open()
    };
    match join(Some("wrong")).await {
        Err(Error::Unreachable { addr, reason: DialFailure::Handshake(CloseReason::AuthenticationFailure) }) => {
            assert_eq!(addr, first.local_addr())
        }
        other => panic!("expected an authentication failure, got {:?}", other.map(|n| n.id())),
    }
    expect_event(&mut events, "the member reports the wrong password", |e| {
        matches!(e, Event::AuthenticationFailed { failure: AuthFailure::WrongPassword, .. })
    })
    .await;
    match join(None).await {
        Err(e @ Error::Unreachable { reason: DialFailure::Handshake(CloseReason::SecurityMismatch), .. }) => {
            assert!(e.to_string().contains("security mode"), "{e}")
        }
        other => panic!("expected a security mismatch, got {:?}", other.map(|n| n.id())),
    }
    expect_event(&mut events, "the member refuses the unsecured node", |e| {
        matches!(e, Event::InboundRefused { reason: CloseReason::SecurityMismatch, .. })
    })
    .await;
    assert!(first.neighbors().await.expect("neighbors").is_empty());
    first.close().await;
}

// ----- standard TLS 1.3 on the wire ----------------------------------------------------------

/// Accepts any server certificate (the node's is self-signed in a password mesh), but checks
/// the handshake signatures, as a real client would.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads from `sock` into `buf` until one whole frame can be split off its front.
fn read_frame(sock: &mut impl Read, buf: &mut BytesMut) -> Frame {
    loop {
        let mut view = Bytes::copy_from_slice(buf);
        if let Some(frame) = wire::split_frame(&mut view, 64 * 1024).expect("a well-formed frame") {
            let used = buf.len() - view.len();
            let _ = buf.split_to(used);
            return wire::decode_frame(&frame).expect("a decodable frame");
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).expect("read");
        assert!(n > 0, "the node closed the connection before a whole frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What a plain rustls client saw of a node: the node's Hello, the negotiated version, and
/// the frame the node answered a proof-less Connect with.
struct Observed {
    hello: Frame,
    version: Option<rustls::ProtocolVersion>,
    handshaking: bool,
    answer: Frame,
}

fn plain_rustls_client(addr: SocketAddr, mesh: &str, security: u8) -> Observed {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_cert = rcgen::generate_simple_self_signed(vec!["rustls-client".to_owned()]).expect("client cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_cert.signing_key.serialize_der()));
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
        .with_client_auth_cert(vec![client_cert.cert.der().clone()], key)
        .expect("client auth");
    let name = rustls::pki_types::ServerName::try_from("peer").expect("name");
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).expect("client");

    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    sock.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // The plaintext Hello that opens every link, then TLS on the same stream.
    let mut out = BytesMut::new();
    let hello = Hello { version: wire::VERSION, security, mesh: mesh_id(mesh) };
    wire::encode_control(&Frame::Hello(hello), &mut out);
    sock.write_all(&out).expect("write hello");
    let mut raw = BytesMut::new();
    let node_hello = read_frame(&mut sock, &mut raw);
    // Whatever followed the node's Hello is already TLS.
    let mut rest = &raw[..];
    while !rest.is_empty() {
        tls.read_tls(&mut rest).expect("read_tls");
        tls.process_new_packets().expect("TLS records");
    }
    while tls.is_handshaking() {
        tls.complete_io(&mut sock).expect("TLS handshake");
    }
    let (handshaking, version) = (tls.is_handshaking(), tls.protocol_version());

    // A Connect with no password proof before it.
    let id = NodeId::new(0x5eed).expect("non-zero");
    let mut connect = BytesMut::new();
    wire::encode_control(&Frame::Connect(Connect { node: id, addrs: Default::default() }), &mut connect);
    tls.writer().write_all(&connect).expect("write connect");
    while tls.wants_write() {
        tls.write_tls(&mut sock).expect("write_tls");
    }
    let mut plain = BytesMut::new();
    let answer = loop {
        let mut view = Bytes::copy_from_slice(&plain);
        if let Some(frame) = wire::split_frame(&mut view, 64 * 1024).expect("a well-formed frame") {
            break wire::decode_frame(&frame).expect("a decodable frame");
        }
        let n = tls.read_tls(&mut sock).expect("read_tls");
        tls.process_new_packets().expect("TLS records");
        let mut chunk = [0u8; 4096];
        loop {
            match tls.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(k) => plain.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading plaintext: {e}"),
            }
        }
        assert!(n > 0 || !plain.is_empty(), "the node closed the connection without answering");
    };
    Observed { hello: node_hello, version, handshaking, answer }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_rustls_client_completes_tls13_and_a_connect_without_proof_is_refused() {
    init_tracing();
    let mut config = fast_config("interop");
    config.connect_timeout = Duration::from_secs(15);
    let node = PeerNode::builder()
        .config(config)
        .listen(loopback())
        .password("interop password")
        .password_iterations(ITERATIONS)
        .open_alone()
        .lan_discovery(false)
        .open()
        .await
        .expect("node");
    let mut events = node.events();
    // What the node announces: Transport mode with a password.
    let setting = Security::new(
        SecurityMode::Transport,
        Credentials::password_with_iterations(&mesh_id("interop"), "anything", ITERATIONS),
    )
    .setting()
    .0;
    let addr = node.local_addr();
    let seen = tokio::task::spawn_blocking(move || plain_rustls_client(addr, "interop", setting))
        .await
        .expect("client thread");

    match &seen.hello {
        Frame::Hello(h) => {
            assert_eq!((h.version, h.security, h.mesh.as_str()), (wire::VERSION, setting, "interop"))
        }
        other => panic!("the node opened with {other:?}"),
    }
    assert!(!seen.handshaking, "the TLS handshake did not finish");
    assert_eq!(seen.version, Some(rustls::ProtocolVersion::TLSv1_3));
    match &seen.answer {
        Frame::Refuse(Refuse { reason, .. }) => assert_eq!(*reason, CloseReason::AuthenticationFailure),
        other => panic!("expected Refuse(AuthenticationFailure), got {other:?}"),
    }
    expect_event(&mut events, "the node reports the missing proof", |e| {
        matches!(e, Event::AuthenticationFailed { failure: AuthFailure::MissingProof, .. })
    })
    .await;
    assert!(node.neighbors().await.expect("neighbors").is_empty());
    node.close().await;
}

// ----- certificate meshes --------------------------------------------------------------------

/// A certificate authority made in the test.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate").der().clone();
        Ca { cert, issuer: Issuer::new(params, key) }
    }

    fn leaf(&self, name: &str) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate").der().clone();
        Leaf { cert, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_mesh_delivers_and_refuses_a_certificate_from_another_ca() {
    init_tracing();
    let ca = Ca::new("mesh CA");
    let creds = |name: &str| {
        let leaf = ca.leaf(name);
        CertificateCredentials::new(vec![leaf.cert], leaf.key, vec![ca.cert.clone()])
    };
    let mut nodes: Vec<PeerNode> = Vec::new();
    for i in 0..3 {
        let mut b = PeerNode::builder()
            .config(fast_config("certmesh"))
            .listen(loopback())
            .certificate(creds(&format!("node {i}")))
            .lan_discovery(false);
        b = if i == 0 { b.open_alone() } else { b.bootstrap(nodes.iter().map(|n| n.local_addr())) };
        nodes.push(b.open().await.unwrap_or_else(|e| panic!("node {i}: {e}")));
    }
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    wait_until("the three form one mesh", PATIENCE, || is_one_mesh(&refs, 2, 2)).await;
    let mut events: Vec<EventStream> = nodes.iter().map(|n| n.events()).collect();

    let mut rx = Vec::new();
    for n in &nodes {
        rx.push(n.channel("/certs").expect("channel"));
    }
    for (i, n) in nodes.iter().enumerate() {
        n.channel("/certs").expect("channel").send(format!("from {i}")).await.expect("send");
    }
    for (i, ch) in rx.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..2 {
            let m = tokio::time::timeout(PATIENCE, ch.recv()).await.expect("in time").expect("open");
            assert_ne!(m.origin, nodes[i].id());
            got.push(m.payload);
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 2, "node {i} got a message twice");
    }

    // A node that trusts the mesh CA but whose own certificate comes from another CA.
    let rogue_ca = Ca::new("rogue CA");
    let leaf = rogue_ca.leaf("rogue");
    let rogue = PeerNode::builder()
        .config(fast_config("certmesh"))
        .listen(loopback())
        .certificate(CertificateCredentials::new(vec![leaf.cert], leaf.key, vec![ca.cert.clone()]))
        .bootstrap(nodes.iter().map(|n| n.local_addr()))
        .open()
        .await;
    match rogue {
        Err(Error::Unreachable { reason: DialFailure::Handshake(CloseReason::AuthenticationFailure), .. }) => {}
        other => panic!("expected the rogue node to be refused, got {:?}", other.map(|n| n.id())),
    }
    let mut unknown_issuer = 0;
    for ev in &mut events {
        while let Some(e) = ev.try_recv() {
            if matches!(e, Event::AuthenticationFailed { failure: AuthFailure::UnknownIssuer, .. }) {
                unknown_issuer += 1;
            }
        }
    }
    assert!(unknown_issuer >= 1, "no member reported the rogue certificate's unknown issuer");
    for n in &nodes {
        assert_eq!(n.neighbors().await.expect("neighbors").len(), 2, "a member lost or gained a neighbor");
    }
    for n in nodes {
        n.close().await;
    }
}

/// Signed modes through the tokio adapter: Message (certificates, plain links) and
/// TransportAndMessage (certificates or a password): three nodes form a mesh and every
/// message arrives exactly once, verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_modes_deliver_exactly_once_through_the_tokio_adapter() {
    init_tracing();
    let ca = Ca::new("mesh CA");
    for (k, (mode, password)) in [
        (SecurityMode::Message, false),
        (SecurityMode::TransportAndMessage, false),
        (SecurityMode::TransportAndMessage, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mesh = format!("signed{k}");
        let mut nodes: Vec<PeerNode> = Vec::new();
        for i in 0..3 {
            let mut b = PeerNode::builder().config(fast_config(&mesh)).listen(loopback()).lan_discovery(false);
            b = if password {
                b.password("pw").password_iterations(ITERATIONS)
            } else {
                let leaf = ca.leaf(&format!("node {k}.{i}"));
                b.certificate(CertificateCredentials::new(vec![leaf.cert], leaf.key, vec![ca.cert.clone()]))
            };
            b = b.security(mode);
            b = if i == 0 { b.open_alone() } else { b.bootstrap(nodes.iter().map(|n| n.local_addr())) };
            nodes.push(b.open().await.unwrap_or_else(|e| panic!("{mode:?} node {i}: {e}")));
        }
        let refs: Vec<&PeerNode> = nodes.iter().collect();
        wait_until("the three form one mesh", PATIENCE, || is_one_mesh(&refs, 2, 2)).await;
        let mut rx: Vec<_> = nodes.iter().map(|n| n.channel("/signed").expect("channel")).collect();
        for (i, n) in nodes.iter().enumerate() {
            n.channel("/signed").expect("channel").send(format!("from {i}")).await.expect("send");
        }
        for (i, ch) in rx.iter_mut().enumerate() {
            let mut got = Vec::new();
            for _ in 0..2 {
                let m = tokio::time::timeout(PATIENCE, ch.recv()).await.expect("in time").expect("open");
                got.push(m.payload);
            }
            got.sort();
            got.dedup();
            assert_eq!(got.len(), 2, "{mode:?}: node {i} got a message twice");
        }
        let verified: u64 = {
            let mut sum = 0;
            for n in &nodes {
                sum += n.stats().await.expect("stats").core.signatures_verified;
            }
            sum
        };
        assert!(verified >= 6, "{mode:?}: only {verified} signatures verified");
        for n in nodes {
            n.close().await;
        }
    }
}

// ----- core issues --------------------------------------------------------------------------

/// A two-node password mesh, `.0` being the node to probe (it has a neighbor to refer to).
async fn password_pair(mesh: &str) -> (PeerNode, PeerNode) {
    let open = |b: peerchannel_tokio::Builder| {
        b.config(fast_config(mesh)).listen(loopback()).password("pair").password_iterations(ITERATIONS).open()
    };
    let a = open(PeerNode::builder().open_alone().lan_discovery(false)).await.expect("first");
    let b = open(PeerNode::builder().bootstrap([a.local_addr()])).await.expect("second");
    wait_until("the pair are neighbors", PATIENCE, || async { a.neighbors().await.is_ok_and(|n| n.len() == 1) }).await;
    (a, b)
}

/// In a password mesh anyone completes the TLS handshake (any self-signed certificate does;
/// the proof comes after), so a refusal for failed authentication must not carry referrals:
/// a client with no password would learn the members' addresses. (SecurityMismatch sends no
/// Refuse at all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refused_for_failed_authentication_learns_no_member_addresses() {
    init_tracing();
    let (a, b) = password_pair("leakymesh").await;
    let setting = Security::new(
        SecurityMode::Transport,
        Credentials::password_with_iterations(&mesh_id("leakymesh"), "anything", ITERATIONS),
    )
    .setting()
    .0;
    let addr = a.local_addr();
    let seen =
        tokio::task::spawn_blocking(move || plain_rustls_client(addr, "leakymesh", setting)).await.expect("client");
    match seen.answer {
        Frame::Refuse(r) => {
            assert_eq!(r.reason, CloseReason::AuthenticationFailure);
            assert!(r.referrals.is_empty(), "an unauthenticated peer was referred to {:?}", r.referrals);
        }
        other => panic!("expected a Refuse, got {other:?}"),
    }
    a.close().await;
    b.close().await;
}

/// A node with the wrong password must not storm the mesh with handshakes: after a refusal
/// for its credentials it retries on the repair timer, not at once (before that rule, about
/// 19,000 handshakes in 30 s on loopback). The bound is loose: one attempt per bootstrap
/// address per repair interval (100 ms here) stays far under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_node_does_not_storm_the_mesh_with_handshakes() {
    init_tracing();
    let (a, b) = password_pair("stormymesh").await;
    let wrong = PeerNode::builder()
        .config(fast_config("stormymesh"))
        .listen(loopback())
        .password("wrong")
        .password_iterations(ITERATIONS)
        .bootstrap([a.local_addr(), b.local_addr()])
        .open_alone()
        .open()
        .await
        .expect("the wrong node opens alone");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let failures = wrong.stats().await.expect("stats").core.auth_failures;
    assert!(failures <= 100, "{failures} authentication failures in 2 s");
    drop(wrong);
    a.close().await;
    b.close().await;
}

/// A configuration's `Debug` output hides the key seed (the seed of the node's private key in
/// password meshes, which the adapters fill from the OS), as it hides the password.
#[test]
fn debug_output_never_shows_the_key_seed() {
    let mut config = fast_config("secrets");
    config.security = Security::new(
        SecurityMode::Transport,
        Credentials::password_with_iterations(&mesh_id("secrets"), "pw", ITERATIONS),
    );
    config.security.key_seed = Some([0xAB; 32]);
    let text = format!("{config:?}");
    assert!(!text.contains("171, 171"), "the key seed shows: {text}");
}
