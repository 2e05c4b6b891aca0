//! Mistakes a user can make get a clear, typed error: oversized sends (nothing is sent), bad
//! mesh IDs and paths, no way to find the mesh, unreachable or wrong-mesh bootstrap addresses,
//! and using a closed node.

use std::time::Duration;

use peerchannel_core::UriError;
use peerchannel_tests::{fast_config, init_tracing, loopback, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{CloseReason, DialFailure, Error, PeerNode};

#[tokio::test]
async fn oversized_send_is_refused_and_sends_nothing() {
    init_tracing();
    let nodes = start_mesh("sizes", 2, |c| c.max_message_size = 16 * 1024).await;
    let tx = nodes[0].channel("/data").unwrap();
    let mut rx = nodes[1].channel("/data").unwrap();
    wait_until("the two nodes are neighbors", PATIENCE, || async {
        nodes[1].neighbors().await.map(|n| n.len() == 1).unwrap_or(false)
    })
    .await;

    let big = vec![7u8; 16 * 1024 + 1];
    match tx.send(big.clone()).await {
        Err(Error::MessageTooLarge { size, max }) => assert_eq!((size, max), (16 * 1024 + 1, 16 * 1024)),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    match tx.send_confirmed(big).await {
        Err(e @ Error::MessageTooLarge { .. }) => assert!(e.to_string().contains("exceeds")),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // The largest allowed message goes through, and it is the first thing the receiver sees.
    tx.send(vec![1u8; 16 * 1024]).await.unwrap();
    let m = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!(m.payload.len(), 16 * 1024);
    let s = nodes[0].stats().await.unwrap();
    assert_eq!(s.core.floods_sent, 1, "the oversized sends reached the core");
}

#[tokio::test]
async fn bad_names_and_missing_peers_are_reported_before_any_io() {
    init_tracing();
    match PeerNode::builder().mesh("soccer pals").open_alone().open().await {
        Err(Error::InvalidMeshId { source: UriError::BadMeshChar(' '), .. }) => {}
        other => panic!("expected InvalidMeshId, got {other:?}"),
    }
    match PeerNode::builder().uri("http://soccerpals/chat").open_alone().open().await {
        Err(Error::InvalidMeshId { source: UriError::WrongScheme, .. }) => {}
        other => panic!("expected InvalidMeshId(WrongScheme), got {other:?}"),
    }
    match PeerNode::builder().open_alone().open().await {
        Err(Error::MissingMesh) => {}
        other => panic!("expected MissingMesh, got {other:?}"),
    }
    // With no bootstrap list Auto mode would try LAN discovery; with it off, nothing is left.
    match PeerNode::builder().mesh("soccerpals").lan_discovery(false).open().await {
        Err(Error::NoPeers) => {}
        other => panic!("expected NoPeers, got {other:?}"),
    }
    let mut c = fast_config("soccerpals");
    c.min_neighbors = 5;
    match PeerNode::builder().config(c).open_alone().open().await {
        Err(Error::InvalidConfig(_)) => {}
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    let node = PeerNode::builder().mesh("soccerpals").listen(loopback()).open_alone().open().await.unwrap();
    match node.channel("chat") {
        Err(Error::InvalidPath { source: UriError::PathNotAbsolute, .. }) => {}
        other => panic!("expected InvalidPath, got {other:?}"),
    }
    node.close().await;
}

#[tokio::test]
async fn unreachable_bootstrap_fails_open_with_the_address() {
    init_tracing();
    // A port nobody listens on: bind, note the address, close.
    let dead = std::net::TcpListener::bind(loopback()).unwrap().local_addr().unwrap();
    let started = std::time::Instant::now();
    let r = PeerNode::builder().config(fast_config("lonely")).listen(loopback()).bootstrap([dead]).open().await;
    match r {
        Err(Error::Unreachable { addr, reason: DialFailure::Io(_) }) => assert_eq!(addr, dead),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "open took {:?} to fail", started.elapsed());
}

#[tokio::test]
async fn bootstrap_into_another_mesh_is_refused_with_the_reason() {
    init_tracing();
    let other = start_mesh("meshone", 1, |_| {}).await;
    let r = PeerNode::builder()
        .config(fast_config("meshtwo"))
        .listen(loopback())
        .bootstrap([other[0].local_addr()])
        .open()
        .await;
    match r {
        Err(e @ Error::Unreachable { reason: DialFailure::Handshake(CloseReason::WrongMesh), .. }) => {
            assert!(e.to_string().contains("another mesh"), "{e}");
        }
        other => panic!("expected a WrongMesh refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_node_refuses_sends() {
    init_tracing();
    let nodes = start_mesh("closing", 2, |_| {}).await;
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let mut ch = a.channel("/x").unwrap();
    let tx = ch.sender();
    a.close().await;
    assert!(matches!(tx.send("late").await, Err(Error::Closed)));
    assert!(matches!(tx.send_confirmed("late").await, Err(Error::Closed)));
    // The receive side ends instead of hanging.
    assert!(tokio::time::timeout(PATIENCE, ch.recv()).await.unwrap().is_none());
    b.close().await;
}
