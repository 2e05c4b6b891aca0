//! What a node's counters look like from the application: the core's, plus the adapter's own
//! I/O and queue counters.

/// Counters of one [`PeerNode`](crate::PeerNode): the protocol core's and the adapter's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// The protocol core's counters (floods, duplicates, neighbors, close reasons...).
    pub core: peerchannel_core::Stats,
    /// The adapter's I/O and queue counters.
    pub adapter: AdapterStats,
}

/// The adapter's counters: system calls, buffered bytes and what happened to deliveries.
///
/// Memory held by a node is bounded by: the core's per-link queues
/// (`Config::link_queue_bytes` each), the adapter's write window per connection
/// ([`Builder::write_window`](crate::Builder::write_window); `write_buffered_peak` never exceeds
/// it), one read buffer, and the channel queues
/// ([`Builder::channel_capacity`](crate::Builder::channel_capacity) messages each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterStats {
    /// Successful socket read calls.
    pub reads: u64,
    /// Bytes read from sockets.
    pub bytes_read: u64,
    /// Successful socket write calls (vectored writes count once).
    pub writes: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Bytes taken from the core and not yet written, over all connections, now.
    pub write_buffered_bytes: usize,
    /// The most bytes ever buffered for one connection (at most the write window).
    pub write_buffered_peak: usize,
    /// Open TCP connections now (neighbors, handshakes and closing links).
    pub connections: usize,
    /// Outbound connects in progress now.
    pub dials_in_flight: usize,
    /// Sends that found the node's outbound budget spent and waited for it to drain.
    pub sends_waited: u64,
    /// Messages handed to channel queues.
    pub delivered: u64,
    /// Messages dropped because a channel's queue was full (see the crate docs for the policy).
    pub deliveries_dropped: u64,
    /// Times the node paused reading because a channel's queue was full.
    pub delivery_stalls: u64,
    /// Messages waiting in channel queues now.
    pub channel_queued: usize,
    /// Events dropped because an event stream's queue was full (the oldest go first).
    pub events_dropped: u64,
    /// Inbound connections accepted from the listener (before the core's own checks).
    pub accepted: u64,
}
