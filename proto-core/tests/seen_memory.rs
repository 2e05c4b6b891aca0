//! The seen cache's real heap use, measured with a counting allocator: one million message IDs
//! fit in 64 MiB, and the cache gives its memory back once the IDs expire.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use peerchannel_core::flood::SeenCache;
use peerchannel_core::{Instant, MessageId};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards to the system allocator and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // Old and new blocks coexist during the move: count the new one first.
        grew(new);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn id(n: u64) -> MessageId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    b[8..].copy_from_slice(&n.to_le_bytes());
    MessageId(b)
}

#[test]
fn one_million_ids_fit_in_64_mib_and_memory_returns_after_expiry() {
    let ttl = Duration::from_secs(60);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut c = SeenCache::new(ttl, 2_000_000, [1, 2], Instant::ZERO);
    for i in 0..1_000_000u64 {
        assert!(c.insert(Instant::ZERO, id(i)));
    }
    assert_eq!(c.len(), 1_000_000);
    let held = LIVE.load(Ordering::Relaxed) - base;
    // Includes the moments a table is rehashed into a larger one (both alive).
    let peak = PEAK.load(Ordering::Relaxed) - base;
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    println!("seen cache: 1,000,000 IDs hold {:.1} MiB (peak {:.1} MiB while growing)", mib(held), mib(peak));
    assert!(mib(peak) <= 64.0, "peak {:.1} MiB", mib(peak));
    // Two idle spans later every ID has expired and the tables have shrunk.
    c.rotate(Instant::ZERO + ttl * 3);
    c.rotate(Instant::ZERO + ttl * 5);
    assert_eq!(c.len(), 0);
    let after = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    println!("after expiry: {:.3} MiB", mib(after));
    assert!(after < 64 * 1024, "{after} bytes still held");
}
