//! The command line as a user runs it: the engine's speed under traffic is reported apart from
//! the mesh's formation. (That the run stopped at the first publish and resumed is the same run
//! is tested in `engine.rs`.)

use std::process::Command;

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peerchannel-sim")).args(args).output().expect("the simulator runs")
}

#[test]
fn the_json_report_gives_the_engine_speed_from_the_first_publish_on() {
    let out = sim(&["--scenario", "steady-1k", "--nodes", "60", "--duration", "90", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let total = v["report"]["events"].as_u64().expect("events");
    let t = &v["speed"]["under_traffic"];
    assert_eq!(t["from_s"].as_f64(), Some(60.0), "steady-1k publishes from 60 s: {t}");
    let events = t["events"].as_u64().expect("events under traffic");
    assert!(events > 0 && events < total, "{events} of {total}");
    assert!(t["wall_s"].as_f64().is_some_and(|w| w > 0.0));
}

#[test]
fn nothing_published_means_no_speed_under_traffic() {
    let out = sim(&["--scenario", "steady-1k", "--nodes", "30", "--duration", "20", "--publish-rate", "0", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(v["speed"]["under_traffic"].is_null());
}

#[test]
fn the_summary_names_both_rates_under_check_determinism() {
    let out = sim(&["--scenario", "steady-1k", "--nodes", "60", "--duration", "90", "--check-determinism"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("M events/s"), "{text}");
    assert!(text.contains("from the first publish (60 s) on:"), "{text}");
}

#[test]
fn the_restart_with_huge_pages_runs_the_same_scenario_as_without() {
    // The default restarts the process with glibc's tunable set (see `--no-huge-pages`): the
    // arguments must reach the restarted run unchanged, so its trace is the one without.
    let args = ["--scenario", "steady-1k", "--nodes", "40", "--duration", "70", "--seed", "7", "--json"];
    // (trace, deliveries, whether the run asked for huge pages)
    let run = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        assert_eq!(v["report"]["seed"].as_u64(), Some(7));
        let huge = v["speed"]["huge_pages"].as_bool().expect("speed.huge_pages");
        (v["report"]["trace_hash"].clone(), v["report"]["delivery_hash"].clone(), huge)
    };
    let with = run(sim(&args));
    let without = run(sim(&[&args[..], &["--no-huge-pages"]].concat()));
    assert!(with.0.is_string() && with.1.is_string(), "{with:?}");
    // Only where glibc has the tunable does the simulator restart for it.
    assert_eq!(with.2, cfg!(all(target_os = "linux", target_env = "gnu")), "the restart did not happen");
    assert!(!without.2);
    assert_eq!((&with.0, &with.1), (&without.0, &without.1));
    // A user's own setting of the tunable is kept (no restart), and the run is the same too.
    let mine = Command::new(env!("CARGO_BIN_EXE_peerchannel-sim"))
        .args(args)
        .env("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
        .output()
        .expect("the simulator runs");
    assert_eq!(run(mine), without);
}
