//! The one error type of the adapter.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use peerchannel_core::security::SecurityConfigError;
use peerchannel_core::{CloseReason, ConfigError, DialFailure, UriError};

/// Everything that can go wrong when opening a node, sending, or talking to it.
///
/// Each variant says what the caller can do about it; `Display` spells that out.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The mesh ID (or the `net.p2p://` URI it came from) is not valid.
    InvalidMeshId {
        /// What the caller gave.
        given: String,
        /// Why it was rejected.
        source: UriError,
    },
    /// The channel path is not valid (it must start with `/`).
    InvalidPath {
        /// What the caller gave.
        given: String,
        /// Why it was rejected.
        source: UriError,
    },
    /// The builder was not given a mesh ID (`.mesh(..)`, `.uri(..)` or `.config(..)`).
    MissingMesh,
    /// The core configuration is inconsistent.
    InvalidConfig(ConfigError),
    /// The security options do not fit together: a mode without credentials, credentials with
    /// mode `None`, a password with `Message` mode alone, unusable certificates...
    Security(SecurityConfigError),
    /// The operating system's random source failed, so no key could be made for this node.
    NoRandomness,
    /// The payload exceeds the mesh's largest message; nothing was sent.
    MessageTooLarge {
        /// Payload bytes.
        size: usize,
        /// The limit (`Config::max_message_size`).
        max: usize,
    },
    /// The node is closed (by `close`, by being dropped, or because `open` failed).
    Closed,
    /// `open` was given neither bootstrap addresses nor a resolver, and was not told to open
    /// alone: the node has no way to find the mesh.
    NoPeers,
    /// Auto mode has no way to find the mesh: no resolver service and no bootstrap list were
    /// given, and LAN discovery could not start (no multicast on this host).
    NoResolver {
        /// Why LAN discovery failed.
        source: io::Error,
    },
    /// The resolver found no member of the mesh (or failed) and no neighbor could be reached.
    /// Start the first node with `open_alone()`, or check the resolver.
    NoPeersFound,
    /// No member could be reached: the first connection error, with the address it was for.
    Unreachable {
        /// The address that failed.
        addr: SocketAddr,
        /// The transport error or handshake refusal.
        reason: DialFailure,
    },
    /// `open` did not get a neighbor within the open timeout.
    OpenTimedOut(Duration),
    /// The listening socket could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidMeshId { given, source } => write!(f, "invalid mesh ID {given:?}: {source}"),
            Error::InvalidPath { given, source } => write!(f, "invalid channel path {given:?}: {source}"),
            Error::MissingMesh => write!(f, "no mesh ID: call .mesh(\"name\") or .uri(\"net.p2p://name\") on the builder"),
            Error::InvalidConfig(e) => write!(f, "invalid node configuration: {e}"),
            Error::Security(e) => match e {
                SecurityConfigError::ModeWithoutCredentials => {
                    write!(f, "a secure mode needs credentials: add .password(..) or .certificate(..) to the builder")
                }
                SecurityConfigError::CredentialsWithoutMode => {
                    write!(f, "a password or certificate was given with SecurityMode::None; drop one of them")
                }
                e => write!(f, "invalid security settings: {e}"),
            },
            Error::NoRandomness => write!(f, "the operating system's random source failed; cannot make a node key"),
            Error::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes exceeds the mesh's limit of {max}; split it or raise max_message_size"
            ),
            Error::Closed => write!(f, "the node is closed"),
            Error::NoPeers => write!(
                f,
                "no bootstrap addresses, no resolver and LAN discovery off: give .bootstrap([..]), .resolver_service(addr) or .resolver(..), or call .open_alone() for the first node of a mesh"
            ),
            Error::NoResolver { source } => write!(
                f,
                "no way to find the mesh: LAN discovery is unavailable ({source}) and neither a resolver service nor bootstrap addresses were given; use .resolver_service(addr), .bootstrap([..]) or .resolver(..), or .open_alone() for the first node"
            ),
            Error::NoPeersFound => write!(
                f,
                "the resolver found no reachable member of the mesh; start the first node with .open_alone()"
            ),
            Error::Unreachable { addr, reason } => match reason {
                DialFailure::Io(kind) => write!(f, "could not connect to {addr}: {kind}"),
                DialFailure::Handshake(CloseReason::WrongMesh) => {
                    write!(f, "{addr} belongs to another mesh; check the mesh ID and bootstrap addresses")
                }
                DialFailure::Handshake(CloseReason::SecurityMismatch) => write!(
                    f,
                    "{addr} uses another security mode or credential kind; every member needs the same .security(..) and .password(..) or .certificate(..)"
                ),
                DialFailure::Handshake(CloseReason::AuthenticationFailure) => write!(
                    f,
                    "authentication with {addr} failed (a wrong password, or a certificate one side does not trust); the node's events say which check failed"
                ),
                DialFailure::Handshake(r) => write!(f, "{addr} did not become a neighbor: {r}"),
            },
            Error::OpenTimedOut(d) => write!(f, "no neighbor within {d:?}; check the bootstrap addresses or resolver"),
            Error::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
        }
    }
}

impl Error {
    /// A configuration error, with security problems as [`Error::Security`].
    pub(crate) fn from_config(e: ConfigError) -> Error {
        match e {
            ConfigError::Security(e) => Error::Security(e),
            e => Error::InvalidConfig(e),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidMeshId { source, .. } | Error::InvalidPath { source, .. } => Some(source),
            Error::InvalidConfig(e) => Some(e),
            Error::Security(e) => Some(e),
            Error::Listen { source, .. } | Error::NoResolver { source } => Some(source),
            _ => None,
        }
    }
}
