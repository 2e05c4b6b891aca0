use core::time::Duration;

use super::mix;
use crate::id::MessageId;
use crate::time::Instant;

/// Buckets kept: an ID is remembered for at least `ttl` (one full bucket span) and at most
/// `2 * ttl`. Two buckets keep a first copy's cost at two probes (the older bucket, then an
/// insert into the newer), which is what the forwarding hot path pays per message.
const BUCKETS: usize = 2;

/// The smallest table allocated, in slots.
const MIN_SLOTS: usize = 64;

/// The IDs of recently seen floods, bounded in time and in entries.
///
/// IDs go into the newer of two time buckets; the older bucket is dropped when its time is
/// up, or early when the newer one holds half of `capacity` IDs (those dropped early are
/// counted in [`evicted_early`](Self::evicted_early), since a copy arriving after that could be
/// delivered twice). The buckets are never iterated, so their order cannot leak into the
/// node's behaviour.
///
/// Each bucket is an open-addressing table of 64-bit keyed fingerprints of the IDs, not of the
/// IDs themselves: half the bytes of a table of IDs, so a busy cache (a quarter of a million
/// IDs by default) takes half the cache lines, and a lookup is one read of one line in the
/// common case. The cost is that two IDs with the same fingerprint count as one: for random
/// IDs that happens to a given message with probability `len / 2^64` (below 10^-13 for
/// a full default cache), and a peer cannot aim at it without the node's secret key.
#[derive(Debug)]
pub struct SeenCache {
    buckets: [FingerprintSet; BUCKETS],
    /// Index of the newest bucket.
    newest: usize,
    /// When the newest bucket started.
    newest_since: Instant,
    span: Duration,
    capacity: usize,
    len: usize,
    evicted_early: u64,
    key: [u64; 2],
}

impl SeenCache {
    /// A cache remembering IDs for `ttl`, holding at most `capacity` IDs. `key` keys the
    /// fingerprints so a peer cannot choose IDs that collide (take it from the node's seeded
    /// randomness).
    pub fn new(ttl: Duration, capacity: usize, key: [u64; 2], now: Instant) -> Self {
        SeenCache {
            buckets: Default::default(),
            newest: 0,
            newest_since: now,
            span: (ttl / (BUCKETS as u32 - 1)).max(Duration::from_nanos(1)),
            capacity: capacity.max(1),
            len: 0,
            evicted_early: 0,
            key,
        }
    }

    /// Records `id`; returns true if it was new (first copy), false if already seen.
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        self.rotate(now);
        let fp = self.fingerprint(&id);
        let older = (self.newest + 1) % BUCKETS;
        if self.buckets[older].contains(fp) {
            return false;
        }
        // One probe both checks and records.
        if !self.buckets[self.newest].insert(fp) {
            return false;
        }
        self.len += 1;
        // Full: start a new bucket early. The older bucket (at most half the capacity, all
        // older than the newest) is forgotten before its time; the newest half stays known, so
        // duplicates of recent messages are still caught.
        if self.buckets[self.newest].len >= self.capacity.div_ceil(2) {
            self.evicted_early += self.buckets[older].len as u64;
            self.advance(now, false);
        }
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        let fp = self.fingerprint(id);
        self.buckets.iter().any(|b| b.contains(fp))
    }

    /// Reads the table slots where `id` would be, and nothing more: called for every flood of
    /// a received batch before the batch is processed, so the cache misses of many IDs overlap
    /// instead of stalling the hot path one by one. Has no effect on what the cache holds.
    pub fn warm(&self, id: &MessageId) {
        let fp = self.fingerprint(id);
        let touched = self.buckets.iter().fold(0, |acc, b| acc ^ b.slot_at_home(fp));
        core::hint::black_box(touched);
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
        let filled = self.buckets[self.newest].len;
        self.newest = (self.newest + 1) % BUCKETS;
        let b = &mut self.buckets[self.newest];
        self.len -= b.len;
        // On a time rotation the table is sized to the traffic of the last span, so an idle
        // node gives its memory back; an early rotation keeps it for the busy traffic.
        b.clear(on_time.then_some(filled));
        self.newest_since = start;
    }

    /// The keyed 64-bit fingerprint of an ID (never 0, which marks an empty slot).
    ///
    /// Two rounds of a bijective mixer, keyed by xor: IDs with the same high half never
    /// collide (each step is one-to-one), and for the rest a collision is as rare as a random
    /// one. A plain multiply-and-fold hash is not enough here: it was fine for choosing table
    /// slots, but structured IDs made whole fingerprints collide.
    fn fingerprint(&self, id: &MessageId) -> u64 {
        let (lo, hi) = id.0.split_at(8);
        let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default());
        mix(mix(lo ^ self.key[0]) ^ hi ^ self.key[1]).max(1)
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

    /// Heap bytes held by the tables.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.iter().map(|b| b.slots.capacity() * core::mem::size_of::<u64>()).sum()
    }
}

