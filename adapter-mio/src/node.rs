//! The node: a core [`Node`] driven by readiness events of a `mio::Poll` the user owns.
//!
//! Readiness is edge-triggered, so each connection remembers whether it is readable and
//! writable until an operation says `WouldBlock`. Every entry point (`handle_event`,
//! `handle_timeout`, `flush`) runs rounds of: commands from other threads, accepts, connects,
//! held deliveries, reads (unless paused), writes, timers. Each input to the core is followed
//! by draining its outputs. Writes come last in a round, so everything queued in it leaves in
//! as few vectored writes as possible.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::event::Event as MioEvent;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use peerchannel_core::security::SecurityOptions;
use peerchannel_core::{
    ChannelPath, Config, Event, Input, Instant as CoreInstant, LinkId, MeshId, Message, MessageId, NeighborInfo, Node,
    NodeId, Output, SendError, WriteQueue,
};

use crate::error::Error;
use crate::handle::{Command, Commands, Handle};
use crate::security::{os_key_seed, CertificateCredentials, Credentials, SecurityMode};
use crate::stats::{AdapterStats, NodeStats};

/// Slot of the listener in the token range.
const LISTENER: usize = 0;
/// Slot of the waker.
const WAKER: usize = 1;
/// First slot of a connection.
const FIRST_CONN: usize = 2;
/// Rounds of work per entry point before handing control back to the user's loop.
const ROUNDS: usize = 16;
/// Accepts per round.
const ACCEPTS_PER_ROUND: usize = 64;
/// Commands taken per round.
const COMMANDS_PER_ROUND: usize = 256;
/// Most slices in one vectored write (well under every OS's IOV_MAX).
const MAX_IOVECS: usize = 128;

/// Builds and opens a [`MioNode`].
#[derive(Debug, Clone)]
pub struct Builder {
    mesh: Option<String>,
    config: Option<Config>,
    listen: SocketAddr,
    announce: Option<Vec<SocketAddr>>,
    bootstrap: Vec<SocketAddr>,
    seed: Option<u64>,
    open_alone: bool,
    token_base: usize,
    token_count: usize,
    channel_capacity: usize,
    event_capacity: usize,
    handle_capacity: usize,
    deliver_timeout: Duration,
    forward_wait: Option<Duration>,
    write_window: usize,
    read_chunk: usize,
    external_resolver: bool,
    security: SecurityOptions,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            mesh: None,
            config: None,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            announce: None,
            bootstrap: Vec::new(),
            seed: None,
            open_alone: false,
            token_base: 1 << 20,
            token_count: 1024,
            channel_capacity: 1024,
            event_capacity: 1024,
            handle_capacity: 256,
            deliver_timeout: Duration::from_millis(100),
            forward_wait: None,
            write_window: 64 * 1024,
            // Within the largest frame at the default `max_message_size`, as in the tokio
            // adapter: the forward-room check before a read covers one largest flood.
            read_chunk: 64 * 1024,
            external_resolver: false,
            security: SecurityOptions::default(),
        }
    }
}

impl Builder {
    /// The mesh to join (a mesh ID such as `"soccerpals"`).
    pub fn mesh(mut self, mesh: impl Into<String>) -> Self {
        self.mesh = Some(mesh.into());
        self
    }

    /// A full core configuration (its mesh is used unless [`mesh`](Self::mesh) is given; its
    /// bootstrap list is extended by [`bootstrap`](Self::bootstrap)).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Where to listen. Default: all interfaces, an OS-chosen port.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Addresses announced to peers instead of the listening address (behind NAT, say).
    pub fn announce(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.announce = Some(addrs.into_iter().collect());
        self
    }

    /// Members to dial when joining (a static resolver).
    pub fn bootstrap(mut self, addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.bootstrap.extend(addrs);
        self
    }

    /// Protects the mesh with a password: every link runs TLS 1.3 and each side proves it
    /// knows the password, bound to that link's session (the mode becomes
    /// [`SecurityMode::Transport`] unless [`security`](Self::security) chose another; every
    /// member needs the same password and mode). `open` stretches the password into the mesh
    /// key with PBKDF2 ([`DEFAULT_PBKDF2_ITERATIONS`](crate::security::DEFAULT_PBKDF2_ITERATIONS)
    /// rounds: `open` then takes a fraction of a second). The password never appears in `Debug`
    /// output.
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

    /// The seed of the core's random choices. Default: drawn from the OS.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Start a new mesh: no bootstrap addresses are needed.
    pub fn open_alone(mut self) -> Self {
        self.open_alone = true;
        self
    }

    /// The tokens this node may use in the `Poll`: `count` tokens from `base` on (the listener,
    /// the waker, then one per connection). Choose a range none of your own sources use.
    /// Connections beyond `count - 2` are refused (inbound) or fail (dials). Default
    /// `1 << 20`, 1024 tokens.
    pub fn tokens(mut self, base: usize, count: usize) -> Self {
        self.token_base = base;
        self.token_count = count;
        self
    }

