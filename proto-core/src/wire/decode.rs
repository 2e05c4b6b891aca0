use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;

use super::frame::*;
use super::{
    DecodeError, FLOOD_FIXED, LEN_PREFIX, MAGIC, MAX_ADDRESSES, MAX_CONTROL_FRAME, MAX_CREDENTIAL_FRAME, MAX_ID_LIST,
    MAX_ID_LIST_FRAME, MAX_REFERRALS, MAX_SIGNATURE, VERSION,
};
use crate::id::{MessageId, NodeId};
use crate::reason::CloseReason;
use crate::uri::MeshId;

/// Takes the next whole frame (type byte and body, without its length prefix) off the front of
/// `buf`, or `Ok(None)` if more bytes are needed.
///
/// The length prefix is checked against `max_frame` (and control frames against
/// [`MAX_CONTROL_FRAME`]) before anything waits for or allocates the body, so a hostile length
/// costs nothing. The frame shares `buf`'s memory.
#[inline]
pub fn split_frame(buf: &mut Bytes, max_frame: usize) -> Result<Option<Bytes>, DecodeError> {
    let Some(len) = announced_len(buf, max_frame)? else { return Ok(None) };
    if buf.len() < LEN_PREFIX + len {
        return Ok(None);
    }
    buf.advance(LEN_PREFIX);
    Ok(Some(buf.split_to(len)))
}

/// Length check shared by the zero-copy path ([`split_frame`]) and the reassembly buffer.
pub(crate) fn announced_len(buf: &[u8], max_frame: usize) -> Result<Option<usize>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else { return Ok(None) };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len == 0 {
        return Err(DecodeError::EmptyFrame);
    }
    if len > max_frame {
        return Err(DecodeError::FrameTooLarge { len, max: max_frame });
    }
    if let Some(&ty) = buf.get(LEN_PREFIX) {
        let ty = FrameType::from_byte(ty)?;
        let max = match ty {
            FrameType::Flood | FrameType::SignedFlood => usize::MAX,
            FrameType::Digest | FrameType::Want => MAX_ID_LIST_FRAME,
            FrameType::Credential => MAX_CREDENTIAL_FRAME,
            _ => MAX_CONTROL_FRAME,
        };
        if len > max {
            return Err(DecodeError::FrameTooLarge { len, max });
        }
    }
    Ok(Some(len))
}

/// Decodes one frame (type byte and body) as returned by [`split_frame`]. Flood path and
/// payload are slices of `frame`.
pub fn decode_frame(frame: &Bytes) -> Result<Frame, DecodeError> {
    let mut r = Reader { buf: frame, pos: 0 };
    let ty = FrameType::from_byte(r.u8()?)?;
    let f = match ty {
        FrameType::Hello => {
            if r.array::<4>()? != MAGIC {
                return Err(DecodeError::BadMagic);
            }
            let version = r.u8()?;
            if version != VERSION {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            let security = r.u8()?;
            let len = usize::from(r.u8()?);
            let name = r.take(len)?;
            let name = core::str::from_utf8(name).map_err(|_| DecodeError::BadMeshId)?;
            let mesh = MeshId::new(name).map_err(|_| DecodeError::BadMeshId)?;
            // Only the normalised (lower-case) form travels, so every Hello has one encoding.
            if mesh.as_str() != name {
                return Err(DecodeError::BadMeshId);
            }
            Frame::Hello(Hello { version, security, mesh })
        }
        FrameType::Connect => {
            let node = r.node_id()?;
            let n = usize::from(r.u8()?);
            if n > MAX_ADDRESSES {
                return Err(DecodeError::TooManyAddresses(n));
            }
            let mut addrs = SmallVec::new();
            for _ in 0..n {
                addrs.push(r.addr()?);
            }
            Frame::Connect(Connect { node, addrs })
        }
        FrameType::Welcome => {
            let node = r.node_id()?;
            Frame::Welcome(Welcome { node, referrals: r.referrals()? })
        }
        FrameType::Refuse => {
            let code = r.u8()?;
            let reason =
                CloseReason::from_code(code).filter(|r| Refuse::allowed(*r)).ok_or(DecodeError::BadReason(code))?;
            Frame::Refuse(Refuse { reason, referrals: r.referrals()? })
        }
        FrameType::Disconnect => {
            let code = r.u8()?;
            let reason = CloseReason::from_code(code).ok_or(DecodeError::BadReason(code))?;
            Frame::Disconnect(Disconnect { reason, referrals: r.referrals()? })
        }
        FrameType::LinkUtility => {
            let useful = r.u32()?;
            let total = r.u32()?;
            if useful > total {
                return Err(DecodeError::UsefulAboveTotal);
            }
            Frame::LinkUtility(LinkUtilityReport { useful, total })
        }
        FrameType::Ping => Frame::Ping(r.u64()?),
        FrameType::Digest => Frame::Digest(r.id_list()?),
        FrameType::Want => Frame::Want(r.id_list()?),
        FrameType::Pong => Frame::Pong(r.u64()?),
        FrameType::Proof => Frame::Proof(r.array()?),
        FrameType::Credential => {
            let origin = r.node_id()?;
            let credential = frame.slice(r.pos..);
            r.pos = frame.len();
            Frame::Credential(CredentialFrame { origin, credential })
        }
        FrameType::Flood | FrameType::SignedFlood => {
            let h = decode_flood_head(frame)?;
            return Ok(Frame::Flood(Flood {
                hops_left: h.hops_left,
                hop_limit: h.hop_limit,
                id: h.id,
                origin: h.origin,
                path: frame.slice(FLOOD_FIXED..h.path_end),
                signature: h.signature().map(|s| frame.slice(s)),
                payload: frame.slice(h.payload_start..),
            }));
        }
    };
    if r.pos != frame.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(f)
}

/// The fields of a Flood frame before its payload, with the path located but not copied.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FloodHead {
    /// Hops left, counting the one just made (≥ 1).
    pub hops_left: u8,
    /// The origin's hop limit.
    pub hop_limit: u8,
    /// The message's identity.
    pub id: MessageId,
    /// The origin.
    pub origin: NodeId,
    /// Where the path ends in the frame; the path starts at [`FLOOD_FIXED`].
    pub path_end: usize,
    /// Length of the signature (0 for a plain Flood); a SignedFlood's signature starts one byte
    /// after `path_end`.
    pub signature_len: u8,
    /// Where the payload begins: the frame's bytes from here on.
    pub payload_start: usize,
}

