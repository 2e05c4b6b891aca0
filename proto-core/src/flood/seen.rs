use core::time::Duration;

use smallvec::SmallVec;

use super::mix;
use crate::id::MessageId;
use crate::time::Instant;

/// The smallest table allocated, in slots.
const MIN_SLOTS: usize = 64;

/// IDs whose slots a [`Warmer`] reads in one tight loop.
pub const WARM_BATCH: usize = 32;

/// The slot bit that tells the two generations apart; the other 63 bits hold the fingerprint.
const GENERATION_BIT: u64 = 1 << 63;

/// The IDs of recently seen floods, bounded in time and in entries.
///
/// IDs belong to one of two generations: the newest, which takes new IDs, and the older one.
/// The older generation is dropped when its time is up, or early when the newest holds half of
/// `capacity` IDs (those dropped early are counted in [`evicted_early`](Self::evicted_early),
/// since a copy arriving after that could be delivered twice). So an ID is remembered for at
/// least `ttl` and at most `2 * ttl`. Nothing here is ever iterated in an order that could
/// leak into the node's behaviour.
///
/// Both generations share one open-addressing table of 64-bit slots: 63 bits of a keyed
/// fingerprint of the ID and one generation bit. A new ID then costs one probe, usually one
/// cache line: this is the forwarding hot path's only random memory access per message, and a
/// busy cache (a quarter of a million IDs by default) is far larger than the CPU's caches. A
/// generation is dropped by one sweep along the table, in place (see
/// `GenerationTable::drop_generation`), which happens at most once per half capacity of new
/// IDs.
///
/// The cost of fingerprints is that two IDs with the same fingerprint count as one: for random
/// IDs that happens to a given message with probability `len / 2^63` (about 3 × 10^-14 for a
/// full default cache), and a peer cannot aim at it without the node's secret key.
#[derive(Debug)]
pub struct SeenCache {
    table: GenerationTable,
    /// The newest generation: 0 or [`GENERATION_BIT`].
    newest: u64,
    /// IDs in the newest generation.
    newest_len: usize,
    /// When the newest generation started.
    newest_since: Instant,
    /// How long a generation takes new IDs, in nanoseconds (`u64::MAX`: beyond the time
    /// scale, never over). Nanoseconds, not a `Duration`: this sits among the fields every
    /// flood reads, and is half the size.
    span_nanos: u64,
    capacity: usize,
    evicted_early: u64,
    key: [u64; 2],
}

impl SeenCache {
    /// A cache remembering IDs for `ttl`, holding at most `capacity` IDs. `key` keys the
    /// fingerprints so a peer cannot choose IDs that collide (take it from the node's seeded
    /// randomness).
    pub fn new(ttl: Duration, capacity: usize, key: [u64; 2], now: Instant) -> Self {
        let span = ttl.max(Duration::from_nanos(1));
        SeenCache {
            table: GenerationTable::default(),
            newest: 0,
            newest_len: 0,
            newest_since: now,
            span_nanos: u64::try_from(span.as_nanos()).unwrap_or(u64::MAX),
            capacity: capacity.max(1),
            evicted_early: 0,
            key,
        }
    }

    /// Records `id`; returns true if it was new (first copy), false if already seen.
    #[inline]
    pub fn insert(&mut self, now: Instant, id: MessageId) -> bool {
        self.rotate(now);
        // One probe both checks and records.
        if !self.table.insert(self.fingerprint(&id), self.newest) {
            return false;
        }
        self.newest_len += 1;
        // Full: start a new generation early. The older one (at most half the capacity, all
        // older than the newest) is forgotten before its time; the newest half stays known, so
        // duplicates of recent messages are still caught.
        if self.newest_len >= self.capacity.div_ceil(2) {
            self.evicted_early += (self.table.len - self.newest_len) as u64;
            self.advance(now, false);
        }
        true
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.table.contains(self.fingerprint(id))
    }

