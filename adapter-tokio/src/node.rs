//! The user's handle on a node, and its builder.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use peerchannel_core::security::SecurityOptions;
use peerchannel_core::{ChannelPath, ChannelUri, Config, Instant as CoreInstant, MeshId, NeighborInfo, Node, NodeId};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::auto::{AutoResolver, AutoStats};
use crate::channel::{Channel, ChannelSender};
use crate::driver::{Command, Driver, DriverParts, SendRequest, Settings};
use crate::error::Error;
use crate::events::EventStream;
use crate::lan::{LanConfig, LanResolver};
use crate::mailbox::Mailbox;
use crate::resolver::Resolver;
use crate::security::{os_key_seed, CertificateCredentials, Credentials, SecurityMode};
use crate::service_client::{ReferralPolicy, ServiceResolver};
use crate::stats::NodeStats;

/// Local sends that may wait for the node's task at once, beyond those the core is holding
/// back: the queue between senders and the node stays small and bounded.
const SEND_QUEUE: usize = 64;

/// Builds and opens a [`PeerNode`]. Start with [`PeerNode::builder`].
///
/// ```no_run
/// # async fn demo() -> Result<(), peerchannel_tokio::Error> {
/// use peerchannel_tokio::PeerNode;
///
/// let first = PeerNode::builder().mesh("soccerpals").listen("127.0.0.1:0".parse().unwrap()).open_alone().open().await?;
/// let second = PeerNode::builder()
///     .uri("net.p2p://soccerpals")
///     .listen("127.0.0.1:0".parse().unwrap())
///     .bootstrap([first.local_addr()])
///     .open()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `open` is awaited"]
pub struct Builder {
    mesh: Option<String>,
    uri: Option<String>,
    listen: SocketAddr,
    announce: Option<Vec<SocketAddr>>,
    bootstrap: Vec<SocketAddr>,
    resolver: Option<Arc<dyn Resolver>>,
    service: Option<SocketAddr>,
    referral_policy: ReferralPolicy,
    lan: Option<bool>,
    lan_config: LanConfig,
    config: Option<Config>,
    seed: Option<u64>,
    open_alone: bool,
    open_timeout: Duration,
    channel_capacity: usize,
    event_capacity: usize,
    deliver_timeout: Duration,
    forward_wait: Option<Duration>,
    write_window: usize,
    security: SecurityOptions,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("mesh", &self.mesh)
            .field("uri", &self.uri)
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("has_resolver", &self.resolver.is_some())
            .field("service", &self.service)
            .field("lan", &self.lan)
            .field("open_alone", &self.open_alone)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            mesh: None,
            uri: None,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            announce: None,
            bootstrap: Vec::new(),
            resolver: None,
            service: None,
            referral_policy: ReferralPolicy::default(),
            lan: None,
            lan_config: LanConfig::default(),
            config: None,
            seed: None,
            open_alone: false,
            open_timeout: Duration::from_secs(30),
            channel_capacity: 1024,
            event_capacity: 1024,
            deliver_timeout: Duration::from_millis(100),
            forward_wait: None,
            write_window: 64 * 1024,
            security: SecurityOptions::default(),
        }
    }
}

impl Builder {
    /// The mesh to join, e.g. `"soccerpals"` (validated by `open`).
    pub fn mesh(mut self, mesh: impl Into<String>) -> Self {
        self.mesh = Some(mesh.into());
        self
    }