impl FloodHead {
    /// Whether the frame is a SignedFlood.
    pub fn is_signed(&self) -> bool {
        self.payload_start != self.path_end
    }

    /// Where the signature lies in the frame, for a SignedFlood.
    pub fn signature(&self) -> Option<core::ops::Range<usize>> {
        self.is_signed().then(|| self.path_end + 1..self.payload_start)
    }
}

/// Decodes a Flood frame's fixed fields and checks its path, without creating any `Bytes`:
/// the relay's hot path, which needs the path only to look up a local channel and the payload
/// only to deliver it.
pub fn decode_flood_head(frame: &[u8]) -> Result<FloodHead, DecodeError> {
    match frame {
        [ty, hops, body @ ..] => decode_flood_parts([*ty, *hops], body),
        _ => Err(DecodeError::Truncated),
    }
}

/// [`decode_flood_head`] of the frame whose first two bytes (type, hops left) are `first` and
/// whose bytes after them are `body` (see [`FloodFrame`]). Offsets in the result are the
/// whole frame's.
pub fn decode_flood_parts(first: [u8; 2], body: &[u8]) -> Result<FloodHead, DecodeError> {
    let head = decode_flood_fields(first, body)?;
    // Frame offset `i` is `body[i - 2]`.
    let path = body.get(FLOOD_FIXED - 2..head.path_end - 2).ok_or(DecodeError::Truncated)?;
    crate::uri::validate_path_bytes(path).map_err(|_| DecodeError::BadPath)?;
    Ok(head)
}

