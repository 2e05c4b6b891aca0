//! `peerchannel-sim`: runs a scenario of real peerchannel-core nodes on virtual time and prints
//! a short report. With no arguments it runs the built-in `churn-1k` scenario.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod huge_pages;

use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peerchannel_sim::metrics::{huge_pages_mib, peak_rss_mib, Report, Speed, SpeedWindow};
use peerchannel_sim::scenario::{ChurnConfig, CrashMode, LatencyModel, SecurityModeName, BUILT_IN};
use peerchannel_sim::{plots, Scenario, Simulation};

/// Deterministic simulator of peerchannel meshes: real core nodes, virtual time.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A scenario file (TOML) or the name of a built-in scenario (see --list). Default: churn-1k.
    #[arg(long, short)]
    scenario: Option<String>,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Override: number of initial nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// Override: seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override: simulated seconds to run.
    #[arg(long)]
    duration: Option<f64>,
    /// Override: churn, as the share of the initial nodes replaced per simulated minute (0 = none).
    #[arg(long)]
    churn: Option<f64>,
    /// Override: floods per simulated second.
    #[arg(long)]
    publish_rate: Option<f64>,
    /// Override: flood payload bytes.
    #[arg(long)]
    size: Option<usize>,
    /// Override: constant one-way latency in ms (instead of the scenario's model).
    #[arg(long)]
    latency_ms: Option<f64>,
    /// Override: packet loss probability (modelled as retransmission delay).
    #[arg(long)]
    loss: Option<f64>,
    /// Override: per-node uplink in Mbit/s (0 = unlimited).
    #[arg(long)]
    uplink_mbps: Option<f64>,
    /// Override: how crashes look to peers: silent or reset.
    #[arg(long, value_parser = ["silent", "reset"])]
    crash_mode: Option<String>,
    /// Override: security mode: none, transport (TLS links authenticated by the mesh password)
    /// or transport+message (also every flood signed by its origin). The secure modes need a
    /// password (--password or the scenario's security.password); `none` drops the password.
    #[arg(long, value_name = "MODE", value_parser = ["none", "transport", "transport+message"])]
    security: Option<String>,
    /// Override: the mesh password of the secure modes.
    #[arg(long, value_name = "PW")]
    password: Option<String>,
    /// Override: PBKDF2 iterations the mesh key is stretched with (simulator default 1000).
    #[arg(long, value_name = "N")]
    pbkdf2_iterations: Option<u32>,
    /// Write report.json, scenario.toml and SVG plots into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run twice and compare every output and delivery; exit 2 if they differ.
    #[arg(long)]
    check_determinism: bool,
    /// Print the full JSON report to stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Keep 4 KiB pages. Otherwise, on Linux with glibc, the simulator restarts itself once
    /// with glibc's `glibc.malloc.hugetlb=1` tunable so its heap gets transparent huge pages
    /// (faster; same run). Also off when GLIBC_TUNABLES already sets that tunable. Use it
    /// under valgrind, which would not follow the restart.
    #[arg(long)]
    no_huge_pages: bool,
}

fn load(args: &Args) -> Result<Scenario, String> {
    let name = args.scenario.as_deref().unwrap_or("churn-1k");
    let mut sc = Scenario::named(name).map_err(|e| e.to_string())?;
    if let Some(n) = args.nodes {
        sc.nodes = n;
    }
    if let Some(s) = args.seed {
        sc.seed = s;
    }
    if let Some(d) = args.duration {
        sc.duration_secs = d;
    }
    if let Some(c) = args.churn {
        sc.churn = (c > 0.0).then(|| ChurnConfig { replace_per_min: c, ..sc.churn.clone().unwrap_or_default() });
    }
    if let Some(r) = args.publish_rate {
        sc.publish.rate_per_sec = r;
    }
    if let Some(s) = args.size {
        sc.publish.size = s;
    }
    if let Some(ms) = args.latency_ms {
        sc.network.latency = LatencyModel::Constant { ms };
    }
    if let Some(l) = args.loss {
        sc.network.loss = l;
    }
    if let Some(u) = args.uplink_mbps {
        sc.network.uplink_mbps = u;
    }
    if let Some(m) = &args.crash_mode {
        sc.crash.mode = if m == "reset" { CrashMode::Reset } else { CrashMode::Silent };
    }
    if let Some(m) = &args.security {
        sc.security.mode = m.parse::<SecurityModeName>()?;
        if sc.security.mode == SecurityModeName::None {
            sc.security.password = None;
        }
    }
    if let Some(pw) = &args.password {
        sc.security.password = Some(pw.clone());
    }
    if let Some(n) = args.pbkdf2_iterations {
        sc.security.pbkdf2_iterations = n;
    }
    sc.validate().map_err(|e| e.to_string())?;
    Ok(sc)
}

