//! Recent floods kept for recovery: when a link becomes a neighbor, each side offers the IDs of
//! what it holds (Digest), the other asks for what it missed (Want), and gets the frames.
//! A node that was cut off for a moment — its only neighbor crashed, a partition healed —
//! catches up on the messages of the last `recovery_window` instead of losing them.

use core::time::Duration;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::id::MessageId;
use crate::time::Instant;

/// Frames are copied into shared blocks, so storing one costs a memcpy, not an allocation, and
/// the store never pins a large receive buffer for the sake of a small frame. Blocks are sized
/// to a quarter of what the store holds (between these bounds), so a quiet node holds a few
/// KiB and a busy one allocates rarely.
const MIN_BLOCK: usize = 4 * 1024;
const MAX_BLOCK: usize = 256 * 1024;

/// The floods of the last `window`, at most `cap_bytes` of frames.
#[derive(Debug)]
pub struct RecentStore {
    entries: VecDeque<(Instant, MessageId, Bytes)>,
    bytes: usize,
    cap_bytes: usize,
    window: Duration,
    block: BytesMut,
}

impl RecentStore {
    /// An empty store.
    pub fn new(window: Duration, cap_bytes: usize) -> Self {
        RecentStore { entries: VecDeque::new(), bytes: 0, cap_bytes, window, block: BytesMut::new() }
    }

    /// Keeps a copy of a flood frame (length prefix included, ready to send) under `id`.
    /// Frames larger than the whole store are not kept.
    pub fn record(&mut self, now: Instant, id: MessageId, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.cap_bytes {
            return;
        }
        if self.block.capacity() - self.block.len() < len {
            let size = (self.bytes / 4).clamp(MIN_BLOCK, MAX_BLOCK).max(len);
            self.block = BytesMut::with_capacity(size);
        }
        for p in parts {
            self.block.extend_from_slice(p);
        }
        let frame = self.block.split().freeze();
        self.bytes += len;
        self.entries.push_back((now, id, frame));
        self.evict(now);
    }

    fn evict(&mut self, now: Instant) {
        while let Some((t, _, f)) = self.entries.front() {
            if self.bytes <= self.cap_bytes && now.saturating_duration_since(*t) <= self.window {
                break;
            }
            self.bytes -= f.len();
            self.entries.pop_front();
        }
    }

    /// IDs of the newest stored floods (at most `max`), newest first.
    pub fn digest(&mut self, now: Instant, max: usize) -> Vec<MessageId> {
        self.evict(now);
        self.entries.iter().rev().take(max).map(|(_, id, _)| *id).collect()
    }

    /// The stored frames for `ids` (those still held), oldest first.
    pub fn frames_for(&mut self, now: Instant, ids: &[MessageId]) -> Vec<Bytes> {
        self.evict(now);
        if ids.is_empty() {
            return Vec::new();
        }
        let mut wanted: Vec<MessageId> = ids.to_vec();
        wanted.sort_unstable();
        self.entries.iter().filter(|(_, id, _)| wanted.binary_search(id).is_ok()).map(|(_, _, f)| f.clone()).collect()
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId([n; 16])
    }

    #[test]
    fn keeps_the_window_and_the_byte_cap() {
        let mut s = RecentStore::new(Duration::from_secs(10), 100);
        s.record(Instant::ZERO, id(1), &[b"aaaa", b"bbbb"]);
        s.record(Instant::from_millis(5_000), id(2), &[&[2u8; 40]]);
        assert_eq!(s.digest(Instant::from_millis(5_000), 10), vec![id(2), id(1)]);
        // Out of the window.
        assert_eq!(s.digest(Instant::from_millis(10_001), 10), vec![id(2)]);
        // Over the byte cap: the oldest go.
        s.record(Instant::from_millis(10_001), id(3), &[&[3u8; 61]]);
        assert_eq!(s.digest(Instant::from_millis(10_001), 10), vec![id(3)]);
        assert!(s.bytes() <= 100);
        // Larger than the store: not kept.
        s.record(Instant::from_millis(10_001), id(4), &[&[4u8; 101]]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn returns_the_frames_asked_for_in_order() {
        let mut s = RecentStore::new(Duration::from_secs(10), 1 << 20);
        for n in 1..=5u8 {
            s.record(Instant::ZERO, id(n), &[&[n; 3]]);
        }
        let got = s.frames_for(Instant::ZERO, &[id(4), id(2), id(9)]);
        assert_eq!(got, vec![Bytes::from_static(&[2, 2, 2]), Bytes::from_static(&[4, 4, 4])]);
        assert_eq!(s.digest(Instant::ZERO, 2), vec![id(5), id(4)]);
    }
}
