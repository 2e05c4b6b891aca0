//! Follows one node of a run through a stretch of simulated time: its neighbors (and whether
//! each is still alive) whenever they change, and the core events of the node and of every
//! node that was its neighbor in that stretch. For questions like "why did this node get that
//! flood late?" (BENCHMARKS.md §2 traces one such case this way).
//!
//! ```sh
//! cargo run --release -p peerchannel-sim --example trace_node -- churn-1k 8 112 95 106
//! ```
//!
//! Arguments: a built-in scenario name or a TOML file, the seed, the node's index in the run
//! (as the report's `misses` and `dips` name it), and the stretch's start and end in simulated
//! seconds.

use std::process::ExitCode;
use std::time::Duration;

use peerchannel_sim::{Scenario, Simulation};

const USAGE: &str = "usage: trace_node SCENARIO SEED NODE FROM_SECS TO_SECS";

/// The node's neighbors now: (index, alive).
fn neighbors(sim: &Simulation, node: u32) -> Vec<(u32, bool)> {
    let Some(n) = sim.node(node) else { return Vec::new() };
    n.neighbors().iter().filter_map(|l| sim.peer_of(node, l.link)).map(|p| (p, sim.node(p).is_some())).collect()
}

fn parse<T: std::str::FromStr>(arg: Option<String>, what: &str) -> Result<T, String> {
    let text = arg.ok_or_else(|| format!("missing {what}\n{USAGE}"))?;
    text.parse().map_err(|_| format!("{what}: not a number: {text}\n{USAGE}"))
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let name = args.next().ok_or_else(|| USAGE.to_string())?;
    let mut sc = Scenario::named(&name).map_err(|e| e.to_string())?;
    sc.seed = parse(args.next(), "SEED")?;
    let node: u32 = parse(args.next(), "NODE")?;
    let from: f64 = parse(args.next(), "FROM_SECS")?;
    let to: f64 = parse(args.next(), "TO_SECS")?;
    if !(0.0..=sc.duration_secs).contains(&from) || !(from..=sc.duration_secs).contains(&to) {
        return Err(format!("need 0 <= FROM_SECS <= TO_SECS <= {} (the scenario's duration)", sc.duration_secs));
    }
    let mut sim = Simulation::new(sc).map_err(|e| e.to_string())?;
    sim.run_until(Duration::from_secs_f64(from));
    sim.record_events();
    // Neighbors as they change, looked at every 100 ms of simulated time.
    let mut watched = vec![node];
    let mut last: Option<Vec<(u32, bool)>> = None;
    let mut t = from;
    loop {
        let now = neighbors(&sim, node);
        if last.as_ref() != Some(&now) {
            println!("{t:>9.3} s  node {node} neighbors (index, alive): {now:?}");
            for (p, _) in &now {
                if !watched.contains(p) {
                    watched.push(*p);
                }
            }
            last = Some(now);
        }
        if t >= to {
            break;
        }
        t = (t + 0.1).min(to);
        sim.run_until(Duration::from_secs_f64(t));
    }
    println!("events of node {node} and its neighbors:");
    for (at, who, event) in sim.event_log() {
        if watched.contains(who) {
            println!("{:>9.3} s  node {who}: {event:?}", *at as f64 / 1e9);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
