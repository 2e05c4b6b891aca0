use std::net::SocketAddr;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::id::{MessageId, NodeId};
use crate::reason::CloseReason;
use crate::uri::MeshId;

/// The type byte of each frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// First frame in each direction: magic, version, security, mesh ID.
    Hello = 0x01,
    /// Initiator asks to become a neighbor.
    Connect = 0x02,
    /// Responder accepts.
    Welcome = 0x03,
    /// Responder refuses.
    Refuse = 0x04,
    /// Either side ends the neighbor relationship.
    Disconnect = 0x05,
    /// Receiver's report of how many floods from the link were first copies.
    LinkUtility = 0x06,
    /// Keepalive request.
    Ping = 0x07,
    /// Keepalive answer.
    Pong = 0x08,
    /// IDs of recent floods the sender can resend (sent once, when a link becomes a neighbor).
    Digest = 0x09,
    /// IDs from a Digest the sender has not seen and asks to be resent.
    Want = 0x0A,
    /// Password mode: this side's proof of the mesh password, bound to the TLS session.
    Proof = 0x0B,
    /// Message mode: what a receiver needs to verify one origin's signed floods.
    Credential = 0x0C,
    /// A message for every node of the mesh.
    Flood = 0x10,
    /// A flood carrying its origin's signature (Message mode).
    SignedFlood = 0x11,
}

impl FrameType {
    /// The frame type for a type byte, or the error a node reports for it.
    pub fn from_byte(b: u8) -> Result<Self, super::DecodeError> {
        Ok(match b {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Connect,
            0x03 => FrameType::Welcome,
            0x04 => FrameType::Refuse,
            0x05 => FrameType::Disconnect,
            0x06 => FrameType::LinkUtility,
            0x07 => FrameType::Ping,
            0x08 => FrameType::Pong,
            0x09 => FrameType::Digest,
            0x0A => FrameType::Want,
            0x0B => FrameType::Proof,
            0x0C => FrameType::Credential,
            0x10 => FrameType::Flood,
            0x11 => FrameType::SignedFlood,
            0x20..=0x3f => return Err(super::DecodeError::ReservedFrameType(b)),
            _ => return Err(super::DecodeError::UnknownFrameType(b)),
        })
    }
}

/// A neighbor's address handed to a peer so it can find more neighbors.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Referral {
    /// The referred node.
    pub node: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// First frame in each direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender.
    pub version: u8,
    /// The sender's security setting: mode in the high nibble, credential kind in the low one
    /// (see [`SecuritySetting`](crate::security::SecuritySetting)); 0 = no security.
    pub security: u8,
    /// The mesh the sender belongs to.
    pub mesh: MeshId,
}

/// Initiator's request to become a neighbor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// Initiator's node ID.
    pub node: NodeId,
    /// Where the initiator listens (handed on as referrals).
    pub addrs: SmallVec<[SocketAddr; 2]>,
}

/// Responder's acceptance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// Responder's node ID.
    pub node: NodeId,
    /// Some of the responder's other neighbors.
    pub referrals: Vec<Referral>,
}

/// Responder's refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refuse {
    /// Why.
    pub reason: CloseReason,
    /// Other nodes to try.
    pub referrals: Vec<Referral>,
}

impl Refuse {
    /// Whether a Refuse may carry `reason`: refusals happen before a link is a neighbor, so
    /// only the reasons of admission and handshake apply (anything else goes in a Disconnect).
    pub fn allowed(reason: CloseReason) -> bool {
        matches!(
            reason,
            CloseReason::InvalidNeighbor
                | CloseReason::DuplicateNeighbor
                | CloseReason::DuplicateNodeId
                | CloseReason::NodeBusy
                | CloseReason::AuthenticationFailure
                | CloseReason::WrongMesh
                | CloseReason::Incompatible
                | CloseReason::SecurityMismatch
                | CloseReason::TooManyFromAddress
        )
    }
}

/// End of a neighbor relationship.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Why.
    pub reason: CloseReason,
    /// Other nodes to try.
    pub referrals: Vec<Referral>,
}

/// How many floods received on the link since the last report, and how many were first copies.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LinkUtilityReport {
    /// First copies.
    pub useful: u32,
    /// All floods.
    pub total: u32,
}

/// A flood as decoded: path and payload are slices of the received buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flood {
    /// Hops this copy may still travel, counting the one it just made (≥ 1 on receipt).
    pub hops_left: u8,
    /// The origin's hop limit.
    pub hop_limit: u8,
    /// The message's identity.
    pub id: MessageId,
    /// The node that sent it first.
    pub origin: NodeId,
    /// UTF-8 channel path (validated).
    pub path: Bytes,
    /// The origin's signature (a SignedFlood), `None` for a plain Flood.
    pub signature: Option<Bytes>,
    /// The application's bytes.
    pub payload: Bytes,
}

/// Message mode: the credential of one origin, sent on a link before the first signed flood of
/// that origin the link carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialFrame {
    /// The origin whose floods this credential verifies.
    pub origin: NodeId,
    /// The encoded credential (a raw Ed25519 key or a certificate chain), at most
    /// [`MAX_CREDENTIAL_LEN`](crate::security::MAX_CREDENTIAL_LEN) bytes.
    pub credential: Bytes,
}

/// Every frame of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Connect`].
    Connect(Connect),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Refuse`].
    Refuse(Refuse),
    /// See [`Disconnect`].
    Disconnect(Disconnect),
    /// See [`LinkUtilityReport`].
    LinkUtility(LinkUtilityReport),
    /// Keepalive request with a nonce echoed by the Pong.
    Ping(u64),
    /// Keepalive answer.
    Pong(u64),
    /// Recent message IDs the sender holds (at most [`MAX_ID_LIST`](super::MAX_ID_LIST)).
    Digest(Vec<MessageId>),
    /// Message IDs the sender asks to be resent (at most [`MAX_ID_LIST`](super::MAX_ID_LIST)).
    Want(Vec<MessageId>),
    /// A password proof (HMAC-SHA256, 32 bytes).
    Proof([u8; 32]),
    /// See [`CredentialFrame`].
    Credential(CredentialFrame),
    /// See [`Flood`].
    Flood(Flood),
}
