//! The simulated resolver: the core's resolver registry (`peerchannel_core::resolver::registry`,
//! the one the resolver service runs), wrapped with what the simulator knows and a service
//! would not.
//!
//! Members register when they open and unregister on a graceful leave. A crashed member's
//! record stays until its registration lifetime runs out after the crash, as it would at a
//! service that cannot know the member died; live members are treated as refreshing in time
//! (the registry's own lifetime is longer than any run).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use peerchannel_core::resolver::registry::{Registry as CoreRegistry, RegistryConfig};
use peerchannel_core::resolver::{ClientId, RegistrationId};
use peerchannel_core::{Instant, MeshId};

use crate::network::{host_addr, host_of};

/// Registered members of the simulated mesh.
#[derive(Debug)]
pub struct Registry {
    core: CoreRegistry,
    mesh: MeshId,
    /// Each registered node's registration.
    ids: BTreeMap<u32, RegistrationId>,
    /// Crashed members' records and when their lifetime ends.
    lingering: BinaryHeap<Reverse<(u64, u32)>>,
}

/// The client ID a node registers with (one per node index, so a restart is a new client).
fn client(node: u32) -> ClientId {
    let mut c = [0u8; 16];
    c[..4].copy_from_slice(&node.to_be_bytes());
    ClientId(c)
}

impl Registry {
    /// An empty registry for `mesh`; `secret` keys its registration IDs (fixed from the seed).
    pub fn new(mesh: MeshId, secret: [u8; 32]) -> Self {
        let cfg = RegistryConfig {
            // Records of live members must outlast any run (they would be refreshed).
            lifetime: Duration::from_secs(365 * 24 * 3600),
            max_records_per_mesh: usize::MAX,
            ..RegistryConfig::default()
        };
        Registry { core: CoreRegistry::new(cfg, secret), mesh, ids: BTreeMap::new(), lingering: BinaryHeap::new() }
    }

    /// Registers `node` listening on `host`.
    pub fn register(&mut self, now: u64, node: u32, host: u32) {
        if self.ids.contains_key(&node) {
            return;
        }
        let addr = host_addr(host);
        if let Ok(g) = self.core.register(Instant::from_nanos(now), addr.ip(), client(node), &self.mesh, &[addr]) {
            self.ids.insert(node, g.id);
        }
    }

    /// Removes `node`'s record (graceful leave, or its lifetime ended after a crash).
    pub fn unregister(&mut self, now: u64, node: u32) {
        if let Some(id) = self.ids.remove(&node) {
            let _ = self.core.unregister(Instant::from_nanos(now), client(node), &self.mesh, id);
        }
    }

    /// `node` crashed: its record lingers until `at`.
    pub fn expire_at(&mut self, node: u32, at: u64) {
        self.lingering.push(Reverse((at, node)));
    }

    /// Up to `k` distinct hosts of registered members other than `asker` (the registry's own
    /// random choice), after dropping crashed members whose lifetime ended.
    pub fn sample(&mut self, now: u64, asker: u32, k: usize, out: &mut Vec<u32>) {
        while let Some(&Reverse((at, node))) = self.lingering.peek() {
            if at > now {
                break;
            }
            self.lingering.pop();
            self.unregister(now, node);
        }
        out.clear();
        let found = self.core.resolve(Instant::from_nanos(now), client(asker), &self.mesh, k);
        out.extend(found.iter().filter_map(|addrs| host_of(*addrs.first()?)));
    }

    /// Records held (live members and crashed ones still lingering).
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.core.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::new(MeshId::new("sim").unwrap(), [7; 32])
    }

    #[test]
    fn samples_distinct_live_members_except_the_asker() {
        let mut r = registry();
        for n in 0..10 {
            r.register(0, n, 100 + n);
        }
        r.unregister(0, 3);
        r.expire_at(4, 50);
        let mut out = Vec::new();
        for _ in 0..200 {
            r.sample(60, 0, 5, &mut out);
            assert_eq!(out.len(), 5);
            let mut sorted = out.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5, "duplicates in {out:?}");
            assert!(!out.contains(&100), "the asker itself");
            assert!(!out.contains(&103), "an unregistered member");
            assert!(!out.contains(&104), "an expired member");
        }
        assert_eq!(r.len(), 8, "the expired record was dropped");
    }

    #[test]
    fn a_crashed_member_is_returned_until_it_expires() {
        let mut r = registry();
        r.register(0, 0, 10);
        r.register(0, 1, 11);
        r.expire_at(1, 100);
        let mut out = Vec::new();
        r.sample(99, 0, 3, &mut out);
        assert_eq!(out, vec![11]);
        r.sample(100, 0, 3, &mut out);
        assert!(out.is_empty());
        // A restart is a new node index on the same host: registered again.
        r.register(100, 2, 11);
        r.unregister(100, 0);
        r.sample(100, 5, 3, &mut out);
        assert_eq!(out, vec![11]);
    }
}
