use std::collections::VecDeque;

use bytes::Bytes;

/// What a queued chunk costs beyond its bytes (its handle, mark and slot, and the shared
/// buffer's control block), charged against the queue's bound so a flood of tiny frames
/// cannot hold many times the bound in bookkeeping.
pub const CHUNK_OVERHEAD: usize = 64;

/// Bytes queued for one link, as a list of frames, each one or two shared chunks (a forwarded
/// flood is its new head and then the received frame's remainder, which is the received buffer
/// itself). The bound is enforced by the caller with [`has_room`](Self::has_room) before a frame
/// is pushed, so a frame is queued whole or not at all.
///
/// A frame is one entry, not one per chunk: forwarding pushes a flood to every neighbor and
/// pulls it again, so one queue operation per frame instead of two is a measurable share of the
/// hot path.
#[derive(Debug, Default)]
pub struct SendQueue {
    frames: VecDeque<Queued>,
    bytes: usize,
    /// Non-empty chunks queued, each charged [`CHUNK_OVERHEAD`].
    chunks: usize,
}

/// One queued frame: `head` goes first, then `rest` (either may be empty), with the node's
/// received-byte count when it was queued.
#[derive(Debug)]
struct Queued {
    head: Bytes,
    rest: Bytes,
    mark: u64,
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
    #[inline]
    pub fn has_room(&self, n: usize, limit: usize) -> bool {
        self.charged_with_next().saturating_add(n) <= limit
    }

    /// The largest frame (in up to two chunks) that fits under `limit` now: for `n > 0`,
    /// `has_room(n, limit)` is `n <= room(limit)`.
    #[inline]
    pub fn room(&self, limit: usize) -> usize {
        limit.saturating_sub(self.charged_with_next())
    }

    /// What the queue is charged once one more frame's two chunks join it, before its bytes.
    #[inline]
    fn charged_with_next(&self) -> usize {
        self.bytes + (self.chunks + 2) * CHUNK_OVERHEAD
    }

    /// Appends a frame sent as `head` then `rest` (either may be empty; an empty frame is
    /// skipped). `rx_mark` is the node's count of received bytes now: a forwarded chunk shares
    /// the buffer it was received in, so the bytes received since the oldest queued frame bound
    /// what the queue keeps alive.
    // Always inlined: a relay pushes every flood to each neighbor, and the compiler kept it a
    // call (its prologue and epilogue were 13 of the 1,744 instructions a relayed frame cost).
    #[inline(always)]
    pub fn push(&mut self, head: Bytes, rest: Bytes, rx_mark: u64) {
        let n = head.len() + rest.len();
        if n == 0 {
            return;
        }
        self.bytes += n;
        self.chunks += usize::from(!head.is_empty()) + usize::from(!rest.is_empty());
        self.frames.push_back(Queued { head, rest, mark: rx_mark });
    }

    /// The received-byte count when the oldest queued frame was queued.
    #[inline]
    pub fn oldest_mark(&self) -> Option<u64> {
        self.frames.front().map(|c| c.mark)
    }

    /// Takes up to `max` bytes from the front, in one chunk (at least one byte if any are
    /// queued and `max > 0`). Chunks are split, never copied.
    pub fn pop(&mut self, max: usize) -> Option<Bytes> {
        if max == 0 {
            return None;
        }
        let front = self.frames.front_mut()?;
        let part = if front.head.is_empty() { &mut front.rest } else { &mut front.head };
        let out = if part.len() <= max {
            self.chunks -= 1;
            core::mem::take(part)
        } else {
            part.split_to(max)
        };
        if front.head.is_empty() && front.rest.is_empty() {
            self.frames.pop_front();
        }
        self.bytes -= out.len();
        Some(out)
    }

    /// Appends chunks from the front to `out` until `max` bytes are taken or the queue is
    /// empty (the last one split if it does not fit); returns the bytes taken.
    pub fn pop_into(&mut self, max: usize, out: &mut impl Extend<Bytes>) -> usize {
        let mut taken = 0;
        while taken < max {
            let Some(front) = self.frames.front() else { break };
            let whole = front.head.len() + front.rest.len();
            if whole > max - taken {
                // The last chunks that fit, one at a time (a chunk may be split).
                while let Some(b) = self.pop(max - taken) {
                    taken += b.len();
                    out.extend(Some(b));
                }
                break;
            }
            let Some(Queued { head, rest, .. }) = self.frames.pop_front() else { break };
            self.chunks -= usize::from(!head.is_empty()) + usize::from(!rest.is_empty());
            if !head.is_empty() {
                out.extend(Some(head));
            }
            if !rest.is_empty() {
                out.extend(Some(rest));
            }
            self.bytes -= whole;
            taken += whole;
        }
        taken
    }

    /// Drops everything queued (the link is gone).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.chunks = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_and_splits_without_copying() {
        let mut q = SendQueue::default();
        let big = Bytes::from(vec![7u8; 100]);
        q.push(Bytes::from_static(b"abc"), Bytes::new(), 1);
        q.push(Bytes::new(), Bytes::new(), 2);
        q.push(big.clone(), Bytes::new(), 3);
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
    fn pop_into_takes_whole_frames_then_splits_the_last_and_keeps_the_charges_right() {
        let mut q = SendQueue::default();
        let rest = Bytes::from(vec![9u8; 50]);
        q.push(Bytes::from_static(b"head"), rest.clone(), 1);
        q.push(Bytes::from_static(b"ctl"), Bytes::new(), 2);
        q.push(Bytes::from_static(b"hd"), rest.clone(), 3);
        // Room is charged per chunk: five chunks are queued.
        let limit = q.len_bytes() + 7 * CHUNK_OVERHEAD;
        assert!(q.has_room(0, limit) && !q.has_room(1, limit));
        assert_eq!(q.room(limit), 0);
        assert_eq!(q.room(limit + 10), 10);
        assert!(q.has_room(10, limit + 10) && !q.has_room(11, limit + 10));
        let mut out = Vec::new();
        // The first two frames whole (54 + 3 bytes), then 2 bytes of head and 1 of the rest.
        assert_eq!(q.pop_into(60, &mut out), 60);
        let lens: Vec<usize> = out.iter().map(Bytes::len).collect();
        assert_eq!(lens, [4, 50, 3, 2, 1]);
        assert_eq!(out[1].as_ptr(), rest.as_ptr(), "a chunk is handed over, not copied");
        assert_eq!(q.oldest_mark(), Some(3));
        out.clear();
        assert_eq!(q.pop_into(usize::MAX, &mut out), 49);
        assert_eq!(out.len(), 1);
        assert!(q.is_empty());
        // Nothing is charged any more: the whole limit is free again.
        assert!(q.has_room(limit - 2 * CHUNK_OVERHEAD, limit));
        assert_eq!(q.pop_into(10, &mut out), 0);
    }

    #[test]
    fn room_is_checked_against_the_limit() {
        let mut q = SendQueue::default();
        q.push(Bytes::from(vec![0u8; 90]), Bytes::new(), 0);
        let limit = 100 + 3 * CHUNK_OVERHEAD;
        assert!(q.has_room(10, limit));
        assert!(!q.has_room(11, limit));
        assert!(!q.has_room(usize::MAX, limit));
        q.clear();
        assert_eq!(q.len_bytes(), 0);
    }
}
