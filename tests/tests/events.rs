//! The event stream reports what happened with its reason (NeighborUp, NeighborDown with
//! LeavingMesh when a peer closes gracefully, Offline, DialFailed), and channels and event
//! streams work as `Stream`s that end when the node goes away.

use std::future::poll_fn;
use std::pin::Pin;

use futures_core::Stream;
use peerchannel_tests::{fast_config, init_tracing, loopback, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{CloseReason, DialFailure, Event, EventStream, PeerNode};

async fn next_event(events: &mut EventStream, mut pred: impl FnMut(&Event) -> bool) -> Event {
    loop {
        let e = tokio::time::timeout(PATIENCE, events.recv()).await.expect("event in time").expect("stream open");
        if pred(&e) {
            return e;
        }
    }
}

#[tokio::test]
async fn neighbor_events_carry_their_reasons() {
    init_tracing();
    let a = PeerNode::builder().config(fast_config("events")).listen(loopback()).open_alone().open().await.unwrap();
    let mut events = a.events();
    let b = PeerNode::builder()
        .config(fast_config("events"))
        .listen(loopback())
        .bootstrap([a.local_addr()])
        .open()
        .await
        .unwrap();
    let up = next_event(&mut events, |e| matches!(e, Event::NeighborUp { .. })).await;
    assert!(matches!(up, Event::NeighborUp { node, .. } if node == b.id()));
    next_event(&mut events, |e| matches!(e, Event::Online)).await;

    let b_id = b.id();
    b.close().await;
    let down = next_event(&mut events, |e| matches!(e, Event::NeighborDown { .. })).await;
    match down {
        Event::NeighborDown { node, reason, by_peer, .. } => {
            assert_eq!(node, b_id);
            assert_eq!(reason, CloseReason::LeavingMesh);
            assert!(by_peer);
        }
        other => panic!("unexpected {other:?}"),
    }
    next_event(&mut events, |e| matches!(e, Event::Offline)).await;
    assert_eq!(events.dropped(), 0);
    a.close().await;
    // The stream ends after the node closes.
    assert!(tokio::time::timeout(PATIENCE, events.recv()).await.unwrap().is_none());
}

#[tokio::test]
async fn failed_dials_are_reported_as_events() {
    init_tracing();
    let dead = std::net::TcpListener::bind(loopback()).unwrap().local_addr().unwrap();
    let nodes = start_mesh("dials", 2, |_| {}).await;
    // A node that knows one live member and one dead address: it opens (through the live
    // one) and reports the dead one.
    let c = PeerNode::builder()
        .config(fast_config("dials"))
        .listen(loopback())
        .bootstrap([nodes[0].local_addr(), dead])
        .open_alone()
        .open()
        .await
        .unwrap();
    let mut events = c.events();
    wait_until("the dead bootstrap address was dialed and failed", PATIENCE, || async {
        c.stats().await.map(|s| s.core.dial_failures >= 1).unwrap_or(false)
    })
    .await;
    // Later attempts (the maintainer retries) are reported on the stream too.
    let e = next_event(&mut events, |e| matches!(e, Event::DialFailed { .. })).await;
    assert!(matches!(e, Event::DialFailed { addr, reason: DialFailure::Io(_) } if addr == dead), "{e:?}");
}

#[tokio::test]
async fn channels_are_streams_that_end_when_the_node_is_dropped() {
    init_tracing();
    let nodes = start_mesh("streams", 2, |_| {}).await;
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let mut rx = b.channel("/s").unwrap();
    a.channel("/s").unwrap().send("one").await.unwrap();
    let m = tokio::time::timeout(PATIENCE, poll_fn(|cx| Pin::new(&mut rx).poll_next(cx))).await.unwrap();
    assert_eq!(&m.unwrap().payload[..], b"one");
    // Dropping the node (no close) ends the stream rather than leaving it pending forever.
    drop(b);
    let end = tokio::time::timeout(PATIENCE, poll_fn(|cx| Pin::new(&mut rx).poll_next(cx))).await.unwrap();
    assert!(end.is_none());
    a.close().await;
}
