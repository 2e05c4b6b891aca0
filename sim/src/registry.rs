//! The simulated resolver's registry of mesh members.
//!
//! The simulator keeps this stand-in rather than the core's `resolver::registry::Registry`
//! (written before that existed; moving to it is still open): it has the behaviour a resolver
//! service has: members register when they
//! open, a graceful leave unregisters, and a crashed member's entry stays until its lifetime
//! runs out (the service cannot know it died). Resolve returns distinct random entries.

use peerchannel_core::Rng;

/// Marks "no position".
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Entry {
    node: u32,
    host: u32,
    /// Entries of live members never expire; a crash sets this.
    expires: u64,
}

/// Registered members, sampled uniformly at random in O(k) per request.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Vec<Entry>,
    /// Position of each node's entry in `entries`, `NONE` when not registered.
    pos: Vec<u32>,
}

impl Registry {
    /// Registers `node` on `host`.
    pub fn register(&mut self, node: u32, host: u32) {
        let n = node as usize;
        if self.pos.len() <= n {
            self.pos.resize(n + 1, NONE);
        }
        if self.pos[n] != NONE {
            return;
        }
        self.pos[n] = self.entries.len() as u32;
        self.entries.push(Entry { node, host, expires: u64::MAX });
    }

    /// Removes `node`'s entry (graceful leave).
    pub fn unregister(&mut self, node: u32) {
        let Some(&p) = self.pos.get(node as usize) else { return };
        if p == NONE {
            return;
        }
        self.remove_at(p as usize);
    }

    /// `node` crashed: its entry lingers until `at`.
    pub fn expire_at(&mut self, node: u32, at: u64) {
        if let Some(&p) = self.pos.get(node as usize) {
            if let Some(e) = self.entries.get_mut(p as usize) {
                e.expires = at;
            }
        }
    }

    fn remove_at(&mut self, p: usize) {
        let gone = self.entries.swap_remove(p);
        self.pos[gone.node as usize] = NONE;
        if let Some(moved) = self.entries.get(p) {
            self.pos[moved.node as usize] = p as u32;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.entries.swap(a, b);
        self.pos[self.entries[a].node as usize] = a as u32;
        self.pos[self.entries[b].node as usize] = b as u32;
    }

    /// Up to `k` distinct random hosts of registered members other than `asker`, dropping
    /// expired entries met on the way.
    pub fn sample(&mut self, now: u64, asker: u32, k: usize, rng: &mut Rng, out: &mut Vec<u32>) {
        out.clear();
        // Partial Fisher-Yates over the entries: positions [0, i) hold the chosen ones.
        let mut i = 0;
        while out.len() < k && i < self.entries.len() {
            let j = i + rng.below(self.entries.len() - i);
            let e = self.entries[j];
            if e.expires <= now {
                self.remove_at(j);
                continue;
            }
            self.swap(i, j);
            i += 1;
            if e.node != asker {
                out.push(e.host);
            }
        }
    }

    /// Entries held (expired ones not yet met included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_distinct_live_members_except_the_asker() {
        let mut r = Registry::default();
        for n in 0..10 {
            r.register(n, 100 + n);
        }
        r.unregister(3);
        r.expire_at(4, 50);
        let mut rng = Rng::from_seed(1);
        let mut out = Vec::new();
        for _ in 0..200 {
            r.sample(60, 0, 5, &mut rng, &mut out);
            assert_eq!(out.len(), 5);
            let mut sorted = out.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "duplicates in {out:?}");
            assert!(!out.contains(&100), "the asker itself");
            assert!(!out.contains(&103), "an unregistered member");
            assert!(!out.contains(&104), "an expired member");
        }
        assert_eq!(r.len(), 8, "the expired entry was dropped when met");
    }

    #[test]
    fn a_crashed_member_is_returned_until_it_expires() {
        let mut r = Registry::default();
        r.register(0, 10);
        r.register(1, 11);
        r.expire_at(1, 100);
        let mut rng = Rng::from_seed(2);
        let mut out = Vec::new();
        r.sample(99, 0, 3, &mut rng, &mut out);
        assert_eq!(out, vec![11]);
        r.sample(100, 0, 3, &mut rng, &mut out);
        assert!(out.is_empty());
        // Re-registering after removal works, and positions stay consistent.
        r.register(1, 12);
        r.unregister(0);
        r.sample(100, 5, 3, &mut rng, &mut out);
        assert_eq!(out, vec![12]);
    }
}
