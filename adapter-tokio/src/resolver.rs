//! Resolvers: how a node finds members of its mesh when it has no referrals.
//!
//! The core decides *when* to ask (joining, repairing, the periodic mesh refresh); the adapter
//! only carries the question to a [`Resolver`] and the answer back. Any backend fits behind the
//! trait: a static list ([`StaticResolver`]), the peerchannel resolver service, LAN discovery,
//! or an application's own directory.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use peerchannel_core::{MeshId, NodeId};

/// A boxed, sendable future, as resolver methods return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Maps a mesh ID to a few member addresses, and optionally records this node as a member.
///
/// Methods return boxed futures so that a resolver can be stored as `Arc<dyn Resolver>` and
/// do its own I/O. They are called from the node's task through `tokio::spawn`, so a slow
/// resolver never blocks the node; the core times a resolve out after
/// `Config::resolve_timeout`.
///
/// ```
/// use std::net::SocketAddr;
/// use peerchannel_core::MeshId;
/// use peerchannel_tokio::{BoxFuture, Resolver};
///
/// /// Reads member addresses from an environment variable, comma-separated.
/// struct EnvResolver;
///
/// impl Resolver for EnvResolver {
///     fn resolve(&self, _mesh: &MeshId, max: usize) -> BoxFuture<std::io::Result<Vec<SocketAddr>>> {
///         let addrs: Vec<SocketAddr> = std::env::var("MESH_PEERS")
///             .unwrap_or_default()
///             .split(',')
///             .filter_map(|s| s.trim().parse().ok())
///             .take(max)
///             .collect();
///         Box::pin(async move { Ok(addrs) })
///     }
/// }
/// # let _ = std::sync::Arc::new(EnvResolver) as std::sync::Arc<dyn Resolver>;
/// ```
pub trait Resolver: Send + Sync + 'static {
    /// Up to `max_addresses` addresses of members of `mesh` (possibly none). An `Err` counts
    /// as a failed resolve (the core retries later).
    fn resolve(&self, mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>>;

    /// Records `node`, listening on `addrs`, as a member of `mesh`. Called once the node
    /// listens. The default does nothing (a static list needs no registration).
    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let _ = (mesh, node, addrs);
        Box::pin(async { Ok(()) })
    }

    /// `node`'s listen addresses changed: update its registration. The default registers
    /// again, which for most directories replaces the record.
    fn update(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        self.register(mesh, node, addrs)
    }

    /// Removes `node`'s registration; called by a graceful `close`. The default does nothing.
    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        let _ = (mesh, node);
        Box::pin(async { Ok(()) })
    }

    /// Whether nodes using this resolver may hand each other referrals (neighbors' addresses
    /// in Welcome, Refuse and Disconnect). Asked once by `open`; when `false` the node sends
    /// none, so the resolver alone decides who meets whom (the original's
    /// `CanShareReferrals`). The default is `true`.
    fn can_share_referrals(&self) -> BoxFuture<io::Result<bool>> {
        Box::pin(async { Ok(true) })
    }
}

impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    fn resolve(&self, mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        (**self).resolve(mesh, max_addresses)
    }
    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        (**self).register(mesh, node, addrs)
    }
    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        (**self).unregister(mesh, node)
    }
    fn can_share_referrals(&self) -> BoxFuture<io::Result<bool>> {
        (**self).can_share_referrals()
    }
}

/// A fixed list of member addresses, answered in rotating order so that repeated resolves
/// spread new nodes over the list instead of all dialing its head.
///
/// ```
/// use peerchannel_tokio::StaticResolver;
/// let r = StaticResolver::new(["127.0.0.1:7000".parse().unwrap(), "127.0.0.1:7001".parse().unwrap()]);
/// assert_eq!(r.addrs().len(), 2);
/// ```
pub struct StaticResolver {
    addrs: Vec<SocketAddr>,
    next: std::sync::atomic::AtomicUsize,
}

impl StaticResolver {
    /// A resolver that always answers with (a rotation of) `addrs`.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        StaticResolver { addrs: addrs.into_iter().collect(), next: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// The configured addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl fmt::Debug for StaticResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticResolver").field("addrs", &self.addrs).finish()
    }
}

impl Resolver for StaticResolver {
    fn resolve(&self, _mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let n = self.addrs.len();
        let start = if n == 0 { 0 } else { self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n };
        let out: Vec<SocketAddr> = (0..n.min(max_addresses)).map(|i| self.addrs[(start + i) % n]).collect();
        Box::pin(async move { Ok(out) })
    }
}
