//! Errors returned to the caller of the core.

use core::fmt;

use crate::security::SecurityConfigError;
use crate::uri::UriError;

/// A configuration the node cannot run with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Neighbor counts must satisfy 1 ≤ min ≤ ideal ≤ max.
    NeighborCounts {
        /// Configured minimum.
        min: usize,
        /// Configured ideal.
        ideal: usize,
        /// Configured maximum.
        max: usize,
    },
    /// More referrals than the protocol allows (10).
    TooManyReferrals(usize),
    /// Largest message size outside 16 KiB ..= 16 MiB.
    MessageSize(usize),
    /// A hop limit of zero would send nothing.
    ZeroHopLimit,
    /// The seen cache needs a non-zero capacity and time to live.
    SeenCache,
    /// `recovery_window` is longer than `seen_ttl`: a recovered flood could arrive after its ID
    /// was forgotten and be delivered twice.
    RecoveryOutlivesSeen,
    /// The per-link queue cannot hold one largest frame.
    LinkQueueTooSmall {
        /// Configured queue bytes.
        queue: usize,
        /// Largest frame.
        frame: usize,
    },
    /// The idle timeout must be longer than the keepalive interval, or live links would close.
    IdleNotAboveKeepalive,
    /// `forward_wait` must be shorter than `idle_timeout`: a link held that long would look
    /// idle to its own timers.
    ForwardWaitNotBelowIdle,
    /// More listen addresses than a Connect can carry (8).
    TooManyListenAddrs(usize),
    /// A timing that must be positive is zero.
    ZeroDuration,
    /// A limit that must be positive is zero (`max_handshakes_per_ip`,
    /// `max_neighbors_per_prefix`, `max_floods_per_neighbor_per_sec`, `max_referrals_per_sec`).
    ZeroLimit,
    /// The security settings cannot work (the inner error says why).
    Security(SecurityConfigError),
    /// `node_id` was set, but in a signed mesh a node's ID is derived from its key (so that a
    /// relay cannot pass off its own signature as the origin's).
    NodeIdNotFromKey,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NeighborCounts { min, ideal, max } => write!(
                f,
                "neighbor counts must satisfy 1 <= min <= ideal <= max; got min {min}, ideal {ideal}, max {max}"
            ),
            ConfigError::TooManyReferrals(n) => write!(f, "max_referrals is {n}; the protocol carries at most 10"),
            ConfigError::MessageSize(n) => {
                write!(f, "max_message_size is {n}; choose between 16384 and 16777216 bytes")
            }
            ConfigError::ZeroHopLimit => write!(f, "hop_limit must be at least 1"),
            ConfigError::SeenCache => write!(f, "seen_capacity and seen_ttl must be non-zero"),
            ConfigError::RecoveryOutlivesSeen => {
                write!(f, "recovery_window must not exceed seen_ttl, or recovered messages could be delivered twice")
            }
            ConfigError::LinkQueueTooSmall { queue, frame } => {
                write!(f, "link_queue_bytes is {queue}; it must hold at least one largest frame ({frame} bytes)")
            }
            ConfigError::IdleNotAboveKeepalive => write!(f, "idle_timeout must be longer than keepalive_interval"),
            ConfigError::ForwardWaitNotBelowIdle => write!(f, "forward_wait must be shorter than idle_timeout"),
            ConfigError::TooManyListenAddrs(n) => write!(f, "{n} listen addresses; a node announces at most 8"),
            ConfigError::ZeroDuration => write!(f, "timeouts and intervals must be non-zero"),
            ConfigError::ZeroLimit => {
                write!(
                    f,
                    "max_handshakes_per_ip, max_neighbors_per_prefix, max_floods_per_neighbor_per_sec and max_referrals_per_sec must be at least 1"
                )
            }
            ConfigError::Security(e) => write!(f, "security: {e}"),
            ConfigError::NodeIdNotFromKey => {
                write!(
                    f,
                    "node_id must be unset (or equal the key's) when floods are signed: the ID comes from the key"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a send was not accepted. Nothing was sent; the payload is the caller's to retry or drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The payload exceeds `Config::max_message_size`.
    MessageTooLarge {
        /// Payload bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The channel path is not valid.
    BadPath(UriError),
    /// A neighbor's send queue is full: wait for the adapter to drain it (the node's outbound
    /// budget is spent), then send again.
    Busy,
    /// The node is not open (never opened, or closed).
    NotOpen,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::MessageTooLarge { size, max } => {
                write!(
                    f,
                    "message of {size} bytes exceeds the mesh's limit of {max}; split it or raise max_message_size"
                )
            }
            SendError::BadPath(e) => write!(f, "bad channel path: {e}"),
            SendError::Busy => write!(f, "send queues are full; retry once the node has drained them"),
            SendError::NotOpen => write!(f, "the node is not open"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why an inbound connection was not taken; the adapter closes the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// Too many accepted links are still in their handshake (`max_inbound_handshakes`).
    TooManyHandshakes,
    /// Too many accepted links from this IP address are still in their handshake
    /// (`max_handshakes_per_ip`).
    TooManyFromAddress,
    /// The node is not open.
    NotOpen,
    /// The link's TLS session could not be created.
    Security,
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::TooManyHandshakes => write!(f, "too many inbound handshakes in progress"),
            AcceptError::TooManyFromAddress => write!(f, "too many inbound handshakes in progress from this address"),
            AcceptError::NotOpen => write!(f, "the node is not open"),
            AcceptError::Security => write!(f, "the link's TLS session could not be created"),
        }
    }
}

impl std::error::Error for AcceptError {}
