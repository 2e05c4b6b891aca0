//! rust-libp2p gossipsub reference for `peerchannel-bench`'s `mesh10`: ten libp2p nodes in this
//! process on 127.0.0.1 (TCP, Noise, Yamux), one gossipsub topic; node 0 publishes and the nine
//! others receive, with the same windows and payload header (send time, sequence number) as the
//! peerchannel measurements.
//!
//! ```text
//! cargo run --release --bin gossipsub-bench -- --size all                       # throughput
//! cargo run --release --bin gossipsub-bench -- --size 1024 --mode latency --rate 2000
//! ```
//!
//! Topology: a ring (node i dials i + 1 mod 10) plus the five diameters (node i < 5 dials i + 5),
//! so every node has three links and every receiver is at most three hops from node 0, as the
//! ideal degree 3 of the peerchannel mesh. Gossipsub: D = 3, D_lo = 2, D_hi = 6, D_out = 1 (the
//! defaults 6/5/12/2 ask for more peers than a node has), first heartbeat after 100 ms instead of
//! 5 s (set-up only), the transmit limit raised to payload + 16 KiB (gossipsub 0.50.1 checks it
//! against its receive buffer, which holds up to 8 KiB more than the frame: with payload + 4 KiB
//! no 64 KiB message arrived), and a message id made of the payload header (send time and
//! sequence number are unique, so equal payloads are never deduplicated). Everything else is
//! the default: flood publishing, 1 s heartbeat, 5,000-message queues per connection, no
//! validation step.
//! `--security noise`: anonymous, unsigned messages (Noise still encrypts every link), the
//! counterpart of peerchannel's `tls`; `signed` (gossipsub's default): every message signed with
//! the publisher's ed25519 key and verified by every receiver (strict validation), the
//! counterpart of `signed`.
//!
//! Throughput: the publisher calls `publish` as fast as gossipsub takes messages; gossipsub has
//! no flow control, so `publish` fails only once the queues to all its peers are full (counted
//! in `publish_refused`, the publisher then waits for the swarm before trying again), and
//! messages that find one peer's queue full, or wait in it too long, are dropped (reported by
//! `SlowPeer` events at each heartbeat, summed over nodes in `dropped`). The publisher yields to
//! the runtime every `--yield-every` publishes (default 128, tokio's cooperative budget); fewer
//! offer less load and lose less. Messages/s and bytes/s delivered in the window at the slowest
//! receiver, and the mean over receivers. Latency: fixed offered rate; arrival − send at every
//! receiver for messages sent in the window.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{FutureExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, MessageId, TopicHash, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, Swarm};

#[path = "../../../src/stamp.rs"]
mod stamp;
use stamp::{header, payload, quantile_us, stamp, HEADER};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Throughput,
    Latency,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Security {
    /// Noise links, anonymous unsigned messages.
    Noise,
    /// Noise links, every message signed by its publisher and verified (gossipsub's default).
    Signed,
    /// Both, one after the other.
    All,
}

