//! The codec: every frame round-trips, every decode error is reachable and typed, and limits are
//! checked before anything is allocated.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use peerchannel_core::wire::*;
use peerchannel_core::{CloseReason, MeshId, MessageId, NodeId};
use proptest::prelude::*;
use smallvec::smallvec;

fn nid(n: u64) -> NodeId {
    NodeId::new(n).unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn sample_frames() -> Vec<Frame> {
    let refs = vec![
        Referral { node: nid(1), addr: addr("10.0.0.1:7000") },
        Referral { node: nid(u64::MAX), addr: addr("[2001:db8::1]:65535") },
    ];
    vec![
        Frame::Hello(Hello { version: VERSION, security: 0, mesh: MeshId::new("soccerpals").unwrap() }),
        Frame::Connect(Connect { node: nid(42), addrs: smallvec![addr("127.0.0.1:1"), addr("[::1]:2")] }),
        Frame::Connect(Connect { node: nid(42), addrs: smallvec![] }),
        Frame::Welcome(Welcome { node: nid(7), referrals: refs.clone() }),
        Frame::Welcome(Welcome { node: nid(7), referrals: vec![] }),
        Frame::Refuse(Refuse { reason: CloseReason::NodeBusy, referrals: refs.clone() }),
        Frame::Disconnect(Disconnect { reason: CloseReason::NotUsefulNeighbor, referrals: refs }),
        Frame::LinkUtility(LinkUtilityReport { useful: 3, total: 32 }),
        Frame::Ping(0xDEAD_BEEF),
        Frame::Digest(vec![MessageId([1; 16]), MessageId([2; 16])]),
        Frame::Want(vec![]),
        Frame::Pong(0),
        Frame::Flood(Flood {
            hops_left: 5,
            hop_limit: 64,
            id: MessageId([9; 16]),
            origin: nid(3),
            path: Bytes::from_static(b"/chat"),
            signature: None,
            payload: Bytes::from(vec![0xAB; 1024]),
        }),
        Frame::Flood(Flood {
            hops_left: 2,
            hop_limit: 8,
            id: MessageId([4; 16]),
            origin: nid(3),
            path: Bytes::from_static(b"/signed"),
            signature: Some(Bytes::from(vec![0x5A; 64])),
            payload: Bytes::from_static(b"hi"),
        }),
        Frame::Proof([0x11; 32]),
        Frame::Credential(CredentialFrame { origin: nid(9), credential: Bytes::from(vec![1; 33]) }),
        Frame::Flood(Flood {
            hops_left: 1,
            hop_limit: 1,
            id: MessageId([0; 16]),
            origin: nid(3),
            path: Bytes::from_static(b"/"),
            signature: None,
            payload: Bytes::new(),
        }),
    ]
}

fn encode(f: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_control(f, &mut out);
    out.freeze()
}

/// Splits one frame off `wire` and decodes it.
fn decode_one(wire: &Bytes) -> Result<Frame, DecodeError> {
    let mut b = wire.clone();
    let frame = split_frame(&mut b, max_frame_len(64 * 1024))?.ok_or(DecodeError::Truncated)?;
    assert!(b.is_empty(), "bytes left after one frame");
    decode_frame(&frame)
}

#[test]
fn every_frame_round_trips() {
    for f in sample_frames() {
        let wire = encode(&f);
        assert_eq!(decode_one(&wire).unwrap(), f);
        // And re-encodes to the same bytes.
        assert_eq!(encode(&decode_one(&wire).unwrap()), wire);
    }
}

#[test]
fn flood_payload_is_a_slice_of_the_received_buffer() {
    let f = sample_frames().into_iter().find(|f| matches!(f, Frame::Flood(fl) if fl.payload.len() == 1024)).unwrap();
    let wire = encode(&f);
    let mut b = wire.clone();
    let frame = split_frame(&mut b, 1 << 20).unwrap().unwrap();
    let Frame::Flood(got) = decode_frame(&frame).unwrap() else { panic!() };
    let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    assert!(range.contains(&(got.payload.as_ptr() as usize)), "payload was copied");
    assert!(range.contains(&(got.path.as_ptr() as usize)), "path was copied");
}

#[test]
fn incomplete_input_waits_and_split_is_exact() {
    let wire = encode(&Frame::Ping(1));
    for cut in 0..wire.len() {
        let mut part = wire.slice(..cut);
        assert_eq!(split_frame(&mut part, 1000), Ok(None), "cut at {cut}");
        assert_eq!(part.len(), cut, "nothing consumed while waiting");
    }
}

/// Builds a raw frame: length prefix computed from `body` (type byte first).
fn raw(body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

#[test]
fn every_decode_error_is_reachable() {
    let flood_head = |hops_left: u8, hop_limit: u8, path: &[u8]| {
        let mut b = vec![0x10, hops_left, hop_limit];
        b.extend_from_slice(&[1; 16]);
        b.extend_from_slice(&5u64.to_be_bytes());
        b.extend_from_slice(&(path.len() as u16).to_be_bytes());
        b.extend_from_slice(path);
        b
    };
    let mut too_many_refs = vec![0x03];
    too_many_refs.extend_from_slice(&9u64.to_be_bytes());
    too_many_refs.push(11);
    let mut too_many_addrs = vec![0x02];
    too_many_addrs.extend_from_slice(&9u64.to_be_bytes());
    too_many_addrs.push(9);
    let mut bad_family = vec![0x02];
    bad_family.extend_from_slice(&9u64.to_be_bytes());
    bad_family.extend_from_slice(&[1, 5, 1, 2, 3, 4, 0, 80]);
    let hello = |magic: &[u8], version: u8, mesh: &[u8]| {
        let mut b = vec![0x01];
        b.extend_from_slice(magic);
        b.push(version);
        b.push(0);
        b.push(mesh.len() as u8);
        b.extend_from_slice(mesh);
        b
    };
    let cases: Vec<(Bytes, DecodeError)> = vec![
        (Bytes::from_static(&[0, 0, 0, 0]), DecodeError::EmptyFrame),
        (
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]),
            DecodeError::FrameTooLarge { len: u32::MAX as usize, max: max_frame_len(64 * 1024) },
        ),
        (raw(&[0x07, 1, 2]), DecodeError::Truncated),
        (raw(&[0x07, 0, 0, 0, 0, 0, 0, 0, 1, 9]), DecodeError::TrailingBytes),
        (raw(&[0x99]), DecodeError::UnknownFrameType(0x99)),
        (raw(&[0x00]), DecodeError::UnknownFrameType(0)),
        (raw(&[0x21]), DecodeError::ReservedFrameType(0x21)),
        (raw(&[0x31]), DecodeError::ReservedFrameType(0x31)),
        (raw(&hello(b"XXXX", 1, b"m")), DecodeError::BadMagic),
        (raw(&hello(b"PCHN", 2, b"m")), DecodeError::UnsupportedVersion(2)),
        (raw(&hello(b"PCHN", 1, b"bad_mesh")), DecodeError::BadMeshId),
        (raw(&hello(b"PCHN", 1, b"Soccer")), DecodeError::BadMeshId),
        (raw(&hello(b"PCHN", 1, &[0xff, 0xfe])), DecodeError::BadMeshId),
        (raw(&[0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0]), DecodeError::ZeroNodeId),
        (raw(&too_many_addrs), DecodeError::TooManyAddresses(9)),
        (raw(&too_many_refs), DecodeError::TooManyReferrals(11)),
        (raw(&bad_family), DecodeError::BadAddressFamily(5)),
        (raw(&[0x04, 0, 0]), DecodeError::BadReason(0)),
        (raw(&[0x04, 2, 0]), DecodeError::BadReason(2)), // LeavingMesh is not a refusal
        (raw(&[0x05, 200, 0]), DecodeError::BadReason(200)),
        (raw(&flood_head(1, 1, b"chat")), DecodeError::BadPath),
        (raw(&flood_head(1, 1, &[b'/', 0xff])), DecodeError::BadPath),
        (raw(&flood_head(0, 5, b"/")), DecodeError::BadHops { hops_left: 0, hop_limit: 5 }),
        (raw(&flood_head(6, 5, b"/")), DecodeError::BadHops { hops_left: 6, hop_limit: 5 }),
        (raw(&flood_head(1, 1, b"/")[..20]), DecodeError::Truncated),
        (raw(&[0x06, 0, 0, 0, 5, 0, 0, 0, 4]), DecodeError::UsefulAboveTotal),
        (raw(&[0x0A, 1, 1]), DecodeError::TooManyIds(257)),
        (raw(&[0x09, 0, 2, 1, 2, 3]), DecodeError::Truncated),
    ];
    for (wire, want) in cases {
        assert_eq!(decode_one(&wire), Err(want.clone()), "wire {wire:?}");
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn oversized_control_frame_is_rejected_from_its_header() {
    // A Ping announcing 100 KiB: rejected from the first five bytes, before the body arrives.
    let mut b = Bytes::from_static(&[0, 1, 0x90, 0, 0x07]);
    assert_eq!(split_frame(&mut b, 1 << 20), Err(DecodeError::FrameTooLarge { len: 0x19000, max: MAX_CONTROL_FRAME }));
}

#[test]
fn path_limit_is_enforced() {
    let long = format!("/{}", "p".repeat(4096));
    let f = Frame::Flood(Flood {
        hops_left: 1,
        hop_limit: 1,
        id: MessageId([1; 16]),
        origin: nid(1),
        path: Bytes::from(long),
        signature: None,
        payload: Bytes::new(),
    });
    assert_eq!(decode_one(&encode(&f)), Err(DecodeError::BadPath));
}

proptest! {
    /// Arbitrary bytes never panic the codec, and whatever decodes re-encodes to the same bytes.
    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut b = Bytes::from(data);
        while let Ok(Some(frame)) = split_frame(&mut b, max_frame_len(64 * 1024)) {
            if let Ok(f) = decode_frame(&frame) {
                let mut out = BytesMut::new();
                encode_control(&f, &mut out);
                prop_assert_eq!(&out[4..], &frame[..]);
            }
        }
    }

    /// Valid frames with mutated bytes decode to something or fail with a typed error.
    #[test]
    fn mutated_frames_never_panic(idx in 0usize..14, pos in any::<usize>(), val in any::<u8>()) {
        let frames = sample_frames();
        let mut wire = encode(&frames[idx % frames.len()]).to_vec();
        let p = pos % wire.len();
        wire[p] = val;
        let mut b = Bytes::from(wire);
        while let Ok(Some(frame)) = split_frame(&mut b, max_frame_len(64 * 1024)) {
            let _ = decode_frame(&frame);
        }
    }
}

/// The byte offsets PROTOCOL.md gives for a Flood (and that relays rely on to forward without
/// copying).
#[test]
fn flood_layout_matches_protocol_md() {
    let mut out = BytesMut::new();
    encode_flood_header(3, 9, &[0xEE; 16], 0x0102_0304_0506_0708, b"/p", 4, &mut out);
    out.put_slice(b"data");
    let w = out.freeze();
    assert_eq!(&w[0..4], &(29u32 + 2 + 4).to_be_bytes());
    assert_eq!(w[4], 0x10);
    assert_eq!((w[5], w[6]), (3, 9));
    assert_eq!(&w[7..23], &[0xEE; 16]);
    assert_eq!(&w[23..31], &0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(&w[31..33], &2u16.to_be_bytes());
    assert_eq!(&w[33..35], b"/p");
    assert_eq!(&w[35..], b"data");
    assert_eq!(FLOOD_FIXED, 29);
    // Longest path, a signature block of at most 1 + 80 bytes, the payload.
    assert_eq!(max_frame_len(65536), 69_742);

    // A SignedFlood: the same up to the path, then the signature's length and bytes.
    let mut out = BytesMut::new();
    encode_signed_flood_header(3, 9, &[0xEE; 16], 0x0102_0304_0506_0708, b"/p", &[0x5A; 64], 4, &mut out);
    out.put_slice(b"data");
    let w = out.freeze();
    assert_eq!(&w[0..4], &(29u32 + 2 + 1 + 64 + 4).to_be_bytes());
    assert_eq!(w[4], 0x11);
    assert_eq!(&w[33..35], b"/p");
    assert_eq!(w[35], 64);
    assert_eq!(&w[36..100], &[0x5A; 64]);
    assert_eq!(&w[100..], b"data");
    let head = decode_flood_head(&w.slice(4..)).unwrap();
    assert_eq!((head.path_end, head.signature_len, head.payload_start), (31, 64, 96));
}