    /// Messages each channel queues for [`try_recv`](MioNode::try_recv). Default 1024.
    pub fn channel_capacity(mut self, messages: usize) -> Self {
        self.channel_capacity = messages.max(1);
        self
    }

    /// Events queued for [`events`](MioNode::events); the oldest go first. Default 1024.
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events.max(1);
        self
    }

    /// Commands queued from [`Handle`]s at most. Default 256.
    pub fn handle_capacity(mut self, commands: usize) -> Self {
        self.handle_capacity = commands.max(1);
        self
    }

    /// How long the node stops reading while a channel's queue is full before it drops
    /// messages for that channel (counted) until the queue is half empty. Default 100 ms.
    pub fn deliver_timeout(mut self, timeout: Duration) -> Self {
        self.deliver_timeout = timeout;
        self
    }

    /// How long a received flood may wait for room in a neighbor's queue (sets
    /// [`Config::forward_wait`]): meanwhile the node does not read the link it came on, so TCP
    /// flow control slows the senders upstream; after that the flood goes on and the core
    /// evicts a neighbor still without room (NodeTooSlow), which bounds memory. Default 250 ms.
    pub fn forward_wait(mut self, wait: Duration) -> Self {
        self.forward_wait = Some(wait);
        self
    }

    /// Bytes taken from the core ahead of each socket at most. Default 64 KiB.
    pub fn write_window(mut self, bytes: usize) -> Self {
        self.write_window = bytes.max(1);
        self
    }

    /// Answer the core's resolver requests yourself: take them from
    /// [`resolve_requests`](MioNode::resolve_requests) and answer with
    /// [`resolved`](MioNode::resolved). Without it a request fails at once (the node then uses
    /// its bootstrap list and referrals only).
    pub fn external_resolver(mut self) -> Self {
        self.external_resolver = true;
        self
    }

    /// Binds the listener, registers it with `registry` and starts joining the mesh. Returns
    /// at once: the node makes progress as the user's loop feeds it events (see
    /// [`MioNode::is_online`] and [`Event::Online`]).
    pub fn open(self, registry: &Registry) -> Result<MioNode, Error> {
        let mesh = match (&self.mesh, &self.config) {
            (Some(m), _) => MeshId::new(m).map_err(|source| Error::InvalidMeshId { given: m.clone(), source })?,
            (None, Some(c)) => c.mesh.clone(),
            (None, None) => return Err(Error::MissingMesh),
        };
        if self.token_count < FIRST_CONN + 1 || self.token_base.checked_add(self.token_count).is_none() {
            return Err(Error::TokenRange { count: self.token_count });
        }
        let seed = self.seed.unwrap_or_else(os_seed);
        let mut config = self.config.unwrap_or_else(|| Config::new(mesh.clone(), seed));
        config.mesh = mesh.clone();
        config.seed = seed;
        config.bootstrap.extend(self.bootstrap.iter().copied());
        if let Some(wait) = self.forward_wait {
            config.forward_wait = wait;
        }
        if config.bootstrap.is_empty() && !self.open_alone && !self.external_resolver {
            return Err(Error::NoPeers);
        }
        let mut config = self.security.apply(config, os_key_seed).map_err(|_| Error::NoRandomness)?;
        config.validate().map_err(Error::from_config)?;
        let mut listener =
            TcpListener::bind(self.listen).map_err(|source| Error::Listen { addr: self.listen, source })?;
        let local = listener.local_addr().map_err(|source| Error::Listen { addr: self.listen, source })?;
        if let Some(a) = self.announce {
            config.listen_addrs = a;
        } else if config.listen_addrs.is_empty() {
            config.listen_addrs = vec![announced(local)];
        }
        let registry = registry.try_clone().map_err(Error::Register)?;
        registry
            .register(&mut listener, Token(self.token_base + LISTENER), Interest::READABLE)
            .map_err(Error::Register)?;
        let node = Node::new(config, CoreInstant::ZERO).map_err(Error::from_config)?;
        let slots = self.token_count - FIRST_CONN;
        let mut n = MioNode {
            node,
            origin: Instant::now(),
            registry,
            listener: Some(listener),
            listener_readable: true,
            local,
            token_base: self.token_base,
            token_count: self.token_count,
            slots: vec![None; slots],
            free: (0..slots).collect(),
            conns: BTreeMap::new(),
            channels: BTreeMap::new(),
            stalled: VecDeque::new(),
            stall_deadline: None,
            events: VecDeque::new(),
            resolve_requests: VecDeque::new(),
            inputs: VecDeque::new(),
            read_buf: BytesMut::new(),
            commands: None,
            phase: Phase::Running,
            work: false,
            settings: Settings {
                channel_capacity: self.channel_capacity,
                event_capacity: self.event_capacity,
                handle_capacity: self.handle_capacity,
                deliver_timeout: self.deliver_timeout,
                write_window: self.write_window,
                read_chunk: self.read_chunk,
                external_resolver: self.external_resolver,
            },
            stats: AdapterStats::default(),
        };
        // Certificates are checked against the wall clock, which the core never reads itself;
        // it carries the time on from here with its own monotonic clock.
        n.feed(Input::WallClock { unix_secs: crate::security::unix_now() });
        n.feed(Input::Open);
        n.flush();
        Ok(n)
    }
}