/// Runs once with a progress bar that appears only after a second, and only on a terminal.
fn run(sc: &Scenario, quiet: bool, label: &str) -> Result<(Report, Speed), String> {
    let mut sim = Simulation::new(sc.clone()).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let end_ms = (sc.duration_secs * 1000.0) as u64;
    let bar = ProgressBar::with_draw_target(Some(end_ms), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    let show = !quiet && std::io::stderr().is_terminal();
    let mut shown = false;
    let mut on_progress = |p: peerchannel_sim::Progress| {
        if show && !shown && start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        if shown {
            bar.set_position(p.now.as_millis() as u64);
            bar.set_message(format!("{:.0}/{:.0} sim-s", p.now.as_secs_f64(), p.end.as_secs_f64()));
        }
    };
    // Up to the first publish, then the rest: the engine's rate under traffic is reported on
    // its own (running in two steps changes nothing in the run itself).
    let publish_from = sc.publish.start_secs;
    let traffic_part = sc.publish.rate_per_sec > 0.0 && publish_from > 0.0 && publish_from < sc.duration_secs;
    let mut at_publish = None;
    if traffic_part {
        sim.run_until_with_progress(Duration::from_secs_f64(publish_from), &mut on_progress);
        at_publish = Some((sim.events(), sim.event_kinds(), start.elapsed().as_secs_f64()));
    }
    sim.run_with_progress(&mut on_progress);
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    let report = sim.report();
    let under_traffic = at_publish.map(|(events, kinds, at)| {
        let (events, wall_s) = (report.events - events, wall - at);
        let kinds = report.event_kinds.since(&kinds);
        SpeedWindow { from_s: publish_from, events, wall_s, events_per_s: events as f64 / wall_s.max(1e-9), kinds }
    });
    let speed = Speed {
        wall_s: wall,
        events_per_s: report.events as f64 / wall.max(1e-9),
        sim_s_per_wall_s: report.duration_s / wall.max(1e-9),
        peak_rss_mib: peak_rss_mib(),
        huge_pages: huge_pages::requested(),
        huge_pages_mib: huge_pages_mib(),
        under_traffic,
    };
    Ok((report, speed))
}

fn print_summary(sc: &Scenario, r: &Report, s: &Speed) {
    let d = &r.delivery;
    println!("peerchannel-sim: {} (seed {}): {} nodes, {:.0} s simulated", r.scenario, r.seed, sc.nodes, r.duration_s);
    println!(
        "  nodes     created {}, alive at end {}, crashed {}, left {}",
        r.nodes_created, r.nodes_alive, r.crashes, r.leaves
    );
    println!(
        "  delivery  {} of {} messages scored; reliability mean {:.6}, min {:.6}; {} reached every eligible node",
        d.scored, d.sent, d.reliability_mean, d.reliability_min, d.perfect
    );
    println!(
        "            RMR {:.2}; last delivery hop mean {:.1}, max {}; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        d.rmr, d.last_hop_mean, d.last_hop_max, d.latency.p50_ms, d.latency.p99_ms, d.latency.max_ms
    );
    if d.catch_up.deliveries > 0 {
        println!(
            "            catch-up: {} deliveries of earlier floods to nodes that joined after them (recovery), p50 {:.1} ms, max {:.1} ms after joining",
            d.catch_up.deliveries, d.catch_up.after_join.p50_ms, d.catch_up.after_join.max_ms
        );
    }
    if let Some(last) = r.samples.last() {
        let most = r.samples.iter().map(|s| s.components).max().unwrap_or(0);
        println!(
            "  mesh      at end {} component(s), largest {} of {} joined; most components seen {}; degree min {} max {} mean {:.2}",
            last.components, last.largest_component, last.joined, most, last.degree_min, last.degree_max, last.degree_mean
        );
    }
    let hist: Vec<String> =
        r.degree_histogram.iter().enumerate().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{k}:{n}")).collect();
    println!("            degree histogram (degree:nodes) {}", hist.join(" "));
    println!(
        "            below min_neighbors: {} dips after reaching it (longest {:.2} s), {} while joining (longest {:.2} s), {} at end",
        r.dips.after_join,
        r.dips.longest_after_join_s,
        r.dips.count - r.dips.after_join,
        r.dips.longest_s,
        r.dips.open_at_end
    );
    let t = &r.traffic;
    let pct = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 * 100.0 / b as f64 };
    // With TLS the core counts wire bytes (ciphertext) but control frames before encryption,
    // so the rest is floods plus the TLS overhead.
    let flood = if sc.security.mode.core().transport() { "flood+TLS" } else { "flood" };
    println!(
        "  traffic   {:.1} MB sent: {:.1} MB {flood}, {:.1} MB control ({:.1}% of bytes); payload received {:.1} MB",
        t.bytes_sent as f64 / 1e6,
        t.flood_bytes as f64 / 1e6,
        t.control_bytes as f64 / 1e6,
        pct(t.control_bytes, t.bytes_sent),
        t.payload_bytes_received as f64 / 1e6,
    );
    println!("            {} dials, {} failed; {} sends refused", t.dials, t.dial_failures, t.send_refused);
    let down: Vec<String> = t.neighbors_down.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("            neighbors lost: {}", if down.is_empty() { "none".into() } else { down.join(", ") });
    if sc.security.mode == SecurityModeName::None {
        println!("  security  none");
    } else {
        println!(
            "  security  {}: {} authentication failures; signatures {} verified, {} invalid; {} floods unintroduced",
            r.security, t.auth_failures, t.signatures_verified, t.invalid_signatures, t.floods_unintroduced
        );
    }
    if r.phases.len() > 1 {
        println!("  phases");
        for p in &r.phases {
            println!(
                "            {:>6.0}-{:<6.0} s  {:>4} msgs  reliability mean {:.4} min {:.4}  {}",
                p.from, p.to, p.messages, p.reliability_mean, p.reliability_min, p.label
            );
        }
    }
    println!(
        "  engine    {} events ({} stale timer entries) in {:.2} s wall: {:.2} M events/s, {:.1} sim-s per wall-s, peak memory {}",
        r.events,
        r.stale_timer_events,
        s.wall_s,
        s.events_per_s / 1e6,
        s.sim_s_per_wall_s,
        match (s.peak_rss_mib, s.huge_pages_mib) {
            (Some(m), Some(h)) if s.huge_pages => format!("{m:.0} MiB ({h:.0} MiB in huge pages at the end)"),
            (Some(m), _) if s.huge_pages => format!("{m:.0} MiB (huge pages asked for)"),
            (Some(m), _) => format!("{m:.0} MiB (4 KiB pages)"),
            _ => "unknown".into(),
        }
    );
    if let Some(t) = &s.under_traffic {
        println!(
            "            from the first publish ({:.0} s) on: {} events in {:.2} s wall: {:.2} M events/s",
            t.from_s,
            t.events,
            t.wall_s,
            t.events_per_s / 1e6
        );
    }
    println!("  trace     outputs {}  deliveries {}", r.trace_hash, r.delivery_hash);
}

