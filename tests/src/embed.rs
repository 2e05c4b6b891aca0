//! The core embedded in an async runtime with no adapter at all: what "embed in any event
//! loop" costs. Runtime-neutral: sockets and timers come from `async-io`, channels from
//! `async-channel`, and tasks from a `spawn` function you pass in, so the same code runs on
//! async-std (`async_std::task::spawn`, see `tests/embed_async_std.rs`) and on smol
//! (`|f| smol::spawn(f).detach()`) unchanged. One task owns the `Node`; one reader and one
//! writer task per connection; one accept task. Queues are bounded: the inbox (readers wait),
//! each writer's queue (bytes stay in the core's bounded queue) and the command queue.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use peerchannel_core::{ChannelPath, Config, Input, Instant as CoreInstant, LinkId, Message, Node, NodeId, Output};

/// How the embedding starts a task (`async_std::task::spawn`, `smol::spawn(..).detach()`...).
pub type Spawn = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// What the application asks of a node.
pub enum Command {
    /// Flood a message (waits in the queue while the core's outbound budget is spent).
    Send(ChannelPath, Bytes),
    /// Deliver the channel's messages into this queue.
    Subscribe(ChannelPath, async_channel::Sender<Message>),
    /// Reply with the number of neighbors.
    Neighbors(async_channel::Sender<usize>),
    /// Leave gracefully, then stop.
    Close,
}

/// A running embedded node.
pub struct Embedded {
    /// Its ID.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its command queue (bounded).
    pub commands: async_channel::Sender<Command>,
}

enum Ev {
    Accepted(Async<TcpStream>, SocketAddr),
    Connected(LinkId, io::Result<Async<TcpStream>>),
    Data(LinkId, Bytes),
    Ended(LinkId, Option<ErrorKind>),
    Drained(LinkId),
}

/// Starts a node of `config` listening on an OS-chosen loopback port; it joins through
/// `config.bootstrap` (or starts a mesh when that is empty).
pub fn start(mut config: Config, spawn: Spawn) -> io::Result<Embedded> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    config.listen_addrs = vec![addr];
    let node = Node::new(config, CoreInstant::ZERO).map_err(io::Error::other)?;
    let id = node.id();
    let (ev_tx, ev_rx) = async_channel::bounded(256);
    let (cmd_tx, cmd_rx) = async_channel::bounded(64);
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let tx = ev_tx.clone();
    spawn(Box::pin(async move {
        // Ends when the node's task drops `stop_tx`.
        let stop = async { stop_rx.recv().await.ok().and(None) };
        let accept = async {
            while let Ok((s, remote)) = listener.accept().await {
                if tx.send(Ev::Accepted(s, remote)).await.is_err() {
                    break;
                }
            }
            None::<()>
        };
        future::or(accept, stop).await;
    }));
    let d = Driver { node, origin: Instant::now(), spawn: spawn.clone(), ev_tx, writers: HashMap::new() };
    spawn(Box::pin(d.run(ev_rx, cmd_rx, stop_tx)));
    Ok(Embedded { id, addr, commands: cmd_tx })
}

struct Driver {
    node: Node,
    origin: Instant,
    spawn: Spawn,
    ev_tx: async_channel::Sender<Ev>,
    /// Per link: its socket (to shut down) and its writer's bounded queue.
    writers: HashMap<LinkId, (Arc<Async<TcpStream>>, Option<async_channel::Sender<Bytes>>)>,
}

