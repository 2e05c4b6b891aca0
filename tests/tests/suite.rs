//! The shared adapter suite: every scenario runs against the tokio adapter, the mio adapter,
//! and mixed meshes (half mio, half tokio). Scenarios: mesh formation with exactly-once
//! delivery, abrupt and graceful departures, hostile peers, size limits, meshes that must not
//! mix, backpressure from a neighbor that does not read, and password meshes (TLS links set up
//! through each adapter's `.password(..)`): a wrong password and a missing one are kept out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use peerchannel_core::security::AuthFailure;
use peerchannel_core::{CloseReason, DialFailure, Event, NodeId};
use peerchannel_tests::adapters::{
    is_one_test_mesh, kind_of, start_mixed_mesh, start_mixed_mesh_with, wait_settled, Kind, Rx, SendFailure, Start,
    TestNode, MIO, MIXED, TOKIO,
};
use peerchannel_tests::{closed_by_node, fast_config, handshake_bytes, init_tracing, wait_until, PATIENCE};
use tokio::io::AsyncWriteExt;
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
    password_mesh_forms_and_floods_arrive_exactly_once,
    a_wrong_password_is_kept_out_and_the_mesh_delivers,
    a_node_without_the_password_is_refused_as_a_security_mismatch,
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

const PASSWORD: &str = "correct horse battery staple";

/// Each of `nodes` sends `per_node` messages on `path`; each receiver in `rx` (index-matched to
/// `nodes`) must get every message of every other node exactly once, and nothing more.
async fn all_deliver_exactly_once(nodes: &[&TestNode], rx: &mut [Rx], path: &str, per_node: u32) {
    for n in nodes {
        for seq in 0..per_node {
            n.send(path, format!("{}:{seq}", n.id())).await.expect("send");
        }
    }
    let want = (nodes.len() - 1) * per_node as usize;
    for (i, ch) in rx.iter_mut().enumerate() {
        let mut got = BTreeSet::new();
        for _ in 0..want {
            let m = ch.expect(&format!("node {i} ({:?}) receives", nodes[i].kind())).await;
            assert_ne!(m.origin, nodes[i].id(), "node {i} got its own message back");
            assert!(got.insert(m.payload.clone()), "node {i} got {:?} twice", m.payload);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, ch) in rx.iter_mut().enumerate() {
        assert!(ch.try_recv().is_none(), "node {i} got an extra message");
    }
}

fn is_auth_failure(e: &Event) -> bool {
    matches!(e, Event::AuthenticationFailed { .. })
}

async fn password_mesh_forms_and_floods_arrive_exactly_once(kinds: &[Kind]) {
    init_tracing();
    let nodes = start_mixed_mesh_with("suitepassword", 5, kinds, Some(PASSWORD), |_| {}).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until("one password mesh with every degree within [2, 4]", PATIENCE, || is_one_test_mesh(&refs, 2, 4)).await;
    let mut rx = Vec::new();
    for n in &nodes {
        rx.push(n.subscribe("/chat").await);
    }
    all_deliver_exactly_once(&refs, &mut rx, "/chat", 20).await;
    for (i, n) in nodes.iter().enumerate() {
        assert!(!n.events_seen().iter().any(is_auth_failure), "node {i} saw an authentication failure");
        assert_eq!(n.stats().await.expect("stats").core.auth_failures, 0, "node {i}");
    }
    for n in nodes {
        n.close().await;
    }
}

async fn a_wrong_password_is_kept_out_and_the_mesh_delivers(kinds: &[Kind]) {
    init_tracing();
    let good = start_mixed_mesh_with("suitewrongpw", 4, kinds, Some(PASSWORD), |_| {}).await;
    let boot: Vec<_> = good.iter().map(|n| n.addr()).collect();
    let wrong =
        TestNode::start_as(kind_of(kinds, 4), fast_config("suitewrongpw"), &boot, Start::Dial, Some("hunter2")).await;
    // The wrong node learns it was refused; the node it dialed learns why.
    wrong
        .expect_event("the wrong node is told it was refused", |e| {
            matches!(e, Event::AuthenticationFailed { failure: AuthFailure::PeerRejectedUs(_), .. })
        })
        .await;
    wait_until("a member reports the wrong password", PATIENCE, || async {
        good.iter().any(|n| {
            n.events_seen()
                .iter()
                .any(|e| matches!(e, Event::AuthenticationFailed { failure: AuthFailure::WrongPassword, .. }))
        })
    })
    .await;
    assert!(wrong.stats().await.expect("stats").core.auth_failures >= 1);
    assert!(wrong.events_seen().iter().all(|e| !matches!(e, Event::NeighborUp { .. } | Event::Online)));
    assert!(wrong.neighbors().await.is_empty(), "the wrong node became a neighbor");

    // The members are unaffected: one mesh of the four, every message delivered once.
    let refs: Vec<&TestNode> = good.iter().collect();
    wait_until("the members form one mesh without the wrong node", PATIENCE, || is_one_test_mesh(&refs, 2, 3)).await;
    let mut rx = Vec::new();
    for n in &good {
        rx.push(n.subscribe("/chat").await);
    }
    let mut outsider = wrong.subscribe("/chat").await;
    all_deliver_exactly_once(&refs, &mut rx, "/chat", 10).await;
    assert!(outsider.try_recv().is_none(), "a message reached the node with the wrong password");
    assert!(wrong.neighbors().await.is_empty(), "the wrong node became a neighbor");
    for n in &good {
        assert!(!n.events_seen().iter().any(|e| matches!(e, Event::NeighborUp { node, .. } if *node == wrong.id())));
    }

    // (`open` reporting the refusal as a typed error is in tests/security.rs.)
    drop(wrong);
    for n in good {
        n.close().await;
    }
}

async fn a_node_without_the_password_is_refused_as_a_security_mismatch(kinds: &[Kind]) {
    init_tracing();
    let secured = start_mixed_mesh_with("suitemismatch", 3, kinds, Some(PASSWORD), |_| {}).await;
    let boot: Vec<_> = secured.iter().map(|n| n.addr()).collect();
    let open = TestNode::start_as(kind_of(kinds, 3), fast_config("suitemismatch"), &boot, Start::Dial, None).await;
    open.expect_event("the unsecured node is refused as a mismatch", |e| {
        matches!(e, Event::DialFailed { reason: DialFailure::Handshake(CloseReason::SecurityMismatch), .. })
    })
    .await;
    wait_until("a member refuses the unsecured node as a mismatch", PATIENCE, || async {
        secured.iter().any(|n| {
            n.events_seen()
                .iter()
                .any(|e| matches!(e, Event::InboundRefused { reason: CloseReason::SecurityMismatch, .. }))
        })
    })
    .await;
    assert!(open.stats().await.expect("stats").core.handshakes_failed_for(CloseReason::SecurityMismatch) >= 1);
    assert!(open.neighbors().await.is_empty(), "the unsecured node became a neighbor");

    let refs: Vec<&TestNode> = secured.iter().collect();
    wait_until("the secured nodes form one mesh", PATIENCE, || is_one_test_mesh(&refs, 2, 2)).await;
    let mut rx = Vec::new();
    for n in &secured {
        rx.push(n.subscribe("/chat").await);
    }
    all_deliver_exactly_once(&refs, &mut rx, "/chat", 10).await;
    drop(open);
    for n in secured {
        n.close().await;
    }
}
