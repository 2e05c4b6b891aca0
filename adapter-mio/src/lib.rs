//! # peerchannel-mio
//!
//! peerchannel meshes driven by a `mio::Poll` that the application owns: the node registers
//! its listener and connections under a token range you choose, so it lives next to your own
//! sockets in one event loop. Nothing blocks and nothing is spawned; all protocol decisions
//! live in the sans-IO core, `peerchannel-core`.
//!
//! ```no_run
//! use std::time::Duration;
//! use mio::{Events, Poll};
//! use peerchannel_mio::MioNode;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut poll = Poll::new()?;
//! let mut node = MioNode::builder()
//!     .mesh("soccerpals")
//!     .listen("127.0.0.1:0".parse()?)
//!     .bootstrap(["127.0.0.1:7000".parse()?])
//!     .tokens(1000, 64) // tokens 1000..1064 are the node's; the rest are yours
//!     .open(poll.registry())?;
//! let chat = peerchannel_mio::ChannelPath::new("/chat")?;
//! node.open_channel(&chat);
//! let mut events = Events::with_capacity(256);
//! loop {
//!     poll.poll(&mut events, node.poll_timeout())?;
//!     for event in events.iter() {
//!         if !node.handle_event(event) {
//!             // one of your own sources
//!         }
//!     }
//!     node.handle_timeout();
//!     while let Some(msg) = node.try_recv(&chat) {
//!         println!("{}: {:?}", msg.origin, msg.payload);
//!     }
//!     for e in node.events() {
//!         println!("{e:?}");
//!     }
//!     if node.is_online() {
//!         match node.send(&chat, &b"hello"[..]) {
//!             Ok(_) => {}
//!             Err(peerchannel_mio::Error::WouldBlock) => {} // backed up: try again later
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//! #   break;
//! }
//! # Ok(()) }
//! ```
//!
//! ## The loop contract
//!
//! - Hand every event of the node's range to [`MioNode::handle_event`] (it returns false for
//!   other tokens), poll with [`MioNode::poll_timeout`] and call [`MioNode::handle_timeout`]
//!   after each poll.
//! - [`MioNode::send`] never blocks: it returns [`Error::WouldBlock`] when a neighbor's send
//!   queue (`Config::link_queue_bytes`) is full. Sent bytes leave at the end of the round
//!   (`poll_timeout` is zero meanwhile), so a burst of small messages goes out in a few large
//!   vectored writes.
//! - Other threads send through a [`Handle`] (bounded queue + `mio::Waker`).
//! - [`MioNode::close`] leaves gracefully; keep the loop running until
//!   [`MioNode::is_closed`]. Dropping the node closes its sockets at once, like a crash.
//!
//! ## Sockets and memory
//!
//! Sockets are non-blocking and edge-triggered: each connection remembers its readiness until
//! an operation says `WouldBlock`. Write interest is registered only while bytes wait for a
//! full socket, and dropped when they are written. At most [`Builder::write_window`] bytes per
//! connection are taken from the core's bounded queue ahead of the socket; partial writes
//! keep the rest in place. Reads pause while a channel queue is full (up to
//! [`Builder::deliver_timeout`], then that channel drops, counted), and on a link whose
//! received flood waits for room in a neighbor's queue (up to [`Builder::forward_wait`]), so
//! TCP flow control slows the senders upstream. Connections beyond the token range are refused.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod handle;
mod node;
pub mod security;
mod stats;

pub use error::Error;
pub use handle::Handle;
pub use node::{Builder, Channel, MioNode, ResolveRequest};
pub use stats::{AdapterStats, NodeStats};

/// The bytes type carried in messages.
pub use bytes::Bytes;
pub use peerchannel_core::{
    ChannelPath, CloseReason, Config, DialFailure, DropReason, Event, MeshId, Message, MessageId, NeighborInfo, NodeId,
};
