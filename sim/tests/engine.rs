//! The engine and network model through whole runs of real nodes: crash detection delays, byte
//! order under jitter and loss, uplink queueing, refused and hanging connects.

use std::time::Duration;

use bytes::Bytes;
use peerchannel_core::{CloseReason, DialFailure, Event};
use peerchannel_sim::scenario::{ChurnConfig, CrashMode, LatencyModel};
use peerchannel_sim::{Departure, Scenario, Simulation};

const LATENCY_MS: f64 = 10.0;

/// `n` nodes on a network with a fixed 10 ms latency and no jitter, so arrival times are exact.
fn quiet(n: usize) -> Scenario {
    let mut s = Scenario { nodes: n, duration_secs: 120.0, join_over_secs: 2.0, ..Scenario::default() };
    s.network.latency = LatencyModel::Constant { ms: LATENCY_MS };
    s.network.jitter_ms = 0.0;
    s.publish.rate_per_sec = 0.0;
    s
}

/// Crashes node `victim` at 40 s and returns, for each of its neighbors, when and why they saw
/// it go.
fn crash_and_watch(s: Scenario, victim: u32, how: Departure) -> (Vec<(f64, CloseReason, bool)>, usize) {
    let mut sim = Simulation::new(s).unwrap();
    sim.run_until(Duration::from_secs(40));
    let node = sim.node(victim).unwrap();
    let victim_id = node.id();
    let peers: Vec<u32> = node.neighbors().iter().filter_map(|nb| sim.peer_of(victim, nb.link)).collect();
    assert!(!peers.is_empty());
    sim.record_events();
    sim.depart_at(Duration::from_secs(40), victim, how);
    sim.run_until(Duration::from_secs(70));
    let mut seen = Vec::new();
    for (t, n, e) in sim.event_log() {
        if let Event::NeighborDown { node, reason, by_peer, .. } = e {
            if *node == victim_id && peers.contains(n) {
                seen.push((*t as f64 / 1e9, *reason, *by_peer));
            }
        }
    }
    (seen, peers.len())
}

#[test]
fn a_reset_crash_reaches_each_peer_after_the_detection_delay_plus_latency() {
    let mut s = quiet(12);
    s.crash.mode = CrashMode::Reset;
    s.crash.detection_delay_ms = 2000.0;
    let (seen, peers) = crash_and_watch(s, 5, Departure::Crash);
    assert_eq!(seen.len(), peers, "every neighbor must notice: {seen:?}");
    for (t, reason, by_peer) in seen {
        assert!((t - 42.010).abs() < 1e-6, "reset seen at {t} s, expected 40 s + 2 s + 10 ms");
        assert_eq!((reason, by_peer), (CloseReason::Faulted, true));
    }
}

#[test]
fn a_silent_crash_is_found_by_the_idle_timeout() {
    let s = quiet(12);
    let (seen, peers) = crash_and_watch(s, 5, Departure::Crash);
    assert_eq!(seen.len(), peers, "every neighbor must notice: {seen:?}");
    // The last thing heard from the victim is at most one keepalive interval (5 s) before the
    // crash; the idle timeout is 15 s after it.
    for (t, reason, by_peer) in seen {
        assert_eq!((reason, by_peer), (CloseReason::IdleTimeout, false));
        assert!((50.0..=55.1).contains(&t), "idle timeout at {t} s for a crash at 40 s");
    }
}

#[test]
fn a_graceful_leave_reaches_each_peer_after_one_latency() {
    let (seen, peers) = crash_and_watch(quiet(12), 5, Departure::Leave);
    assert_eq!(seen.len(), peers);
    for (t, reason, by_peer) in seen {
        assert!((t - 40.010).abs() < 1e-6, "leave seen at {t} s");
        assert_eq!((reason, by_peer), (CloseReason::LeavingMesh, true));
    }
}

/// With 40 ms of jitter and 5% loss, writes on a link would overtake each other if the model
/// did not keep byte order; the core would then see garbage and close links for
/// ProtocolViolation, and floods would be lost.
#[test]
fn links_keep_byte_order_under_jitter_and_loss() {
    let mut s = quiet(30);
    s.duration_secs = 90.0;
    s.network.latency = LatencyModel::Uniform { min_ms: 5.0, max_ms: 30.0 };
    s.network.jitter_ms = 40.0;
    s.network.loss = 0.05;
    s.publish.rate_per_sec = 4.0;
    s.publish.size = 32 * 1024;
    s.publish.start_secs = 20.0;
    let mut sim = Simulation::new(s).unwrap();
    let r = sim.run();
    sim.check_invariants().unwrap();
    assert!(r.delivery.scored >= 200);
    assert_eq!(r.delivery.reliability_min, 1.0);
    assert!(!r.traffic.neighbors_down.contains_key("ProtocolViolation"), "{:?}", r.traffic.neighbors_down);
    // Every first copy is one delivery: nothing delivered twice, nothing corrupted.
    let delivered: usize = r.messages.iter().map(|m| m.delivered).sum();
    assert_eq!(delivered, r.messages.len() * 29);
    // Loss is delay, not lost bytes (checked above: nothing corrupted, nothing missing). How
    // much delay reaches a delivery depends on the mesh: a copy held up by a retransmission is
    // usually overtaken by one on another path, so the delay itself is checked on one link, in
    // `network.rs::loss_adds_a_retransmission_delay`.
}

