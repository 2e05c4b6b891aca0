//! Security as the simulator runs it: every node a real core with TLS links, mesh-password
//! proofs and signed floods.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use peerchannel_sim::scenario::{ChurnConfig, Replacement, SecurityConfig, SecurityModeName};
use peerchannel_sim::{Scenario, Simulation};

fn secure(mode: SecurityModeName) -> Scenario {
    let mut s = Scenario { name: "restarts".into(), nodes: 30, duration_secs: 90.0, ..Scenario::default() };
    s.churn = Some(ChurnConfig {
        replace_per_min: 0.3,
        start_secs: 20.0,
        replacement: Replacement::Restart,
        restart_delay_secs: 1.0,
        ..ChurnConfig::default()
    });
    s.publish.start_secs = 10.0;
    let password = (mode != SecurityModeName::None).then(|| "pw".to_string());
    s.security = SecurityConfig { mode, password, pbkdf2_iterations: 10 };
    s
}

/// In message modes a node's NodeId is derived from its key, and its key from its seed: a node
/// restarted on the same host gets a new seed from the simulator, hence a new key and a new
/// NodeId, and rejoins (a reused NodeId would be refused as a duplicate by its old peers).
#[test]
fn a_restarted_node_gets_a_new_node_id_in_transport_and_message_mode() {
    let mut sim = Simulation::new(secure(SecurityModeName::TransportAndMessage)).unwrap();
    // host → NodeIds seen on it, in order.
    let mut by_host: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
    for t in 1..=90 {
        sim.run_until(Duration::from_secs(t));
        for i in sim.live_nodes() {
            let id = sim.node(i).unwrap().id().get();
            let seen = by_host.entry(sim.host_of(i).unwrap()).or_default();
            if seen.last().map(|(n, _)| *n) != Some(i) {
                seen.push((i, id));
            }
        }
    }
    let r = sim.report();
    let restarted: Vec<_> = by_host.values().filter(|v| v.len() > 1).collect();
    assert!(restarted.len() >= 5, "only {} hosts saw a restart", restarted.len());
    assert_eq!(by_host.len(), 30, "restarts reuse their host");
    let all: Vec<u64> = by_host.values().flatten().map(|(_, id)| *id).collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "every node, restarted or not, has its own NodeId");
    assert!(r.nodes_alive == 30 && r.delivery.scored > 30);
    assert!(r.misses.is_empty(), "misses: {:?}", &r.misses[..r.misses.len().min(10)]);
    assert_eq!((r.traffic.auth_failures, r.traffic.invalid_signatures), (0, 0));
    assert_eq!(r.traffic.neighbors_down.get("DuplicateNeighbor").copied().unwrap_or(0), 0);
}

/// Transport mode alone: TLS links, no signatures; the bytes on the wire exceed the same run
/// without security (TLS handshakes and record overhead), and nothing else changes in kind.
#[test]
fn transport_mode_delivers_everywhere_and_costs_bytes_but_no_signatures() {
    let plain = Simulation::new(secure(SecurityModeName::None)).unwrap().run();
    let tls = Simulation::new(secure(SecurityModeName::Transport)).unwrap().run();
    for r in [&plain, &tls] {
        assert!(r.misses.is_empty(), "{}: misses {:?}", r.security, &r.misses[..r.misses.len().min(10)]);
        assert_eq!(r.delivery.reliability_min, 1.0);
        assert_eq!((r.traffic.auth_failures, r.traffic.signatures_verified), (0, 0));
    }
    assert_eq!(plain.security, "none");
    assert!(tls.security.starts_with("transport (mesh password"), "{}", tls.security);
    assert!(
        tls.traffic.bytes_sent > plain.traffic.bytes_sent,
        "TLS sent {} bytes, plain {}",
        tls.traffic.bytes_sent,
        plain.traffic.bytes_sent
    );
}