#[derive(Parser, Debug)]
#[command(about = "ten rust-libp2p gossipsub nodes on loopback: node 0 publishes, nine receive")]
struct Args {
    /// Payload bytes: 64, 1024, 65536 (any value from 16) or `all`.
    #[arg(long, default_value = "1024")]
    size: String,
    /// Message authenticity (links are always Noise-encrypted).
    #[arg(long, value_enum, default_value_t = Security::Signed)]
    security: Security,
    /// Throughput (as fast as possible) or latency (fixed rate).
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    mode: Mode,
    /// Throughput: publishes between two yields to the runtime (128: tokio's cooperative budget,
    /// what a sender awaiting ready channel sends gets).
    #[arg(long, default_value_t = 128)]
    yield_every: u64,
    #[command(flatten)]
    window: stamp::Window,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

const NODES: usize = 10;
const TOPIC: &str = "peerchannel-bench";
/// Gossipsub mesh degrees: D, D_lo, D_hi, D_out.
const MESH: (usize, usize, usize, usize) = (3, 2, 6, 1);
/// Sequence number of the probes that check every receiver is reached before the run.
const PROBE: u64 = u64::MAX;
/// How long receivers wait for in-flight messages after the last latency-mode send.
const GRACE: Duration = Duration::from_secs(1);
/// Longest the topology may take to form.
const SETUP: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let sizes = stamp::parse_sizes(&args.size).unwrap_or_else(|e| {
        eprintln!("gossipsub-bench: {e}");
        std::process::exit(2);
    });
    let signed = match args.security {
        Security::Noise => vec![false],
        Security::Signed => vec![true],
        Security::All => vec![false, true],
    };
    if let Err(e) = args.window.check() {
        eprintln!("gossipsub-bench: {e}");
        std::process::exit(2);
    }
    // Whatever happens, the process ends: set-up, window, grace and teardown of every run.
    let runs = (sizes.len() * signed.len()) as f64;
    let budget = Duration::from_secs_f64(runs * (args.window.warmup + args.window.duration + 45.0));
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("gossipsub-bench: still running after {budget:?}; giving up");
        std::process::exit(3);
    });
    for &size in &sizes {
        for &signed in &signed {
            if let Err(e) = run(&args, size, signed).await {
                eprintln!("gossipsub-bench: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// One node: listening on a loopback port, subscribed to the topic.
fn node(size: usize, signed: bool) -> Result<Swarm<gossipsub::Behaviour>, Error> {
    let (d, d_lo, d_hi, d_out) = MESH;
    let config = gossipsub::ConfigBuilder::default()
        .mesh_n(d)
        .mesh_n_low(d_lo)
        .mesh_n_high(d_hi)
        .mesh_outbound_min(d_out)
        .heartbeat_initial_delay(Duration::from_millis(100))
        // Not size + a little: gossipsub 0.50.1 holds the limit against its whole receive buffer
        // (the frame read so far plus up to one more 8 KiB read) and closes the stream beyond it.
        .max_transmit_size((size + 16 * 1024).max(65536))
        .validation_mode(if signed { ValidationMode::Strict } else { ValidationMode::Anonymous })
        .message_id_fn(|m: &gossipsub::Message| MessageId::new(&m.data[..HEADER.min(m.data.len())]))
        .build()?;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_behaviour(|key| {
            let auth = if signed { MessageAuthenticity::Signed(key.clone()) } else { MessageAuthenticity::Anonymous };
            gossipsub::Behaviour::new(auth, config).map_err(Error::from)
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.behaviour_mut().subscribe(&IdentTopic::new(TOPIC))?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    Ok(swarm)
}

async fn listen_addr(swarm: &mut Swarm<gossipsub::Behaviour>) -> Multiaddr {
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// The measured window: counted from `start` to `end`; the nodes stop at `stop`.
#[derive(Copy, Clone)]
struct Window {
    start: Instant,
    end: Instant,
    stop: Instant,
}

/// What the node tasks and the main task share.
struct Shared {
    latency: bool,
    /// Mesh peers of each node for the topic, refreshed every 20 ms.
    mesh: Vec<AtomicUsize>,
    /// Whether each node has received a probe.
    probed: Vec<AtomicBool>,
    /// Set once the topology has formed.
    window: OnceLock<Window>,
}

/// What one node saw (and, for node 0, sent).
#[derive(Default)]
struct Stats {
    /// Throughput: messages received in the window.
    received: u64,
    /// Latency: arrival − send (ns) of the messages sent in the window.
    latencies: Vec<u64>,
    /// Messages dropped by this node's full or expired peer queues (`SlowPeer` events), in the
    /// whole run.
    dropped: u64,
    /// Publisher: messages published (latency: those due in the window, refused or not).
    sent: u64,
    /// Publisher: `publish` calls refused (every peer's queue full).
    refused: u64,
    /// Publisher, latency: worst lag behind the schedule.
    lag: Duration,
}

fn on_event(ev: SwarmEvent<gossipsub::Event>, me: usize, shared: &Shared, st: &mut Stats) {
    match ev {
        SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) => {
            let now = Instant::now();
            let Some((sent, seq)) = header(&message.data) else { return };
            if seq == PROBE {
                shared.probed[me].store(true, Relaxed);
                return;
            }
            let Some(w) = shared.window.get() else { return };
            if shared.latency {
                if sent >= stamp(w.start) {
                    st.latencies.push(stamp(now).saturating_sub(sent));
                }
            } else if now >= w.start && now < w.end {
                st.received += 1;
            }
        }
        SwarmEvent::Behaviour(gossipsub::Event::SlowPeer { failed_messages, .. }) => {
            st.dropped += failed_messages.non_priority as u64;
        }
        _ => {}
    }
}

/// Drives one node until the window's `stop`; node 0 probes until the window is set, then
/// publishes (at `rate`, or as fast as it can without one).
async fn run_node(
    mut swarm: Swarm<gossipsub::Behaviour>,
    me: usize,
    shared: Arc<Shared>,
    size: usize,
    rate: Option<u32>,
    yield_every: u64,
) -> Stats {
    let topic: TopicHash = IdentTopic::new(TOPIC).hash();
    let mut st = Stats::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let (mut seq, mut t0) = (0u64, None::<Instant>);
    loop {
        let now = Instant::now();
        let w = shared.window.get().copied();
        if w.is_some_and(|w| now >= w.stop) {
            return st;
        }
        let sending = me == 0 && w.is_some_and(|w| now < w.end);
        if sending && rate.is_none() {
            // Throughput: take what the swarm has ready, then publish the next message.
            for _ in 0..64 {
                match swarm.next().now_or_never() {
                    Some(Some(ev)) => on_event(ev, me, &shared, &mut st),
                    _ => break,
                }
            }
            match swarm.behaviour_mut().publish(topic.clone(), Vec::from(payload(size, seq, Instant::now()))) {
                Ok(_) => st.sent += 1,
                Err(_) => {
                    st.refused += 1;
                    tokio::select! {
                        ev = swarm.select_next_some() => on_event(ev, me, &shared, &mut st),
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
            }
            seq += 1;
            if seq % yield_every == 0 {
                tokio::task::yield_now().await;
            }
            continue;
        }
        // Latency: the schedule starts when the window is set; it ends at the window's end.
        let due = if sending {
            *t0.get_or_insert(now) + Duration::from_secs_f64(seq as f64 / f64::from(rate.unwrap_or(1)))
        } else {
            now
        };
        let paced = sending && w.is_some_and(|w| due < w.end);
        tokio::select! {
            ev = swarm.select_next_some() => on_event(ev, me, &shared, &mut st),
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)), if paced => {
                let now = Instant::now();
                st.lag = st.lag.max(now - due);
                let p = Vec::from(payload(size, seq, now));
                // A refused message counts as sent, and so as lost at every receiver.
                st.sent += u64::from(w.is_some_and(|w| now >= w.start));
                st.refused += u64::from(swarm.behaviour_mut().publish(topic.clone(), p).is_err());
                seq += 1;
            }
            _ = tick.tick() => {
                shared.mesh[me].store(swarm.behaviour().mesh_peers(&topic).count(), Relaxed);
                if me == 0 && w.is_none() {
                    let _ = swarm.behaviour_mut().publish(topic.clone(), Vec::from(payload(HEADER, PROBE, now)));
                }
            }
        }
    }
}

async fn run(args: &Args, size: usize, signed: bool) -> Result<(), Error> {
    let latency = args.mode == Mode::Latency;
    let shared = Arc::new(Shared {
        latency,
        mesh: (0..NODES).map(|_| AtomicUsize::new(0)).collect(),
        probed: (0..NODES).map(|_| AtomicBool::new(false)).collect(),
        window: OnceLock::new(),
    });
    let deadline = Instant::now() + SETUP;
    let (mut swarms, mut addrs) = (Vec::new(), Vec::new());
    for _ in 0..NODES {
        let mut s = node(size, signed)?;
        let at = tokio::time::Instant::from_std(deadline);
        addrs.push(tokio::time::timeout_at(at, listen_addr(&mut s)).await.map_err(|_| "no listen address")?);
        swarms.push(s);
    }
    // A ring plus the five diameters: three links per node, at most three hops.
    for (i, s) in swarms.iter_mut().enumerate() {
        s.dial(addrs[(i + 1) % NODES].clone())?;
        if i < NODES / 2 {
            s.dial(addrs[i + NODES / 2].clone())?;
        }
    }
    let rate = latency.then_some(args.window.rate.max(1));
    let tasks: Vec<_> = swarms
        .into_iter()
        .enumerate()
        .map(|(i, s)| tokio::spawn(run_node(s, i, shared.clone(), size, rate, args.yield_every.max(1))))
        .collect();

    // Formed: every node has at least D_lo mesh peers and node 0's probes reach every receiver.
    loop {
        let mesh: Vec<usize> = shared.mesh.iter().map(|m| m.load(Relaxed)).collect();
        let reached = shared.probed[1..].iter().filter(|p| p.load(Relaxed)).count();
        if reached == NODES - 1 && mesh.iter().all(|&d| d >= MESH.1) {
            break;
        }
        if Instant::now() > deadline {
            if reached == NODES - 1 && mesh[0] > 0 {
                eprintln!(
                    "gossipsub-mesh10: not every mesh reached {} peers (mesh degrees {mesh:?}); measuring anyway",
                    MESH.1
                );
                break;
            }
            tasks.iter().for_each(|t| t.abort());
            return Err(format!(
                "not formed in {SETUP:?}: mesh degrees {mesh:?}, probes reached {reached} of {}",
                NODES - 1
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let start = Instant::now() + Duration::from_secs_f64(args.window.warmup);
    let end = start + Duration::from_secs_f64(args.window.duration);
    // Throughput: one more heartbeat after the window, which reports the drops of its last second.
    let stop = end + if latency { GRACE } else { Duration::from_millis(1200) };
    let _ = shared.window.set(Window { start, end, stop });
    let mut stats = Vec::with_capacity(NODES);
    let until = tokio::time::Instant::from_std(stop + Duration::from_secs(10));
    for t in tasks {
        stats.push(tokio::time::timeout_at(until, t).await.map_err(|_| "a node did not stop")??);
    }
    let mesh: Vec<usize> = shared.mesh.iter().map(|m| m.load(Relaxed)).collect();

    let secs = args.window.duration;
    let receivers = (NODES - 1) as u64;
    let (publisher, rx) = (&stats[0], &stats[1..]);
    let dropped: u64 = stats.iter().map(|s| s.dropped).sum();
    let security = if signed { "signed" } else { "noise" };
    let mode = if latency { "latency" } else { "throughput" };
    let mut json = serde_json::json!({
        "system": "rust-libp2p", "scenario": "gossipsub-mesh10", "size": size, "security": security,
        "mode": mode, "nodes": NODES, "receivers": receivers, "window_s": secs,
        "dropped": dropped, "publish_refused": publisher.refused, "mesh_degrees": mesh,
    });
    let line = if latency {
        let mut lat: Vec<u64> = rx.iter().flat_map(|s| s.latencies.iter().copied()).collect();
        lat.sort_unstable();
        let q = |p| quantile_us(&lat, p);
        let lost = (publisher.sent * receivers).saturating_sub(lat.len() as u64);
        json["rate"] = args.window.rate.into();
        json["samples"] = (lat.len() as u64).into();
        json["deliveries"] = (lat.len() as u64).into();
        json["lost"] = lost.into();
        for (k, p) in [("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999), ("max_us", 1.0)] {
            json[k] = q(p).into();
        }
        json["max_send_lag_us"] = (publisher.lag.as_secs_f64() * 1e6).into();
        format!(
            "p50 {:>7.0} µs p99 {:>7.0} µs p999 {:>7.0} µs max {:>7.0} µs at {} msg/s (n={}, lost {})",
            q(0.5).unwrap_or(f64::NAN),
            q(0.99).unwrap_or(f64::NAN),
            q(0.999).unwrap_or(f64::NAN),
            q(1.0).unwrap_or(f64::NAN),
            args.window.rate,
            lat.len(),
            lost
        )
    } else {
        let deliveries: u64 = rx.iter().map(|s| s.received).sum();
        let slowest = rx.iter().map(|s| s.received).min().unwrap_or(0) as f64 / secs;
        let mean = deliveries as f64 / receivers as f64 / secs;
        json["msgs_per_s"] = slowest.into();
        json["bytes_per_s"] = (slowest * size as f64).into();
        json["mean_msgs_per_s"] = mean.into();
        json["deliveries"] = deliveries.into();
        json["published"] = publisher.sent.into();
        json["yield_every"] = args.yield_every.into();
        format!(
            "{slowest:>10.0} msg/s {:>8.1} MB/s (slowest of {receivers}; mean {mean:.0} msg/s; published {} in all)",
            slowest * size as f64 / 1e6,
            publisher.sent
        )
    };
    let mut extra = String::new();
    if publisher.refused > 0 {
        extra += &format!(" | publish refused {}", publisher.refused);
    }
    if dropped > 0 {
        extra += &format!(" | dropped {dropped}");
    }
    let table =
        format!("{:<11} {:<7} {size:>6} {security:<7} {mode:<10} {line}{extra}", "rust-libp2p", "gossipsub-mesh10");
    if args.window.json {
        eprintln!("{table}");
        println!("{json}");
    } else {
        println!("{table}");
    }
    Ok(())
}
