//! Loopback throughput: one link A→B, or a chain A→B→C, with a plain tokio TCP stream of the
//! same bytes as the physical reference. A starting point for the benchmarks issue; run it in
//! release mode on an otherwise idle machine.
//!
//! ```text
//! cargo run --release -p peerchannel-tokio --example throughput -- --size 1024 --count 500000
//! cargo run --release -p peerchannel-tokio --example throughput -- --size 65536 --count 20000 --chain
//! ```
//!
//! With security, to compare against the unsecured figures: `--tls` (TLS 1.3 links), or
//! `--security transport|message|both`. The nodes authenticate with `--password <pw>` when
//! given, else with certificates from a CA made on the spot (`message` needs certificates):
//!
//! ```text
//! cargo run --release -p peerchannel-tokio --example throughput -- --size 1024 --count 200000 --tls
//! cargo run --release -p peerchannel-tokio --example throughput -- --size 1024 --count 200000 --security both --password pw
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use peerchannel_tokio::security::{
    CertificateCredentials, CertificateDer, Credentials, PrivateKeyDer, PrivatePkcs8KeyDer, SecurityMode,
};
use peerchannel_tokio::{Builder, Config, MeshId, PeerNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The security mode to measure.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Plain TCP links.
    None,
    /// TLS 1.3 links.
    Transport,
    /// Floods signed end to end (needs certificates: no --password).
    Message,
    /// TLS links and signed floods.
    Both,
}

impl Mode {
    fn core(self) -> SecurityMode {
        match self {
            Mode::None => SecurityMode::None,
            Mode::Transport => SecurityMode::Transport,
            Mode::Message => SecurityMode::Message,
            Mode::Both => SecurityMode::TransportAndMessage,
        }
    }
}

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
    /// Security mode of the mesh.
    #[arg(long, value_enum, default_value_t = Mode::None)]
    security: Mode,
    /// Shorthand for `--security transport`.
    #[arg(long, conflicts_with = "security")]
    tls: bool,
    /// Authenticate with this mesh password (default: certificates from a CA made on the spot).
    #[arg(long)]
    password: Option<String>,
}

/// How each node is secured: one password key (derived once, shared) or a fresh leaf of one CA.
enum Secure {
    None,
    Password(Credentials),
    Certificates { ca: CertificateDer<'static>, issuer: Box<rcgen::Issuer<'static, rcgen::KeyPair>> },
}

impl Secure {
    fn new(mode: Mode, mesh: &MeshId, password: Option<&str>) -> Result<Secure, Box<dyn std::error::Error>> {
        if mode == Mode::None {
            return Ok(Secure::None);
        }
        if let Some(pw) = password {
            return Ok(Secure::Password(Credentials::password(mesh, pw)));
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name.push(rcgen::DnType::CommonName, "throughput CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca = params.self_signed(&key)?.der().clone();
        Ok(Secure::Certificates { ca, issuer: Box::new(rcgen::Issuer::new(params, key)) })
    }

    fn apply(&self, mode: Mode, b: Builder) -> Result<Builder, Box<dyn std::error::Error>> {
        Ok(match self {
            Secure::None => b,
            Secure::Password(c) => b.credentials(c.clone()).security(mode.core()),
            Secure::Certificates { ca, issuer } => {
                let key = rcgen::KeyPair::generate()?;
                let leaf = rcgen::CertificateParams::new(vec!["node".to_owned()])?.signed_by(&key, issuer.as_ref())?;
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
                b.certificate(CertificateCredentials::new(vec![leaf.der().clone()], key, vec![ca.clone()]))
                    .security(mode.core())
            }
        })
    }
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
        "{what:<34} {messages} msgs in {elapsed:>10.3?}: {:>12.0} msg/s {:>10.1} MB/s ({:.2} Gbit/s)",
        messages as f64 / s,
        bytes as f64 / s / 1e6,
        bytes as f64 * 8.0 / s / 1e9
    );
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let mode = if args.tls { Mode::Transport } else { args.security };
    // The security mode and the credential kind, e.g. "transport/pw", "both/cert" or "none".
    let credential = match (mode, &args.password) {
        (Mode::None, _) => "",
        (_, Some(_)) => "/pw",
        (_, None) => "/cert",
    };
    let label = format!("{}{credential}", mode.to_possible_value().map_or("?".into(), |v| v.get_name().to_owned()));
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
    let mesh = MeshId::new("throughput")?;
    let secure = Secure::new(mode, &mesh, args.password.as_deref())?;
    let mut base = Config::new(mesh, 0);
    base.max_message_size = args.size.max(peerchannel_tokio::Config::new(MeshId::new("x")?, 0).max_message_size);
    base.refresh_interval = None;
    let leaf = |mut c: Config| {
        c.min_neighbors = 1;
        c.ideal_neighbors = 1;
        c.max_neighbors = 1;
        c
    };
    let builder = |c: Config| secure.apply(mode, PeerNode::builder().config(c).listen(local));
    let a = builder(leaf(base.clone()))?.open_alone().open().await?;
    let mut middle = None;
    let last_boot = if args.chain {
        let mut c = base.clone();
        c.min_neighbors = 1;
        c.ideal_neighbors = 2;
        c.max_neighbors = 2;
        let b = builder(c)?.bootstrap([a.local_addr()]).open().await?;
        let addr = b.local_addr();
        middle = Some(b);
        addr
    } else {
        a.local_addr()
    };
    let c = builder(leaf(base))?.bootstrap([last_boot]).open().await?;
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
    let what = if args.chain { "peerchannel A→B→C" } else { "peerchannel A→B" };
    report(&format!("{what} ({label})"), got, got * args.size, elapsed);
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
