//! Property test of the resolver registry: random sequences of operations and clock jumps keep
//! its quotas, never return an expired record or the same record twice, never return the asker.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use peerchannel_core::resolver::registry::{Registry, RegistryConfig};
use peerchannel_core::resolver::{ClientId, RegistrationId};
use peerchannel_core::{Instant, MeshId};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Register { client: u8, mesh: u8, source: u8, port: u16 },
    Update { client: u8, mesh: u8, which: u8, port: u16 },
    Refresh { client: u8, mesh: u8, which: u8 },
    Unregister { client: u8, mesh: u8, which: u8 },
    Resolve { client: u8, mesh: u8, max: u8 },
    Advance { secs: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..3, 0u8..4, 1u16..50).prop_map(|(client, mesh, source, port)| Op::Register { client, mesh, source, port }),
        1 => (0u8..6, 0u8..3, any::<u8>(), 1u16..50).prop_map(|(client, mesh, which, port)| Op::Update { client, mesh, which, port }),
        2 => (0u8..6, 0u8..3, any::<u8>()).prop_map(|(client, mesh, which)| Op::Refresh { client, mesh, which }),
        1 => (0u8..6, 0u8..3, any::<u8>()).prop_map(|(client, mesh, which)| Op::Unregister { client, mesh, which }),
        3 => (0u8..6, 0u8..3, 0u8..10).prop_map(|(client, mesh, max)| Op::Resolve { client, mesh, max }),
        2 => (0u16..400).prop_map(|secs| Op::Advance { secs }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_registry_keeps_its_promises(ops in proptest::collection::vec(op(), 1..150)) {
        let cfg = RegistryConfig {
            lifetime: Duration::from_secs(120),
            max_meshes: 2,
            max_records_per_mesh: 5,
            max_records_per_source: 4,
            max_addresses_per_record: 2,
            max_resolve: 4,
            control_shape: false,
        };
        let mut r = Registry::new(cfg.clone(), [9; 32]);
        let meshes: Vec<MeshId> = (0..3).map(|i| MeshId::new(&format!("m{i}")).unwrap()).collect();
        let mut now = Instant::ZERO;
        // Our model: granted registrations with owner, mesh, address and expiry.
        let mut model: BTreeMap<RegistrationId, (u8, u8, SocketAddr, Instant)> = BTreeMap::new();
        let addr = |client: u8, port: u16| SocketAddr::from(([10, 0, 0, client + 1], port));
        for op in ops {
            model.retain(|_, v| v.3 > now);
            match op {
                Op::Register { client, mesh, source, port } => {
                    let a = addr(client, port);
                    if let Ok(g) = r.register(now, IpAddr::from([192, 168, 0, source]), ClientId([client; 16]), &meshes[usize::from(mesh)], &[a]) {
                        model.insert(g.id, (client, mesh, a, now + g.lifetime));
                    }
                }
                Op::Update { client, mesh, which, port } => {
                    let ids: Vec<_> = model.keys().copied().collect();
                    let Some(id) = ids.get(usize::from(which) % ids.len().max(1)).copied() else { continue };
                    let a = addr(client, port);
                    let own = model.get(&id).is_some_and(|v| v.0 == client && v.1 == mesh);
                    if let Ok(g) = r.update(now, IpAddr::from([192, 168, 0, client]), ClientId([client; 16]), &meshes[usize::from(mesh)], id, &[a]) {
                        // Only the holder updates in place; anyone else gets a new record.
                        prop_assert_eq!(g.id == id, own);
                        model.insert(g.id, (client, mesh, a, now + g.lifetime));
                    }
                }
                Op::Refresh { client, mesh, which } => {
                    let ids: Vec<_> = model.keys().copied().collect();
                    let Some(id) = ids.get(usize::from(which) % ids.len().max(1)).copied() else { continue };
                    let own = model.get(&id).is_some_and(|v| v.0 == client && v.1 == mesh);
                    let res = r.refresh(now, ClientId([client; 16]), &meshes[usize::from(mesh)], id);
                    prop_assert_eq!(res.is_ok(), own, "only the holder may refresh");
                    if let (Ok(l), Some(v)) = (res, model.get_mut(&id)) {
                        v.3 = now + l;
                    }
                }
                Op::Unregister { client, mesh, which } => {
                    let ids: Vec<_> = model.keys().copied().collect();
                    let Some(id) = ids.get(usize::from(which) % ids.len().max(1)).copied() else { continue };
                    let own = model.get(&id).is_some_and(|v| v.0 == client && v.1 == mesh);
                    let res = r.unregister(now, ClientId([client; 16]), &meshes[usize::from(mesh)], id);
                    prop_assert_eq!(res.is_ok(), own, "only the holder may unregister");
                    if own {
                        model.remove(&id);
                    }
                }
                Op::Resolve { client, mesh, max } => {
                    let got = r.resolve(now, ClientId([client; 16]), &meshes[usize::from(mesh)], usize::from(max));
                    prop_assert!(got.len() <= usize::from(max).min(cfg.max_resolve));
                    let mut seen = Vec::new();
                    for rec in &got {
                        let a = rec[0];
                        // Live, in this mesh, not the asker's own, not twice.
                        let live = model.values().any(|v| v.2 == a && v.1 == mesh && v.3 > now && v.0 != client);
                        prop_assert!(live, "returned {} which is expired, foreign or the asker's", a);
                        prop_assert!(!seen.contains(&a), "returned {} twice", a);
                        seen.push(a);
                    }
                    // Each address once, however many records name it.
                    let mut addrs: Vec<_> = model.values().filter(|v| v.1 == mesh && v.0 != client).map(|v| v.2).collect();
                    addrs.sort();
                    addrs.dedup();
                    let eligible = addrs.len();
                    prop_assert_eq!(got.len(), eligible.min(usize::from(max)).min(cfg.max_resolve), "fewer than available");
                }
                Op::Advance { secs } => now = now + Duration::from_secs(u64::from(secs)),
            }
            r.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert!(r.mesh_count() <= cfg.max_meshes);
        }
    }
}
