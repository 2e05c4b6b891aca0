//! Serverless LAN discovery: nodes of a mesh find each other by UDP multicast, with no
//! resolver service and no addresses configured.
//!
//! A node that registers answers queries for its mesh; a node that resolves sends a query to
//! the group (IPv4 `239.255.77.77`, IPv6 link-local `ff02::7767`, port 7767 by default) from
//! a fresh ephemeral socket and gathers the answers that come back to it by unicast for a
//! short window. The format is the core's [`LanPacket`]; every packet is validated (magic,
//! version, size, a valid mesh ID, at most [`MAX_RECORDS`] records of at most
//! [`MAX_ADDRS`] dialable addresses) and anything else is dropped and counted.
//!
//! So that a large LAN does not storm: queries from one source address are rate limited
//! (a token bucket per source, the table bounded), answers are delayed by a random jitter
//! and capped per second overall, and a node sends at most one query per mesh per
//! [`LanConfig::min_query_interval`].
//!
//! The packet format and the rate limits are the sans-IO core's (`resolver::lan`); this module
//! owns only the sockets and the tasks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use peerchannel_core::{MeshId, NodeId, Rng};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::resolver::{BoxFuture, Resolver};

pub use peerchannel_core::resolver::lan::{LanPacket, MAX_ADDRS, MAX_PACKET, MAX_RECORDS};
use peerchannel_core::resolver::lan::{QueryPacer, SourceLimiter};

/// Settings of LAN discovery. All nodes of a mesh on a LAN must agree on group and port.
#[derive(Clone, Debug)]
pub struct LanConfig {
    /// UDP port of the group. Default 7767.
    pub port: u16,
    /// IPv4 group. Default `239.255.77.77` (organisation-local scope).
    pub group_v4: Ipv4Addr,
    /// Interface (by address) to join and send on; unspecified: the one the OS routes
    /// multicast through. Tests use `127.0.0.1` to stay on the machine.
    pub interface_v4: Ipv4Addr,
    /// Also use IPv6 (best effort: skipped if the host has no IPv6 multicast). Default true.
    pub ipv6: bool,
    /// IPv6 group. Default `ff02::7767` (link-local scope).
    pub group_v6: Ipv6Addr,
    /// IPv6 interface index (0: the OS's choice).
    pub interface_v6: u32,
    /// How long a resolve gathers answers. Default 400 ms.
    pub query_window: Duration,
    /// Answers are delayed by a random time up to this. Default 100 ms.
    pub max_answer_jitter: Duration,
    /// Least time between two queries for one mesh from this resolver. Default 250 ms.
    pub min_query_interval: Duration,
    /// Queries answered per second from one source address at most. Default 5.
    pub queries_per_source_per_sec: u32,
    /// Answers sent per second at most, over all sources. Default 100.
    pub answers_per_sec: u32,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            port: 7767,
            group_v4: Ipv4Addr::new(239, 255, 77, 77),
            interface_v4: Ipv4Addr::UNSPECIFIED,
            ipv6: true,
            group_v6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x7767),
            interface_v6: 0,
            query_window: Duration::from_millis(400),
            max_answer_jitter: Duration::from_millis(100),
            min_query_interval: Duration::from_millis(250),
            queries_per_source_per_sec: 5,
            answers_per_sec: 100,
        }
    }
}

/// Counters of a [`LanResolver`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LanStats {
    /// Queries sent.
    pub queries_sent: u64,
    /// Queries received (valid ones).
    pub queries_received: u64,
    /// Answers sent.
    pub answers_sent: u64,
    /// Answers received that matched a query of ours.
    pub answers_received: u64,
    /// Packets dropped as malformed, foreign or stale.
    pub invalid: u64,
    /// Queries not answered because of a rate limit.
    pub rate_limited: u64,
}

#[derive(Default)]
struct Counters {
    queries_sent: AtomicU64,
    queries_received: AtomicU64,
    answers_sent: AtomicU64,
    answers_received: AtomicU64,
    invalid: AtomicU64,
    rate_limited: AtomicU64,
}