/// A set of non-zero fingerprints: linear probing over a power-of-two table kept at most half
/// full, so a miss usually ends within the cache line of its home slot. Nothing is ever
/// removed one by one (a bucket is cleared whole), so no tombstones are needed.
#[derive(Debug, Default)]
struct FingerprintSet {
    /// Empty, or a power of two of slots; 0 marks a free slot.
    slots: Vec<u64>,
    len: usize,
}

impl FingerprintSet {
    fn contains(&self, fp: u64) -> bool {
        let mask = match self.slots.len() {
            0 => return false,
            n => n - 1,
        };
        let mut i = fp as usize & mask;
        // Ends: the table is never full.
        loop {
            match self.slots[i] {
                0 => return false,
                s if s == fp => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `fp`; false if it was already there.
    fn insert(&mut self, fp: u64) -> bool {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = fp as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = fp;
                    self.len += 1;
                    return true;
                }
                s if s == fp => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let bigger = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = core::mem::replace(&mut self.slots, vec![0; bigger]);
        self.len = 0;
        for fp in old.into_iter().filter(|fp| *fp != 0) {
            self.insert(fp);
        }
    }

    /// Empties the set. With `fit_to`, a table much larger than that many entries need is
    /// given back; without, the table is kept.
    fn clear(&mut self, fit_to: Option<usize>) {
        let needed = fit_to.map(|n| (n * 2).next_power_of_two().max(MIN_SLOTS));
        match needed {
            Some(n) if self.slots.len() > 2 * n => self.slots = Vec::new(),
            _ => self.slots.fill(0),
        }
        self.len = 0;
    }

    /// The slot `fp` probes first (0 if the table is empty).
    fn slot_at_home(&self, fp: u64) -> u64 {
        match self.slots.len() {
            0 => 0,
            n => self.slots[fp as usize & (n - 1)],
        }
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
    fn tables_grow_keeping_every_id_and_an_idle_cache_gives_memory_back() {
        let mut c = SeenCache::new(TTL, 1 << 20, [7, 8], Instant::ZERO);
        for i in 0..20_000u64 {
            assert!(c.insert(Instant::ZERO, id(i)));
        }
        // Every ID survived the tables' growth, and warming changes nothing.
        for i in 0..20_000u64 {
            c.warm(&id(i));
            assert!(c.contains(&id(i)), "lost {i}");
            assert!(!c.insert(Instant::ZERO, id(i)));
        }
        assert!(!c.contains(&id(20_000)));
        assert_eq!(c.len(), 20_000);
        let busy = c.heap_bytes();
        assert!(busy >= 20_000 * 16, "{busy}");
        // A quiet span, then another: the full tables are given back.
        c.rotate(Instant::ZERO + TTL);
        c.insert(Instant::ZERO + TTL, id(1 << 40));
        c.rotate(Instant::ZERO + TTL * 2);
        assert_eq!(c.len(), 1);
        assert!(c.heap_bytes() <= 2 * MIN_SLOTS * 8, "{}", c.heap_bytes());
    }

    #[test]
    fn the_fingerprint_depends_on_the_key_and_is_never_zero() {
        let a = SeenCache::new(TTL, 100, [1, 2], Instant::ZERO);
        let b = SeenCache::new(TTL, 100, [3, 4], Instant::ZERO);
        assert_ne!(a.fingerprint(&id(5)), b.fingerprint(&id(5)));
        assert_ne!(a.fingerprint(&id(5)), a.fingerprint(&id(6)));
        // The one input that could map to 0 maps to 1 instead.
        let mut s = FingerprintSet::default();
        assert!(s.insert(1));
        assert!(s.contains(1) && !s.contains(2));
    }

    #[test]
    fn structured_ids_do_not_collide() {
        // IDs with patterns in both halves (a weak fingerprint once made some of these collide
        // and so lose a message as a false duplicate).
        for key in [[0, 0], [1, 2], [u64::MAX, 0x9E37_79B9_7F4A_7C15]] {
            let mut c = SeenCache::new(TTL, 1 << 20, key, Instant::ZERO);
            for n in 0..200_000u64 {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
                b[8..].copy_from_slice(&(n << 3).to_le_bytes());
                assert!(c.insert(Instant::ZERO, MessageId(b)), "false duplicate at {n} with key {key:?}");
                b[..8].copy_from_slice(&n.to_be_bytes());
                b[8..].copy_from_slice(&(!n).to_le_bytes());
                assert!(c.insert(Instant::ZERO, MessageId(b)), "false duplicate at {n}' with key {key:?}");
            }
        }
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
