//! One sender streams N messages (or a file in chunks) to a mesh of receivers on loopback;
//! every receiver reports what it got, how many were missing, and its throughput.
//!
//! ```text
//! cargo run --release -p peerchannel-tokio --example broadcast -- --nodes 6 --count 20000 --size 1024
//! cargo run --release -p peerchannel-tokio --example broadcast -- --nodes 4 --file Cargo.lock
//! cargo run --release -p peerchannel-tokio --example broadcast -- --nodes 6 --count 20000 --password pw
//! ```
//!
//! With `--password <pw>` the mesh runs TLS 1.3 links with password authentication (the key is
//! derived once and shared by the nodes of this process).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use peerchannel_tokio::security::Credentials;
use peerchannel_tokio::{Channel, Config, MeshId, PeerNode};

#[derive(Parser, Debug)]
#[command(about = "Broadcast a stream of messages over a loopback mesh and report delivery")]
struct Args {
    /// Nodes in the mesh (one sender, the rest receivers).
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Messages to send (ignored with --file).
    #[arg(long, default_value_t = 10_000)]
    count: u32,
    /// Payload bytes per message (at least 8; with --file, the chunk size).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Send this file in chunks instead of generated messages.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Seconds a receiver waits for more after the last message before reporting.
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
    /// Protect the mesh with this password (TLS 1.3 links).
    #[arg(long)]
    password: Option<String>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("broadcast: {e}");
        std::process::exit(1);
    }
}

/// Each message: its sequence number (4 bytes), the total count (4 bytes), then data.
fn message(seq: u32, total: u32, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + data.len());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&total.to_be_bytes());
    m.extend_from_slice(data);
    m
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let chunks: Vec<Vec<u8>> = match &args.file {
        Some(path) => std::fs::read(path)?.chunks(args.size.max(1)).map(|c| c.to_vec()).collect(),
        None => (0..args.count).map(|_| vec![0xAB; args.size.saturating_sub(8)]).collect(),
    };
    let total = u32::try_from(chunks.len())?;

    let mesh = MeshId::new("broadcast")?;
    // Derived once (PBKDF2 is slow on purpose) and shared by every node.
    let credentials = args.password.as_deref().map(|pw| Credentials::password(&mesh, pw));
    let mut config = Config::new(mesh, 0);
    config.maintainer_interval = Duration::from_millis(500);
    let local = "127.0.0.1:0".parse()?;
    let mut nodes: Vec<PeerNode> = Vec::new();
    for i in 0..args.nodes.max(2) {
        let mut b = PeerNode::builder().config(config.clone()).listen(local).channel_capacity(total as usize + 16);
        if let Some(c) = &credentials {
            b = b.credentials(c.clone());
        }
        b = if i == 0 { b.open_alone() } else { b.bootstrap([nodes[0].local_addr(), nodes[i - 1].local_addr()]) };
        nodes.push(b.open().await?);
    }
    let security = if credentials.is_some() { "TLS, password" } else { "none" };
    println!("{} nodes up (security: {security}); sending {total} messages of {} bytes", nodes.len(), args.size);

    let mut receivers = Vec::new();
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let ch = node.channel("/stream")?;
        receivers.push(tokio::spawn(receive(i, ch, total, Duration::from_secs(args.idle_secs))));
    }
    let tx = nodes[0].channel("/stream")?;
    let started = Instant::now();
    for (seq, data) in chunks.iter().enumerate() {
        tx.send(message(seq as u32, total, data)).await?;
    }
    println!("sender: {total} messages queued in {:?}", started.elapsed());
    for r in receivers {
        r.await?;
    }
    let s = nodes[0].stats().await?;
    println!(
        "sender: {} write calls for {} bytes ({:.1} messages per write)",
        s.adapter.writes,
        s.adapter.bytes_written,
        f64::from(total) * (nodes.len() - 1) as f64 / s.adapter.writes.max(1) as f64
    );
    for n in nodes {
        n.close().await;
    }
    Ok(())
}

async fn receive(i: usize, mut ch: Channel, total: u32, idle: Duration) {
    let mut seen = vec![false; total as usize];
    let mut got = 0u32;
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while got < total {
        match tokio::time::timeout(idle, ch.recv()).await {
            Ok(Some(m)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                let seq = m.payload.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
                if let Some(slot) = seq.and_then(|s| seen.get_mut(s as usize)) {
                    if !*slot {
                        *slot = true;
                        got += 1;
                        bytes += m.payload.len();
                    }
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64()).max(1e-9);
    println!(
        "receiver {i}: got {got}/{total}, missing {}, {:.0} msg/s, {:.1} MB/s, dropped by full queue {}",
        total - got,
        f64::from(got) / secs,
        bytes as f64 / secs / 1e6,
        ch.dropped()
    );
}
