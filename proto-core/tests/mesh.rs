//! Whole-mesh behaviour of real nodes on the in-memory network.

mod support;

use std::time::Duration;

use peerchannel_core::CloseReason;
use support::Net;

fn converged(n: usize, seed: u64) -> Net {
    let mut net = Net::new(n, seed, |_| {});
    net.open_all(Duration::from_millis(20));
    net.run_for(Duration::from_secs(60));
    net
}

#[test]
fn fifty_nodes_converge_into_one_component_within_bounds() {
    let net = converged(50, 1);
    assert_eq!(net.components(), 1);
    for i in net.alive() {
        let n = net.node(i).neighbor_count();
        let cfg = net.node(i).config();
        assert!(n >= cfg.min_neighbors && n <= cfg.max_neighbors, "node {i} has {n} neighbors");
        net.node(i).check_invariants().unwrap();
    }
}

#[test]
fn a_flood_from_any_node_reaches_every_node_exactly_once() {
    let mut net = converged(50, 2);
    let mut ids = Vec::new();
    for origin in [0, 17, 33, 49] {
        ids.push((net.send(origin, format!("hello from {origin}").as_bytes()), origin));
    }
    net.run_for(Duration::from_secs(2));
    for (id, origin) in ids {
        let (got, most) = net.delivery_of(id, origin);
        assert_eq!(got, 49, "message from {origin} reached {got} of 49");
        assert_eq!(most, 1, "a node got a message more than once");
        assert!(!net.deliveries.contains_key(&(origin, id)), "origin got its own message back");
    }
}

#[test]
fn mesh_heals_after_forty_percent_crash() {
    let mut net = converged(50, 3);
    for i in (0..50).filter(|i| i % 5 < 2) {
        net.crash(i);
    }
    assert_eq!(net.alive().len(), 30);
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.components(), 1);
    for i in net.alive() {
        assert!(net.node(i).neighbor_count() >= 2, "node {i} below min");
    }
    let id = net.send(net.alive()[0], b"after the crash");
    net.run_for(Duration::from_secs(2));
    let (got, most) = net.delivery_of(id, net.alive()[0]);
    assert_eq!((got, most), (29, 1));
}

#[test]
fn silent_crashes_are_found_by_the_idle_timeout() {
    let mut net = converged(20, 4);
    let victim = 7;
    let victim_id = net.node(victim).id();
    let peers: Vec<_> = net.node(victim).neighbors().iter().map(|n| n.node).collect();
    assert!(!peers.is_empty());
    net.silent.insert(victim);
    net.run_for(Duration::from_secs(30));
    let idle: u64 = net.alive().iter().map(|i| net.node(*i).stats().neighbors_down_for(CloseReason::IdleTimeout)).sum();
    assert!(idle >= peers.len() as u64, "only {idle} idle timeouts for {} peers", peers.len());
    for i in net.alive() {
        assert!(!net.node(i).neighbors().iter().any(|n| n.node == victim_id), "node {i} still lists the dead node");
    }
    assert_eq!(net.components(), 1);
}

#[test]
fn graceful_close_says_leaving_mesh() {
    let mut net = converged(10, 5);
    let n_peers = net.node(3).neighbor_count() as u64;
    net.nodes[3].as_mut().unwrap().handle_input(net.now, peerchannel_core::Input::Close);
    net.drain(3);
    net.run_for(Duration::from_secs(1));
    let leaving: u64 =
        (0..10).filter(|i| *i != 3).map(|i| net.node(i).stats().neighbors_down_for(CloseReason::LeavingMesh)).sum();
    assert_eq!(leaving, n_peers);
}

#[test]
fn same_seed_same_outputs_different_seed_different_outputs() {
    let run = |seed| {
        let mut net = Net::new(20, seed, |_| {});
        net.record_trace = true;
        net.open_all(Duration::from_millis(10));
        net.run_for(Duration::from_secs(20));
        net.send(3, b"x");
        net.run_for(Duration::from_secs(20));
        net.trace
    };
    let a = run(11);
    let b = run(11);
    assert!(a.len() > 100);
    assert_eq!(a, b);
    assert_ne!(a, run(12));
}

#[test]
fn a_node_cut_off_catches_up_on_what_it_missed() {
    let mut net = converged(30, 6);
    let x = 5;
    let cut: Vec<usize> = {
        let ids: Vec<_> = net.node(x).neighbors().iter().map(|n| n.node).collect();
        (0..30).filter(|i| *i != x && ids.contains(&net.node(*i).id())).collect()
    };
    assert!(!cut.is_empty());
    for i in &cut {
        net.crash(*i);
    }
    // While x is alone, the rest of the mesh keeps talking.
    let origin = net.alive().into_iter().find(|i| *i != x).unwrap();
    let sent: Vec<_> = (0..3).map(|k| net.send(origin, format!("while cut off {k}").as_bytes())).collect();
    net.run_for(Duration::from_secs(20));
    assert!(net.node(x).neighbor_count() >= 2, "x did not repair");
    for id in sent {
        assert_eq!(net.deliveries.get(&(x, id)), Some(&1), "x missed a message sent while it was cut off");
        let (got, most) = net.delivery_of(id, origin);
        assert_eq!((got, most), (net.alive().len() - 1, 1));
    }
    assert!(net.node(x).stats().recovery_wanted > 0);
}

#[test]
fn without_recovery_a_cut_off_node_misses_those_messages() {
    let mut net = Net::new(30, 6, |c| c.recovery_window = None);
    net.open_all(Duration::from_millis(20));
    net.run_for(Duration::from_secs(60));
    let x = 5;
    let ids: Vec<_> = net.node(x).neighbors().iter().map(|n| n.node).collect();
    for i in (0..30).filter(|i| *i != x && ids.contains(&net.node(*i).id())).collect::<Vec<_>>() {
        net.crash(i);
    }
    let origin = net.alive().into_iter().find(|i| *i != x).unwrap();
    let id = net.send(origin, b"lost");
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.deliveries.get(&(x, id)), None);
}
