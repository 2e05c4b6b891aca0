//! The shared adapter suite: every scenario runs against the tokio adapter, the mio adapter,
//! and mixed meshes (half mio, half tokio). Scenarios: mesh formation with exactly-once
//! delivery, abrupt and graceful departures, hostile peers, size limits, meshes that must not
//! mix, and backpressure from a neighbor that does not read.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use peerchannel_core::{CloseReason, NodeId};
use peerchannel_tests::adapters::{
    is_one_test_mesh, kind_of, start_mixed_mesh, wait_settled, Kind, SendFailure, TestNode, MIO, MIXED, TOKIO,
};
use peerchannel_tests::{fast_config, handshake_bytes, init_tracing, wait_until, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Runs each named scenario as a test for tokio, mio and mixed meshes.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod tokio_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::TOKIO).await })*
        }
        mod mio_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::MIO).await })*
        }
        mod mixed_mesh {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::MIXED).await })*
        }
    };
}

suite!(
    mesh_forms_and_floods_arrive_exactly_once,
    survivors_reform_after_crashes_and_graceful_leaves,
    hostile_peers_are_cut_off_and_the_node_keeps_serving,
    oversized_sends_are_refused_and_the_largest_passes,
    meshes_never_mix,
    a_neighbor_that_does_not_read_slows_the_sender_within_bounds,
);

const SENDERS: usize = 3;
const PER_SENDER: u32 = 150;

