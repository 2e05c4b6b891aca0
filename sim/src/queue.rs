//! The one event queue of a run: a min-heap ordered by (virtual time, sequence number).
//!
//! The sequence number is the order of scheduling, so two events due at the same instant run
//! in the order they were scheduled. That is what makes a run deterministic (a heap alone does
//! not order equal keys) and what keeps a link's bytes in order when two writes arrive at the
//! same nanosecond.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An event with its due time and scheduling order. Events are stored inline in the heap (no
/// per-event box), so scheduling does not allocate once the heap has grown.
#[derive(Debug)]
struct Entry<E> {
    at: u64,
    seq: u64,
    ev: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) on top.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A queue of events of type `E` on virtual time in nanoseconds.
#[derive(Debug)]
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), seq: 0 }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `ev` at `at` (nanoseconds of virtual time).
    pub fn push(&mut self, at: u64, ev: E) {
        let seq = self.seq;
        self.seq += 1;
        self.heap.push(Entry { at, seq, ev });
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
        self.heap.pop().map(|e| (e.at, e.ev))
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
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_until(15), Some((15, 2)));
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
}
