//! `peerchannel-resolver`: the peerchannel resolver service. Nodes register their listen
//! addresses under a mesh ID and ask for a few members to join through.
//!
//! ```text
//! cargo run -p peerchannel-tokio --bin peerchannel-resolver -- --listen 127.0.0.1:7700
//! ```
//!
//! The directory is in memory. After a restart it is empty; every node registers again at its
//! next refresh (half the registration lifetime), so it is whole again within that time.
//! Logs go to stderr (`RUST_LOG=peerchannel_tokio=debug` shows every connection); a summary
//! line is logged every `--summary-secs`, and `--stats` also prints it to stdout.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use peerchannel_core::resolver::registry::RegistryConfig;
use peerchannel_tokio::service::{ResolverServer, ServerConfig};

#[derive(Parser, Debug)]
#[command(about = "The peerchannel resolver service: maps mesh IDs to a few member addresses")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7700")]
    listen: SocketAddr,
    /// Seconds a registration lives without a refresh (nodes refresh at half of it).
    #[arg(long, default_value_t = RegistryConfig::default().lifetime.as_secs())]
    lifetime_secs: u64,
    /// Meshes held at most.
    #[arg(long, default_value_t = RegistryConfig::default().max_meshes)]
    max_meshes: usize,
    /// Records per mesh at most.
    #[arg(long, default_value_t = RegistryConfig::default().max_records_per_mesh)]
    max_records_per_mesh: usize,
    /// Records registered from one IP address at most.
    #[arg(long, default_value_t = RegistryConfig::default().max_records_per_source)]
    max_records_per_source: usize,
    /// Addresses per record at most.
    #[arg(long, default_value_t = RegistryConfig::default().max_addresses_per_record)]
    max_addresses_per_record: usize,
    /// Records one Resolve returns at most.
    #[arg(long, default_value_t = RegistryConfig::default().max_resolve)]
    max_resolve: usize,
    /// Tell clients the service controls the mesh's shape: clients with the `Service`
    /// referral policy then do not share referrals.
    #[arg(long)]
    control_shape: bool,
    /// Connections served at once.
    #[arg(long, default_value_t = ServerConfig::default().max_connections)]
    max_connections: usize,
    /// Connections from one IP address at once.
    #[arg(long, default_value_t = ServerConfig::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds a connection may go without a whole request before it is closed.
    #[arg(long, default_value_t = 120)]
    idle_secs: u64,
    /// Seconds between summary lines (0: none).
    #[arg(long, default_value_t = 60)]
    summary_secs: u64,
    /// Also print the summary to stdout, once per `--summary-secs` (default 10 s with this flag).
    #[arg(long)]
    stats: bool,
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("peerchannel_tokio=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args = Args::parse();
    let registry = RegistryConfig {
        lifetime: Duration::from_secs(args.lifetime_secs.max(2)),
        max_meshes: args.max_meshes,
        max_records_per_mesh: args.max_records_per_mesh,
        max_records_per_source: args.max_records_per_source,
        max_addresses_per_record: args.max_addresses_per_record,
        max_resolve: args.max_resolve,
        control_shape: args.control_shape,
    };
    let summary_secs = if args.stats && args.summary_secs == 60 { 10 } else { args.summary_secs };
    let config = ServerConfig {
        registry,
        max_connections: args.max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        idle_timeout: Duration::from_secs(args.idle_secs.max(1)),
        summary_interval: (summary_secs > 0).then(|| Duration::from_secs(summary_secs)),
        ..ServerConfig::default()
    };
    let server = match ResolverServer::bind(args.listen, config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("peerchannel-resolver: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!("peerchannel-resolver listening on {}", server.local_addr());
    if args.stats && summary_secs > 0 {
        let addr = server.local_addr();
        let period = Duration::from_secs(summary_secs);
        let server_ref = &server;
        let printer = async move {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                t.tick().await;
                println!("{addr} {}", server_ref.stats());
            }
        };
        tokio::select! {
            _ = printer => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    } else {
        let _ = tokio::signal::ctrl_c().await;
    }
    println!("peerchannel-resolver: stopping (the directory is in memory: nodes register again on their next refresh)");
    server.shutdown().await;
}
