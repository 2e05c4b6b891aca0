//! One harness over both adapters, so that each scenario of the shared suite runs against the
//! tokio adapter, the mio adapter, and mixed meshes.
//!
//! A [`TestNode`] is started from a [`Kind`] and a core [`Config`]. A tokio node is a
//! `PeerNode` on the test's runtime. A mio node runs on its own thread with its own
//! `mio::Poll`: the test talks to that thread through a control queue and the node's
//! cross-thread [`peerchannel_mio::Handle`] (sends go through the handle, so every suite run
//! on mio exercises its bounded queue, its waker and its `WouldBlock` backpressure). Dropping
//! a `TestNode` without [`TestNode::close`] crashes it: its sockets close at once.
//!
//! Every node's events are recorded from the moment it opens ([`TestNode::events_seen`]), and
//! a node can be given the mesh password through its adapter's builder ([`Start`],
//! [`TestNode::start_as`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mio::{Events, Poll};
use peerchannel_core::{ChannelPath, Config, Event, Message, NeighborInfo, NodeId, Stats};
use peerchannel_mio::MioNode;
use peerchannel_tokio::PeerNode;
use tokio::sync::{mpsc, oneshot};

use crate::{fast_config, forms_one_mesh, loopback, neighbor_changes, wait_until_no_neighbor_changes, PATIENCE};

/// Which adapter runs a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `peerchannel-tokio`.
    Tokio,
    /// `peerchannel-mio`, on a thread of its own.
    Mio,
}

/// Only tokio nodes.
pub const TOKIO: &[Kind] = &[Kind::Tokio];
/// Only mio nodes.
pub const MIO: &[Kind] = &[Kind::Mio];
/// Half mio, half tokio (node `i` runs on `MIXED[i % 2]`).
pub const MIXED: &[Kind] = &[Kind::Mio, Kind::Tokio];

/// The kind of node `i` of a mesh started with `kinds`.
pub fn kind_of(kinds: &[Kind], i: usize) -> Kind {
    kinds.get(i % kinds.len().max(1)).copied().unwrap_or(Kind::Tokio)
}

/// PBKDF2 rounds of the harness's passwords: few, so opening stays fast (the construction is
/// the same as with the default 600,000).
pub const TEST_PBKDF2_ITERATIONS: NonZeroU32 = match NonZeroU32::new(10) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

/// Events a node's record keeps at most (MessageDropped events are not recorded).
const EVENTS_KEPT: usize = 10_000;

/// How a test node joins.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Opens alone (starts a mesh); bootstrap addresses are still dialed.
    Alone,
    /// Dials the bootstrap addresses and returns once it has a neighbor.
    Join,
    /// Dials the bootstrap addresses and returns at once, neighbor or not (for nodes that
    /// are meant to be refused).
    Dial,
}

/// Why a harness send failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// The payload exceeds the mesh's limit; nothing was sent.
    TooLarge {
        /// Payload bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The node is closed.
    Closed,
    /// Anything else (the text of the adapter's error).
    Other(String),
}

/// The counters the suite looks at, from either adapter.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The core's counters.
    pub core: Stats,
    /// Socket write calls.
    pub writes: u64,
    /// Most bytes taken ahead of one socket.
    pub write_buffered_peak: usize,
    /// Open TCP connections.
    pub connections: usize,
    /// Inbound connections taken from the listener.
    pub accepted: u64,
    /// Sends that found the outbound budget spent and waited (tokio: inside the adapter;
    /// mio: the harness retrying after `WouldBlock`).
    pub sends_waited: u64,
}

enum Ctl {
    Subscribe { path: ChannelPath, tx: mpsc::UnboundedSender<Message>, ack: oneshot::Sender<()> },
    Stats(oneshot::Sender<Snapshot>),
    Neighbors(oneshot::Sender<Vec<NeighborInfo>>),
    Close(oneshot::Sender<()>),
}

struct MioRunner {
    ctl: Option<std_mpsc::Sender<Ctl>>,
    handle: peerchannel_mio::Handle,
}

enum Inner {
    Tokio(PeerNode),
    Mio(MioRunner),
}

/// One node of a test mesh, on either adapter.
pub struct TestNode {
    kind: Kind,
    id: NodeId,
    addr: SocketAddr,
    max_message_size: usize,
    /// Sends that had to wait because the node's outbound budget (or the mio handle's queue)
    /// was spent.
    waits: Arc<AtomicU64>,
    events: Mutex<EventLog>,
    inner: Inner,
}

