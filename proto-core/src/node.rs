//! The node: routes inputs to the link, mesh and flood parts and collects their outputs.
//! Protocol decisions live in those parts; this file wires them together.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::config::{Config, LinkTimings};
use crate::error::{AcceptError, ConfigError, SendError};
use crate::events::{DialFailure, DropReason, Event, Input, Message, NeighborInfo, Output};
use crate::flood::{forward_hops, OwnIds, PathMemo, RecentStore, SeenCache, StoredHead};
use crate::id::{LinkId, MessageId, NodeId};
use crate::link::{Assembled, Link, LinkState, LinkTable, Role, TokenBucket, CHUNK_OVERHEAD};
use crate::mesh::{self, Admission, ExistingLink, Maintainer, ResolvePurpose};
use crate::reason::CloseReason;
use crate::rng::Rng;
use crate::security::{AuthFailure, ProofOutcome, SecurityContext, SecurityMode, TlsFailure, TlsSession};
use crate::stats::Stats;
use crate::time::Instant;
use crate::timers::{Timer, Timers};
use crate::uri::ChannelPath;
use crate::wire::{self, Connect, Disconnect, FloodFrame, Frame, Hello, Referral, Refuse, Welcome};

/// The fewest bytes a flood takes on the wire: length prefix, fixed fields, the path `/`.
const MIN_FLOOD_WIRE: usize = wire::LEN_PREFIX + wire::FLOOD_FIXED + 1;

/// A neighbor's queue may keep alive at most this many times `link_queue_bytes` of received
/// data: forwarded floods share the buffers they arrived in, so a neighbor that does not drain
/// while traffic flows pins those buffers, whatever the queued frames' own size. A healthy queue,
/// even a full one at the maximum of 7 neighbors, sees at most about 7 times its size arrive
/// while it drains; past 8 times the neighbor is too slow.
const PIN_FACTOR: u64 = 8;

/// Room beyond `link_queue_bytes` kept for control frames (Pong, reports, a final Disconnect),
/// so a link full of floods can still be told goodbye.
const CONTROL_HEADROOM: usize = 16 * 1024;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum NodeState {
    Created,
    Open,
    Closed,
}

/// How a link ends.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Ending {
    /// This node decided: send a farewell frame if the peer is listening, then CloseLink.
    Local,
    /// The peer said goodbye (Disconnect, Refuse): CloseLink, no farewell.
    ByPeer,
    /// The transport is already gone (the adapter told us): forget the link.
    Transport(Option<std::io::ErrorKind>),
}

/// One member of one mesh, as a pure state machine: inputs in, outputs out, no I/O.
///
/// ```
/// use peerchannel_core::{Config, Input, Instant, MeshId, Node, Output};
///
/// let config = Config::new(MeshId::new("soccerpals").unwrap(), 42);
/// let mut node = Node::new(config, Instant::ZERO).unwrap();
/// node.handle_input(Instant::ZERO, Input::Open);
/// while let Some(out) = node.poll_output() {
///     // No bootstrap list: the node asks its resolver for members.
///     assert!(matches!(out, Output::Resolve { .. }));
/// }
/// assert!(node.poll_timeout().is_some());
/// ```
//
// `repr(C)` keeps the declared order: what every received frame touches first, cold
// configuration and maintenance state last (see `Link` for why; 4% fewer data read misses
// on steady-1k in callgrind's cache model).
#[derive(Debug)]
#[repr(C)]
pub struct Node {
    now: Instant,
    links: LinkTable,
    /// The links in state Connected, in the order they connected (kept in step with `links`
    /// by `neighbor_up` and `end_link`, the only places a link enters or leaves that state).
    neighbors: SmallVec<[LinkId; 8]>,
    /// Links with a received flood waiting for room in the neighbors' queues.
    held: SmallVec<[LinkId; 4]>,
    /// A lower bound of the room in every neighbor's queue (see `SendQueue::room`): lowered by
    /// each frame queued, set again whenever the queues are looked at one by one. Queues only
    /// gain room otherwise, so a flood that fits under it fits everywhere without a lookup.
    spare_floor: usize,
    max_frame: usize,
    state: NodeState,
    online: bool,
    /// A `Timer::Resume` is armed.
    resume_armed: bool,
    /// Security machinery; `None` in an unsecured mesh. Boxed: it is 392 bytes an unsecured
    /// node never reads, and inline it spread the fields every frame touches over more cache
    /// lines (in the simulator, 2.5% fewer L2-sized misses on steady-1k). The handle itself
    /// is read for every frame, so it sits here.
    sec: Option<Box<SecurityContext>>,
    /// The settings read for every frame, copied from `cfg` (which never changes).
    per_frame: PerFrame,
    seen: SeenCache,
    /// This node's message IDs, recognisable without a seen-cache entry (echo suppression).
    own: OwnIds,
    /// Recent floods offered to new neighbors (None when recovery is off).
    recent: Option<RecentStore>,
    /// The open channels, sorted by their bytes (see `PathMemo::channel_of`).
    channels: Vec<ChannelPath>,
    /// Which channel a flood's path names, remembered for the last path.
    path_memo: PathMemo,
    outputs: VecDeque<Output>,
    scratch: BytesMut,
    timers: Timers,
    stats: Stats,
    cfg: Config,
    id: NodeId,
    rng: Rng,
    maintainer: Maintainer,
    /// Referrals learned, over all links (`Config::max_referrals_per_sec`).
    referral_budget: TokenBucket,
    /// Neighbors the maintainer grows toward now: `min` until the first periodic run, then `ideal`.
    target: usize,
    /// When a repair retry is armed.
    repair_at: Option<Instant>,
    next_request: u64,
    /// The last wall-clock time the adapter passed in, and the node's time then.
    wall: Option<(Instant, u64)>,
}

/// The configuration a node reads for every frame, next to the rest of what a frame touches.
/// In `Config` (about 500 bytes) these fields are spread over four cache lines; read there,
/// each was one more miss per frame in a simulation of 1,000 nodes, where every node's state
/// is cold when its next event comes (with `sec` moved up beside it, 9% fewer data read
/// misses on steady-1k in callgrind's cache model with a 512 KiB last level).
#[derive(Debug)]
struct PerFrame {
    timings: LinkTimings,
    max_message_size: usize,
    link_queue_bytes: usize,
    max_floods_per_neighbor_per_sec: Option<u32>,
    hop_limit: u8,
}

impl Node {
    /// A node of `config.mesh`, not yet open. Everything random about it derives from
    /// `config.seed`.
    pub fn new(config: Config, now: Instant) -> Result<Node, ConfigError> {
        config.validate()?;
        let mut rng = Rng::from_seed(config.seed);
        let sec = match config.security.mode {
            SecurityMode::None => None,
            _ => Some(Box::new(SecurityContext::new(&config.security, config.seed).map_err(ConfigError::Security)?)),
        };
        // In a signed mesh the ID comes from the key, so no relay can sign as another origin.
        let key_id = sec.as_ref().filter(|s| s.mode.message()).and_then(|s| s.identity.as_ref()).map(|i| i.node_id());
        let id = match (config.node_id, key_id) {
            (Some(id), Some(k)) if id != k => return Err(ConfigError::NodeIdNotFromKey),
            (_, Some(k)) => k,
            (Some(id), None) => id,
            (None, None) => loop {
                if let Some(id) = NodeId::new(rng.next_u64()) {
                    break id;
                }
            },
        };
        let key = [rng.next_u64(), rng.next_u64()];
        Ok(Node {
            seen: SeenCache::new(config.seen_ttl, config.seen_capacity, key, now),
            // Derived from the seen cache's key rather than drawn, so the node's other random
            // choices stay where they were.
            own: OwnIds::new([crate::flood::mix(key[0] ^ 0x6F77_6E31), crate::flood::mix(key[1] ^ 0x6F77_6E32)]),
            recent: config.recovery_window.map(|w| RecentStore::new(w, config.recovery_store_bytes)),
            maintainer: Maintainer::new(config.referral_cache_size, now),
            referral_budget: TokenBucket::new(),
            target: config.min_neighbors,
            max_frame: wire::max_frame_len(config.max_message_size),
            per_frame: PerFrame {
                timings: config.link_timings(),
                max_message_size: config.max_message_size,
                link_queue_bytes: config.link_queue_bytes,
                max_floods_per_neighbor_per_sec: config.max_floods_per_neighbor_per_sec,
                hop_limit: config.hop_limit,
            },
            cfg: config,
            id,
            rng,
            state: NodeState::Created,
            links: LinkTable::default(),
            neighbors: SmallVec::new(),
            held: SmallVec::new(),
            resume_armed: false,
            spare_floor: 0,
            timers: Timers::default(),
            repair_at: None,
            channels: Vec::new(),
            path_memo: PathMemo::default(),
            outputs: VecDeque::new(),
            scratch: BytesMut::with_capacity(4096),
            stats: Stats::default(),
            online: false,
            next_request: 1,
            now,
            sec,
            wall: None,
        })
    }

    /// This node's ID.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether the node has at least one neighbor.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Whether the node has been opened and not closed.
    pub fn is_open(&self) -> bool {
        self.state == NodeState::Open
    }

    // ----- inputs -------------------------------------------------------------------------

