//! A bounded single-consumer queue between the node's task and one receiver (a channel or an
//! event stream). Bounded so that a slow application cannot make the node buffer without
//! limit; the node's task decides what happens when it is full (wait, drop newest, drop oldest)
//! and counts every drop here.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

pub(crate) struct Mailbox<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    dropped: AtomicU64,
}

struct Inner<T> {
    queue: VecDeque<T>,
    /// The receiver waiting for an item.
    recv_waker: Option<Waker>,
    /// The node's task waiting for room.
    room_waker: Option<Waker>,
    /// The node's side is gone: the receiver sees the end after the queued items.
    sender_gone: bool,
    /// The receiver is gone: the node stops delivering.
    receiver_gone: bool,
}

/// What happened to an offered item.
pub(crate) enum Offer<T> {
    Queued,
    /// The queue is full; the item is handed back.
    Full(T),
    /// The receiver is gone; the item is dropped.
    Gone,
}

impl<T> Mailbox<T> {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Mailbox {
            inner: Mutex::new(Inner {
                queue: VecDeque::with_capacity(capacity.min(64)),
                recv_waker: None,
                room_waker: None,
                sender_gone: false,
                receiver_gone: false,
            }),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent (every critical
        // section is a single push or pop), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item` if there is room.
    pub(crate) fn offer(&self, item: T) -> Offer<T> {
        let mut g = self.lock();
        if g.receiver_gone {
            return Offer::Gone;
        }
        if g.queue.len() >= self.capacity {
            return Offer::Full(item);
        }
        g.queue.push_back(item);
        let w = g.recv_waker.take();
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
        Offer::Queued
    }

    /// Queues `item`, dropping the oldest queued item if full (counted).
    pub(crate) fn push_evicting(&self, item: T) -> bool {
        let mut g = self.lock();
        if g.receiver_gone {
            return false;
        }
        if g.queue.len() >= self.capacity {
            g.queue.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        g.queue.push_back(item);
        let w = g.recv_waker.take();
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
        true
    }

    /// Ready when the queue has room (or the receiver is gone); registers the node's task.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut g = self.lock();
        if g.receiver_gone || g.queue.len() < self.capacity {
            return Poll::Ready(());
        }
        g.room_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether the queue is at most half full (used to end an overflow episode).
    pub(crate) fn below_half(&self) -> bool {
        self.lock().queue.len() <= self.capacity / 2
    }

    pub(crate) fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut g = self.lock();
        if let Some(item) = g.queue.pop_front() {
            let w = g.room_waker.take();
            drop(g);
            if let Some(w) = w {
                w.wake();
            }
            return Poll::Ready(Some(item));
        }
        if g.sender_gone {
            return Poll::Ready(None);
        }
        g.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn try_recv(&self) -> Option<T> {
        let mut g = self.lock();
        let item = g.queue.pop_front();
        let w = if item.is_some() { g.room_waker.take() } else { None };
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
        item
    }

    /// The node's side is finished: wake the receiver so it sees the end.
    pub(crate) fn close_sender(&self) {
        let mut g = self.lock();
        g.sender_gone = true;
        let w = g.recv_waker.take();
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
    }

    /// The receiver is finished: free the queue and let the node's task move on.
    pub(crate) fn close_receiver(&self) {
        let mut g = self.lock();
        g.receiver_gone = true;
        g.queue.clear();
        let w = g.room_waker.take();
        drop(g);
        if let Some(w) = w {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_offer_hands_back_and_evicting_push_counts() {
        let m = Mailbox::new(2);
        assert!(matches!(m.offer(1), Offer::Queued));
        assert!(matches!(m.offer(2), Offer::Queued));
        assert!(matches!(m.offer(3), Offer::Full(3)));
        assert!(m.push_evicting(4));
        assert_eq!(m.dropped(), 1);
        assert_eq!(m.try_recv(), Some(2));
        assert_eq!(m.try_recv(), Some(4));
        m.close_receiver();
        assert!(matches!(m.offer(5), Offer::Gone));
    }
}
