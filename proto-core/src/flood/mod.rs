//! Flooding: duplicate suppression and the forwarding rule.

mod own;
mod path_memo;
mod recent;
mod seen;

pub use own::OwnIds;
pub(crate) use path_memo::PathMemo;
pub use recent::{RecentStore, StoredHead, MAX_STORED};
pub use seen::{SeenCache, Warmer, WARM_BATCH};

/// A bijective 64-bit mixer with full avalanche (the finaliser of MurmurHash3).
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

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
