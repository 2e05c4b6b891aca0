//! The resolver registry's heap per registration, measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use peerchannel_core::resolver::registry::{Registry, RegistryConfig};
use peerchannel_core::resolver::ClientId;
use peerchannel_core::{Instant, MeshId};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_registration_costs_a_few_hundred_bytes() {
    let meshes: Vec<MeshId> = (0..100).map(|i| MeshId::new(&format!("mesh{i}")).unwrap()).collect();
    let base = LIVE.load(Ordering::Relaxed);
    let mut r = Registry::new(RegistryConfig::default(), [3; 32]);
    const N: u32 = 100_000;
    for i in 0..N {
        let ip = IpAddr::from(i.to_be_bytes());
        let addr = SocketAddr::new(IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]), 7000);
        let mut client = [0u8; 16];
        client[..4].copy_from_slice(&i.to_be_bytes());
        r.register(Instant::ZERO, ip, ClientId(client), &meshes[(i % 100) as usize], &[addr]).unwrap();
    }
    let per = (LIVE.load(Ordering::Relaxed) - base) as f64 / f64::from(N);
    println!("registry: {per:.0} bytes of heap per registration ({N} registrations, 100 meshes, one address each)");
    assert!(per < 1024.0, "{per} bytes per registration");
}