/// A 1 Mbit/s uplink needs 131 ms per copy of a 16 KiB flood; copies to several neighbors
/// queue behind each other, and each hop pays again.
#[test]
fn a_limited_uplink_queues_writes() {
    let mut s = quiet(20);
    s.duration_secs = 60.0;
    s.publish.rate_per_sec = 0.5;
    s.publish.size = 16 * 1024;
    s.publish.start_secs = 30.0;
    let free = Simulation::new(s.clone()).unwrap().run();
    s.network.uplink_mbps = 1.0;
    let mut sim = Simulation::new(s).unwrap();
    let slow = sim.run();
    sim.check_invariants().unwrap();
    assert_eq!(free.delivery.reliability_min, 1.0);
    assert_eq!(slow.delivery.reliability_min, 1.0);
    let per_copy_ms = (16.0 * 1024.0 + 64.0) * 8.0 / 1e6 * 1000.0 * 0.99;
    assert!(free.delivery.latency.max_ms < 100.0);
    assert!(slow.delivery.latency.p50_ms >= free.delivery.latency.p50_ms + per_copy_ms);
    for m in &slow.messages {
        let floor = f64::from(m.last_hop) * (per_copy_ms + LATENCY_MS);
        assert!(m.latency_max_ms >= floor, "{} hops in {} ms", m.last_hop, m.latency_max_ms);
    }
}

/// Crashed members linger in the resolver; dialing them is refused (reset mode: the host is up,
/// the process is not) or hangs until the connect timeout (silent mode: the host is gone).
#[test]
fn dials_to_dead_nodes_are_refused_or_hang_by_crash_mode() {
    for (mode, expect) in [
        (CrashMode::Reset, DialFailure::Io(std::io::ErrorKind::ConnectionRefused)),
        (CrashMode::Silent, DialFailure::Handshake(CloseReason::ConnectTimedOut)),
    ] {
        let mut s = quiet(40);
        s.duration_secs = 100.0;
        s.crash.mode = mode;
        s.churn =
            Some(ChurnConfig { replace_per_min: 0.5, start_secs: 20.0, graceful_fraction: 0.0, ..Default::default() });
        let mut sim = Simulation::new(s).unwrap();
        sim.record_events();
        sim.run();
        let failures: Vec<_> = sim
            .event_log()
            .iter()
            .filter_map(|(_, _, e)| match e {
                Event::DialFailed { reason, .. } => Some(*reason),
                _ => None,
            })
            .collect();
        assert!(failures.contains(&expect), "{mode:?}: no {expect:?} among {failures:?}");
    }
}

#[test]
fn a_flood_sent_by_hand_is_scored_like_a_publishers() {
    let mut sim = Simulation::new(quiet(15)).unwrap();
    sim.run_until(Duration::from_secs(30));
    assert!(sim.send_from(3, Bytes::from_static(b"hello")).is_some());
    sim.run_until(Duration::from_secs(60));
    let r = sim.report();
    assert_eq!(r.messages.len(), 1);
    assert_eq!((r.messages[0].eligible, r.messages[0].delivered), (14, 14));
}