    /// Reads the table slots where the IDs of a received batch's floods would be, and nothing
    /// more, before the batch is processed, so their cache misses overlap instead of stalling
    /// the hot path one by one. `feed` hands the IDs to the [`Warmer`] it is given. Has no
    /// effect on what the cache holds.
    #[inline]
    pub fn warm(&self, feed: impl FnOnce(&mut Warmer<'_>)) {
        let mut warmer = Warmer { seen: self, mask: self.table.mask(), homes: SmallVec::new(), warmed: false };
        feed(&mut warmer);
        // A lone miss has nothing to overlap with: a batch of one flood is not read.
        if warmer.warmed || warmer.homes.len() > 1 {
            warmer.touch();
        }
    }

    /// Drops the older generation when its time is up. Called on every insert and on the
    /// node's timer ticks, so an idle node also frees its memory.
    #[inline]
    pub fn rotate(&mut self, now: Instant) {
        // The common case, on every insert, in plain integers (inlined; the rest is not).
        let since = now.as_nanos().saturating_sub(self.newest_since.as_nanos());
        if since < self.span_nanos || self.span_nanos == u64::MAX {
            return;
        }
        self.rotate_due(now, since);
    }

    /// [`rotate`](Self::rotate) once a span has passed (`since` the newest generation began).
    #[cold]
    fn rotate_due(&mut self, now: Instant, since: u64) {
        // One span passed: the older generation expires. Two or more: everything does.
        if since >= self.span_nanos.saturating_mul(2) {
            self.advance(now, true);
            self.advance(now, true);
        } else {
            // Keep the schedule: the new generation starts where the old one's span ended.
            let start = Instant::from_nanos(self.newest_since.as_nanos() + self.span_nanos);
            self.advance(start, true);
        }
    }

    /// Drops the older generation and starts a new, empty newest one at `start`.
    fn advance(&mut self, start: Instant, on_time: bool) {
        let older = self.newest ^ GENERATION_BIT;
        self.table.drop_generation(older);
        self.newest = older;
        // On a time rotation the table is sized to the traffic of the last span, so an idle
        // node gives its memory back; an early rotation keeps it for the busy traffic.
        if on_time {
            self.table.fit(self.newest_len);
        }
        self.newest_len = 0;
        self.newest_since = start;
    }

    /// The keyed 63-bit fingerprint of an ID (never 0, which marks an empty slot).
    ///
    /// Two rounds of a bijective mixer, keyed by xor: IDs with the same high half never
    /// collide before the top bit is dropped (each step is one-to-one), and for the rest a
    /// collision is as rare as a random one. A plain multiply-and-fold hash is not enough here:
    /// it was fine for choosing table slots, but structured IDs made whole fingerprints collide.
    #[inline]
    fn fingerprint(&self, id: &MessageId) -> u64 {
        let (lo, hi) = id.halves();
        (mix(mix(lo ^ self.key[0]) ^ hi ^ self.key[1]) & !GENERATION_BIT).max(1)
    }

    /// IDs remembered.
    pub fn len(&self) -> usize {
        self.table.len
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.table.len == 0
    }

    /// The most IDs remembered at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// IDs forgotten before their time because the cache was full.
    pub fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.table.slots.capacity() * core::mem::size_of::<u64>()
    }
}

/// Reads the seen-cache slots of a batch's flood IDs as they are added, one tight loop per
/// [`WARM_BATCH`] of them (see [`SeenCache::warm`]).
///
/// Each ID's slot is worked out as the ID is added, and the slots are read in a separate tight
/// loop: a CPU keeps only so many instructions in flight past a load that misses, so the fewer
/// instructions between the loads, the more of them wait on memory at once. (Collecting the IDs
/// first and working out their slots in a second pass cost about 30 more instructions per flood
/// in the forwarding bench.)
#[derive(Debug)]
pub struct Warmer<'a> {
    seen: &'a SeenCache,
    mask: usize,
    /// Slots to read (a `SmallVec`: it does not zero its room first, as an array would).
    homes: SmallVec<[usize; WARM_BATCH]>,
    /// A full batch was read already.
    warmed: bool,
}

impl Warmer<'_> {
    /// Adds the ID of the batch's next flood.
    #[inline]
    pub fn add(&mut self, id: &MessageId) {
        self.homes.push(self.seen.fingerprint(id) as usize & self.mask);
        if self.homes.len() == WARM_BATCH {
            self.touch();
            self.warmed = true;
        }
    }

    /// Reads the slots of the IDs added since the last full batch (an empty table has none:
    /// its mask sends every ID past the end).
    fn touch(&mut self) {
        let slots = &self.seen.table.slots;
        core::hint::black_box(self.homes.iter().fold(0, |acc, at| acc ^ slots.get(*at).copied().unwrap_or(0)));
        self.homes.clear();
    }
}

/// A set of non-zero 63-bit fingerprints, each tagged with a generation bit: linear probing
/// over a power-of-two table kept at most half full, so a miss usually ends within the cache
/// line of its home slot. Entries leave only a generation at a time.
#[derive(Debug, Default)]
struct GenerationTable {
    /// Empty, or a power of two of slots; 0 marks a free slot.
    slots: Vec<u64>,
    len: usize,
}

