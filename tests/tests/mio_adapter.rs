//! What only the mio adapter has: nodes and the application's own sockets sharing one
//! user-owned `Poll` under separate token ranges, non-blocking `send` with `WouldBlock`,
//! write interest only while bytes wait, the cross-thread `Handle`, the token range as a
//! connection limit, a flood of inbound connections beyond the configured limit, an external
//! resolver answered by the loop, bounded channel queues for a slow application, and reads
//! paused upstream of a slow reader instead of evicting it.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use peerchannel_core::{ChannelPath, CloseReason, Config, Event, NodeId};
use peerchannel_mio::{Builder, Error, MioNode};
use peerchannel_tests::adapters::{start_mixed_mesh, MIO};
use peerchannel_tests::{fast_config, handshake_bytes, init_tracing, loopback, wait_until, PATIENCE};

/// Runs one poll round for `nodes`, offering every event to each node first; events no node
/// owns go to `own`.
fn round(poll: &mut Poll, events: &mut Events, nodes: &mut [&mut MioNode], own: &mut dyn FnMut(Token)) {
    let wait = nodes.iter().filter_map(|n| n.poll_timeout()).min().unwrap_or(Duration::from_millis(50));
    if let Err(e) = poll.poll(events, Some(wait.min(Duration::from_millis(50)))) {
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll failed: {e}");
    }
    for event in events.iter() {
        if !nodes.iter_mut().any(|n| n.handle_event(event)) {
            own(event.token());
        }
    }
    for n in nodes.iter_mut() {
        n.handle_timeout();
    }
}

/// Runs rounds until `done`; panics with `what` after the patience.
fn run_until(
    poll: &mut Poll,
    events: &mut Events,
    nodes: &mut [&mut MioNode],
    what: &str,
    mut done: impl FnMut(&mut [&mut MioNode]) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(nodes) {
        assert!(Instant::now() < deadline, "timed out after {PATIENCE:?} waiting for: {what}");
        round(poll, events, nodes, &mut |_| {});
    }
}

/// A node on loopback with configuration `config`, seed `seed` and the `count` poll tokens from
/// `base`: the test adds how it joins and its own options, then opens it.
fn node(config: &Config, seed: u64, base: usize, count: usize) -> Builder {
    MioNode::builder().config(config.clone()).seed(seed).listen(loopback()).tokens(base, count)
}

fn path(p: &str) -> ChannelPath {
    ChannelPath::new(p).unwrap_or_else(|e| panic!("bad path {p}: {e}"))
}

#[test]
fn two_nodes_and_the_applications_own_socket_share_one_poll_and_small_messages_are_batched() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    // The application's own listener, at a token outside both nodes' ranges.
    let mut mine = TcpListener::bind(loopback()).expect("bind");
    poll.registry().register(&mut mine, Token(0), Interest::READABLE).expect("register");
    let c = fast_config("onepoll");
    let mut a = node(&c, 11, 100, 16).open_alone().open(poll.registry()).expect("a opens");
    let mut b = node(&c, 22, 200, 16).bootstrap([a.local_addr()]).open(poll.registry()).expect("b opens");
    let chat = path("/chat");
    b.open_channel(&chat);

    let _client = StdStream::connect(mine.local_addr().expect("addr")).expect("connect to own listener");
    let mut own_events = 0;
    let deadline = Instant::now() + PATIENCE;
    while !(a.is_online() && b.is_online() && own_events > 0) {
        assert!(Instant::now() < deadline, "nodes did not meet, or the own listener saw nothing");
        round(&mut poll, &mut events, &mut [&mut a, &mut b], &mut |t| {
            assert_eq!(t, Token(0), "an event nobody owns");
            own_events += 1;
        });
    }
    assert!(mine.accept().is_ok(), "the application's own connection is there to accept");
    assert!(a.owns(Token(100)) && a.owns(Token(115)) && !a.owns(Token(116)) && !a.owns(Token(0)));

    // A burst of small sends without polling in between: they queue in the core and leave in
    // few vectored writes.
    const MESSAGES: u32 = 2000;
    let writes_before = a.stats().adapter.writes;
    let mut sent = 0u32;
    while sent < MESSAGES {
        match a.send(&chat, sent.to_be_bytes().repeat(64)) {
            Ok(_) => sent += 1,
            // The outbound budget is spent: let the loop write, then go on.
            Err(Error::WouldBlock) => round(&mut poll, &mut events, &mut [&mut a, &mut b], &mut |_| {}),
            Err(e) => panic!("send failed: {e}"),
        }
    }
    let mut next = 0u32;
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "b receives every message in order", |nodes| {
        while let Some(m) = nodes[1].try_recv(&chat) {
            assert_eq!(&m.payload[..4], &next.to_be_bytes(), "in order, none missing");
            next += 1;
        }
        next == MESSAGES
    });
    let s = a.stats();
    let writes = s.adapter.writes - writes_before;
    assert!(writes * 8 <= u64::from(MESSAGES), "{writes} writes for {MESSAGES} messages: fewer than 8 per write");
    assert!(s.adapter.write_buffered_peak <= 64 * 1024);
    assert_eq!(b.stats().adapter.deliveries_dropped, 0);
}

