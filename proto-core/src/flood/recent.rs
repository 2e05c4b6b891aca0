//! Recent floods kept for recovery: when a link becomes a neighbor, each side offers the IDs of
//! what it holds (Digest), the other asks for what it missed (Want), and gets the frames.
//! A node that was cut off for a moment — its only neighbor crashed, a partition healed —
//! catches up on the messages of the last `recovery_window` instead of losing them.
//!
//! The store keeps the frames without copying them: the forward head and the received bytes,
//! as the relay queues them. A shared handle keeps alive the whole buffer the adapter read the
//! frame into, so the store bounds what it can keep alive, not just the frames' own bytes: the
//! bytes received by the node since the oldest stored frame (every buffer a stored frame can
//! pin was filled in that span, give or take one read per link) stay under `cap_bytes`.

use core::time::Duration;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::id::MessageId;
use crate::time::Instant;

/// Frames kept at most, whatever their size: a Digest offers only the newest 256, so a Want
/// can only ask for those; a margin covers the floods that arrive while it travels.
pub const MAX_STORED: usize = 1024;

/// The first chunk of a stored frame.
#[derive(Debug, Clone)]
pub enum StoredHead {
    /// Already encoded (a flood this node sent: its whole header).
    Encoded(Bytes),
    /// A relayed flood's forward head, kept as its three values and encoded only if the frame
    /// is asked for again: storing it costs no reference count on the relay's hot path.
    Forward {
        /// The frame's length (after the prefix).
        frame_len: usize,
        /// Flood or SignedFlood.
        frame_type: u8,
        /// Hops left on the forwarded copy.
        hops_left: u8,
    },
}

impl StoredHead {
    fn len(&self) -> usize {
        match self {
            StoredHead::Encoded(b) => b.len(),
            StoredHead::Forward { .. } => crate::wire::FORWARD_HEAD_LEN,
        }
    }

    fn to_bytes(&self) -> Bytes {
        match self {
            StoredHead::Encoded(b) => b.clone(),
            StoredHead::Forward { frame_len, frame_type, hops_left } => {
                let mut out = BytesMut::with_capacity(crate::wire::FORWARD_HEAD_LEN);
                crate::wire::encode_forward_head(*frame_len, *frame_type, *hops_left, &mut out);
                out.freeze()
            }
        }
    }
}

#[derive(Debug)]
struct Stored {
    at: Instant,
    id: MessageId,
    head: StoredHead,
    rest: Bytes,
    /// The node's received-byte count when the frame was stored.
    rx_mark: u64,
}

/// The floods of the last `window`, bounded in count, in frame bytes, and in the received
/// bytes they can keep alive.
#[derive(Debug)]
pub struct RecentStore {
    entries: VecDeque<Stored>,
    bytes: usize,
    cap_bytes: usize,
    window: Duration,
}

impl RecentStore {
    /// An empty store.
    pub fn new(window: Duration, cap_bytes: usize) -> Self {
        RecentStore { entries: VecDeque::new(), bytes: 0, cap_bytes, window }
    }

    /// Keeps a flood frame (`head` then `rest`, ready to send) under `id`, without copying it.
    /// `rx_total` is the node's count of bytes received so far.
    #[inline]
    pub fn record(&mut self, now: Instant, id: MessageId, head: StoredHead, rest: Bytes, rx_total: u64) {
        let len = head.len() + rest.len();
        if len > self.cap_bytes {
            return;
        }
        self.bytes += len;
        self.entries.push_back(Stored { at: now, id, head, rest, rx_mark: rx_total });
        self.evict(now, rx_total);
    }

    /// Drops what is too old, too much, or keeps too many received bytes alive. Called on every
    /// record and by the node's periodic maintenance, so a node that went quiet lets go too.
    #[inline]
    pub fn evict(&mut self, now: Instant, rx_total: u64) {
        // The bounds as the oldest kept entry's own values, worked out once: this runs for
        // every relayed flood.
        let oldest_at = now - self.window; // saturating
        let oldest_mark = rx_total.saturating_sub(self.cap_bytes as u64);
        while let Some(front) = self.entries.front() {
            let fresh = front.at >= oldest_at;
            let pinned = front.rx_mark >= oldest_mark;
            if fresh && pinned && self.bytes <= self.cap_bytes && self.entries.len() <= MAX_STORED {
                break;
            }
            self.bytes -= front.head.len() + front.rest.len();
            self.entries.pop_front();
        }
        // A store that ran dry gives its table back (a quiet node holds nothing).
        if self.entries.is_empty() && self.entries.capacity() > 64 {
            self.entries = VecDeque::new();
        }
    }

