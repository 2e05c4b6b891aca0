//! The one event queue of a run: a min-heap ordered by (virtual time, sequence number).
//!
//! The sequence number is the order of scheduling, so two events due at the same instant run
//! in the order they were scheduled. That is what makes a run deterministic (a heap alone does
//! not order equal keys) and what keeps a link's bytes in order when two writes arrive at the
//! same nanosecond.
//!
//! The heap holds small keys (time, sequence, slot); the events themselves wait in a slab, in
//! the slot their key names. A heap of whole events moved each one (a connection, an end and a
//! `Bytes`: 56 bytes with its key) at every level of every sift; with keys of 24 bytes compared
//! as one 128-bit number, a steady-1k run spends 309 M instructions on its queue instead of
//! 358 M. (A 4-ary heap, a radix heap and a hierarchical timing wheel were tried too, and all
//! cost more than a binary heap at the ~2,000 events a 1000-node run keeps waiting, in
//! comparisons or in moving events down their levels.)

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Where an event waits, and when it is due.
#[derive(Debug, Clone, Copy)]
struct Key {
    at: u64,
    seq: u64,
    slot: u32,
}

impl Key {
    /// Time, then sequence, as one number: one comparison orders two keys.
    fn rank(&self) -> u128 {
        u128::from(self.at) << 64 | u128::from(self.seq)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}
impl Eq for Key {}
// Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) on top.
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank().cmp(&self.rank())
    }
}

