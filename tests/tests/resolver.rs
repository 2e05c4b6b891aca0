//! A user-written resolver behind the `Resolver` trait: nodes register when they open, find each
//! other through it alone (no bootstrap list), and unregister when they close gracefully.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use peerchannel_tests::{fast_config, init_tracing, is_one_mesh, loopback, wait_until, PATIENCE};
use peerchannel_tokio::{BoxFuture, Error, MeshId, NodeId, PeerNode, Resolver, StaticResolver};

/// Members of each mesh, with their announced addresses.
type Directory = BTreeMap<MeshId, BTreeMap<NodeId, Vec<SocketAddr>>>;

/// An in-process directory of mesh members, shared by the nodes of a test.
#[derive(Clone, Default)]
struct Registry(Arc<Mutex<Directory>>);

impl Registry {
    fn members(&self, mesh: &str) -> Vec<NodeId> {
        let g = self.0.lock().unwrap();
        g.get(&MeshId::new(mesh).unwrap()).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }
}

impl Resolver for Registry {
    fn resolve(&self, mesh: &MeshId, max: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let g = self.0.lock().unwrap();
        // Newest members last; answer with the newest few so joins spread out.
        let addrs: Vec<SocketAddr> = g
            .get(mesh)
            .map(|m| m.values().flat_map(|a| a.first().copied()).rev().take(max).collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(addrs) })
    }

    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        self.0.lock().unwrap().entry(mesh.clone()).or_default().insert(node, addrs.to_vec());
        Box::pin(async { Ok(()) })
    }

    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        if let Some(m) = self.0.lock().unwrap().get_mut(mesh) {
            m.remove(&node);
        }
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn nodes_find_each_other_through_a_custom_resolver() {
    init_tracing();
    let registry = Registry::default();
    let empty =
        PeerNode::builder().config(fast_config("dir")).listen(loopback()).resolver(registry.clone()).open().await;
    assert!(matches!(empty, Err(Error::NoPeersFound)), "an empty directory must fail open clearly: {empty:?}");

    let mut nodes = Vec::new();
    for i in 0..6 {
        let mut b = PeerNode::builder().config(fast_config("dir")).listen(loopback()).resolver(registry.clone());
        if i == 0 {
            b = b.open_alone();
        }
        nodes.push(b.open().await.unwrap());
    }
    let refs: Vec<&PeerNode> = nodes.iter().collect();
    wait_until("the mesh forms through the resolver", PATIENCE, || is_one_mesh(&refs, 2, 7)).await;
    wait_until("every node registered", PATIENCE, || async { registry.members("dir").len() == 6 }).await;

    let mut rx = nodes[5].channel("/x").unwrap();
    nodes[0].channel("/x").unwrap().send("via the directory").await.unwrap();
    let m = tokio::time::timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    assert_eq!(m.origin, nodes[0].id());

    let leaving = nodes.pop().unwrap();
    let id = leaving.id();
    leaving.close().await;
    assert!(!registry.members("dir").contains(&id), "a graceful close must unregister");
    assert_eq!(registry.members("dir").len(), 5);
}

#[tokio::test]
async fn a_static_resolver_joins_like_a_bootstrap_list() {
    init_tracing();
    let first = PeerNode::builder().config(fast_config("fixed")).listen(loopback()).open_alone().open().await.unwrap();
    let second = PeerNode::builder()
        .config(fast_config("fixed"))
        .listen(loopback())
        .resolver(StaticResolver::new([first.local_addr()]))
        .open()
        .await
        .unwrap();
    assert_eq!(second.neighbors().await.unwrap()[0].node, first.id());
    let s = second.stats().await.unwrap();
    assert!(s.core.resolves >= 1, "the node asked its resolver");
}
