//! The client of the peerchannel resolver service: a [`Resolver`] that talks the core's
//! resolver frames over one TCP connection (reconnected on demand), with request numbers,
//! timeouts, and the core's [`Registrar`] keeping each node's registration alive.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::BytesMut;
use peerchannel_core::resolver::client::Registrar;
use peerchannel_core::resolver::frames::{
    decode_reply, encode_request, split_resolver_frame, Reply, Request, MAX_RESOLVER_FRAME,
};
use peerchannel_core::resolver::ClientId;
use peerchannel_core::{MeshId, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::resolver::{BoxFuture, Resolver};
use crate::service::core_now;

/// Whether nodes hand each other referrals (neighbors' addresses) besides what the resolver
/// returns, as in the original's `PeerReferralPolicy`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum ReferralPolicy {
    /// Ask the service (GetServiceInfo): share unless it says it controls the mesh's shape.
    #[default]
    Service,
    /// Always share referrals.
    Share,
    /// Never send referrals: the resolver alone shapes the mesh.
    DoNotShare,
}

/// Counters of a [`ServiceResolver`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceClientStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed: connection refused or lost, timed out, or an error reply.
    pub failures: u64,
    /// Connections opened to the service (the first one included).
    pub connects: u64,
    /// Registrations granted (re-registrations after a service restart included).
    pub registrations: u64,
    /// Refreshes granted.
    pub refreshes: u64,
    /// Resolves answered.
    pub resolves: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    connects: AtomicU64,
    registrations: AtomicU64,
    refreshes: AtomicU64,
    resolves: AtomicU64,
}

/// One request for the connection task: its reply (with the caller's request number) goes
/// back on `reply`.
struct Call {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

struct Registration {
    client: ClientId,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    /// New listen addresses for the registration task (the newest wins).
    update: mpsc::Sender<Vec<SocketAddr>>,
}

struct Inner {
    addr: SocketAddr,
    request_timeout: Duration,
    connect_timeout: Duration,
    policy: ReferralPolicy,
    base_client: ClientId,
    conn: Mutex<Option<mpsc::Sender<Call>>>,
    registrations: Mutex<HashMap<(MeshId, NodeId), Registration>>,
    service_shares: Mutex<Option<bool>>,
    counters: Counters,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A [`Resolver`] backed by a `peerchannel-resolver` service.
///
/// - One TCP connection, opened on first use and again after it fails; requests are pipelined
///   on it and matched to replies by request number.
/// - Each request times out after [`request_timeout`](Self::request_timeout) (default 5 s).
/// - `register` starts a task per node driving the core's `Registrar`: it refreshes at half the
///   granted lifetime, registers again when the service forgot the record (after a restart),
///   and backs off while the service is unreachable. `unregister` stops it and removes the
///   record.
/// - Each node registers with its own random client ID; a resolve made while this resolver
///   holds exactly one registration in the mesh uses that node's client ID, so the service
///   never returns the asker's own record.
///
/// Give each node its own `ServiceResolver` (it is cheap) unless nodes share a process on
/// purpose.
///
/// ```no_run
/// # async fn demo() -> Result<(), peerchannel_tokio::Error> {
/// use peerchannel_tokio::{PeerNode, ServiceResolver};
/// let node = PeerNode::builder()
///     .mesh("soccerpals")
///     .resolver(ServiceResolver::new("127.0.0.1:7700".parse().unwrap()))
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServiceResolver {
    inner: Arc<Inner>,
}

impl fmt::Debug for ServiceResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceResolver")
            .field("addr", &self.inner.addr)
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

fn random_client() -> ClientId {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Client IDs only need to be distinct, not secret: fall back to std's random keys.
        let s = crate::node::os_seed().to_le_bytes();
        let t = crate::node::os_seed().to_le_bytes();
        b[..8].copy_from_slice(&s);
        b[8..].copy_from_slice(&t);
    }
    ClientId(b)
}

impl ServiceResolver {
    /// A client of the service at `addr`, with the default referral policy (`Service`).
    pub fn new(addr: SocketAddr) -> Self {
        Self::build(addr, ReferralPolicy::default(), Duration::from_secs(5))
    }