#[test]
fn a_neighbor_that_does_not_read_gets_would_block_and_write_interest_only_while_bytes_wait() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let mut c = fast_config("mionb");
    c.idle_timeout = Duration::from_secs(120);
    let mut a =
        MioNode::builder().config(c.clone()).seed(5).listen(loopback()).open_alone().open(poll.registry()).expect("a");
    // A raw peer with a small receive buffer: it completes the handshake, then does not read.
    let mut stuck = StdStream::connect(a.local_addr()).expect("connect");
    stuck.write_all(&handshake_bytes("mionb", 0x77)).expect("handshake");
    let stuck_id = NodeId::new(0x77).expect("non-zero");
    run_until(&mut poll, &mut events, &mut [&mut a], "the raw peer becomes a neighbor", |n| {
        n[0].neighbors().iter().any(|x| x.node == stuck_id)
    });
    let bulk = path("/bulk");
    let mut sent = 0usize;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match a.send(&bulk, vec![0u8; 1024]) {
            Ok(_) => sent += 1,
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("send failed: {e}"),
        }
        if sent % 64 == 0 {
            round(&mut poll, &mut events, &mut [&mut a], &mut |_| {});
        }
        assert!(Instant::now() < deadline, "send never returned WouldBlock ({sent} sent)");
    }
    // Let the adapter write what the socket takes: the rest waits, with write interest on.
    for _ in 0..20 {
        round(&mut poll, &mut events, &mut [&mut a], &mut |_| {});
    }
    let s = a.stats();
    assert!(s.adapter.sends_would_block >= 1);
    assert!(s.core.queued_bytes <= c.link_queue_bytes + 16 * 1024, "core queue {} bytes", s.core.queued_bytes);
    assert!(s.adapter.write_buffered_bytes > 0, "bytes wait ahead of the full socket");
    assert!(s.adapter.write_buffered_peak <= 64 * 1024);
    assert_eq!(s.adapter.interest_changes % 2, 1, "write interest is on while bytes wait ({s:?})");
    assert!(matches!(a.send(&bulk, vec![0u8; 1024]), Err(Error::WouldBlock)), "still backed up");

    // The peer reads everything: the queue drains, write interest goes off, sends resume.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        stuck.set_read_timeout(Some(PATIENCE)).expect("timeout");
        // At least the payload bytes sent (frames add headers); keepalives may follow.
        while total < sent * 1024 {
            match stuck.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        (total, stuck)
    });
    run_until(&mut poll, &mut events, &mut [&mut a], "the queue drains", |n| {
        let s = n[0].stats();
        s.core.queued_bytes == 0 && s.adapter.write_buffered_bytes == 0
    });
    let s = a.stats();
    assert_eq!(s.adapter.interest_changes % 2, 0, "write interest is off once nothing waits ({s:?})");
    assert!(s.adapter.interest_changes >= 2);
    assert!(a.send(&bulk, vec![0u8; 1024]).is_ok(), "sends resume once the budget frees");
    assert_eq!(a.stats().core.neighbors, 1, "the slow reader was kept, not evicted");
    let (read, _stuck) = reader.join().expect("reader");
    assert!(read >= sent * 1024, "the peer got {read} bytes for {sent} KiB sent");
}

