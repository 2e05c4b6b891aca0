//! The same scenario and seed give the same run, bit for bit; another seed gives another run.

use peerchannel_sim::scenario::{ChurnConfig, CrashMode, Partition, SecurityConfig, SecurityModeName};
use peerchannel_sim::{Scenario, Simulation};

/// A small scenario that exercises every moving part: joins, churn with leaves, crashes and
/// restarts, a partition and its heal, jitter, loss and a rate-limited uplink.
fn busy(seed: u64) -> Scenario {
    let mut s = Scenario { name: "busy".into(), seed, nodes: 120, duration_secs: 100.0, ..Scenario::default() };
    s.churn = Some(ChurnConfig {
        replace_per_min: 0.3,
        start_secs: 20.0,
        replacement: peerchannel_sim::scenario::Replacement::Restart,
        restart_delay_secs: 2.0,
        ..ChurnConfig::default()
    });
    s.partition.push(Partition { at_secs: 40.0, duration_secs: 25.0, fraction: 0.3 });
    s.crash.mode = CrashMode::Reset;
    s.crash.detection_delay_ms = 500.0;
    s.network.jitter_ms = 20.0;
    s.network.loss = 0.02;
    s.network.uplink_mbps = 20.0;
    s.publish.rate_per_sec = 4.0;
    s.publish.start_secs = 10.0;
    s.publish.paths = vec!["/a".into(), "/b".into()];
    s
}

#[test]
fn same_seed_gives_identical_report_and_trace() {
    let a = Simulation::new(busy(7)).unwrap().run();
    let b = Simulation::new(busy(7)).unwrap().run();
    assert!(a.events > 10_000, "the scenario should be busy, ran {} events", a.events);
    assert!(a.crashes > 0 && a.leaves > 0, "churn should both crash and leave nodes");
    assert!(a.delivery.scored > 100);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.delivery_hash, b.delivery_hash);
    assert_eq!(a, b, "every field of the report must match");
}

#[test]
fn different_seeds_give_different_traces() {
    let a = Simulation::new(busy(7)).unwrap().run();
    let c = Simulation::new(busy(8)).unwrap().run();
    assert_ne!(a.trace_hash, c.trace_hash);
    assert_ne!(a.delivery_hash, c.delivery_hash);
}

#[test]
fn running_in_steps_gives_the_same_run_as_running_at_once() {
    let whole = Simulation::new(busy(3)).unwrap().run();
    let mut sim = Simulation::new(busy(3)).unwrap();
    for t in [1.0, 17.5, 40.0, 40.000001, 66.0, 99.0, 100.0] {
        sim.run_until(std::time::Duration::from_secs_f64(t));
    }
    assert_eq!(sim.report(), whole);
}

/// A small secure run: TLS links with password proofs and signed floods, churn with restarts,
/// loss, jitter and a rate-limited uplink. TLS ephemeral keys come from the OS, so ciphertext
/// bytes differ between runs, but record lengths, timing and every protocol decision must not.
fn secure(seed: u64) -> Scenario {
    let mut s = Scenario { name: "secure".into(), seed, nodes: 50, duration_secs: 60.0, ..Scenario::default() };
    s.churn = Some(ChurnConfig {
        replace_per_min: 0.3,
        start_secs: 20.0,
        replacement: peerchannel_sim::scenario::Replacement::Restart,
        restart_delay_secs: 1.0,
        ..ChurnConfig::default()
    });
    s.crash.mode = CrashMode::Reset;
    s.network.jitter_ms = 20.0;
    s.network.loss = 0.02;
    s.network.uplink_mbps = 20.0;
    s.publish.rate_per_sec = 4.0;
    s.publish.start_secs = 10.0;
    s.security = SecurityConfig {
        mode: SecurityModeName::TransportAndMessage,
        password: Some("hunter2".into()),
        pbkdf2_iterations: 10,
    };
    s
}

#[test]
fn same_seed_with_security_gives_identical_report_and_trace() {
    let a = Simulation::new(secure(11)).unwrap().run();
    let b = Simulation::new(secure(11)).unwrap().run();
    assert!(a.crashes > 0 && a.leaves > 0, "churn should both crash and leave nodes");
    assert!(a.delivery.scored > 100, "scored {}", a.delivery.scored);
    assert!(a.traffic.signatures_verified > 1000, "floods must be signed: {:?}", a.traffic);
    assert_eq!((a.traffic.auth_failures, a.traffic.invalid_signatures), (0, 0));
    assert!(a.security.starts_with("transport+message"), "{}", a.security);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.delivery_hash, b.delivery_hash);
    assert_eq!(a, b, "every field of the report must match");
}
