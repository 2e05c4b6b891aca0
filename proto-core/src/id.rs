//! Identifiers: nodes, messages and links.

use core::fmt;

/// The identity of a node in a mesh: a random non-zero 64-bit number, new each time a node opens.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u64);

impl NodeId {
    /// A node ID, or `None` for zero (zero is never a valid node ID).
    pub const fn new(id: u64) -> Option<Self> {
        if id == 0 {
            None
        } else {
            Some(NodeId(id))
        }
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The 128-bit random identity of one flood; duplicates are recognised by it (never by content,
/// so a deliberate repeat of the same bytes is a new message).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// The ID as two little-endian 64-bit halves (first 8 bytes, last 8 bytes): what the seen
    /// cache fingerprints and what own IDs are tagged by.
    pub(crate) fn halves(&self) -> (u64, u64) {
        let v = u128::from_le_bytes(self.0);
        (v as u64, (v >> 64) as u64)
    }
}

impl core::hash::Hash for MessageId {
    // One 128-bit write instead of a length prefix and a byte slice: the seen cache hashes an
    // ID for every flood copy received.
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_le_bytes(self.0));
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A handle for one connection of a node, chosen by the core. Adapters map it to their socket.
/// Handles are never reused by a node.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub u64);

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link#{}", self.0)
    }
}
