use core::hash::{BuildHasher, Hasher};
use core::time::Duration;

use crate::id::MessageId;
use crate::time::Instant;

/// The IDs of recently seen floods, bounded in time and in entries.
///
/// One hash table maps a 64-bit keyed fingerprint of each ID to the epoch it was seen in; an
/// epoch lasts `ttl`, and entries older than the previous epoch are dropped when a new epoch
/// starts, so an ID is remembered for at least `ttl` and at most `2 * ttl`. A new epoch also
/// starts early when the current one holds half of `capacity` IDs: the older half is then
/// forgotten before its time (counted in [`evicted_early`](Self::evicted_early), since a copy
/// arriving after that could be delivered twice) and the newest half stays known. A first copy
/// costs one probe of one table (the relay's hot path). The table is never iterated in a way
/// that affects the node's behaviour, so its order cannot leak into it.
///
/// Fingerprints are keyed with a secret from the node's randomness, so a peer cannot aim IDs at
/// one slot or make two IDs collide; an accidental collision (odds of about n / 2^64 per
/// message) would drop one message as a duplicate.
#[derive(Debug)]
pub struct SeenCache {
    table: hashbrown::HashMap<u64, u32, PassThrough>,
    key: KeyedIdHasher,
    epoch: u32,
    epoch_since: Instant,
    span: Duration,
    capacity: usize,
    newest_len: usize,
    older_len: usize,
    evicted_early: u64,
}

impl SeenCache {
    /// A cache remembering IDs for `ttl`, holding at most `capacity` IDs. `key` keys the
    /// fingerprints (take it from the node's seeded randomness).
    pub fn new(ttl: Duration, capacity: usize, key: [u64; 2], now: Instant) -> Self {
        SeenCache {
            table: hashbrown::HashMap::with_hasher(PassThrough),
            key: KeyedIdHasher { k0: key[0], k1: key[1] },
            epoch: 0,
            epoch_since: now,
            span: ttl.max(Duration::from_nanos(1)),
            capacity: capacity.max(2),
            newest_len: 0,
            older_len: 0,
            evicted_early: 0,
        }
    }

    fn fingerprint(&self, id: &MessageId) -> u64 {
        self.key.hash_one(id)
    }

    /// Records `id`; returns true if it was new (first copy), false if already seen.
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        self.rotate(now);
        let fp = self.fingerprint(&id);
        match self.table.entry(fp) {
            hashbrown::hash_map::Entry::Occupied(_) => return false,
            hashbrown::hash_map::Entry::Vacant(v) => {
                v.insert(self.epoch);
            }
        }
        self.newest_len += 1;
        if self.newest_len >= self.capacity.div_ceil(2) {
            self.evicted_early += self.older_len as u64;
            self.advance(now, false);
        }
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.table.contains_key(&self.fingerprint(id))
    }

    /// Starts new epochs whose time has come. Called on every insert and on the node's timer
    /// ticks, so an idle node also frees its memory.
    pub fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.epoch_since);
        if elapsed < self.span {
            return;
        }
        if elapsed >= self.span * 2 {
            self.advance(now, true);
            self.advance(now, true);
        } else {
            // Keep the schedule: the new epoch starts where the old one's span ended.
            let start = self.epoch_since + self.span;
            self.advance(start, true);
        }
    }

    /// Starts a new epoch at `start`: entries of the epoch before the previous one go.
    fn advance(&mut self, start: Instant, on_time: bool) {
        self.epoch = self.epoch.wrapping_add(1);
        let keep_from = self.epoch.wrapping_sub(1);
        if self.older_len > 0 {
            self.table.retain(|_, e| *e == keep_from);
        }
        self.older_len = self.newest_len;
        self.newest_len = 0;
        // On a time rotation the table is sized to the traffic it now holds, so an idle node
        // gives its memory back; an early rotation keeps it for the busy traffic.
        if on_time && self.table.capacity() > 2 * self.table.len().max(64) {
            self.table.shrink_to(self.table.len());
        }
        self.epoch_since = start;
    }

    /// IDs remembered.
    pub fn len(&self) -> usize {
        self.newest_len + self.older_len
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most IDs remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// IDs forgotten before their time because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// Heap bytes held by the table (approximate: slots plus control bytes).
    pub fn heap_bytes(&self) -> usize {
        self.table.capacity() * (core::mem::size_of::<(u64, u32)>() + 1)
    }
}

/// The fingerprint is already a keyed hash: use it as the table's hash as it is.
#[derive(Copy, Clone, Debug, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHash;
    fn build_hasher(&self) -> PassThroughHash {
        PassThroughHash(0)
    }
}

struct PassThroughHash(u64);

impl Hasher for PassThroughHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
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
        // Two keyed multiply-fold rounds (wyhash's constants). A round's product is zero only
        // when an input word equals a value derived from the secret key, which a peer cannot
        // aim at; otherwise distinct IDs collide with odds of about 2^-64.
        let (lo, hi) = (n as u64 ^ self.acc, (n >> 64) as u64);
        let a = folded_multiply(lo ^ self.k0 ^ 0xa076_1d64_78bd_642f, hi ^ self.k1 ^ 0xe703_7ed1_a0b4_28db);
        self.acc =
            folded_multiply(a ^ 0x8ebc_6af0_9c88_c6e3, (lo ^ hi).rotate_left(23) ^ self.k0 ^ 0x5899_65cc_7537_4cc3);
    }

    fn finish(&self) -> u64 {
        self.acc
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
    fn distinct_ids_get_distinct_fingerprints() {
        // Structured IDs (counters, zero halves, the key's own words) must not collide.
        let c = SeenCache::new(TTL, 1 << 20, [1, 2], Instant::ZERO);
        let mut fps = std::collections::BTreeSet::new();
        let mut n = 0;
        for i in 0..100_000u64 {
            let mixed = (u128::from(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)) << 64) | u128::from(i);
            for id in [id(i), MessageId((u128::from(i) << 64).to_le_bytes()), MessageId(mixed.to_le_bytes())] {
                fps.insert(c.fingerprint(&id));
                n += 1;
            }
        }
        // For i = 0 the three forms are the same ID; everything else is distinct.
        assert_eq!(fps.len(), n - 2);
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