    fn build(addr: SocketAddr, policy: ReferralPolicy, request_timeout: Duration) -> Self {
        ServiceResolver {
            inner: Arc::new(Inner {
                addr,
                request_timeout,
                connect_timeout: request_timeout,
                policy,
                base_client: random_client(),
                conn: Mutex::new(None),
                registrations: Mutex::new(HashMap::new()),
                service_shares: Mutex::new(None),
                counters: Counters::default(),
            }),
        }
    }

    /// The same client with another referral policy.
    pub fn referral_policy(self, policy: ReferralPolicy) -> Self {
        Self::build(self.inner.addr, policy, self.inner.request_timeout)
    }

    /// The same client with another request (and connect) timeout.
    pub fn request_timeout(self, timeout: Duration) -> Self {
        Self::build(self.inner.addr, self.inner.policy, timeout.max(Duration::from_millis(1)))
    }

    /// The service's address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Counters now.
    pub fn stats(&self) -> ServiceClientStats {
        let c = &self.inner.counters;
        ServiceClientStats {
            requests: c.requests.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            registrations: c.registrations.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            resolves: c.resolves.load(Ordering::Relaxed),
        }
    }

    /// Sends one request and waits for its reply (or the timeout). An error reply is returned
    /// as a reply, not as an `Err`.
    pub async fn call(&self, request: Request) -> io::Result<Reply> {
        self.inner.call(request).await
    }

    /// Whether nodes using this resolver should share referrals, per the policy (asking the
    /// service once with `Service`).
    pub async fn can_share_referrals(&self) -> io::Result<bool> {
        match self.inner.policy {
            ReferralPolicy::Share => Ok(true),
            ReferralPolicy::DoNotShare => Ok(false),
            ReferralPolicy::Service => {
                if let Some(s) = *lock(&self.inner.service_shares) {
                    return Ok(s);
                }
                match self.inner.call(Request::GetServiceInfo { req: 1 }).await? {
                    Reply::ServiceInfo { control_shape, .. } => {
                        *lock(&self.inner.service_shares) = Some(!control_shape);
                        Ok(!control_shape)
                    }
                    other => Err(unexpected(&other)),
                }
            }
        }
    }
}

fn unexpected(r: &Reply) -> io::Error {
    match r {
        Reply::Error { error, .. } => io::Error::other(format!("resolver service: {error}")),
        _ => io::Error::new(io::ErrorKind::InvalidData, "resolver service: unexpected reply"),
    }
}

fn set_req(r: &mut Request, n: u32) {
    match r {
        Request::Register { req, .. }
        | Request::Update { req, .. }
        | Request::Refresh { req, .. }
        | Request::Unregister { req, .. }
        | Request::Resolve { req, .. }
        | Request::GetServiceInfo { req } => *req = n,
    }
}

fn set_reply_req(r: &mut Reply, n: u32) {
    match r {
        Reply::Registered { req, .. }
        | Reply::Refreshed { req, .. }
        | Reply::Resolved { req, .. }
        | Reply::ServiceInfo { req, .. }
        | Reply::Done { req }
        | Reply::Error { req, .. } => *req = n,
    }
}

impl Inner {
    async fn call(&self, request: Request) -> io::Result<Reply> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let r = tokio::time::timeout(self.request_timeout, self.call_inner(request)).await;
        let r = match r {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "resolver service did not answer in time")),
        };
        if !matches!(r, Ok(ref reply) if !matches!(reply, Reply::Error { .. })) {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn call_inner(&self, request: Request) -> io::Result<Reply> {
        let tx = {
            let mut g = lock(&self.conn);
            match g.as_ref().filter(|tx| !tx.is_closed()) {
                Some(tx) => tx.clone(),
                None => {
                    let (tx, rx) = mpsc::channel(256);
                    self.counters.connects.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection(self.addr, self.connect_timeout, rx));
                    *g = Some(tx.clone());
                    tx
                }
            }
        };
        let (reply, rx) = oneshot::channel();
        tx.send(Call { request, reply })
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::ConnectionAborted, "resolver connection closed"))?;
        rx.await.map_err(|_| {
            io::Error::new(io::ErrorKind::ConnectionAborted, "resolver connection failed before the reply")
        })
    }
}

