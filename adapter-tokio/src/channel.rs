//! Channels: sending to and receiving from one service path of a mesh.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use peerchannel_core::{ChannelPath, Message, MessageId};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Command, SendRequest};
use crate::error::Error;
use crate::mailbox::Mailbox;

/// The sending half of a [`Channel`]: cheap to clone, so several tasks can send on one path.
///
/// Obtained with [`Channel::sender`].
#[derive(Clone)]
pub struct ChannelSender {
    pub(crate) path: ChannelPath,
    pub(crate) send_tx: mpsc::Sender<SendRequest>,
    pub(crate) max_message_size: usize,
}

impl fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSender").field("path", &self.path).finish()
    }
}

impl ChannelSender {
    /// The channel's path.
    pub fn path(&self) -> &ChannelPath {
        &self.path
    }

    /// Floods `payload` to every other member of the mesh on this channel.
    ///
    /// Returns once the node has taken the message: it is then queued for every neighbor, or
    /// waiting (with at most 63 others of this node) for the core to accept it. Waits while
    /// the node's outbound budget is spent (a neighbor's send queue is full), so a fast sender
    /// is slowed to the pace of the mesh instead of growing a buffer. Sends do not wait for
    /// each other's confirmation, so a stream of small messages leaves in large writes.
    ///
    /// A payload over the mesh's limit fails at once with [`Error::MessageTooLarge`] and
    /// nothing is sent; a closed node gives [`Error::Closed`]. Own messages are not delivered
    /// back to this node; a message sent while the node has no neighbors reaches nobody.
    ///
    /// Cancel safety: dropping the future before it completes sends nothing.
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = self.check(payload.into())?;
        let req = SendRequest { path: self.path.clone(), payload, reply: None };
        self.send_tx.send(req).await.map_err(|_| Error::Closed)
    }

    /// Like [`send`](Self::send), but waits until the core has queued the message for every
    /// neighbor and returns its ID. One confirmed send at a time is slower than a stream of
    /// [`send`](Self::send)s: each waits for the node's task.
    ///
    /// Cancel safety: if the future is dropped while waiting, the message may or may not have
    /// been sent.
    pub async fn send_confirmed(&self, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
        let payload = self.check(payload.into())?;
        let (reply, answer) = oneshot::channel();
        let req = SendRequest { path: self.path.clone(), payload, reply: Some(reply) };
        self.send_tx.send(req).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn check(&self, payload: Bytes) -> Result<Bytes, Error> {
        if payload.len() > self.max_message_size {
            return Err(Error::MessageTooLarge { size: payload.len(), max: self.max_message_size });
        }
        Ok(payload)
    }
}

/// One service path of a mesh (e.g. `/chat`) on one node: send floods with
/// [`send`](Self::send), receive the floods of other members with [`recv`](Self::recv) or as
/// a [`Stream`](futures_core::Stream).
///
/// Received messages wait in a bounded queue
/// ([`Builder::channel_capacity`](crate::Builder::channel_capacity)). When it is full, the node
/// pauses reading from its neighbors for up to
/// [`Builder::deliver_timeout`](crate::Builder::deliver_timeout) to let the application catch
/// up; if it does not, the message is dropped and counted ([`dropped`](Self::dropped)), and
/// further messages for this channel are dropped without waiting until its queue is back to
/// half full. So a slow reader slows the node briefly, then loses messages — it never makes
/// the node buffer without bound or stall the mesh for long.
///
/// Dropping the channel stops delivery on its path (floods are still forwarded).
///
/// ```no_run
/// # async fn demo(node: &peerchannel_tokio::PeerNode) -> Result<(), peerchannel_tokio::Error> {
/// let mut chat = node.channel("/chat")?;
/// chat.send("hello").await?;
/// while let Some(msg) = chat.recv().await {
///     println!("{} says {:?} ({} hops)", msg.origin, msg.payload, msg.hops);
/// }
/// # Ok(()) }
/// ```
pub struct Channel {
    pub(crate) sender: ChannelSender,
    pub(crate) mailbox: Arc<Mailbox<Message>>,
    pub(crate) id: u64,
    pub(crate) cmd_tx: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel").field("path", &self.sender.path).field("queued", &self.mailbox.len()).finish()
    }
}

impl Channel {
    /// The channel's path.
    pub fn path(&self) -> &ChannelPath {
        &self.sender.path
    }

    /// See [`ChannelSender::send`].
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), Error> {
        self.sender.send(payload).await
    }

    /// See [`ChannelSender::send_confirmed`].
    pub async fn send_confirmed(&self, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
        self.sender.send_confirmed(payload).await
    }

    /// A cloneable sending handle for other tasks.
    pub fn sender(&self) -> ChannelSender {
        self.sender.clone()
    }

    /// The next message from another member, or `None` once the node is closed (or dropped)
    /// and the queue is empty.
    pub async fn recv(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.mailbox.poll_recv(cx)).await
    }

    /// The next queued message, without waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.mailbox.try_recv()
    }

    /// Messages dropped because this channel's queue was full.
    pub fn dropped(&self) -> u64 {
        self.mailbox.dropped()
    }

    /// Messages waiting in this channel's queue now.
    pub fn queued(&self) -> usize {
        self.mailbox.len()
    }
}

impl futures_core::Stream for Channel {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.mailbox.poll_recv(cx)
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.mailbox.close_receiver();
        // If the node is gone there is nothing to unsubscribe from.
        let _ = self.cmd_tx.send(Command::Unsubscribe { id: self.id });
    }
}
