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
