//! One connection to a peer: its handshake state, reassembly of received frames, bounded send
//! queue, keepalive and the link's utility bookkeeping.

mod assembler;
mod send_queue;
mod table;

pub use assembler::{Assembled, FrameAssembler};
pub use send_queue::{SendQueue, CHUNK_OVERHEAD};
pub use table::LinkTable;

use std::net::SocketAddr;

use smallvec::SmallVec;

use crate::config::LinkTimings;
use crate::id::{LinkId, NodeId};
use crate::mesh::LinkUtility;
use crate::security::LinkSecurity;
use crate::time::Instant;

/// Which side opened the connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// This node dialed.
    Initiator,
    /// The peer dialed and this node accepted.
    Responder,
}

/// Where a link is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// A dial was requested; the transport has not connected yet.
    Dialing,
    /// Connected; Hello and Connect/Welcome are being exchanged.
    Handshake {
        /// The peer's Hello has arrived and checked out.
        hello_received: bool,
    },
    /// A neighbor: floods flow.
    Connected,
    /// Closed by this node; queued bytes (a final Disconnect or Refuse) may still be drained.
    Closing {
        /// When the core gives up on the adapter draining the queue.
        linger_until: Instant,
    },
}

/// A field with no other purpose than to hold the tag of an `Option<Link>` (the link table's
/// slots) next to the link's handle.
///
/// The compiler puts that tag in an unused bit pattern of one of the link's fields, the one
/// with the most unused patterns, the last of them on a tie: that was the token bucket's
/// `Option` at byte 496, so every lookup in the table read a cache line of the link that
/// nothing else on the relay path reads. A one-variant `u64` enum leaves more patterns unused
/// than any other field, so the tag lives here, in the first line (together with the
/// simulator's nodes moved behind a pointer for the same reason: 3% fewer data read misses on
/// steady-1k in callgrind's cache model with a 512 KiB last level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum SlotTag {
    Occupied = 0,
}

/// Everything the node knows about one connection.
///
/// `repr(C)` to keep the declared order: the fields a received or queued frame touches come
/// first, so they share a few cache lines. In a simulation of 1,000 nodes every node's state is
/// cold when its next event comes; with the compiler's order those fields were spread over the
/// link's 500 bytes (steady-1k in callgrind's cache model with a 512 KiB last level: 6% fewer
/// data read misses).
#[derive(Debug)]
#[repr(C)]
pub struct Link {
    /// The handle adapters know it by. First: every lookup in the link table compares it.
    pub id: LinkId,
    /// Where an `Option<Link>` keeps its tag (see [`SlotTag`]).
    slot_tag: SlotTag,
    /// Life-cycle state.
    pub state: LinkState,
    /// Reassembly of received frames.
    pub assembler: FrameAssembler,
    /// Bytes waiting for the adapter to pull them.
    pub queue: SendQueue,
    /// Link utility bookkeeping.
    pub utility: LinkUtility,
    /// Last time anything arrived.
    pub last_recv: Instant,
    /// Last time anything was queued.
    pub last_send: Instant,
    /// The deadline this link currently has in the node's timer queue.
    pub armed: Option<Instant>,
    /// When the frame still incomplete in the assembler began to arrive.
    pub partial_since: Option<Instant>,
    /// Since when queued bytes have waited without the adapter pulling any (None when the
    /// queue is empty): a peer that stops reading stalls the socket, and the link is closed as
    /// NodeTooSlow after the idle timeout even if nothing overflows.
    pub waiting_since: Option<Instant>,
    /// Since when a received flood waits for room in the neighbors' queues (its frame is held
    /// in the assembler, and the adapter should not read this link): see
    /// `Config::forward_wait`.
    pub held_since: Option<Instant>,
    /// Security state (TLS session, proofs, introduced signers); `None` in an unsecured mesh.
    pub security: Option<Box<LinkSecurity>>,
    /// Bytes at the head of the queue that go out as they are, before TLS takes over (the
    /// Hello, which announces the security setting in the clear).
    pub raw_prefix: usize,
    /// Who dialed.
    pub role: Role,
    /// Recovery: this node offered its recent floods (Digest sent), so one Want may come.
    pub digest_sent: bool,
    /// Recovery: the peer's Digest arrived (only one is allowed).
    pub digest_received: bool,
    /// Recovery: the peer's Want arrived (only one is allowed).
    pub want_received: bool,
    /// When the link was created (the connect timeout counts from here).
    pub created: Instant,
    /// The peer's node ID once its Connect or Welcome arrived (or the referral's, while dialing).
    pub peer: Option<NodeId>,
    /// The dialed address (initiator) or the remote socket address (responder).
    pub addr: SocketAddr,
    /// Where the peer listens (from its Connect, or the dialed address).
    pub peer_listen: SmallVec<[SocketAddr; 2]>,
    /// The nonce and send time of the keepalive Ping awaiting its Pong.
    pub ping: Option<(u64, Instant)>,
    /// Last measured round-trip time in nanoseconds.
    pub rtt_nanos: Option<u64>,
    /// The neighbor's inbound flood allowance (used when a per-neighbor rate is configured).
    pub flood_budget: TokenBucket,
}

