//! The one error type of the mio adapter.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use peerchannel_core::security::SecurityConfigError;
use peerchannel_core::{ConfigError, UriError};

/// Everything that can go wrong when opening a node, sending, or handing it commands.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The node's outbound budget is spent (a neighbor's send queue is full) or the
    /// cross-thread command queue is full. Nothing was sent: retry once the node has written
    /// some of its queued bytes (after the next readiness events are handled).
    WouldBlock,
    /// The payload exceeds the mesh's largest message; nothing was sent.
    MessageTooLarge {
        /// Payload bytes.
        size: usize,
        /// The limit (`Config::max_message_size`).
        max: usize,
    },
    /// The mesh ID is not valid.
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
    /// The builder was given no mesh ID (`.mesh(..)` or `.config(..)`).
    MissingMesh,
    /// The core configuration is inconsistent.
    InvalidConfig(ConfigError),
    /// The security options do not fit together: a mode without credentials, credentials with
    /// mode `None`, a password with `Message` mode alone, unusable certificates...
    Security(SecurityConfigError),
    /// The operating system's random source failed, so no key could be made for this node.
    NoRandomness,
    /// Neither bootstrap addresses nor `open_alone()`: the node has no way to find the mesh.
    NoPeers,
    /// The token range cannot hold the listener, the waker and one connection.
    TokenRange {
        /// Tokens given.
        count: usize,
    },
    /// The listening socket could not be bound.
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Registering with the `mio::Registry` (or creating the waker) failed.
    Register(io::Error),
    /// The node is closed (or, for a [`Handle`](crate::Handle), dropped).
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => write!(f, "send queues are full; retry once the node has written some"),
            Error::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes exceeds the mesh's limit of {max}; split it or raise max_message_size"
            ),
            Error::InvalidMeshId { given, source } => write!(f, "invalid mesh id {given:?}: {source}"),
            Error::InvalidPath { given, source } => write!(f, "invalid channel path {given:?}: {source}"),
            Error::MissingMesh => write!(f, "no mesh given: call .mesh(..) or .config(..)"),
            Error::InvalidConfig(e) => write!(f, "invalid configuration: {e}"),
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
            Error::NoPeers => write!(f, "no bootstrap addresses and not opened alone: no way to find the mesh"),
            Error::TokenRange { count } => write!(f, "a token range of {count} is too small; give at least 3"),
            Error::Listen { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            Error::Register(e) => write!(f, "cannot register with the mio registry: {e}"),
            Error::Closed => write!(f, "the node is closed"),
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
            Error::Listen { source, .. } | Error::Register(source) => Some(source),
            Error::InvalidConfig(e) => Some(e),
            Error::Security(e) => Some(e),
            Error::InvalidMeshId { source, .. } | Error::InvalidPath { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// For callers in `io::Result` code: [`Error::WouldBlock`] becomes `ErrorKind::WouldBlock`.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::WouldBlock => io::ErrorKind::WouldBlock,
            Error::MessageTooLarge { .. } | Error::InvalidPath { .. } | Error::InvalidMeshId { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::Closed => io::ErrorKind::NotConnected,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
