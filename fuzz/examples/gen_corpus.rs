//! Writes the `frame_decode` seed corpus: one valid frame of each type (and a stream of
//! several) encoded by the core's own encoder, behind the target's limit-selector byte.
//!
//! Run from `fuzz/`: `cargo run --example gen_corpus` (rewrites `corpus/frame_decode/seed-*`).

use std::net::SocketAddr;

use bytes::BytesMut;
use peerchannel_core::wire::*;
use peerchannel_core::{CloseReason, MeshId, MessageId, NodeId};

fn main() -> std::io::Result<()> {
    let nid = |n: u64| NodeId::new(n).unwrap();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    let refs = vec![
        Referral { node: nid(7), addr: addr("10.0.0.7:4000") },
        Referral { node: nid(8), addr: addr("[2001:db8::8]:4000") },
    ];
    let frames = vec![
        ("hello", Frame::Hello(Hello { version: VERSION, security: 0, mesh: MeshId::new("soccerpals").unwrap() })),
        (
            "connect",
            Frame::Connect(Connect {
                node: nid(0x1234),
                addrs: [addr("10.0.0.1:4000"), addr("[::1]:4001")].into_iter().collect(),
            }),
        ),
        ("welcome", Frame::Welcome(Welcome { node: nid(0x5678), referrals: refs.clone() })),
        ("refuse", Frame::Refuse(Refuse { reason: CloseReason::NodeBusy, referrals: refs.clone() })),
        ("disconnect", Frame::Disconnect(Disconnect { reason: CloseReason::LeavingMesh, referrals: refs })),
        ("utility", Frame::LinkUtility(LinkUtilityReport { useful: 3, total: 32 })),
        ("ping", Frame::Ping(0xDEAD_BEEF)),
        ("pong", Frame::Pong(0xDEAD_BEEF)),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/frame_decode");
    std::fs::create_dir_all(&dir)?;
    let mut stream = BytesMut::new();
    // Selector byte 2: the default 64 KiB message limit.
    stream.extend_from_slice(&[2]);
    for (name, f) in &frames {
        let mut out = BytesMut::from(&[2u8][..]);
        encode_control(f, &mut out);
        encode_control(f, &mut stream);
        std::fs::write(dir.join(format!("seed-{name}")), &out)?;
    }
    let mut flood = BytesMut::from(&[2u8][..]);
    let id = MessageId([0x42; 16]);
    encode_flood_header(8, 8, &id.0, 0x1234, b"/chat", 5, &mut flood);
    flood.extend_from_slice(b"hello");
    stream.extend_from_slice(&flood[1..]);
    std::fs::write(dir.join("seed-flood"), &flood)?;
    std::fs::write(dir.join("seed-stream"), &stream)?;
    // A stream cut in the middle of its last frame.
    std::fs::write(dir.join("seed-partial"), &stream[..stream.len() - 3])?;
    Ok(())
}
