//! The core embedded in an async runtime with no adapter: what "embed in any event loop"
//! costs. Runtime-neutral: sockets and timers from `async-io`, channels from `async-channel`,
//! tasks from the `spawn` you pass, so the same code runs on async-std
//! (`async_std::task::spawn`; see `tests/embed_async_std.rs`) and on smol
//! (`|f| smol::spawn(f).detach()`). One task owns the `Node`, plus a reader and a writer task
//! per connection. Every queue is bounded (readers wait on the inbox; bytes wait in the core).

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{bounded, Receiver, Sender};
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use peerchannel_core::{ChannelPath, Config, Input, Instant as CoreInstant, LinkId, Message, Node, NodeId, Output};

/// How the embedding starts a task (`async_std::task::spawn`, `smol::spawn(..).detach()`...).
pub type Spawn = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

/// What the application asks of a node.
pub enum Command {
    /// Flood a message (held, and no further command taken, while the outbound budget is spent).
    Send(ChannelPath, Bytes),
    /// Deliver the channel's messages into this queue (a full queue drops).
    Subscribe(ChannelPath, Sender<Message>),
    /// Reply with the number of neighbors.
    Neighbors(Sender<usize>),
    /// Leave gracefully, then stop.
    Close,
}

/// A running embedded node.
pub struct Embedded {
    /// Its node ID.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its command queue (bounded: senders wait while the node is backed up).
    pub commands: Sender<Command>,
}

type Socket = Arc<Async<TcpStream>>;

enum Ev {
    Cmd(Command),
    Tick,
    Accepted(Async<TcpStream>, SocketAddr),
    Connected(LinkId, io::Result<Async<TcpStream>>),
    Data(LinkId, Bytes),
    Ended(LinkId, Option<ErrorKind>),
    Drained(LinkId),
}

/// Starts a node listening on an OS-chosen loopback port; it joins through
/// `config.bootstrap` (or starts a mesh when that is empty). Give each node its own seed.
pub fn start(mut config: Config, spawn: Spawn) -> io::Result<Embedded> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    config.listen_addrs = vec![addr];
    let node = Node::new(config, CoreInstant::ZERO).map_err(io::Error::other)?;
    let (id, (ev_tx, ev_rx), (cmd_tx, cmd_rx), (stop_tx, stop_rx)) = (node.id(), bounded(256), bounded(64), bounded(1));
    let tx = ev_tx.clone();
    let accept = async move {
        while let Ok((s, remote)) = listener.accept().await {
            if tx.send(Ev::Accepted(s, remote)).await.is_err() {
                break;
            }
        }
    };
    // The accept task ends when the node's task drops `stop_tx`.
    spawn(Box::pin(future::or(accept, async move { while stop_rx.recv().await.is_ok() {} })));
    let d = Driver { node, origin: Instant::now(), spawn: spawn.clone(), ev_tx, links: HashMap::new() };
    spawn(Box::pin(d.run(ev_rx, cmd_rx, stop_tx)));
    Ok(Embedded { id, addr, commands: cmd_tx })
}

struct Driver {
    node: Node,
    origin: Instant,
    spawn: Spawn,
    ev_tx: Sender<Ev>,
    /// Per link: its socket (to shut down) and its writer's bounded queue (None once closing).
    links: HashMap<LinkId, (Socket, Option<Sender<Bytes>>)>,
}