/// Sends `PER_SENDER` 1 KiB messages from each of `SENDERS` nodes concurrently.
async fn burst(nodes: &[TestNode], path: &str) -> Vec<usize> {
    let senders: Vec<usize> = (0..SENDERS).map(|i| i * nodes.len() / SENDERS).collect();
    let mut tasks = Vec::new();
    for &s in &senders {
        let tx = nodes[s].sender(path);
        tasks.push(tokio::spawn(async move {
            for seq in 0..PER_SENDER {
                let mut payload = vec![0u8; 1024];
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                tx.send(payload).await.expect("send");
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender task");
    }
    senders
}

async fn mesh_forms_and_floods_arrive_exactly_once(kinds: &[Kind]) {
    init_tracing();
    let nodes = start_mixed_mesh("suitemesh", 10, kinds, |c| c.refresh_interval = None).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until("one mesh with every degree within [2, 7]", PATIENCE, || is_one_test_mesh(&refs, 2, 7)).await;
    // Warm-up so the maintainer prunes to shape, then measure on a settled mesh.
    burst(&nodes, "/warmup").await;
    wait_settled(&refs, Duration::from_millis(1500)).await;

    let mut rx = Vec::new();
    for n in &nodes {
        rx.push(n.subscribe("/chat").await);
    }
    let senders = burst(&nodes, "/chat").await;
    let sender_ids: Vec<NodeId> = senders.iter().map(|&s| nodes[s].id()).collect();
    for (i, ch) in rx.iter_mut().enumerate() {
        let own = usize::from(senders.contains(&i));
        let want = (SENDERS - own) * PER_SENDER as usize;
        let mut got: BTreeMap<(NodeId, u32), u32> = BTreeMap::new();
        for _ in 0..want {
            let m = ch.expect(&format!("node {i} ({:?}) receives", nodes[i].kind())).await;
            let seq = u32::from_be_bytes(m.payload[..4].try_into().unwrap_or([0xff; 4]));
            *got.entry((m.origin, seq)).or_insert(0) += 1;
        }
        assert_eq!(got.len(), want, "node {i} got duplicates instead of some messages");
        assert!(got.keys().all(|(o, s)| sender_ids.contains(o) && *o != nodes[i].id() && *s < PER_SENDER));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, ch) in rx.iter_mut().enumerate() {
        assert!(ch.try_recv().is_none(), "node {i} got an extra message");
    }
    for n in nodes {
        n.close().await;
    }
}

async fn survivors_reform_after_crashes_and_graceful_leaves(kinds: &[Kind]) {
    init_tracing();
    let mut nodes: Vec<Option<TestNode>> =
        start_mixed_mesh("suitechurn", 12, kinds, |_| {}).await.into_iter().map(Some).collect();
    {
        let refs: Vec<&TestNode> = nodes.iter().flatten().collect();
        wait_until("the initial mesh forms", PATIENCE, || is_one_test_mesh(&refs, 2, 7)).await;
    }
    // Crash 3 (dropped: sockets close at once), close 2 gracefully.
    let started = std::time::Instant::now();
    for i in [1, 5, 9] {
        drop(nodes[i].take());
    }
    assert!(started.elapsed() < Duration::from_secs(1), "crashing took {:?}", started.elapsed());
    for i in [3, 7] {
        if let Some(n) = nodes[i].take() {
            tokio::time::timeout(PATIENCE, n.close()).await.expect("graceful close finished");
        }
    }
    let survivors: Vec<&TestNode> = nodes.iter().flatten().collect();
    assert_eq!(survivors.len(), 7);
    wait_until("the survivors re-form one mesh", PATIENCE, || is_one_test_mesh(&survivors, 2, 7)).await;
    let (mut leaving, mut crashed) = (0, 0);
    for n in &survivors {
        let s = n.stats().await.expect("stats");
        leaving += s.core.neighbors_down_for(CloseReason::LeavingMesh);
        crashed += s.core.neighbors_down_for(CloseReason::Closed) + s.core.neighbors_down_for(CloseReason::Faulted);
    }
    assert!(leaving >= 1, "no survivor saw a LeavingMesh disconnect");
    assert!(crashed >= 1, "no survivor saw a crashed neighbor's connection end");

    let mut rx = Vec::new();
    for n in &survivors {
        rx.push(n.subscribe("/after").await);
    }
    for (k, n) in survivors.iter().enumerate().take(2) {
        for seq in 0..40u32 {
            n.send("/after", format!("{k}:{seq}")).await.expect("send");
        }
    }
    for (i, ch) in rx.iter_mut().enumerate() {
        let want = if i < 2 { 40 } else { 80 };
        let mut got = BTreeSet::new();
        while got.len() < want {
            let m = ch.expect(&format!("survivor {i} ({:?}) receives", survivors[i].kind())).await;
            assert!(got.insert(m.payload.clone()), "survivor {i} got {:?} twice", m.payload);
        }
    }
    drop(rx);
    for n in nodes.into_iter().flatten() {
        n.close().await;
    }
}

/// Reads until the node closes the connection; true if it did within the patience.
async fn closed_by_node(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    ended.is_ok()
}

async fn hostile_peers_are_cut_off_and_the_node_keeps_serving(kinds: &[Kind]) {
    init_tracing();
    let nodes = start_mixed_mesh("suitehostile", 3, kinds, |c| c.connect_timeout = Duration::from_secs(2)).await;
    let target = &nodes[0];
    let mut rx = Vec::new();
    for n in &nodes {
        rx.push(n.subscribe("/data").await);
    }
    let mut http = TcpStream::connect(target.addr()).await.expect("connect");
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut junk = TcpStream::connect(target.addr()).await.expect("connect");
    junk.write_all(&[0, 0, 0, 5, 0x99, 1, 2, 3, 4]).await.expect("write");
    let mut silent = TcpStream::connect(target.addr()).await.expect("connect");
    assert!(closed_by_node(&mut http).await, "the HTTP peer was not disconnected");
    assert!(closed_by_node(&mut junk).await, "the junk-frame peer was not disconnected");
    assert!(closed_by_node(&mut silent).await, "the silent peer was not disconnected");
    let s = target.stats().await.expect("stats");
    assert_eq!(s.core.closed_for(CloseReason::ProtocolViolation), 2);
    assert_eq!(s.core.closed_for(CloseReason::ConnectTimedOut), 1);

    for (i, n) in nodes.iter().enumerate() {
        n.send("/data", format!("from {i}")).await.expect("send");
    }
    for (i, ch) in rx.iter_mut().enumerate() {
        for _ in 0..2 {
            let m = ch.expect(&format!("node {i} receives")).await;
            assert_ne!(m.origin, nodes[i].id());
        }
    }
    assert_eq!(target.neighbors().await.len(), 2);
}

async fn oversized_sends_are_refused_and_the_largest_passes(kinds: &[Kind]) {
    init_tracing();
    // Two nodes, one of each kind in a mixed run: the sender is node 1.
    let nodes = start_mixed_mesh("suitesizes", 2, kinds, |c| c.max_message_size = 16 * 1024).await;
    let mut rx = nodes[0].subscribe("/data").await;
    wait_until("the two nodes are neighbors", PATIENCE, || async { nodes[1].neighbors().await.len() == 1 }).await;
    match nodes[1].send("/data", vec![7u8; 16 * 1024 + 1]).await {
        Err(SendFailure::TooLarge { size, max }) => assert_eq!((size, max), (16 * 1024 + 1, 16 * 1024)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    nodes[1].send("/data", vec![1u8; 16 * 1024]).await.expect("the largest message is taken");
    let m = rx.expect("the largest message arrives").await;
    assert_eq!(m.payload.len(), 16 * 1024, "the oversized message must not arrive first");
    assert_eq!(nodes[1].stats().await.expect("stats").core.floods_sent, 1, "the oversized send reached the core");
}

async fn meshes_never_mix(kinds: &[Kind]) {
    init_tracing();
    let red = start_mixed_mesh("suitered", 3, kinds, |_| {}).await;
    // Blue's later nodes bootstrap from blue's first node and two red nodes.
    let mut blue = vec![TestNode::start(kind_of(kinds, 1), fast_config("suiteblue"), &[], true).await];
    for i in 0..2 {
        let boot = [blue[0].addr(), red[0].addr(), red[1].addr()];
        blue.push(TestNode::start(kind_of(kinds, i), fast_config("suiteblue"), &boot, false).await);
    }
    let (red_refs, blue_refs): (Vec<&TestNode>, Vec<&TestNode>) = (red.iter().collect(), blue.iter().collect());
    wait_until("red is one mesh of red nodes", PATIENCE, || is_one_test_mesh(&red_refs, 2, 7)).await;
    wait_until("blue is one mesh of blue nodes", PATIENCE, || is_one_test_mesh(&blue_refs, 2, 7)).await;
    let mut wrong = 0;
    for n in red.iter().chain(blue.iter()) {
        wrong += n.stats().await.expect("stats").core.closed_for(CloseReason::WrongMesh);
    }
    assert!(wrong >= 1, "no Connect to the wrong mesh was refused");

    let mut red_rx = Vec::new();
    let mut blue_rx = Vec::new();
    for n in &red {
        red_rx.push(n.subscribe("/chat").await);
    }
    for n in &blue {
        blue_rx.push(n.subscribe("/chat").await);
    }
    for (color, nodes) in [("red", &red), ("blue", &blue)] {
        for n in nodes.iter() {
            n.send("/chat", format!("{color} {}", n.id())).await.expect("send");
        }
    }
    for (color, nodes, rxs) in [("red", &red, &mut red_rx), ("blue", &blue, &mut blue_rx)] {
        let members: BTreeSet<NodeId> = nodes.iter().map(|n| n.id()).collect();
        for ch in rxs.iter_mut() {
            for _ in 0..2 {
                let m = ch.expect(&format!("a {color} node receives")).await;
                assert!(members.contains(&m.origin) && m.payload.starts_with(color.as_bytes()), "{color} got {m:?}");
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ch in red_rx.iter_mut().chain(blue_rx.iter_mut()) {
        assert!(ch.try_recv().is_none(), "a message crossed meshes");
    }
}

async fn a_neighbor_that_does_not_read_slows_the_sender_within_bounds(kinds: &[Kind]) {
    init_tracing();
    let mut c = fast_config("suitepressure");
    c.idle_timeout = Duration::from_secs(120);
    let node = TestNode::start(kind_of(kinds, 0), c.clone(), &[], true).await;
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("buffer size");
    let mut stuck = sock.connect(node.addr()).await.expect("connect");
    stuck.write_all(&handshake_bytes("suitepressure", 0x51)).await.expect("handshake");
    let stuck_id = NodeId::new(0x51).expect("non-zero");
    wait_until("the non-reading peer is a neighbor", PATIENCE, || async {
        node.neighbors().await.iter().any(|x| x.node == stuck_id)
    })
    .await;
    // Far more than the kernel buffers and the link queue hold.
    const MESSAGES: usize = 100_000;
    let tx = node.sender("/bulk");
    let sender = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            tx.send(vec![0u8; 1024]).await.expect("send");
        }
    });
    wait_until("the sender waits for the full link", PATIENCE, || async {
        node.stats().await.is_some_and(|s| s.sends_waited >= 1)
    })
    .await;
    assert!(!sender.is_finished(), "the sender was never slowed");
    let s = node.stats().await.expect("stats");
    assert!(s.core.queued_bytes <= c.link_queue_bytes + 16 * 1024, "core queue {} bytes", s.core.queued_bytes);
    assert!(s.write_buffered_peak <= 64 * 1024, "write buffer peaked at {}", s.write_buffered_peak);
    assert_eq!(s.core.neighbors, 1, "the stuck peer must still be a neighbor while the sender waits");
    // The peer goes away: the budget frees and the sender finishes.
    drop(stuck);
    tokio::time::timeout(PATIENCE, sender).await.expect("the sender resumed").expect("sender task");
    node.close().await;
}
