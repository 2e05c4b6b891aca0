//! `WriteQueue`: the node is asked only when it may have bytes, a partial write keeps the rest
//! of a chunk without copying, and under any interleaving of wakes, refills and partial writes
//! what reaches the socket is exactly the bytes the node handed out, in order, with never more
//! than the window waiting at once.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Bytes;
use peerchannel_core::WriteQueue;
use proptest::prelude::*;

/// What a node's pull does: up to `room` bytes of its queue, the last chunk split at the room;
/// less than `room` only when the queue ran dry.
fn pull(node: &mut VecDeque<Bytes>, room: usize, out: &mut VecDeque<Bytes>) -> usize {
    let mut taken = 0;
    while taken < room {
        let Some(mut c) = node.pop_front() else { break };
        if c.len() > room - taken {
            node.push_front(c.split_off(room - taken));
        }
        taken += c.len();
        out.push_back(c);
    }
    taken
}

#[test]
fn refills_up_to_the_window_and_asks_again_only_when_woken() {
    let mut node: VecDeque<Bytes> = (0..5u8).map(|i| Bytes::from(vec![i; 40])).collect();
    let mut q = WriteQueue::new();
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 0, "not woken: the node is not asked");
    q.wake();
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 100);
    assert_eq!(q.len(), 100);
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 0, "the window is full");
    q.consume(60);
    assert_eq!(q.len(), 40);
    // The node still has 100 bytes: a full room's worth means it may have more.
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 60);
    assert!(!q.is_drained());
    // 40 left in the node, room 60: it came back short, so the node ran dry.
    q.consume(100);
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 40);
    q.consume(40);
    assert!(q.is_empty() && q.is_drained());
    // Bytes the node queues without saying Transmit are not asked for until it does.
    node.push_back(Bytes::from_static(b"later"));
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 0, "dry until woken again");
    q.wake();
    assert_eq!(q.refill_with(100, |r, o| pull(&mut node, r, o)), 5);
}

#[test]
fn a_partial_write_keeps_the_rest_of_a_chunk_without_copying() {
    let big = Bytes::from(vec![7u8; 50]);
    let mut q = WriteQueue::awake();
    let mut node: VecDeque<Bytes> = [Bytes::from_static(b"head"), big.clone()].into();
    q.refill_with(usize::MAX, |r, o| pull(&mut node, r, o));
    let mut slices = [IoSlice::new(&[]); 1];
    assert_eq!(q.io_slices(&mut slices), (1, 4), "as many slices as there is room for");
    q.consume(4 + 10);
    let mut slices = [IoSlice::new(&[]); 4];
    let (n, offered) = q.io_slices(&mut slices);
    assert_eq!((n, offered), (1, 40));
    assert_eq!(slices[0].as_ptr(), big[10..].as_ptr(), "the rest is the same buffer");
    q.consume(40);
    assert!(q.is_empty());
    assert_eq!(q.len(), 0);
}

#[derive(Clone, Debug)]
enum Step {
    /// The node queues a frame of this many bytes and says Transmit.
    Queue(u16),
    /// The adapter refills up to this window.
    Refill(u16),
    /// A vectored write of at most this many slices takes this share (per mille) of what it is
    /// offered.
    Write { slices: u8, share: u16 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1u16..3000).prop_map(Step::Queue),
        (1u16..5000).prop_map(Step::Refill),
        (1u8..6, 0u16..=1000).prop_map(|(slices, share)| Step::Write { slices, share }),
    ]
}

proptest! {
    #[test]
    fn bytes_reach_the_socket_once_in_order_and_within_the_window(steps in prop::collection::vec(step(), 1..200)) {
        // The node's side: its queue of frames, split where a pull's room ends.
        let mut node: VecDeque<Bytes> = VecDeque::new();
        let mut next = 0u8;
        let (mut sent, mut written) = (Vec::new(), Vec::new());
        let mut q = WriteQueue::new();
        for s in steps {
            match s {
                Step::Queue(n) => {
                    let frame: Vec<u8> = (0..n).map(|_| { next = next.wrapping_add(1); next }).collect();
                    sent.extend_from_slice(&frame);
                    node.push_back(Bytes::from(frame));
                    q.wake();
                }
                Step::Refill(window) => {
                    let window = usize::from(window);
                    let before = q.len();
                    let taken = q.refill_with(window, |room, out| pull(&mut node, room, out));
                    prop_assert_eq!(q.len(), before + taken);
                    prop_assert!(taken == 0 || q.len() <= window, "{} bytes wait, window {}", q.len(), window);
                }
                Step::Write { slices, share } => {
                    let mut buf = vec![IoSlice::new(&[]); usize::from(slices)];
                    let (n, offered) = q.io_slices(&mut buf);
                    prop_assert!(offered <= q.len());
                    let took = offered * usize::from(share) / 1000;
                    let mut left = took;
                    for s in &buf[..n] {
                        let k = left.min(s.len());
                        written.extend_from_slice(&s[..k]);
                        left -= k;
                    }
                    q.consume(took);
                }
            }
        }
        // Drain: refill and write everything that is left.
        loop {
            q.refill_with(4096, |room, out| pull(&mut node, room, out));
            if q.is_empty() {
                break;
            }
            let mut buf = vec![IoSlice::new(&[]); 8];
            let (n, offered) = q.io_slices(&mut buf);
            for s in &buf[..n] {
                written.extend_from_slice(s);
            }
            q.consume(offered);
        }
        prop_assert!(node.is_empty());
        prop_assert_eq!(q.len(), 0);
        prop_assert_eq!(written, sent);
    }
}
