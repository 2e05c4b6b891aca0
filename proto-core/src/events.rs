//! What goes into a node and what comes out of it.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::id::{LinkId, MessageId, NodeId};
use crate::reason::CloseReason;
use crate::security::AuthFailure;
use crate::uri::{ChannelPath, MeshId};

/// Something that happened outside the node. Feed it with
/// [`Node::handle_input`](crate::Node::handle_input); then drain
/// [`Node::poll_output`](crate::Node::poll_output).
///
/// Two inputs return a value and are methods instead: accepting an inbound connection
/// ([`Node::accept`](crate::Node::accept), which returns the new link's handle) and sending a
/// message ([`Node::send`](crate::Node::send), which returns its ID or why it was refused).
#[derive(Clone, Debug)]
pub enum Input {
    /// Join the mesh: start dialing referrals, bootstrap addresses or asking the resolver.
    Open,
    /// Leave the mesh gracefully: Disconnect(LeavingMesh) to every neighbor.
    Close,
    /// The transport connection requested by [`Output::Dial`] is established.
    LinkConnected {
        /// The link.
        link: LinkId,
    },
    /// The transport connection requested by [`Output::Dial`] failed.
    DialFailed {
        /// The link.
        link: LinkId,
        /// What the OS said.
        error: io::ErrorKind,
    },
    /// Bytes arrived on a link, in order.
    Received {
        /// The link.
        link: LinkId,
        /// The bytes; whole frames in them are used without copying.
        data: Bytes,
    },
    /// Bytes arrived on a link in several buffers, in order: the same as one
    /// [`Received`](Input::Received) per buffer, in one step. For a vectored read, or for a
    /// transport that hands on a peer's writes as the chunks
    /// [`Node::poll_transmit_into`](crate::Node::poll_transmit_into) gave it: a flood's body
    /// that arrives as its own buffer right after the flood's first bytes (as a relay queues
    /// it: its forward head, then the body it received) is used without copying too.
    ReceivedChunks {
        /// The link.
        link: LinkId,
        /// The buffers, in order (two inline; more spill to the heap).
        chunks: SmallVec<[Bytes; 2]>,
    },
    /// The transport connection ended (end of stream, reset, I/O error). The adapter has
    /// already closed its socket.
    LinkClosed {
        /// The link.
        link: LinkId,
        /// `None` for an orderly end of stream, else the error.
        error: Option<io::ErrorKind>,
    },
    /// The answer to an [`Output::Resolve`].
    Resolved {
        /// The request's ID.
        id: u64,
        /// Addresses of mesh members (possibly none).
        addrs: Vec<SocketAddr>,
    },
    /// An [`Output::Resolve`] failed (no resolver reachable, error reply).
    ResolveFailed {
        /// The request's ID.
        id: u64,
    },
    /// The addresses this node listens on changed (an interface came or went). They are
    /// announced in later Connects and handed on as referrals; the adapter updates its
    /// resolver registrations. Undialable addresses are dropped; at most 8 are kept.
    ListenAddrsChanged {
        /// The new addresses.
        addrs: Vec<SocketAddr>,
    },
    /// The wall-clock time, in seconds since the Unix epoch. Certificates are checked against
    /// it (the core reads no clock); the node moves it on with the `now` of later calls, so
    /// adapters pass it once at start (and again if the system clock jumps). Only certificate
    /// meshes need it.
    WallClock {
        /// Seconds since 1970-01-01 UTC.
        unix_secs: u64,
    },
}