    /// The mesh to join, as a URI such as `net.p2p://soccerpals` (a path in it is ignored:
    /// channels are opened with [`PeerNode::channel`]).
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = Some(uri.into());
        self
    }

    /// Where to listen for neighbors. Default: all IPv4 interfaces, a port the OS chooses.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The addresses this node announces to others (handed on as referrals). Default: the
    /// listening address; when that is unspecified (`0.0.0.0`), the address of the interface
    /// that routes outward, with the listening port.
    pub fn announce(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.announce = Some(addrs.into_iter().collect());
        self
    }

    /// Known members to dial first (added to the configuration's bootstrap list).
    pub fn bootstrap(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.bootstrap.extend(addrs);
        self
    }

    /// A resolver of the application's own, asked for members when there are no bootstrap
    /// addresses and no referrals. It replaces Auto mode entirely: no resolver service and no
    /// LAN discovery are used (wrap them in your resolver, or use [`AutoResolver`], to combine).
    pub fn resolver(mut self, resolver: impl Resolver) -> Self {
        self.resolver = Some(Arc::new(resolver));
        self
    }

    /// The `peerchannel-resolver` service to register with and resolve through (Auto mode:
    /// the service when it answers, else LAN discovery, else the bootstrap list).
    pub fn resolver_service(mut self, addr: SocketAddr) -> Self {
        self.service = Some(addr);
        self
    }

    /// Whether nodes share referrals when a resolver service is used (default
    /// [`ReferralPolicy::Service`]: unless the service says it controls the mesh's shape).
    pub fn referral_policy(mut self, policy: ReferralPolicy) -> Self {
        self.referral_policy = policy;
        self
    }

    /// Serverless LAN discovery (UDP multicast) in Auto mode. Default: on when no bootstrap
    /// address is given (zero configuration: nodes of a mesh on one LAN find each other by
    /// its name alone), off otherwise. Ignored when [`resolver`](Self::resolver) is given.
    pub fn lan_discovery(mut self, on: bool) -> Self {
        self.lan = Some(on);
        self
    }

    /// Group, port, interface and rate limits of LAN discovery (all nodes of a mesh must
    /// agree on group and port).
    pub fn lan_config(mut self, config: LanConfig) -> Self {
        self.lan_config = config;
        self
    }

    /// The core configuration (timings, neighbor counts, queue bounds...). Its mesh is used
    /// unless `mesh`/`uri` is given; its seed is replaced (see [`seed`](Self::seed)); its
    /// listen addresses, if any, are announced as given.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Protects the mesh with a password: every link runs TLS 1.3 and each side proves it
    /// knows the password, bound to that link's session (the mode becomes
    /// [`SecurityMode::Transport`] unless [`security`](Self::security) chose another; every
    /// member needs the same password and mode). `open` stretches the password into the mesh
    /// key with PBKDF2 ([`DEFAULT_PBKDF2_ITERATIONS`](crate::security::DEFAULT_PBKDF2_ITERATIONS)
    /// rounds, a fraction of a second, off the async threads). The password never appears in
    /// `Debug` output or logs.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), peerchannel_tokio::Error> {
    /// use peerchannel_tokio::PeerNode;
    /// let node = PeerNode::builder().mesh("soccerpals").password("s3cret").bootstrap(["192.0.2.7:7000".parse().unwrap()]).open().await?;
    /// # Ok(()) }
    /// ```
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.security.password(password);
        self
    }

    /// PBKDF2 rounds for [`password`](Self::password). Every member of a mesh must use the
    /// same count. Fewer rounds make offline guessing cheaper: lower it only for tests and
    /// examples. Default [`DEFAULT_PBKDF2_ITERATIONS`](crate::security::DEFAULT_PBKDF2_ITERATIONS).
    pub fn password_iterations(mut self, iterations: NonZeroU32) -> Self {
        self.security.iterations(iterations);
        self
    }

    /// Protects the mesh with X.509 certificates: every link runs TLS 1.3 and each peer's chain
    /// must lead to one of `credentials.trust_anchors` (and pass its pins, revocation lists and
    /// validator). The mode becomes [`SecurityMode::Transport`] unless
    /// [`security`](Self::security) chose another.
    pub fn certificate(mut self, credentials: CertificateCredentials) -> Self {
        self.security.certificate(credentials);
        self
    }

    /// Ready-made credentials, e.g. one [`Credentials::password`] derived once and shared by
    /// several nodes of one process. The mode becomes [`SecurityMode::Transport`] unless
    /// [`security`](Self::security) chose another.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.security.credentials(credentials);
        self
    }

    /// The security mode: [`SecurityMode::None`], `Transport` (TLS 1.3 links), `Message`
    /// (floods signed end to end; needs [`certificate`](Self::certificate)) or
    /// `TransportAndMessage`. Default: `Transport` when a password or certificate is given,
    /// else the configuration's (none). A mode that does not fit the credentials makes `open`
    /// fail with [`Error::Security`].
    pub fn security(mut self, mode: SecurityMode) -> Self {
        self.security.mode(mode);
        self
    }

    /// Seeds the node's random choices (node ID, message IDs, referral picks). Default: a
    /// fresh seed from the OS. Give one only to reproduce a run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Let `open` return at once, without a neighbor: for the first node of a mesh. Without it,
    /// `open` waits until the node has a neighbor or fails with the first connection error.
    pub fn open_alone(mut self) -> Self {
        self.open_alone = true;
        self
    }

    /// How long `open` waits for a first neighbor. Default 30 s.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Received messages each [`Channel`] queues before the drop policy applies. Default 1024.
    pub fn channel_capacity(mut self, messages: usize) -> Self {
        self.channel_capacity = messages.max(1);
        self
    }

    /// Events each [`EventStream`] queues before dropping the oldest. Default 1024.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// How long the node pauses reading while a channel's queue is full before it drops the
    /// message (see [`Channel`]). Zero drops at once. Default 100 ms.
    pub fn deliver_timeout(mut self, timeout: Duration) -> Self {
        self.deliver_timeout = timeout;
        self
    }

    /// How long a received flood may wait for room in a neighbor's send queue (sets
    /// [`Config::forward_wait`]). While one waits, the node stops reading the link it came on,
    /// so TCP flow control slows the senders upstream and a neighbor that is slow but alive
    /// keeps up instead of being evicted; after it the flood goes on, and a neighbor still
    /// without room is evicted (NodeTooSlow), which bounds memory. Zero never waits. Default
    /// 250 ms.
    pub fn forward_wait(mut self, wait: Duration) -> Self {
        self.forward_wait = Some(wait);
        self
    }

    /// Bytes taken from the core per connection ahead of the socket, written with vectored
    /// writes. Larger batches fewer system calls; the bytes beyond it stay in the core's
    /// bounded queue where backpressure sees them. Default 64 KiB.
    pub fn write_window(mut self, bytes: usize) -> Self {
        self.write_window = bytes.max(1);
        self
    }

    /// Binds the listener, starts the node's task and joins the mesh. Returns once the node
    /// has its first neighbor (or at once with [`open_alone`](Self::open_alone)) and, with a
    /// resolver, once its registration finished (so the next node can find it), or fails with
    /// the first connection error when no member can be reached.
    pub async fn open(self) -> Result<PeerNode, Error> {
        let mesh = match (&self.uri, &self.mesh, &self.config) {
            (Some(uri), _, _) => {
                ChannelUri::parse(uri).map_err(|source| Error::InvalidMeshId { given: uri.clone(), source })?.mesh
            }
            (None, Some(m), _) => MeshId::new(m).map_err(|source| Error::InvalidMeshId { given: m.clone(), source })?,
            (None, None, Some(c)) => c.mesh.clone(),
            (None, None, None) => return Err(Error::MissingMesh),
        };
        let seed = self.seed.unwrap_or_else(os_seed);
        let mut config = self.config.unwrap_or_else(|| Config::new(mesh.clone(), seed));
        config.mesh = mesh.clone();
        config.seed = seed;
        config.bootstrap.extend(self.bootstrap.iter().copied());
        if let Some(wait) = self.forward_wait {
            config.forward_wait = wait;
        }
        let security = self.security;
        let applied = if security.needs_derivation() {
            // PBKDF2 takes a fraction of a second on purpose: not on an async thread.
            tokio::task::spawn_blocking(move || security.apply(config, os_key_seed)).await.map_err(|_| Error::Closed)?
        } else {
            security.apply(config, os_key_seed)
        };
        let mut config = applied.map_err(|_| Error::NoRandomness)?;
        config.validate().map_err(Error::from_config)?;
        let (resolver, auto) = match self.resolver {
            Some(r) => (Some(r), None),
            None => {
                // Auto mode: the service when configured, LAN discovery (by default when there
                // is no bootstrap list), the bootstrap list; nothing at all is an error now,
                // not a hang later.
                let service = self.service.map(|a| ServiceResolver::new(a).referral_policy(self.referral_policy));
                let mut lan_error = None;
                let lan = if self.lan.unwrap_or(config.bootstrap.is_empty()) {
                    match LanResolver::start(self.lan_config.clone()) {
                        Ok(l) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "LAN discovery unavailable");
                            lan_error = Some(e);
                            None
                        }
                    }
                } else {
                    None
                };
                if service.is_none() && lan.is_none() {
                    if config.bootstrap.is_empty() && !self.open_alone {
                        return Err(match lan_error {
                            Some(source) => Error::NoResolver { source },
                            None => Error::NoPeers,
                        });
                    }
                    (None, None)
                } else {
                    let a = AutoResolver::new(service, lan, config.bootstrap.clone());
                    (Some(Arc::new(a.clone()) as Arc<dyn Resolver>), Some(a))
                }
            }
        };
        if let Some(r) = &resolver {
            // The referral policy: ask once, before the first link, and fall back to sharing
            // when the resolver cannot say (a core switch to also ignore received referrals
            // is pending; see the README).
            match tokio::time::timeout(Duration::from_secs(2), r.can_share_referrals()).await {
                Ok(Ok(false)) => {
                    tracing::info!("the resolver controls the mesh's shape: sending no referrals");
                    config.max_referrals = 0;
                }
                Ok(Ok(true)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "referral policy unknown; sharing referrals"),
                Err(_) => tracing::debug!("referral policy query timed out; sharing referrals"),
            }
        }

        let listener =
            TcpListener::bind(self.listen).await.map_err(|source| Error::Listen { addr: self.listen, source })?;
        let local = listener.local_addr().map_err(|source| Error::Listen { addr: self.listen, source })?;
        if let Some(a) = self.announce {
            config.listen_addrs = a;
        } else if config.listen_addrs.is_empty() {
            config.listen_addrs = vec![announced(local)];
        }
        let listen_addrs = config.listen_addrs.clone();
        let max_message_size = config.max_message_size;

        let origin = tokio::time::Instant::now();
        let node = Node::new(config, CoreInstant::ZERO).map_err(Error::from_config)?;
        let id = node.id();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (send_tx, send_rx) = mpsc::channel(SEND_QUEUE);
        let (open_reply, opened) = oneshot::channel();
        let driver = Driver::new(DriverParts {
            node,
            origin,
            settings: Settings {
                deliver_timeout: self.deliver_timeout,
                write_window: self.write_window,
                read_chunk: 64 * 1024,
                open_alone: self.open_alone,
                open_timeout: self.open_timeout,
            },
            listener,
            resolver,
            cmd_rx,
            send_rx,
            open_reply,
        });
        let span = tracing::info_span!("peer_node", mesh = %mesh, node = %id, addr = %local);
        let task = tokio::spawn(driver.run().instrument(span));
        let handle = PeerNode {
            id,
            mesh,
            local_addr: local,
            listen_addrs,
            max_message_size,
            cmd_tx,
            send_tx,
            task: Some(task),
            next_sub: AtomicU64::new(1),
            channel_capacity: self.channel_capacity,
            event_capacity: self.event_capacity,
            auto,
        };
        match opened.await {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }
}

