use std::net::SocketAddr;

use smallvec::SmallVec;

use super::ReferralCache;
use crate::id::{LinkId, NodeId};
use crate::rng::Rng;
use crate::time::Instant;

/// Why the node asked the resolver for addresses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ResolvePurpose {
    /// Too few neighbors and no referrals to dial.
    Join,
    /// The periodic mesh refresh: one extra link to a random member, which is how two parts
    /// of a mesh that lost each other (a healed partition) find each other again.
    Refresh,
}

/// What the maintainer wants done now.
#[derive(Debug, Default)]
pub struct Plan {
    /// Addresses to dial (with the node ID when a referral named it).
    pub dials: SmallVec<[(SocketAddr, Option<NodeId>); 4]>,
    /// Ask the resolver for addresses.
    pub resolve: Option<ResolvePurpose>,
}

/// The neighbor maintainer's state: referral cache, resolver request in flight, schedule.
#[derive(Debug)]
pub struct Maintainer {
    /// Candidates to dial.
    pub cache: ReferralCache,
    /// The resolver request in flight: its id, purpose and deadline.
    pub resolving: Option<(u64, ResolvePurpose, Instant)>,
    /// Resolver requests made since the node last had enough candidates.
    pub resolve_attempts: u32,
    /// When the next periodic maintenance runs.
    pub next_tick: Instant,
    /// When the next mesh refresh runs.
    pub next_refresh: Instant,
}

impl Maintainer {
    /// A maintainer with an empty cache of `capacity` referrals.
    pub fn new(capacity: usize, now: Instant) -> Self {
        Maintainer {
            cache: ReferralCache::new(capacity),
            resolving: None,
            resolve_attempts: 0,
            next_tick: now,
            next_refresh: now,
        }
    }

    /// Plans dials to bring `connected + dialing` up to `want`, taking random cached
    /// candidates that `usable` accepts; asks for a resolve when the cache runs dry (at most
    /// `max_attempts` in a row without success, and never two at once).
    pub fn plan_growth(
        &mut self,
        want: usize,
        connected: usize,
        dialing: usize,
        max_attempts: u32,
        rng: &mut Rng,
        mut usable: impl FnMut(SocketAddr, Option<NodeId>) -> bool,
    ) -> Plan {
        let mut plan = Plan::default();
        let mut need = want.saturating_sub(connected + dialing);
        while need > 0 {
            let Some(c) = self.cache.take_random(rng, &mut usable) else { break };
            // Two cached entries may name one node under different addresses; dial it once.
            if plan.dials.iter().any(|(a, n)| *a == c.0 || (n.is_some() && *n == c.1)) {
                continue;
            }
            plan.dials.push(c);
            need -= 1;
        }
        if need > 0 && self.resolving.is_none() && self.resolve_attempts < max_attempts {
            plan.resolve = Some(ResolvePurpose::Join);
        }
        plan
    }
}

/// The neighbor to prune: the lowest utility among links whose utility is accurate
/// (ties go to the newest link, whose loss disturbs the mesh least). `None` if none is accurate.
pub fn least_useful(links: impl Iterator<Item = (LinkId, u32, bool)>) -> Option<LinkId> {
    links.filter(|(_, _, accurate)| *accurate).min_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).map(|(id, _, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], i))
    }

    #[test]
    fn grows_to_want_from_cache_then_asks_resolver() {
        let mut m = Maintainer::new(50, Instant::ZERO);
        let mut rng = Rng::from_seed(9);
        m.cache.insert(addr(1), None);
        let plan = m.plan_growth(3, 1, 0, 2, &mut rng, |_, _| true);
        assert_eq!(plan.dials.len(), 1);
        assert_eq!(plan.resolve, Some(ResolvePurpose::Join));
        // Enough in flight: nothing to do.
        let plan = m.plan_growth(3, 1, 2, 2, &mut rng, |_, _| true);
        assert!(plan.dials.is_empty() && plan.resolve.is_none());
        // A resolve already in flight is not repeated; exhausted attempts stop asking.
        m.resolving = Some((1, ResolvePurpose::Join, Instant::ZERO));
        assert!(m.plan_growth(3, 0, 0, 2, &mut rng, |_, _| true).resolve.is_none());
        m.resolving = None;
        m.resolve_attempts = 2;
        assert!(m.plan_growth(3, 0, 0, 2, &mut rng, |_, _| true).resolve.is_none());
    }

    #[test]
    fn unusable_candidates_are_skipped() {
        let mut m = Maintainer::new(50, Instant::ZERO);
        let mut rng = Rng::from_seed(9);
        for i in 1..=4 {
            m.cache.insert(addr(i), None);
        }
        let plan = m.plan_growth(2, 0, 0, 2, &mut rng, |a, _| a.port() >= 3);
        let mut ports: Vec<u16> = plan.dials.iter().map(|(a, _)| a.port()).collect();
        ports.sort();
        assert_eq!(ports, vec![3, 4]);
        assert!(m.cache.is_empty());
    }

    #[test]
    fn prunes_lowest_accurate_utility() {
        let links = vec![(LinkId(1), 100, true), (LinkId(2), 50, false), (LinkId(3), 70, true), (LinkId(4), 70, true)];
        assert_eq!(least_useful(links.into_iter()), Some(LinkId(4)));
        assert_eq!(least_useful(vec![(LinkId(2), 0, false)].into_iter()), None);
    }
}
