//! Loopback throughput: one link A→B, or a chain A→B→C, with a plain tokio TCP stream of the
//! same bytes as the physical reference. A starting point for the benchmarks issue; run it in
//! release mode on an otherwise idle machine.
//!
//! ```text
//! cargo run --release -p peerchannel-tokio --example throughput -- --size 1024 --count 500000
//! cargo run --release -p peerchannel-tokio --example throughput -- --size 65536 --count 20000 --chain
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use peerchannel_tokio::{Config, MeshId, PeerNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(about = "Messages per second and bytes per second over loopback")]
struct Args {
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages to send.
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    /// Relay through a middle node (A→B→C) instead of one link.
    #[arg(long)]
    chain: bool,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("throughput: {e}");
        std::process::exit(1);
    }
}

fn report(what: &str, messages: usize, bytes: usize, elapsed: Duration) {
    let s = elapsed.as_secs_f64().max(1e-9);
    println!(
        "{what:<22} {messages} msgs in {elapsed:>10.3?}: {:>12.0} msg/s {:>10.1} MB/s ({:.2} Gbit/s)",
        messages as f64 / s,
        bytes as f64 / s / 1e6,
        bytes as f64 * 8.0 / s / 1e9
    );
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let local: SocketAddr = "127.0.0.1:0".parse()?;
    let bytes = args.size * args.count;

    // Reference: a plain tokio TCP stream carrying the same bytes.
    let listener = tokio::net::TcpListener::bind(local).await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<_, std::io::Error>(())
    });
    let started = Instant::now();
    let mut w = tokio::net::TcpStream::connect(addr).await?;
    let payload = vec![0u8; args.size];
    for _ in 0..args.count {
        w.write_all(&payload).await?;
    }
    reader.await??;
    report("plain TCP", args.count, bytes, started.elapsed());

    // peerchannel: A → B, or A → B → C with B relaying.
    let mut base = Config::new(MeshId::new("throughput")?, 0);
    base.max_message_size = args.size.max(peerchannel_tokio::Config::new(MeshId::new("x")?, 0).max_message_size);
    base.refresh_interval = None;
    let leaf = |mut c: Config| {
        c.min_neighbors = 1;
        c.ideal_neighbors = 1;
        c.max_neighbors = 1;
        c
    };
    let a = PeerNode::builder().config(leaf(base.clone())).listen(local).open_alone().open().await?;
    let mut middle = None;
    let last_boot = if args.chain {
        let mut c = base.clone();
        c.min_neighbors = 1;
        c.ideal_neighbors = 2;
        c.max_neighbors = 2;
        let b = PeerNode::builder().config(c).listen(local).bootstrap([a.local_addr()]).open().await?;
        let addr = b.local_addr();
        middle = Some(b);
        addr
    } else {
        a.local_addr()
    };
    let c = PeerNode::builder().config(leaf(base)).listen(local).bootstrap([last_boot]).open().await?;
    let tx = a.channel("/t")?;
    let mut rx = c.channel("/t")?;
    let payload = bytes::Bytes::from(vec![0u8; args.size]);
    let count = args.count;
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            tx.send(payload.clone()).await?;
        }
        Ok::<_, peerchannel_tokio::Error>(tx)
    });
    let mut got = 0;
    while got < args.count {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(_)) => got += 1,
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    let _tx = sender.await??;
    report(if args.chain { "peerchannel A→B→C" } else { "peerchannel A→B" }, got, got * args.size, elapsed);
    let s = a.stats().await?;
    println!(
        "sender: {} write calls, {:.1} messages per write; receiver dropped {}",
        s.adapter.writes,
        got as f64 / s.adapter.writes.max(1) as f64,
        rx.dropped()
    );
    a.close().await;
    if let Some(b) = middle {
        b.close().await;
    }
    c.close().await;
    Ok(())
}
