//! The node's task: the only owner of the core [`Node`], its sockets and its timer.
//!
//! One future, polled by hand (as quinn's connection driver is), so that a single wake-up can
//! serve every socket, and every input is followed by draining the core's outputs before the
//! next input. Each round: control commands, finished connects and resolves, accepts, delayed
//! deliveries, socket reads, local sends, socket writes, the timer. Writes come after reads and
//! sends on purpose: everything queued in a round leaves in as few vectored writes as possible.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerchannel_core::{
    ChannelPath, Event, Input, Instant as CoreInstant, LinkId, Message, MessageId, NeighborInfo, Node, Output,
    SendError, WriteQueue,
};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, Sleep};

use crate::error::Error;
use crate::mailbox::{Mailbox, Offer};
use crate::resolver::Resolver;
use crate::stats::{AdapterStats, NodeStats};

/// Rounds of work per wake-up before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 16;
/// Local sends taken per round, so reads and writes interleave with a fast sender.
const SENDS_PER_ROUND: usize = 256;
/// Accepts per round.
const ACCEPTS_PER_ROUND: usize = 16;
/// Most slices in one vectored write (well under every OS's IOV_MAX).
const MAX_IOVECS: usize = 128;

/// A user command for the node's task.
pub(crate) enum Command {
    Subscribe { id: u64, path: ChannelPath, mailbox: Arc<Mailbox<Message>> },
    Unsubscribe { id: u64 },
    Events { mailbox: Arc<Mailbox<Event>> },
    Stats(oneshot::Sender<NodeStats>),
    Neighbors(oneshot::Sender<Vec<NeighborInfo>>),
    ListenAddrs(Vec<SocketAddr>),
    Close(oneshot::Sender<()>),
}

/// A local send waiting for the core to accept it.
pub(crate) struct SendRequest {
    pub(crate) path: ChannelPath,
    pub(crate) payload: Bytes,
    /// Present when the sender waits for the core's verdict and the message ID.
    pub(crate) reply: Option<oneshot::Sender<Result<MessageId, Error>>>,
}

/// Adapter knobs, fixed at open.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) deliver_timeout: Duration,
    pub(crate) write_window: usize,
    pub(crate) read_chunk: usize,
    pub(crate) open_alone: bool,
    pub(crate) open_timeout: Duration,
}

enum TaskDone {
    Dial { link: LinkId, addr: SocketAddr, result: io::Result<TcpStream> },
    Resolve { id: u64, result: io::Result<Vec<SocketAddr>> },
    Registered(io::Result<()>),
    Unregistered(io::Result<()>),
}

/// One TCP connection of one link.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes taken from the core and not yet written (at most the write window).
    out: WriteQueue,
    /// The core closed the link: write what is left, shut down, then drain reads until the
    /// peer closes or the deadline passes (so our last frame is not lost to a reset).
    closing: Option<Instant>,
    shut_down: bool,
}

struct Sub {
    path: ChannelPath,
    mailbox: Arc<Mailbox<Message>>,
    /// The queue overflowed: drop without waiting until it is back to half full.
    overflowing: bool,
}

enum Phase {
    Opening { reply: Option<oneshot::Sender<Result<(), Error>>>, deadline: Instant, first_error: Option<Error> },
    Running,
    Closing { reply: Option<oneshot::Sender<()>>, deadline: Instant },
    Done,
}

pub(crate) struct Driver {
    node: Node,
    origin: Instant,
    settings: Settings,
    listener: Option<TcpListener>,
    conns: BTreeMap<LinkId, Conn>,
    dialing: HashMap<LinkId, AbortHandle>,
    tasks: JoinSet<TaskDone>,
    resolves_in_flight: usize,
    unregistering: bool,
    /// The open call's reply, held until the first registration with the resolver finished, so
    /// a node that `open` returned is already findable by the next one.
    open_after_register: Option<oneshot::Sender<Result<(), Error>>>,
    resolver: Option<Arc<dyn Resolver>>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    send_rx: mpsc::Receiver<SendRequest>,
    held_send: Option<SendRequest>,
    held_send_counted: bool,
    subs: BTreeMap<u64, Sub>,
    paths: BTreeMap<ChannelPath, Vec<u64>>,
    /// Deliveries waiting for room in a full channel queue (reads pause meanwhile).
    stalled: VecDeque<(u64, Message)>,
    stall_deadline: Option<Instant>,
    events: Vec<Arc<Mailbox<Event>>>,
    inputs: VecDeque<Input>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    read_buf: BytesMut,
    phase: Phase,
    stats: AdapterStats,
}