/// One member of one mesh, running on the current tokio runtime.
///
/// A task owns the protocol core, the sockets and the timer; this handle talks to it.
/// Several nodes (of the same or different meshes) can run in one process.
///
/// Leave with [`close`](Self::close): neighbors are told (Disconnect, LeavingMesh) and the
/// resolver registration is removed. Dropping the handle instead stops the node at once, like
/// a crash: sockets close, neighbors notice and repair the mesh; it never blocks.
///
/// ```no_run
/// # async fn demo() -> Result<(), peerchannel_tokio::Error> {
/// use peerchannel_tokio::PeerNode;
///
/// let node = PeerNode::builder().mesh("soccerpals").bootstrap(["192.0.2.7:7000".parse().unwrap()]).open().await?;
/// let mut chat = node.channel("/chat")?;
/// chat.send("hi all").await?;
/// if let Some(msg) = chat.recv().await {
///     println!("{}: {}", msg.origin, String::from_utf8_lossy(&msg.payload));
/// }
/// println!("{} neighbors", node.neighbors().await?.len());
/// node.close().await;
/// # Ok(()) }
/// ```
pub struct PeerNode {
    id: NodeId,
    mesh: MeshId,
    local_addr: SocketAddr,
    listen_addrs: Vec<SocketAddr>,
    max_message_size: usize,
    cmd_tx: mpsc::UnboundedSender<Command>,
    send_tx: mpsc::Sender<SendRequest>,
    task: Option<JoinHandle<()>>,
    next_sub: AtomicU64,
    channel_capacity: usize,
    event_capacity: usize,
    auto: Option<AutoResolver>,
}

