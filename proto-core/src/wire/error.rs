use core::fmt;

/// Why a frame could not be decoded. Any of these closes the link with
/// [`CloseReason::ProtocolViolation`](crate::CloseReason::ProtocolViolation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The length prefix announces a frame larger than this node accepts.
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Largest accepted length.
        max: usize,
    },
    /// The length prefix is zero (a frame has at least its type byte).
    EmptyFrame,
    /// The frame ended before one of its fields.
    Truncated,
    /// The frame has bytes after its last field.
    TrailingBytes,
    /// The frame type is not known to this version.
    UnknownFrameType(u8),
    /// The frame type is reserved for a feature this node does not run (security, resolver).
    ReservedFrameType(u8),
    /// A Hello without the `PCHN` magic: the peer is not a peerchannel node.
    BadMagic,
    /// A Hello with a protocol version this node does not speak.
    UnsupportedVersion(u8),
    /// A Hello whose mesh ID is not valid.
    BadMeshId,
    /// A node ID of zero.
    ZeroNodeId,
    /// More listen addresses than allowed.
    TooManyAddresses(usize),
    /// More referrals than allowed.
    TooManyReferrals(usize),
    /// An address family byte other than 4 or 6.
    BadAddressFamily(u8),
    /// A close reason code that is unknown or not allowed in this frame.
    BadReason(u8),
    /// A flood path that is not a valid channel path.
    BadPath,
    /// A flood that arrived with no hops left, or more hops left than its limit.
    BadHops {
        /// Hops left as received.
        hops_left: u8,
        /// Hop limit as received.
        hop_limit: u8,
    },
    /// A link utility report claiming more useful floods than floods in total.
    UsefulAboveTotal,
    /// A Digest or Want with more IDs than allowed.
    TooManyIds(usize),
    /// A SignedFlood whose signature length is zero or above
    /// [`MAX_SIGNATURE`](super::MAX_SIGNATURE).
    BadSignatureLength(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooLarge { len, max } => write!(f, "frame of {len} bytes exceeds the limit of {max}"),
            DecodeError::EmptyFrame => write!(f, "empty frame"),
            DecodeError::Truncated => write!(f, "frame truncated"),
            DecodeError::TrailingBytes => write!(f, "trailing bytes after the frame's fields"),
            DecodeError::UnknownFrameType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            DecodeError::ReservedFrameType(t) => {
                write!(f, "frame type 0x{t:02x} is reserved for a feature not enabled")
            }
            DecodeError::BadMagic => write!(f, "peer is not a peerchannel node (bad magic)"),
            DecodeError::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            DecodeError::BadMeshId => write!(f, "invalid mesh ID in Hello"),
            DecodeError::ZeroNodeId => write!(f, "node ID 0 is invalid"),
            DecodeError::TooManyAddresses(n) => write!(f, "{n} addresses exceed the limit"),
            DecodeError::TooManyReferrals(n) => write!(f, "{n} referrals exceed the limit"),
            DecodeError::BadAddressFamily(b) => write!(f, "unknown address family {b}"),
            DecodeError::BadReason(c) => write!(f, "reason code {c} not allowed here"),
            DecodeError::BadPath => write!(f, "invalid channel path"),
            DecodeError::BadHops { hops_left, hop_limit } => {
                write!(f, "flood with {hops_left} hops left of a limit of {hop_limit}")
            }
            DecodeError::UsefulAboveTotal => write!(f, "link utility report with useful > total"),
            DecodeError::TooManyIds(n) => write!(f, "{n} message IDs exceed the limit"),
            DecodeError::BadSignatureLength(n) => write!(f, "signature of {n} bytes (1..=80 allowed)"),
        }
    }
}

impl std::error::Error for DecodeError {}
