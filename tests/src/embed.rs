//! The core embedded in an async runtime with no adapter: what "embed in any event loop"
//! costs. Runtime-neutral (sockets and timers from `async-io`, channels from `async-channel`,
//! tasks from the `spawn` you pass): the same code runs on async-std (`async_std::task::spawn`,
//! see `tests/embed_async_std.rs`) and on smol (`|f| smol::spawn(f).detach()`). One task owns the
//! `Node` and the listener, plus a reader and a writer task per connection. Nothing grows without
//! bound: readers wait on the node's inbox, and outgoing bytes wait in the core.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{bounded, unbounded, Receiver, Sender};
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

/// What wakes the node's task.
enum Ev {
    Cmd(Command),
    Tick,
    Accepted(Async<TcpStream>, SocketAddr),
    Connected(LinkId, io::Result<Async<TcpStream>>),
    Read(LinkId, io::Result<Bytes>), // empty: the peer's end of stream
    Drained(LinkId),                 // the link's writer emptied its queue: pull more from the core
}

/// Starts a node listening on an OS-chosen loopback port; it joins through
/// `config.bootstrap` (or starts a mesh when that is empty). Give each node its own seed.
pub fn start(mut config: Config, spawn: Spawn) -> io::Result<Embedded> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    config.listen_addrs = vec![addr];
    let node = Node::new(config, CoreInstant::ZERO).map_err(io::Error::other)?;
    let (id, (ev_tx, ev_rx), (commands, cmd_rx)) = (node.id(), bounded(256), bounded(64));
    let d = Driver { node, origin: Instant::now(), spawn: spawn.clone(), ev_tx, links: HashMap::new() };
    spawn(Box::pin(d.run(listener, ev_rx, cmd_rx)));
    Ok(Embedded { id, addr, commands })
}

struct Driver {
    node: Node,
    origin: Instant,
    spawn: Spawn,
    ev_tx: Sender<Ev>,
    /// Per link: its socket (to shut down) and its writer's queue (None once closing).
    links: HashMap<LinkId, (Socket, Option<Sender<Bytes>>)>,
}

impl Driver {
    fn now(&self) -> CoreInstant {
        CoreInstant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn run(mut self, listener: Async<TcpListener>, ev: Receiver<Ev>, cmds: Receiver<Command>) {
        let mut subs: HashMap<ChannelPath, Sender<Message>> = HashMap::new();
        let (mut held, mut leaving) = (None::<(ChannelPath, Bytes)>, None::<Instant>);
        self.node.handle_input(self.now(), Input::Open);
        loop {
            // A held send goes once the neighbors' queues have room (or fails once closed).
            if let Some((p, b)) = held.take_if(|(p, b)| self.node.can_send(p, b.len()) || !self.node.is_open()) {
                let _ = self.node.send(self.now(), &p, b); // errors: closed, or too large
            }
            self.drain(&subs);
            if leaving.is_some_and(|t| self.links.is_empty() || Instant::now() >= t) {
                break;
            }
            // Wait for an event, an inbound connection (a failed one is retried), the core's next
            // deadline or, unless a send is held (the application's sends then wait), a command.
            let wake = self.node.poll_timeout().map(|t| self.origin + Duration::from_nanos(t.as_nanos()));
            let timer = async { Ok(wake.map_or_else(Timer::never, Timer::at).await).map(|_| Ev::Tick) };
            let accept = async { Ok(listener.accept().await.map_or(Ev::Tick, |(s, a)| Ev::Accepted(s, a))) };
            let other = future::or(ev.recv(), future::or(accept, timer));
            let cmd = async { cmds.recv().await.map(Ev::Cmd) };
            let Ok(next) = (if held.is_some() { other.await } else { future::or(other, cmd).await }) else { break };
            let now = self.now();
            match next {
                Ev::Tick => self.node.handle_timeout(now),
                // A refused socket is dropped, which closes it.
                Ev::Accepted(s, remote) => drop(self.node.accept(now, remote).map(|link| self.add(link, s))),
                Ev::Connected(link, Ok(s)) => {
                    self.add(link, s);
                    self.node.handle_input(now, Input::LinkConnected { link });
                }
                Ev::Connected(link, Err(e)) => self.node.handle_input(now, Input::DialFailed { link, error: e.kind() }),
                Ev::Read(link, Ok(data)) if !data.is_empty() => {
                    self.node.handle_input(now, Input::Received { link, data })
                }
                Ev::Read(link, end) => {
                    // Shutting down both ways also ends a writer stuck on a peer that stopped reading.
                    self.links.remove(&link).map(|(s, _)| s.get_ref().shutdown(Shutdown::Both));
                    self.node.handle_input(now, Input::LinkClosed { link, error: end.err().map(|e| e.kind()) });
                }
                Ev::Drained(link) => self.pump(link, 16),
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
        for (s, ..) in self.links.values() {
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
                Output::Transmit { link } => self.pump(link, 16),
                Output::CloseLink { link, .. } => {
                    // Its last bytes all go (the core bounds them); the writer sends them, then shuts down.
                    self.pump(link, usize::MAX);
                    drop(self.links.get_mut(&link).and_then(|(_, tx)| tx.take()));
                }
                Output::Deliver(m) => drop(subs.get(&m.path).map(|tx| tx.try_send(m))),
                // No resolver here: the bootstrap list and referrals find the mesh.
                Output::Resolve { id, .. } => self.node.handle_input(self.now(), Input::ResolveFailed { id }),
                Output::Event(_) => {}
            }
        }
    }

    /// Moves queued bytes from the core to `link`'s writer while it holds fewer than `chunks`
    /// (16 keeps the bytes in the core, where they count against its budgets).
    fn pump(&mut self, link: LinkId, chunks: usize) {
        let Some((_, Some(tx))) = self.links.get(&link) else { return };
        while tx.len() < chunks {
            let Some(b) = self.node.poll_transmit(link, 64 * 1024) else { break };
            let _ = tx.try_send(b);
        }
    }

    /// Starts `link`'s reader (socket to core) and writer (core to socket).
    fn add(&mut self, link: LinkId, s: Async<TcpStream>) {
        let _ = s.get_ref().set_nodelay(true);
        let (s, (tx, rx)) = (Arc::new(s), unbounded::<Bytes>());
        self.links.insert(link, (s.clone(), Some(tx)));
        let (r, ev) = (s.clone(), self.ev_tx.clone());
        (self.spawn)(Box::pin(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let got = (&*r).read(&mut buf).await.map(|n| Bytes::copy_from_slice(&buf[..n]));
                let end = got.as_ref().map_or(true, Bytes::is_empty);
                if ev.send(Ev::Read(link, got)).await.is_err() || end {
                    break; // the stream ended, or the node is gone
                }
            }
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