struct Inner {
    cfg: LanConfig,
    sender: u64,
    /// What this resolver answers for: (mesh, node) → listen addresses.
    entries: Mutex<HashMap<(MeshId, NodeId), Vec<SocketAddr>>>,
    /// Spaces this resolver's queries (the core's rule; times on the core's scale from `origin`).
    pacer: Mutex<QueryPacer>,
    /// Where the core's time scale starts.
    origin: Instant,
    rng: Mutex<Rng>,
    counters: Counters,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Instants on the core's scale: nanoseconds since the resolver started.
fn core_time(origin: Instant, t: Instant) -> peerchannel_core::Instant {
    peerchannel_core::Instant::from_nanos(
        u64::try_from(t.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A [`Resolver`] that finds members of a mesh on the local network by UDP multicast, with
/// no server.
///
/// Registered nodes answer queries for their mesh; [`resolve`](Resolver::resolve) sends a
/// query to the group and gathers unicast answers for [`LanConfig::query_window`]. Queries
/// per source and answers per second are rate limited and answers jittered (see
/// [`LanConfig`]); the wire format is [`LanPacket`](crate::LanPacket).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use peerchannel_tokio::{LanConfig, LanResolver, PeerNode};
/// let lan = LanResolver::start(LanConfig::default())?;
/// let node = PeerNode::builder().mesh("soccerpals").resolver(lan).open().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LanResolver {
    inner: Arc<Inner>,
}

impl fmt::Debug for LanResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanResolver").field("port", &self.inner.cfg.port).finish_non_exhaustive()
    }
}

fn v4_listener(cfg: &LanConfig) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Every node on the host listens on the group's port.
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port)).into())?;
    s.join_multicast_v4(&cfg.group_v4, &cfg.interface_v4)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn v6_listener(cfg: &LanConfig) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, cfg.port, 0, 0)).into())?;
    s.join_multicast_v6(&cfg.group_v6, cfg.interface_v6)?;
    s.set_multicast_loop_v6(true)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn v4_sender(cfg: &LanConfig) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(cfg.interface_v4, 0)).into())?;
    if !cfg.interface_v4.is_unspecified() {
        s.set_multicast_if_v4(&cfg.interface_v4)?;
    }
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn v6_sender(cfg: &LanConfig) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.bind(&SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)).into())?;
    if cfg.interface_v6 != 0 {
        s.set_multicast_if_v6(cfg.interface_v6)?;
    }
    s.set_multicast_hops_v6(1)?;
    s.set_multicast_loop_v6(true)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