impl Driver {
    fn now(&self) -> CoreInstant {
        CoreInstant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn run(
        mut self,
        ev: async_channel::Receiver<Ev>,
        cmds: async_channel::Receiver<Command>,
        _stop: async_channel::Sender<()>,
    ) {
        let mut subs: HashMap<ChannelPath, async_channel::Sender<Message>> = HashMap::new();
        let mut held: Option<(ChannelPath, Bytes)> = None;
        let mut leaving: Option<Instant> = None;
        self.node.handle_input(self.now(), Input::Open);
        loop {
            self.drain(&subs);
            if leaving.is_some_and(|t| self.writers.is_empty() || Instant::now() >= t) {
                break;
            }
            let wake = self.node.poll_timeout().map(|t| self.origin + Duration::from_nanos(t.as_nanos()));
            let timer = async {
                Timer::at(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))).await;
                None
            };
            // While a send waits for the outbound budget, take no more commands.
            let cmd = async {
                if held.is_some() {
                    future::pending().await
                } else {
                    cmds.recv().await.ok().map(Err)
                }
            };
            let next = future::or(future::or(async { ev.recv().await.ok().map(Ok) }, cmd), timer).await;
            let now = self.now();
            match next {
                None => self.node.handle_timeout(now),
                Some(Ok(Ev::Accepted(s, remote))) => match self.node.accept(now, remote) {
                    Ok(link) => self.add(link, s),
                    Err(_) => drop(s), // refused: the socket closes
                },
                Some(Ok(Ev::Connected(link, Ok(s)))) => {
                    self.add(link, s);
                    self.node.handle_input(now, Input::LinkConnected { link });
                }
                Some(Ok(Ev::Connected(link, Err(e)))) => {
                    self.node.handle_input(now, Input::DialFailed { link, error: e.kind() })
                }
                Some(Ok(Ev::Data(link, data))) => self.node.handle_input(now, Input::Received { link, data }),
                Some(Ok(Ev::Ended(link, error))) => {
                    if let Some((s, _)) = self.writers.remove(&link) {
                        let _ = s.get_ref().shutdown(Shutdown::Both);
                    }
                    self.node.handle_input(now, Input::LinkClosed { link, error });
                }
                Some(Ok(Ev::Drained(link))) => self.pump(link),
                Some(Err(Command::Send(p, b))) => held = Some((p, b)),
                Some(Err(Command::Subscribe(p, tx))) => {
                    self.node.open_channel(p.clone());
                    subs.insert(p, tx);
                }
                Some(Err(Command::Neighbors(tx))) => drop(tx.try_send(self.node.neighbor_count())),
                Some(Err(Command::Close)) => {
                    self.node.handle_input(now, Input::Close);
                    leaving = Some(Instant::now() + self.node.config().close_linger);
                }
            }
            if let Some((p, b)) = held.take() {
                if self.node.can_send(&p, b.len()) || !self.node.is_open() {
                    let _ = self.node.send(self.now(), &p, b); // errors: closed or too large
                } else {
                    held = Some((p, b));
                }
            }
        }
        for (s, _) in self.writers.values() {
            let _ = s.get_ref().shutdown(Shutdown::Both);
        }
    }

    /// Carries out the core's outputs.
    fn drain(&mut self, subs: &HashMap<ChannelPath, async_channel::Sender<Message>>) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Dial { link, addr } => {
                    let tx = self.ev_tx.clone();
                    (self.spawn)(Box::pin(async move {
                        let _ = tx.send(Ev::Connected(link, Async::<TcpStream>::connect(addr).await)).await;
                    }));
                }
                Output::Transmit { link } => self.pump(link),
                Output::CloseLink { link, .. } => {
                    self.pump(link);
                    // Dropping the queue ends the writer once it has written what is queued.
                    if let Some((_, tx)) = self.writers.get_mut(&link) {
                        *tx = None;
                    }
                }
                Output::Deliver(m) => {
                    if let Some(tx) = subs.get(&m.path) {
                        let _ = tx.try_send(m); // a full application queue drops (bounded)
                    }
                }
                Output::Resolve { id, .. } => {
                    let now = self.now();
                    self.node.handle_input(now, Input::ResolveFailed { id });
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Moves queued bytes from the core to `link`'s writer while its queue has room.
    fn pump(&mut self, link: LinkId) {
        let Some((_, Some(tx))) = self.writers.get(&link) else { return };
        while tx.len() < 16 {
            match self.node.poll_transmit(link, 64 * 1024) {
                Some(b) => drop(tx.try_send(b)),
                None => break,
            }
        }
    }

    fn add(&mut self, link: LinkId, s: Async<TcpStream>) {
        let _ = s.get_ref().set_nodelay(true);
        let s = Arc::new(s);
        let (tx, rx) = async_channel::bounded::<Bytes>(16);
        self.writers.insert(link, (s.clone(), Some(tx)));
        let (r, ev) = (s.clone(), self.ev_tx.clone());
        (self.spawn)(Box::pin(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let end = loop {
                match (&*r).read(&mut buf).await {
                    Ok(0) => break None,
                    Ok(n) => {
                        if ev.send(Ev::Data(link, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => break Some(e.kind()),
                }
            };
            let _ = ev.send(Ev::Ended(link, end)).await;
        }));
        let ev = self.ev_tx.clone();
        (self.spawn)(Box::pin(async move {
            while let Ok(b) = rx.recv().await {
                if (&*s).write_all(&b).await.is_err() {
                    return; // the reader sees the end too
                }
                if rx.is_empty() && ev.send(Ev::Drained(link)).await.is_err() {
                    return;
                }
            }
            let _ = s.get_ref().shutdown(Shutdown::Write);
        }));
    }
}