impl Driver {
    fn now(&self) -> CoreInstant {
        CoreInstant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn run(mut self, ev: Receiver<Ev>, cmds: Receiver<Command>, _stop: Sender<()>) {
        let mut subs: HashMap<ChannelPath, Sender<Message>> = HashMap::new();
        let (mut held, mut leaving) = (None::<(ChannelPath, Bytes)>, None::<Instant>);
        self.node.handle_input(self.now(), Input::Open);
        loop {
            if let Some((p, b)) = held.take() {
                if !self.node.can_send(&p, b.len()) && self.node.is_open() {
                    held = Some((p, b));
                } else {
                    let _ = self.node.send(self.now(), &p, b); // errors: closed, or too large
                }
            }
            self.drain(&subs);
            if leaving.is_some_and(|t| self.links.is_empty() || Instant::now() >= t) {
                break;
            }
            let wake = self.node.poll_timeout().map(|t| self.origin + Duration::from_nanos(t.as_nanos()));
            let timer = async { Ok(wake.map_or_else(Timer::never, Timer::at).await).map(|_| Ev::Tick) };
            let busy = held.is_some(); // take no command while a send waits for the budget
            let cmd = async {
                if busy {
                    future::pending().await
                } else {
                    cmds.recv().await.map(Ev::Cmd)
                }
            };
            let Ok(next) = future::or(future::or(ev.recv(), cmd), timer).await else { break };
            let now = self.now();
            match next {
                Ev::Tick => self.node.handle_timeout(now),
                Ev::Accepted(s, remote) => {
                    if let Ok(link) = self.node.accept(now, remote) {
                        self.add(link, s); // on refusal the socket drops, closed
                    }
                }
                Ev::Connected(link, Ok(s)) => {
                    self.add(link, s);
                    self.node.handle_input(now, Input::LinkConnected { link });
                }
                Ev::Connected(link, Err(e)) => self.node.handle_input(now, Input::DialFailed { link, error: e.kind() }),
                Ev::Data(link, data) => self.node.handle_input(now, Input::Received { link, data }),
                Ev::Ended(link, error) => {
                    if let Some((s, _)) = self.links.remove(&link) {
                        let _ = s.get_ref().shutdown(Shutdown::Both);
                    }
                    self.node.handle_input(now, Input::LinkClosed { link, error });
                }
                Ev::Drained(link) => self.pump(link),
                Ev::Cmd(Command::Send(p, b)) => held = Some((p, b)),
                Ev::Cmd(Command::Subscribe(p, tx)) => {
                    self.node.open_channel(p.clone());
                    subs.insert(p, tx);
                }
                Ev::Cmd(Command::Neighbors(tx)) => drop(tx.try_send(self.node.neighbor_count())),
                Ev::Cmd(Command::Close) => {
                    self.node.handle_input(now, Input::Close);
                    leaving = Some(Instant::now() + self.node.config().close_linger);
                }
            }
        }
        for (s, _) in self.links.values() {
            let _ = s.get_ref().shutdown(Shutdown::Both); // readers and writers end
        }
    }

    /// Carries out the core's outputs.
    fn drain(&mut self, subs: &HashMap<ChannelPath, Sender<Message>>) {
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
                    if let Some((_, tx)) = self.links.get_mut(&link) {
                        *tx = None; // the writer writes what it has, then shuts down
                    }
                }
                Output::Deliver(m) => drop(subs.get(&m.path).map(|tx| tx.try_send(m))),
                // No resolver here: the bootstrap list and referrals find the mesh.
                Output::Resolve { id, .. } => self.node.handle_input(self.now(), Input::ResolveFailed { id }),
                Output::Event(_) => {}
            }
        }
    }

    /// Moves queued bytes from the core to `link`'s writer while its queue has room.
    fn pump(&mut self, link: LinkId) {
        let Some((_, Some(tx))) = self.links.get(&link) else { return };
        while tx.len() < 16 {
            let Some(b) = self.node.poll_transmit(link, 64 * 1024) else { break };
            let _ = tx.try_send(b);
        }
    }

    fn add(&mut self, link: LinkId, s: Async<TcpStream>) {
        let _ = s.get_ref().set_nodelay(true);
        let (s, (tx, rx)) = (Arc::new(s), bounded::<Bytes>(16));
        self.links.insert(link, (s.clone(), Some(tx)));
        let (r, ev) = (s.clone(), self.ev_tx.clone());
        (self.spawn)(Box::pin(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let end = loop {
                match (&*r).read(&mut buf).await {
                    Ok(0) => break None,
                    Ok(n) if ev.send(Ev::Data(link, Bytes::copy_from_slice(&buf[..n]))).await.is_ok() => {}
                    Ok(_) => return,
                    Err(e) => break Some(e.kind()),
                }
            };
            let _ = ev.send(Ev::Ended(link, end)).await;
        }));
        let ev = self.ev_tx.clone();
        (self.spawn)(Box::pin(async move {
            while let Ok(b) = rx.recv().await {
                // After each emptied queue, ask the node for more (it keeps the rest).
                if (&*s).write_all(&b).await.is_err() || (rx.is_empty() && ev.send(Ev::Drained(link)).await.is_err()) {
                    return; // the reader sees the end too
                }
            }
            let _ = s.get_ref().shutdown(Shutdown::Write);
        }));
    }
}
