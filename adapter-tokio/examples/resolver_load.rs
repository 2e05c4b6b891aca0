//! Load generator for the resolver service: N clients, each on its own connection, pipelining
//! a Register/Resolve mix (one Register per four requests, refreshes of its records otherwise
//! half the time) for a fixed time, then the requests per second the service answered.
//!
//! ```text
//! cargo run --release -p peerchannel-tokio --bin peerchannel-resolver -- --listen 127.0.0.1:7700 --max-records-per-source 1000000 --summary-secs 0 &
//! cargo run --release -p peerchannel-tokio --example resolver_load -- --service 127.0.0.1:7700 --clients 50 --seconds 10
//! ```
//!
//! Without `--service` it starts an in-process service on loopback (sharing the cores).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use peerchannel_core::resolver::frames::{decode_reply, encode_request, split_resolver_frame, Reply, Request};
use peerchannel_core::resolver::registry::RegistryConfig;
use peerchannel_core::resolver::ClientId;
use peerchannel_tokio::service::{ResolverServer, ServerConfig};
use peerchannel_tokio::MeshId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Register/Resolve load on a peerchannel resolver service")]
struct Args {
    /// The service; default: an in-process one on loopback.
    #[arg(long)]
    service: Option<SocketAddr>,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Requests each client keeps in flight.
    #[arg(long, default_value_t = 64)]
    pipeline: usize,
    /// Meshes the records spread over.
    #[arg(long, default_value_t = 100)]
    meshes: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("resolver_load: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let _server;
    let addr = match args.service {
        Some(a) => a,
        None => {
            let cfg = ServerConfig {
                registry: RegistryConfig { max_records_per_source: usize::MAX, ..RegistryConfig::default() },
                summary_interval: None,
                ..ServerConfig::default()
            };
            let s = ResolverServer::bind("127.0.0.1:0".parse()?, cfg).await?;
            let a = s.local_addr();
            _server = s;
            a
        }
    };
    let meshes: Arc<Vec<MeshId>> =
        Arc::new((0..args.meshes).map(|m| MeshId::new(&format!("load{m}"))).collect::<Result<_, _>>()?);
    let answered = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (meshes, answered, errors) = (meshes.clone(), answered.clone(), errors.clone());
        let pipeline = args.pipeline.max(1);
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let mut client = [0u8; 16];
            client[..8].copy_from_slice(&(c as u64 + 1).to_be_bytes());
            let client = ClientId(client);
            let mut n: u64 = 0;
            let mut out = BytesMut::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut in_flight = 0usize;
            while tokio::time::Instant::now() < stop {
                out.clear();
                while in_flight < pipeline {
                    n += 1;
                    let mesh = meshes[(n as usize * 7 + c) % meshes.len()].clone();
                    let req = (n as u32).max(1);
                    let r = if n % 4 == 0 {
                        let port = 1024 + (n % 60000) as u16;
                        let ip = [10, (c % 250) as u8, ((n >> 8) % 250) as u8, (n % 250) as u8 + 1];
                        Request::Register {
                            req,
                            client,
                            mesh,
                            addrs: [SocketAddr::from((ip, port))].into_iter().collect(),
                        }
                    } else {
                        Request::Resolve { req, client, mesh, max: 3 }
                    };
                    encode_request(&r, &mut out);
                    in_flight += 1;
                }
                s.write_all(&out).await?;
                // Read at least half the window back before topping it up again.
                while in_flight > pipeline / 2 {
                    if s.read_buf(&mut buf).await? == 0 {
                        return Err(std::io::Error::other("service closed the connection"));
                    }
                    let mut view: Bytes = buf.split().freeze();
                    while let Some(f) = split_resolver_frame(&mut view).map_err(std::io::Error::other)? {
                        in_flight -= 1;
                        answered.fetch_add(1, Ordering::Relaxed);
                        if matches!(decode_reply(&f), Ok(Reply::Error { .. }) | Err(_)) {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    buf.extend_from_slice(&view);
                }
            }
            Ok::<_, std::io::Error>(())
        }));
    }
    let started = tokio::time::Instant::now();
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = answered.load(Ordering::Relaxed);
    println!(
        "{total} requests answered in {secs:.1} s: {:.0} req/s over {} clients ({} error replies; quota refusals count as errors)",
        total as f64 / secs,
        args.clients,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}
