//! `peerchannel-bench`: throughput, latency, CPU and memory of peerchannel meshes on loopback,
//! beside a plain TCP stream of the same bytes (the physical limit of one link).
//!
//! ```text
//! cargo run --release -p peerchannel-bench --bin peerchannel-bench -- all
//! cargo run --release -p peerchannel-bench --bin peerchannel-bench -- link --size 1024 --security tls
//! cargo run --release -p peerchannel-bench --bin peerchannel-bench -- mesh10 --size all --mode latency --json
//! ```
//!
//! Each measurement runs in a child process of its own (this binary with `--single`), so heap,
//! peak RSS and CPU time belong to that measurement alone. See `bench/README.md`.

mod measure;
mod mesh;
mod stamp;
mod sys;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// The topology measured.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One link A → B.
    Link,
    /// A chain A → B → C; B relays.
    Chain,
    /// Ten nodes in a mesh (default degrees); one origin, the nine others receive.
    Mesh10,
}

/// The command line's scenario: a topology, the plain TCP reference alone, or everything.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Which {
    /// One link A → B (with the plain TCP reference unless --no-reference).
    Link,
    /// A → B → C.
    Chain,
    /// Ten nodes, every node but the origin receives.
    Mesh10,
    /// The plain TCP reference alone: one write per message.
    Tcp,
    /// The plain TCP reference alone: whole messages batched into 64 KiB writes (throughput).
    TcpBatched,
    /// The whole matrix: every scenario, size, security and mode (unless narrowed by options).
    All,
}

/// How the mesh is secured.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Security {
    /// Plain TCP links.
    None,
    /// TLS 1.3 links, authenticated with a mesh password.
    Tls,
    /// TLS links and floods signed end to end (`TransportAndMessage` with a password).
    Signed,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum SecurityArg {
    None,
    Tls,
    Signed,
    All,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// As fast as the origin can send: messages/s and bytes/s at the slowest receiver.
    Throughput,
    /// A fixed offered rate (--rate): p50/p99/p999 from the origin to every receiver.
    Latency,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Throughput,
    Latency,
    All,
}

#[derive(Parser, Debug)]
#[command(name = "peerchannel-bench", about = "peerchannel on loopback: throughput, latency, CPU and memory")]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Which,
    /// Payload bytes per message: 64, 1024, 65536 (any value from 16 works) or `all`.
    /// Default: 1024, or all with the `all` scenario.
    #[arg(long)]
    size: Option<String>,
    /// Security of the mesh. Default: none, or all with the `all` scenario.
    #[arg(long, value_enum)]
    security: Option<SecurityArg>,
    /// Throughput, latency or both. Default: throughput, or all with the `all` scenario.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Skip the plain TCP reference that goes with `link`.
    #[arg(long)]
    no_reference: bool,
    #[command(flatten)]
    window: stamp::Window,
    /// Run exactly one measurement in this process and print its JSON (used by the parent).
    #[arg(long, hide = true)]
    single: bool,
}

/// One measurement, as printed with `--json`. Rates are per second; sizes in bytes; times in
/// microseconds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// `peerchannel`, `plain-tcp` (one write per message) or `tcp-batched` (64 KiB writes).
    system: String,
    /// `link`, `chain` or `mesh10` (`link` for the TCP reference).
    scenario: String,
    size: usize,
    /// `none`, `tls` or `signed` (`none` for the TCP reference).
    security: String,
    /// `throughput` or `latency`.
    mode: String,
    nodes: usize,
    receivers: usize,
    /// Seconds measured (after the warm-up).
    window_s: f64,
    /// Throughput: messages per second at the slowest receiver.
    msgs_per_s: Option<f64>,
    /// Throughput: payload bytes per second at the slowest receiver.
    bytes_per_s: Option<f64>,
    /// Throughput: messages per second averaged over the receivers.
    mean_msgs_per_s: Option<f64>,
    /// Latency: offered rate.
    rate: Option<u32>,
    /// Latency: samples (receiver × message) in the window.
    samples: Option<u64>,
    /// Latency: messages sent in the window and not received (summed over receivers).
    lost: Option<u64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    /// Latency: the sender's worst lag behind its schedule.
    max_send_lag_us: Option<f64>,
    /// Messages delivered in the window, summed over the receivers.
    deliveries: u64,
    /// Process CPU time (user + system) in the window per delivered message.
    cpu_us_per_msg: Option<f64>,
    /// Heap of the process per node, topology formed and idle (counting allocator).
    heap_idle_per_node: f64,
    /// Largest heap sampled in the window, per node.
    heap_load_per_node: f64,
    /// Peak resident set size of the measurement's process (VmHWM).
    peak_rss: Option<u64>,
    /// Messages dropped by full receiver queues.
    dropped: u64,
}

