//! The cross-thread handle: other threads send into a node through a bounded queue and wake
//! its `mio::Poll` with a `mio::Waker`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use bytes::Bytes;
use mio::Waker;
use peerchannel_core::ChannelPath;

use crate::error::Error;

/// A command from another thread.
pub(crate) enum Command {
    Send { path: ChannelPath, payload: Bytes },
    Close,
}

/// The node's end of the command queue.
pub(crate) struct Commands {
    pub(crate) rx: Receiver<Command>,
    pub(crate) tx: SyncSender<Command>,
    pub(crate) wake_pending: Arc<AtomicBool>,
    pub(crate) waker: Arc<Waker>,
    /// A send taken from the queue that waits for the outbound budget.
    pub(crate) held: Option<Command>,
}

impl fmt::Debug for Commands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commands").field("holding", &self.held.is_some()).finish_non_exhaustive()
    }
}

/// A `Send + Sync + Clone` handle through which any thread can send into a
/// [`MioNode`](crate::MioNode) or ask it to close, without touching the node itself.
///
/// Commands go through a bounded queue ([`Builder::handle_capacity`](crate::Builder::handle_capacity));
/// when it is full, [`send`](Self::send) returns [`Error::WouldBlock`] instead of buffering
/// without bound. The node's thread is woken by a `mio::Waker` (at most one wake-up per batch
/// of commands) and takes the commands in its next [`handle_event`](crate::MioNode::handle_event)
/// or [`handle_timeout`](crate::MioNode::handle_timeout). A queued send whose mesh is backed up
/// waits in the node (holding up the queue behind it) until the neighbors drain, so
/// backpressure reaches the sending thread as `WouldBlock`.
///
/// ```no_run
/// # fn demo(node: &mut peerchannel_mio::MioNode) -> Result<(), peerchannel_mio::Error> {
/// let handle = node.handle()?;
/// std::thread::spawn(move || {
///     for i in 0..10u32 {
///         // Retry on WouldBlock: the queue or the mesh is backed up.
///         while let Err(peerchannel_mio::Error::WouldBlock) = handle.send("/chat", i.to_be_bytes().to_vec()) {
///             std::thread::sleep(std::time::Duration::from_millis(1));
///         }
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: SyncSender<Command>,
    pub(crate) wake_pending: Arc<AtomicBool>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) max_message_size: usize,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("max_message_size", &self.max_message_size).finish_non_exhaustive()
    }
}

impl Handle {
    /// Queues `payload` for the mesh on channel `path`. Errors: [`Error::WouldBlock`] when the
    /// queue is full (retry later), [`Error::Closed`] when the node is gone, and the size and
    /// path errors, checked here so that nothing invalid is queued.
    pub fn send(&self, path: &str, payload: impl Into<Bytes>) -> Result<(), Error> {
        let path = ChannelPath::new(path).map_err(|source| Error::InvalidPath { given: path.to_owned(), source })?;
        self.send_to(&path, payload)
    }

    /// [`send`](Self::send) with a parsed path.
    pub fn send_to(&self, path: &ChannelPath, payload: impl Into<Bytes>) -> Result<(), Error> {
        let payload = payload.into();
        if payload.len() > self.max_message_size {
            return Err(Error::MessageTooLarge { size: payload.len(), max: self.max_message_size });
        }
        self.push(Command::Send { path: path.clone(), payload })
    }

    /// Asks the node to leave the mesh gracefully (as [`MioNode::close`](crate::MioNode::close)).
    pub fn close(&self) -> Result<(), Error> {
        self.push(Command::Close)
    }

    /// Wakes the node's `Poll` without a command (for example to make its thread look at
    /// some state of the application's own).
    pub fn wake(&self) -> Result<(), Error> {
        self.waker.wake().map_err(|_| Error::Closed)
    }

    fn push(&self, cmd: Command) -> Result<(), Error> {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // Make sure the node looks at its queue, or a full queue could stay full.
                self.nudge();
                return Err(Error::WouldBlock);
            }
            Err(TrySendError::Disconnected(_)) => return Err(Error::Closed),
        }
        self.nudge();
        Ok(())
    }

    /// One wake-up per batch: the node clears the flag before it takes the queue.
    fn nudge(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) && self.waker.wake().is_err() {
            self.wake_pending.store(false, Ordering::Release);
        }
    }
}