impl fmt::Debug for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerNode")
            .field("id", &self.id)
            .field("mesh", &self.mesh)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl PeerNode {
    /// A builder for a new node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// This node's ID in the mesh.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The mesh it belongs to.
    pub fn mesh(&self) -> &MeshId {
        &self.mesh
    }

    /// The address the listener is bound to (with the port the OS chose).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The addresses this node announces to others.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen_addrs
    }

    /// In Auto mode (no [`Builder::resolver`] given), which backends the node has and which
    /// answered its resolves: the resolver service, LAN discovery or the bootstrap list.
    /// `None` with a custom resolver or a bootstrap list alone.
    pub fn resolver_stats(&self) -> Option<AutoStats> {
        self.auto.as_ref().map(AutoResolver::stats)
    }

    /// The Auto-mode resolver (to read its service or LAN counters), if the node uses one.
    pub fn auto_resolver(&self) -> Option<&AutoResolver> {
        self.auto.as_ref()
    }

    /// The largest payload a send accepts.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// A handle for the service path `path` (e.g. `"/chat"`): send floods on it and receive
    /// those of other members. Several channels (and several handles for one path, each
    /// receiving every message) may be open at once.
    pub fn channel(&self, path: &str) -> Result<Channel, Error> {
        let path = ChannelPath::new(path).map_err(|source| Error::InvalidPath { given: path.to_owned(), source })?;
        let mailbox = Mailbox::new(self.channel_capacity);
        let id = self.next_sub.fetch_add(1, Ordering::Relaxed);
        self.cmd_tx
            .send(Command::Subscribe { id, path: path.clone(), mailbox: mailbox.clone() })
            .map_err(|_| Error::Closed)?;
        Ok(Channel {
            sender: ChannelSender { path, send_tx: self.send_tx.clone(), max_message_size: self.max_message_size },
            mailbox,
            id,
            cmd_tx: self.cmd_tx.clone(),
        })
    }

    /// The node's events from now on. If the node is closed, the stream ends at once.
    pub fn events(&self) -> EventStream {
        let mailbox = Mailbox::new(self.event_capacity);
        if self.cmd_tx.send(Command::Events { mailbox: mailbox.clone() }).is_err() {
            mailbox.close_sender();
        }
        EventStream { mailbox }
    }

    /// The core's and the adapter's counters now.
    pub async fn stats(&self) -> Result<NodeStats, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Stats(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The current neighbors (node ID, address, utility, queued bytes, round-trip time).
    pub async fn neighbors(&self) -> Result<Vec<NeighborInfo>, Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx.send(Command::Neighbors(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Tells the node its listen addresses changed (an interface came or went, a NAT mapping
    /// moved): later Connects announce them and the resolver registration is updated.
    pub fn set_listen_addrs(&self, addrs: Vec<SocketAddr>) -> Result<(), Error> {
        self.cmd_tx.send(Command::ListenAddrs(addrs)).map_err(|_| Error::Closed)
    }

    /// Leaves the mesh gracefully: tells every neighbor (Disconnect, LeavingMesh), removes the
    /// resolver registration, and waits (at most `Config::close_linger`) for the farewells to
    /// be written. Channels and event streams then end.
    pub async fn close(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd_tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PeerNode {
    fn drop(&mut self) {
        // Abrupt leave (see the type's docs); aborting never waits.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The address to announce for a listener bound to `local`.
fn announced(local: SocketAddr) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let ip = outward_ip(local.is_ipv6()).unwrap_or(if local.is_ipv6() {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    });
    SocketAddr::new(ip, local.port())
}

/// The local address of the interface that routes toward the internet: connecting a UDP
/// socket only consults the routing table, it sends nothing.
fn outward_ip(v6: bool) -> Option<IpAddr> {
    let (bind, probe) = if v6 { ("[::]:0", "[2001:db8::1]:9") } else { ("0.0.0.0:0", "192.0.2.1:9") };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(probe).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// A seed from the OS: std's hasher keys are drawn from the OS's random source.
pub(crate) fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}
