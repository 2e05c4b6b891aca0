//! The resolver service's transport: a TCP server that answers the core's resolver frames
//! from one in-memory [`ResolverService`]. Every decision (quotas, lifetimes, which records a
//! Resolve returns, what a malformed request gets) is the core's; this module only owns
//! sockets, buffers, the clock and the logs.
//!
//! Per connection it holds at most one read chunk plus one partial frame, and at most
//! [`ServerConfig::max_buffered_replies`] bytes of replies before it writes them out, so a
//! client that pipelines thousands of requests, or never reads its replies, costs a bounded
//! amount of memory: once the socket's send buffer is full, the connection stops reading and
//! TCP flow control pushes back on the client.
//!
//! Recovery story: the directory is in memory only. After a restart it is empty; every node's
//! registrar refreshes at half its granted lifetime, gets `NotFound` and registers again at
//! once, so the directory is whole again within one refresh interval (half a lifetime).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerchannel_core::resolver::frames::{split_resolver_frame, Request, MAX_RESOLVER_FRAME};
use peerchannel_core::resolver::registry::{Registry, RegistryConfig};
use peerchannel_core::resolver::service::{AfterReply, ResolverService};
use peerchannel_core::resolver::ClientId;
use peerchannel_core::{Instant as CoreInstant, MeshId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Settings of a [`ResolverServer`]. The registry's quotas and lifetime are the core's
/// [`RegistryConfig`] (its defaults are the service's defaults).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Lifetimes and quotas of the directory.
    pub registry: RegistryConfig,
    /// Connections served at once; more are accepted and closed at once. Default 10,000 (the
    /// process's file descriptor limit, `ulimit -n`, must allow it).
    pub max_connections: usize,
    /// Connections from one IP address at once, so one host cannot take every slot.
    /// Default 1,000.
    pub max_connections_per_ip: usize,
    /// A connection on which no whole request arrived for this long is closed (this also
    /// bounds how long a client trickling bytes can hold a slot). Default 120 s.
    pub idle_timeout: Duration,
    /// Reply bytes a connection gathers before it writes them out (and stops handling its
    /// pipelined requests until they are written). Default 64 KiB.
    pub max_buffered_replies: usize,
    /// Period of the summary log line (`None`: no summary). Default 60 s.
    pub summary_interval: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            registry: RegistryConfig::default(),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            idle_timeout: Duration::from_secs(120),
            max_buffered_replies: 64 * 1024,
            summary_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// Counters of a running [`ResolverServer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections closed at once because `max_connections` (or `max_connections_per_ip` for
    /// their address) were open.
    pub refused: u64,
    /// Connections closed for a malformed request or frame.
    pub closed_bad: u64,
    /// Connections closed because no request arrived within the idle timeout.
    pub closed_idle: u64,
    /// Requests answered (errors included).
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Malformed requests.
    pub bad_requests: u64,
    /// Live records in the directory (expired ones are dropped at the next summary or request).
    pub records: usize,
    /// Meshes with at least one record.
    pub meshes: usize,
}

impl std::fmt::Display for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "connections={} accepted={} refused={} requests={} errors={} bad_requests={} closed_bad={} closed_idle={} records={} meshes={}",
            self.connections,
            self.accepted,
            self.refused,
            self.requests,
            self.errors,
            self.bad_requests,
            self.closed_bad,
            self.closed_idle,
            self.records,
            self.meshes
        )
    }
}

struct Shared {
    service: Mutex<ResolverService>,
    origin: Instant,
    connections: AtomicUsize,
    per_ip: Mutex<std::collections::HashMap<IpAddr, usize>>,
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_bad: AtomicU64,
    closed_idle: AtomicU64,
}

impl Shared {
    fn now(&self) -> CoreInstant {
        core_now(self.origin)
    }

