use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::id::{LinkId, NodeId};
use crate::rng::Rng;
use crate::wire::Referral;

/// Addresses of mesh members learned from referrals and resolver answers, waiting to be dialed.
/// Bounded; when full, the oldest entry gives way (fresh referrals are likelier to be alive).
#[derive(Debug)]
pub struct ReferralCache {
    /// Address, the node it names (if the referral said), and the link it came from (None for
    /// resolver answers and the bootstrap list).
    entries: VecDeque<(SocketAddr, Option<NodeId>, Option<LinkId>)>,
    capacity: usize,
}

impl ReferralCache {
    /// An empty cache holding at most `capacity` addresses.
    pub fn new(capacity: usize) -> Self {
        ReferralCache { entries: VecDeque::new(), capacity }
    }

    /// Adds or refreshes an address from a resolver or the bootstrap list.
    pub fn insert(&mut self, addr: SocketAddr, node: Option<NodeId>) {
        self.insert_from(addr, node, None);
    }

    /// Adds or refreshes an address (and the node ID, when the referral named one) that
    /// `source` referred. One link's referrals may fill at most a quarter of the cache (its
    /// oldest give way), so a single neighbor cannot steer most of this node's dials.
    pub fn insert_from(&mut self, addr: SocketAddr, node: Option<NodeId>, source: Option<LinkId>) {
        if self.capacity == 0 {
            return;
        }
        if let Some(i) = self.entries.iter().position(|(a, _, _)| *a == addr) {
            self.entries.remove(i);
        } else if source.is_some()
            && self.entries.iter().filter(|e| e.2 == source).count() >= (self.capacity / 4).max(1)
        {
            if let Some(i) = self.entries.iter().position(|e| e.2 == source) {
                self.entries.remove(i);
            }
        } else if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back((addr, node, source));
    }

    /// Removes and returns a random entry for which `usable` holds; entries it rejects are
    /// dropped on the way (they name this node or a current neighbor).
    pub fn take_random(
        &mut self,
        rng: &mut Rng,
        mut usable: impl FnMut(SocketAddr, Option<NodeId>) -> bool,
    ) -> Option<(SocketAddr, Option<NodeId>)> {
        self.entries.retain(|(a, n, _)| usable(*a, *n));
        if self.entries.is_empty() {
            return None;
        }
        let i = rng.below(self.entries.len());
        self.entries.remove(i).map(|(a, n, _)| (a, n))
    }

    /// Number of cached addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether an address can be a mesh member's listen address: not unspecified (0.0.0.0, ::),
/// multicast or broadcast, and not port 0. Referrals to anything else are dropped, so a hostile
/// neighbor cannot point the maintainer at addresses no node can listen on.
pub fn is_dialable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// Picks up to `max` referrals at random from `neighbors` (the original took the first N, so
/// every newcomer was sent to the same few nodes).
pub fn choose_referrals(rng: &mut Rng, neighbors: &mut Vec<Referral>, max: usize) -> Vec<Referral> {
    let k = max.min(neighbors.len());
    rng.sample_in_place(neighbors, k);
    neighbors.truncate(k);
    core::mem::take(neighbors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    #[test]
    fn bounded_and_oldest_gives_way() {
        let mut c = ReferralCache::new(3);
        for i in 0..5 {
            c.insert(addr(i), None);
        }
        assert_eq!(c.len(), 3);
        let mut rng = Rng::from_seed(1);
        let mut got = Vec::new();
        while let Some((a, _)) = c.take_random(&mut rng, |_, _| true) {
            got.push(a.port());
        }
        got.sort();
        assert_eq!(got, vec![2, 3, 4]);
    }

    #[test]
    fn reinsert_does_not_duplicate_and_filter_drops() {
        let mut c = ReferralCache::new(10);
        c.insert(addr(1), None);
        c.insert(addr(1), NodeId::new(9));
        c.insert(addr(2), None);
        assert_eq!(c.len(), 2);
        let mut rng = Rng::from_seed(2);
        let got = c.take_random(&mut rng, |a, _| a.port() == 1).unwrap();
        assert_eq!(got, (addr(1), NodeId::new(9)));
        assert!(c.is_empty());
    }

    #[test]
    fn unroutable_addresses_are_not_dialable() {
        for bad in ["0.0.0.0:1", "[::]:1", "224.0.0.1:1", "255.255.255.255:1", "[ff02::1]:1", "10.0.0.1:0"] {
            assert!(!is_dialable(bad.parse().unwrap()), "{bad}");
        }
        for good in ["10.0.0.1:1", "127.0.0.1:7000", "[2001:db8::1]:9"] {
            assert!(is_dialable(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn one_neighbor_fills_at_most_a_quarter() {
        let mut c = ReferralCache::new(40);
        for i in 0..40 {
            c.insert_from(addr(i), None, Some(LinkId(1)));
        }
        assert_eq!(c.len(), 10);
        for i in 100..120 {
            c.insert_from(addr(i), None, Some(LinkId(2)));
        }
        assert_eq!(c.len(), 20);
        // Resolver answers are not limited by source.
        for i in 200..240 {
            c.insert(addr(i), None);
        }
        assert_eq!(c.len(), 40);
    }

    #[test]
    fn referrals_are_a_random_sample() {
        let mut rng = Rng::from_seed(5);
        let all: Vec<Referral> =
            (1..=20).map(|i| Referral { node: NodeId::new(i).unwrap(), addr: addr(i as u16) }).collect();
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut n = all.clone();
            let got = choose_referrals(&mut rng, &mut n, 10);
            assert_eq!(got.len(), 10);
            let mut ids: Vec<_> = got.iter().map(|r| r.node).collect();
            ids.dedup();
            assert_eq!(ids.len(), 10);
            firsts.insert(got[0].node);
        }
        assert!(firsts.len() > 5, "not random: {firsts:?}");
        let mut few = all[..3].to_vec();
        assert_eq!(choose_referrals(&mut rng, &mut few, 10).len(), 3);
    }
}
