//! Misbehaving raw TCP peers — one sending garbage, one connecting and saying nothing, one
//! completing the handshake and then never reading — are each disconnected with the right
//! reason, while the mesh keeps full delivery and the node's queues stay within their bounds.

use std::time::Duration;

use peerchannel_tests::{closed_by_node, handshake_bytes, init_tracing, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{CloseReason, NodeId, PeerNode};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

async fn closed_for(node: &PeerNode, reason: CloseReason) -> u64 {
    node.stats().await.map(|s| s.core.closed_for(reason)).unwrap_or(0)
}

#[tokio::test]
async fn garbage_and_silent_peers_are_cut_off_and_the_node_keeps_serving() {
    init_tracing();
    let nodes = start_mesh("hostile", 3, |c| c.connect_timeout = Duration::from_secs(2)).await;
    let target = &nodes[0];
    let mut rx: Vec<_> = nodes.iter().map(|n| n.channel("/data").unwrap()).collect();

    // An HTTP request: its first four bytes read as a 1.2 GB frame length.
    let mut http = TcpStream::connect(target.local_addr()).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // A well-framed frame of an unknown type.
    let mut junk = TcpStream::connect(target.local_addr()).await.unwrap();
    junk.write_all(&[0, 0, 0, 5, 0x99, 1, 2, 3, 4]).await.unwrap();
    // A peer that connects and says nothing.
    let mut silent = TcpStream::connect(target.local_addr()).await.unwrap();

    assert!(closed_by_node(&mut http).await, "the HTTP peer was not disconnected");
    assert!(closed_by_node(&mut junk).await, "the junk-frame peer was not disconnected");
    assert!(closed_by_node(&mut silent).await, "the silent peer was not disconnected");
    assert_eq!(closed_for(target, CloseReason::ProtocolViolation).await, 2);
    assert_eq!(closed_for(target, CloseReason::ConnectTimedOut).await, 1);

    // The node still serves its mesh: messages from every node reach the others.
    for (i, ch) in rx.iter().enumerate() {
        ch.send(format!("from {i}")).await.unwrap();
    }
    for (i, ch) in rx.iter_mut().enumerate() {
        for _ in 0..2 {
            let m = tokio::time::timeout(PATIENCE, ch.recv()).await.expect("delivery in time").unwrap();
            assert_ne!(m.origin, nodes[i].id());
        }
    }
    assert_eq!(target.stats().await.unwrap().core.neighbors, 2);
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_evicted_and_memory_stays_bounded() {
    init_tracing();
    // A long idle timeout so that only the slow-neighbor rule can remove the stuck peer.
    let nodes = start_mesh("stuck", 3, |c| {
        c.idle_timeout = Duration::from_secs(120);
        c.max_message_size = 32 * 1024;
    })
    .await;
    let (target, sender) = (&nodes[0], &nodes[1]);
    let mut far = nodes[2].channel("/bulk").unwrap();
    let _target_rx = target.channel("/bulk").unwrap();

    // The stuck peer: a tiny receive buffer, a correct handshake, then it never reads.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock.connect(target.local_addr()).await.unwrap();
    stuck.write_all(&handshake_bytes("stuck", 0xBAD)).await.unwrap();
    let stuck_id = NodeId::new(0xBAD).unwrap();
    wait_until("the stuck peer becomes a neighbor of the target", PATIENCE, || async {
        target.neighbors().await.map(|n| n.iter().any(|x| x.node == stuck_id)).unwrap_or(false)
    })
    .await;

    // Enough forwarded traffic to overflow the kernel's buffers and the link's queue.
    const MESSAGES: usize = 600;
    let tx = sender.channel("/bulk").unwrap();
    let send_all = tokio::spawn(async move {
        for seq in 0..MESSAGES as u32 {
            let mut payload = vec![0u8; 32 * 1024];
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            tx.send(payload).await.unwrap();
        }
        tx
    });
    let mut next = 0u32;
    while (next as usize) < MESSAGES {
        let m = tokio::time::timeout(PATIENCE, far.recv()).await.expect("delivery in time").unwrap();
        assert_eq!(u32::from_be_bytes(m.payload[..4].try_into().unwrap()), next, "in order, none missing");
        next += 1;
    }
    let _tx = send_all.await.unwrap();
    wait_until("the target evicts the stuck peer as too slow", PATIENCE, || async {
        closed_for(target, CloseReason::NodeTooSlow).await >= 1
    })
    .await;
    let s = target.stats().await.unwrap();
    assert!(!target.neighbors().await.unwrap().iter().any(|n| n.node == stuck_id));
    // The adapter never took more than its write window ahead of a socket.
    assert!(s.adapter.write_buffered_peak <= 64 * 1024, "write buffer peaked at {}", s.adapter.write_buffered_peak);
    assert!(s.core.queued_bytes <= 2 * (256 + 16) * 1024, "core queues hold {} bytes", s.core.queued_bytes);
    drop(stuck);
}