    /// The service, even if a task panicked while holding it (the core's state stays
    /// consistent between calls: a panic could only come from a bug, not from input).
    fn service(&self) -> MutexGuard<'_, ResolverService> {
        self.service.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> ServerStats {
        let s = self.service();
        let c = s.stats();
        ServerStats {
            connections: self.connections.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            closed_bad: self.closed_bad.load(Ordering::Relaxed),
            closed_idle: self.closed_idle.load(Ordering::Relaxed),
            requests: c.requests,
            errors: c.errors,
            bad_requests: c.bad_requests,
            records: s.registry().len(),
            meshes: s.registry().mesh_count(),
        }
    }

    /// Drops expired records now, so the counts in a summary are live ones. The core drops
    /// them on every registry operation; a Resolve that asks for nothing is the cheapest one
    /// reachable through the service (a `ResolverService::expire` would be cleaner).
    fn expire(&self) {
        if let Ok(mesh) = MeshId::new("expire") {
            let now = self.now();
            let mut s = self.service();
            let _ = s.handle(
                now,
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                Request::Resolve { req: 0, client: ClientId::default(), mesh, max: 0 },
            );
        }
    }
}

/// The core's clock: nanoseconds since `origin`.
pub(crate) fn core_now(origin: Instant) -> CoreInstant {
    CoreInstant::from_nanos(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

/// A secret for registration IDs, from the OS's random source.
pub fn os_secret() -> io::Result<[u8; 32]> {
    use ring::rand::SecureRandom;
    let mut s = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut s).map_err(|_| io::Error::other("the OS random source failed"))?;
    Ok(s)
}

/// A running resolver service: a TCP listener and one task per connection, all answering from
/// one in-memory directory. The `peerchannel-resolver` binary is a command line around it;
/// tests and applications can embed it.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use peerchannel_tokio::service::{ResolverServer, ServerConfig};
/// let server = ResolverServer::bind("127.0.0.1:7700".parse().unwrap(), ServerConfig::default()).await?;
/// println!("resolver on {}", server.local_addr());
/// # Ok(()) }
/// ```
pub struct ResolverServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ResolverServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverServer").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl ResolverServer {
    /// Binds `addr` and starts serving, with a registration secret drawn from the OS.
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> io::Result<Self> {
        Self::bind_with_secret(addr, config, os_secret()?).await
    }

    /// Binds `addr` and starts serving, with a fixed registration secret (for reproducible
    /// tests only: whoever knows the secret can compute registration IDs).
    pub async fn bind_with_secret(addr: SocketAddr, config: ServerConfig, secret: [u8; 32]) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            service: Mutex::new(ResolverService::new(Registry::new(config.registry.clone(), secret))),
            origin: Instant::now(),
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(std::collections::HashMap::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            closed_bad: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
        });
        tracing::info!(
            addr = %local_addr,
            lifetime_secs = config.registry.lifetime.as_secs(),
            max_meshes = config.registry.max_meshes,
            max_records_per_mesh = config.registry.max_records_per_mesh,
            max_records_per_source = config.registry.max_records_per_source,
            max_connections = config.max_connections,
            "resolver service listening"
        );
        let task = tokio::spawn(accept_loop(listener, shared.clone(), config));
        Ok(ResolverServer { local_addr, shared, task: Some(task) })
    }

    /// The address it listens on (with the port the OS chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters now.
    pub fn stats(&self) -> ServerStats {
        self.shared.expire();
        self.shared.stats()
    }

    /// Stops accepting and closes every connection; the directory is dropped (a restart
    /// starts empty, and nodes register again on their next refresh).
    pub async fn shutdown(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
        tracing::info!(addr = %self.local_addr, "resolver service stopped");
    }

    /// Serves until the process ends (for the binary).
    pub async fn run_forever(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ResolverServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, config: ServerConfig) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    // Dropping the set (when this task is aborted) aborts every connection task.
    let mut conns = JoinSet::new();
    let mut summary = config.summary_interval.map(|p| tokio::time::interval_at(Instant::now() + p, p));
    let mut last_requests = 0u64;
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    shared.accepted.fetch_add(1, Ordering::Relaxed);
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "connection refused: max_connections reached");
                        drop(stream);
                        continue;
                    };
                    let ip = peer.ip();
                    let admitted = {
                        let mut m = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
                        let n = m.entry(ip).or_insert(0);
                        if *n >= config.max_connections_per_ip {
                            false
                        } else {
                            *n += 1;
                            true
                        }
                    };
                    if !admitted {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, "connection refused: max_connections_per_ip reached");
                        continue;
                    }
                    let (shared, config) = (shared.clone(), config.clone());
                    conns.spawn(async move {
                        shared.connections.fetch_add(1, Ordering::Relaxed);
                        serve(stream, peer, &shared, &config).await;
                        shared.connections.fetch_sub(1, Ordering::Relaxed);
                        let mut m = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(n) = m.get_mut(&ip) {
                            *n -= 1;
                            if *n == 0 {
                                m.remove(&ip);
                            }
                        }
                        drop(m);
                        drop(permit);
                    });
                }
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = async { match &mut summary { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                shared.expire();
                let s = shared.stats();
                let secs = last_at.elapsed().as_secs_f64().max(1e-3);
                let rate = (s.requests - last_requests) as f64 / secs;
                last_requests = s.requests;
                last_at = Instant::now();
                tracing::info!(
                    connections = s.connections,
                    records = s.records,
                    meshes = s.meshes,
                    requests = s.requests,
                    req_per_sec = rate.round() as u64,
                    errors = s.errors,
                    bad_requests = s.bad_requests,
                    refused = s.refused,
                    "summary"
                );
            }
        }
    }
}

