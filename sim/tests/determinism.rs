//! The same scenario and seed give the same run, bit for bit; another seed gives another run.

use peerchannel_sim::scenario::{ChurnConfig, CrashMode, Partition};
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