/// Something the node wants done, or wants the application to know.
#[derive(Clone, Debug)]
pub enum Output {
    /// Open a transport connection to `addr` and report [`Input::LinkConnected`] or
    /// [`Input::DialFailed`] for `link`.
    Dial {
        /// The handle of the new link.
        link: LinkId,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// `link` has bytes to send: pull them with [`Node::poll_transmit`](crate::Node::poll_transmit)
    /// while the socket accepts more. Emitted when the link's queue goes from empty to
    /// non-empty; the queue keeps its bytes until they are pulled.
    Transmit {
        /// The link.
        link: LinkId,
    },
    /// Close `link`'s transport connection after pulling its remaining bytes with
    /// `poll_transmit` (a final Disconnect or Refuse). The link handle is dead afterwards.
    CloseLink {
        /// The link.
        link: LinkId,
        /// Why (also reported in an event).
        reason: CloseReason,
    },
    /// A message for the local channel of `message.path`.
    Deliver(Message),
    /// Ask the resolver for up to `max_addresses` members of `mesh`; answer with
    /// [`Input::Resolved`] or [`Input::ResolveFailed`] carrying `id`.
    Resolve {
        /// The request's ID.
        id: u64,
        /// The mesh.
        mesh: MeshId,
        /// How many addresses are wanted.
        max_addresses: usize,
    },
    /// Something the application may want to know.
    Event(Event),
}

/// A flood delivered to a local channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message's identity.
    pub id: MessageId,
    /// The node that sent it.
    pub origin: NodeId,
    /// The channel it was sent on.
    pub path: ChannelPath,
    /// Links travelled from the origin to this node (1 for a neighbor's message).
    pub hops: u8,
    /// The application's bytes (shared with the received buffer, not copied).
    pub payload: Bytes,
}

/// Why a dial did not produce a neighbor.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DialFailure {
    /// The transport connection failed.
    Io(io::ErrorKind),
    /// The peer refused or closed the link during the handshake, or this node did.
    Handshake(CloseReason),
}

/// Why a flood was not delivered or not forwarded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Its hop limit was used up here (delivered, not forwarded).
    HopLimitReached,
    /// No local channel is open for its path (forwarded, not delivered).
    NoChannel,
}

/// What happened, for the application and its logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node has its first neighbor.
    Online,
    /// The node has lost its last neighbor (or closed).
    Offline,
    /// A link became a neighbor.
    NeighborUp {
        /// The link.
        link: LinkId,
        /// The neighbor's node ID.
        node: NodeId,
        /// Where the neighbor listens: the dialed address, or the first address it announced
        /// in its Connect (the remote socket address if it announced none).
        addr: SocketAddr,
    },
    /// A neighbor is gone.
    NeighborDown {
        /// The link.
        link: LinkId,
        /// The neighbor's node ID.
        node: NodeId,
        /// Why.
        reason: CloseReason,
        /// True if the peer ended it (Disconnect or closed connection), false if this node did.
        by_peer: bool,
    },
    /// A dial of this node's did not produce a neighbor.
    DialFailed {
        /// The dialed address.
        addr: SocketAddr,
        /// Why.
        reason: DialFailure,
    },
    /// An inbound connection was refused or failed before it became a neighbor.
    InboundRefused {
        /// The remote address.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// A peer failed authentication, or rejected this node's (the link is closed with
    /// [`CloseReason::AuthenticationFailure`]).
    AuthenticationFailed {
        /// The link.
        link: LinkId,
        /// The peer's address.
        addr: SocketAddr,
        /// The check that failed.
        failure: AuthFailure,
    },
    /// A signed flood failed verification: it was dropped, not delivered or forwarded, and its
    /// link closed with [`CloseReason::InvalidSignature`].
    InvalidSignature {
        /// The link it came on.
        link: LinkId,
        /// The origin it claimed.
        origin: NodeId,
        /// The message ID it claimed.
        id: MessageId,
    },
    /// A flood was not delivered or not forwarded (counted in stats too).
    MessageDropped {
        /// The message.
        id: MessageId,
        /// Why.
        reason: DropReason,
    },
}

/// A snapshot of one neighbor, for observability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborInfo {
    /// The link.
    pub link: LinkId,
    /// The neighbor's node ID.
    pub node: NodeId,
    /// Where the neighbor listens: the dialed address, or the first address it announced (the
    /// remote socket address if it announced none).
    pub addr: SocketAddr,
    /// The remote address of the connection (for an inbound neighbor, its ephemeral port).
    pub remote: SocketAddr,
    /// Whether this node dialed it.
    pub initiated_locally: bool,
    /// Link utility, 0..=4096.
    pub utility: u32,
    /// Bytes waiting in its send queue.
    pub queued_bytes: usize,
    /// Last keepalive round trip, in nanoseconds.
    pub rtt_nanos: Option<u64>,
}