    /// Feeds one input. Drain [`poll_output`](Self::poll_output) afterwards.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.advance(now);
        self.resume_held(now);
        match input {
            Input::Open => self.open(now),
            Input::Close => self.close(now),
            Input::LinkConnected { link } => self.on_link_connected(now, link),
            Input::DialFailed { link, error } => {
                if self.links.get(&link).is_some_and(|l| l.state == LinkState::Dialing) {
                    self.end_link(now, link, CloseReason::Faulted, Ending::Transport(Some(error)));
                }
            }
            Input::Received { link, data } => self.on_received(now, link, [data]),
            Input::ReceivedChunks { link, chunks } => self.on_received(now, link, chunks),
            Input::LinkClosed { link, error } => {
                let reason = if error.is_some() { CloseReason::Faulted } else { CloseReason::Closed };
                self.end_link(now, link, reason, Ending::Transport(error));
            }
            Input::Resolved { id, addrs } => self.on_resolved(now, id, Some(addrs)),
            Input::ResolveFailed { id } => self.on_resolved(now, id, None),
            Input::ListenAddrsChanged { addrs } => {
                self.cfg.listen_addrs =
                    addrs.into_iter().filter(|a| mesh::is_dialable(*a)).take(wire::MAX_ADDRESSES).collect();
            }
            Input::WallClock { unix_secs } => {
                self.wall = Some((now, unix_secs));
                self.advance(now);
            }
        }
        self.compact_timers();
    }

    /// Takes an inbound transport connection from `remote`; returns the handle to use for it.
    /// On error the adapter closes the socket.
    pub fn accept(&mut self, now: Instant, remote: SocketAddr) -> Result<LinkId, AcceptError> {
        self.advance(now);
        if self.state != NodeState::Open {
            return Err(AcceptError::NotOpen);
        }
        let pending = || self.links.values().filter(|l| l.is_pending_inbound());
        if pending().count() >= self.cfg.max_inbound_handshakes {
            self.stats.accept_refused += 1;
            return Err(AcceptError::TooManyHandshakes);
        }
        if pending().filter(|l| l.addr.ip() == remote.ip()).count() >= self.cfg.max_handshakes_per_ip {
            self.stats.accept_refused += 1;
            return Err(AcceptError::TooManyFromAddress);
        }
        let security =
            self.sec.as_ref().map(|sec| sec.new_link(false)).transpose().map_err(|_| AcceptError::Security)?;
        let id = self.links.insert_new(|id| {
            let mut link = Link::new(id, Role::Responder, LinkState::Handshake { hello_received: false }, remote, now);
            if let Some(security) = security {
                link.security = security;
            }
            link
        });
        self.stats.accepted += 1;
        self.queue_hello(id);
        self.rearm_link(id);
        Ok(id)
    }

    /// Sends `payload` to every other member of the mesh on channel `path`. Returns the
    /// message's ID. Own messages are not delivered back to this node.
    pub fn send(&mut self, now: Instant, path: &ChannelPath, payload: Bytes) -> Result<MessageId, SendError> {
        self.advance(now);
        if self.state != NodeState::Open {
            return Err(SendError::NotOpen);
        }
        if payload.len() > self.cfg.max_message_size {
            return Err(SendError::MessageTooLarge { size: payload.len(), max: self.cfg.max_message_size });
        }
        let frame_bytes = wire::LEN_PREFIX + wire::FLOOD_FIXED + path.as_bytes().len() + payload.len();
        let limit = self.per_frame.link_queue_bytes;
        if self.links.values().any(|l| l.is_connected() && !l.queue.has_room(frame_bytes, limit)) {
            self.stats.send_busy += 1;
            return Err(SendError::Busy);
        }
        // Not entered in the seen cache: an echo is recognised by its ID (see OwnIds).
        let id = self.own.draw(&mut self.rng);
        let h = self.cfg.hop_limit;
        let signer = self.sec.as_ref().filter(|s| s.mode.message()).and_then(|s| s.identity.as_ref());
        match signer {
            Some(identity) => {
                let digest = crate::security::flood_digest(&id, self.id, path.as_bytes(), &payload);
                let sig = identity.signer().sign(&digest);
                let (origin, path) = (self.id.get(), path.as_bytes());
                wire::encode_signed_flood_header(h, h, &id.0, origin, path, &sig, payload.len(), &mut self.scratch);
            }
            None => {
                wire::encode_flood_header(h, h, &id.0, self.id.get(), path.as_bytes(), payload.len(), &mut self.scratch)
            }
        }
        let signer = signer.map(|_| self.id);
        let header = self.scratch.split().freeze();
        if let Some(store) = &mut self.recent {
            store.record(now, id, StoredHead::Encoded(header.clone()), payload.clone(), self.stats.bytes_received);
        }
        self.queue_to_all(now, None, header, payload, signer);
        self.stats.floods_sent += 1;
        Ok(id)
    }

    /// Whether a message of `payload_len` bytes on `path` would be accepted by
    /// [`send`](Self::send) now (no neighbor queue too full). Adapters use it to wait instead
    /// of retrying.
    pub fn can_send(&self, path: &ChannelPath, payload_len: usize) -> bool {
        let frame_bytes = wire::LEN_PREFIX + wire::FLOOD_FIXED + path.as_bytes().len() + payload_len;
        self.links.values().all(|l| !l.is_connected() || l.queue.has_room(frame_bytes, self.per_frame.link_queue_bytes))
    }

    /// Whether the adapter should stop reading `link` for now: a flood received on it waits
    /// for room in a neighbor's queue (see [`Config::forward_wait`](crate::Config::forward_wait)).
    /// Not reading lets TCP's flow control slow the senders upstream. The node ends the pause
    /// by itself (after writes drain a queue it asks for [`handle_timeout`](Self::handle_timeout)
    /// through [`poll_timeout`](Self::poll_timeout), and the wait is bounded), so the adapter
    /// only has to ask again before each read. An adapter that reads on regardless is safe too:
    /// the held flood then goes on with the bytes read, as if `forward_wait` were zero.
    pub fn reads_paused(&self, link: LinkId) -> bool {
        self.links.get(&link).is_some_and(|l| l.held_since.is_some())
    }

    /// Delivers floods on `path` to this node from now on.
    pub fn open_channel(&mut self, path: ChannelPath) {
        if let Err(at) = self.channels.binary_search_by(|c| c.as_bytes().cmp(path.as_bytes())) {
            self.channels.insert(at, path);
            self.path_memo.forget();
        }
    }

    /// Stops delivering floods on `path` (they are still forwarded).
    pub fn close_channel(&mut self, path: &ChannelPath) {
        self.channels.retain(|c| c != path);
        self.path_memo.forget();
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next output, if any. O(1).
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Up to `max` bytes to write on `link`, `None` when its queue is empty. Call it while the
    /// socket takes more; the chunks share memory with received buffers and payloads.
    pub fn poll_transmit(&mut self, link: LinkId, max: usize) -> Option<Bytes> {
        let mut chunk = None;
        self.pull(link, |l| {
            chunk =
                if l.security.as_ref().is_some_and(|s| s.tls.is_some()) { pull_tls(l, max) } else { l.queue.pop(max) };
            let taken = chunk.as_ref().map_or(0, Bytes::len);
            (taken, taken == 0)
        });
        chunk
    }

    /// Like [`poll_transmit`](Self::poll_transmit), but appends as many chunks as fit in
    /// `max` bytes to `out` in one call (for a vectored write, or straight into an adapter's
    /// write queue), returning the bytes appended. It returns less than `max` only when the
    /// link's queue is now empty, so an adapter need not call again to learn that; zero means
    /// it was empty. A closing link is forgotten once a pull leaves its queue empty (as with
    /// `poll_transmit`, whose adapter learns that from one more call).
    pub fn poll_transmit_into(&mut self, link: LinkId, max: usize, out: &mut impl Extend<Bytes>) -> usize {
        self.pull(link, |l| {
            let taken = if l.security.as_ref().is_some_and(|s| s.tls.is_some()) {
                let mut taken = 0;
                while taken < max {
                    let Some(b) = pull_tls(l, max - taken) else { break };
                    taken += b.len();
                    out.extend(Some(b));
                }
                taken
            } else {
                l.queue.pop_into(max, out)
            };
            (taken, taken < max)
        })
    }

    /// Takes bytes of `link` with `take` (which returns how many, and whether the link has
    /// nothing more to send), then what every pull implies: the link's writes are moving
    /// again; a neighbor's drained queue may have room for a held flood (a closing link's
    /// farewell frees none that forwarding needs); a closing link with nothing more to send is
    /// forgotten (the adapter closes the socket).
    #[inline(always)]
    fn pull(&mut self, link: LinkId, take: impl FnOnce(&mut Link) -> (usize, bool)) -> usize {
        let Some(l) = self.links.get_mut(&link) else { return 0 };
        let (taken, drained) = take(l);
        let (connected, done) = (l.is_connected(), drained && l.is_closing());
        if taken > 0 {
            l.waiting_since = Some(self.now);
            self.stats.bytes_sent += taken as u64;
            if connected {
                self.wake_held();
            }
        }
        if done {
            self.links.remove(&link);
            self.compact_timers();
        }
        taken
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) must be called, if any.
    /// Calling it earlier or more often is harmless.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        // Held floods first: room may have appeared, or their wait may be over.
        self.resume_held(now);
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Resume => {
                    self.resume_armed = false;
                    self.resume_held(now);
                }
                Timer::Link(id) => self.on_link_timer(now, id, at),
                Timer::Maintainer => {
                    if self.maintainer.next_tick == at && self.state == NodeState::Open {
                        self.periodic_maintenance(now);
                    }
                }
                Timer::Repair => {
                    if self.repair_at == Some(at) {
                        self.repair_at = None;
                        self.maintainer.resolve_attempts = 0;
                        self.maintain(now);
                    }
                }
                Timer::Refresh => {
                    if self.maintainer.next_refresh == at {
                        self.refresh(now);
                    }
                }
                Timer::Resolve => {
                    if matches!(self.maintainer.resolving, Some((id, _, deadline)) if deadline == at && id != 0) {
                        let id = self.maintainer.resolving.map_or(0, |r| r.0);
                        self.on_resolved(now, id, None);
                    }
                }
            }
        }
        self.compact_timers();
    }

    /// Counters, plus the current sizes.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.seen_len = self.seen.len();
        s.seen_evicted_early = self.seen.evicted_early();
        s.neighbors = self.neighbor_count();
        s.queued_bytes = self.links.values().map(|l| l.queue.len_bytes()).sum();
        s
    }

    /// The current neighbors.
    pub fn neighbors(&self) -> Vec<NeighborInfo> {
        self.neighbors
            .iter()
            .filter_map(|id| {
                let l = self.links.get(id)?;
                Some(NeighborInfo {
                    link: l.id,
                    node: l.peer?,
                    addr: l.listen_addr(),
                    remote: l.addr,
                    initiated_locally: l.role == Role::Initiator,
                    utility: l.utility.value(),
                    queued_bytes: l.queue.len_bytes(),
                    rtt_nanos: l.rtt_nanos,
                })
            })
            .collect()
    }

    /// Number of neighbors.
    pub fn neighbor_count(&self) -> usize {
        self.neighbors.len()
    }

    /// Checks the node's bounds: neighbors ≤ max, seen cache ≤ its capacity, every send queue
    /// ≤ its bound, inbound handshakes ≤ their bound, reassembly ≤ one frame. For tests and
    /// fuzzing; returns what is broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.neighbor_count();
        let mut listed: Vec<LinkId> = self.links.values().filter(|l| l.is_connected()).map(|l| l.id).collect();
        listed.sort();
        let mut cached = self.neighbors.to_vec();
        cached.sort();
        if listed != cached {
            return Err(format!("neighbor list {cached:?} out of step with links {listed:?}"));
        }
        if n > self.cfg.max_neighbors {
            return Err(format!("{n} neighbors > max {}", self.cfg.max_neighbors));
        }
        if self.seen.len() > self.seen.capacity() {
            return Err(format!("seen cache {} > capacity {}", self.seen.len(), self.seen.capacity()));
        }
        let inbound = self.links.values().filter(|l| l.is_pending_inbound()).count();
        if inbound > self.cfg.max_inbound_handshakes {
            return Err(format!("{inbound} inbound handshakes > {}", self.cfg.max_inbound_handshakes));
        }
        for l in self.links.values() {
            let q = l.queue.len_bytes();
            if q > self.per_frame.link_queue_bytes + CONTROL_HEADROOM {
                return Err(format!("{} queue {q} bytes over its bound", l.id));
            }
            if l.assembler.buffered() > wire::LEN_PREFIX + self.max_frame + (1 << 20) {
                return Err(format!("{} holds {} unparsed bytes", l.id, l.assembler.buffered()));
            }
            if l.held_since.is_some() && !self.held.contains(&l.id) {
                return Err(format!("{} holds a flood but is not listed to resume", l.id));
            }
        }
        if self.maintainer.cache.len() > self.cfg.referral_cache_size {
            return Err("referral cache over its size".into());
        }
        let closing = self.links.values().filter(|l| l.is_closing()).count();
        if closing > self.cfg.max_closing_links {
            return Err(format!("{closing} closing links > {}", self.cfg.max_closing_links));
        }
        if self.timers.len() > 4 * self.links.len() + 64 + 8 {
            return Err(format!("{} timer entries for {} links", self.timers.len(), self.links.len()));
        }
        Ok(())
    }

    // ----- node life cycle ----------------------------------------------------------------

    fn advance(&mut self, now: Instant) {
        // Inputs may come with a slightly older `now` from a multi-threaded adapter; the node's
        // clock never goes back.
        self.now = self.now.max(now);
        // `sec` first: it is on a line every frame reads, `wall` is not.
        if let (Some(sec), Some((at, secs))) = (&self.sec, self.wall) {
            sec.clock.set(secs + self.now.saturating_duration_since(at).as_secs());
        }
    }

    fn open(&mut self, now: Instant) {
        if self.state != NodeState::Created {
            return;
        }
        self.state = NodeState::Open;
        self.target = self.cfg.min_neighbors;
        let first_tick = now + self.jittered(self.cfg.maintainer_interval, 10);
        self.maintainer.next_tick = first_tick;
        self.timers.arm(first_tick, Timer::Maintainer);
        self.schedule_refresh(now);
        self.maintain(now);
    }

    fn close(&mut self, now: Instant) {
        if self.state != NodeState::Open {
            self.state = NodeState::Closed;
            return;
        }
        self.state = NodeState::Closed;
        self.maintainer.resolving = None;
        let mut ids: Vec<LinkId> = self.links.values().filter(|l| !l.is_closing()).map(|l| l.id).collect();
        ids.sort();
        for id in ids {
            self.end_link(now, id, CloseReason::LeavingMesh, Ending::Local);
        }
        self.update_online();
    }

    /// A duration with up to `percent`% random extra, so nodes started together drift apart.
    fn jittered(&mut self, d: core::time::Duration, percent: u64) -> core::time::Duration {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        core::time::Duration::from_nanos(self.rng.jitter(nanos, nanos / 100 * percent))
    }

    fn schedule_refresh(&mut self, now: Instant) {
        if let Some(every) = self.cfg.refresh_interval {
            let at = now + self.jittered(every, 50);
            self.maintainer.next_refresh = at;
            self.timers.arm(at, Timer::Refresh);
        }
    }

    // ----- maintenance --------------------------------------------------------------------

    fn periodic_maintenance(&mut self, now: Instant) {
        self.target = self.cfg.ideal_neighbors;
        self.maintainer.resolve_attempts = 0;
        self.seen.rotate(now);
        if let Some(store) = &mut self.recent {
            store.evict(now, self.stats.bytes_received);
        }
        // Prune above ideal, least useful first; only links whose utility is known qualify.
        while self.neighbor_count() > self.cfg.ideal_neighbors + self.cfg.prune_slack {
            let candidates = self
                .links
                .values()
                .filter(|l| l.is_connected())
                .map(|l| (l.id, l.utility.value(), l.utility.is_accurate()))
                .collect::<SmallVec<[_; 8]>>();
            let Some(victim) = mesh::least_useful(candidates.into_iter()) else { break };
            self.end_link(now, victim, CloseReason::NotUsefulNeighbor, Ending::Local);
        }
        self.maintain(now);
        let next = now + self.jittered(self.cfg.maintainer_interval, 10);
        self.maintainer.next_tick = next;
        self.timers.arm(next, Timer::Maintainer);
    }

    /// Dials toward the current target from the referral cache, refilling the cache from the
    /// bootstrap list or the resolver when it runs dry; arms a retry if below `min` with
    /// nothing in flight.
    fn maintain(&mut self, now: Instant) {
        if self.state != NodeState::Open {
            return;
        }
        for _ in 0..2 {
            let (connected, dialing) = self.counts();
            let mut plan = {
                let (links, cfg, id) = (&self.links, &self.cfg, self.id);
                let usable = |addr: SocketAddr, node: Option<NodeId>| is_usable(links, cfg, id, addr, node);
                self.maintainer.plan_growth(
                    self.target,
                    connected,
                    dialing,
                    self.cfg.resolve_attempts,
                    &mut self.rng,
                    usable,
                )
            };
            for (addr, node) in core::mem::take(&mut plan.dials) {
                self.dial(now, addr, node);
            }
            if plan.resolve.is_none() {
                break;
            }
            self.maintainer.resolve_attempts += 1;
            if self.cfg.bootstrap.is_empty() {
                self.request_resolve(now, ResolvePurpose::Join);
                break;
            }
            // A bootstrap list is a resolver that answers at once: refill and plan again.
            let mut boot = self.cfg.bootstrap.clone();
            let k = self.cfg.resolve_max_addresses;
            self.rng.sample_in_place(&mut boot, k);
            for addr in boot.into_iter().take(k) {
                self.maintainer.cache.insert(addr, None);
            }
        }
        // Below the minimum, look again soon whatever is in flight: dials may hang on dead
        // addresses, and a resolve may answer with nothing usable.
        if self.neighbor_count() < self.cfg.min_neighbors {
            let at = now + self.cfg.repair_retry_interval;
            if self.repair_at.is_none_or(|r| r > at) {
                self.repair_at = Some(at);
                self.timers.arm(at, Timer::Repair);
            }
        }
    }

    fn refresh(&mut self, now: Instant) {
        if self.state != NodeState::Open {
            return;
        }
        self.schedule_refresh(now);
        let (connected, dialing) = self.counts();
        if connected < self.cfg.min_neighbors || connected > self.cfg.ideal_neighbors || dialing > 0 {
            return;
        }
        if self.cfg.bootstrap.is_empty() {
            if self.maintainer.resolving.is_none() {
                self.request_resolve(now, ResolvePurpose::Refresh);
            }
        } else {
            let boot = self.cfg.bootstrap.clone();
            self.dial_one_of(now, &boot);
        }
    }

    /// Dials one random usable address of `addrs` (the mesh refresh's extra link).
    fn dial_one_of(&mut self, now: Instant, addrs: &[SocketAddr]) {
        let mut usable: Vec<SocketAddr> =
            addrs.iter().copied().filter(|a| is_usable(&self.links, &self.cfg, self.id, *a, None)).collect();
        if usable.is_empty() || self.neighbor_count() >= self.cfg.max_neighbors {
            return;
        }
        let i = self.rng.below(usable.len());
        let addr = usable.swap_remove(i);
        self.dial(now, addr, None);
    }

    fn request_resolve(&mut self, now: Instant, purpose: ResolvePurpose) {
        let id = self.next_request;
        self.next_request += 1;
        let deadline = now + self.cfg.resolve_timeout;
        self.maintainer.resolving = Some((id, purpose, deadline));
        self.timers.arm(deadline, Timer::Resolve);
        self.stats.resolves += 1;
        self.outputs.push_back(Output::Resolve {
            id,
            mesh: self.cfg.mesh.clone(),
            max_addresses: self.cfg.resolve_max_addresses,
        });
    }

    fn on_resolved(&mut self, now: Instant, id: u64, addrs: Option<Vec<SocketAddr>>) {
        let Some((pending, purpose, _)) = self.maintainer.resolving else { return };
        if pending != id {
            return;
        }
        self.maintainer.resolving = None;
        let Some(addrs) = addrs else {
            self.stats.resolve_failures += 1;
            self.maintain(now);
            return;
        };
        match purpose {
            ResolvePurpose::Join => {
                let dialable = addrs.into_iter().filter(|a| mesh::is_dialable(*a));
                for addr in dialable.take(self.cfg.resolve_max_addresses.max(1) * 4) {
                    self.maintainer.cache.insert(addr, None);
                }
            }
            ResolvePurpose::Refresh => self.dial_one_of(now, &addrs),
        }
        self.maintain(now);
    }

    /// Neighbors, and dials that count as in progress. Below `min_neighbors`, a dial pending
    /// for longer than `dial_patience` no longer holds back another one (a dead address can
    /// take the whole connect timeout to fail), up to twice `ideal_neighbors` dials at once.
    fn counts(&self) -> (usize, usize) {
        let mut connected = 0;
        let mut pending = 0;
        let mut fresh = 0;
        for l in self.links.values() {
            connected += usize::from(l.is_connected());
            if l.is_pending_dial() {
                pending += 1;
                fresh += usize::from(self.now < l.created + self.cfg.dial_patience);
            }
        }
        let impatient = connected < self.cfg.min_neighbors && pending < 2 * self.cfg.ideal_neighbors;
        (connected, if impatient { fresh } else { pending })
    }

    fn dial(&mut self, now: Instant, addr: SocketAddr, node: Option<NodeId>) {
        let id = self.links.insert_new(|id| {
            let mut link = Link::new(id, Role::Initiator, LinkState::Dialing, addr, now);
            link.peer = node;
            link.peer_listen.push(addr);
            link
        });
        self.stats.dials += 1;
        self.outputs.push_back(Output::Dial { link: id, addr });
        self.rearm_link(id);
    }

    // ----- links --------------------------------------------------------------------------

    /// Queues the Hello, which travels in the clear even in a TLS mesh: it announces the
    /// security setting, and the TLS handshake follows it on the same stream.
    fn queue_hello(&mut self, id: LinkId) {
        let security = self.sec.as_ref().map_or(0, |s| s.setting.0);
        let hello = Frame::Hello(Hello { version: wire::VERSION, security, mesh: self.cfg.mesh.clone() });
        self.queue_control(id, &hello);
        if let Some(link) = self.links.get_mut(&id) {
            link.raw_prefix = link.queue.len_bytes();
        }
    }

    fn on_link_connected(&mut self, now: Instant, id: LinkId) {
        let Some(link) = self.links.get_mut(&id) else { return };
        if link.state != LinkState::Dialing {
            return;
        }
        link.state = LinkState::Handshake { hello_received: false };
        link.last_recv = now;
        if let Some(sec) = &self.sec {
            match sec.new_link(true) {
                Ok(s) => link.security = s,
                Err(f) => return self.auth_failed(now, id, f),
            }
        }
        self.queue_hello(id);
        // With TLS the Connect waits for the handshake (and the proofs); see on_tls_progress.
        if self.links.get(&id).is_some_and(|l| l.security.as_ref().is_none_or(|s| s.tls.is_none())) {
            self.queue_connect(id);
        }
        self.rearm_link(id);
    }

    fn queue_connect(&mut self, id: LinkId) {
        let connect = Frame::Connect(Connect { node: self.id, addrs: self.cfg.listen_addrs.iter().copied().collect() });
        self.queue_control(id, &connect);
    }

    /// A peer failed authentication (or rejected this node): report which check and close.
    fn auth_failed(&mut self, now: Instant, id: LinkId, failure: AuthFailure) {
        let Some(link) = self.links.get(&id) else { return };
        self.stats.auth_failures += 1;
        self.outputs.push_back(Output::Event(Event::AuthenticationFailed { link: id, addr: link.addr, failure }));
        self.end_link(now, id, CloseReason::AuthenticationFailure, Ending::Local);
    }

    /// Bytes arrived on link `id`, in one or more chunks: each is handled as it would be on
    /// its own, and the read's bookkeeping (copy count, partial-frame clock, link timer) is
    /// done once at the end.
    fn on_received(&mut self, now: Instant, id: LinkId, chunks: impl IntoIterator<Item = Bytes>) {
        let Some(link) = self.links.get(&id) else { return };
        let copied_before = link.assembler.copied_bytes();
        for data in chunks {
            let Some(link) = self.links.get_mut(&id) else { return };
            if link.is_closing() {
                return;
            }
            self.stats.bytes_received += data.len() as u64;
            if link.state == LinkState::Dialing {
                // Bytes before the transport said it connected: the adapter broke the contract.
                self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
                return;
            }
            link.last_recv = now;
            // Bytes on a link the node asked the adapter not to read: this adapter reads on
            // regardless, so waiting would only pile them up here. The held flood and these
            // bytes go on now (a neighbor still without room is evicted, as with
            // `forward_wait` zero).
            let may_hold = link.held_since.take().is_none();
            if link.tls_active() {
                let Some(plain) = self.decrypt(now, id, &data) else { return };
                let Some(link) = self.links.get_mut(&id) else { return };
                link.assembler.push(plain);
            } else {
                link.assembler.push(data);
            }
            if !self.take_frames(now, id, may_hold) {
                return;
            }
        }
        self.finish_read(now, id, copied_before);
    }

    /// [`take_frames`](Self::take_frames), then the read's bookkeeping.
    fn process_frames(&mut self, now: Instant, id: LinkId, copied_before: u64, may_hold: bool) {
        if self.take_frames(now, id, may_hold) {
            self.finish_read(now, id, copied_before);
        }
    }

    /// After a read's frames were taken: counts the bytes reassembly copied since
    /// `copied_before`, starts or stops the partial-frame clock, and re-arms the link's timer.
    fn finish_read(&mut self, now: Instant, id: LinkId, copied_before: u64) {
        if let Some(link) = self.links.get_mut(&id) {
            self.stats.reassembly_copied_bytes += link.assembler.copied_bytes() - copied_before;
            // A frame left incomplete must finish within the idle timeout (see on_link_timer).
            link.partial_since = match (link.assembler.buffered(), link.partial_since) {
                (0, _) => None,
                (_, Some(t)) => Some(t),
                (_, None) => Some(now),
            };
        }
        self.rearm_link(id);
    }

    /// Runs the frames waiting in link `id`'s assembler through the node, until more bytes are
    /// needed, the link ends, or a flood must wait for room (see [`must_hold`](Self::must_hold);
    /// only if `may_hold`). False if the link ended or is closing (nothing more to do for it).
    fn take_frames(&mut self, now: Instant, id: LinkId, may_hold: bool) -> bool {
        let Some(link) = self.links.get(&id) else { return false };
        // Whether a flood of this link waits already (then a flood that fits ends the wait).
        let mut holding = link.held_since.is_some();
        // A busy link delivers many floods per read. Touching their seen-cache slots first
        // lets the cache misses overlap, instead of each flood stalling on its own in turn.
        // A read of one flood has nothing to overlap with, and is the common read of a quiet
        // mesh (in the simulator, nearly every read): the look is skipped when nothing is held
        // beyond the next frame, or fewer bytes than two of the smallest floods (a relay's
        // 6-byte head after a flood, say).
        if link.is_connected() && link.assembler.buffered() >= 2 * MIN_FLOOD_WIRE && link.assembler.beyond_next_frame()
        {
            self.seen.warm(|warmer| {
                link.assembler.peek_whole_frames(|frame| {
                    if let Some(message) = wire::peek_flood_id(frame) {
                        warmer.add(&message);
                    }
                });
            });
        }
        loop {
            let Some(link) = self.links.get_mut(&id) else { return false };
            if link.is_closing() {
                return false;
            }
            let assembled = match link.assembler.next_frame(self.max_frame) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
                    return false;
                }
            };
            // Nothing after this frame: a flood (which adds no bytes to the assembler, unlike
            // a Hello that starts TLS) ends the loop without asking for another frame. Most
            // reads of a quiet mesh hold one flood.
            let last = link.assembler.buffered() == 0;
            // Floods on a neighbor link take the hot path: no Bytes for path or payload unless
            // the payload is delivered. Anything else is decoded whole.
            let flood = match assembled {
                Assembled::Flood(f) if link.is_connected() => f,
                Assembled::Frame(f) if link.is_connected() && f.first().is_some_and(|t| wire::is_flood_type(*t)) => {
                    let Some(flood) = FloodFrame::from_frame(f) else {
                        self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
                        return false;
                    };
                    flood
                }
                other => {
                    if !self.take_control_frame(now, id, other.into_frame()) {
                        return false;
                    }
                    continue;
                }
            };
            let Ok(head) = wire::decode_flood_fields(flood.first, &flood.body) else {
                self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
                return false;
            };
            // The path, checked as `decode_flood_parts` would, before the seen cache takes the
            // ID (an invalid copy must not suppress a valid one).
            let Ok(channel) = self.path_memo.channel_of(flood.bytes(wire::FLOOD_FIXED..head.path_end), &self.channels)
            else {
                self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
                return false;
            };
            if may_hold && !self.per_frame.timings.forward_wait.is_zero() {
                // Under the floor it fits everywhere; only above it are the neighbors looked up
                // (per flood, that was 2-4% of a relay).
                let need = wire::LEN_PREFIX + flood.frame_len();
                let fits = need <= self.spare_floor || {
                    let (all, others) = self.forward_spare(id);
                    self.spare_floor = all;
                    need <= others
                };
                // (Unless the link waits already, a flood that fits changes no state.)
                if (!fits || holding) && self.must_hold(now, id, fits) {
                    if let Some(link) = self.links.get_mut(&id) {
                        link.assembler.unread(Assembled::Flood(flood));
                    }
                    break;
                }
                holding = false;
            }
            self.on_flood(now, id, flood, head, channel);
            if last {
                // As the next round would: a link the flood closed is left alone.
                match self.links.get(&id) {
                    Some(l) if !l.is_closing() => break,
                    _ => return false,
                }
            }
        }
        true
    }

    /// Decodes and handles a frame that is not a neighbor's flood; false if it ended the link.
    fn take_control_frame(&mut self, now: Instant, id: LinkId, frame: Bytes) -> bool {
        match wire::decode_frame(&frame) {
            Ok(decoded) => {
                self.on_frame(now, id, decoded);
                true
            }
            Err(e) => {
                // A peer of another protocol version is incompatible, not hostile.
                let reason = match e {
                    wire::DecodeError::UnsupportedVersion(_) => CloseReason::Incompatible,
                    _ => CloseReason::ProtocolViolation,
                };
                self.end_link(now, id, reason, Ending::Local);
                false
            }
        }
    }

    /// The least room for a frame (in the bytes `SendQueue::has_room` accepts) in every
    /// neighbor's queue, and in those of the neighbors other than `from` (`usize::MAX` when
    /// there are none).
    fn forward_spare(&self, from: LinkId) -> (usize, usize) {
        let limit = self.per_frame.link_queue_bytes;
        let (mut all, mut others) = (usize::MAX, usize::MAX);
        for (id, l) in self.neighbors.iter().filter_map(|id| Some((*id, self.links.get(id)?))) {
            let room = l.queue.room(limit);
            all = all.min(room);
            if id != from {
                others = others.min(room);
            }
        }
        (all, others)
    }

    /// Whether a flood received on `from` must wait, given whether it `fits` every other
    /// neighbor's queue: it does not fit, and the link has waited less than `forward_wait`.
    /// While it waits, the node takes nothing more from `from` and
    /// [`reads_paused`](Self::reads_paused) tells the adapter to stop reading it, so the senders
    /// upstream slow down instead of this node evicting a slow neighbor. Once the wait is over
    /// the flood goes on, and a neighbor still without room is evicted as NodeTooSlow. Any
    /// flood may wait, even one that turns out to be a duplicate: the node cannot know before
    /// it looks, and waiting is harmless.
    fn must_hold(&mut self, now: Instant, from: LinkId, fits: bool) -> bool {
        let Some(link) = self.links.get_mut(&from) else { return false };
        if fits {
            link.held_since = None;
            return false;
        }
        match link.held_since {
            None => {
                link.held_since = Some(now);
                self.stats.forward_pauses += 1;
                if !self.held.contains(&from) {
                    self.held.push(from);
                }
                true
            }
            Some(since) if now < since + self.per_frame.timings.forward_wait => true,
            Some(_) => {
                link.held_since = None;
                self.stats.forward_waits_expired += 1;
                false
            }
        }
    }

    /// Tries the held links' floods again: their neighbors may have room now, or their wait may
    /// be over. Called on every input, so the usual case (nothing held) is inline.
    #[inline(always)]
    fn resume_held(&mut self, now: Instant) {
        if !self.held.is_empty() {
            self.resume_held_links(now);
        }
    }

    fn resume_held_links(&mut self, now: Instant) {
        for id in core::mem::take(&mut self.held) {
            let Some(link) = self.links.get(&id).filter(|l| l.held_since.is_some()) else { continue };
            let copied = link.assembler.copied_bytes();
            self.process_frames(now, id, copied, true);
            if self.links.get(&id).is_some_and(|l| l.held_since.is_some()) && !self.held.contains(&id) {
                self.held.push(id);
            }
        }
    }

    /// Queues drained or a neighbor left while floods are held: have the adapter call
    /// [`handle_timeout`](Self::handle_timeout) at once to try them again.
    #[inline]
    fn wake_held(&mut self) {
        if !self.held.is_empty() && !self.resume_armed {
            self.resume_armed = true;
            self.timers.arm(self.now, Timer::Resume);
        }
    }

    /// Runs received bytes through the link's TLS session; `None` if the link ended.
    fn decrypt(&mut self, now: Instant, id: LinkId, data: &[u8]) -> Option<Bytes> {
        let link = self.links.get_mut(&id)?;
        let queue_was_empty = link.queue.is_empty();
        let tls = link.security.as_mut()?.tls.as_mut()?;
        let was_established = tls.is_established();
        let result = tls.receive(data);
        // Handshake messages or an alert to send: make sure the adapter comes to pull them.
        if tls.has_output() && queue_was_empty {
            self.outputs.push_back(Output::Transmit { link: id });
        }
        let established = tls.is_established();
        match result {
            Ok(plain) => {
                if !was_established && established {
                    self.on_tls_established(now, id);
                }
                self.links.contains_key(&id).then_some(plain)
            }
            Err(TlsFailure(failure)) => {
                self.auth_failed(now, id, failure);
                None
            }
        }
    }

    /// The TLS handshake finished. With certificates the peer is authenticated now (rustls
    /// checked its chain); with a password the initiator proves first, and its Connect follows
    /// the proof at once (the responder checks the proof before reading the Connect).
    fn on_tls_established(&mut self, now: Instant, id: LinkId) {
        let Some(sec) = &self.sec else { return };
        let Some(link) = self.links.get_mut(&id) else { return };
        let Some(ls) = link.security.as_mut() else { return };
        match &sec.mesh_key {
            None => ls.peer_authenticated = true,
            Some(key) if link.role == Role::Initiator => match ls.initiator_proof(key) {
                Some(proof) => self.queue_control(id, &Frame::Proof(proof)),
                None => return self.auth_failed(now, id, AuthFailure::Tls("no exporter".into())),
            },
            Some(_) => {}
        }
        if self.links.get(&id).is_some_and(|l| l.role == Role::Initiator) {
            self.queue_connect(id);
        }
    }

    /// The peer closed the link because this node failed its authentication (a wrong
    /// password): reported like a local failure, so both ends say so.
    fn peer_rejected(&mut self, id: LinkId, reason: CloseReason) {
        if reason != CloseReason::AuthenticationFailure {
            return;
        }
        let Some(link) = self.links.get(&id) else { return };
        self.stats.auth_failures += 1;
        let failure = AuthFailure::PeerRejectedUs("the peer refused this node's authentication".into());
        self.outputs.push_back(Output::Event(Event::AuthenticationFailed { link: id, addr: link.addr, failure }));
    }

    /// A password proof arrived: check it against this link's session and the peer's role.
    /// The responder proves itself only after the initiator's proof checked out.
    fn on_proof(&mut self, now: Instant, id: LinkId, proof: [u8; 32]) {
        let (Some(sec), Some(link)) = (&self.sec, self.links.get_mut(&id)) else { return };
        let initiator = link.role == Role::Initiator;
        let outcome = match (&sec.mesh_key, link.security.as_mut()) {
            (Some(key), Some(ls)) => ls.on_proof(key, initiator, &proof),
            _ => ProofOutcome::OutOfTurn,
        };
        match outcome {
            ProofOutcome::Accepted(Some(mine)) => self.queue_control(id, &Frame::Proof(mine)),
            ProofOutcome::Accepted(None) => {}
            ProofOutcome::Wrong => self.auth_failed(now, id, AuthFailure::WrongPassword),
            ProofOutcome::OutOfTurn => self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local),
        }
    }

    /// Message mode: a peer introduces the signer of an origin it will forward floods of.
    fn on_credential(&mut self, now: Instant, id: LinkId, c: wire::CredentialFrame) {
        let Some(sec) = self.sec.as_mut().filter(|s| s.mode.message()) else {
            return self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
        };
        match sec.check_credential(c.origin, &c.credential) {
            Ok(known) => {
                if let Some(ls) = self.links.get_mut(&id).and_then(|l| l.security.as_mut()) {
                    ls.creds_received.push(c.origin, Some(known));
                }
            }
            Err(failure) => self.auth_failed(now, id, failure),
        }
    }

    fn on_frame(&mut self, now: Instant, id: LinkId, frame: Frame) {
        let Some(link) = self.links.get_mut(&id) else { return };
        match (link.state, frame) {
            (LinkState::Handshake { hello_received: false }, Frame::Hello(h)) => {
                let mine = self.sec.as_ref().map_or(0, |s| s.setting.0);
                if h.mesh != self.cfg.mesh {
                    self.end_link(now, id, CloseReason::WrongMesh, Ending::Local);
                } else if h.security != mine {
                    self.end_link(now, id, CloseReason::SecurityMismatch, Ending::Local);
                } else {
                    link.state = LinkState::Handshake { hello_received: true };
                    if let Some(ls) = link.security.as_mut().filter(|s| s.tls.is_some()) {
                        // From here on the stream is TLS records, including any bytes that
                        // came with the Hello.
                        ls.tls_started = true;
                        let rest = link.assembler.take_unparsed();
                        if !rest.is_empty() {
                            let Some(plain) = self.decrypt(now, id, &rest) else { return };
                            if let Some(link) = self.links.get_mut(&id) {
                                link.assembler.push(plain);
                            }
                        }
                    }
                }
            }
            (LinkState::Handshake { hello_received: true }, Frame::Proof(p)) => self.on_proof(now, id, p),
            (LinkState::Handshake { hello_received: true }, Frame::Connect(_) | Frame::Welcome(_))
                if !peer_authenticated(link) =>
            {
                self.auth_failed(now, id, AuthFailure::MissingProof);
            }
            (LinkState::Handshake { hello_received: true }, Frame::Connect(c)) if link.role == Role::Responder => {
                link.peer_listen = c.addrs;
                self.introduce(now, id, c.node, Vec::new());
            }
            (LinkState::Handshake { hello_received: true }, Frame::Welcome(w)) if link.role == Role::Initiator => {
                self.introduce(now, id, w.node, w.referrals);
            }
            (LinkState::Connected, Frame::Credential(c)) => self.on_credential(now, id, c),
            (LinkState::Handshake { hello_received: true }, Frame::Refuse(r)) if link.role == Role::Initiator => {
                self.learn_referrals(now, id, &r.referrals);
                self.peer_rejected(id, r.reason);
                self.end_link(now, id, r.reason, Ending::ByPeer);
            }
            (LinkState::Handshake { hello_received: true } | LinkState::Connected, Frame::Disconnect(d)) => {
                self.learn_referrals(now, id, &d.referrals);
                self.peer_rejected(id, d.reason);
                self.end_link(now, id, d.reason, Ending::ByPeer);
            }
            (LinkState::Handshake { hello_received: true } | LinkState::Connected, Frame::Ping(n)) => {
                self.queue_control(id, &Frame::Pong(n));
            }
            (LinkState::Handshake { hello_received: true } | LinkState::Connected, Frame::Pong(n)) => {
                if let Some((nonce, sent)) = link.ping {
                    if nonce == n {
                        link.rtt_nanos = Some((now - sent).as_nanos() as u64);
                        link.ping = None;
                    }
                }
            }
            (LinkState::Connected, Frame::Digest(ids)) if !link.digest_received && self.recent.is_some() => {
                link.digest_received = true;
                let missing: Vec<_> =
                    ids.into_iter().filter(|i| !self.seen.contains(i) && !self.own.is_own(i)).collect();
                if !missing.is_empty() {
                    self.stats.recovery_wanted += missing.len() as u64;
                    self.queue_control(id, &Frame::Want(missing));
                }
            }
            (LinkState::Connected, Frame::Want(ids)) if link.digest_sent && !link.want_received => {
                link.want_received = true;
                self.resend_recent(now, id, &ids);
            }
            (LinkState::Connected, Frame::LinkUtility(r)) => {
                if link.utility.on_report(r).is_err() {
                    self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local);
                }
            }
            _ => self.end_link(now, id, CloseReason::ProtocolViolation, Ending::Local),
        }
    }

    /// The peer named itself (Connect at the responder, Welcome at the initiator): admit it as a
    /// neighbor or turn it away, by the rules in `mesh::admission`.
    fn introduce(&mut self, now: Instant, id: LinkId, peer: NodeId, referrals: Vec<Referral>) {
        let Some(link) = self.links.get(&id) else { return };
        let new_local = link.role == Role::Initiator;
        let existing = self
            .links
            .values()
            .find(|l| l.id != id && !l.is_closing() && l.peer == Some(peer) && l.state != LinkState::Dialing)
            .map(|l| ExistingLink {
                link: l.id,
                initiated_locally: l.role == Role::Initiator,
                neighbor: l.is_connected(),
            });
        let connected = self.neighbor_count();
        if self.prefix_full(id, peer) {
            return self.end_link(now, id, CloseReason::TooManyFromAddress, Ending::Local);
        }
        self.learn_referrals(now, id, &referrals);
        if let Some(link) = self.links.get_mut(&id) {
            link.peer = Some(peer);
        }
        match mesh::admit(self.id, peer, new_local, existing, connected, self.cfg.max_neighbors) {
            Admission::Refuse(reason) => self.end_link(now, id, reason, Ending::Local),
            Admission::AcceptReplacing(old) => {
                self.end_link(now, old, CloseReason::DuplicateNeighbor, Ending::Local);
                self.neighbor_up(now, id);
            }
            Admission::Accept => self.neighbor_up(now, id),
        }
    }

    /// Whether the neighbors from the public network of link `id` already fill
    /// `max_neighbors_per_prefix` (a link to the same peer does not count: the duplicate rule
    /// decides between the two).
    fn prefix_full(&self, id: LinkId, peer: NodeId) -> bool {
        let (Some(max), Some(link)) = (self.cfg.max_neighbors_per_prefix, self.links.get(&id)) else { return false };
        let Some(prefix) = mesh::neighbor_prefix(link.addr.ip()) else { return false };
        let same = self
            .neighbors
            .iter()
            .filter_map(|n| self.links.get(n))
            .filter(|l| l.id != id && l.peer != Some(peer) && mesh::neighbor_prefix(l.addr.ip()) == Some(prefix))
            .count();
        same >= max
    }

    fn neighbor_up(&mut self, now: Instant, id: LinkId) {
        let Some(link) = self.links.get_mut(&id) else { return };
        link.state = LinkState::Connected;
        self.neighbors.push(id);
        link.utility = mesh::LinkUtility::new(now);
        let (node, addr, role) = (link.peer, link.listen_addr(), link.role);
        if role == Role::Responder {
            let referrals = self.referrals_for(id);
            self.queue_control(id, &Frame::Welcome(Welcome { node: self.id, referrals }));
        }
        self.offer_recent(now, id);
        self.maintainer.resolve_attempts = 0;
        self.stats.neighbors_up += 1;
        if let Some(node) = node {
            self.outputs.push_back(Output::Event(Event::NeighborUp { link: id, node, addr }));
        }
        self.update_online();
        self.rearm_link(id);
    }

    /// Recovery, first half: tell a new neighbor which recent floods this node can resend.
    fn offer_recent(&mut self, now: Instant, id: LinkId) {
        let Some(store) = &mut self.recent else { return };
        let ids = store.digest(now, self.stats.bytes_received, wire::MAX_ID_LIST);
        if ids.is_empty() {
            return;
        }
        if let Some(link) = self.links.get_mut(&id) {
            link.digest_sent = true;
        }
        self.queue_control(id, &Frame::Digest(ids));
    }

    /// Recovery, second half: resend the stored floods a neighbor asked for, as far as its
    /// queue allows (they travel as ordinary floods: the neighbor dedups, delivers, forwards).
    fn resend_recent(&mut self, now: Instant, id: LinkId, ids: &[crate::id::MessageId]) {
        let Some(store) = &mut self.recent else { return };
        let frames = store.frames_for(now, self.stats.bytes_received, ids);
        let limit = self.per_frame.link_queue_bytes;
        let signed_mesh = self.sec.as_ref().is_some_and(|s| s.mode.message());
        for (head, rest) in frames {
            if signed_mesh {
                let Some(origin) = stored_origin(&head, &rest) else { continue };
                if !self.introduce_signer(id, origin) {
                    continue;
                }
            }
            let Some(link) = self.links.get_mut(&id) else { return };
            if !link.queue.has_room(head.len() + rest.len(), limit) {
                break;
            }
            link.utility.on_sent();
            self.stats.recovery_resent += 1;
            let rx = self.stats.bytes_received;
            push_frame(link, head, rest, now, rx, &mut self.outputs, &mut self.spare_floor);
        }
    }

    /// Caches the referrals a peer sent, those that pass: only from a peer this node dialed or
    /// from a neighbor (a stranger that connected in may not steer this node's dials), only
    /// routable addresses other than this node's, and no more than `max_referrals_per_sec`.
    fn learn_referrals(&mut self, now: Instant, source: LinkId, referrals: &[Referral]) {
        let trusted = self.links.get(&source).is_some_and(|l| l.role == Role::Initiator || l.is_connected());
        if !self.cfg.share_referrals || !trusted {
            self.stats.referrals_ignored += referrals.len() as u64;
            return;
        }
        for r in referrals {
            if r.node == self.id || self.cfg.listen_addrs.contains(&r.addr) || !mesh::is_dialable(r.addr) {
                self.stats.referrals_rejected += 1;
                continue;
            }
            if let Some(rate) = self.cfg.max_referrals_per_sec {
                if !self.referral_budget.take(now, rate, rate.saturating_mul(10)) {
                    self.stats.referrals_rate_limited += 1;
                    continue;
                }
            }
            self.maintainer.cache.insert_from(r.addr, Some(r.node), Some(source));
        }
    }

    /// Up to `max_referrals` random neighbors other than the one on `exclude`.
    fn referrals_for(&mut self, exclude: LinkId) -> Vec<Referral> {
        if !self.cfg.share_referrals {
            return Vec::new();
        }
        let mut all: Vec<Referral> = self
            .links
            .values()
            .filter(|l| l.id != exclude && l.is_connected())
            .filter_map(|l| Some(Referral { node: l.peer?, addr: *l.peer_listen.first()? }))
            .collect();
        mesh::choose_referrals(&mut self.rng, &mut all, self.cfg.max_referrals)
    }

    /// Ends a link for `reason`, reports it, and repairs the mesh if it fell below `min`.
    fn end_link(&mut self, now: Instant, id: LinkId, reason: CloseReason, ending: Ending) {
        // A neighbor leaving may be what a held flood waited for.
        self.wake_held();
        let Some(link) = self.links.get(&id) else { return };
        if link.is_closing() {
            if matches!(ending, Ending::Transport(_)) {
                self.links.remove(&id);
            }
            return;
        }
        let was_connected = link.is_connected();
        let (role, addr, peer, state) = (link.role, link.addr, link.peer, link.state);
        // Member addresses go only to peers that proved they belong to the mesh.
        let share_referrals = peer_authenticated(link) && !reason.is_security_refusal();
        let linger_until = now + self.cfg.close_linger;
        if was_connected {
            self.neighbors.retain(|n| *n != id);
        }
        // Closing from here on: whatever happens while saying goodbye (a full queue) cannot end
        // the link a second time.
        if let Some(link) = self.links.get_mut(&id) {
            link.state = LinkState::Closing { linger_until };
            link.armed = None;
        }
        if ending == Ending::Local {
            let heard_hello = matches!(state, LinkState::Handshake { hello_received: true } | LinkState::Connected);
            if heard_hello || reason == CloseReason::WrongMesh || reason == CloseReason::Incompatible {
                let referrals = if share_referrals { self.referrals_for(id) } else { Vec::new() };
                let farewell = if role == Role::Responder && !was_connected && Refuse::allowed(reason) {
                    Frame::Refuse(Refuse { reason, referrals })
                } else {
                    Frame::Disconnect(Disconnect { reason, referrals })
                };
                self.queue_control(id, &farewell);
            }
        }
        match ending {
            Ending::Transport(_) => {
                self.links.remove(&id);
            }
            Ending::Local | Ending::ByPeer => {
                self.outputs.push_back(Output::CloseLink { link: id, reason });
                if let Some(link) = self.links.get_mut(&id) {
                    if ending == Ending::ByPeer {
                        link.queue.clear();
                    }
                    if !link.has_output() {
                        self.links.remove(&id);
                    } else {
                        self.rearm_link(id);
                        self.bound_closing_links();
                    }
                }
            }
        }
        let by_peer = ending != Ending::Local;
        if was_connected {
            self.stats.neighbors_down[reason.index()] += 1;
            if let Some(node) = peer {
                self.outputs.push_back(Output::Event(Event::NeighborDown { link: id, node, reason, by_peer }));
            }
            self.update_online();
        } else if role == Role::Initiator {
            self.stats.dial_failures += 1;
            let failure = match ending {
                Ending::Transport(Some(kind)) if state == LinkState::Dialing => DialFailure::Io(kind),
                _ => DialFailure::Handshake(reason),
            };
            if !matches!(failure, DialFailure::Io(_)) {
                self.stats.handshakes_failed[reason.index()] += 1;
            }
            self.outputs.push_back(Output::Event(Event::DialFailed { addr, reason: failure }));
        } else {
            self.stats.handshakes_failed[reason.index()] += 1;
            self.outputs.push_back(Output::Event(Event::InboundRefused { addr, reason }));
        }
        if self.state == NodeState::Open && self.neighbor_count() < self.target {
            if reason.is_security_refusal() && !was_connected {
                // Every member would refuse the same credentials: retry on the repair timer
                // instead of dialing the next candidate at once (a tight loop of handshakes).
                let at = now + self.cfg.repair_retry_interval;
                if self.repair_at.is_none_or(|r| r > at) {
                    self.repair_at = Some(at);
                    self.timers.arm(at, Timer::Repair);
                }
            } else {
                self.maintain(now);
            }
        }
    }

    fn update_online(&mut self) {
        let online = self.neighbor_count() > 0;
        if online != self.online {
            self.online = online;
            self.outputs.push_back(Output::Event(if online { Event::Online } else { Event::Offline }));
        }
    }

    fn on_link_timer(&mut self, now: Instant, id: LinkId, at: Instant) {
        let Some(link) = self.links.get_mut(&id) else { return };
        if link.armed != Some(at) {
            return;
        }
        link.armed = None;
        match link.state {
            LinkState::Dialing | LinkState::Handshake { .. } => {
                if now >= link.created + self.per_frame.timings.connect_timeout {
                    self.end_link(now, id, CloseReason::ConnectTimedOut, Ending::Local);
                    return;
                }
            }
            LinkState::Connected => {
                if now >= link.last_recv + self.per_frame.timings.idle_timeout {
                    self.end_link(now, id, CloseReason::IdleTimeout, Ending::Local);
                    return;
                }
                if link.partial_since.is_some_and(|t| now >= t + self.per_frame.timings.idle_timeout) {
                    self.end_link(now, id, CloseReason::NodeTooSlow, Ending::Local);
                    return;
                }
                if link.write_stalled(now, self.per_frame.timings.idle_timeout) {
                    self.end_link(now, id, CloseReason::NodeTooSlow, Ending::Local);
                    return;
                }
                if link.utility.has_unreported()
                    && now >= link.utility.last_report() + self.per_frame.timings.utility_report_interval
                {
                    if let Some(r) = link.utility.take_report(now) {
                        self.queue_control(id, &Frame::LinkUtility(r));
                    }
                }
                let Some(link) = self.links.get_mut(&id) else { return };
                if now >= link.last_send + self.per_frame.timings.keepalive_interval {
                    let nonce = self.rng.next_u64();
                    link.ping = Some((nonce, now));
                    self.queue_control(id, &Frame::Ping(nonce));
                }
            }
            LinkState::Closing { linger_until } => {
                if now >= linger_until {
                    // The adapter did not drain the farewell in time; forget the link.
                    self.links.remove(&id);
                    return;
                }
            }
        }
        self.rearm_link(id);
    }

    /// Forgets the oldest closing links beyond `max_closing_links` (their farewells unsent): an
    /// adapter that does not pull must not make closed links pile up.
    fn bound_closing_links(&mut self) {
        let mut closing: Vec<(Instant, LinkId)> = self
            .links
            .values()
            .filter_map(|l| match l.state {
                LinkState::Closing { linger_until } => Some((linger_until, l.id)),
                _ => None,
            })
            .collect();
        if closing.len() <= self.cfg.max_closing_links {
            return;
        }
        closing.sort();
        for (_, id) in &closing[..closing.len() - self.cfg.max_closing_links] {
            self.links.remove(id);
            self.stats.farewells_dropped += 1;
        }
    }

    /// Drops moot timer entries when they outnumber the live ones (links closed long before
    /// their deadlines), so the heap stays proportional to what the node holds.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 4 * self.links.len() + 64 {
            return;
        }
        let (links, m, repair, resume) = (&self.links, &self.maintainer, self.repair_at, self.resume_armed);
        self.timers.retain(|at, t| match t {
            Timer::Link(id) => links.get(&id).is_some_and(|l| l.armed == Some(at)),
            Timer::Maintainer => m.next_tick == at,
            Timer::Repair => repair == Some(at),
            Timer::Refresh => m.next_refresh == at,
            Timer::Resolve => m.resolving.is_some_and(|r| r.2 == at),
            Timer::Resume => resume,
        });
    }

    fn rearm_link(&mut self, id: LinkId) {
        let Some(link) = self.links.get_mut(&id) else { return };
        let d = link.next_deadline(&self.per_frame.timings);
        if link.armed.is_none_or(|a| d < a) {
            link.armed = Some(d);
            self.timers.arm(d, Timer::Link(id));
            self.compact_timers();
        }
    }

    // ----- queues -------------------------------------------------------------------------

    /// Queues a control frame. Control frames may use a little room beyond the flood bound;
    /// a peer that lets even that fill up is evicted as too slow.
    fn queue_control(&mut self, id: LinkId, frame: &Frame) {
        wire::encode_control(frame, &mut self.scratch);
        let bytes = self.scratch.split().freeze();
        let limit = self.per_frame.link_queue_bytes + CONTROL_HEADROOM;
        let now = self.now;
        let Some(link) = self.links.get_mut(&id) else { return };
        if !matches!(frame, Frame::Hello(_)) && !link.can_queue_frames() {
            // TLS not up yet: nothing can be encrypted (a failed handshake's alert says goodbye).
            return;
        }
        if !link.queue.has_room(bytes.len(), limit) {
            if !link.is_closing() {
                self.end_link(now, id, CloseReason::NodeTooSlow, Ending::Local);
            }
            return;
        }
        self.stats.control_frames_sent += 1;
        self.stats.control_bytes_sent += bytes.len() as u64;
        let rx = self.stats.bytes_received;
        push_frame(link, bytes, Bytes::new(), now, rx, &mut self.outputs, &mut self.spare_floor);
    }

    /// Queues a flood (header, then the shared payload); a neighbor whose queue cannot take it
    /// is evicted as too slow, which is what bounds memory when a neighbor reads slower than
    /// the mesh sends.
    ///
    /// Always inlined (into `queue_to_all`, its only caller): as a call, its prologue and
    /// epilogue cost about 20 instructions per neighbor, 3% of a relayed frame in the
    /// forwarding bench (`valgrind --tool=callgrind <bench> --bench --profile-time 6
    /// 32_per_read_core_only`: 1,927 → 1,870 instructions per frame in `handle_input`).
    #[inline(always)]
    fn queue_flood(&mut self, now: Instant, id: LinkId, head: Bytes, rest: Bytes, signer: Option<NodeId>) {
        if let Some(origin) = signer {
            if !self.introduce_signer(id, origin) {
                return;
            }
        }
        let Some(link) = self.links.get_mut(&id) else { return };
        let rx = self.stats.bytes_received;
        let pinned = link.queue.oldest_mark().map_or(0, |m| rx.saturating_sub(m));
        if !link.queue.has_room(head.len() + rest.len(), self.per_frame.link_queue_bytes)
            || pinned > PIN_FACTOR * self.per_frame.link_queue_bytes as u64
        {
            self.end_link(now, id, CloseReason::NodeTooSlow, Ending::Local);
            return;
        }
        link.utility.on_sent();
        push_frame(link, head, rest, now, rx, &mut self.outputs, &mut self.spare_floor);
        self.stats.floods_queued += 1;
    }

    /// Queues a flood's two chunks to every neighbor but `except`; the last one gets the
    /// caller's handles, the others share them (a reference count each, never a copy).
    fn queue_to_all(&mut self, now: Instant, except: Option<LinkId>, head: Bytes, rest: Bytes, signer: Option<NodeId>) {
        // A copy of the list, since queueing may evict a neighbor; copying is cheaper than a
        // filtered collect on this path.
        let ids = SmallVec::<[LinkId; 8]>::from_slice(&self.neighbors);
        let Some(last) = ids.iter().rposition(|id| Some(*id) != except) else { return };
        for id in ids[..last].iter().filter(|id| Some(**id) != except) {
            self.queue_flood(now, *id, head.clone(), rest.clone(), signer);
        }
        self.queue_flood(now, ids[last], head, rest, signer);
    }

    // ----- flooding -----------------------------------------------------------------------

    /// Checks a signed flood against the signer its link introduced for the origin. A bad
    /// signature drops the copy, is reported and closes the link.
    fn verify_flood(&mut self, now: Instant, from: LinkId, raw: &FloodFrame, f: &wire::FloodHead) -> bool {
        let signer = self
            .links
            .get(&from)
            .and_then(|l| l.security.as_ref())
            .and_then(|s| s.creds_received.get(f.origin))
            .cloned();
        let Some(signer) = signer else {
            // Floods of an origin must follow its Credential on the same link.
            self.end_link(now, from, CloseReason::ProtocolViolation, Ending::Local);
            return false;
        };
        let digest = crate::security::flood_digest(
            &f.id,
            f.origin,
            raw.bytes(wire::FLOOD_FIXED..f.path_end),
            raw.bytes(f.payload_start..raw.frame_len()),
        );
        let sig = f.signature().map_or(&[][..], |r| raw.bytes(r));
        if signer.signer.verify(&digest, sig) {
            self.stats.signatures_verified += 1;
            return true;
        }
        self.stats.invalid_signatures += 1;
        self.outputs.push_back(Output::Event(Event::InvalidSignature { link: from, origin: f.origin, id: f.id }));
        self.end_link(now, from, CloseReason::InvalidSignature, Ending::Local);
        false
    }

    /// Before the first signed flood of `origin` on link `id`, sends the origin's credential
    /// there. False if the credential is no longer known (the flood is then not sent on that
    /// link: its receiver could not verify it).
    fn introduce_signer(&mut self, id: LinkId, origin: NodeId) -> bool {
        let Some(ls) = self.links.get(&id).and_then(|l| l.security.as_ref()) else { return false };
        if ls.creds_sent.contains(origin) {
            return true;
        }
        let Some(credential) = self.sec.as_ref().and_then(|s| s.credential_of(self.id, origin)) else {
            self.stats.floods_unintroduced += 1;
            return false;
        };
        self.queue_control(id, &Frame::Credential(wire::CredentialFrame { origin, credential }));
        // Queueing may have closed the link (queue full).
        match self.links.get_mut(&id) {
            Some(l) if !l.is_closing() => {
                if let Some(ls) = l.security.as_mut() {
                    ls.creds_sent.push(origin, None);
                }
                true
            }
            _ => false,
        }
    }

    /// A flood copy from neighbor `from`, whose path is open channel number `channel` (if any).
    fn on_flood(&mut self, now: Instant, from: LinkId, raw: FloodFrame, f: wire::FloodHead, channel: Option<usize>) {
        let payload_len = raw.frame_len() - f.payload_start;
        let signed_mesh = self.sec.as_ref().is_some_and(|s| s.mode.message());
        // The frame bound leaves room for a long path; the payload has its own limit. A signed
        // mesh carries only signed floods, an unsigned one only plain floods.
        if payload_len > self.per_frame.max_message_size || f.is_signed() != signed_mesh {
            self.end_link(now, from, CloseReason::ProtocolViolation, Ending::Local);
            return;
        }
        self.stats.floods_received += 1;
        self.stats.payload_bytes_received += payload_len as u64;
        if let Some(rate) = self.per_frame.max_floods_per_neighbor_per_sec {
            let Some(link) = self.links.get_mut(&from) else { return };
            if !link.flood_budget.take(now, rate, rate) {
                self.stats.floods_rate_limited += 1;
                return;
            }
        }
        // A signed copy is verified only if its ID is new, and only a verified copy is marked
        // seen: a forged first copy cannot suppress the genuine one.
        let first = if self.own.is_own(&f.id) {
            // An echo of this node's own flood.
            false
        } else if !signed_mesh {
            self.seen.insert(now, f.id)
        } else if self.seen.contains(&f.id) {
            false
        } else {
            if !self.verify_flood(now, from, &raw, &f) {
                return;
            }
            self.seen.insert(now, f.id)
        };
        let Some(link) = self.links.get_mut(&from) else { return };
        if link.utility.on_received(first) {
            if let Some(r) = link.utility.take_report(now) {
                self.queue_control(from, &Frame::LinkUtility(r));
            }
        }
        if !first {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.floods_first += 1;
        // The delivery is taken first (and queued last, after the forwarding's outputs), so
        // the received body itself can become the forwarded rest: a reference count fewer per
        // relayed flood than slicing it and dropping it.
        let delivery =
            channel.and_then(|at| self.channels.get(at)).map(|path| (path.clone(), raw.slice_from(f.payload_start)));
        // A peer may claim any hop limit; this node forwards no further than its own.
        match forward_hops(f.hops_left).map(|h| h.min(self.per_frame.hop_limit)) {
            Some(h) => {
                let (frame_len, frame_type) = (raw.frame_len(), raw.first[0]);
                wire::encode_forward_head(frame_len, frame_type, h, &mut self.scratch);
                let head = self.scratch.split().freeze();
                // The received frame from its hop limit on, unchanged and uncopied.
                let rest = raw.body;
                if let Some(store) = &mut self.recent {
                    let stored = StoredHead::Forward { frame_len, frame_type, hops_left: h };
                    store.record(now, f.id, stored, rest.clone(), self.stats.bytes_received);
                }
                let signer = signed_mesh.then_some(f.origin);
                self.queue_to_all(now, Some(from), head, rest, signer);
            }
            None => {
                self.stats.hop_limit_reached += 1;
                self.outputs
                    .push_back(Output::Event(Event::MessageDropped { id: f.id, reason: DropReason::HopLimitReached }));
            }
        }
        match delivery {
            Some((path, payload)) => {
                self.stats.delivered += 1;
                let hops = f.hop_limit - f.hops_left + 1;
                self.outputs.push_back(Output::Deliver(Message { id: f.id, origin: f.origin, path, hops, payload }));
            }
            None => self.stats.no_channel += 1,
        }
    }
}

