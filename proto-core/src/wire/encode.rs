use std::net::{IpAddr, SocketAddr};

use bytes::{BufMut, BytesMut};

use super::frame::*;
use super::{FLOOD_FIXED, LEN_PREFIX, MAGIC};

/// Appends a control frame (anything but [`Frame::Flood`], which goes through
/// [`encode_flood_header`] so its payload is never copied) with its length prefix.
///
/// Encoding a [`Frame::Flood`] here copies its payload; that is meant for tests and tools.
pub fn encode_control(frame: &Frame, out: &mut BytesMut) {
    let start = out.len();
    out.put_u32(0);
    match frame {
        Frame::Hello(h) => {
            out.put_u8(FrameType::Hello as u8);
            out.put_slice(&MAGIC);
            out.put_u8(h.version);
            out.put_u8(h.security);
            let name = h.mesh.as_str().as_bytes();
            out.put_u8(name.len() as u8);
            out.put_slice(name);
        }
        Frame::Connect(c) => {
            out.put_u8(FrameType::Connect as u8);
            out.put_u64(c.node.get());
            out.put_u8(c.addrs.len() as u8);
            for a in &c.addrs {
                put_addr(out, a);
            }
        }
        Frame::Welcome(w) => {
            out.put_u8(FrameType::Welcome as u8);
            out.put_u64(w.node.get());
            put_referrals(out, &w.referrals);
        }
        Frame::Refuse(r) => {
            out.put_u8(FrameType::Refuse as u8);
            out.put_u8(r.reason.code());
            put_referrals(out, &r.referrals);
        }
        Frame::Disconnect(d) => {
            out.put_u8(FrameType::Disconnect as u8);
            out.put_u8(d.reason.code());
            put_referrals(out, &d.referrals);
        }
        Frame::LinkUtility(u) => {
            out.put_u8(FrameType::LinkUtility as u8);
            out.put_u32(u.useful);
            out.put_u32(u.total);
        }
        Frame::Ping(n) => {
            out.put_u8(FrameType::Ping as u8);
            out.put_u64(*n);
        }
        Frame::Pong(n) => {
            out.put_u8(FrameType::Pong as u8);
            out.put_u64(*n);
        }
        Frame::Digest(ids) | Frame::Want(ids) => {
            let ty = if matches!(frame, Frame::Digest(_)) { FrameType::Digest } else { FrameType::Want };
            out.put_u8(ty as u8);
            let ids = &ids[..ids.len().min(super::MAX_ID_LIST)];
            out.put_u16(ids.len() as u16);
            for id in ids {
                out.put_slice(&id.0);
            }
        }
        Frame::Proof(p) => {
            out.put_u8(FrameType::Proof as u8);
            out.put_slice(p);
        }
        Frame::Credential(c) => {
            out.put_u8(FrameType::Credential as u8);
            out.put_u64(c.origin.get());
            out.put_slice(&c.credential);
        }
        Frame::Flood(f) => {
            out.truncate(start);
            encode_flood(f, out);
            return;
        }
    }
    let len = (out.len() - start - LEN_PREFIX) as u32;
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
}

/// Appends a whole flood frame, payload included (a copy; for tests and tools).
pub fn encode_flood(f: &Flood, out: &mut BytesMut) {
    match &f.signature {
        None => encode_flood_header(f.hops_left, f.hop_limit, &f.id.0, f.origin.get(), &f.path, f.payload.len(), out),
        Some(sig) => encode_signed_flood_header(
            f.hops_left,
            f.hop_limit,
            &f.id.0,
            f.origin.get(),
            &f.path,
            sig,
            f.payload.len(),
            out,
        ),
    }
    out.put_slice(&f.payload);
}

/// Appends everything of a flood frame but its payload, which the caller queues as its own
/// `Bytes` right after.
pub fn encode_flood_header(
    hops_left: u8,
    hop_limit: u8,
    id: &[u8; 16],
    origin: u64,
    path: &[u8],
    payload_len: usize,
    out: &mut BytesMut,
) {
    put_flood_head(FrameType::Flood, hops_left, hop_limit, id, origin, path, payload_len, out);
}

/// Like [`encode_flood_header`] for a SignedFlood: the signature (at most
/// [`MAX_SIGNATURE`](super::MAX_SIGNATURE) bytes) follows the path, with its length byte.
#[allow(clippy::too_many_arguments)]
pub fn encode_signed_flood_header(
    hops_left: u8,
    hop_limit: u8,
    id: &[u8; 16],
    origin: u64,
    path: &[u8],
    signature: &[u8],
    payload_len: usize,
    out: &mut BytesMut,
) {
    let tail = 1 + signature.len() + payload_len;
    put_flood_head(FrameType::SignedFlood, hops_left, hop_limit, id, origin, path, tail, out);
    out.put_u8(signature.len() as u8);
    out.put_slice(signature);
}

#[allow(clippy::too_many_arguments)]
fn put_flood_head(
    ty: FrameType,
    hops_left: u8,
    hop_limit: u8,
    id: &[u8; 16],
    origin: u64,
    path: &[u8],
    after_path: usize,
    out: &mut BytesMut,
) {
    let len = FLOOD_FIXED + path.len() + after_path;
    out.reserve(LEN_PREFIX + FLOOD_FIXED + path.len() + 1 + super::MAX_SIGNATURE);
    out.put_u32(len as u32);
    out.put_u8(ty as u8);
    out.put_u8(hops_left);
    out.put_u8(hop_limit);
    out.put_slice(id);
    out.put_u64(origin);
    out.put_u16(path.len() as u16);
    out.put_slice(path);
}

/// Bytes written by [`encode_forward_head`]: the length prefix, the type and the hops left.
pub const FORWARD_HEAD_LEN: usize = super::LEN_PREFIX + 2;

/// Appends the first bytes of a forwarded flood: length prefix, type (`frame_type`, the
/// received frame's first byte: Flood or SignedFlood) and the new hops-left. The rest of the
/// frame (from the hop limit on) is the received frame's bytes unchanged, so a relay sends
/// `head` followed by `received_frame.slice(2..)` without copying.
#[inline]
pub fn encode_forward_head(frame_len: usize, frame_type: u8, hops_left: u8, out: &mut BytesMut) {
    // One append, not three: each `put_*` checks the room again (a relay encodes this head for
    // every flood it forwards).
    let [a, b, c, d] = (frame_len as u32).to_be_bytes();
    out.extend_from_slice(&[a, b, c, d, frame_type, hops_left]);
}

pub(crate) fn put_addr(out: &mut BytesMut, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.put_u8(4);
            out.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.put_u8(6);
            out.put_slice(&ip.octets());
        }
    }
    out.put_u16(a.port());
}

fn put_referrals(out: &mut BytesMut, refs: &[Referral]) {
    out.put_u8(refs.len() as u8);
    for r in refs {
        out.put_u64(r.node.get());
        put_addr(out, &r.addr);
    }
}
