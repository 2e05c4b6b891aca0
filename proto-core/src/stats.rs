//! Counters a user can read at any time.

use crate::reason::CloseReason;

/// Counters of one node since it was created. Cheap to copy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Floods sent by this node.
    pub floods_sent: u64,
    /// Flood copies received from neighbors.
    pub floods_received: u64,
    /// First copies (the rest were duplicates).
    pub floods_first: u64,
    /// Copies dropped as duplicates (or echoes of own sends).
    pub duplicates: u64,
    /// Messages delivered to a local channel.
    pub delivered: u64,
    /// First copies with no local channel for their path.
    pub no_channel: u64,
    /// First copies not forwarded because their hop limit was used up.
    pub hop_limit_reached: u64,
    /// Flood copies queued to neighbors (forwards and own sends).
    pub floods_queued: u64,
    /// Payload bytes received in floods.
    pub payload_bytes_received: u64,
    /// Bytes received on links (all frames).
    pub bytes_received: u64,
    /// Bytes handed to the adapter by `poll_transmit`.
    pub bytes_sent: u64,
    /// Control frames (everything but floods) queued.
    pub control_frames_sent: u64,
    /// Bytes of control frames queued.
    pub control_bytes_sent: u64,
    /// Bytes copied to reassemble frames split across reads (0 = fully zero-copy).
    pub reassembly_copied_bytes: u64,
    /// Dials requested.
    pub dials: u64,
    /// Dials that did not produce a neighbor.
    pub dial_failures: u64,
    /// Inbound connections accepted.
    pub accepted: u64,
    /// Inbound connections refused at accept (too many handshakes).
    pub accept_refused: u64,
    /// Links that became neighbors.
    pub neighbors_up: u64,
    /// Neighbors lost, by reason (index with [`CloseReason::index`]).
    pub neighbors_down: [u64; CloseReason::ALL.len()],
    /// Links closed by this node before becoming neighbors, by reason.
    pub handshakes_failed: [u64; CloseReason::ALL.len()],
    /// Floods dropped because their neighbor exceeded `max_floods_per_neighbor_per_sec`.
    pub floods_rate_limited: u64,
    /// Times a link's reading paused because a received flood had no room in a neighbor's
    /// queue (see `Config::forward_wait`).
    pub forward_pauses: u64,
    /// Floods that waited out `forward_wait` and went on, evicting a neighbor still without
    /// room.
    pub forward_waits_expired: u64,
    /// Referrals ignored: this node, unroutable addresses (unspecified, multicast, broadcast,
    /// port 0).
    pub referrals_rejected: u64,
    /// Referrals ignored because `share_referrals` is off, or because they came from a peer
    /// that connected to this node and never became its neighbor.
    pub referrals_ignored: u64,
    /// Referrals dropped because more arrived than `max_referrals_per_sec` allows.
    pub referrals_rate_limited: u64,
    /// Recovery: message IDs asked of new neighbors (missed while cut off).
    pub recovery_wanted: u64,
    /// Recovery: stored floods resent to new neighbors that asked.
    pub recovery_resent: u64,
    /// Closed links forgotten before their farewell was pulled (`max_closing_links`).
    pub farewells_dropped: u64,
    /// Local sends refused because a neighbor's queue was full.
    pub send_busy: u64,
    /// Resolver requests made.
    pub resolves: u64,
    /// Resolver requests that failed or timed out.
    pub resolve_failures: u64,
    /// Peers that failed authentication (wrong password, missing proof, certificate rejected
    /// by either side).
    pub auth_failures: u64,
    /// Signed floods whose signature verified (first copies only: duplicates are not
    /// verified).
    pub signatures_verified: u64,
    /// Signed floods dropped because their signature did not verify.
    pub invalid_signatures: u64,
    /// Signed floods not sent on a link because their origin's credential was forgotten
    /// (more origins than the node remembers; see `security::CREDENTIAL_WINDOW`).
    pub floods_unintroduced: u64,
    /// Message IDs forgotten early because the seen cache was full.
    pub seen_evicted_early: u64,
    /// IDs in the seen cache now.
    pub seen_len: usize,
    /// Neighbors now.
    pub neighbors: usize,
    /// Bytes queued on all links now.
    pub queued_bytes: usize,
}

impl Stats {
    /// Neighbors lost for `reason`.
    pub fn neighbors_down_for(&self, reason: CloseReason) -> u64 {
        self.neighbors_down[reason.index()]
    }

    /// Links closed before becoming neighbors for `reason`.
    pub fn handshakes_failed_for(&self, reason: CloseReason) -> u64 {
        self.handshakes_failed[reason.index()]
    }

    /// Links closed for `reason`, neighbors or not.
    pub fn closed_for(&self, reason: CloseReason) -> u64 {
        self.neighbors_down_for(reason) + self.handshakes_failed_for(reason)
    }
}