#[test]
fn other_threads_send_through_the_handle_with_a_bounded_queue() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    let c = fast_config("miohandle");
    let mut a = node(&c, 7, 10, 16).open_alone().handle_capacity(8).open(poll.registry()).expect("a");
    let mut b = node(&c, 8, 40, 16).bootstrap([a.local_addr()]).open(poll.registry()).expect("b");
    let chat = path("/t");
    b.open_channel(&chat);
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "a and b are neighbors", |n| n[1].is_online());
    let handle = a.handle().expect("handle");
    assert!(matches!(handle.send("/t", vec![0u8; 70_000]), Err(Error::MessageTooLarge { .. })));
    assert!(matches!(handle.send("t", &b"x"[..]), Err(Error::InvalidPath { .. })));

    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 500;
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = handle.clone();
            std::thread::spawn(move || {
                let mut would_block = 0u32;
                for seq in 0..PER_THREAD {
                    let mut payload = vec![0u8; 512];
                    payload[..8].copy_from_slice(&[t.to_be_bytes(), seq.to_be_bytes()].concat());
                    loop {
                        match h.send("/t", payload.clone()) {
                            Ok(()) => break,
                            Err(Error::WouldBlock) => {
                                would_block += 1;
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Err(e) => panic!("handle send failed: {e}"),
                        }
                    }
                }
                would_block
            })
        })
        .collect();
    let mut next = vec![0u32; THREADS as usize];
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "b receives every thread's messages", |n| {
        while let Some(m) = n[1].try_recv(&chat) {
            let t = u32::from_be_bytes(m.payload[..4].try_into().unwrap_or([0xff; 4])) as usize;
            let seq = u32::from_be_bytes(m.payload[4..8].try_into().unwrap_or([0xff; 4]));
            assert!(t < next.len(), "unknown sender thread {t}");
            assert_eq!(seq, next[t], "thread {t}: in order, none missing, none twice");
            next[t] += 1;
        }
        next.iter().all(|&n| n == PER_THREAD)
    });
    let would_block: u32 = senders.into_iter().map(|s| s.join().expect("sender thread")).sum();
    assert!(would_block >= 1, "a queue of 8 commands never filled under 4 threads");
    assert_eq!(a.stats().adapter.commands, u64::from(THREADS * PER_THREAD));

    // Close through the handle too; b sees a graceful goodbye.
    handle.close().expect("close command");
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "a closes and b sees it leave", |n| {
        n[0].is_closed() && !n[1].is_online()
    });
    let left = b
        .events()
        .any(|e| matches!(e, Event::NeighborDown { reason: CloseReason::LeavingMesh, by_peer, .. } if by_peer));
    assert!(left, "b did not see a LeavingMesh disconnect");
    drop(a);
    assert!(matches!(handle.send("/t", &b"late"[..]), Err(Error::Closed)));
}

