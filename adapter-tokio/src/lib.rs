//! # peerchannel-tokio
//!
//! peerchannel meshes on real TCP sockets, driven by tokio: every member of a named mesh
//! receives every message sent on a channel, exactly once, with no server in the data path.
//!
//! ```
//! use peerchannel_tokio::PeerNode;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), peerchannel_tokio::Error> {
//! let local = "127.0.0.1:0".parse().unwrap();
//! // The first node of a mesh opens alone; the others bootstrap from any member.
//! let alice = PeerNode::builder().mesh("soccerpals").listen(local).open_alone().open().await?;
//! let bob = PeerNode::builder().mesh("soccerpals").listen(local).bootstrap([alice.local_addr()]).open().await?;
//!
//! let mut alice_chat = alice.channel("/chat")?;
//! let bob_chat = bob.channel("/chat")?;
//! bob_chat.send("hello alice").await?;
//! let msg = alice_chat.recv().await.expect("node open");
//! assert_eq!(&msg.payload[..], b"hello alice");
//! assert_eq!(msg.origin, bob.id());
//!
//! bob.close().await; // graceful: neighbors are told, then the sockets close
//! alice.close().await;
//! # Ok(()) }
//! ```
//!
//! ## How it is built
//!
//! All protocol decisions live in the sans-IO core, `peerchannel-core`. This crate owns
//! sockets, the clock and tasks: one task per node owns the core's `Node`, feeds it socket
//! reads, finished connects and resolver answers, drains its outputs after every input, and
//! re-arms one timer from `poll_timeout`. Writes are batched: the core's queued chunks are
//! written with vectored writes, so a stream of small messages costs far fewer system calls
//! than messages ([`AdapterStats::writes`] counts them).
//!
//! ## Backpressure and memory
//!
//! - **Sending**: [`Channel::send`] waits while the core reports its outbound budget spent (a
//!   neighbor's send queue, `Config::link_queue_bytes`, is full). The wait ends as soon as the
//!   socket drains, or when the core evicts a neighbor that does not read (NodeTooSlow).
//! - **Forwarding**: when a received flood has no room in a neighbor's queue, it waits (up to
//!   [`Builder::forward_wait`]) and the node stops reading the link it came on, so TCP flow
//!   control slows the senders upstream and a slow but live neighbor keeps up. A neighbor
//!   still without room after that is evicted by the core (NodeTooSlow), which bounds memory.
//! - **Writing**: at most [`Builder::write_window`] bytes per connection leave the core's queue
//!   ahead of the socket.
//! - **Receiving**: each [`Channel`] queues at most [`Builder::channel_capacity`] messages;
//!   when full the node pauses reading up to [`Builder::deliver_timeout`], then drops
//!   (counted in [`Channel::dropped`] and [`AdapterStats::deliveries_dropped`]) until the queue
//!   is half empty again. Event streams drop their oldest events when full.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod auto;
mod channel;
mod driver;
mod error;
mod events;
mod lan;
mod mailbox;
mod node;
mod resolver;
pub mod security;
pub mod service;
mod service_client;
mod stats;

pub use auto::{AutoResolver, AutoStats, Backend, SERVICE_RETRY_AFTER};
pub use channel::{Channel, ChannelSender};
pub use error::Error;
pub use events::EventStream;
pub use lan::{LanConfig, LanPacket, LanResolver, LanStats};
pub use node::{Builder, PeerNode};
pub use resolver::{BoxFuture, Resolver, StaticResolver};
pub use service_client::{ReferralPolicy, ServiceClientStats, ServiceResolver};
pub use stats::{AdapterStats, NodeStats};

/// The adapter's re-export of the bytes type carried in messages.
pub use bytes::Bytes;
pub use peerchannel_core::{
    ChannelPath, CloseReason, Config, DialFailure, DropReason, Event, MeshId, Message, MessageId, NeighborInfo, NodeId,
};