/// Whether the peer on `link` may introduce itself: always without TLS, else once TLS (and the
/// password proof) authenticated it.
fn peer_authenticated(link: &Link) -> bool {
    match &link.security {
        Some(s) if s.tls.is_some() => s.peer_authenticated,
        _ => true,
    }
}

/// The origin of a flood kept as (head, rest) by the recovery store: bytes 19..27 of the frame
/// after its length prefix, wherever the split between the two pieces falls.
fn stored_origin(head: &Bytes, rest: &Bytes) -> Option<NodeId> {
    let mut origin = [0u8; 8];
    let start = wire::LEN_PREFIX + 19;
    for (i, b) in origin.iter_mut().enumerate() {
        let at = start + i;
        *b = if at < head.len() { head[at] } else { *rest.get(at - head.len())? };
    }
    NodeId::new(u64::from_be_bytes(origin))
}

/// The next bytes of a TLS link: the Hello in the clear first, then TLS records (handshake
/// and alerts as rustls makes them; queued frames encrypted a batch at a time, only as the
/// adapter pulls, so the queue's accounting stays in plaintext and nothing is encrypted for a
/// peer that does not read).
fn pull_tls(l: &mut Link, max: usize) -> Option<Bytes> {
    if l.raw_prefix > 0 {
        let b = l.queue.pop(max.min(l.raw_prefix))?;
        l.raw_prefix -= b.len();
        return Some(b);
    }
    let sec = l.security.as_mut()?;
    if sec.pending.is_empty() {
        let tls = sec.tls.as_mut()?;
        let mut out = Vec::new();
        tls.write_into(&mut out);
        if out.is_empty() && tls.is_established() {
            let mut chunks: SmallVec<[Bytes; 32]> = SmallVec::new();
            let mut taken = 0;
            while taken < TlsSession::BATCH && chunks.len() < chunks.inline_size() {
                let Some(b) = l.queue.pop(TlsSession::BATCH - taken) else { break };
                taken += b.len();
                chunks.push(b);
            }
            if !chunks.is_empty() {
                // Sized once for the records (16 KiB of plaintext each, plus their overhead),
                // so the ciphertext is not copied again while the buffer grows.
                out.reserve(taken + (taken / (16 * 1024) + 1) * TlsSession::RECORD_OVERHEAD);
                tls.encrypt(&chunks);
                tls.write_into(&mut out);
            }
        }
        sec.pending = Bytes::from(out);
    }
    if sec.pending.is_empty() {
        return None;
    }
    let n = max.min(sec.pending.len());
    Some(sec.pending.split_to(n))
}