#[test]
fn the_token_range_limits_connections_and_run_until_drives_a_node() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(256);
    // Listener, waker, and three connection tokens.
    let mut a = node(&fast_config("miotokens"), 3, 500, 5).open_alone().open(poll.registry()).expect("a");
    let clients: Vec<StdStream> = (0..10).map(|_| StdStream::connect(a.local_addr()).expect("connect")).collect();
    let done = a.run_until(&mut poll, &mut events, PATIENCE, |n| n.stats().adapter.accepted == 10).expect("poll works");
    assert!(done, "the listener did not see 10 connections");
    let s = a.stats();
    assert_eq!(s.adapter.refused_no_token, 7, "{s:?}");
    assert_eq!(s.adapter.connections, 3);
    assert_eq!(s.core.accepted, 3);
    // The refused ones are closed at once.
    let closed = clients
        .into_iter()
        .filter_map(|mut c| {
            c.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
            let closed = match c.read(&mut [0u8; 64]) {
                Ok(0) => true,
                Ok(_) => false, // an admitted connection: the node's Hello
                Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            };
            closed.then_some(())
        })
        .count();
    assert_eq!(closed, 7, "the 7 refused connections, and only they, are closed");
    assert!(matches!(
        MioNode::builder().mesh("x").open_alone().tokens(0, 2).open(poll.registry()),
        Err(Error::TokenRange { count: 2 })
    ));
    assert!(matches!(MioNode::builder().mesh("x").open(poll.registry()), Err(Error::NoPeers)));
    assert!(matches!(
        MioNode::builder().mesh("bad mesh").open_alone().open(poll.registry()),
        Err(Error::InvalidMeshId { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_inbound_connections_beyond_the_limit_is_refused_and_neighbors_keep_being_served() {
    init_tracing();
    const LIMIT: usize = 4;
    const FLOOD: usize = 40;
    let nodes = start_mixed_mesh("mioflood", 3, MIO, |c| {
        c.max_inbound_handshakes = LIMIT;
        c.max_handshakes_per_ip = LIMIT;
        // Silent connections hold their handshake slots for the whole test.
        c.connect_timeout = Duration::from_secs(60);
        c.refresh_interval = None;
    })
    .await;
    let target = &nodes[0];
    wait_until("the target has both neighbors", PATIENCE, || async { target.neighbors().await.len() == 2 }).await;
    let mut rx = Vec::new();
    for n in &nodes {
        rx.push(n.subscribe("/live").await);
    }
    let before = target.stats().await.expect("stats");

    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        flood.push(tokio::net::TcpStream::connect(target.addr()).await.expect("connect"));
    }
    wait_until("the target took every connection off its listener", PATIENCE, || async {
        target.stats().await.is_some_and(|s| s.accepted >= before.accepted + FLOOD as u64)
    })
    .await;
    let s = target.stats().await.expect("stats");
    let refused = s.core.accept_refused - before.core.accept_refused;
    assert!(refused >= (FLOOD - LIMIT) as u64, "only {refused} of the excess were refused");
    assert!(s.core.accepted - before.core.accepted <= LIMIT as u64, "more handshakes than the limit");
    assert!(s.connections <= 2 + LIMIT, "{} connections held", s.connections);
    // The refused connections are closed at once; the admitted ones wait in their handshake.
    let mut closed = 0;
    for c in &mut flood {
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(200), async {
            loop {
                match tokio::io::AsyncReadExt::read(c, &mut buf).await {
                    Ok(0) => return Ok(0),
                    Ok(_) => continue, // the node's Hello to an admitted connection
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        {
            closed += 1;
        }
    }
    assert!(closed >= FLOOD - LIMIT, "{closed} closed: every refused connection must be closed at once");
    assert!(closed < FLOOD, "no connection was admitted up to the limit");

    // Under the flood, the target keeps serving its neighbors both ways.
    for (i, n) in nodes.iter().enumerate() {
        n.send("/live", format!("from {i}")).await.expect("send");
    }
    for (i, ch) in rx.iter_mut().enumerate() {
        for _ in 0..2 {
            let m = ch.expect(&format!("node {i} receives under the flood")).await;
            assert_ne!(m.origin, nodes[i].id());
        }
    }
    assert_eq!(target.neighbors().await.len(), 2, "the flood cost the target a neighbor");
    drop(flood);
    for n in nodes {
        n.close().await;
    }
}

#[test]
fn an_external_resolver_answers_the_cores_requests() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(256);
    let c = fast_config("mioresolve");
    let mut a = node(&c, 31, 10, 8).open_alone().open(poll.registry()).expect("a");
    // No bootstrap list: b asks its resolver, which this loop answers with a's address.
    let mut b = node(&c, 32, 20, 8).external_resolver().open(poll.registry()).expect("b opens with only a resolver");
    let a_addr = a.local_addr();
    let mut asked = 0;
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "b joins through the resolver", |n| {
        let requests: Vec<_> = n[1].resolve_requests().collect();
        for r in requests {
            assert_eq!(r.mesh.as_str(), "mioresolve");
            asked += 1;
            n[1].resolved(r.id, Some(vec![a_addr]));
        }
        n[1].is_online()
    });
    assert!(asked >= 1, "the core never asked");
    assert_eq!(b.stats().core.resolves, asked, "every request was carried");
}

#[test]
fn a_slow_application_gets_a_bounded_channel_queue_and_counted_drops() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(256);
    let c = fast_config("mioslowapp");
    let mut a = node(&c, 41, 10, 8).open_alone().open(poll.registry()).expect("a");
    let mut b = node(&c, 42, 20, 8)
        .bootstrap([a.local_addr()])
        .channel_capacity(16)
        .deliver_timeout(Duration::from_millis(50))
        .open(poll.registry())
        .expect("b");
    let feed = path("/feed");
    b.open_channel(&feed);
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "a and b are neighbors", |n| n[0].is_online());
    const MESSAGES: u32 = 500;
    for seq in 0..MESSAGES {
        while let Err(e) = a.send(&feed, seq.to_be_bytes().to_vec()) {
            assert!(matches!(e, Error::WouldBlock), "send failed: {e}");
            round(&mut poll, &mut events, &mut [&mut a, &mut b], &mut |_| {});
        }
    }
    // b's application never reads meanwhile.
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "b's core delivered everything", |n| {
        n[1].stats().core.delivered == u64::from(MESSAGES) && n[1].stats().adapter.channel_queued == 16
    });
    let s = b.stats();
    assert_eq!(s.adapter.delivered, 16, "the queue holds exactly its capacity");
    assert_eq!(s.adapter.deliveries_dropped, u64::from(MESSAGES) - 16, "every other message is dropped, counted");
    assert!(s.adapter.delivery_stalls >= 1, "the node first paused reading for the application");
    let mut ch = b.channel("/feed").expect("path");
    assert_eq!((ch.queued(), ch.dropped()), (16, u64::from(MESSAGES) - 16));
    for seq in 0..16u32 {
        let m = ch.try_recv().expect("queued message");
        assert_eq!(&m.payload[..], &seq.to_be_bytes(), "the oldest are kept, in order");
    }
    assert!(ch.try_recv().is_none());
    // Once the application has caught up, delivery resumes.
    a.send(&feed, &b"after"[..]).expect("send");
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b], "a later message arrives", |n| {
        n[1].try_recv(&feed).is_some_and(|m| &m.payload[..] == b"after")
    });
}