pub(crate) struct DriverParts {
    pub(crate) node: Node,
    pub(crate) origin: Instant,
    pub(crate) settings: Settings,
    pub(crate) listener: TcpListener,
    pub(crate) resolver: Option<Arc<dyn Resolver>>,
    pub(crate) cmd_rx: mpsc::UnboundedReceiver<Command>,
    pub(crate) send_rx: mpsc::Receiver<SendRequest>,
    pub(crate) open_reply: oneshot::Sender<Result<(), Error>>,
}

/// Maps tokio's clock onto the core's time scale (nanoseconds since the node started).
fn core_now(origin: Instant) -> CoreInstant {
    CoreInstant::from_nanos(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
}

impl Driver {
    pub(crate) fn new(p: DriverParts) -> Driver {
        let now = Instant::now();
        Driver {
            node: p.node,
            origin: p.origin,
            listener: Some(p.listener),
            conns: BTreeMap::new(),
            dialing: HashMap::new(),
            tasks: JoinSet::new(),
            resolves_in_flight: 0,
            unregistering: false,
            open_after_register: None,
            resolver: p.resolver,
            cmd_rx: p.cmd_rx,
            send_rx: p.send_rx,
            held_send: None,
            held_send_counted: false,
            subs: BTreeMap::new(),
            paths: BTreeMap::new(),
            stalled: VecDeque::new(),
            stall_deadline: None,
            events: Vec::new(),
            inputs: VecDeque::new(),
            timer: Box::pin(tokio::time::sleep_until(now)),
            timer_at: None,
            read_buf: BytesMut::new(),
            phase: Phase::Opening {
                reply: Some(p.open_reply),
                deadline: now + p.settings.open_timeout,
                first_error: None,
            },
            settings: p.settings,
            stats: AdapterStats::default(),
        }
    }

    /// Runs the node until it is closed (or the task is aborted by dropping the handle).
    pub(crate) async fn run(mut self) {
        // Certificates are checked against the wall clock, which the core never reads itself;
        // it carries the time on from here with its own monotonic clock.
        self.feed(Input::WallClock { unix_secs: crate::security::unix_now() });
        self.feed(Input::Open);
        if self.settings.open_alone {
            self.open_done(Ok(()));
        }
        poll_fn(|cx| self.poll_drive(cx)).await;
    }

    fn now(&self) -> CoreInstant {
        core_now(self.origin)
    }

    // ----- the loop -----------------------------------------------------------------------

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS_PER_POLL {
            let mut progress = self.poll_commands(cx);
            progress |= self.poll_tasks(cx);
            progress |= self.poll_accept(cx);
            progress |= self.poll_stalled(cx);
            if self.stalled.is_empty() {
                progress |= self.poll_reads(cx);
            }
            progress |= self.poll_sends(cx);
            progress |= self.poll_writes(cx);
            progress |= self.poll_timer(cx);
            self.check_phase();
            if matches!(self.phase, Phase::Done) {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Feeds one input and everything it leads to, draining outputs after each.
    fn feed(&mut self, input: Input) {
        self.inputs.push_back(input);
        while let Some(input) = self.inputs.pop_front() {
            let now = self.now();
            self.node.handle_input(now, input);
            self.drain();
        }
    }

    /// Carries out every pending output of the core.
    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Dial { link, addr } => self.dial(link, addr),
                Output::Transmit { link } => {
                    if let Some(c) = self.conns.get_mut(&link) {
                        c.out.wake();
                    }
                }
                Output::CloseLink { link, reason } => {
                    if let Some(h) = self.dialing.remove(&link) {
                        h.abort();
                        tracing::debug!(%link, %reason, "dial abandoned");
                    } else if let Some(c) = self.conns.get_mut(&link) {
                        tracing::debug!(%link, peer = %c.peer, %reason, "closing link");
                        // The core may still hand out a farewell frame; the linger bounds how
                        // long a peer that does not read can hold the socket.
                        c.closing = Some(Instant::now() + self.node.config().close_linger);
                        c.out.wake();
                    }
                }
                Output::Deliver(msg) => self.deliver(msg),
                Output::Resolve { id, mesh, max_addresses } => match &self.resolver {
                    Some(r) => {
                        let fut = r.resolve(&mesh, max_addresses);
                        self.resolves_in_flight += 1;
                        self.tasks.spawn(async move { TaskDone::Resolve { id, result: fut.await } });
                    }
                    None => self.inputs.push_back(Input::ResolveFailed { id }),
                },
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn dial(&mut self, link: LinkId, addr: SocketAddr) {
        tracing::debug!(%link, %addr, "dialing");
        let h = self.tasks.spawn(async move {
            let result = TcpStream::connect(addr).await;
            TaskDone::Dial { link, addr, result }
        });
        self.dialing.insert(link, h);
    }

    fn add_conn(&mut self, link: LinkId, stream: TcpStream, peer: SocketAddr) {
        // We batch writes ourselves; Nagle would only add latency on top.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "set_nodelay failed");
        }
        self.conns.insert(link, Conn { stream, peer, out: WriteQueue::awake(), closing: None, shut_down: false });
    }

    fn on_event(&mut self, e: Event) {
        match &e {
            Event::NeighborUp { node, addr, .. } => tracing::info!(%node, %addr, "neighbor up"),
            Event::NeighborDown { node, reason, by_peer, .. } => {
                tracing::info!(%node, %reason, by_peer, "neighbor down")
            }
            Event::DialFailed { addr, reason } => tracing::debug!(%addr, ?reason, "dial failed"),
            Event::InboundRefused { addr, reason } => tracing::debug!(%addr, %reason, "inbound refused"),
            Event::Online => tracing::info!("online"),
            Event::Offline => tracing::info!("offline"),
            Event::AuthenticationFailed { addr, failure, .. } => {
                tracing::warn!(%addr, %failure, "authentication failed")
            }
            Event::InvalidSignature { origin, id, .. } => tracing::warn!(%origin, ?id, "invalid signature"),
            Event::MessageDropped { .. } => {}
        }
        if let Phase::Opening { first_error, .. } = &mut self.phase {
            match &e {
                Event::Online => self.open_done(Ok(())),
                // The first failure is the one reported: later ones are usually retries.
                Event::DialFailed { addr, reason } if first_error.is_none() => {
                    *first_error = Some(Error::Unreachable { addr: *addr, reason: *reason });
                }
                _ => {}
            }
        }
        let mut dropped = 0;
        self.events.retain(|m| {
            let before = m.dropped();
            let alive = m.push_evicting(e.clone());
            dropped += m.dropped() - before;
            alive
        });
        self.stats.events_dropped += dropped;
    }

    fn open_done(&mut self, result: Result<(), Error>) {
        if let Phase::Opening { reply, .. } = &mut self.phase {
            let failed = result.is_err();
            let reply = reply.take();
            self.phase = if failed { Phase::Done } else { Phase::Running };
            if !failed && self.resolver.is_some() {
                // Answer once registered (the registration has its own timeouts).
                self.open_after_register = reply;
                self.register();
            } else if let Some(r) = reply {
                let _ = r.send(result);
            }
        }
    }

    /// Registers with the resolver once the node is a member (online, or opened alone), so a
    /// node whose open fails never leaves a stale registration behind.
    fn register(&mut self) {
        if let Some(resolver) = &self.resolver {
            let cfg = self.node.config();
            let fut = resolver.register(&cfg.mesh, self.node.id(), &cfg.listen_addrs);
            self.tasks.spawn(async move { TaskDone::Registered(fut.await) });
        }
    }

    // ----- delivery to channels -----------------------------------------------------------

    fn deliver(&mut self, msg: Message) {
        let Some(ids) = self.paths.get(&msg.path) else { return };
        // Clone per subscriber: the payload is shared, not copied.
        let ids: Vec<u64> = ids.clone();
        for id in ids {
            if self.stalled.is_empty() {
                self.offer(id, msg.clone());
            } else {
                // Keep per-channel order: nothing overtakes a stalled delivery.
                self.stalled.push_back((id, msg.clone()));
            }
        }
    }

    /// Offers `msg` to subscriber `id`; on a full queue, waits (stalls) or drops per policy.
    fn offer(&mut self, id: u64, msg: Message) {
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if sub.overflowing && sub.mailbox.below_half() {
            sub.overflowing = false;
        }
        match sub.mailbox.offer(msg) {
            Offer::Queued => self.stats.delivered += 1,
            Offer::Gone => {}
            Offer::Full(msg) => {
                if sub.overflowing || self.settings.deliver_timeout.is_zero() {
                    sub.overflowing = true;
                    sub.mailbox.count_drop();
                    self.stats.deliveries_dropped += 1;
                } else {
                    self.stats.delivery_stalls += 1;
                    self.stall_deadline = Some(Instant::now() + self.settings.deliver_timeout);
                    self.stalled.push_back((id, msg));
                }
            }
        }
    }

    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Some((id, _)) = self.stalled.front() {
            let id = *id;
            let Some(sub) = self.subs.get_mut(&id) else {
                self.stalled.pop_front();
                progress = true;
                continue;
            };
            let full = sub.mailbox.poll_room(cx).is_pending();
            let deadline_passed = self.stall_deadline.is_none_or(|d| Instant::now() >= d);
            if full && !(sub.overflowing || deadline_passed) {
                break;
            }
            let Some((_, msg)) = self.stalled.pop_front() else { break };
            progress = true;
            if full {
                // The receiver did not make room in time: drop, and keep dropping without
                // waiting until it catches up, so one slow channel cannot stall the node.
                sub.overflowing = true;
                sub.mailbox.count_drop();
                self.stats.deliveries_dropped += 1;
            } else {
                self.stall_deadline = None;
                self.offer(id, msg);
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

    // ----- commands and tasks -------------------------------------------------------------

    fn poll_commands(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        loop {
            let cmd = match self.cmd_rx.poll_recv(cx) {
                Poll::Ready(Some(c)) => c,
                // Every handle is gone (only possible if the handle leaked its abort): leave.
                Poll::Ready(None) => {
                    if !matches!(self.phase, Phase::Closing { .. } | Phase::Done) {
                        self.begin_close(None);
                    }
                    return progress;
                }
                Poll::Pending => return progress,
            };
            progress = true;
            self.on_command(cmd);
        }
    }

    /// Takes the commands already queued, without waiting. Called after a read and before its
    /// bytes go to the core: a `channel()` made before the peers sent (so before those bytes
    /// arrived) then takes effect before they are delivered. Without this, a subscription
    /// queued while the driver was between its command and read steps missed the messages of
    /// that read, which a test saw under load.
    fn take_queued_commands(&mut self) {
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            self.on_command(cmd);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe { id, path, mailbox } => {
                self.node.open_channel(path.clone());
                self.paths.entry(path.clone()).or_default().push(id);
                self.subs.insert(id, Sub { path, mailbox, overflowing: false });
            }
            Command::Unsubscribe { id } => {
                if let Some(sub) = self.subs.remove(&id) {
                    if let Some(ids) = self.paths.get_mut(&sub.path) {
                        ids.retain(|i| *i != id);
                        if ids.is_empty() {
                            self.paths.remove(&sub.path);
                            self.node.close_channel(&sub.path);
                        }
                    }
                }
            }
            Command::Events { mailbox } => self.events.push(mailbox),
            Command::Stats(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Command::Neighbors(reply) => {
                let _ = reply.send(self.node.neighbors());
            }
            Command::ListenAddrs(addrs) => {
                let now = self.now();
                self.node.handle_input(now, Input::ListenAddrsChanged { addrs });
                self.drain();
                if let Some(resolver) = &self.resolver {
                    let cfg = self.node.config();
                    let fut = resolver.update(&cfg.mesh, self.node.id(), &cfg.listen_addrs);
                    self.tasks.spawn(async move { TaskDone::Registered(fut.await) });
                }
            }
            Command::Close(reply) => self.begin_close(Some(reply)),
        }
    }

    fn begin_close(&mut self, reply: Option<oneshot::Sender<()>>) {
        if let Phase::Closing { reply: r, .. } = &mut self.phase {
            // A second close waits for the first.
            if r.is_none() {
                *r = reply;
            }
            return;
        }
        tracing::info!("closing");
        self.open_done(Err(Error::Closed));
        // No new neighbors while leaving.
        self.listener = None;
        self.feed(Input::Close);
        if let Some(r) = &self.resolver {
            let fut = r.unregister(&self.node.config().mesh, self.node.id());
            self.unregistering = true;
            self.tasks.spawn(async move { TaskDone::Unregistered(fut.await) });
        }
        let deadline = Instant::now() + self.node.config().close_linger;
        self.phase = Phase::Closing { reply, deadline };
    }

    fn snapshot(&self) -> NodeStats {
        let mut adapter = self.stats.clone();
        adapter.write_buffered_bytes = self.conns.values().map(|c| c.out.len()).sum();
        adapter.connections = self.conns.len();
        adapter.dials_in_flight = self.dialing.len();
        adapter.channel_queued = self.subs.values().map(|s| s.mailbox.len()).sum::<usize>() + self.stalled.len();
        NodeStats { core: self.node.stats(), adapter }
    }

    fn poll_tasks(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        while let Poll::Ready(Some(done)) = self.tasks.poll_join_next(cx) {
            progress = true;
            let done = match done {
                Ok(d) => d,
                // Aborted dials, or a resolver that panicked: the core times resolves out.
                Err(e) => {
                    if e.is_panic() {
                        tracing::warn!("a resolver task panicked; the core will time the request out");
                    }
                    continue;
                }
            };
            match done {
                TaskDone::Dial { link, addr, result } => {
                    if self.dialing.remove(&link).is_none() {
                        continue; // the core gave up on this link already
                    }
                    match result {
                        Ok(stream) => {
                            tracing::debug!(%link, %addr, "connected");
                            self.add_conn(link, stream, addr);
                            self.feed(Input::LinkConnected { link });
                        }
                        Err(e) => {
                            tracing::debug!(%link, %addr, error = %e, "connect failed");
                            self.feed(Input::DialFailed { link, error: e.kind() });
                        }
                    }
                }
                TaskDone::Resolve { id, result } => {
                    self.resolves_in_flight = self.resolves_in_flight.saturating_sub(1);
                    let input = match result {
                        Ok(addrs) => {
                            // Our own registration does not count as finding the mesh.
                            let own = &self.node.config().listen_addrs;
                            if addrs.iter().all(|a| own.contains(a)) {
                                self.note_open_failure(Error::NoPeersFound);
                            }
                            Input::Resolved { id, addrs }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "resolve failed");
                            self.note_open_failure(Error::NoPeersFound);
                            Input::ResolveFailed { id }
                        }
                    };
                    self.feed(input);
                }
                TaskDone::Registered(r) => {
                    if let Err(e) = r {
                        // The node is a member all the same; it is just not findable yet.
                        tracing::warn!(error = %e, "resolver registration failed");
                    }
                    if let Some(reply) = self.open_after_register.take() {
                        let _ = reply.send(Ok(()));
                    }
                }
                TaskDone::Unregistered(r) => {
                    self.unregistering = false;
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "resolver unregistration failed");
                    }
                }
            }
        }
        progress
    }

    fn note_open_failure(&mut self, e: Error) {
        if let Phase::Opening { first_error, .. } = &mut self.phase {
            if first_error.is_none() {
                *first_error = Some(e);
            }
        }
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        for _ in 0..ACCEPTS_PER_ROUND {
            let Some(listener) = &self.listener else { break };
            match listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, remote))) => {
                    progress = true;
                    self.stats.accepted += 1;
                    let now = self.now();
                    match self.node.accept(now, remote) {
                        Ok(link) => {
                            tracing::debug!(%link, %remote, "accepted");
                            self.add_conn(link, stream, remote);
                            self.drain();
                            self.run_inputs();
                        }
                        Err(e) => tracing::debug!(%remote, error = %e, "inbound connection refused"),
                    }
                }
                Poll::Ready(Err(e)) => {
                    // EMFILE and friends: the listener stays; the next poll retries.
                    tracing::warn!(error = %e, "accept failed");
                    break;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    /// Inputs queued by `drain` outside of `feed`.
    fn run_inputs(&mut self) {
        if let Some(input) = self.inputs.pop_front() {
            self.feed(input);
        }
    }

    // ----- sockets ------------------------------------------------------------------------

    fn poll_reads(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut ended: Vec<(LinkId, Option<io::ErrorKind>)> = Vec::new();
        let mut received: Vec<(LinkId, Bytes)> = Vec::new();
        for (&link, c) in self.conns.iter_mut() {
            // A flood from this link waits for room in a neighbor's queue: leave its bytes in
            // the socket, so TCP slows the sender (the core wakes the loop when it goes on).
            if self.node.reads_paused(link) {
                continue;
            }
            loop {
                match c.stream.poll_read_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        ended.push((link, Some(e.kind())));
                        break;
                    }
                    Poll::Ready(Ok(())) => {}
                }
                // Reads share one allocation until less than a quarter of it is left: a fresh
                // buffer per read would let each small message keep a whole read buffer alive
                // (the core keeps recent floods for recovery without copying them).
                if self.read_buf.capacity() - self.read_buf.len() < self.settings.read_chunk / 4 {
                    self.read_buf.reserve(self.settings.read_chunk);
                }
                match c.stream.try_read_buf(&mut self.read_buf) {
                    Ok(0) => {
                        ended.push((link, None));
                        break;
                    }
                    Ok(n) => {
                        progress = true;
                        self.stats.reads += 1;
                        self.stats.bytes_read += n as u64;
                        let data = self.read_buf.split().freeze();
                        // A closing link's bytes are read only to see the peer's end.
                        if c.closing.is_none() {
                            received.push((link, data));
                        }
                        // One read per connection per round keeps connections fair.
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        ended.push((link, Some(e.kind())));
                        break;
                    }
                }
            }
        }
        if !received.is_empty() {
            self.take_queued_commands();
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

    /// The socket of `link` is finished: forget it and tell the core (harmless if the core
    /// already closed the link itself).
    fn end_conn(&mut self, link: LinkId, error: Option<io::ErrorKind>) {
        if let Some(c) = self.conns.remove(&link) {
            if c.closing.is_none() {
                tracing::debug!(%link, peer = %c.peer, ?error, "connection ended");
            }
            self.feed(Input::LinkClosed { link, error });
        }
    }

    fn poll_sends(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        // One clock reading serves the whole batch: the sends of one round are taken within
        // microseconds, and a reading per message was a measurable share of a small send.
        let mut now = None;
        for _ in 0..SENDS_PER_ROUND {
            if self.held_send.is_none() {
                match self.send_rx.poll_recv(cx) {
                    Poll::Ready(Some(r)) => {
                        self.held_send = Some(r);
                        self.held_send_counted = false;
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            let Some(req) = self.held_send.take() else { break };
            if req.reply.as_ref().is_some_and(|r| r.is_closed()) {
                // The sender gave up (its future was dropped) before the core took it.
                progress = true;
                continue;
            }
            if self.node.is_open() && !self.node.can_send(&req.path, req.payload.len()) {
                // Backpressure: hold it (and stop taking more) until a link drains.
                if !self.held_send_counted {
                    self.held_send_counted = true;
                    self.stats.sends_waited += 1;
                }
                self.held_send = Some(req);
                break;
            }
            progress = true;
            let now = *now.get_or_insert_with(|| self.now());
            let result = match self.node.send(now, &req.path, req.payload) {
                Ok(id) => Ok(id),
                Err(SendError::MessageTooLarge { size, max }) => Err(Error::MessageTooLarge { size, max }),
                Err(SendError::BadPath(source)) => {
                    Err(Error::InvalidPath { given: req.path.as_str().to_owned(), source })
                }
                Err(SendError::NotOpen) => Err(Error::Closed),
                Err(SendError::Busy) => Err(Error::Closed), // unreachable: can_send said yes
            };
            match req.reply {
                Some(reply) => {
                    let _ = reply.send(result);
                }
                None => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "queued send not taken");
                    }
                }
            }
            self.drain();
            self.run_inputs();
        }
        progress
    }

    fn poll_writes(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut ended: Vec<(LinkId, Option<io::ErrorKind>)> = Vec::new();
        let window = self.settings.write_window;
        // Read only for a closing connection's linger.
        let mut now = None;
        for (&link, c) in self.conns.iter_mut() {
            loop {
                c.out.refill(&mut self.node, link, window);
                self.stats.write_buffered_peak = self.stats.write_buffered_peak.max(c.out.len());
                if c.out.is_empty() {
                    break;
                }
                match c.stream.poll_write_ready(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Err(e)) => {
                        ended.push((link, Some(e.kind())));
                        break;
                    }
                    Poll::Ready(Ok(())) => {}
                }
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let (n_slices, _) = c.out.io_slices(&mut slices);
                match c.stream.try_write_vectored(&slices[..n_slices]) {
                    Ok(0) => {
                        ended.push((link, Some(io::ErrorKind::WriteZero)));
                        break;
                    }
                    Ok(n) => {
                        progress = true;
                        self.stats.writes += 1;
                        self.stats.bytes_written += n as u64;
                        c.out.consume(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        ended.push((link, Some(e.kind())));
                        break;
                    }
                }
            }
            if let Some(deadline) = c.closing {
                if c.out.is_drained() && !c.shut_down {
                    // Everything said: send FIN, then wait for the peer's end (see `closing`).
                    let _ = Pin::new(&mut c.stream).poll_shutdown(cx);
                    c.shut_down = true;
                    progress = true;
                }
                if *now.get_or_insert_with(Instant::now) >= deadline {
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

    // ----- time ---------------------------------------------------------------------------

    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        // Everything due now first, then arm the one timer for the earliest deadline left.
        // Bounded, so a deadline that stays in the past cannot spin the task forever.
        for _ in 0..64 {
            let now_tokio = Instant::now();
            // A deadline beyond tokio's range means "never".
            let core_deadline =
                self.node.poll_timeout().and_then(|d| self.origin.checked_add(Duration::from_nanos(d.as_nanos())));
            if core_deadline.is_some_and(|d| d <= now_tokio) {
                let now = self.now();
                self.node.handle_timeout(now);
                self.drain();
                self.run_inputs();
                progress = true;
                continue;
            }
            let mut next = core_deadline;
            let mut consider = |d: Option<Instant>| {
                if let Some(d) = d {
                    next = Some(next.map_or(d, |n: Instant| n.min(d)));
                }
            };
            consider(self.stall_deadline);
            for c in self.conns.values() {
                consider(c.closing);
            }
            match &self.phase {
                Phase::Opening { deadline, .. } | Phase::Closing { deadline, .. } => consider(Some(*deadline)),
                _ => {}
            }
            let Some(at) = next else {
                self.timer_at = None;
                return progress;
            };
            if self.timer_at != Some(at) {
                self.timer.as_mut().reset(at);
                self.timer_at = Some(at);
            }
            if self.timer.as_mut().poll(cx).is_ready() {
                // A non-core deadline passed: the rest of the round acts on it.
                self.timer_at = None;
                if at <= Instant::now() && core_deadline != Some(at) {
                    return true;
                }
                continue;
            }
            return progress;
        }
        // Budget spent: come back in the next round.
        true
    }

    /// Ends `open` or `close` when their conditions hold.
    fn check_phase(&mut self) {
        if matches!(self.phase, Phase::Running | Phase::Done) {
            return;
        }
        let now = Instant::now();
        let idle = self.dialing.is_empty() && self.conns.is_empty() && self.resolves_in_flight == 0;
        let online = self.node.is_online();
        let open_timeout = self.settings.open_timeout;
        let conns_empty = self.conns.is_empty();
        let unregistering = self.unregistering;
        match &mut self.phase {
            Phase::Opening { deadline, first_error, .. } => {
                let result = if online {
                    Some(Ok(()))
                } else if idle && first_error.is_some() {
                    // Every attempt so far failed and nothing is in flight: report the first
                    // error rather than keep the caller waiting on retries likely to fail too.
                    first_error.take().map(Err)
                } else if now >= *deadline {
                    Some(Err(first_error.take().unwrap_or(Error::OpenTimedOut(open_timeout))))
                } else {
                    None
                };
                if let Some(r) = result {
                    self.open_done(r);
                }
            }
            Phase::Closing { deadline, reply } => {
                if (conns_empty && !unregistering) || now >= *deadline {
                    if let Some(r) = reply.take() {
                        let _ = r.send(());
                    }
                    tracing::info!("closed");
                    self.phase = Phase::Done;
                }
            }
            Phase::Running | Phase::Done => {}
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Receivers see the end of their streams once they have taken what is queued.
        for sub in self.subs.values() {
            sub.mailbox.close_sender();
        }
        for m in &self.events {
            m.close_sender();
        }
        for h in self.dialing.values() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use peerchannel_core::wire::{encode_control, encode_flood_header, Connect, Frame, Hello, VERSION};
    use peerchannel_core::{Config, MeshId, NodeId};
    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Runs one step of the driver (`step` gets the task's context) and lets the runtime turn
    /// once, so socket readiness can arrive between steps.
    async fn step<T>(d: &mut Driver, mut f: impl FnMut(&mut Driver, &mut Context<'_>) -> T) -> T {
        let out = poll_fn(|cx| Poll::Ready(f(d, cx))).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        out
    }

    /// The race fixed in 685fc9a, made deterministic: the user's `channel()` is queued after
    /// the driver's command step and before its read step, and the read holds a message for
    /// that channel. The read step must take the queued subscription before the bytes reach
    /// the core, or the message is counted as for no channel and lost to the user.
    #[tokio::test(flavor = "current_thread")]
    async fn a_subscription_queued_before_a_read_is_open_when_that_reads_message_arrives() {
        let mesh = MeshId::new("race").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node = Node::new(Config::new(mesh.clone(), 7), CoreInstant::ZERO).unwrap();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (_send_tx, send_rx) = mpsc::channel(1);
        let (open_reply, _opened) = oneshot::channel();
        let settings = Settings {
            deliver_timeout: Duration::ZERO,
            write_window: 64 * 1024,
            read_chunk: 64 * 1024,
            open_alone: true,
            open_timeout: Duration::from_secs(60),
        };
        let mut d = Driver::new(DriverParts {
            node,
            origin: Instant::now(),
            settings,
            listener,
            resolver: None,
            cmd_rx,
            send_rx,
            open_reply,
        });
        d.feed(Input::Open);

        // A peer speaking the wire protocol by hand becomes a neighbor.
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let mut hs = BytesMut::new();
        encode_control(&Frame::Hello(Hello { version: VERSION, security: 0, mesh }), &mut hs);
        encode_control(
            &Frame::Connect(Connect { node: NodeId::new(0x77).unwrap(), addrs: Default::default() }),
            &mut hs,
        );
        peer.write_all(&hs).await.unwrap();
        for _ in 0..2000 {
            if d.node.neighbor_count() == 1 {
                break;
            }
            let _ = step(&mut d, |d, cx| d.poll_drive(cx)).await;
        }
        assert_eq!(d.node.neighbor_count(), 1, "the handshake did not complete");

        // The user subscribes; the command waits in the queue. Then the peer's flood arrives.
        let path = ChannelPath::new("/chat").unwrap();
        let mailbox = Mailbox::new(16);
        cmd_tx.send(Command::Subscribe { id: 1, path: path.clone(), mailbox: mailbox.clone() }).unwrap();
        let mut flood = BytesMut::new();
        encode_flood_header(4, 8, &[9; 16], 0x77, path.as_bytes(), 5, &mut flood);
        flood.extend_from_slice(b"hello");
        peer.write_all(&flood).await.unwrap();

        // Only the read step runs, as when the command landed just after the command step.
        for _ in 0..2000 {
            if d.node.stats().floods_received > 0 {
                break;
            }
            step(&mut d, |d, cx| d.poll_reads(cx)).await;
        }
        assert_eq!(d.node.stats().floods_received, 1, "the flood was not read");
        assert_eq!(d.node.stats().no_channel, 0, "the message reached the core before its subscription");
        let got = mailbox.try_recv().expect("the subscriber got nothing");
        assert_eq!(&got.payload[..], b"hello");
    }
}
