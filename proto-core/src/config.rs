//! Every knob of a node, with the defaults and why they were chosen.

use core::time::Duration;
use std::net::SocketAddr;

use crate::error::ConfigError;
use crate::id::NodeId;
use crate::security::Security;
use crate::uri::MeshId;

/// The smallest largest-message size a node may be configured with (the original's minimum).
pub const MIN_MESSAGE_SIZE: usize = 16 * 1024;
/// The largest largest-message size (the wire's length prefix and per-link buffers allow more,
/// but a flood reaches every node: bigger messages belong in a transfer protocol).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Configuration of one node. Build it with [`Config::new`] and change fields as needed;
/// [`Node::new`](crate::Node::new) validates it.
#[derive(Clone, Debug)]
pub struct Config {
    /// The mesh this node belongs to.
    pub mesh: MeshId,
    /// Seed of every random choice (node ID, message IDs, referral choice, jitter). The same
    /// seed and inputs give the same outputs. Adapters seed it from the OS; simulations fix it.
    pub seed: u64,
    /// This node's ID; `None` draws a random non-zero one from `seed`.
    pub node_id: Option<NodeId>,
    /// Addresses this node listens on, announced in Connect and handed on as referrals.
    /// Dial candidates equal to one of them are skipped.
    pub listen_addrs: Vec<SocketAddr>,
    /// Addresses to dial when there are no referrals, before asking a resolver (a static
    /// resolver). When empty the node emits [`Output::Resolve`](crate::Output::Resolve).
    pub bootstrap: Vec<SocketAddr>,

    /// Below this many neighbors the maintainer repairs at once. Default 2 (the original's).
    pub min_neighbors: usize,
    /// The maintainer grows toward and prunes back to this many. Default 3 (the original's).
    pub ideal_neighbors: usize,
    /// Connects beyond this many are refused with NodeBusy. Default 7 (the original's).
    pub max_neighbors: usize,
    /// Periodic maintenance prunes only above `ideal_neighbors + prune_slack`. Default 1. With
    /// no slack (the original's rule) a node one below ideal dials a node at ideal, which prunes
    /// back to ideal and leaves another node one below: the gap wanders through the mesh
    /// forever, and every step is a link torn down under traffic.
    pub prune_slack: usize,
    /// Referrals sent in a Welcome, Refuse or Disconnect. Default 10, the protocol's maximum.
    pub max_referrals: usize,
    /// Whether this node hands out and learns referrals. `false` when a resolver service
    /// controls the mesh's shape (the original's `ControlMeshShape`): the node then sends
    /// empty referral lists and ignores received ones (counted in `Stats::referrals_ignored`),
    /// and finds candidates through its resolver alone. Default true.
    pub share_referrals: bool,
    /// Addresses kept for later dialing. Default 50 (the original's).
    pub referral_cache_size: usize,
    /// Addresses asked of the resolver per request. Default 3 (the original's).
    pub resolve_max_addresses: usize,
    /// Resolver requests in a row before the maintainer waits for its next period. Default 2.
    pub resolve_attempts: u32,
    /// How long a resolver request may take before it counts as failed. Default 10 s.
    pub resolve_timeout: Duration,
    /// Accepted links still in their handshake, at most; more are refused at accept. Default 16.
    pub max_inbound_handshakes: usize,
    /// Accepted links still in their handshake from one IP address, at most, so one host
    /// flooding connections cannot take every handshake slot. Default 8.
    pub max_handshakes_per_ip: usize,
    /// Neighbors at most from one public network (IPv4 /24, IPv6 /48), so that one host or one
    /// network with many node IDs cannot hold every neighbor slot and eclipse the node from the
    /// mesh. Beyond it a new neighbor is refused with `TooManyFromAddress`. Addresses that are
    /// not publicly routed (loopback, private, link-local) are not limited: a LAN mesh shares
    /// one prefix. `None` sets no limit. Default 2.
    pub max_neighbors_per_prefix: Option<usize>,
    /// Floods accepted per second from one neighbor (a token bucket holding one second's worth).
    /// Floods beyond it are dropped and counted (`Stats::floods_rate_limited`), not forwarded,
    /// so one neighbor's message storm cannot be amplified through the mesh. `None` (the
    /// default) sets no limit: the mesh runs at what its links carry.
    pub max_floods_per_neighbor_per_sec: Option<u32>,
    /// Referrals this node learns per second at most, over all its links: a token bucket
    /// holding ten seconds' worth, so a join or a repair after a mass failure takes its burst.
    /// Beyond it referrals are dropped and counted (`Stats::referrals_rate_limited`). Referrals
    /// choose the addresses this node dials, so peers handing out addresses one link after
    /// another cannot fill its referral cache faster than this. `None` sets no limit.
    /// Default 10 per second (100 at once).
    pub max_referrals_per_sec: Option<u32>,

