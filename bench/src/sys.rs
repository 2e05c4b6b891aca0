//! What the process costs: heap (a counting global allocator), CPU time (`getrusage`) and peak
//! resident memory (`VmHWM`).
//!
//! The heap is counted process-wide (every node of a run shares the process), with one relaxed
//! atomic add per allocation and free; the peak under load is sampled by [`HeapSampler`] rather
//! than tracked on every allocation, so the hot path pays for one atomic only.
//!
//! This is the only module of the harness with unsafe code: a global allocator must be an
//! `unsafe impl GlobalAlloc`, and `getrusage` is a libc call. Both follow the counting allocator
//! of `proto-core/tests/memory_under_attack.rs`.
#![allow(unsafe_code)] // the counting allocator and getrusage; the rest of the harness is safe

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Counting;

/// Bytes allocated minus bytes freed, by every thread of the process.
static NET: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the bookkeeping is one
// atomic add on a static (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            NET.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            NET.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        NET.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            NET.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Heap bytes the process holds now.
pub fn heap() -> isize {
    NET.load(Ordering::Relaxed)
}

/// Samples [`heap`] every millisecond on its own thread and keeps the largest value seen.
pub struct HeapSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicIsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeapSampler {
    /// Starts sampling.
    pub fn start() -> HeapSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicIsize::new(heap()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(heap(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        HeapSampler { stop, peak, thread: Some(thread) }
    }

    /// Stops sampling; the largest heap seen.
    pub fn finish(mut self) -> isize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed).max(heap())
    }
}

/// CPU time (user + system) the whole process has used, from `getrusage(RUSAGE_SELF)`.
pub fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable rusage; getrusage only writes into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and it was zeroed before anyway).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Peak resident set size of the process (`VmHWM` in /proc/self/status), in bytes.
pub fn peak_rss() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Resets the peak resident set size to the current one (writes 5 to /proc/self/clear_refs).
/// False where the kernel does not allow it: `VmHWM` is then the peak since the process began.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}
