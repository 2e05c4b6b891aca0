//! A user-written resolver: mesh members are listed in a shared text file (one
//! `mesh node-id address` line each). Nodes register their address when they join, find each
//! other through the file alone (no bootstrap list), and remove their line when they leave.
//!
//! All nodes in one process:
//!
//! ```text
//! cargo run -p peerchannel-tokio --example custom_resolver -- --directory /tmp/peers.txt --nodes 4
//! ```
//!
//! Or one node per terminal, sharing the file (the first one with `--first`):
//!
//! ```text
//! cargo run -p peerchannel-tokio --example custom_resolver -- --directory /tmp/peers.txt --nodes 1 --first
//! cargo run -p peerchannel-tokio --example custom_resolver -- --directory /tmp/peers.txt --nodes 1
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use peerchannel_tokio::{BoxFuture, MeshId, NodeId, PeerNode, Resolver};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
#[command(about = "Nodes that find each other through a shared directory file")]
struct Args {
    /// The shared directory file.
    #[arg(long, default_value = "/tmp/peerchannel-peers.txt")]
    directory: PathBuf,
    /// Nodes to start in this process.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// This process starts the mesh (its first node opens alone).
    #[arg(long)]
    first: bool,
    /// Mesh to join.
    #[arg(long, default_value = "filemesh")]
    mesh: String,
}

/// Members listed in a text file. A lock serialises this process's read-modify-writes; several
/// processes may still race on the file, which a real directory (a database, the resolver
/// service) would not: good enough for an example.
struct FileResolver {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl FileResolver {
    fn new(path: PathBuf) -> Self {
        FileResolver { path, lock: Arc::new(Mutex::new(())) }
    }

    /// The file's (mesh, node, address) entries; a missing file is an empty directory.
    async fn read(path: &PathBuf) -> io::Result<Vec<(String, u64, SocketAddr)>> {
        let text = match tokio::fs::read_to_string(path).await {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((it.next()?.to_owned(), u64::from_str_radix(it.next()?, 16).ok()?, it.next()?.parse().ok()?))
            })
            .collect())
    }

    async fn write(path: &PathBuf, entries: &[(String, u64, SocketAddr)]) -> io::Result<()> {
        let text: String = entries.iter().map(|(m, n, a)| format!("{m} {n:016x} {a}\n")).collect();
        tokio::fs::write(path, text).await
    }
}

impl Resolver for FileResolver {
    fn resolve(&self, mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let (path, lock, mesh) = (self.path.clone(), self.lock.clone(), mesh.to_string());
        Box::pin(async move {
            let _g = lock.lock().await;
            let entries = Self::read(&path).await?;
            // Newest entries last in the file: offer the newest, so joins spread over the mesh.
            Ok(entries.iter().rev().filter(|e| e.0 == mesh).map(|e| e.2).take(max_addresses).collect())
        })
    }

    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let (path, lock, mesh, addrs) = (self.path.clone(), self.lock.clone(), mesh.to_string(), addrs.to_vec());
        Box::pin(async move {
            let _g = lock.lock().await;
            let mut entries = Self::read(&path).await?;
            entries.extend(addrs.into_iter().map(|a| (mesh.clone(), node.get(), a)));
            Self::write(&path, &entries).await
        })
    }

    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        let (path, lock, mesh) = (self.path.clone(), self.lock.clone(), mesh.to_string());
        Box::pin(async move {
            let _g = lock.lock().await;
            let mut entries = Self::read(&path).await?;
            entries.retain(|e| !(e.0 == mesh && e.1 == node.get()));
            Self::write(&path, &entries).await
        })
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run(Args::parse()).await {
        eprintln!("custom_resolver: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let resolver = Arc::new(FileResolver::new(args.directory.clone()));
    if args.first && args.nodes > 1 {
        // A fresh mesh: forget entries of earlier runs.
        let _ = std::fs::remove_file(&args.directory);
    }
    let local = "127.0.0.1:0".parse()?;
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let mut b = PeerNode::builder().mesh(&args.mesh).listen(local).resolver(resolver.clone());
        if i == 0 && (args.first || args.nodes > 1) {
            b = b.open_alone();
        }
        let node = b.open().await?;
        println!("node {} listening on {} joined {}", node.id(), node.local_addr(), node.mesh());
        nodes.push(node);
    }
    let mut channels = Vec::new();
    for n in &nodes {
        channels.push(n.channel("/hello")?);
    }
    // Give registrations and the mesh a moment, then greet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (n, ch) in nodes.iter().zip(&channels) {
        ch.send(format!("hello from {}", n.id())).await?;
    }
    println!("directory now lists:\n{}", tokio::fs::read_to_string(&args.directory).await.unwrap_or_default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for (n, ch) in nodes.iter().zip(channels.iter_mut()) {
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, ch.recv()).await {
            println!("{} got {:?} ({} hops)", n.id(), String::from_utf8_lossy(&m.payload), m.hops);
        }
    }
    drop(channels);
    for n in nodes {
        n.close().await;
    }
    println!(
        "after leaving, the directory lists:\n{}",
        tokio::fs::read_to_string(&args.directory).await.unwrap_or_default()
    );
    Ok(())
}

/// Runs with `cargo test` (the example is built as a test too): three nodes join a mesh through
/// the file directory alone, greet each other, and leave it empty behind them.
#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_nodes_join_through_the_file_directory() {
        let path = std::env::temp_dir().join(format!("peerchannel-custom-resolver-{}.txt", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let resolver = Arc::new(FileResolver::new(path.clone()));
        let mut nodes = Vec::new();
        for i in 0..3 {
            let mut b = PeerNode::builder()
                .mesh("filemesh-test")
                .listen("127.0.0.1:0".parse().unwrap())
                .resolver(resolver.clone())
                .lan_discovery(false);
            if i == 0 {
                b = b.open_alone();
            }
            nodes.push(b.open().await.expect("open through the directory"));
        }
        let mut channels: Vec<_> = nodes.iter().map(|n| n.channel("/hello").unwrap()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Registration follows the open; every node appears in the directory.
        while FileResolver::read(&path).await.unwrap().len() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "not every node registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Wait until every node has a neighbor, then each greets the others.
        for n in &nodes {
            while n.neighbors().await.unwrap().is_empty() {
                assert!(tokio::time::Instant::now() < deadline, "a node found no neighbor");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for (i, ch) in channels.iter().enumerate() {
            ch.send(format!("hello from {i}")).await.unwrap();
        }
        for (i, ch) in channels.iter_mut().enumerate() {
            let mut got = std::collections::BTreeSet::new();
            while got.len() < 2 {
                let m = tokio::time::timeout_at(deadline, ch.recv()).await.expect("greetings arrive").unwrap();
                got.insert(String::from_utf8_lossy(&m.payload).to_string());
            }
            assert!(!got.contains(&format!("hello from {i}")));
        }
        drop(channels);
        for n in nodes {
            n.close().await;
        }
        assert!(FileResolver::read(&path).await.unwrap().is_empty(), "closing nodes unregister");
        let _ = std::fs::remove_file(&path);
    }
}