impl GenerationTable {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn contains(&self, fp: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.mask();
        let mut i = fp as usize & mask;
        // Ends: the table is never full.
        loop {
            match self.slots[i] {
                0 => return false,
                s if s & !GENERATION_BIT == fp => return true,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Adds `fp` to `generation`; false if it was already there (in either generation, where
    /// it stays).
    #[inline]
    fn insert(&mut self, fp: u64, generation: u64) -> bool {
        if (self.len + 1) * 2 > self.slots.len() {
            self.resize((self.slots.len() * 2).max(MIN_SLOTS));
        }
        let mask = self.mask();
        let mut i = fp as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = fp | generation;
                    self.len += 1;
                    return true;
                }
                s if s & !GENERATION_BIT == fp => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Puts a tagged slot value where a probe from its home finds it (it is not present).
    fn place(&mut self, tagged: u64) {
        let mask = self.mask();
        let mut i = (tagged & !GENERATION_BIT) as usize & mask;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = tagged;
    }

    /// Rebuilds into a table of `slots` slots (a power of two, more than twice the entries).
    fn resize(&mut self, slots: usize) {
        let old = core::mem::replace(&mut self.slots, vec![0; slots]);
        for tagged in old.into_iter().filter(|s| *s != 0) {
            self.place(tagged);
        }
    }

    /// Removes every entry of `generation`, in place, in one pass along the table.
    ///
    /// The pass starts just after a free slot and goes once around. A dropped entry's slot is
    /// freed; a kept entry is taken out and placed again from its home. Its home lies between
    /// the starting free slot and its old position (nothing before it on the probe sequence
    /// was free), so the new place is found in the part already passed, at or before the old
    /// one, and the part already passed is never emptied again: every probe sequence stays
    /// unbroken. The accesses stay near the pass, so this streams through memory instead of
    /// jumping around it as a rebuild into a new table would.
    fn drop_generation(&mut self, generation: u64) {
        let Some(free) = self.slots.iter().position(|s| *s == 0) else { return };
        let mask = self.mask();
        for step in 1..=self.slots.len() {
            let i = (free + step) & mask;
            let tagged = self.slots[i];
            if tagged == 0 {
                continue;
            }
            self.slots[i] = 0;
            if tagged & GENERATION_BIT == generation {
                self.len -= 1;
            } else {
                self.place(tagged);
            }
        }
    }

    /// Gives memory back when the table is much larger than `expected` entries need (room for
    /// twice that many at most half full, with slack so a steady load does not resize back and
    /// forth).
    fn fit(&mut self, expected: usize) {
        let needed = (expected.max(self.len) * 4).next_power_of_two().max(MIN_SLOTS);
        if self.slots.len() > 2 * needed {
            if self.len == 0 {
                self.slots = Vec::new();
            } else {
                self.resize(needed);
            }
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
            c.warm(|w| {
                w.add(&id(i));
                w.add(&id(i + 1));
            });
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
        let mut s = GenerationTable::default();
        assert!(s.insert(1, 0));
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

    /// The cache against a plain model of its rules (two sets of IDs, rotated by time and by
    /// fullness), over random inserts and time steps: every answer, the size and the early
    /// eviction count agree. IDs come from a small range so duplicates are common, and the
    /// capacity is small so generations are dropped often, by time and early, with the table
    /// full of probe clusters that the in-place sweep must keep intact.
    #[test]
    fn behaves_like_two_rotating_sets() {
        use proptest::prelude::*;
        use std::collections::HashSet;
        let ops = proptest::collection::vec((0u64..600, 0u64..3_000), 1..3_000);
        proptest!(ProptestConfig::with_cases(64), |(ops in ops, capacity in 1usize..400)| {
            let ttl = Duration::from_secs(10);
            let mut c = SeenCache::new(ttl, capacity, [9, 10], Instant::ZERO);
            let (mut older, mut newest) = (HashSet::new(), HashSet::new());
            let (mut since, mut evicted) = (Instant::ZERO, 0u64);
            let mut now = Instant::ZERO;
            for (n, step_ms) in ops {
                now = now + Duration::from_millis(step_ms);
                // The model's rotation by time.
                let gone = now.saturating_duration_since(since);
                if gone >= ttl * 2 {
                    older.clear();
                    newest.clear();
                    since = now;
                } else if gone >= ttl {
                    older = core::mem::take(&mut newest);
                    since = since + ttl;
                }
                let new = !older.contains(&n) && newest.insert(n);
                if new && newest.len() >= capacity.div_ceil(2) {
                    evicted += older.len() as u64;
                    older = core::mem::take(&mut newest);
                    since = now;
                }
                prop_assert_eq!(c.insert(now, id(n)), new, "insert {} at {:?}", n, now);
                prop_assert_eq!(c.len(), older.len() + newest.len());
                prop_assert_eq!(c.evicted_early(), evicted);
                for probe in [n, n ^ 1, n + 7] {
                    prop_assert_eq!(c.contains(&id(probe)), older.contains(&probe) || newest.contains(&probe));
                }
            }
        });
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
