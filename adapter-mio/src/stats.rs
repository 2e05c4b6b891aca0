//! A node's counters: the core's, plus the adapter's own I/O and queue counters.

/// Counters of one [`MioNode`](crate::MioNode): the protocol core's and the adapter's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// The protocol core's counters (floods, duplicates, neighbors, close reasons...).
    pub core: peerchannel_core::Stats,
    /// The adapter's I/O and queue counters.
    pub adapter: AdapterStats,
}

/// The adapter's counters: system calls, buffered bytes, interest changes and deliveries.
///
/// Memory held by a node is bounded by the core's per-link queues (`Config::link_queue_bytes`
/// each), the write window per connection ([`Builder::write_window`](crate::Builder::write_window);
/// `write_buffered_peak` never exceeds it), one read buffer, the channel queues
/// ([`Builder::channel_capacity`](crate::Builder::channel_capacity) messages each), the event
/// queue and the cross-thread command queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterStats {
    /// Successful socket read calls.
    pub reads: u64,
    /// Bytes read from sockets.
    pub bytes_read: u64,
    /// Successful socket write calls (a vectored write counts once).
    pub writes: u64,
    /// Bytes written to sockets.
    pub bytes_written: u64,
    /// Writes that took fewer bytes than offered (the rest waited for a writable event).
    pub partial_writes: u64,
    /// Times write interest was turned on (data waited on a full socket) or off (drained).
    pub interest_changes: u64,
    /// Bytes taken from the core and not yet written, over all connections, now.
    pub write_buffered_bytes: usize,
    /// The most bytes ever buffered for one connection (at most the write window).
    pub write_buffered_peak: usize,
    /// Open TCP connections now (neighbors, handshakes, dials and closing links).
    pub connections: usize,
    /// Inbound connections taken from the listener (before any check).
    pub accepted: u64,
    /// Inbound connections closed at once because every token of the range was in use.
    pub refused_no_token: u64,
    /// Inbound connections the core refused (too many handshakes, in total or per address).
    pub refused_by_core: u64,
    /// Sends refused with `WouldBlock` because the outbound budget was spent.
    pub sends_would_block: u64,
    /// Messages handed to channel queues.
    pub delivered: u64,
    /// Messages dropped because a channel's queue stayed full (see the crate docs).
    pub deliveries_dropped: u64,
    /// Times the node paused reading because a channel's queue was full.
    pub delivery_stalls: u64,
    /// Messages waiting in channel queues now.
    pub channel_queued: usize,
    /// Events dropped because the event queue was full (the oldest go first).
    pub events_dropped: u64,
    /// Commands taken from cross-thread [`Handle`](crate::Handle)s.
    pub commands: u64,
}