    /// Transport connect plus handshake must finish within this. Default 10 s: a TCP connect
    /// and two round trips take well under a second even between continents; the original's
    /// 60 s let a dead referral stall a join for a minute.
    pub connect_timeout: Duration,
    /// Period of maintenance (grow to ideal, prune above ideal). Default 10 s: the original's
    /// 5 minutes left a mesh under-connected for minutes after churn.
    pub maintainer_interval: Duration,
    /// While below `min_neighbors`, maintenance runs again this often. Default 1 s.
    pub repair_retry_interval: Duration,
    /// While below `min_neighbors`, a dial still pending after this long stops holding back
    /// another candidate (a dead host can take the whole `connect_timeout` to fail). Default 2 s.
    pub dial_patience: Duration,
    /// Period of the mesh refresh: ask the resolver for a random member and add one link to it
    /// (pruning removes whichever link proves least useful). This lets parts of a mesh that
    /// lost each other, e.g. across a healed partition, merge again. `None` disables it.
    /// Default 30 s (with up to 50% random jitter, so nodes do not refresh in step).
    pub refresh_interval: Option<Duration>,
    /// A Ping goes out when nothing was sent on a link for this long. Default 5 s.
    pub keepalive_interval: Duration,
    /// A link on which nothing arrived for this long is closed (IdleTimeout): dead peers are
    /// found without waiting for a send to fail. Default 15 s (three keepalives). A frame must
    /// also arrive whole within this time of its first byte, else the link is closed as
    /// NodeTooSlow (a peer trickling bytes cannot hold a neighbor slot).
    pub idle_timeout: Duration,
    /// Utility reports go out at least this often while floods arrive (and every 32 floods).
    /// Default 30 s (the original's).
    pub utility_report_interval: Duration,
    /// How long a closed link's last bytes (Disconnect, Refuse) wait for the adapter to pull
    /// them. Default 2 s.
    pub close_linger: Duration,
    /// Closed links whose last bytes still wait for the adapter, at most; beyond it the oldest
    /// is forgotten without its farewell (counted in `Stats::farewells_dropped`). Default 64.
    pub max_closing_links: usize,

    /// Largest payload of a flood. Default 64 KiB (the original's); at least 16 KiB.
    pub max_message_size: usize,
    /// Hops a flood sent by this node may travel. Default 64: far above the diameter of any
    /// mesh of degree 3 with a million nodes, yet bounded.
    pub hop_limit: u8,
    /// Message IDs are remembered at least this long (and at most twice as long) to drop
    /// duplicates. Default 60 s.
    pub seen_ttl: Duration,
    /// Most message IDs remembered; when full the oldest go early (counted). Default 262,144
    /// (a table of 4 MiB when full, briefly 6 MiB while it grows).
    pub seen_capacity: usize,
    /// How far back a node offers recent floods to a new neighbor (Digest, then Want): a node
    /// that was cut off for less than this, or two parts of a mesh that merge, catch up on what
    /// they missed. `None` disables recovery. Default 30 s.
    pub recovery_window: Option<Duration>,
    /// Recovery keeps recent floods without copying them, so it bounds what they can keep
    /// alive: the frames, and the bytes received since the oldest one (which may share its
    /// read buffers), each stay under this. At most 1024 floods are kept. Default 4 MiB.
    pub recovery_store_bytes: usize,
    /// Bytes queued per link before a forwarded flood evicts the neighbor as NodeTooSlow and a
    /// local send is refused with `SendError::Busy`. Default 256 KiB.
    pub link_queue_bytes: usize,
    /// How long a received flood may wait for room in the neighbors' queues. While one waits,
    /// the node processes nothing more from that link and asks the adapter not to read it
    /// ([`Node::reads_paused`](crate::Node::reads_paused)), so TCP's flow control slows the
    /// senders upstream and a neighbor that is slow but alive keeps up instead of being evicted.
    /// After this long the flood goes on anyway and a neighbor still without room is evicted
    /// as NodeTooSlow (which is what bounds memory). Zero evicts at once. Must be shorter than
    /// `idle_timeout`. Default 250 ms: long enough to ride out a burst on a busy link, short
    /// against the idle timeout (15 s) and a user's patience.
    pub forward_wait: Duration,

    /// Link encryption, authentication and flood signing. Default: none (see
    /// [`Security`]; every member of a mesh must use the same mode and credential kind).
    pub security: Security,
}

impl Config {
    /// The defaults for a node of `mesh`, seeded with `seed`.
    pub fn new(mesh: MeshId, seed: u64) -> Self {
        Config {
            mesh,
            seed,
            node_id: None,
            listen_addrs: Vec::new(),
            bootstrap: Vec::new(),
            min_neighbors: 2,
            ideal_neighbors: 3,
            max_neighbors: 7,
            prune_slack: 1,
            max_referrals: 10,
            share_referrals: true,
            referral_cache_size: 50,
            resolve_max_addresses: 3,
            resolve_attempts: 2,
            resolve_timeout: Duration::from_secs(10),
            max_inbound_handshakes: 16,
            max_handshakes_per_ip: 8,
            max_neighbors_per_prefix: Some(2),
            max_floods_per_neighbor_per_sec: None,
            max_referrals_per_sec: Some(10),
            connect_timeout: Duration::from_secs(10),
            maintainer_interval: Duration::from_secs(10),
            repair_retry_interval: Duration::from_secs(1),
            dial_patience: Duration::from_secs(2),
            refresh_interval: Some(Duration::from_secs(30)),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            utility_report_interval: Duration::from_secs(30),
            close_linger: Duration::from_secs(2),
            max_closing_links: 64,
            max_message_size: 64 * 1024,
            hop_limit: 64,
            seen_ttl: Duration::from_secs(60),
            seen_capacity: 1 << 18,
            link_queue_bytes: 256 * 1024,
            forward_wait: Duration::from_millis(250),
            recovery_window: Some(Duration::from_secs(30)),
            recovery_store_bytes: 4 * 1024 * 1024,
            security: Security::none(),
        }
    }

