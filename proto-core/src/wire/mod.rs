//! The wire format: length-prefixed binary frames (see PROTOCOL.md for every byte).
//!
//! Encoding writes into a caller-owned, reused `BytesMut`. Decoding works on `Bytes` and hands
//! out slices of it, so a flood's path and payload are never copied.

mod decode;
mod encode;
mod error;
mod frame;

pub(crate) use decode::{announced_len, decode_flood_fields, Reader};
pub use decode::{
    decode_flood_head, decode_flood_parts, decode_frame, peek_flood_id, split_frame, FloodFrame, FloodHead,
};
pub(crate) use encode::put_addr;
pub use encode::{
    encode_control, encode_flood, encode_flood_header, encode_forward_head, encode_signed_flood_header,
    FORWARD_HEAD_LEN,
};
pub use error::DecodeError;
pub use frame::{
    Connect, CredentialFrame, Disconnect, Flood, Frame, FrameType, Hello, LinkUtilityReport, Referral, Refuse, Welcome,
};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// The magic bytes that open every Hello.
pub const MAGIC: [u8; 4] = *b"PCHN";
/// The protocol version this implementation speaks.
pub const VERSION: u8 = 1;
/// Most listen addresses a Connect may carry.
pub const MAX_ADDRESSES: usize = 8;
/// Most referrals a Welcome, Refuse or Disconnect may carry.
pub const MAX_REFERRALS: usize = 10;
/// Largest control frame (everything but Flood, Digest and Want), type byte included.
pub const MAX_CONTROL_FRAME: usize = 512;
/// Most message IDs in a Digest or Want.
pub const MAX_ID_LIST: usize = 256;
/// Largest Digest or Want frame: type, count, IDs.
pub const MAX_ID_LIST_FRAME: usize = 1 + 2 + 16 * MAX_ID_LIST;
/// Bytes of a Flood frame before its path: type, hops left, hop limit, id, origin, path length.
pub const FLOOD_FIXED: usize = 1 + 1 + 1 + 16 + 8 + 2;
/// Longest signature a SignedFlood may carry (an ECDSA P-256 signature is at most 72 bytes,
/// Ed25519's is 64).
pub const MAX_SIGNATURE: usize = 80;
/// Largest Credential frame: type, origin, credential.
pub const MAX_CREDENTIAL_FRAME: usize = 1 + 8 + crate::security::MAX_CREDENTIAL_LEN;

/// Whether `ty` is the type byte of a Flood or a SignedFlood.
pub fn is_flood_type(ty: u8) -> bool {
    ty == FrameType::Flood as u8 || ty == FrameType::SignedFlood as u8
}

/// Largest frame (type byte and body, without the length prefix) a node accepts, given its
/// largest payload.
pub const fn max_frame_len(max_payload: usize) -> usize {
    FLOOD_FIXED + crate::uri::MAX_PATH_LEN + 1 + MAX_SIGNATURE + max_payload
}
