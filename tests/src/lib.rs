//! Shared helpers of peerchannel's integration tests: fast timings, mesh start-up on loopback,
//! and waiting on conditions (never on fixed sleeps) with generous timeouts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use peerchannel_core::wire::{self, Connect, Frame, Hello};
use peerchannel_tokio::{Config, MeshId, NodeId, PeerNode, ServiceResolver};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub mod adapters;
pub mod embed;

/// Generous bound for any condition a test waits on: long enough for a loaded 2-core machine,
/// short enough that a real hang fails the test instead of the CI run.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Loopback with an OS-chosen port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A configuration with timings scaled down for tests: maintenance, repair and keepalive run
/// in fractions of a second so that meshes form and heal quickly, while timeouts keep a wide
/// margin over them so a busy machine does not trip them.
pub fn fast_config(mesh: &str) -> Config {
    let mut c = Config::new(mesh_id(mesh), 0);
    c.maintainer_interval = Duration::from_millis(300);
    c.repair_retry_interval = Duration::from_millis(100);
    c.connect_timeout = Duration::from_secs(5);
    c.keepalive_interval = Duration::from_millis(500);
    c.idle_timeout = Duration::from_secs(5);
    c.refresh_interval = Some(Duration::from_secs(1));
    c.close_linger = Duration::from_secs(1);
    c.resolve_timeout = Duration::from_secs(2);
    c
}

/// A valid mesh ID (panics on a typo in a test).
pub fn mesh_id(mesh: &str) -> MeshId {
    match MeshId::new(mesh) {
        Ok(m) => m,
        Err(e) => panic!("bad mesh id {mesh:?} in a test: {e}"),
    }
}

/// Installs a tracing subscriber when `RUST_LOG` is set (for debugging a failing test).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
}

/// Waits until `check` returns true, polling every 20 ms; panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `n` nodes of `mesh` on loopback: the first opens alone, each later one bootstraps
/// from up to three earlier ones. `config` may change each node's configuration.
pub async fn start_mesh(mesh: &str, n: usize, config: impl Fn(&mut Config)) -> Vec<PeerNode> {
    let mut nodes: Vec<PeerNode> = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = fast_config(mesh);
        config(&mut c);
        let mut b = PeerNode::builder().config(c).listen(loopback()).channel_capacity(8192);
        if i == 0 {
            b = b.open_alone();
        } else {
            let picks: BTreeSet<usize> = [0, i / 2, i - 1].into_iter().collect();
            b = b.bootstrap(picks.into_iter().map(|j| nodes[j].local_addr()));
        }
        match b.open().await {
            Ok(node) => nodes.push(node),
            Err(e) => panic!("node {i} of {mesh} failed to open: {e}"),
        }
    }
    nodes
}

/// Whether `nodes` form one mesh: every neighbor of each is one of `nodes` (so departed
/// nodes are forgotten), every degree is within [min, max], and the graph is connected.
pub async fn is_one_mesh(nodes: &[&PeerNode], min: usize, max: usize) -> bool {
    let mut graph: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
    for n in nodes {
        let Ok(nb) = n.neighbors().await else { return false };
        graph.insert(n.id(), nb.iter().map(|x| x.node).collect());
    }
    forms_one_mesh(&graph, min, max)
}

/// Whether `graph` (each node's neighbors) is one mesh: every neighbor is a node of the graph,
/// every degree is within [min, max], and every node is reachable from every other.
pub fn forms_one_mesh(graph: &BTreeMap<NodeId, Vec<NodeId>>, min: usize, max: usize) -> bool {
    for neighbors in graph.values() {
        if neighbors.len() < min || neighbors.len() > max {
            return false;
        }
        if neighbors.iter().any(|x| !graph.contains_key(x)) {
            return false;
        }
    }
    let Some(&start) = graph.keys().next() else { return true };
    let mut seen = BTreeSet::from([start]);
    let mut todo = VecDeque::from([start]);
    while let Some(x) = todo.pop_front() {
        for y in graph.get(&x).into_iter().flatten() {
            if seen.insert(*y) {
                todo.push_back(*y);
            }
        }
    }
    seen.len() == graph.len()
}

/// Waits until `count()` (a running count of neighbors gained and lost, see [`neighbor_changes`])
/// reads the same twice `quiet` apart, that is until the maintainer has settled; panics after
/// [`PATIENCE`].
pub async fn wait_until_no_neighbor_changes<F, Fut>(quiet: Duration, mut count: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = u64>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = count().await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = count().await;
        if now == last {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the mesh never settled");
        last = now;
    }
}

/// Neighbors a node has gained plus those it has lost, from its core statistics.
pub fn neighbor_changes(core: &peerchannel_core::Stats) -> u64 {
    core.neighbors_up + core.neighbors_down.iter().sum::<u64>()
}

/// Opens a node of `mesh` alone on loopback, registered with the resolver service at `service`.
pub async fn open_alone_with_service(mesh: &str, service: SocketAddr) -> PeerNode {
    PeerNode::builder()
        .config(fast_config(mesh))
        .listen(loopback())
        .resolver(ServiceResolver::new(service))
        .open_alone()
        .open()
        .await
        .unwrap_or_else(|e| panic!("node of {mesh} failed to open: {e}"))
}

/// Reads until the node closes the connection; true if it did within the patience.
pub async fn closed_by_node(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    ended.is_ok()
}

/// The bytes a raw initiator sends to join `mesh` as node `node` (Hello, then Connect), for
/// tests that play a misbehaving peer by hand.
pub fn handshake_bytes(mesh: &str, node: u64) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    wire::encode_control(&Frame::Hello(Hello { version: wire::VERSION, security: 0, mesh: mesh_id(mesh) }), &mut out);
    let id = NodeId::new(node).unwrap_or_else(|| panic!("node id 0 in a test"));
    wire::encode_control(&Frame::Connect(Connect { node: id, addrs: Default::default() }), &mut out);
    out.to_vec()
}
