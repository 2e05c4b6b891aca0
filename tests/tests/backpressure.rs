//! Backpressure end to end: a sender facing a neighbor that does not drain is made to wait
//! (memory stays bounded), a slow receiving application gets a bounded queue and counted
//! drops, and a stream of small messages is written in few, large system calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peerchannel_tests::{fast_config, handshake_bytes, init_tracing, loopback, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{CloseReason, NodeId, PeerNode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

#[tokio::test]
async fn send_waits_while_a_neighbor_does_not_drain_and_resumes_after() {
    init_tracing();
    let mut c = fast_config("pressure");
    c.idle_timeout = Duration::from_secs(120);
    let node = PeerNode::builder().config(c.clone()).listen(loopback()).open_alone().open().await.unwrap();

    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock.connect(node.local_addr()).await.unwrap();
    stuck.write_all(&handshake_bytes("pressure", 0x51)).await.unwrap();
    let stuck_id = NodeId::new(0x51).unwrap();
    wait_until("the non-reading peer is a neighbor", PATIENCE, || async {
        node.neighbors().await.map(|n| n.iter().any(|x| x.node == stuck_id)).unwrap_or(false)
    })
    .await;

    // Far more than the kernel buffers, the link queue and the hand-off queue together.
    const MESSAGES: usize = 100_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let tx = node.channel("/bulk").unwrap().sender();
    let counter = sent.clone();
    let sender = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            tx.send(vec![0u8; 1024]).await.unwrap();
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    wait_until("a send waits for the full link to drain", PATIENCE, || async {
        node.stats().await.map(|s| s.adapter.sends_waited >= 1).unwrap_or(false)
    })
    .await;
    let s = node.stats().await.unwrap();
    let blocked_at = sent.load(Ordering::Relaxed);
    assert!(blocked_at < MESSAGES, "the sender was never slowed");
    assert!(!sender.is_finished());
    // Bounded: the link queue (plus control headroom), the write window, 64 waiting sends.
    assert!(s.core.queued_bytes <= c.link_queue_bytes + 16 * 1024, "core queue {} bytes", s.core.queued_bytes);
    assert!(s.adapter.write_buffered_peak <= 64 * 1024, "write buffer peaked at {}", s.adapter.write_buffered_peak);
    assert_eq!(s.core.neighbors, 1, "the stuck peer must still be a neighbor while the sender waits");

    // The peer goes away: the link closes, the budget frees, the sender finishes.
    drop(stuck);
    tokio::time::timeout(PATIENCE, sender).await.expect("sender resumed after the link closed").unwrap();
    assert_eq!(sent.load(Ordering::Relaxed), MESSAGES);
    node.close().await;
}

