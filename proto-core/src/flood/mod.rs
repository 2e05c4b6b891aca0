//! Flooding: duplicate suppression and the forwarding rule.

mod recent;
mod seen;

pub use recent::{RecentStore, StoredHead, MAX_STORED};
pub use seen::SeenCache;

/// What to do with a received flood copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A copy of a message already seen (or sent by this node): drop it.
    Duplicate,
    /// The first copy: deliver locally and forward (if `forward_hops` is some, with that many
    /// hops left on each forwarded copy).
    First {
        /// Hops left for the forwarded copies, `None` when the hop limit is reached.
        forward_hops: Option<u8>,
    },
}

/// Hops left on a forwarded copy, or `None` when this copy's last hop was the one to us.
/// Never wraps: a copy arriving with 1 hop left stops here.
pub fn forward_hops(hops_left: u8) -> Option<u8> {
    hops_left.checked_sub(1).filter(|h| *h > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_limit_does_not_wrap() {
        assert_eq!(forward_hops(0), None);
        assert_eq!(forward_hops(1), None);
        assert_eq!(forward_hops(2), Some(1));
        assert_eq!(forward_hops(255), Some(254));
    }
}
