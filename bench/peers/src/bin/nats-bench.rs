//! NATS reference for `peerchannel-bench`: one publisher → one subscriber through a local
//! `nats-server` (start one with `bench/peers/install-nats.sh`), the same windows and the same
//! payload header (send time, sequence number) as the peerchannel measurements.
//!
//! ```text
//! cargo run --release --bin nats-bench -- --size all                       # throughput
//! cargo run --release --bin nats-bench -- --size 1024 --mode latency --rate 2000
//! ```
//!
//! Throughput: messages/s delivered to the subscriber in the window (the publisher sends as
//! fast as the client takes messages). Latency: p50/p99/p999 publisher → subscriber at a fixed
//! offered rate. Publisher and subscriber use separate connections, as two processes would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;

#[path = "../../../src/stamp.rs"]
mod stamp;
use stamp::{header, payload, quantile_us, stamp};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Throughput,
    Latency,
}

#[derive(Parser, Debug)]
#[command(about = "publisher → subscriber through a local nats-server")]
struct Args {
    /// Server URL.
    #[arg(long, default_value = "nats://127.0.0.1:14222")]
    server: String,
    /// Payload bytes: 64, 1024, 65536 (any value from 16) or `all`.
    #[arg(long, default_value = "all")]
    size: String,
    /// Throughput (as fast as possible) or latency (fixed rate).
    #[arg(long, value_enum, default_value_t = Mode::Throughput)]
    mode: Mode,
    #[command(flatten)]
    window: stamp::Window,
}

const SUBJECT: &str = "peerchannel.bench";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let sizes = stamp::parse_sizes(&args.size).and_then(|s| args.window.check().map(|()| s)).unwrap_or_else(|e| {
        eprintln!("nats-bench: {e}");
        std::process::exit(2);
    });
    for size in sizes {
        if let Err(e) = run(&args, size).await {
            eprintln!("nats-bench: {e} (is nats-server running? bench/peers/install-nats.sh starts one)");
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args, size: usize) -> Result<(), Box<dyn std::error::Error>> {
    let slow = Arc::new(AtomicU64::new(0));
    let s = slow.clone();
    let sub_client = async_nats::ConnectOptions::new()
        .event_callback(move |e| {
            let s = s.clone();
            async move {
                if matches!(e, async_nats::Event::SlowConsumer(_)) {
                    s.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .connect(&args.server)
        .await?;
    let pub_client = async_nats::connect(&args.server).await?;
    let mut sub = sub_client.subscribe(SUBJECT).await?;
    sub_client.flush().await?;

    let latency = args.mode == Mode::Latency;
    let start = Instant::now() + Duration::from_secs_f64(args.window.warmup);
    let end = start + Duration::from_secs_f64(args.window.duration);
    let grace = Duration::from_secs(1);
    let receiver = tokio::spawn(async move {
        let until = tokio::time::Instant::from_std(if latency { end + grace } else { end });
        let (mut count, mut lat) = (0u64, Vec::new());
        let from = stamp(start);
        while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
            let now = Instant::now();
            if latency {
                let sent = header(&m.payload).map_or(0, |(sent, _)| sent);
                if sent >= from {
                    lat.push(stamp(now).saturating_sub(sent));
                }
            } else if now >= start {
                count += 1;
            }
        }
        (count, lat)
    });

    let (mut sent, mut in_window) = (0u64, 0u64);
    if latency {
        let t0 = Instant::now();
        loop {
            let due = t0 + Duration::from_secs_f64(sent as f64 / f64::from(args.window.rate.max(1)));
            if due >= end {
                break;
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            let now = Instant::now();
            pub_client.publish(SUBJECT, payload(size, sent, now)).await?;
            in_window += u64::from(now >= start);
            sent += 1;
        }
    } else {
        let p = payload(size, 0, Instant::now());
        while Instant::now() < end {
            pub_client.publish(SUBJECT, p.clone()).await?;
            sent += 1;
        }
    }
    pub_client.flush().await?;
    let (count, mut lat) = receiver.await?;
    let secs = args.window.duration;
    let slow = slow.load(Ordering::Relaxed);
    let mut json = serde_json::json!({
        "system": "nats", "scenario": "link", "size": size, "security": "none",
        "mode": if latency { "latency" } else { "throughput" }, "window_s": secs, "slow_consumer_events": slow,
    });
    let line = if latency {
        lat.sort_unstable();
        let q = |p| quantile_us(&lat, p);
        json["rate"] = args.window.rate.into();
        json["samples"] = (lat.len() as u64).into();
        json["lost"] = in_window.saturating_sub(lat.len() as u64).into();
        for (k, p) in [("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999), ("max_us", 1.0)] {
            json[k] = q(p).into();
        }
        format!(
            "p50 {:>7.0} µs p99 {:>7.0} µs p999 {:>7.0} µs max {:>7.0} µs at {} msg/s (n={}, lost {})",
            q(0.5).unwrap_or(f64::NAN),
            q(0.99).unwrap_or(f64::NAN),
            q(0.999).unwrap_or(f64::NAN),
            q(1.0).unwrap_or(f64::NAN),
            args.window.rate,
            lat.len(),
            in_window.saturating_sub(lat.len() as u64)
        )
    } else {
        let rate = count as f64 / secs;
        json["msgs_per_s"] = rate.into();
        json["bytes_per_s"] = (rate * size as f64).into();
        json["published"] = sent.into();
        format!("{rate:>10.0} msg/s {:>8.1} MB/s (published {sent} in all)", rate * size as f64 / 1e6)
    };
    let slow = if slow > 0 { format!(" | slow-consumer events {slow}") } else { String::new() };
    let mode = if latency { "latency" } else { "throughput" };
    let table = format!("{:<11} {:<7} {size:>6} {:<7} {mode:<10} {line}{slow}", "nats", "link", "none");
    if args.window.json {
        eprintln!("{table}");
        println!("{json}");
    } else {
        println!("{table}");
    }
    Ok(())
}