#[test]
fn forwarded_traffic_to_a_slow_reader_pauses_reads_upstream_instead_of_evicting_it() {
    init_tracing();
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(1024);
    // A chain A - B - C: everything from A reaches C through B.
    let shape = |min, ideal, max| {
        let mut c = fast_config("miochain");
        c.refresh_interval = None;
        (c.min_neighbors, c.ideal_neighbors, c.max_neighbors) = (min, ideal, max);
        c
    };
    let patient = Duration::from_secs(10);
    let mut a = node(&shape(1, 1, 1), 51, 10, 8).open_alone().open(poll.registry()).expect("a opens");
    let mut b = node(&shape(1, 2, 2), 52, 20, 8)
        .bootstrap([a.local_addr()])
        // As patient as the links allow: a wait must end within `idle_timeout` (5 s here).
        .forward_wait(Duration::from_secs(4))
        .open(poll.registry())
        .expect("b opens");
    let mut c = node(&shape(1, 1, 1), 53, 30, 8)
        .bootstrap([b.local_addr()])
        .channel_capacity(64)
        .deliver_timeout(patient)
        .open(poll.registry())
        .expect("c opens");
    let chain = path("/chain");
    c.open_channel(&chain);
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b, &mut c], "B has both neighbors", |n| {
        n[1].neighbors().len() == 2
    });
    const MESSAGES: u32 = 1500;
    let (mut sent, mut next) = (0u32, 0u32);
    run_until(&mut poll, &mut events, &mut [&mut a, &mut b, &mut c], "C receives everything in order", |n| {
        while sent < MESSAGES {
            let mut payload = vec![0u8; 16 * 1024];
            payload[..4].copy_from_slice(&sent.to_be_bytes());
            match n[0].send(&chain, payload) {
                Ok(_) => sent += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("send failed: {e}"),
            }
        }
        // C's application is slow: a few messages per round.
        for _ in 0..4 {
            let Some(m) = n[2].try_recv(&chain) else { break };
            assert_eq!(&m.payload[..4], &next.to_be_bytes(), "in order, none missing");
            next += 1;
        }
        next == MESSAGES
    });
    let (sa, sb, sc) = (a.stats(), b.stats(), c.stats());
    assert_eq!(sb.core.closed_for(CloseReason::NodeTooSlow), 0, "the slow reader was evicted");
    assert!(sb.core.forward_pauses >= 1, "B never held back its reads");
    assert!(sa.adapter.sends_would_block >= 1, "backpressure did not reach the sender");
    assert_eq!(sc.adapter.deliveries_dropped, 0);
    assert!(sc.adapter.delivery_stalls >= 1, "C never paused for its application");
}