/// A flood is queued to every neighbor as two chunks (head, then body); the simulator passes
/// them on as they are, and the receivers take the body without copying it. So the flood
/// crosses the mesh without a copy by any relay, and every node still gets it exactly once.
#[test]
fn a_relayed_flood_is_never_copied_and_still_arrives_everywhere_once() {
    let mut sim = Simulation::new(quiet(30)).unwrap();
    sim.run_until(Duration::from_secs(30));
    let copied = |sim: &Simulation| -> u64 {
        sim.live_nodes().iter().filter_map(|i| sim.node(*i)).map(|n| n.stats().reassembly_copied_bytes).sum()
    };
    let ((joined, chunked), copied_before) = (sim.joined_and_chunked_writes(), copied(&sim));
    let (kinds_before, chunked_at_30) = (sim.event_kinds(), chunked);
    assert!(sim.send_from(3, Bytes::from(vec![7u8; 900])).is_some());
    // A 30-node mesh with 10 ms links: the flood is everywhere well within a second.
    sim.run_until(Duration::from_secs(31));
    let (joined, chunked) = (sim.joined_and_chunked_writes().0 - joined, sim.joined_and_chunked_writes().1 - chunked);
    let copied = copied(&sim) - copied_before;
    sim.run_until(Duration::from_secs(60));
    let r = sim.report();
    assert_eq!((r.messages[0].eligible, r.messages[0].delivered), (29, 29));
    // Every write of two chunks (the flood's copies, and now and then two control frames pulled
    // together) arrived as one event of that kind, and nothing else did.
    let kinds = sim.event_kinds().since(&kinds_before);
    let chunked_by_60 = sim.joined_and_chunked_writes().1 - chunked_at_30;
    assert_eq!(kinds.two_buffer_writes, chunked_by_60, "{kinds:?}");
    assert!(kinds.one_buffer_writes > 0 && kinds.timers > 0, "{kinds:?}");
    // Each of the 30 nodes sends the flood on (to one neighbor at least, three or four
    // mostly), every time as its two chunks.
    assert_eq!(joined, 0, "{joined} writes joined into a new buffer");
    assert!(chunked >= 30, "{chunked} writes of two chunks");
    // Only the origin's neighbors, which get its whole header as the first chunk, reassemble
    // the flood (a copy each); a relay's 6-byte head is all any other node copies.
    let origin_neighbors = sim.node(3).unwrap().neighbor_count() as u64;
    assert!(copied <= origin_neighbors * 1000 + 30 * 6, "{copied} bytes copied in reassembly");
}

/// The command line stops a run at the first publish to time the rest apart (the rate under
/// traffic): stopping there, or anywhere, must not change the run.
#[test]
fn a_run_stopped_at_the_first_publish_and_resumed_is_the_same_run() {
    let scenario = || {
        let mut s = quiet(40);
        s.duration_secs = 50.0;
        s.publish.rate_per_sec = 2.0;
        s.publish.start_secs = 20.0;
        s
    };
    let whole = Simulation::new(scenario()).unwrap().run();
    let mut sim = Simulation::new(scenario()).unwrap();
    sim.run_until(Duration::from_secs(20));
    let (events_before, kinds_before) = (sim.events(), sim.event_kinds());
    let resumed = sim.run();
    assert!(events_before > 0 && events_before < resumed.events);
    // The count by kind goes on across the stop: the resumed run counts what the whole one did.
    // (`other` is derived from the total, so the kinds add up by construction; the writes are
    // checked against the simulator's own write count in the test above, the timers here
    // against the stale entries, which are counted apart and must be among them.)
    assert_eq!(resumed.event_kinds, whole.event_kinds);
    assert!(kinds_before.timers > 0 && kinds_before.timers < resumed.event_kinds.timers, "{kinds_before:?}");
    assert!(resumed.stale_timer_events <= resumed.event_kinds.timers, "stale timer entries are timer events");
    assert!(!whole.messages.is_empty(), "nothing was published");
    assert_eq!(resumed.events, whole.events);
    assert_eq!((resumed.trace_hash, resumed.delivery_hash), (whole.trace_hash, whole.delivery_hash));
}

/// A restart brings a new node (new seed, new NodeId) up on the departed node's host and
/// address.
#[test]
fn restarts_reuse_the_address_with_a_new_node_id() {
    let mut s = quiet(30);
    s.duration_secs = 90.0;
    s.churn = Some(ChurnConfig {
        replace_per_min: 0.5,
        start_secs: 20.0,
        replacement: peerchannel_sim::scenario::Replacement::Restart,
        restart_delay_secs: 1.0,
        ..Default::default()
    });
    let mut sim = Simulation::new(s).unwrap();
    sim.run_until(Duration::from_secs(3)); // all 30 have started (they join over 2 s)
    let first: Vec<_> = sim.live_nodes();
    assert_eq!(first.len(), 30);
    let initial: std::collections::BTreeMap<_, _> =
        first.iter().map(|i| (sim.node(*i).unwrap().config().listen_addrs[0], sim.node(*i).unwrap().id())).collect();
    let r = sim.run();
    assert!(r.nodes_created >= 45, "{} nodes created", r.nodes_created);
    let mut restarted = 0;
    let mut ids = std::collections::BTreeSet::new();
    for i in sim.live_nodes() {
        let node = sim.node(i).unwrap();
        let addr = node.config().listen_addrs[0];
        let old = initial.get(&addr).expect("a restart never uses a new host");
        assert!(ids.insert(node.id()), "NodeIds are unique");
        if *old != node.id() {
            restarted += 1;
        }
    }
    assert!(restarted >= 10, "only {restarted} restarted nodes are alive");
    assert_eq!(sim.live_nodes().len(), 30);
}