/// Where a node's events come from, and those taken so far.
struct EventLog {
    source: EventSource,
    seen: Vec<Event>,
}

enum EventSource {
    Tokio(peerchannel_tokio::EventStream),
    Mio(mpsc::Receiver<Event>),
}

impl EventLog {
    fn new(source: EventSource) -> Mutex<EventLog> {
        Mutex::new(EventLog { source, seen: Vec::new() })
    }

    fn pull(&mut self) {
        loop {
            let e = match &mut self.source {
                EventSource::Tokio(s) => s.try_recv(),
                EventSource::Mio(r) => r.try_recv().ok(),
            };
            let Some(e) = e else { return };
            if !matches!(e, Event::MessageDropped { .. }) && self.seen.len() < EVENTS_KEPT {
                self.seen.push(e);
            }
        }
    }
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode").field("kind", &self.kind).field("id", &self.id).field("addr", &self.addr).finish()
    }
}

/// A receiving end of one channel of a [`TestNode`].
pub enum Rx {
    /// A tokio channel.
    Tokio(peerchannel_tokio::Channel),
    /// Messages forwarded by a mio node's thread.
    Mio(mpsc::UnboundedReceiver<Message>),
}

impl Rx {
    /// The next message; `None` once the node is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        match self {
            Rx::Tokio(c) => c.recv().await,
            Rx::Mio(r) => r.recv().await,
        }
    }

    /// The next message, waiting at most [`PATIENCE`]; panics with `what` otherwise.
    pub async fn expect(&mut self, what: &str) -> Message {
        match tokio::time::timeout(PATIENCE, self.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => panic!("{what}: the node went away"),
            Err(_) => panic!("{what}: nothing arrived within {PATIENCE:?}"),
        }
    }

    /// A message if one is queued now.
    pub fn try_recv(&mut self) -> Option<Message> {
        match self {
            Rx::Tokio(c) => c.try_recv(),
            Rx::Mio(r) => r.try_recv().ok(),
        }
    }
}

impl TestNode {
    /// Starts a node of `kind` on loopback. With `alone` it starts a mesh; otherwise it dials
    /// `bootstrap` and returns once it has a neighbor (as the tokio adapter's `open` does).
    pub async fn start(kind: Kind, config: Config, bootstrap: &[SocketAddr], alone: bool) -> TestNode {
        let start = if alone { Start::Alone } else { Start::Join };
        Self::start_as(kind, config, bootstrap, start, None).await
    }

    /// Starts a node of `kind` on loopback as `start` says, with the mesh `password` given
    /// through the adapter's builder (`.password(..)`, [`TEST_PBKDF2_ITERATIONS`] rounds).
    /// Panics if it does not open.
    pub async fn start_as(
        kind: Kind,
        config: Config,
        bootstrap: &[SocketAddr],
        start: Start,
        password: Option<&str>,
    ) -> TestNode {
        match Self::try_start_as(kind, config, bootstrap, start, password).await {
            Ok(n) => n,
            Err(e) => panic!("{kind:?} node failed to open: {e}"),
        }
    }

    /// As [`start_as`](Self::start_as), with the adapter's error (as text) instead of a panic.
    pub async fn try_start_as(
        kind: Kind,
        config: Config,
        bootstrap: &[SocketAddr],
        start: Start,
        password: Option<&str>,
    ) -> Result<TestNode, String> {
        match kind {
            Kind::Tokio => {
                let mut b = PeerNode::builder().config(config).listen(loopback()).channel_capacity(8192);
                if let Some(pw) = password {
                    b = b.password(pw).password_iterations(TEST_PBKDF2_ITERATIONS);
                }
                b = b.bootstrap(bootstrap.iter().copied());
                if start != Start::Join {
                    b = b.open_alone();
                }
                let node = b.open().await.map_err(|e| e.to_string())?;
                Ok(TestNode {
                    kind,
                    id: node.id(),
                    addr: node.local_addr(),
                    max_message_size: node.max_message_size(),
                    waits: Arc::default(),
                    events: EventLog::new(EventSource::Tokio(node.events())),
                    inner: Inner::Tokio(node),
                })
            }
            Kind::Mio => {
                let node = start_mio(config, bootstrap, start != Start::Join, password).await?;
                if start == Start::Join {
                    crate::wait_until("the mio node has a neighbor", PATIENCE, || async {
                        node.stats().await.is_some_and(|s| s.core.neighbors >= 1)
                    })
                    .await;
                }
                Ok(node)
            }
        }
    }

