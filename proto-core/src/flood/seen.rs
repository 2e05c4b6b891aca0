use core::hash::{BuildHasher, Hasher};
use core::time::Duration;

use hashbrown::HashSet;

use crate::id::MessageId;
use crate::time::Instant;

/// Buckets kept: an ID is remembered for at least `ttl` (one full bucket span) and at most
/// `2 * ttl`. Two buckets keep a first copy's cost at two probes (the older bucket, then an
/// insert into the newer), which is what the forwarding hot path pays per message.
const BUCKETS: usize = 2;

/// The IDs of recently seen floods, bounded in time and in entries.
///
/// IDs go into the newer of two time buckets; the older bucket is dropped when its time is
/// up, or early when the newer one holds half of `capacity` IDs (those dropped early are
/// counted in [`evicted_early`](Self::evicted_early), since a copy arriving after that could be
/// delivered twice). Lookups touch at most two hash
/// sets; the sets are never iterated, so their order cannot leak into the node's behaviour.
#[derive(Debug)]
pub struct SeenCache {
    buckets: [HashSet<MessageId, KeyedIdHasher>; BUCKETS],
    /// Index of the newest bucket.
    newest: usize,
    /// When the newest bucket started.
    newest_since: Instant,
    span: Duration,
    capacity: usize,
    len: usize,
    evicted_early: u64,
}

impl SeenCache {
    /// A cache remembering IDs for `ttl`, holding at most `capacity` IDs. `key` keys the hash
    /// so a peer cannot choose IDs that collide (take it from the node's seeded randomness).
    pub fn new(ttl: Duration, capacity: usize, key: [u64; 2], now: Instant) -> Self {
        let h = KeyedIdHasher { k0: key[0], k1: key[1] };
        SeenCache {
            buckets: core::array::from_fn(|_| HashSet::with_hasher(h)),
            newest: 0,
            newest_since: now,
            span: (ttl / (BUCKETS as u32 - 1)).max(Duration::from_nanos(1)),
            capacity: capacity.max(1),
            len: 0,
            evicted_early: 0,
        }
    }

    /// Records `id`; returns true if it was new (first copy), false if already seen.
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        self.rotate(now);
        let older = (self.newest + 1) % BUCKETS;
        if self.buckets[older].contains(&id) {
            return false;
        }
        // One probe both checks and records.
        if !self.buckets[self.newest].insert(id) {
            return false;
        }
        self.len += 1;
        // Full: start a new bucket early. The older bucket (at most half the capacity, all
        // older than the newest) is forgotten before its time; the newest half stays known, so
        // duplicates of recent messages are still caught.
        if self.buckets[self.newest].len() >= self.capacity.div_ceil(2) {
            self.evicted_early += self.buckets[older].len() as u64;
            self.advance(now, false);
        }
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.buckets.iter().any(|b| b.contains(id))
    }

    /// Drops buckets whose time is up. Called on every insert and on the node's timer ticks,
    /// so an idle node also frees its memory.
    pub fn rotate(&mut self, now: Instant) {
        if now.saturating_duration_since(self.newest_since) < self.span {
            return;
        }
        // One span passed: the older bucket expires. Two or more: everything does.
        if now.saturating_duration_since(self.newest_since) >= self.span * 2 {
            self.advance(now, true);
            self.advance(now, true);
        } else {
            // Keep the schedule: the new bucket starts where the old one's span ended.
            let start = self.newest_since + self.span;
            self.advance(start, true);
        }
    }

    /// Makes the older bucket the new, empty newest one, starting at `start`.
    fn advance(&mut self, start: Instant, on_time: bool) {
        let filled = self.buckets[self.newest].len();
        self.newest = (self.newest + 1) % BUCKETS;
        let b = &mut self.buckets[self.newest];
        self.len -= b.len();
        b.clear();
        // On a time rotation the table is sized to the traffic of the last span, so an idle
        // node gives its memory back; an early rotation keeps it for the busy traffic.
        if on_time && b.capacity() > 2 * filled.max(64) {
            b.shrink_to(filled);
        }
        self.newest_since = start;
    }

    /// IDs remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most IDs remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// IDs forgotten before their time because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// Heap bytes held by the hash tables (approximate: table slots plus control bytes).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.iter().map(|b| b.capacity() * (core::mem::size_of::<MessageId>() + 1)).sum()
    }
}