    /// IDs of the newest stored floods (at most `max`), newest first.
    pub fn digest(&mut self, now: Instant, rx_total: u64, max: usize) -> Vec<MessageId> {
        self.evict(now, rx_total);
        self.entries.iter().rev().take(max).map(|s| s.id).collect()
    }

    /// The stored frames for `ids` (those still held), oldest first, as (head, rest).
    pub fn frames_for(&mut self, now: Instant, rx_total: u64, ids: &[MessageId]) -> Vec<(Bytes, Bytes)> {
        self.evict(now, rx_total);
        if ids.is_empty() {
            return Vec::new();
        }
        let mut wanted: Vec<MessageId> = ids.to_vec();
        wanted.sort_unstable();
        self.entries
            .iter()
            .filter(|s| wanted.binary_search(&s.id).is_ok())
            .map(|s| (s.head.to_bytes(), s.rest.clone()))
            .collect()
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

    fn frame(n: u8, len: usize) -> (StoredHead, Bytes) {
        (StoredHead::Encoded(Bytes::from(vec![n; 2])), Bytes::from(vec![n; len - 2]))
    }

    #[test]
    fn keeps_the_window_the_byte_cap_and_the_received_span() {
        let mut s = RecentStore::new(Duration::from_secs(10), 100);
        let (h, r) = frame(1, 8);
        s.record(Instant::ZERO, id(1), h, r, 0);
        let (h, r) = frame(2, 40);
        s.record(Instant::from_millis(5_000), id(2), h, r, 10);
        assert_eq!(s.digest(Instant::from_millis(5_000), 10, 10), vec![id(2), id(1)]);
        // Out of the window.
        assert_eq!(s.digest(Instant::from_millis(10_001), 10, 10), vec![id(2)]);
        // Over the byte cap: the oldest go.
        let (h, r) = frame(3, 61);
        s.record(Instant::from_millis(10_001), id(3), h, r, 20);
        assert_eq!(s.digest(Instant::from_millis(10_001), 20, 10), vec![id(3)]);
        assert!(s.bytes() <= 100);
        // Larger than the store: not kept.
        let (h, r) = frame(4, 101);
        s.record(Instant::from_millis(10_001), id(4), h, r, 20);
        assert_eq!(s.len(), 1);
        // More than the cap received since it was stored (other traffic sharing its buffers):
        // it goes, even though it is small and young.
        assert!(s.digest(Instant::from_millis(10_002), 20 + 101, 10).is_empty());
    }

    #[test]
    fn returns_the_frames_asked_for_in_order_without_copying() {
        let mut s = RecentStore::new(Duration::from_secs(10), 1 << 20);
        let mut kept = Vec::new();
        for n in 1..=5u8 {
            let (h, r) = frame(n, 5);
            kept.push(r.clone());
            s.record(Instant::ZERO, id(n), h, r, 0);
        }
        let got = s.frames_for(Instant::ZERO, 0, &[id(4), id(2), id(9)]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.as_ptr(), kept[1].as_ptr());
        assert_eq!(got[1].1.as_ptr(), kept[3].as_ptr());
        assert_eq!(s.digest(Instant::ZERO, 0, 2), vec![id(5), id(4)]);
    }

    #[test]
    fn a_relayed_frame_gets_its_forward_head_back() {
        let mut s = RecentStore::new(Duration::from_secs(10), 1 << 20);
        let head = StoredHead::Forward { frame_len: 300, frame_type: 0x10, hops_left: 5 };
        s.record(Instant::ZERO, id(1), head, Bytes::from(vec![0; 299]), 0);
        assert_eq!(s.bytes(), crate::wire::FORWARD_HEAD_LEN + 299);
        let got = s.frames_for(Instant::ZERO, 0, &[id(1)]);
        let mut want = BytesMut::new();
        crate::wire::encode_forward_head(300, 0x10, 5, &mut want);
        assert_eq!(got[0].0, want.freeze());
    }

    #[test]
    fn the_count_is_bounded() {
        let mut s = RecentStore::new(Duration::from_secs(10), 1 << 30);
        for n in 0..(MAX_STORED + 10) {
            let head = StoredHead::Encoded(Bytes::new());
            s.record(Instant::ZERO, MessageId([(n % 251) as u8; 16]), head, Bytes::from_static(b"x"), 0);
        }
        assert_eq!(s.len(), MAX_STORED);
    }
}