    /// Every event of the node since it opened (MessageDropped left out), oldest first.
    pub fn events_seen(&self) -> Vec<Event> {
        let mut log = self.events.lock().unwrap_or_else(|p| p.into_inner());
        log.pull();
        log.seen.clone()
    }

    /// Waits (at most [`PATIENCE`]) until the node has had an event that `pred` accepts, and
    /// returns it; panics with `what` otherwise.
    pub async fn expect_event(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.events_seen().into_iter().find(|e| pred(e)) {
                return e;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("{what}: no such event within {PATIENCE:?}; events: {:?}", self.events_seen());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Which adapter runs it.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Its node ID.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The largest payload its mesh allows.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Sends that waited for the outbound budget so far.
    pub fn send_waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Opens channel `path` and returns its receiving end.
    pub async fn subscribe(&self, path: &str) -> Rx {
        match &self.inner {
            Inner::Tokio(n) => Rx::Tokio(n.channel(path).unwrap_or_else(|e| panic!("channel {path}: {e}"))),
            Inner::Mio(m) => {
                let path = ChannelPath::new(path).unwrap_or_else(|e| panic!("channel {path}: {e}"));
                let (tx, rx) = mpsc::unbounded_channel();
                let (ack, acked) = oneshot::channel();
                self.ctl(m, Ctl::Subscribe { path, tx, ack });
                let _ = tokio::time::timeout(PATIENCE, acked).await;
                Rx::Mio(rx)
            }
        }
    }

    /// Sends `payload` on `path`, waiting (never failing) while the mesh is backed up.
    pub async fn send(&self, path: &str, payload: impl Into<Bytes>) -> Result<(), SendFailure> {
        let payload = payload.into();
        match &self.inner {
            Inner::Tokio(n) => {
                let ch = n.channel(path).map_err(|e| SendFailure::Other(e.to_string()))?.sender();
                match ch.send(payload).await {
                    Ok(()) => Ok(()),
                    Err(peerchannel_tokio::Error::MessageTooLarge { size, max }) => {
                        Err(SendFailure::TooLarge { size, max })
                    }
                    Err(peerchannel_tokio::Error::Closed) => Err(SendFailure::Closed),
                    Err(e) => Err(SendFailure::Other(e.to_string())),
                }
            }
            Inner::Mio(m) => {
                let mut waited = false;
                loop {
                    match m.handle.send(path, payload.clone()) {
                        Ok(()) => return Ok(()),
                        Err(peerchannel_mio::Error::WouldBlock) => {
                            if !waited {
                                waited = true;
                                self.waits.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(peerchannel_mio::Error::MessageTooLarge { size, max }) => {
                            return Err(SendFailure::TooLarge { size, max })
                        }
                        Err(peerchannel_mio::Error::Closed) => return Err(SendFailure::Closed),
                        Err(e) => return Err(SendFailure::Other(e.to_string())),
                    }
                }
            }
        }
    }

    /// A sender usable from a spawned task (a clone of what `send` uses).
    pub fn sender(&self, path: &str) -> Sender {
        match &self.inner {
            Inner::Tokio(n) => {
                Sender::Tokio(n.channel(path).unwrap_or_else(|e| panic!("channel {path}: {e}")).sender())
            }
            Inner::Mio(m) => Sender::Mio(m.handle.clone(), path.to_owned(), self.waits.clone()),
        }
    }

    /// The counters, or `None` if the node is gone.
    pub async fn stats(&self) -> Option<Snapshot> {
        match &self.inner {
            Inner::Tokio(n) => n.stats().await.ok().map(|s| Snapshot {
                core: s.core,
                writes: s.adapter.writes,
                write_buffered_peak: s.adapter.write_buffered_peak,
                connections: s.adapter.connections,
                accepted: s.adapter.accepted,
                sends_waited: s.adapter.sends_waited,
            }),
            Inner::Mio(m) => {
                let (tx, rx) = oneshot::channel();
                self.ctl(m, Ctl::Stats(tx));
                let mut s = tokio::time::timeout(PATIENCE, rx).await.ok()?.ok()?;
                s.sends_waited = self.send_waits();
                Some(s)
            }
        }
    }

    /// The current neighbors (empty if the node is gone).
    pub async fn neighbors(&self) -> Vec<NeighborInfo> {
        match &self.inner {
            Inner::Tokio(n) => n.neighbors().await.unwrap_or_default(),
            Inner::Mio(m) => {
                let (tx, rx) = oneshot::channel();
                self.ctl(m, Ctl::Neighbors(tx));
                match tokio::time::timeout(PATIENCE, rx).await {
                    Ok(Ok(n)) => n,
                    _ => Vec::new(),
                }
            }
        }
    }

    /// Leaves gracefully and waits until the node has finished.
    pub async fn close(self) {
        match self.inner {
            Inner::Tokio(n) => n.close().await,
            Inner::Mio(ref m) => {
                let (tx, rx) = oneshot::channel();
                self.ctl(m, Ctl::Close(tx));
                let _ = tokio::time::timeout(PATIENCE, rx).await;
            }
        }
    }

    fn ctl(&self, m: &MioRunner, c: Ctl) {
        // A gone thread answers nothing; the caller's reply channel then ends.
        if let Some(ctl) = &m.ctl {
            let _ = ctl.send(c);
        }
        let _ = m.handle.wake();
    }
}

impl Drop for MioRunner {
    fn drop(&mut self) {
        // The control queue ends here: the thread sees it, drops its node (sockets close at
        // once, like a crash) and exits. Nothing here waits.
        self.ctl.take();
        let _ = self.handle.wake();
    }
}

/// A sender that can move into a task.
#[derive(Clone)]
pub enum Sender {
    /// A tokio channel sender.
    Tokio(peerchannel_tokio::ChannelSender),
    /// A mio node's cross-thread handle, the path, and the node's wait counter.
    Mio(peerchannel_mio::Handle, String, Arc<AtomicU64>),
}

impl Sender {
    /// As [`TestNode::send`].
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), SendFailure> {
        let payload = payload.into();
        match self {
            Sender::Tokio(s) => s.send(payload).await.map_err(|e| SendFailure::Other(e.to_string())),
            Sender::Mio(h, path, waits) => {
                let mut waited = false;
                loop {
                    match h.send(path, payload.clone()) {
                        Ok(()) => return Ok(()),
                        Err(peerchannel_mio::Error::WouldBlock) => {
                            if !waited {
                                waited = true;
                                waits.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => return Err(SendFailure::Other(e.to_string())),
                    }
                }
            }
        }
    }
}

async fn start_mio(
    config: Config,
    bootstrap: &[SocketAddr],
    alone: bool,
    password: Option<&str>,
) -> Result<TestNode, String> {
    let (ctl_tx, ctl_rx) = std_mpsc::channel::<Ctl>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (events_tx, events_rx) = mpsc::channel(4096);
    let bootstrap = bootstrap.to_vec();
    let password = password.map(str::to_owned);
    std::thread::spawn(move || {
        let started = (|| -> Result<(Poll, MioNode, peerchannel_mio::Handle), String> {
            let poll = Poll::new().map_err(|e| e.to_string())?;
            let mut b = MioNode::builder().config(config).listen(loopback()).tokens(16, 512).channel_capacity(8192);
            if let Some(pw) = password {
                b = b.password(pw).password_iterations(TEST_PBKDF2_ITERATIONS);
            }
            b = b.bootstrap(bootstrap);
            if alone {
                b = b.open_alone();
            }
            let mut node = b.open(poll.registry()).map_err(|e| e.to_string())?;
            let handle = node.handle().map_err(|e| e.to_string())?;
            Ok((poll, node, handle))
        })();
        match started {
            Ok((poll, node, handle)) => {
                let info = (node.id(), node.local_addr(), node.max_message_size(), handle);
                if ready_tx.send(Ok(info)).is_ok() {
                    mio_thread(poll, node, ctl_rx, events_tx);
                }
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        }
    });
    match tokio::time::timeout(PATIENCE, ready_rx).await {
        Ok(Ok(Ok((id, addr, max_message_size, handle)))) => Ok(TestNode {
            kind: Kind::Mio,
            id,
            addr,
            max_message_size,
            waits: Arc::default(),
            events: EventLog::new(EventSource::Mio(events_rx)),
            inner: Inner::Mio(MioRunner { ctl: Some(ctl_tx), handle }),
        }),
        Ok(Ok(Err(e))) => Err(e),
        _ => Err("the mio node's thread did not start".into()),
    }
}

/// The loop of a mio node's thread: the shape any application's loop has.
fn mio_thread(mut poll: Poll, mut node: MioNode, ctl: std_mpsc::Receiver<Ctl>, events_tx: mpsc::Sender<Event>) {
    let mut events = Events::with_capacity(1024);
    let mut subs: Vec<(ChannelPath, mpsc::UnboundedSender<Message>)> = Vec::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    loop {
        // Capped, so the control queue is looked at even if a wake-up were lost.
        let timeout = node.poll_timeout().map_or(Duration::from_millis(50), |t| t.min(Duration::from_millis(50)));
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
        for event in events.iter() {
            node.handle_event(event);
        }
        node.handle_timeout();
        loop {
            match ctl.try_recv() {
                Ok(Ctl::Subscribe { path, tx, ack }) => {
                    node.open_channel(&path);
                    subs.push((path, tx));
                    let _ = ack.send(());
                }
                Ok(Ctl::Stats(reply)) => {
                    let s = node.stats();
                    let _ = reply.send(Snapshot {
                        core: s.core,
                        writes: s.adapter.writes,
                        write_buffered_peak: s.adapter.write_buffered_peak,
                        connections: s.adapter.connections,
                        accepted: s.adapter.accepted,
                        sends_waited: 0,
                    });
                }
                Ok(Ctl::Neighbors(reply)) => {
                    let _ = reply.send(node.neighbors());
                }
                Ok(Ctl::Close(reply)) => {
                    node.close();
                    closing = Some(reply);
                }
                Err(std_mpsc::TryRecvError::Empty) => break,
                // The TestNode was dropped: crash (the node and its sockets drop here).
                Err(std_mpsc::TryRecvError::Disconnected) => return,
            }
        }
        for (path, tx) in &subs {
            while let Some(m) = node.try_recv(path) {
                let _ = tx.send(m);
            }
        }
        // Recorded for the test (dropped when it does not keep up, like the tokio stream).
        for e in node.events() {
            if !matches!(e, Event::MessageDropped { .. }) {
                let _ = events_tx.try_send(e);
            }
        }
        if node.is_closed() {
            if let Some(reply) = closing.take() {
                let _ = reply.send(());
            }
            return;
        }
    }
}

/// Starts `n` nodes of `mesh` on loopback, node `i` on [`kind_of`]`(kinds, i)`: the first
/// opens alone, each later one bootstraps from up to three earlier ones.
pub async fn start_mixed_mesh(mesh: &str, n: usize, kinds: &[Kind], config: impl Fn(&mut Config)) -> Vec<TestNode> {
    start_mixed_mesh_with(mesh, n, kinds, None, config).await
}

/// As [`start_mixed_mesh`], every node given the mesh `password` through its builder.
pub async fn start_mixed_mesh_with(
    mesh: &str,
    n: usize,
    kinds: &[Kind],
    password: Option<&str>,
    config: impl Fn(&mut Config),
) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = fast_config(mesh);
        config(&mut c);
        let boot: Vec<SocketAddr> = if i == 0 {
            Vec::new()
        } else {
            let picks: BTreeSet<usize> = [0, i / 2, i - 1].into_iter().collect();
            picks.into_iter().map(|j| nodes[j].addr()).collect()
        };
        let start = if i == 0 { Start::Alone } else { Start::Join };
        nodes.push(TestNode::start_as(kind_of(kinds, i), c, &boot, start, password).await);
    }
    nodes
}

/// Whether `nodes` form one mesh: every neighbor of each is one of `nodes`, every degree is
/// within [min, max], and the graph is connected.
pub async fn is_one_test_mesh(nodes: &[&TestNode], min: usize, max: usize) -> bool {
    let mut graph: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
    for n in nodes {
        graph.insert(n.id(), n.neighbors().await.iter().map(|x| x.node).collect());
    }
    forms_one_mesh(&graph, min, max)
}

/// Waits until no node gains or loses a neighbor for `quiet` (the maintainer has settled).
pub async fn wait_settled(nodes: &[&TestNode], quiet: Duration) {
    wait_until_no_neighbor_changes(quiet, || async {
        let mut n = 0;
        for node in nodes {
            if let Some(s) = node.stats().await {
                n += neighbor_changes(&s.core);
            }
        }
        n
    })
    .await;
}