/// A token bucket refilled at `rate` tokens per second, holding at most one second's worth.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A bucket that starts full.
    pub fn new() -> Self {
        TokenBucket { tokens: f64::INFINITY, last: None }
    }

    /// Takes one token if one is left at `now` for a bucket refilled at `rate` per second and
    /// holding at most `burst` tokens.
    pub fn take(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        let cap = f64::from(burst);
        let refill = self.last.map_or(cap, |t| (now - t).as_secs_f64() * f64::from(rate));
        self.tokens = (self.tokens + refill).min(cap);
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for TokenBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl Link {
    /// A new link in `state`.
    pub fn new(id: LinkId, role: Role, state: LinkState, addr: SocketAddr, now: Instant) -> Self {
        Link {
            id,
            slot_tag: SlotTag::Occupied,
            role,
            state,
            addr,
            peer: None,
            peer_listen: SmallVec::new(),
            assembler: FrameAssembler::default(),
            queue: SendQueue::default(),
            created: now,
            last_recv: now,
            last_send: now,
            ping: None,
            rtt_nanos: None,
            utility: LinkUtility::new(now),
            armed: None,
            partial_since: None,
            flood_budget: TokenBucket::new(),
            waiting_since: None,
            held_since: None,
            digest_sent: false,
            digest_received: false,
            want_received: false,
            security: None,
            raw_prefix: 0,
        }
    }

    /// The peer's announced listen address if it sent one, else the address of the link.
    pub fn listen_addr(&self) -> SocketAddr {
        self.peer_listen.first().copied().unwrap_or(self.addr)
    }

    /// Whether queued bytes have waited `timeout` without any being pulled.
    pub fn write_stalled(&self, now: Instant, timeout: core::time::Duration) -> bool {
        !self.queue.is_empty() && self.waiting_since.is_some_and(|t| now >= t + timeout)
    }

    /// Whether the link's TLS session carries its bytes (the peer's Hello arrived in a
    /// Transport mesh).
    pub fn tls_active(&self) -> bool {
        self.security.as_ref().is_some_and(|s| s.tls_started && s.tls.is_some())
    }

    /// Whether frames may be queued for the peer: always without TLS; with TLS only once the
    /// handshake finished (before that nothing can be encrypted, and a farewell has no way to
    /// travel but the TLS alert).
    pub fn can_queue_frames(&self) -> bool {
        match &self.security {
            Some(s) => s.tls.as_ref().is_none_or(|t| t.is_established()),
            None => true,
        }
    }

    /// Whether bytes wait to be pulled: queued frames or TLS records (handshake, alerts).
    pub fn has_output(&self) -> bool {
        !self.queue.is_empty()
            || self
                .security
                .as_ref()
                .is_some_and(|s| !s.pending.is_empty() || s.tls.as_ref().is_some_and(|t| t.has_output()))
    }

    /// A neighbor that floods flow to.
    pub fn is_connected(&self) -> bool {
        self.state == LinkState::Connected
    }

    /// Dialed by this node and not yet a neighbor.
    pub fn is_pending_dial(&self) -> bool {
        self.role == Role::Initiator && matches!(self.state, LinkState::Dialing | LinkState::Handshake { .. })
    }

    /// Accepted and not yet a neighbor.
    pub fn is_pending_inbound(&self) -> bool {
        self.role == Role::Responder && matches!(self.state, LinkState::Handshake { .. })
    }

    /// Closed by this node, waiting for its last bytes to be drained.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, LinkState::Closing { .. })
    }

    /// The earliest time something must happen on this link: the connect timeout while
    /// handshaking; keepalive, idle timeout, a utility report or the end of a forward wait when
    /// connected; the end of the linger when closing.
    pub(crate) fn next_deadline(&self, timings: &LinkTimings) -> Instant {
        match self.state {
            LinkState::Dialing | LinkState::Handshake { .. } => self.created + timings.connect_timeout,
            LinkState::Connected => {
                let keepalive = self.last_send + timings.keepalive_interval;
                let idle = self.last_recv + timings.idle_timeout;
                let mut d = keepalive.min(idle);
                if let Some(t) = self.partial_since {
                    d = d.min(t + timings.idle_timeout);
                }
                if let (Some(t), false) = (self.waiting_since, self.queue.is_empty()) {
                    d = d.min(t + timings.idle_timeout);
                }
                if let Some(t) = self.held_since {
                    d = d.min(t + timings.forward_wait);
                }
                if self.utility.has_unreported() {
                    d = d.min(self.utility.last_report() + timings.utility_report_interval);
                }
                d
            }
            LinkState::Closing { linger_until } => linger_until,
        }
    }
}