impl LanResolver {
    /// Joins the multicast group(s) and starts answering queries. Fails if IPv4 multicast is
    /// unavailable (no interface, no route for the group); IPv6 is best effort. Must be called
    /// within a tokio runtime.
    pub fn start(cfg: LanConfig) -> io::Result<Self> {
        let v4 = UdpSocket::from_std(v4_listener(&cfg)?)?;
        // Probe that a query can be sent at all, so a host without multicast fails here, at
        // open, rather than at every resolve.
        drop(v4_sender(&cfg)?);
        let v6 = if cfg.ipv6 {
            match v6_listener(&cfg).and_then(UdpSocket::from_std) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(error = %e, "LAN discovery: no IPv6 multicast");
                    None
                }
            }
        } else {
            None
        };
        let seed = crate::node::os_seed();
        let cfg_interval = cfg.min_query_interval;
        let inner = Arc::new(Inner {
            cfg,
            sender: seed | 1,
            entries: Mutex::new(HashMap::new()),
            pacer: Mutex::new(QueryPacer::new(cfg_interval)),
            origin: Instant::now(),
            rng: Mutex::new(Rng::from_seed(seed.rotate_left(17))),
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = vec![tokio::spawn(listen(Arc::downgrade(&inner), v4))];
        if let Some(v6) = v6 {
            tasks.push(tokio::spawn(listen(Arc::downgrade(&inner), v6)));
        }
        *lock(&inner.tasks) = tasks;
        Ok(LanResolver { inner })
    }

    /// Counters now.
    pub fn stats(&self) -> LanStats {
        let c = &self.inner.counters;
        LanStats {
            queries_sent: c.queries_sent.load(Ordering::Relaxed),
            queries_received: c.queries_received.load(Ordering::Relaxed),
            answers_sent: c.answers_sent.load(Ordering::Relaxed),
            answers_received: c.answers_received.load(Ordering::Relaxed),
            invalid: c.invalid.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
        }
    }

    /// Asks the LAN for up to `max` members of `mesh` (not those registered through this
    /// resolver), waiting one query window.
    pub async fn query(&self, mesh: &MeshId, max: usize) -> io::Result<Vec<SocketAddr>> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        // At most one query per mesh per interval: a burst of resolves waits instead.
        let wait = {
            let now = core_time(inner.origin, Instant::now());
            let slot = lock(&inner.pacer).next_slot(mesh, now);
            Instant::now() + slot.saturating_duration_since(now)
        };
        tokio::time::sleep_until(wait).await;
        let id = (lock(&inner.rng).next_u64() as u32).max(1);
        let max = max.clamp(1, MAX_RECORDS);
        let q = LanPacket::Query { id, sender: inner.sender, mesh: mesh.clone(), max: max as u8 }.encode();
        let v4 = v4_sender(cfg)?;
        v4.send_to(&q, SocketAddrV4::new(cfg.group_v4, cfg.port)).await?;
        inner.counters.queries_sent.fetch_add(1, Ordering::Relaxed);
        let v6 = if cfg.ipv6 {
            match v6_sender(cfg) {
                Ok(s) => match s.send_to(&q, SocketAddrV6::new(cfg.group_v6, cfg.port, 0, cfg.interface_v6)).await {
                    Ok(_) => Some(s),
                    Err(_) => None,
                },
                Err(_) => None,
            }
        } else {
            None
        };
        let own: HashSet<SocketAddr> =
            lock(&inner.entries).iter().filter(|((m, _), _)| m == mesh).flat_map(|(_, a)| a.clone()).collect();
        let mut found: Vec<SocketAddr> = Vec::new();
        let mut nodes: HashSet<u64> = HashSet::new();
        let deadline = Instant::now() + cfg.query_window;
        let mut b4 = [0u8; MAX_PACKET + 1];
        let mut b6 = [0u8; MAX_PACKET + 1];
        while nodes.len() < max {
            let got = tokio::select! {
                r = v4.recv_from(&mut b4) => r.map(|(n, _)| b4[..n].to_vec()),
                r = async { match &v6 { Some(s) => s.recv_from(&mut b6).await, None => std::future::pending().await } } => r.map(|(n, _)| b6[..n].to_vec()),
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let Ok(bytes) = got else { continue };
            match LanPacket::decode(&bytes) {
                Some(LanPacket::Answer { id: aid, sender, mesh: m, records })
                    if aid == id && m == *mesh && sender != inner.sender =>
                {
                    inner.counters.answers_received.fetch_add(1, Ordering::Relaxed);
                    for (node, addrs) in records {
                        if addrs.iter().any(|a| own.contains(a)) || !nodes.insert(node) {
                            continue;
                        }
                        found.extend(addrs);
                    }
                }
                _ => {
                    inner.counters.invalid.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(found)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// Answers queries arriving on the group socket. Ends when the resolver is dropped.
async fn listen(weak: std::sync::Weak<Inner>, sock: UdpSocket) {
    let mut buf = [0u8; MAX_PACKET + 1];
    let (per_source, per_sec) = match weak.upgrade() {
        Some(i) => (i.cfg.queries_per_source_per_sec, i.cfg.answers_per_sec),
        None => return,
    };
    let mut sources = SourceLimiter::new(per_source);
    let mut global = SourceLimiter::new(per_sec);
    let out = match UdpSocket::bind(SocketAddr::new(
        if sock.local_addr().map(|a| a.is_ipv6()).unwrap_or(false) {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        },
        0,
    ))
    .await
    {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::warn!(error = %e, "LAN discovery: cannot open a socket for answers");
            return;
        }
    };
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "LAN discovery: receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(inner) = weak.upgrade() else { return };
        let packet = LanPacket::decode(&buf[..n]);
        let Some(LanPacket::Query { id, sender, mesh, max }) = packet else {
            if packet.is_none() {
                inner.counters.invalid.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        };
        if sender == inner.sender {
            continue;
        }
        inner.counters.queries_received.fetch_add(1, Ordering::Relaxed);
        let records: Vec<(u64, Vec<SocketAddr>)> = lock(&inner.entries)
            .iter()
            .filter(|((m, _), _)| *m == mesh)
            .map(|((_, node), addrs)| (node.get(), addrs.clone()))
            .take(usize::from(max).clamp(1, MAX_RECORDS))
            .collect();
        if records.is_empty() {
            continue;
        }
        let now = core_time(inner.origin, Instant::now());
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        if !sources.allow(from.ip(), now) || !global.allow(any, now) {
            inner.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let jitter = {
            let ms = inner.cfg.max_answer_jitter.as_millis() as usize;
            Duration::from_millis(if ms == 0 { 0 } else { lock(&inner.rng).below(ms + 1) as u64 })
        };
        let answer = LanPacket::Answer { id, sender: inner.sender, mesh, records }.encode();
        let (out, weak2) = (out.clone(), weak.clone());
        // Bounded by the global answer rate: at most `answers_per_sec` of these are alive.
        tokio::spawn(async move {
            tokio::time::sleep(jitter).await;
            if out.send_to(&answer, from).await.is_ok() {
                if let Some(i) = weak2.upgrade() {
                    i.counters.answers_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

impl Resolver for LanResolver {
    fn resolve(&self, mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let (this, mesh) = (self.clone(), mesh.clone());
        Box::pin(async move { this.query(&mesh, max_addresses).await })
    }

    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let addrs: Vec<SocketAddr> =
            addrs.iter().copied().filter(|a| peerchannel_core::mesh::is_dialable(*a)).take(MAX_ADDRS).collect();
        let r = if addrs.is_empty() {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "no dialable address to announce on the LAN"))
        } else {
            lock(&self.inner.entries).insert((mesh.clone(), node), addrs);
            Ok(())
        };
        Box::pin(async move { r })
    }

    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        lock(&self.inner.entries).remove(&(mesh.clone(), node));
        Box::pin(async { Ok(()) })
    }
}