/// [`decode_flood_parts`] without the path's check, for a caller that checks the path its own
/// way: the node, which finds most paths among its open channels (valid when opened) and
/// checks only the others, since the check cost it 4% of a relayed frame.
#[inline]
pub(crate) fn decode_flood_fields(first: [u8; 2], body: &[u8]) -> Result<FloodHead, DecodeError> {
    // Frame offset `i` is `body[i - 2]`.
    let h = body.get(..FLOOD_FIXED - 2).ok_or(DecodeError::Truncated)?;
    let signed = match first[0] {
        t if t == FrameType::Flood as u8 => false,
        t if t == FrameType::SignedFlood as u8 => true,
        t => return Err(DecodeError::UnknownFrameType(t)),
    };
    let (hops_left, hop_limit) = (first[1], h[0]);
    if hops_left == 0 || hops_left > hop_limit {
        return Err(DecodeError::BadHops { hops_left, hop_limit });
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[1..17]);
    let mut origin = [0u8; 8];
    origin.copy_from_slice(&h[17..25]);
    let origin = NodeId::new(u64::from_be_bytes(origin)).ok_or(DecodeError::ZeroNodeId)?;
    let path_end = FLOOD_FIXED + usize::from(u16::from_be_bytes([h[25], h[26]]));
    if body.len() + 2 < path_end {
        return Err(DecodeError::Truncated);
    }
    let (signature_len, payload_start) = if signed {
        let len = *body.get(path_end - 2).ok_or(DecodeError::Truncated)?;
        if len == 0 || usize::from(len) > MAX_SIGNATURE {
            return Err(DecodeError::BadSignatureLength(len));
        }
        let start = path_end + 1 + usize::from(len);
        if body.len() + 2 < start {
            return Err(DecodeError::Truncated);
        }
        (len, start)
    } else {
        (0, path_end)
    };
    Ok(FloodHead { hops_left, hop_limit, id: MessageId(id), origin, path_end, signature_len, payload_start })
}

/// A Flood or SignedFlood frame as a relay handles it: its first two bytes (type and hops
/// left), which the relay rewrites, and the bytes after them, which it forwards unchanged.
///
/// A frame read whole is split this way without copying. So is one whose first two bytes came
/// in an earlier read than the rest, as when a peer's relay writes its forward head and the
/// body as separate chunks and the transport hands them on as they are (see
/// `FrameAssembler`): the body is then never copied into one buffer with the head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloodFrame {
    /// The type byte and hops left.
    pub first: [u8; 2],
    /// The frame from its hop limit on.
    pub body: Bytes,
}

impl FloodFrame {
    /// Splits a whole frame (type byte and body); `None` if it is shorter than two bytes.
    #[inline]
    pub fn from_frame(mut frame: Bytes) -> Option<FloodFrame> {
        let first = [*frame.first()?, *frame.get(1)?];
        frame.advance(2);
        Some(FloodFrame { first, body: frame })
    }

    /// The frame's length (type byte included, length prefix not).
    #[inline]
    pub fn frame_len(&self) -> usize {
        self.body.len() + 2
    }

    /// The frame's bytes in `range` (frame offsets, 2 or more, as [`FloodHead`] gives them).
    #[inline]
    pub fn bytes(&self, range: core::ops::Range<usize>) -> &[u8] {
        &self.body[range.start - 2..range.end - 2]
    }

    /// The frame's bytes from offset `at` (2 or more) on, shared.
    #[inline]
    pub fn slice_from(&self, at: usize) -> Bytes {
        self.body.slice(at - 2..)
    }

    /// The whole frame in one buffer: a copy, for the paths that need it contiguous.
    pub fn to_frame(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.frame_len());
        out.extend_from_slice(&self.first);
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

/// The message ID of a Flood or SignedFlood frame (type byte and body), read without any
/// other check; `None` for other frames or one too short to hold it. For hints only (warming
/// the seen cache): the frame is still decoded and checked in full before it is used.
pub fn peek_flood_id(frame: &[u8]) -> Option<MessageId> {
    if !super::is_flood_type(*frame.first()?) {
        return None;
    }
    let id: [u8; 16] = frame.get(3..19)?.try_into().ok()?;
    Some(MessageId(id))
}

/// Bounds-checked reads over the frame; only a flood's path and payload become `Bytes` (shared
/// slices), everything else is read in place.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn node_id(&mut self) -> Result<NodeId, DecodeError> {
        NodeId::new(self.u64()?).ok_or(DecodeError::ZeroNodeId)
    }

    pub(crate) fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(DecodeError::BadAddressFamily(other)),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    pub(crate) fn id_list(&mut self) -> Result<Vec<MessageId>, DecodeError> {
        let n = usize::from(self.u16()?);
        if n > MAX_ID_LIST {
            return Err(DecodeError::TooManyIds(n));
        }
        (0..n).map(|_| Ok(MessageId(self.array()?))).collect()
    }

    pub(crate) fn referrals(&mut self) -> Result<Vec<Referral>, DecodeError> {
        let n = usize::from(self.u8()?);
        if n > MAX_REFERRALS {
            return Err(DecodeError::TooManyReferrals(n));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let node = self.node_id()?;
            out.push(Referral { node, addr: self.addr()? });
        }
        Ok(out)
    }
}