/// Owns one connection to the service: writes calls as they come (pipelined), matches
/// replies by wire request number. Ends on any error; pending calls then fail (their reply
/// senders are dropped) and the next call opens a new connection.
async fn connection(addr: SocketAddr, connect_timeout: Duration, mut calls: mpsc::Receiver<Call>) {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "resolver service unreachable");
            return;
        }
        Err(_) => {
            tracing::debug!(%addr, "resolver service connect timed out");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut pending: HashMap<u32, (u32, oneshot::Sender<Reply>)> = HashMap::new();
    let mut next: u32 = 1;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = BytesMut::new();
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(mut call) = call else { return };
                // Bounded: a service that stopped answering cannot make us hold calls forever
                // (each caller also times out and drops its receiver).
                pending.retain(|_, (_, tx)| !tx.is_closed());
                if pending.len() >= 4096 {
                    continue;
                }
                let original = call.request.req();
                let wire = next;
                next = next.wrapping_add(1).max(1);
                set_req(&mut call.request, wire);
                out.clear();
                encode_request(&call.request, &mut out);
                pending.insert(wire, (original, call.reply));
                if let Err(e) = wr.write_all(&out).await {
                    tracing::debug!(%addr, error = %e, "resolver service write failed");
                    return;
                }
            }
            read = rd.read_buf(&mut buf) => {
                match read {
                    Ok(0) => { tracing::debug!(%addr, "resolver service closed the connection"); return; }
                    Err(e) => { tracing::debug!(%addr, error = %e, "resolver service read failed"); return; }
                    Ok(_) => {}
                }
                let mut view = buf.split().freeze();
                loop {
                    match split_resolver_frame(&mut view) {
                        Ok(Some(f)) => match decode_reply(&f) {
                            Ok(mut reply) => {
                                if let Some((original, tx)) = pending.remove(&reply.req()) {
                                    set_reply_req(&mut reply, original);
                                    let _ = tx.send(reply);
                                } else if reply.req() == 0 {
                                    // The service could not read a request and closes.
                                    tracing::debug!(%addr, ?reply, "resolver service rejected a request");
                                }
                            }
                            Err(e) => { tracing::debug!(%addr, error = %e, "bad reply from resolver service"); return; }
                        },
                        Ok(None) => break,
                        Err(e) => { tracing::debug!(%addr, error = %e, "bad frame from resolver service"); return; }
                    }
                }
                if view.len() > MAX_RESOLVER_FRAME + 4 {
                    return;
                }
                buf.extend_from_slice(&view);
            }
        }
    }
}

/// Drives one node's registration: the core's `Registrar` decides, this task sends and waits.
async fn registration_task(
    weak: Weak<Inner>,
    mut registrar: Registrar,
    addrs: Vec<SocketAddr>,
    first: oneshot::Sender<io::Result<()>>,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
    mut updates: mpsc::Receiver<Vec<SocketAddr>>,
) {
    let origin = Instant::now();
    let mut first = Some(first);
    let mut next = registrar.start(core_now(origin), &addrs);
    loop {
        // Every handle on the resolver is gone (the node was dropped, not closed): stop
        // refreshing and let the record expire, as for a crashed node.
        let Some(inner) = weak.upgrade() else { return };
        if let Some(req) = next.take() {
            let n = req.req();
            let is_register = matches!(req, Request::Register { .. });
            let call = inner.call(req);
            tokio::pin!(call);
            let result = tokio::select! {
                r = &mut call => r,
                done = &mut stop => { if let Ok(d) = done { finish(&inner, &mut registrar, d).await; } return; }
            };
            let now = core_now(origin);
            match result {
                Ok(reply) => {
                    match &reply {
                        Reply::Registered { .. } => {
                            inner.counters.registrations.fetch_add(1, Ordering::Relaxed);
                            if !is_register {
                                tracing::debug!("resolver registration updated");
                            }
                        }
                        Reply::Refreshed { .. } => {
                            inner.counters.refreshes.fetch_add(1, Ordering::Relaxed);
                        }
                        Reply::Error { error, .. } => tracing::debug!(%error, "resolver service refused"),
                        _ => {}
                    }
                    next = registrar.on_reply(now, &reply);
                    if let Some(tx) = first.take_if(|_| next.is_none()) {
                        let r = match registrar.registration() {
                            Some(_) => Ok(()),
                            None => Err(unexpected(&reply)),
                        };
                        let _ = tx.send(r);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "resolver registration request failed");
                    registrar.on_failure(now, n);
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(e));
                    }
                }
            }
            continue;
        }
        drop(inner);
        let wake = registrar.poll_timeout().map(|t| origin + Duration::from_nanos(t.as_nanos()));
        tokio::select! {
            _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {
                next = registrar.handle_timeout(core_now(origin));
            }
            Some(addrs) = updates.recv() => {
                next = registrar.addresses_changed(core_now(origin), &addrs);
            }
            done = &mut stop => {
                if let (Ok(d), Some(inner)) = (done, weak.upgrade()) {
                    finish(&inner, &mut registrar, d).await;
                }
                return;
            }
        }
    }
}