/// A keyed hash for message IDs. IDs are random, but a hostile peer may pick them; the secret
/// key keeps it from aiming many IDs at one slot.
#[derive(Copy, Clone, Debug)]
struct KeyedIdHasher {
    k0: u64,
    k1: u64,
}

impl BuildHasher for KeyedIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { k0: self.k0, k1: self.k1, acc: 0 }
    }
}

struct IdHasher {
    k0: u64,
    k1: u64,
    acc: u64,
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut lo = [0u8; 8];
            let mut hi = [0u8; 8];
            let (a, b) = chunk.split_at(chunk.len().min(8));
            lo[..a.len()].copy_from_slice(a);
            hi[..b.len()].copy_from_slice(b);
            let x = u64::from_le_bytes(lo) ^ self.k0 ^ self.acc;
            let y = u64::from_le_bytes(hi) ^ self.k1;
            self.acc = folded_multiply(x, y);
        }
    }

    fn write_u128(&mut self, n: u128) {
        let x = (n as u64) ^ self.k0 ^ self.acc;
        let y = ((n >> 64) as u64) ^ self.k1;
        self.acc = folded_multiply(x, y);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.acc ^ self.k1, 0x9E37_79B9_7F4A_7C15 ^ self.k0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> MessageId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_le_bytes());
        MessageId(b)
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn second_copy_is_a_duplicate() {
        let mut c = SeenCache::new(TTL, 100, [1, 2], Instant::ZERO);
        assert!(c.insert(Instant::ZERO, id(1)));
        assert!(!c.insert(Instant::ZERO, id(1)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn ids_live_at_least_ttl_and_expire_by_twice_ttl() {
        let mut c = SeenCache::new(TTL, 100, [1, 2], Instant::ZERO);
        let t0 = Instant::from_millis(59_999);
        assert!(c.insert(t0, id(7)));
        // Still remembered a full TTL later.
        c.rotate(t0 + TTL);
        assert!(c.contains(&id(7)));
        assert!(!c.insert(t0 + TTL, id(7)));
        // Gone once two TTLs have passed since its bucket began.
        c.rotate(Instant::ZERO + TTL * 2);
        assert!(!c.contains(&id(7)));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_long_gap_clears_everything_at_once() {
        let mut c = SeenCache::new(TTL, 100, [1, 2], Instant::ZERO);
        c.insert(Instant::ZERO, id(1));
        c.rotate(Instant::from_millis(10_000_000_000));
        assert!(c.is_empty());
        assert!(c.insert(Instant::from_millis(10_000_000_001), id(1)));
    }

    #[test]
    fn capacity_is_a_hard_cap_and_the_newest_half_stays_known() {
        let mut c = SeenCache::new(TTL, 1000, [3, 4], Instant::ZERO);
        let mut t = Instant::ZERO;
        for i in 0..10_000u64 {
            t = t + Duration::from_millis(1);
            assert!(c.insert(t, id(i)));
            assert!(c.len() <= 1000);
            // However full the cache, the last 500 IDs are always still known.
            for back in [0, 1, 250, 499] {
                if i >= back {
                    assert!(c.contains(&id(i - back)), "forgot {} at {i}", i - back);
                }
            }
        }
        assert!(c.evicted_early() > 0);
    }

    #[test]
    fn one_million_entries_fit_in_64_mib() {
        let mut c = SeenCache::new(TTL, 1 << 20, [5, 6], Instant::ZERO);
        for i in 0..1_000_000u64 {
            c.insert(Instant::ZERO, id(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        }
        assert_eq!(c.len(), 1_000_000);
        let mib = c.heap_bytes() as f64 / (1024.0 * 1024.0);
        assert!(mib <= 64.0, "{mib} MiB");
    }
}
