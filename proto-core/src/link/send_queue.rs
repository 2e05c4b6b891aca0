use std::collections::VecDeque;

use bytes::Bytes;

/// What a queued chunk costs beyond its bytes (its handle, mark and slot, and the shared
/// buffer's control block), charged against the queue's bound so a flood of tiny frames
/// cannot hold many times the bound in bookkeeping.
pub const CHUNK_OVERHEAD: usize = 64;

/// Bytes queued for one link, as a list of shared chunks (a forwarded flood's payload is the
/// received buffer itself). The bound is enforced by the caller with [`has_room`](Self::has_room)
/// before a frame's chunks are pushed, so a frame is queued whole or not at all.
#[derive(Debug, Default)]
pub struct SendQueue {
    /// Chunks, each with the node's received-byte count when it was queued.
    chunks: VecDeque<(Bytes, u64)>,
    bytes: usize,
}

impl SendQueue {
    /// Queued bytes.
    pub fn len_bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Whether a frame of `n` more bytes (in up to two chunks) fits under `limit`, each chunk
    /// charged [`CHUNK_OVERHEAD`] on top of its bytes.
    pub fn has_room(&self, n: usize, limit: usize) -> bool {
        let charged = self.bytes + (self.chunks.len() + 2) * CHUNK_OVERHEAD;
        charged.saturating_add(n) <= limit
    }

    /// Appends a chunk (empty chunks are skipped). `rx_mark` is the node's count of received
    /// bytes now: a forwarded chunk shares the buffer it was received in, so the bytes received
    /// since the oldest queued chunk bound what the queue keeps alive.
    pub fn push(&mut self, chunk: Bytes, rx_mark: u64) {
        if !chunk.is_empty() {
            self.bytes += chunk.len();
            self.chunks.push_back((chunk, rx_mark));
        }
    }

    /// The received-byte count when the oldest queued chunk was queued.
    pub fn oldest_mark(&self) -> Option<u64> {
        self.chunks.front().map(|c| c.1)
    }

    /// Takes up to `max` bytes from the front (at least one byte if any are queued and
    /// `max > 0`). Chunks are split, never copied.
    pub fn pop(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
        }
        let front = self.chunks.front_mut()?;
        let out = if front.0.len() <= max { self.chunks.pop_front()?.0 } else { front.0.split_to(max) };
        self.bytes -= out.len();
        Some(out)
    }

    /// Drops everything queued (the link is gone).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_and_splits_without_copying() {
        let mut q = SendQueue::default();
        let big = Bytes::from(vec![7u8; 100]);
        q.push(Bytes::from_static(b"abc"), 1);
        q.push(Bytes::new(), 2);
        q.push(big.clone(), 3);
        assert_eq!(q.oldest_mark(), Some(1));
        assert_eq!(q.len_bytes(), 103);
        assert_eq!(&q.pop(10).unwrap()[..], b"abc");
        let part = q.pop(40).unwrap();
        assert_eq!(part.len(), 40);
        assert_eq!(part.as_ptr(), big.as_ptr());
        assert_eq!(q.pop(1000).unwrap().len(), 60);
        assert!(q.pop(1000).is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn room_is_checked_against_the_limit() {
        let mut q = SendQueue::default();
        q.push(Bytes::from(vec![0u8; 90]), 0);
        let limit = 100 + 3 * CHUNK_OVERHEAD;
        assert!(q.has_room(10, limit));
        assert!(!q.has_room(11, limit));
        assert!(!q.has_room(usize::MAX, limit));
        q.clear();
        assert_eq!(q.len_bytes(), 0);
    }
}