async fn finish(inner: &Inner, registrar: &mut Registrar, done: oneshot::Sender<()>) {
    if let Some(req) = registrar.stop() {
        match inner.call(req).await {
            Ok(Reply::Done { .. }) => tracing::debug!("resolver registration removed"),
            Ok(other) => tracing::debug!(?other, "resolver unregister not confirmed"),
            Err(e) => tracing::debug!(error = %e, "resolver unregister failed"),
        }
    }
    let _ = done.send(());
}

impl Resolver for ServiceResolver {
    fn resolve(&self, mesh: &MeshId, max_addresses: usize) -> BoxFuture<io::Result<Vec<SocketAddr>>> {
        let inner = self.inner.clone();
        let mesh = mesh.clone();
        let client = {
            let regs = lock(&inner.registrations);
            let mut own = regs.iter().filter(|((m, _), _)| *m == mesh);
            match (own.next(), own.next()) {
                (Some((_, r)), None) => r.client,
                _ => inner.base_client,
            }
        };
        let max = u8::try_from(max_addresses.max(1)).unwrap_or(u8::MAX);
        Box::pin(async move {
            match inner.call(Request::Resolve { req: 1, client, mesh, max }).await? {
                Reply::Resolved { records, .. } => {
                    inner.counters.resolves.fetch_add(1, Ordering::Relaxed);
                    Ok(records.into_iter().flatten().collect())
                }
                other => Err(unexpected(&other)),
            }
        })
    }

    fn register(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let inner = self.inner.clone();
        let client = random_client();
        let (first_tx, first_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (update_tx, update_rx) = mpsc::channel(4);
        let old = lock(&inner.registrations)
            .insert((mesh.clone(), node), Registration { client, stop: Some(stop_tx), update: update_tx });
        if let Some(mut old) = old {
            // A second register for the same node replaces the first registration.
            if let Some(s) = old.stop.take() {
                let (tx, _rx) = oneshot::channel();
                let _ = s.send(tx);
            }
        }
        let registrar = Registrar::new(client, mesh.clone());
        tokio::spawn(registration_task(
            Arc::downgrade(&inner),
            registrar,
            addrs.to_vec(),
            first_tx,
            stop_rx,
            update_rx,
        ));
        Box::pin(async move {
            match first_rx.await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::Interrupted, "registration stopped")),
            }
        })
    }

    fn update(&self, mesh: &MeshId, node: NodeId, addrs: &[SocketAddr]) -> BoxFuture<io::Result<()>> {
        let tx = lock(&self.inner.registrations).get(&(mesh.clone(), node)).map(|r| r.update.clone());
        match tx {
            // The registration task sends an Update (the core's Registrar decides when).
            Some(tx) => {
                let addrs = addrs.to_vec();
                Box::pin(async move {
                    tx.send(addrs).await.map_err(|_| io::Error::new(io::ErrorKind::NotConnected, "registration ended"))
                })
            }
            None => self.register(mesh, node, addrs),
        }
    }

    fn unregister(&self, mesh: &MeshId, node: NodeId) -> BoxFuture<io::Result<()>> {
        let reg = lock(&self.inner.registrations).remove(&(mesh.clone(), node));
        let timeout = self.inner.request_timeout * 2;
        Box::pin(async move {
            let Some(mut reg) = reg else { return Ok(()) };
            let Some(stop) = reg.stop.take() else { return Ok(()) };
            let (tx, rx) = oneshot::channel();
            if stop.send(tx).is_err() {
                return Ok(());
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(_) => Ok(()),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "unregister did not finish in time")),
            }
        })
    }

    fn can_share_referrals(&self) -> BoxFuture<io::Result<bool>> {
        let this = self.clone();
        Box::pin(async move { ServiceResolver::can_share_referrals(&this).await })
    }
}
