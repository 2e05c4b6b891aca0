//! `handshake`: a password-mode node (TLS 1.3 + password proof) against a peer whose bytes the
//! fuzzer chooses.
//!
//! The peer sends a valid Hello, then either raw bytes where TLS records belong (exercising
//! rustls' record layer and the node's handling of its errors), or completes a real TLS
//! handshake and sends arbitrary *plaintext* inside it (exercising the proof, Connect and
//! Welcome checks with well-encrypted garbage). The node dials or accepts; time jumps between
//! steps reach the connect timeout.
//!
//! Checked after every step: no panic, `Node::check_invariants()`, and the peer is never a
//! neighbor: it cannot know the password, so no sequence of bytes may get it admitted.
#![no_main]

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use peerchannel_core::security::{
    Credentials, NodeIdentity, PeerVerifier, Security, SecurityMode, TlsConfigs, WallClock,
};
use peerchannel_core::wire::{self, Frame};
use peerchannel_core::*;

#[derive(Arbitrary, Debug)]
struct Case {
    dial: bool,
    complete_tls: bool,
    chunks: Vec<Chunk>,
}

#[derive(Arbitrary, Debug)]
enum Chunk {
    Bytes(Vec<u8>),
    Frame(u8, Vec<u8>),
    Wait(u16),
}

const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)), 7000);

fn peer_tls() -> &'static TlsConfigs {
    static CONFIGS: OnceLock<TlsConfigs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let identity = NodeIdentity::self_signed(&[3; 32]).expect("identity");
        TlsConfigs::new(&identity, Arc::new(PeerVerifier::password()), &WallClock::default()).expect("configs")
    })
}

fn password() -> &'static Credentials {
    static CREDS: OnceLock<Credentials> = OnceLock::new();
    CREDS.get_or_init(|| {
        Credentials::password_with_iterations(&MeshId::new("fuzz").unwrap(), "secret", NonZeroU32::new(1).unwrap())
    })
}

fn pull(node: &mut Node, link: LinkId) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(b) = node.poll_transmit(link, usize::MAX) {
        out.extend_from_slice(&b);
    }
    out
}

fn check(node: &Node) {
    if let Err(e) = node.check_invariants() {
        panic!("invariant: {e}");
    }
    assert_eq!(node.neighbor_count(), 0, "a peer without the password became a neighbor");
}

fuzz_target!(|case: Case| {
    let mut cfg = Config::new(MeshId::new("fuzz").unwrap(), 1);
    cfg.security = Security::new(SecurityMode::Transport, password().clone());
    cfg.bootstrap = vec![PEER];
    let mut node = Node::new(cfg, Instant::ZERO).unwrap();
    let mut now = Instant::ZERO;
    node.handle_input(now, Input::Open);
    let link = if case.dial {
        let dial = std::iter::from_fn(|| node.poll_output()).find_map(|o| match o {
            Output::Dial { link, .. } => Some(link),
            _ => None,
        });
        let Some(link) = dial else { return };
        node.handle_input(now, Input::LinkConnected { link });
        link
    } else {
        node.accept(now, PEER).unwrap()
    };
    let mut tls = peer_tls().session(!case.dial).unwrap();
    // The peer's Hello, with the node's own setting, so the node moves on to TLS.
    let mut first = BytesMut::new();
    let hello = wire::Hello {
        version: wire::VERSION,
        security: node.config().security.setting().0,
        mesh: node.config().mesh.clone(),
    };
    wire::encode_control(&Frame::Hello(hello), &mut first);
    if case.complete_tls {
        let mut out = Vec::new();
        tls.write_into(&mut out);
        first.extend_from_slice(&out);
    }
    node.handle_input(now, Input::Received { link, data: first.freeze() });
    check(&node);
    if case.complete_tls {
        // Pump the real handshake (the node's Hello comes first, in the clear).
        let mut hello_skipped = false;
        for _ in 0..8 {
            let mut from_node = Bytes::from(pull(&mut node, link));
            if !hello_skipped {
                let Ok(Some(_)) = wire::split_frame(&mut from_node, 1 << 16) else { return };
                hello_skipped = true;
            }
            if tls.receive(&from_node).is_err() {
                return;
            }
            let mut out = Vec::new();
            tls.write_into(&mut out);
            if out.is_empty() && from_node.is_empty() {
                break;
            }
            node.handle_input(now, Input::Received { link, data: Bytes::from(out) });
            check(&node);
        }
    }
    for chunk in case.chunks.into_iter().take(32) {
        let data = match chunk {
            Chunk::Wait(ms) => {
                now = now + Duration::from_millis(u64::from(ms) * 4);
                node.handle_timeout(now);
                check(&node);
                continue;
            }
            Chunk::Bytes(b) if !case.complete_tls => b,
            Chunk::Frame(ty, body) => {
                // A length-prefixed frame of the chosen type, encrypted when TLS is up.
                let mut plain = Vec::with_capacity(5 + body.len());
                plain.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
                plain.push(ty);
                plain.extend_from_slice(&body);
                seal(&mut tls, case.complete_tls, plain)
            }
            Chunk::Bytes(b) => seal(&mut tls, true, b),
        };
        node.handle_input(now, Input::Received { link, data: Bytes::from(data) });
        while node.poll_output().is_some() {}
        let _ = pull(&mut node, link);
        check(&node);
    }
});

/// Encrypts `plain` with the peer's TLS session when it is up, else passes it as is.
fn seal(tls: &mut peerchannel_core::security::TlsSession, encrypt: bool, plain: Vec<u8>) -> Vec<u8> {
    if !encrypt || !tls.is_established() {
        return plain;
    }
    tls.encrypt(&[Bytes::from(plain)]);
    let mut out = Vec::new();
    tls.write_into(&mut out);
    out
}
