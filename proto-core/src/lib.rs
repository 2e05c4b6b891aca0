//! # peerchannel-core
//!
//! The sans-IO protocol core of peerchannel: one [`Node`] is one member of one mesh. It keeps a
//! few neighbors (dialing, admitting, pruning, repairing), floods every message it sends to all
//! members exactly once, and delivers the floods it receives to its local channels.
//!
//! It performs no I/O, reads no clock and draws no OS randomness: inputs carry the time,
//! randomness comes from [`Config::seed`], and everything the node wants done comes out of
//! [`Node::poll_output`]. The same seed and inputs give the same outputs, byte for byte, so the
//! same code runs under tokio, mio, a simulator and a fuzzer.
//!
//! An adapter's whole loop: feed socket events as [`Input`]s, carry out what
//! [`Node::poll_output`] asks, write what [`Node::poll_transmit_into`] hands out when a link has
//! bytes waiting (until it hands out less than asked: the queue ran dry; a [`WriteQueue`] per
//! connection keeps what a non-blocking socket has not taken yet), call
//! [`Node::handle_timeout`] at [`Node::poll_timeout`], and before reading a socket check
//! [`Node::reads_paused`] (a flood from that link waits for room in a slow neighbor's queue;
//! leaving the bytes in the socket lets TCP slow the sender).
//!
//! ```
//! use bytes::Bytes;
//! use peerchannel_core::{ChannelPath, Config, Input, Instant, MeshId, Node, Output};
//!
//! let mut config = Config::new(MeshId::new("soccerpals").unwrap(), 7);
//! config.bootstrap = vec!["127.0.0.1:7000".parse().unwrap()];
//! let mut node = Node::new(config, Instant::ZERO).unwrap();
//! node.open_channel(ChannelPath::new("/chat").unwrap());
//! node.handle_input(Instant::ZERO, Input::Open);
//! let mut dials = 0;
//! while let Some(out) = node.poll_output() {
//!     match out {
//!         Output::Dial { link, addr } => dials += 1, // connect a socket, then Input::LinkConnected
//!         Output::Transmit { link } => {}            // write what node.poll_transmit(link, n) gives
//!         Output::Deliver(msg) => {}                 // hand msg.payload to the "/chat" channel
//!         _ => {}
//!     }
//! }
//! assert_eq!(dials, 1);
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod config;
mod error;
mod events;
mod id;
mod node;
mod reason;
mod rng;
mod stats;
mod time;
mod timers;
mod write_queue;

pub mod flood;
pub mod link;
pub mod mesh;
pub mod resolver;
pub mod security;
pub mod uri;
pub mod wire;

pub use config::{Config, MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE};
pub use error::{AcceptError, ConfigError, SendError};
pub use events::{DialFailure, DropReason, Event, Input, Message, NeighborInfo, Output};
pub use id::{LinkId, MessageId, NodeId};
pub use node::Node;
pub use reason::CloseReason;
pub use rng::Rng;
pub use stats::Stats;
pub use time::Instant;
pub use uri::{ChannelPath, ChannelUri, MeshId, UriError};
pub use write_queue::WriteQueue;