/// Why a connection ended.
enum End {
    Eof,
    Bad,
    Idle,
    Io(io::Error),
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &Shared, config: &ServerConfig) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "set_nodelay failed");
    }
    tracing::debug!(%peer, "client connected");
    let end = serve_inner(&mut stream, peer.ip(), shared, config).await;
    match end {
        End::Eof => tracing::debug!(%peer, "client disconnected"),
        End::Bad => {
            shared.closed_bad.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "closed: malformed request");
        }
        End::Idle => {
            shared.closed_idle.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "closed: idle");
        }
        End::Io(e) => tracing::debug!(%peer, error = %e, "closed: I/O error"),
    }
}

async fn serve_inner(stream: &mut TcpStream, source: IpAddr, shared: &Shared, config: &ServerConfig) -> End {
    const READ_CHUNK: usize = 16 * 1024;
    let mut buf = BytesMut::with_capacity(READ_CHUNK + MAX_RESOLVER_FRAME);
    let mut out = BytesMut::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let mut deadline = Instant::now() + config.idle_timeout;
    loop {
        // Bounded: at most one partial frame is carried over, plus one chunk.
        buf.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => return End::Idle,
            Ok(Err(e)) => return End::Io(e),
            Ok(Ok(0)) => return End::Eof,
            Ok(Ok(_)) => {}
        }
        let mut pending = buf.split().freeze();
        let mut bad = false;
        loop {
            match split_resolver_frame(&mut pending) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "undecodable frame");
                    bad = true;
                    break;
                }
            }
        }
        if !bad {
            buf.extend_from_slice(&pending);
        }
        if !frames.is_empty() {
            deadline = Instant::now() + config.idle_timeout;
        }
        let mut close = false;
        let mut i = 0;
        while i < frames.len() {
            {
                let now = shared.now();
                let mut s = shared.service();
                while i < frames.len() && out.len() < config.max_buffered_replies {
                    let after = s.handle_frame(now, source, &frames[i], &mut out);
                    i += 1;
                    if after == AfterReply::Close {
                        close = true;
                        break;
                    }
                }
            }
            if let Err(e) = stream.write_all(&out).await {
                return End::Io(e);
            }
            out.clear();
            if close {
                break;
            }
        }
        frames.clear();
        if close {
            return End::Bad;
        }
        if bad {
            // Oversized or empty frame: the length prefix cannot be trusted, so the stream
            // cannot be resynchronised. Answer like the core answers an undecodable request.
            {
                let now = shared.now();
                shared.service().handle_frame(now, source, &[], &mut out);
            }
            let _ = stream.write_all(&out).await;
            return End::Bad;
        }
    }
}
