//! `frame_decode`: arbitrary bytes into the codec.
//!
//! The first byte picks the largest frame the "node" accepts (one of a few realistic limits);
//! the rest is a received byte stream. Frames are split off with `split_frame` and decoded with
//! `decode_frame` until the stream runs out or an error ends it (as a node closes the link).
//! Checked for every frame that decodes:
//! - it re-encodes to exactly the bytes it was decoded from, length prefix included (control
//!   frames with `encode_control`, floods with `encode_flood`): one encoding per frame, so no
//!   two byte strings mean the same thing to different nodes;
//! - decoding the re-encoded bytes gives the same frame;
//! - a flood's path, signature and payload are slices of the received buffer (zero copy), and
//!   a control frame never exceeds `MAX_CONTROL_FRAME` (Digest and Want: `MAX_ID_LIST_FRAME`;
//!   Credential: `MAX_CREDENTIAL_FRAME`).
//!
//! Checked for the splitter: it never hands out more than `max_frame` bytes, never consumes
//! bytes on `Ok(None)` or on an error, and a stream it waits on is a strict prefix of a frame.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use peerchannel_core::wire::{
    decode_frame, encode_control, encode_flood, max_frame_len, split_frame, Frame, LEN_PREFIX, MAX_CONTROL_FRAME,
    MAX_CREDENTIAL_FRAME, MAX_ID_LIST, MAX_ID_LIST_FRAME, MAX_SIGNATURE,
};

/// Frame limits a node may run with: the control limit, the minimum and default message sizes,
/// and the largest configurable one.
const LIMITS: [usize; 4] =
    [MAX_CONTROL_FRAME, max_frame_len(16 * 1024), max_frame_len(64 * 1024), max_frame_len(16 * 1024 * 1024)];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else { return };
    let max_frame = LIMITS[usize::from(sel) % LIMITS.len()];
    let received = Bytes::copy_from_slice(stream);
    let base = received.as_ptr() as usize;
    let mut buf = received.clone();
    let mut out = BytesMut::new();
    loop {
        let before = buf.len();
        let offset = received.len() - before;
        match split_frame(&mut buf, max_frame) {
            Ok(None) => {
                assert_eq!(buf.len(), before, "split_frame consumed bytes while waiting");
                if buf.len() >= LEN_PREFIX {
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    assert!(buf.len() < LEN_PREFIX + len, "split_frame waits on a whole frame");
                }
                break;
            }
            Err(_) => {
                assert_eq!(buf.len(), before, "split_frame consumed bytes on error");
                break;
            }
            Ok(Some(frame)) => {
                assert!(!frame.is_empty() && frame.len() <= max_frame, "frame of {} > {max_frame}", frame.len());
                assert_eq!(before - buf.len(), LEN_PREFIX + frame.len(), "split_frame lost bytes");
                let wire = received.slice(offset..offset + LEN_PREFIX + frame.len());
                let Ok(decoded) = decode_frame(&frame) else { break };
                out.clear();
                match &decoded {
                    Frame::Flood(f) => {
                        let inside = |b: &Bytes| {
                            b.is_empty()
                                || (b.as_ptr() as usize >= base
                                    && b.as_ptr() as usize + b.len() <= base + received.len())
                        };
                        let sig_inside = f.signature.as_ref().is_none_or(inside);
                        assert!(inside(&f.path) && inside(&f.payload) && sig_inside, "flood fields copied out");
                        assert!(f.signature.as_ref().is_none_or(|s| !s.is_empty() && s.len() <= MAX_SIGNATURE));
                        encode_flood(f, &mut out);
                    }
                    Frame::Credential(_) => {
                        assert!(frame.len() <= MAX_CREDENTIAL_FRAME, "credential frame of {} bytes", frame.len());
                        encode_control(&decoded, &mut out);
                    }
                    Frame::Digest(ids) | Frame::Want(ids) => {
                        assert!(ids.len() <= MAX_ID_LIST && frame.len() <= MAX_ID_LIST_FRAME, "ID list too long");
                        encode_control(&decoded, &mut out);
                    }
                    _ => {
                        assert!(frame.len() <= MAX_CONTROL_FRAME, "control frame of {} bytes accepted", frame.len());
                        encode_control(&decoded, &mut out);
                    }
                }
                assert_eq!(&out[..], &wire[..], "{decoded:?} does not re-encode to its bytes");
                let mut again = out.split().freeze();
                let body = split_frame(&mut again, max_frame).expect("re-encoded frame splits").expect("whole");
                assert_eq!(decode_frame(&body).expect("re-encoded frame decodes"), decoded);
            }
        }
    }
});