/// What a measurement runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum System {
    /// A peerchannel topology.
    Peerchannel(Scenario),
    /// The plain TCP reference, one write per message.
    Tcp,
    /// The plain TCP reference, 64 KiB writes.
    TcpBatched,
}

/// One entry of the matrix.
#[derive(Copy, Clone, Debug)]
struct Job {
    system: System,
    size: usize,
    security: Security,
    mode: Mode,
}

fn name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value().map_or_else(|| "?".to_owned(), |p| p.get_name().to_owned())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("peerchannel-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    args.window.check()?;
    let jobs = jobs(args)?;
    if args.single {
        let [job] = jobs[..] else { return Err("--single needs exactly one scenario, size, security and mode".into()) };
        let record = single(args, job)?;
        println!("{}", serde_json::to_string(&record)?);
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut table = Table::new(args.window.json);
    table.header();
    let mut failed = 0;
    for job in jobs {
        let mut cmd = Command::new(&exe);
        cmd.arg(match job.system {
            System::Peerchannel(s) => name(s),
            System::Tcp => name(Which::Tcp),
            System::TcpBatched => name(Which::TcpBatched),
        })
        .args(["--size", &job.size.to_string(), "--security", &name(job.security), "--mode", &name(job.mode)])
        .args(["--rate", &args.window.rate.to_string(), "--warmup", &args.window.warmup.to_string()])
        .args(["--duration", &args.window.duration.to_string(), "--no-reference", "--single"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let mut out = String::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                out.push_str(&line?);
            }
        }
        let status = child.wait()?;
        match serde_json::from_str::<Record>(&out) {
            Ok(r) if status.success() => table.row(&r)?,
            _ => {
                failed += 1;
                eprintln!("peerchannel-bench: {job:?} failed ({status})");
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} measurement(s) failed").into());
    }
    Ok(())
}

fn jobs(args: &Args) -> Result<Vec<Job>, Box<dyn std::error::Error>> {
    let all = args.scenario == Which::All;
    let sizes = match args.size.as_deref() {
        Some(s) => stamp::parse_sizes(s)?,
        None if all => stamp::SIZES.to_vec(),
        None => vec![1024],
    };
    let securities = match args.security.unwrap_or(if all { SecurityArg::All } else { SecurityArg::None }) {
        SecurityArg::None => vec![Security::None],
        SecurityArg::Tls => vec![Security::Tls],
        SecurityArg::Signed => vec![Security::Signed],
        SecurityArg::All => vec![Security::None, Security::Tls, Security::Signed],
    };
    let modes = match args.mode.unwrap_or(if all { ModeArg::All } else { ModeArg::Throughput }) {
        ModeArg::Throughput => vec![Mode::Throughput],
        ModeArg::Latency => vec![Mode::Latency],
        ModeArg::All => vec![Mode::Throughput, Mode::Latency],
    };
    let scenarios = match args.scenario {
        Which::Link => vec![Scenario::Link],
        Which::Chain => vec![Scenario::Chain],
        Which::Mesh10 => vec![Scenario::Mesh10],
        Which::Tcp | Which::TcpBatched => vec![],
        Which::All => vec![Scenario::Link, Scenario::Chain, Scenario::Mesh10],
    };
    let reference = scenarios.contains(&Scenario::Link) && !args.no_reference;
    let mut jobs = Vec::new();
    for &mode in &modes {
        for &size in &sizes {
            let plain = |system| Job { system, size, security: Security::None, mode };
            // The batched reference differs only where several messages fit in one write.
            let batches = mode == Mode::Throughput && size <= 32 * 1024;
            if args.scenario == Which::Tcp || reference {
                jobs.push(plain(System::Tcp));
            }
            if args.scenario == Which::TcpBatched || (reference && batches) {
                jobs.push(plain(System::TcpBatched));
            }
            for &scenario in &scenarios {
                for &security in &securities {
                    jobs.push(Job { system: System::Peerchannel(scenario), size, security, mode });
                }
            }
        }
    }
    Ok(jobs)
}

/// Runs one measurement in this process.
fn single(args: &Args, job: Job) -> Result<Record, Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let reset = sys::reset_peak_rss();
    let plan = measure::Plan {
        size: job.size,
        warmup: Duration::from_secs_f64(args.window.warmup),
        duration: Duration::from_secs_f64(args.window.duration),
        rate: (job.mode == Mode::Latency).then_some(args.window.rate),
    };
    let (m, nodes, receivers) = rt.block_on(async {
        match job.system {
            System::Tcp => Ok::<_, Box<dyn std::error::Error>>((measure::plain_tcp(plan, false).await?, 2, 1)),
            System::TcpBatched => Ok((measure::plain_tcp(plan, true).await?, 2, 1)),
            System::Peerchannel(scenario) => {
                let before = sys::heap();
                let net = mesh::build(scenario, job.size, job.security).await?;
                let (nodes, receivers) = (net.nodes.len(), net.receivers.len());
                let m = measure::peerchannel(&net, plan, before).await;
                net.close().await;
                Ok((m?, nodes, receivers))
            }
        }
    })?;
    drop(rt);
    if !reset {
        eprintln!("peerchannel-bench: could not reset VmHWM; peak RSS covers the whole process");
    }
    let secs = plan.duration.as_secs_f64();
    let per_node = |b: isize| b as f64 / nodes as f64;
    let latency = job.mode == Mode::Latency;
    let q = |p| if latency { measure::quantile_us(&m.latencies_ns, p) } else { None };
    Ok(Record {
        system: match job.system {
            System::Peerchannel(_) => "peerchannel",
            System::Tcp => "plain-tcp",
            System::TcpBatched => "tcp-batched",
        }
        .to_owned(),
        scenario: name(match job.system {
            System::Peerchannel(s) => s,
            _ => Scenario::Link,
        }),
        size: job.size,
        security: name(job.security),
        mode: name(job.mode),
        nodes,
        receivers,
        window_s: secs,
        msgs_per_s: m.slowest_msgs_per_s,
        bytes_per_s: m.slowest_msgs_per_s.map(|r| r * job.size as f64),
        mean_msgs_per_s: m.mean_msgs_per_s,
        rate: plan.rate,
        samples: latency.then_some(m.deliveries),
        lost: m.lost,
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: q(1.0),
        max_send_lag_us: m.max_send_lag.map(|d| d.as_secs_f64() * 1e6),
        deliveries: m.deliveries,
        cpu_us_per_msg: (m.deliveries > 0).then(|| m.cpu.as_secs_f64() * 1e6 / m.deliveries as f64),
        heap_idle_per_node: per_node(m.heap_idle),
        heap_load_per_node: per_node(m.heap_load),
        peak_rss: sys::peak_rss(),
        dropped: m.dropped,
    })
}

/// The human-readable table (standard output, or standard error with `--json`).
struct Table {
    json: bool,
}

fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

impl Table {
    fn new(json: bool) -> Table {
        Table { json }
    }

    fn line(&self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }

    fn header(&self) {
        self.line(&format!("{:<11} {:<7} {:>6} {:<7} {:<10} result", "system", "scenario", "size", "security", "mode"));
    }

    fn row(&mut self, r: &Record) -> Result<(), serde_json::Error> {
        let result = match r.mode.as_str() {
            "throughput" => format!(
                "{:>10.0} msg/s {:>8.1} MB/s (slowest of {}; mean {:.0} msg/s)",
                r.msgs_per_s.unwrap_or(0.0),
                r.bytes_per_s.unwrap_or(0.0) / 1e6,
                r.receivers,
                r.mean_msgs_per_s.unwrap_or(0.0)
            ),
            _ => format!(
                "p50 {:>7.0} µs p99 {:>7.0} µs p999 {:>7.0} µs max {:>7.0} µs at {} msg/s (n={}, lost {})",
                r.p50_us.unwrap_or(f64::NAN),
                r.p99_us.unwrap_or(f64::NAN),
                r.p999_us.unwrap_or(f64::NAN),
                r.max_us.unwrap_or(f64::NAN),
                r.rate.unwrap_or(0),
                r.samples.unwrap_or(0),
                r.lost.unwrap_or(0)
            ),
        };
        self.line(&format!(
            "{:<11} {:<7} {:>6} {:<7} {:<10} {result} | cpu {:.2} µs/msg | heap/node idle {} load {} | VmHWM {}{}",
            r.system,
            r.scenario,
            r.size,
            r.security,
            r.mode,
            r.cpu_us_per_msg.unwrap_or(f64::NAN),
            bytes(r.heap_idle_per_node),
            bytes(r.heap_load_per_node),
            r.peak_rss.map_or_else(|| "?".to_owned(), |b| bytes(b as f64)),
            if r.dropped > 0 { format!(" | dropped {}", r.dropped) } else { String::new() }
        ));
        if self.json {
            println!("{}", serde_json::to_string(r)?);
        }
        Ok(())
    }
}