#[tokio::test]
async fn a_slow_receiver_gets_a_bounded_queue_and_counted_drops() {
    init_tracing();
    let a = PeerNode::builder().config(fast_config("slowapp")).listen(loopback()).open_alone().open().await.unwrap();
    let b = PeerNode::builder()
        .config(fast_config("slowapp"))
        .listen(loopback())
        .bootstrap([a.local_addr()])
        .channel_capacity(16)
        .deliver_timeout(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    let mut rx = b.channel("/feed").unwrap();
    let tx = a.channel("/feed").unwrap();
    wait_until("a and b are neighbors", PATIENCE, || async {
        a.neighbors().await.map(|n| n.len() == 1).unwrap_or(false)
    })
    .await;

    const MESSAGES: u32 = 2000;
    for seq in 0..MESSAGES {
        tx.send(seq.to_be_bytes().to_vec()).await.unwrap();
    }
    wait_until("b's core has delivered every message to the adapter", PATIENCE, || async {
        b.stats().await.map(|s| s.core.delivered == u64::from(MESSAGES)).unwrap_or(false)
    })
    .await;
    let s = b.stats().await.unwrap();
    assert_eq!(rx.queued(), 16, "the queue holds exactly its capacity");
    assert_eq!(s.adapter.channel_queued, 16);
    assert_eq!(rx.dropped(), u64::from(MESSAGES) - 16, "every other message is dropped and counted");
    assert_eq!(s.adapter.deliveries_dropped, rx.dropped());
    assert_eq!(s.adapter.delivered, 16);
    assert!(s.adapter.delivery_stalls >= 1, "the node first waited for the reader");
    // The queue kept the oldest messages, in order.
    for seq in 0..16u32 {
        let m = rx.try_recv().expect("queued message");
        assert_eq!(&m.payload[..], &seq.to_be_bytes());
    }
    // Once the reader has caught up, delivery resumes.
    tx.send(&b"after"[..]).await.unwrap();
    let m = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"after");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn small_messages_are_batched_into_few_writes() {
    init_tracing();
    let nodes = start_mesh("batching", 2, |_| {}).await;
    let tx = nodes[0].channel("/small").unwrap();
    let mut rx = nodes[1].channel("/small").unwrap();
    wait_until("the two nodes are neighbors", PATIENCE, || async {
        nodes[0].neighbors().await.map(|n| n.len() == 1).unwrap_or(false)
    })
    .await;
    let before = nodes[0].stats().await.unwrap().adapter.writes;
    const MESSAGES: usize = 5000;
    let payload = bytes::Bytes::from(vec![0u8; 1024]);
    let send = async {
        for _ in 0..MESSAGES {
            tx.send(payload.clone()).await.unwrap();
        }
    };
    let recv = async {
        for _ in 0..MESSAGES {
            tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
        }
    };
    tokio::join!(send, recv);
    let writes = nodes[0].stats().await.unwrap().adapter.writes - before;
    assert!(
        writes * 8 <= MESSAGES as u64,
        "{writes} write calls for {MESSAGES} messages: fewer than 8 messages per write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_traffic_is_slowed_to_a_slow_reader_instead_of_evicting_it() {
    init_tracing();
    // A chain A - B - C: every message from A reaches C through B.
    let shape = |min, ideal, max| {
        let mut c = fast_config("chain");
        c.refresh_interval = None;
        (c.min_neighbors, c.ideal_neighbors, c.max_neighbors) = (min, ideal, max);
        c
    };
    let patient = Duration::from_secs(10);
    let a = PeerNode::builder().config(shape(1, 1, 1)).listen(loopback()).open_alone().open().await.unwrap();
    let b = PeerNode::builder()
        .config(shape(1, 2, 2))
        .listen(loopback())
        .bootstrap([a.local_addr()])
        // As patient as the links allow: a wait must end within `idle_timeout` (5 s here).
        .forward_wait(Duration::from_secs(4))
        .open()
        .await
        .unwrap();
    let c = PeerNode::builder()
        .config(shape(1, 1, 1))
        .listen(loopback())
        .bootstrap([b.local_addr()])
        .channel_capacity(64)
        .deliver_timeout(patient)
        .open()
        .await
        .unwrap();
    let mut rx = c.channel("/chain").unwrap();
    let tx = a.channel("/chain").unwrap();
    wait_until("B has both neighbors", PATIENCE, || async {
        b.neighbors().await.map(|n| n.len() == 2).unwrap_or(false)
    })
    .await;

    // More than the kernel's socket buffers along the chain can hold, read slowly at C.
    const MESSAGES: u32 = 1500;
    let sender = tokio::spawn(async move {
        for seq in 0..MESSAGES {
            let mut payload = vec![0u8; 16 * 1024];
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            tx.send(payload).await.unwrap();
        }
        tx
    });
    for seq in 0..MESSAGES {
        let m = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("delivery in time").unwrap();
        assert_eq!(&m.payload[..4], &seq.to_be_bytes(), "in order, none missing");
        if seq % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let _tx = sender.await.unwrap();
    let (sa, sb, sc) = (a.stats().await.unwrap(), b.stats().await.unwrap(), c.stats().await.unwrap());
    assert_eq!(sb.core.closed_for(CloseReason::NodeTooSlow), 0, "the slow reader was evicted");
    assert!(sb.core.forward_pauses >= 1, "B never held back its reads");
    assert!(sa.adapter.sends_waited >= 1, "backpressure did not reach the sender");
    assert_eq!(sc.adapter.deliveries_dropped, 0);
    assert_eq!(rx.dropped(), 0);
}
