//! Why a link closed: one vocabulary for the wire, events and counters.

use core::fmt;

/// Why a link or neighbor was closed. Numeric codes 1–12 are the original Peer Channel's
/// (`PeerCloseReason`); 13 and up are peerchannel's additions.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The peer broke a rule of the handshake (the original's catch-all).
    InvalidNeighbor = 1,
    /// The node is leaving the mesh (graceful close).
    LeavingMesh = 2,
    /// The link carried too few first copies; the maintainer pruned it.
    NotUsefulNeighbor = 3,
    /// Another link to the same node exists; both ends keep the same one.
    DuplicateNeighbor = 4,
    /// The peer uses this node's own NodeId.
    DuplicateNodeId = 5,
    /// The node already has its maximum number of neighbors.
    NodeBusy = 6,
    /// The handshake did not finish within the connect timeout.
    ConnectTimedOut = 7,
    /// The connection failed (reset, I/O error).
    Faulted = 8,
    /// The peer closed the connection without saying why.
    Closed = 9,
    /// This node could not go on with the link (a local limit or bug).
    InternalFailure = 10,
    /// The peer failed authentication.
    AuthenticationFailure = 11,
    /// The peer did not drain its send queue fast enough; memory stays bounded by evicting it.
    NodeTooSlow = 12,
    /// The peer sent a malformed frame or a frame out of order.
    ProtocolViolation = 13,
    /// The peer belongs to another mesh.
    WrongMesh = 14,
    /// Nothing was received for the idle timeout (keepalives included).
    IdleTimeout = 15,
    /// The peer speaks an unsupported protocol version.
    Incompatible = 16,
    /// The peer announced another security mode or credential kind than this node's (a node
    /// never lowers its own setting to match).
    SecurityMismatch = 17,
    /// The peer sent a signed flood whose signature did not verify.
    InvalidSignature = 18,
    /// The node already has its maximum number of neighbors from the peer's network
    /// (`Config::max_neighbors_per_prefix`).
    TooManyFromAddress = 19,
}

impl CloseReason {
    /// Every reason, in code order.
    pub const ALL: [CloseReason; 19] = [
        CloseReason::InvalidNeighbor,
        CloseReason::LeavingMesh,
        CloseReason::NotUsefulNeighbor,
        CloseReason::DuplicateNeighbor,
        CloseReason::DuplicateNodeId,
        CloseReason::NodeBusy,
        CloseReason::ConnectTimedOut,
        CloseReason::Faulted,
        CloseReason::Closed,
        CloseReason::InternalFailure,
        CloseReason::AuthenticationFailure,
        CloseReason::NodeTooSlow,
        CloseReason::ProtocolViolation,
        CloseReason::WrongMesh,
        CloseReason::IdleTimeout,
        CloseReason::Incompatible,
        CloseReason::SecurityMismatch,
        CloseReason::InvalidSignature,
        CloseReason::TooManyFromAddress,
    ];

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a wire code, if it is known.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// Whether the reason is a refusal for credentials (authentication, security setting,
    /// signatures): retrying elsewhere at once would only be refused again.
    pub const fn is_security_refusal(self) -> bool {
        matches!(
            self,
            CloseReason::AuthenticationFailure | CloseReason::SecurityMismatch | CloseReason::InvalidSignature
        )
    }

    /// Index into per-reason counter arrays.
    pub const fn index(self) -> usize {
        self as usize - 1
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            CloseReason::InvalidNeighbor => "invalid neighbor",
            CloseReason::LeavingMesh => "leaving the mesh",
            CloseReason::NotUsefulNeighbor => "not a useful neighbor",
            CloseReason::DuplicateNeighbor => "duplicate link to the same neighbor",
            CloseReason::DuplicateNodeId => "duplicate node ID",
            CloseReason::NodeBusy => "node busy (at its maximum neighbor count)",
            CloseReason::ConnectTimedOut => "connect timed out",
            CloseReason::Faulted => "connection faulted",
            CloseReason::Closed => "connection closed by the peer",
            CloseReason::InternalFailure => "internal failure",
            CloseReason::AuthenticationFailure => "authentication failed",
            CloseReason::NodeTooSlow => "neighbor too slow to drain its queue",
            CloseReason::ProtocolViolation => "protocol violation",
            CloseReason::WrongMesh => "peer belongs to another mesh",
            CloseReason::IdleTimeout => "nothing received within the idle timeout",
            CloseReason::Incompatible => "incompatible protocol version",
            CloseReason::SecurityMismatch => "peer uses another security mode or credential kind",
            CloseReason::InvalidSignature => "peer sent a flood with an invalid signature",
            CloseReason::TooManyFromAddress => "too many neighbors from the peer's network",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_rejected() {
        for r in CloseReason::ALL {
            assert_eq!(CloseReason::from_code(r.code()), Some(r));
            assert_eq!(CloseReason::ALL[r.index()], r);
        }
        assert_eq!(CloseReason::from_code(0), None);
        assert_eq!(CloseReason::from_code(20), None);
        assert_eq!(CloseReason::NodeBusy.code(), 6);
        assert_eq!(CloseReason::NodeTooSlow.code(), 12);
    }
}