#[derive(Debug, Clone)]
struct Settings {
    channel_capacity: usize,
    event_capacity: usize,
    handle_capacity: usize,
    deliver_timeout: Duration,
    write_window: usize,
    read_chunk: usize,
    external_resolver: bool,
}

#[derive(Debug, Copy, Clone, PartialEq, Eq)]
enum Phase {
    Running,
    Closing { deadline: Instant },
    Closed,
}

#[derive(Debug, Copy, Clone, PartialEq, Eq)]
enum ConnState {
    Connecting,
    Open,
}

/// One TCP connection of one link.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    slot: usize,
    state: ConnState,
    /// Readiness seen and not yet used up (edge-triggered: kept until `WouldBlock`).
    readable: bool,
    writable: bool,
    /// Registered with WRITABLE interest (only while bytes wait for a full socket, or while
    /// connecting).
    write_interest: bool,
    /// Bytes taken from the core and not yet written (at most the write window).
    out: WriteQueue,
    /// The core closed the link: write what is left, shut down, then read until the peer's
    /// end or the deadline (so the last frame is not lost to a reset).
    closing: Option<Instant>,
    shut_down: bool,
}

#[derive(Debug, Default)]
struct ChanQueue {
    queue: VecDeque<Message>,
    dropped: u64,
    /// The queue overflowed: drop without waiting until it is back to half full.
    overflowing: bool,
}

/// A resolver request of the core, for a user who answers them (see
/// [`Builder::external_resolver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// Pass it back to [`MioNode::resolved`].
    pub id: u64,
    /// The mesh whose members are wanted.
    pub mesh: MeshId,
    /// How many addresses are wanted at most.
    pub max_addresses: usize,
}

/// One member of one mesh, driven by a `mio::Poll` the user owns.
///
/// The node registers its listener and sockets under the token range of
/// [`Builder::tokens`]; hand it every event of that range with
/// [`handle_event`](Self::handle_event), poll with [`poll_timeout`](Self::poll_timeout) as the
/// timeout and call [`handle_timeout`](Self::handle_timeout) after each poll. Everything is
/// non-blocking: sends return [`Error::WouldBlock`] when the mesh is backed up, received
/// messages wait in bounded per-channel queues for [`try_recv`](Self::try_recv).
///
/// Dropping the node closes every socket at once, like a crash; [`close`](Self::close) leaves
/// gracefully.
#[derive(Debug)]
pub struct MioNode {
    node: Node,
    origin: Instant,
    registry: Registry,
    listener: Option<TcpListener>,
    listener_readable: bool,
    local: SocketAddr,
    token_base: usize,
    token_count: usize,
    /// Connection slot -> link.
    slots: Vec<Option<LinkId>>,
    /// Free connection slots, oldest freed first (a late event for a reused token is rare).
    free: VecDeque<usize>,
    conns: BTreeMap<LinkId, Conn>,
    channels: BTreeMap<ChannelPath, ChanQueue>,
    /// Deliveries waiting for room in a full channel queue (reads pause meanwhile).
    stalled: VecDeque<Message>,
    stall_deadline: Option<Instant>,
    events: VecDeque<Event>,
    resolve_requests: VecDeque<ResolveRequest>,
    inputs: VecDeque<Input>,
    read_buf: BytesMut,
    commands: Option<Commands>,
    phase: Phase,
    /// Work is pending (writes after a send, a spent round budget): the deadline is now.
    work: bool,
    settings: Settings,
    stats: AdapterStats,
}

/// A view of one channel of a node, from [`MioNode::channel`].
#[derive(Debug)]
pub struct Channel<'a> {
    node: &'a mut MioNode,
    path: ChannelPath,
}

impl Channel<'_> {
    /// The channel's path.
    pub fn path(&self) -> &ChannelPath {
        &self.path
    }

    /// Sends `payload` to every other member; see [`MioNode::send`].
    pub fn send(&mut self, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
        self.node.send(&self.path, payload)
    }

    /// The next received message, if one is queued.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.node.try_recv(&self.path)
    }

    /// Messages queued now.
    pub fn queued(&self) -> usize {
        self.node.channels.get(&self.path).map_or(0, |c| c.queue.len())
    }

    /// Messages dropped because the queue stayed full.
    pub fn dropped(&self) -> u64 {
        self.node.channels.get(&self.path).map_or(0, |c| c.dropped)
    }
}

impl MioNode {
    /// A builder for a new node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    // ----- identity and state -------------------------------------------------------------

    /// This node's ID.
    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The largest payload a send may carry.
    pub fn max_message_size(&self) -> usize {
        self.node.config().max_message_size
    }

    /// Whether the node has at least one neighbor.
    pub fn is_online(&self) -> bool {
        self.node.is_online()
    }