fn write_out(dir: &PathBuf, sc: &Scenario, r: &Report, s: &Speed) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::json!({ "report": r, "speed": s });
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
    let file = dir.join("report.json");
    std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let file = dir.join("scenario.toml");
    std::fs::write(&file, sc.to_toml()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let plots = plots::write_all(r, dir).map_err(|e| e.to_string())?;
    eprintln!("wrote {} and {} plots", dir.join("report.json").display(), plots.len());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for (name, text) in BUILT_IN {
            let first = text.lines().next().unwrap_or("").trim_start_matches('#').trim();
            println!("{name:18} {first}");
        }
        return ExitCode::SUCCESS;
    }
    // Before the scenario is loaded and anything is printed: the restart starts over.
    if !args.no_huge_pages {
        huge_pages::restart_with_huge_pages();
    }
    let sc = match load(&args) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let (report, speed) = match run(&sc, args.quiet, "run") {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&serde_json::json!({ "report": report, "speed": speed })) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        print_summary(&sc, &report, &speed);
    }
    if let Some(dir) = &args.out {
        if let Err(e) = write_out(dir, &sc, &report, &speed) {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    if args.check_determinism {
        let (again, _) = match run(&sc, args.quiet, "rerun") {
            Ok(x) => x,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        if again == report {
            println!(
                "  determinism: OK, two runs identical (outputs {}, deliveries {})",
                report.trace_hash, report.delivery_hash
            );
        } else {
            println!(
                "  determinism: MISMATCH: outputs {} vs {}, deliveries {} vs {}",
                report.trace_hash, again.trace_hash, report.delivery_hash, again.delivery_hash
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