/// Queues a frame on `link`, asks the adapter to pull if the queue was empty, and lowers the
/// node's `spare_floor` by what the frame charges (so it stays a lower bound of every queue's
/// room). Inlined: this is on the relay's path once per neighbor, and a call that moves two
/// handles costs more than the body.
#[inline(always)]
fn push_frame(
    link: &mut Link,
    head: Bytes,
    rest: Bytes,
    now: Instant,
    rx_mark: u64,
    outputs: &mut VecDeque<Output>,
    spare_floor: &mut usize,
) {
    *spare_floor = spare_floor.saturating_sub(head.len() + rest.len() + 2 * CHUNK_OVERHEAD);
    let was_empty = link.queue.is_empty();
    if was_empty {
        link.waiting_since = Some(now);
    }
    link.queue.push(head, rest, rx_mark);
    link.last_send = now;
    if was_empty && !link.queue.is_empty() {
        outputs.push_back(Output::Transmit { link: link.id });
    }
}

/// Whether the maintainer may dial `addr` (naming `node`, if a referral did): not this node,
/// and no live link to that address or node already.
fn is_usable(links: &LinkTable, cfg: &Config, me: NodeId, addr: SocketAddr, node: Option<NodeId>) -> bool {
    if node == Some(me) || cfg.listen_addrs.contains(&addr) {
        return false;
    }
    !links.values().any(|l| {
        !l.is_closing() && (l.addr == addr || l.peer_listen.contains(&addr) || (node.is_some() && l.peer == node))
    })
}