    /// Checks the fields against each other; `Node::new` calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.security.check().map_err(ConfigError::Security)?;
        if self.min_neighbors == 0
            || self.min_neighbors > self.ideal_neighbors
            || self.ideal_neighbors > self.max_neighbors
        {
            return Err(ConfigError::NeighborCounts {
                min: self.min_neighbors,
                ideal: self.ideal_neighbors,
                max: self.max_neighbors,
            });
        }
        if self.max_referrals > crate::wire::MAX_REFERRALS {
            return Err(ConfigError::TooManyReferrals(self.max_referrals));
        }
        if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&self.max_message_size) {
            return Err(ConfigError::MessageSize(self.max_message_size));
        }
        if self.hop_limit == 0 {
            return Err(ConfigError::ZeroHopLimit);
        }
        if self.seen_capacity == 0 || self.seen_ttl.is_zero() {
            return Err(ConfigError::SeenCache);
        }
        if self.recovery_window.is_some_and(|w| w > self.seen_ttl) {
            return Err(ConfigError::RecoveryOutlivesSeen);
        }
        let frame = crate::wire::LEN_PREFIX + crate::wire::max_frame_len(self.max_message_size);
        if self.link_queue_bytes < frame {
            return Err(ConfigError::LinkQueueTooSmall { queue: self.link_queue_bytes, frame });
        }
        if self.idle_timeout <= self.keepalive_interval {
            return Err(ConfigError::IdleNotAboveKeepalive);
        }
        if self.forward_wait >= self.idle_timeout {
            return Err(ConfigError::ForwardWaitNotBelowIdle);
        }
        if self.max_handshakes_per_ip == 0
            || self.max_floods_per_neighbor_per_sec == Some(0)
            || self.max_referrals_per_sec == Some(0)
            || self.max_neighbors_per_prefix == Some(0)
        {
            return Err(ConfigError::ZeroLimit);
        }
        if self.listen_addrs.len() > crate::wire::MAX_ADDRESSES {
            return Err(ConfigError::TooManyListenAddrs(self.listen_addrs.len()));
        }
        for d in [
            self.connect_timeout,
            self.maintainer_interval,
            self.repair_retry_interval,
            self.keepalive_interval,
            self.resolve_timeout,
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration);
            }
        }
        if self.refresh_interval.is_some_and(|d| d.is_zero()) || self.recovery_window.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroDuration);
        }
        Ok(())
    }
}

/// The settings a link's deadlines come from, as one small value (see
/// [`Link::next_deadline`](crate::link::Link::next_deadline)).
///
/// A node keeps a copy beside the state it reads for every frame: in [`Config`] (about 500
/// bytes) these fields are spread over several cache lines, each one more miss per frame when
/// the node's state is cold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LinkTimings {
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub idle_timeout: Duration,
    pub utility_report_interval: Duration,
    pub forward_wait: Duration,
}

impl Config {
    /// This configuration's link timings.
    pub(crate) fn link_timings(&self) -> LinkTimings {
        LinkTimings {
            connect_timeout: self.connect_timeout,
            keepalive_interval: self.keepalive_interval,
            idle_timeout: self.idle_timeout,
            utility_report_interval: self.utility_report_interval,
            forward_wait: self.forward_wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::new(MeshId::new("m").unwrap(), 1)
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field() {
        let mut c = cfg();
        c.ideal_neighbors = 9;
        assert!(matches!(c.validate(), Err(ConfigError::NeighborCounts { .. })));
        let mut c = cfg();
        c.max_message_size = 1000;
        assert_eq!(c.validate(), Err(ConfigError::MessageSize(1000)));
        let mut c = cfg();
        c.link_queue_bytes = 1000;
        assert!(matches!(c.validate(), Err(ConfigError::LinkQueueTooSmall { .. })));
        let mut c = cfg();
        c.idle_timeout = c.keepalive_interval;
        assert_eq!(c.validate(), Err(ConfigError::IdleNotAboveKeepalive));
        let mut c = cfg();
        c.forward_wait = c.idle_timeout;
        assert_eq!(c.validate(), Err(ConfigError::ForwardWaitNotBelowIdle));
        let mut c = cfg();
        c.max_referrals = 11;
        assert_eq!(c.validate(), Err(ConfigError::TooManyReferrals(11)));
        let mut c = cfg();
        c.hop_limit = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroHopLimit));
        let mut c = cfg();
        c.recovery_window = Some(c.seen_ttl * 2);
        assert_eq!(c.validate(), Err(ConfigError::RecoveryOutlivesSeen));
    }
}
