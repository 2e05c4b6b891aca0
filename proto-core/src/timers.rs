//! The node's one timer structure: a min-heap of deadlines, surfaced as one `poll_timeout`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::id::LinkId;
use crate::time::Instant;

/// What a deadline is for. Entries are not removed when they become moot; the handler checks
/// whether the deadline still stands (a link keeps the instant it armed), which keeps arming O(log n).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// Periodic maintenance.
    Maintainer,
    /// A repair retry while below the minimum with nothing in flight.
    Repair,
    /// The mesh refresh.
    Refresh,
    /// The resolver request in flight times out.
    Resolve,
    /// Something is due on a link (see `Link::next_deadline`).
    Link(LinkId),
    /// Queues drained while floods were held for room: try them again (see
    /// `Config::forward_wait`).
    Resume,
}

/// Deadlines ordered by time, then by kind, so equal deadlines fire in a fixed order.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
}

impl Timers {
    /// Adds a deadline.
    pub fn arm(&mut self, at: Instant, t: Timer) {
        self.heap.push(Reverse((at, t)));
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Entries held, live and moot.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries for which `live` holds (used to drop moot entries in bulk), and
    /// gives back the memory of a heap that shrank.
    pub fn retain(&mut self, mut live: impl FnMut(Instant, Timer) -> bool) {
        self.heap.retain(|Reverse((at, t))| live(*at, *t));
        if self.heap.capacity() > 4 * self.heap.len().max(16) {
            self.heap.shrink_to_fit();
        }
    }

    /// Removes and returns a deadline that is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Timer)> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(e)| e)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_order_then_kind_order() {
        let mut t = Timers::default();
        t.arm(Instant::from_millis(5), Timer::Link(LinkId(2)));
        t.arm(Instant::from_millis(5), Timer::Maintainer);
        t.arm(Instant::from_millis(1), Timer::Link(LinkId(9)));
        assert_eq!(t.next(), Some(Instant::from_millis(1)));
        assert_eq!(t.pop_due(Instant::from_millis(0)), None);
        let now = Instant::from_millis(5);
        let order: Vec<Timer> = std::iter::from_fn(|| t.pop_due(now).map(|e| e.1)).collect();
        assert_eq!(order, vec![Timer::Link(LinkId(9)), Timer::Maintainer, Timer::Link(LinkId(2))]);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn the_earliest_deadline_follows_arms_pops_and_retains() {
        let mut t = Timers::default();
        let mut model: Vec<(Instant, Timer)> = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..2000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 5 {
                0..=2 => {
                    let e = (Instant::from_millis(x % 1000), Timer::Link(LinkId(step)));
                    t.arm(e.0, e.1);
                    model.push(e);
                }
                3 => {
                    let now = Instant::from_millis((x >> 8) % 1000);
                    while let Some(e) = t.pop_due(now) {
                        let i = model.iter().position(|m| *m == e).expect("popped a deadline never armed");
                        model.swap_remove(i);
                    }
                    assert!(model.iter().all(|(at, _)| *at > now));
                }
                _ => {
                    let cut = (x >> 16) % 1000;
                    t.retain(|at, _| at.as_nanos() / 1_000_000 % 7 != cut % 7);
                    model.retain(|(at, _)| at.as_nanos() / 1_000_000 % 7 != cut % 7);
                }
            }
            assert_eq!(t.next(), model.iter().map(|(at, _)| *at).min(), "step {step}");
            assert_eq!(t.len(), model.len());
        }
    }
}