    /// Whether [`close`](Self::close) has finished (every link said goodbye, or the linger
    /// ran out). The node can then be dropped.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether `token` is one of this node's.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.token_base && token.0 - self.token_base < self.token_count
    }

    /// Counters of the core and the adapter.
    pub fn stats(&self) -> NodeStats {
        let mut adapter = self.stats.clone();
        adapter.write_buffered_bytes = self.conns.values().map(|c| c.out.len()).sum();
        adapter.connections = self.conns.len();
        adapter.channel_queued = self.channels.values().map(|c| c.queue.len()).sum::<usize>() + self.stalled.len();
        NodeStats { core: self.node.stats(), adapter }
    }

    /// The current neighbors.
    pub fn neighbors(&self) -> Vec<NeighborInfo> {
        self.node.neighbors()
    }

    /// The protocol core, for inspection.
    pub fn core(&self) -> &Node {
        &self.node
    }

    // ----- channels and events ------------------------------------------------------------

    /// Opens channel `path` (messages on it are queued from now on) and returns a view to
    /// send and receive on it. Opening an open channel again is harmless.
    pub fn channel(&mut self, path: &str) -> Result<Channel<'_>, Error> {
        let path = ChannelPath::new(path).map_err(|source| Error::InvalidPath { given: path.to_owned(), source })?;
        self.open_channel(&path);
        Ok(Channel { node: self, path })
    }

    /// Opens channel `path` (see [`channel`](Self::channel)).
    pub fn open_channel(&mut self, path: &ChannelPath) {
        if !self.channels.contains_key(path) {
            self.node.open_channel(path.clone());
            self.channels.insert(path.clone(), ChanQueue::default());
        }
    }

    /// Stops delivering messages on `path` and drops what is queued (they are still
    /// forwarded to the rest of the mesh).
    pub fn close_channel(&mut self, path: &ChannelPath) {
        self.channels.remove(path);
        self.node.close_channel(path);
    }

    /// Sends `payload` to every other member of the mesh on `path` (own messages are not
    /// delivered back). Never blocks: [`Error::WouldBlock`] when a neighbor's send queue is
    /// full (nothing was sent; retry after the next events are handled). The bytes leave at
    /// the end of the current round of work; [`poll_timeout`](Self::poll_timeout) is zero
    /// while they wait, so a loop that polls with it comes straight back.
    pub fn send(&mut self, path: &ChannelPath, payload: impl Into<Bytes>) -> Result<MessageId, Error> {
        let now = self.core_now();
        match self.node.send(now, path, payload.into()) {
            Ok(id) => {
                self.drain();
                self.work = true;
                Ok(id)
            }
            Err(SendError::Busy) => {
                self.stats.sends_would_block += 1;
                Err(Error::WouldBlock)
            }
            Err(SendError::MessageTooLarge { size, max }) => Err(Error::MessageTooLarge { size, max }),
            Err(SendError::BadPath(source)) => Err(Error::InvalidPath { given: path.as_str().to_owned(), source }),
            Err(SendError::NotOpen) => Err(Error::Closed),
        }
    }

    /// Whether a message of `len` bytes on `path` would be taken by [`send`](Self::send) now.
    pub fn can_send(&self, path: &ChannelPath, len: usize) -> bool {
        self.node.can_send(path, len)
    }

    /// The next message received on `path`, if one is queued.
    pub fn try_recv(&mut self, path: &ChannelPath) -> Option<Message> {
        let m = self.channels.get_mut(path)?.queue.pop_front();
        if m.is_some() && !self.stalled.is_empty() {
            // Room for a held delivery: reads may resume.
            self.work = true;
        }
        m
    }

    /// Takes the queued events (Online/Offline, NeighborUp/Down with reasons, DialFailed...).
    pub fn events(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }

    /// Takes the core's pending resolver requests (only with [`Builder::external_resolver`]).
    pub fn resolve_requests(&mut self) -> impl Iterator<Item = ResolveRequest> + '_ {
        self.resolve_requests.drain(..)
    }

    /// Answers a [`ResolveRequest`]: the members found, or `None` if the lookup failed.
    pub fn resolved(&mut self, id: u64, addrs: Option<Vec<SocketAddr>>) {
        self.feed(match addrs {
            Some(addrs) => Input::Resolved { id, addrs },
            None => Input::ResolveFailed { id },
        });
        self.work = true;
    }

    /// A handle through which other threads can send into this node. The first call
    /// registers a `mio::Waker` at the second token of the range. mio allows one waker per
    /// `Poll`: if your loop has its own, use [`handle_with_waker`](Self::handle_with_waker).
    pub fn handle(&mut self) -> Result<Handle, Error> {
        let waker = match &self.commands {
            Some(c) => c.waker.clone(),
            None => Arc::new(Waker::new(&self.registry, Token(self.token_base + WAKER)).map_err(Error::Register)?),
        };
        Ok(self.handle_with_waker(waker))
    }

    /// A handle that wakes the loop through the application's own `waker`. After each
    /// wake-up, call [`handle_timeout`](Self::handle_timeout) (as after every poll): that is
    /// where the node takes the commands. Every handle shares the first waker installed.
    pub fn handle_with_waker(&mut self, waker: Arc<Waker>) -> Handle {
        let max_message_size = self.max_message_size();
        let capacity = self.settings.handle_capacity;
        let c = self.commands.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
            Commands { rx, tx, wake_pending: Arc::new(AtomicBool::new(false)), waker, held: None }
        });
        Handle { tx: c.tx.clone(), wake_pending: c.wake_pending.clone(), waker: c.waker.clone(), max_message_size }
    }

    /// Leaves the mesh gracefully: neighbors are told (Disconnect, LeavingMesh), the listener
    /// closes, and the node finishes once every link is closed or `Config::close_linger` has
    /// passed ([`is_closed`](Self::is_closed)). Keep handing it events until then.
    pub fn close(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.registry.deregister(&mut l);
        }
        self.feed(Input::Close);
        self.phase = Phase::Closing { deadline: Instant::now() + self.node.config().close_linger };
        self.work = true;
    }

    // ----- the loop -----------------------------------------------------------------------

    /// Handles one readiness event. Returns false (and does nothing) if the token is not in
    /// this node's range, so a loop can offer every event to the node first.
    pub fn handle_event(&mut self, event: &MioEvent) -> bool {
        let t = event.token().0;
        if !self.owns(event.token()) {
            return false;
        }
        let slot = t - self.token_base;
        match slot {
            LISTENER => self.listener_readable = true,
            WAKER => {}
            _ => {
                if let Some(c) =
                    self.slots.get(slot - FIRST_CONN).copied().flatten().and_then(|l| self.conns.get_mut(&l))
                {
                    // Errors and hang-ups are found by the next read or write.
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        c.readable = true;
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        c.writable = true;
                    }
                }
            }
        }
        self.flush();
        true
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work; now if
    /// work is pending (bytes queued by a send, a round budget used up).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.work {
            return Some(Instant::now());
        }
        let mut next =
            self.node.poll_timeout().and_then(|d| self.origin.checked_add(Duration::from_nanos(d.as_nanos())));
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        };
        consider(self.stall_deadline);
        for c in self.conns.values() {
            consider(c.closing);
        }
        if let Phase::Closing { deadline } = self.phase {
            consider(Some(deadline));
        }
        next
    }

    /// How long the user's `Poll::poll` may wait: until [`next_deadline`](Self::next_deadline).
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Runs what is due: the core's timers, lingering closes, held deliveries, commands from
    /// handles and writes left by sends. Call it after every `Poll::poll`; it is cheap when
    /// nothing is due.
    pub fn handle_timeout(&mut self) {
        self.flush();
    }

    /// Does every pending piece of work now (what `handle_timeout` does). Useful right after a
    /// batch of sends when the loop will not poll soon.
    pub fn flush(&mut self) {
        self.work = false;
        if self.phase == Phase::Closed {
            return;
        }
        for _ in 0..ROUNDS {
            let mut progress = self.take_commands();
            progress |= self.accept();
            progress |= self.connects();
            progress |= self.deliver_stalled();
            // A full channel queue pauses all reads (see `deliver_timeout`).
            if self.stalled.is_empty() {
                progress |= self.reads();
            }
            progress |= self.writes();
            progress |= self.timers();
            self.check_phase();
            if self.phase == Phase::Closed || !progress {
                return;
            }
        }
        // Still busy: hand control back to the user's loop and come back at once.
        self.work = true;
    }

    /// A convenience loop for a `Poll` that serves this node only (events of other tokens are
    /// ignored): polls and handles events until `done(self)` is true (returns `Ok(true)`) or
    /// `timeout` passes (`Ok(false)`).
    pub fn run_until(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        timeout: Duration,
        mut done: impl FnMut(&mut MioNode) -> bool,
    ) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let wait = self.poll_timeout().map_or(deadline - now, |t| t.min(deadline - now));
            match poll.poll(events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                self.handle_event(event);
            }
            self.handle_timeout();
        }
    }

    // ----- feeding the core ---------------------------------------------------------------

    fn core_now(&self) -> CoreInstant {
        CoreInstant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// Feeds one input and everything it leads to, draining outputs after each.
    fn feed(&mut self, input: Input) {
        self.inputs.push_back(input);
        self.drain();
    }

    /// Carries out every pending output of the core, and the inputs they lead to.
    fn drain(&mut self) {
        loop {
            while let Some(out) = self.node.poll_output() {
                self.on_output(out);
            }
            let Some(input) = self.inputs.pop_front() else { return };
            let now = self.core_now();
            self.node.handle_input(now, input);
        }
    }

    fn on_output(&mut self, out: Output) {
        match out {
            Output::Dial { link, addr } => self.dial(link, addr),
            Output::Transmit { link } => {
                if let Some(c) = self.conns.get_mut(&link) {
                    c.out.wake();
                    self.work = true;
                }
            }
            Output::CloseLink { link, .. } => {
                let linger = self.node.config().close_linger;
                match self.conns.get_mut(&link) {
                    Some(c) if c.state == ConnState::Connecting => {
                        self.remove_conn(link);
                    }
                    Some(c) => {
                        c.closing = Some(Instant::now() + linger);
                        c.out.wake();
                        self.work = true;
                    }
                    None => {}
                }
            }
            Output::Deliver(msg) => self.deliver(msg),
            Output::Resolve { id, mesh, max_addresses } => {
                if self.settings.external_resolver {
                    self.resolve_requests.push_back(ResolveRequest { id, mesh, max_addresses });
                } else {
                    self.inputs.push_back(Input::ResolveFailed { id });
                }
            }
            Output::Event(e) => {
                if self.events.len() >= self.settings.event_capacity {
                    self.events.pop_front();
                    self.stats.events_dropped += 1;
                }
                self.events.push_back(e);
            }
        }
    }

    // ----- connections --------------------------------------------------------------------

    fn alloc_slot(&mut self) -> Option<usize> {
        self.free.pop_front()
    }

    fn token(&self, slot: usize) -> Token {
        Token(self.token_base + FIRST_CONN + slot)
    }

    fn dial(&mut self, link: LinkId, addr: SocketAddr) {
        let Some(slot) = self.alloc_slot() else {
            self.inputs.push_back(Input::DialFailed { link, error: io::ErrorKind::Other });
            return;
        };
        let registered = TcpStream::connect(addr).and_then(|mut s| {
            self.registry.register(&mut s, self.token(slot), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match registered {
            Ok(stream) => self.add_conn(link, slot, stream, ConnState::Connecting),
            Err(e) => {
                self.free.push_back(slot);
                self.inputs.push_back(Input::DialFailed { link, error: e.kind() });
            }
        }
    }

    fn add_conn(&mut self, link: LinkId, slot: usize, stream: TcpStream, state: ConnState) {
        let connecting = state == ConnState::Connecting;
        if !connecting {
            // We batch writes ourselves; Nagle would only add latency on top.
            let _ = stream.set_nodelay(true);
        }
        self.slots[slot] = Some(link);
        self.conns.insert(
            link,
            Conn {
                stream,
                slot,
                state,
                readable: !connecting,
                writable: !connecting,
                write_interest: connecting,
                out: if connecting { WriteQueue::new() } else { WriteQueue::awake() },
                closing: None,
                shut_down: false,
            },
        );
    }

    /// Forgets a connection: deregisters and closes its socket, frees its token.
    fn remove_conn(&mut self, link: LinkId) -> bool {
        let Some(mut c) = self.conns.remove(&link) else { return false };
        let _ = self.registry.deregister(&mut c.stream);
        self.slots[c.slot] = None;
        self.free.push_back(c.slot);
        true
    }

    /// The socket of `link` is finished: forget it and tell the core (harmless if the core
    /// closed the link itself).
    fn end_conn(&mut self, link: LinkId, error: Option<io::ErrorKind>) {
        if self.remove_conn(link) {
            self.feed(Input::LinkClosed { link, error });
        }
    }

    fn accept(&mut self) -> bool {
        let mut progress = false;
        for _ in 0..ACCEPTS_PER_ROUND {
            if !self.listener_readable {
                break;
            }
            let Some(listener) = &self.listener else { break };
            match listener.accept() {
                Ok((stream, remote)) => {
                    progress = true;
                    self.stats.accepted += 1;
                    self.take_inbound(stream, remote);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // WouldBlock, or EMFILE and friends: the next connection's event retries.
                    self.listener_readable = false;
                }
            }
        }
        if self.listener_readable {
            self.work = true;
        }
        progress
    }

    fn take_inbound(&mut self, mut stream: TcpStream, remote: SocketAddr) {
        let Some(slot) = self.alloc_slot() else {
            // Every token is in use: close at once (the socket drops here).
            self.stats.refused_no_token += 1;
            return;
        };
        let now = self.core_now();
        match self.node.accept(now, remote) {
            Ok(link) => match self.registry.register(&mut stream, self.token(slot), Interest::READABLE) {
                Ok(()) => {
                    self.add_conn(link, slot, stream, ConnState::Open);
                    self.drain();
                }
                Err(e) => {
                    self.free.push_back(slot);
                    self.feed(Input::LinkClosed { link, error: Some(e.kind()) });
                }
            },
            Err(_) => {
                self.free.push_back(slot);
                self.stats.refused_by_core += 1;
                self.drain();
            }
        }
    }

    /// Finishes dials whose socket reported readiness.
    fn connects(&mut self) -> bool {
        let mut done: Vec<(LinkId, Result<(), io::ErrorKind>)> = Vec::new();
        for (&link, c) in self.conns.iter_mut() {
            if c.state != ConnState::Connecting || !(c.readable || c.writable) {
                continue;
            }
            c.readable = false;
            c.writable = false;
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => done.push((link, Err(e.kind()))),
                Ok(None) => match c.stream.peer_addr() {
                    Ok(_) => done.push((link, Ok(()))),
                    // Not yet: a spurious wake-up; wait for the next event.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => done.push((link, Err(e.kind()))),
                },
            }
        }
        let progress = !done.is_empty();
        for (link, result) in done {
            match result {
                Ok(()) => {
                    let token = self.conns.get(&link).map(|c| self.token(c.slot));
                    let Some(c) = self.conns.get_mut(&link) else { continue };
                    c.state = ConnState::Open;
                    let _ = c.stream.set_nodelay(true);
                    // Readable and writable until proven otherwise; write interest only
                    // while bytes wait.
                    c.readable = true;
                    c.writable = true;
                    let rereg = token.map(|t| self.registry.reregister(&mut c.stream, t, Interest::READABLE));
                    c.write_interest = false;
                    self.stats.interest_changes += 1;
                    match rereg {
                        Some(Err(e)) => {
                            self.remove_conn(link);
                            self.feed(Input::DialFailed { link, error: e.kind() });
                        }
                        _ => self.feed(Input::LinkConnected { link }),
                    }
                }
                Err(error) => {
                    self.remove_conn(link);
                    self.feed(Input::DialFailed { link, error });
                }
            }
        }
        progress
    }

    fn reads(&mut self) -> bool {
        let mut progress = false;
        let mut ended: Vec<(LinkId, Option<io::ErrorKind>)> = Vec::new();
        let mut received: Vec<(LinkId, Bytes)> = Vec::new();
        let chunk = self.settings.read_chunk;
        for (&link, c) in self.conns.iter_mut() {
            // A flood from this link waits for room in a neighbor's queue: leave its bytes in
            // the socket, so TCP slows the sender (the core asks for a timeout when it goes on,
            // and edge-triggered readiness is kept in `readable`).
            if c.state != ConnState::Open || !c.readable || self.node.reads_paused(link) {
                continue;
            }
            // The buffer is kept initialised: only the part handed out is zeroed again. Reads
            // share one allocation until less than a quarter of it is left: a fresh buffer per
            // read would let each small message keep a whole read buffer alive (the core keeps
            // recent floods for recovery without copying them).
            if self.read_buf.len() < chunk / 4 {
                self.read_buf.resize(chunk, 0);
            }
            let room = self.read_buf.len().min(chunk);
            // One read per connection per round keeps connections fair.
            match c.stream.read(&mut self.read_buf[..room]) {
                Ok(0) => ended.push((link, None)),
                Ok(n) => {
                    progress = true;
                    self.stats.reads += 1;
                    self.stats.bytes_read += n as u64;
                    let data = self.read_buf.split_to(n).freeze();
                    // A closing link's bytes are read only to see the peer's end.
                    if c.closing.is_none() {
                        received.push((link, data));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                Err(e) => ended.push((link, Some(e.kind()))),
            }
        }
        for (link, data) in received {
            self.feed(Input::Received { link, data });
        }
        for (link, error) in ended {
            progress = true;
            self.end_conn(link, error);
        }
        progress
    }

    fn writes(&mut self) -> bool {
        let mut progress = false;
        let mut ended: Vec<(LinkId, Option<io::ErrorKind>)> = Vec::new();
        let window = self.settings.write_window;
        let now = Instant::now();
        let base = self.token_base + FIRST_CONN;
        for (&link, c) in self.conns.iter_mut() {
            if c.state != ConnState::Open {
                continue;
            }
            let mut failed = None;
            loop {
                c.out.refill(&mut self.node, link, window);
                self.stats.write_buffered_peak = self.stats.write_buffered_peak.max(c.out.len());
                if c.out.is_empty() || !c.writable {
                    break;
                }
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let (n_slices, offered) = c.out.io_slices(&mut slices);
                match c.stream.write_vectored(&slices[..n_slices]) {
                    Ok(0) => {
                        failed = Some(Some(io::ErrorKind::WriteZero));
                        break;
                    }
                    Ok(n) => {
                        progress = true;
                        self.stats.writes += 1;
                        self.stats.bytes_written += n as u64;
                        if n < offered {
                            self.stats.partial_writes += 1;
                        }
                        c.out.consume(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failed = Some(Some(e.kind()));
                        break;
                    }
                }
            }
            if let Some(error) = failed {
                ended.push((link, error));
                continue;
            }
            // Write interest only while bytes wait for a full socket.
            let want = !c.out.is_empty();
            if want != c.write_interest {
                let interest = if want { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                if let Err(e) = self.registry.reregister(&mut c.stream, Token(base + c.slot), interest) {
                    ended.push((link, Some(e.kind())));
                    continue;
                }
                c.write_interest = want;
                self.stats.interest_changes += 1;
            }
            if let Some(deadline) = c.closing {
                if c.out.is_drained() && !c.shut_down {
                    // Everything said: send FIN, then wait for the peer's end.
                    let _ = c.stream.shutdown(Shutdown::Write);
                    c.shut_down = true;
                    progress = true;
                }
                if now >= deadline {
                    ended.push((link, None));
                }
            }
        }
        for (link, error) in ended {
            progress = true;
            self.end_conn(link, error);
        }
        progress
    }

    // ----- deliveries ---------------------------------------------------------------------

    fn deliver(&mut self, msg: Message) {
        if !self.channels.contains_key(&msg.path) {
            return;
        }
        if self.stalled.is_empty() {
            self.offer(msg);
        } else {
            // Keep per-channel order: nothing overtakes a held delivery.
            self.stalled.push_back(msg);
        }
    }

    /// Queues `msg` on its channel; on a full queue, holds it (pausing reads) or drops it.
    fn offer(&mut self, msg: Message) {
        let cap = self.settings.channel_capacity;
        let Some(ch) = self.channels.get_mut(&msg.path) else { return };
        if ch.overflowing && ch.queue.len() <= cap / 2 {
            ch.overflowing = false;
        }
        if ch.queue.len() < cap {
            ch.queue.push_back(msg);
            self.stats.delivered += 1;
        } else if ch.overflowing || self.settings.deliver_timeout.is_zero() {
            ch.overflowing = true;
            ch.dropped += 1;
            self.stats.deliveries_dropped += 1;
        } else {
            self.stats.delivery_stalls += 1;
            self.stall_deadline = Some(Instant::now() + self.settings.deliver_timeout);
            self.stalled.push_back(msg);
        }
    }

    fn deliver_stalled(&mut self) -> bool {
        let mut progress = false;
        let cap = self.settings.channel_capacity;
        while let Some(front) = self.stalled.front() {
            let Some(ch) = self.channels.get_mut(&front.path) else {
                self.stalled.pop_front();
                progress = true;
                continue;
            };
            let full = ch.queue.len() >= cap;
            let expired = self.stall_deadline.is_none_or(|d| Instant::now() >= d);
            if full && !(ch.overflowing || expired) {
                break;
            }
            let Some(msg) = self.stalled.pop_front() else { break };
            progress = true;
            if full {
                // The application did not make room in time: drop, and keep dropping for this
                // channel until it catches up, so one slow channel cannot stall the node.
                ch.overflowing = true;
                ch.dropped += 1;
                self.stats.deliveries_dropped += 1;
            } else {
                self.stall_deadline = None;
                self.offer(msg);
                if !self.stalled.is_empty() && self.stall_deadline.is_none() {
                    self.stall_deadline = Some(Instant::now() + self.settings.deliver_timeout);
                }
            }
        }
        if self.stalled.is_empty() {
            self.stall_deadline = None;
        }
        progress
    }

    // ----- commands and time --------------------------------------------------------------

    fn take_commands(&mut self) -> bool {
        let Some(cmds) = &mut self.commands else { return false };
        // Cleared before taking: a command queued from now on wakes the loop again.
        cmds.wake_pending.store(false, Ordering::Release);
        let mut progress = false;
        for _ in 0..COMMANDS_PER_ROUND {
            let Some(cmds) = &mut self.commands else { break };
            let cmd = match cmds.held.take() {
                Some(c) => c,
                None => match cmds.rx.try_recv() {
                    Ok(c) => {
                        self.stats.commands += 1;
                        c
                    }
                    Err(_) => break,
                },
            };
            match cmd {
                Command::Send { path, payload } => {
                    if self.node.is_open() && !self.node.can_send(&path, payload.len()) {
                        // Backpressure: hold it (the queue behind it fills and the sending
                        // threads see WouldBlock) until a neighbor drains.
                        if let Some(c) = &mut self.commands {
                            c.held = Some(Command::Send { path, payload });
                        }
                        break;
                    }
                    progress = true;
                    // Errors (a closed node) are the same the sender would see next.
                    let _ = self.send(&path, payload);
                }
                Command::Close => {
                    progress = true;
                    self.close();
                }
            }
        }
        progress
    }

    fn timers(&mut self) -> bool {
        let mut progress = false;
        // Bounded, so a deadline that stays in the past cannot spin forever.
        for _ in 0..64 {
            let now = self.core_now();
            match self.node.poll_timeout() {
                Some(d) if d <= now => {
                    self.node.handle_timeout(now);
                    self.drain();
                    progress = true;
                }
                _ => break,
            }
        }
        progress
    }

    fn check_phase(&mut self) {
        if let Phase::Closing { deadline } = self.phase {
            if self.conns.is_empty() || Instant::now() >= deadline {
                let links: Vec<LinkId> = self.conns.keys().copied().collect();
                for link in links {
                    self.remove_conn(link);
                }
                self.phase = Phase::Closed;
                self.work = false;
            }
        }
    }
}

/// The address to announce for a listener bound to `local`: an unspecified address becomes
/// the interface that routes outward (or loopback).
fn announced(local: SocketAddr) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let (bind, probe) = if local.is_ipv6() { ("[::]:0", "[2001:db8::1]:9") } else { ("0.0.0.0:0", "192.0.2.1:9") };
    let ip = std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(probe).and_then(|()| s.local_addr()))
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(if local.is_ipv6() {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        });
    SocketAddr::new(ip, local.port())
}

/// A seed from the OS: std's hasher keys are drawn from the OS's random source.
fn os_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}
