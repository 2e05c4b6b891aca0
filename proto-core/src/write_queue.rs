//! What an adapter holds per connection between a node's bounded send queue and a
//! non-blocking socket.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

use crate::id::LinkId;
use crate::node::Node;

/// The bytes of one link taken from a [`Node`] and not yet written to its socket, at most a
/// write window of them.
///
/// Every adapter needs this between [`Node::poll_transmit_into`] and a socket that takes only
/// part of what it is offered: bytes stay in the node's bounded queue (where its backpressure
/// and slow-neighbor rules see them) until the socket has room for them, then wait here as
/// chunks shared with the node's buffers (nothing is copied) until a write takes them. The
/// loop per connection:
///
/// 1. on [`Output::Transmit`](crate::Output::Transmit) (or `CloseLink`: a farewell may
///    follow), call [`wake`](Self::wake);
/// 2. call [`refill`](Self::refill), hand [`io_slices`](Self::io_slices) to a vectored write,
///    and pass what it wrote to [`consume`](Self::consume), until the socket would block or
///    the queue [`is_empty`](Self::is_empty);
/// 3. once the node closed the link and [`is_drained`](Self::is_drained), shut the socket
///    down.
///
/// ```
/// use std::io::IoSlice;
/// use bytes::Bytes;
/// use peerchannel_core::WriteQueue;
///
/// let mut q = WriteQueue::new();
/// q.wake(); // the node said Transmit for this link
/// // (what `refill` does with a node: up to the window, from the link's queue)
/// q.refill_with(1024, |room, out| {
///     out.extend([Bytes::from_static(b"hello "), Bytes::from_static(b"mesh")]);
///     10.min(room)
/// });
/// let mut slices = [IoSlice::new(&[]); 8];
/// let (n, offered) = q.io_slices(&mut slices);
/// assert_eq!((n, offered), (2, 10));
/// q.consume(7); // the socket took 7 bytes
/// assert_eq!(q.len(), 3);
/// ```
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    /// The node may hold more bytes for this link: it said Transmit, and no pull since has come
    /// back with less than it asked for.
    node_has_more: bool,
}

impl WriteQueue {
    /// An empty queue that expects nothing from the node until [`wake`](Self::wake) (a
    /// connection still connecting: the node queues its Hello once told it is connected).
    pub fn new() -> WriteQueue {
        WriteQueue::default()
    }

    /// An empty queue that will ask the node once (an accepted or just connected link, whose
    /// first frames the node may have queued already).
    pub fn awake() -> WriteQueue {
        WriteQueue { node_has_more: true, ..WriteQueue::default() }
    }

    /// The node has bytes for this link (it said [`Output::Transmit`](crate::Output::Transmit),
    /// or closed the link and may hand out a farewell frame).
    pub fn wake(&mut self) {
        self.node_has_more = true;
    }

    /// Takes bytes of `link` from `node` until `window` bytes wait here, if the node may have
    /// any; returns the bytes taken.
    pub fn refill(&mut self, node: &mut Node, link: LinkId, window: usize) -> usize {
        self.refill_with(window, |room, out| node.poll_transmit_into(link, room, out))
    }

    /// [`refill`](Self::refill) from any source: `pull(room, chunks)` appends at most `room`
    /// bytes to `chunks` and returns how many, less than `room` only when it has no more.
    pub fn refill_with(&mut self, window: usize, pull: impl FnOnce(usize, &mut VecDeque<Bytes>) -> usize) -> usize {
        if !self.node_has_more || self.bytes >= window {
            return 0;
        }
        let room = window - self.bytes;
        let n = pull(room, &mut self.chunks);
        self.bytes += n;
        // Less than the room: the node's queue ran dry.
        self.node_has_more = n == room;
        n
    }

    /// Fills `slices` with the waiting chunks, oldest first, for one vectored write; returns
    /// how many slices it filled and their bytes.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> (usize, usize) {
        let (mut n, mut offered) = (0, 0);
        for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            offered += chunk.len();
            n += 1;
        }
        (n, offered)
    }

    /// Drops the first `n` bytes: a write took them. A chunk written in part keeps its rest
    /// (a slice of the same buffer, not a copy).
    pub fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.bytes, "a write cannot take more than was offered");
        self.bytes -= n.min(self.bytes);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else { break };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Nothing waits here (the node may still hold more: see [`is_drained`](Self::is_drained)).
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Nothing waits here and the node has said nothing since its queue ran dry: everything
    /// the link had to say is written (for a closing link, the moment to shut the socket).
    pub fn is_drained(&self) -> bool {
        self.chunks.is_empty() && !self.node_has_more
    }
}