/// A queue of events of type `E` on virtual time in nanoseconds.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Key>,
    /// Events by slot; `None` in a free slot. It grows only to the most events waiting at once.
    slab: Vec<Option<E>>,
    /// Free slots of `slab`.
    free: Vec<u32>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), slab: Vec::new(), free: Vec::new(), seq: 0 }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `ev` at `at` (nanoseconds of virtual time).
    pub fn push(&mut self, at: u64, ev: E) {
        let seq = self.seq;
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(ev);
                slot
            }
            None => {
                // Slots are u32 to keep keys small; four billion events waiting at once would
                // not fit in memory anyway.
                let slot = u32::try_from(self.slab.len()).unwrap_or(u32::MAX);
                self.slab.push(Some(ev));
                slot
            }
        };
        self.heap.push(Key { at, seq, slot });
    }

    /// The due time of the next event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes the next event if it is due at or before `until`.
    pub fn pop_until(&mut self, until: u64) -> Option<(u64, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        let k = self.heap.pop()?;
        let ev = self.slab[k.slot as usize].take()?;
        self.free.push(k.slot);
        Some((k.at, ev))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events scheduled so far (the next sequence number).
    pub fn scheduled(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    #[test]
    fn events_come_out_by_time_then_by_scheduling_order() {
        let mut q = EventQueue::default();
        q.push(30, "c");
        q.push(10, "a1");
        q.push(20, "b");
        q.push(10, "a2");
        q.push(10, "a3");
        assert_eq!(q.peek_time(), Some(10));
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(u64::MAX)).collect();
        assert_eq!(order, vec![(10, "a1"), (10, "a2"), (10, "a3"), (20, "b"), (30, "c")]);
        assert!(q.is_empty());
        assert_eq!(q.scheduled(), 5);
    }

    #[test]
    fn pop_until_stops_at_the_horizon() {
        let mut q = EventQueue::default();
        q.push(5, 1);
        q.push(15, 2);
        assert_eq!(q.pop_until(10), Some((5, 1)));
        assert_eq!(q.pop_until(10), None);
        // A horizon before the last event taken out takes nothing either.
        assert_eq!(q.pop_until(4), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.peek_time(), Some(15));
        assert_eq!(q.pop_until(15), Some((15, 2)));
        assert_eq!(q.pop_until(u64::MAX), None);
        assert_eq!(q.peek_time(), None);
    }

    #[test]
    fn many_equal_times_keep_fifo_order() {
        let mut q = EventQueue::default();
        for i in 0..1000u32 {
            q.push(7, i);
        }
        let out: Vec<u32> = std::iter::from_fn(|| q.pop_until(7).map(|(_, e)| e)).collect();
        assert_eq!(out, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn equal_times_scheduled_before_and_after_other_pops_keep_fifo_order() {
        let mut q = EventQueue::default();
        q.push(1000, 0);
        q.push(1 << 40, 1);
        q.push(1000, 2);
        q.push(5, 3);
        assert_eq!(q.pop_until(u64::MAX), Some((5, 3)));
        q.push(1000, 4);
        assert_eq!(q.pop_until(u64::MAX), Some((1000, 0)));
        q.push(1000, 5);
        q.push(1 << 40, 6);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop_until(u64::MAX)).collect();
        assert_eq!(rest, vec![(1000, 2), (1000, 4), (1000, 5), (1 << 40, 1), (1 << 40, 6)]);
    }

    #[test]
    fn far_future_and_extreme_times_come_out_last() {
        let mut q = EventQueue::default();
        q.push(u64::MAX, "never");
        q.push(1 << 63, "far");
        q.push(0, "zero");
        q.push(1, "one");
        assert_eq!(q.peek_time(), Some(0));
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(u64::MAX)).map(|(_, e)| e).collect();
        assert_eq!(order, vec!["zero", "one", "far", "never"]);
    }

    #[test]
    fn scheduling_before_the_last_event_taken_out_still_comes_out_first() {
        let mut q = EventQueue::default();
        q.push(100, "a");
        q.push(100, "b");
        q.push(300, "c");
        q.push(200, "d");
        assert_eq!(q.pop_until(u64::MAX), Some((100, "a")));
        q.push(40, "early");
        q.push(100, "e");
        q.push(40, "early2");
        let order: Vec<_> = std::iter::from_fn(|| q.pop_until(u64::MAX)).collect();
        assert_eq!(order, vec![(40, "early"), (40, "early2"), (100, "b"), (100, "e"), (200, "d"), (300, "c")]);
    }

    /// xorshift64*: reproducible pseudo-random operations without a dependency.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    /// Interleaved pushes and pops against a binary heap of (time, sequence) with no slab: the
    /// same events come out in the same order, whatever mix of near, equal, far and (now and then) past
    /// times is scheduled, and slots are reused.
    #[test]
    fn matches_a_binary_heap_on_random_interleavings() {
        for seed in 1..=20u64 {
            let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut q = EventQueue::default();
            let mut model = BinaryHeap::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            for _ in 0..20_000 {
                let r = g.next();
                if r % 100 < 55 {
                    let at = match (r >> 8) % 10 {
                        0..=2 => now,
                        3..=6 => now + (r >> 20) % 64,
                        7 | 8 => now + (r >> 20) % (1 << 36),
                        _ if (r >> 16) % 50 == 0 => now.saturating_sub((r >> 20) % 1000),
                        _ => now + (1 << 40) + (r >> 24) % 3,
                    };
                    q.push(at, seq);
                    model.push(std::cmp::Reverse((at, seq)));
                    seq += 1;
                } else {
                    let until = if r % 7 == 0 { now + (r >> 32) % 100 } else { u64::MAX };
                    assert_eq!(q.peek_time(), model.peek().map(|e| e.0 .0));
                    let expected = match model.peek() {
                        Some(std::cmp::Reverse((at, _))) if *at <= until => model.pop().map(|std::cmp::Reverse(e)| e),
                        _ => None,
                    };
                    assert_eq!(q.pop_until(until), expected, "seed {seed}");
                    if let Some((at, _)) = expected {
                        now = at;
                    }
                }
                assert_eq!(q.len(), model.len());
            }
            while let Some(std::cmp::Reverse(e)) = model.pop() {
                assert_eq!(q.pop_until(u64::MAX), Some(e));
            }
            assert!(q.is_empty());
            assert_eq!(q.scheduled(), seq);
        }
    }
}
