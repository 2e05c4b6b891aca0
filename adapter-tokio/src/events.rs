//! A node's event stream.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use peerchannel_core::Event;

use crate::mailbox::Mailbox;

/// The events of one node from the moment of subscription: Online/Offline, NeighborUp,
/// NeighborDown with its reason, DialFailed, InboundRefused, MessageDropped, and in a secured
/// mesh AuthenticationFailed (which check a peer failed) and InvalidSignature.
///
/// Events wait in a bounded queue ([`Builder::event_capacity`](crate::Builder::event_capacity));
/// when a subscriber falls behind, the oldest events are dropped and counted
/// ([`dropped`](Self::dropped)), so a forgotten stream never holds the node's memory.
///
/// ```no_run
/// # async fn demo(node: &peerchannel_tokio::PeerNode) {
/// use peerchannel_tokio::Event;
/// let mut events = node.events();
/// while let Some(e) = events.recv().await {
///     if let Event::NeighborDown { node, reason, .. } = e {
///         println!("lost {node}: {reason}");
///     }
/// }
/// # }
/// ```
pub struct EventStream {
    pub(crate) mailbox: Arc<Mailbox<Event>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").field("queued", &self.mailbox.len()).finish()
    }
}

impl EventStream {
    /// The next event, or `None` once the node is closed and the queue is empty.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.mailbox.poll_recv(cx)).await
    }

    /// The next queued event, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.mailbox.try_recv()
    }

    /// Events dropped because this stream fell behind.
    pub fn dropped(&self) -> u64 {
        self.mailbox.dropped()
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.mailbox.poll_recv(cx)
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.mailbox.close_receiver();
    }
}
