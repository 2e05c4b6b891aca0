//! The topologies measured: tokio `PeerNode`s in this process on loopback.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use peerchannel_tokio::security::SecurityMode;
use peerchannel_tokio::{Builder, Config, MeshId, PeerNode};

use crate::{Scenario, Security};

/// PBKDF2 rounds of the benchmark's password: few, since every node of the run derives the key
/// at start-up and the derivation is not what is measured.
const ITERATIONS: u32 = 1_000;

/// A running topology: `nodes[0]` is the origin, `receivers` index the nodes that subscribe.
pub struct Net {
    /// Every node; the origin first.
    pub nodes: Vec<PeerNode>,
    /// Indexes into `nodes` of the receivers (the last node for a link or chain; every node
    /// but the origin for the mesh).
    pub receivers: Vec<usize>,
}

impl Net {
    /// Closes every node.
    pub async fn close(self) {
        for n in self.nodes {
            n.close().await;
        }
    }
}

fn builder(security: Security, config: Config) -> Builder {
    let local: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let b = PeerNode::builder().config(config).listen(local).lan_discovery(false);
    let mode = match security {
        Security::None => return b,
        Security::Tls => SecurityMode::Transport,
        Security::Signed => SecurityMode::TransportAndMessage,
    };
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    b.password("peerchannel-bench").password_iterations(iterations).security(mode)
}

fn degree(mut c: Config, min: usize, ideal: usize, max: usize) -> Config {
    c.min_neighbors = min;
    c.ideal_neighbors = ideal;
    c.max_neighbors = max;
    c
}

/// Builds `scenario` with messages of up to `size` bytes and waits until it has formed.
pub async fn build(scenario: Scenario, size: usize, security: Security) -> Result<Net, Box<dyn std::error::Error>> {
    let mesh = MeshId::new("peerchannel-bench")?;
    let mut base = Config::new(mesh, 0);
    base.max_message_size = size.max(base.max_message_size);
    // A fixed topology while measuring: no periodic link refresh.
    base.refresh_interval = None;
    let net = match scenario {
        Scenario::Link => {
            let a = builder(security, degree(base.clone(), 1, 1, 1)).open_alone().open().await?;
            let b = builder(security, degree(base, 1, 1, 1)).bootstrap([a.local_addr()]).open().await?;
            Net { nodes: vec![a, b], receivers: vec![1] }
        }
        Scenario::Chain => {
            // A → B → C: A and C take one neighbor, B relays between them.
            let a = builder(security, degree(base.clone(), 1, 1, 1)).open_alone().open().await?;
            let b = builder(security, degree(base.clone(), 1, 2, 2)).bootstrap([a.local_addr()]).open().await?;
            let c = builder(security, degree(base, 1, 1, 1)).bootstrap([b.local_addr()]).open().await?;
            Net { nodes: vec![a, b, c], receivers: vec![2] }
        }
        Scenario::Mesh10 => {
            // Default degrees (min 2, ideal 3, max 7); each node joins through up to three
            // earlier ones, so the mesh is connected from the start and the maintainer fills
            // in the rest.
            let mut nodes: Vec<PeerNode> = Vec::with_capacity(10);
            nodes.push(builder(security, base.clone()).open_alone().open().await?);
            for i in 1..10 {
                let mut boot = vec![nodes[i - 1].local_addr(), nodes[i / 2].local_addr(), nodes[0].local_addr()];
                boot.dedup();
                nodes.push(builder(security, base.clone()).bootstrap(boot).open().await?);
            }
            let min = base.min_neighbors;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut degrees = Vec::with_capacity(nodes.len());
                for n in &nodes {
                    degrees.push(n.neighbors().await.map_or(0, |v| v.len()));
                }
                if degrees.iter().all(|&d| d >= min) {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!("mesh10: not every node reached {min} neighbors in 10 s (degrees {degrees:?}); measuring anyway");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Net { nodes, receivers: (1..10).collect() }
        }
    };
    Ok(net)
}
