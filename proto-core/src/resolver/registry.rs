//! The resolver service's directory, sans-IO: per mesh, records of {registration ID, client
//! ID, addresses, expiry}, with quotas and random selection.

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::{ClientId, RegistrationId, RegistryError};
use crate::mesh::is_dialable;
use crate::rng::Rng;
use crate::time::Instant;
use crate::uri::MeshId;

/// Limits and lifetimes of a registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// How long a registration lives without a refresh. Default 10 min (the original's).
    pub lifetime: Duration,
    /// Meshes held at most. Default 100,000.
    pub max_meshes: usize,
    /// Records per mesh at most. Default 100,000.
    pub max_records_per_mesh: usize,
    /// Records registered from one source IP address at most. Default 256.
    pub max_records_per_source: usize,
    /// Addresses per record at most. Default 8 (what a Connect frame carries).
    pub max_addresses_per_record: usize,
    /// Records returned by one Resolve at most. Default 32.
    pub max_resolve: usize,
    /// Whether the service controls the mesh's shape: if so, clients do not share referrals
    /// (the original's `ControlMeshShape`). Default false.
    pub control_shape: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            lifetime: Duration::from_secs(600),
            max_meshes: 100_000,
            max_records_per_mesh: 100_000,
            max_records_per_source: 256,
            max_addresses_per_record: 8,
            max_resolve: 32,
            control_shape: false,
        }
    }
}

/// A registration the registry accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The registration's ID (keep it secret: it is the right to refresh and unregister).
    pub id: RegistrationId,
    /// How long it lives without a refresh.
    pub lifetime: Duration,
}

#[derive(Clone, Debug)]
struct Record {
    client: ClientId,
    mesh: MeshId,
    source: IpAddr,
    addrs: SmallVec<[SocketAddr; 2]>,
    expires: Instant,
    /// Index in its mesh's list (for O(1) removal).
    slot: usize,
}

/// Registration IDs from HMAC-SHA256 over a counter, keyed by a secret the service draws
/// from the OS: unguessable, yet reproducible in tests and simulations that fix the secret.
struct IdGenerator {
    key: ring::hmac::Key,
    counter: u64,
}

impl core::fmt::Debug for IdGenerator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IdGenerator(..)")
    }
}

impl IdGenerator {
    fn next(&mut self) -> RegistrationId {
        self.counter += 1;
        let tag = ring::hmac::sign(&self.key, &self.counter.to_be_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag.as_ref()[..16]);
        RegistrationId(id)
    }
}

/// The directory of a resolver service. Every operation first drops expired records, so an
/// expired record is never returned.
#[derive(Debug)]
pub struct Registry {
    cfg: RegistryConfig,
    records: BTreeMap<RegistrationId, Record>,
    meshes: BTreeMap<MeshId, Vec<RegistrationId>>,
    per_source: BTreeMap<IpAddr, usize>,
    /// Each client's records per mesh, so a repeated Register (a retry whose reply was lost)
    /// finds the record it already made instead of adding a twin.
    by_client: BTreeMap<(ClientId, MeshId), SmallVec<[RegistrationId; 1]>>,
    expiry: BinaryHeap<Reverse<(Instant, RegistrationId)>>,
    ids: IdGenerator,
    rng: Rng,
}

impl Registry {
    /// An empty registry. `secret` keys registration IDs: draw it from the OS in a service,
    /// fix it in tests and simulations.
    pub fn new(cfg: RegistryConfig, secret: [u8; 32]) -> Self {
        let seed = u64::from_le_bytes([
            secret[0], secret[1], secret[2], secret[3], secret[4], secret[5], secret[6], secret[7],
        ]);
        Registry {
            cfg,
            records: BTreeMap::new(),
            meshes: BTreeMap::new(),
            per_source: BTreeMap::new(),
            by_client: BTreeMap::new(),
            expiry: BinaryHeap::new(),
            ids: IdGenerator { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret), counter: 0 },
            rng: Rng::from_seed(seed ^ 0x7265_736f_6c76_6572),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Meshes with at least one record.
    pub fn mesh_count(&self) -> usize {
        self.meshes.len()
    }

    /// Adds a record for `client`'s node in `mesh`, registered from `source`. Registering the
    /// same addresses again (a retry) returns the existing registration, refreshed.
    pub fn register(
        &mut self,
        now: Instant,
        source: IpAddr,
        client: ClientId,
        mesh: &MeshId,
        addrs: &[SocketAddr],
    ) -> Result<Granted, RegistryError> {
        self.expire(now);
        let addrs = self.check_addrs(addrs)?;
        let twin = self
            .by_client
            .get(&(client, mesh.clone()))
            .and_then(|ids| ids.iter().copied().find(|id| self.records.get(id).is_some_and(|r| r.addrs == addrs)));
        if let Some(id) = twin {
            let lifetime = self.refresh(now, client, mesh, id)?;
            return Ok(Granted { id, lifetime });
        }
        if self.per_source.get(&source).copied().unwrap_or(0) >= self.cfg.max_records_per_source {
            return Err(RegistryError::TooManyFromAddress);
        }
        match self.meshes.get(mesh) {
            Some(list) if list.len() >= self.cfg.max_records_per_mesh => return Err(RegistryError::MeshFull),
            None if self.meshes.len() >= self.cfg.max_meshes => return Err(RegistryError::TooManyMeshes),
            _ => {}
        }
        let id = self.ids.next();
        let list = self.meshes.entry(mesh.clone()).or_default();
        let slot = list.len();
        list.push(id);
        let expires = now + self.cfg.lifetime;
        self.records.insert(id, Record { client, mesh: mesh.clone(), source, addrs, expires, slot });
        *self.per_source.entry(source).or_default() += 1;
        self.by_client.entry((client, mesh.clone())).or_default().push(id);
        self.expiry.push(Reverse((expires, id)));
        Ok(Granted { id, lifetime: self.cfg.lifetime })
    }

    /// Replaces a record's addresses and extends its life. An unknown ID (or one held by
    /// another client) registers anew, as the original did, without touching anyone else's
    /// record.
    pub fn update(
        &mut self,
        now: Instant,
        source: IpAddr,
        client: ClientId,
        mesh: &MeshId,
        id: RegistrationId,
        addrs: &[SocketAddr],
    ) -> Result<Granted, RegistryError> {
        self.expire(now);
        let checked = self.check_addrs(addrs)?;
        let lifetime = self.cfg.lifetime;
        match self.records.get_mut(&id) {
            Some(r) if r.client == client && r.mesh == *mesh => {
                r.addrs = checked;
                r.expires = now + lifetime;
                self.expiry.push(Reverse((now + lifetime, id)));
                self.compact_expiry();
                Ok(Granted { id, lifetime })
            }
            _ => self.register(now, source, client, mesh, addrs),
        }
    }

    /// Extends a record's life. Only its holder (same client, same mesh) can.
    pub fn refresh(
        &mut self,
        now: Instant,
        client: ClientId,
        mesh: &MeshId,
        id: RegistrationId,
    ) -> Result<Duration, RegistryError> {
        self.expire(now);
        let lifetime = self.cfg.lifetime;
        match self.records.get_mut(&id) {
            Some(r) if r.client == client && r.mesh == *mesh => {
                r.expires = now + lifetime;
                self.expiry.push(Reverse((now + lifetime, id)));
                self.compact_expiry();
                Ok(lifetime)
            }
            _ => Err(RegistryError::NotFound),
        }
    }

    /// Removes a record. Only its holder can.
    pub fn unregister(
        &mut self,
        now: Instant,
        client: ClientId,
        mesh: &MeshId,
        id: RegistrationId,
    ) -> Result<(), RegistryError> {
        self.expire(now);
        match self.records.get(&id) {
            Some(r) if r.client == client && r.mesh == *mesh => {
                self.remove(id);
                Ok(())
            }
            _ => Err(RegistryError::NotFound),
        }
    }

    /// Up to `max` (and at most `max_resolve`) distinct live records of `mesh`, chosen at
    /// random without replacement, never one of `client`'s own. Each record is its address list.
    pub fn resolve(
        &mut self,
        now: Instant,
        client: ClientId,
        mesh: &MeshId,
        max: usize,
    ) -> Vec<SmallVec<[SocketAddr; 2]>> {
        self.expire(now);
        let k = max.min(self.cfg.max_resolve);
        let Some(list) = self.meshes.get(mesh) else { return Vec::new() };
        let eligible = |id: &RegistrationId| self.records.get(id).filter(|r| r.client != client);
        let mut chosen: Vec<RegistrationId> = Vec::with_capacity(k);
        // Two records may name the same address (a node re-registered under a new client ID
        // before its old record expired); an answer lists each address once.
        let same_addr = |chosen: &[RegistrationId], id: &RegistrationId| {
            let addrs = self.records.get(id).map(|r| &r.addrs);
            chosen.iter().any(|c| self.records.get(c).map(|r| &r.addrs) == addrs)
        };
        if list.len() <= 4 * k + 8 {
            let mut all: Vec<RegistrationId> = list.iter().copied().filter(|id| eligible(id).is_some()).collect();
            let n = all.len();
            self.rng.sample_in_place(&mut all, n);
            for id in all {
                if chosen.len() == k {
                    break;
                }
                if !same_addr(&chosen, &id) {
                    chosen.push(id);
                }
            }
        } else {
            // Large mesh: rejection-sample distinct slots; a bounded number of tries keeps the
            // cost O(k) even if many records are the asker's.
            for _ in 0..8 * k {
                if chosen.len() == k {
                    break;
                }
                let id = list[self.rng.below(list.len())];
                if !chosen.contains(&id) && eligible(&id).is_some() && !same_addr(&chosen, &id) {
                    chosen.push(id);
                }
            }
        }
        chosen.iter().filter_map(|id| self.records.get(id).map(|r| r.addrs.clone())).collect()
    }

    /// Drops every record whose lifetime ended at or before `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.expiry.peek().copied() {
            if at > now {
                break;
            }
            self.expiry.pop();
            if self.records.get(&id).is_some_and(|r| r.expires <= now) {
                self.remove(id);
            }
        }
    }

    fn remove(&mut self, id: RegistrationId) {
        let Some(r) = self.records.remove(&id) else { return };
        if let Some(list) = self.meshes.get_mut(&r.mesh) {
            list.swap_remove(r.slot);
            if let Some(moved) = list.get(r.slot).copied() {
                if let Some(m) = self.records.get_mut(&moved) {
                    m.slot = r.slot;
                }
            }
            if list.is_empty() {
                self.meshes.remove(&r.mesh);
            }
        }
        if let Some(n) = self.per_source.get_mut(&r.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&r.source);
            }
        }
        let key = (r.client, r.mesh);
        if let Some(ids) = self.by_client.get_mut(&key) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.by_client.remove(&key);
            }
        }
    }

    /// Refreshes leave stale heap entries behind; rebuild the heap when they dominate so its
    /// size stays proportional to the records held.
    fn compact_expiry(&mut self) {
        if self.expiry.len() > 4 * self.records.len() + 1024 {
            self.expiry = self.records.iter().map(|(id, r)| Reverse((r.expires, *id))).collect();
        }
    }

    fn check_addrs(&self, addrs: &[SocketAddr]) -> Result<SmallVec<[SocketAddr; 2]>, RegistryError> {
        if addrs.len() > self.cfg.max_addresses_per_record {
            return Err(RegistryError::TooManyAddresses);
        }
        let ok: SmallVec<[SocketAddr; 2]> = addrs.iter().copied().filter(|a| is_dialable(*a)).collect();
        if ok.is_empty() {
            return Err(RegistryError::NoAddresses);
        }
        Ok(ok)
    }

    /// Checks the registry's bookkeeping (for tests and fuzzing).
    pub fn check_invariants(&self) -> Result<(), String> {
        let listed: usize = self.meshes.values().map(Vec::len).sum();
        if listed != self.records.len() {
            return Err(format!("{listed} listed, {} records", self.records.len()));
        }
        for (mesh, list) in &self.meshes {
            if list.len() > self.cfg.max_records_per_mesh {
                return Err(format!("mesh {mesh} over quota"));
            }
            for (i, id) in list.iter().enumerate() {
                match self.records.get(id) {
                    Some(r) if r.slot == i && r.mesh == *mesh => {}
                    _ => return Err(format!("slot {i} of {mesh} inconsistent")),
                }
            }
        }
        if self.meshes.len() > self.cfg.max_meshes {
            return Err("too many meshes".into());
        }
        let by_client: usize = self.by_client.values().map(|v| v.len()).sum();
        if by_client != self.records.len() {
            return Err(format!("{by_client} records indexed by client, {} held", self.records.len()));
        }
        let by_source: usize = self.per_source.values().sum();
        if by_source != self.records.len() || self.per_source.values().any(|n| *n > self.cfg.max_records_per_source) {
            return Err("per-source counts wrong".into());
        }
        if self.expiry.len() > 4 * self.records.len() + 1024 + 1 {
            return Err("expiry heap not compacted".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(s: &str) -> MeshId {
        MeshId::new(s).unwrap()
    }

    fn client(n: u8) -> ClientId {
        ClientId([n; 16])
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000))
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 168, 0, n])
    }

    const T0: Instant = Instant::ZERO;

    #[test]
    fn register_resolve_excludes_the_asker_and_never_repeats() {
        let mut r = Registry::new(RegistryConfig::default(), [1; 32]);
        let m = mesh("soccer");
        for i in 0..10u8 {
            r.register(T0, ip(i), client(i), &m, &[addr(u16::from(i))]).unwrap();
        }
        for _ in 0..50 {
            let got = r.resolve(T0, client(3), &m, 5);
            assert_eq!(got.len(), 5);
            let mut flat: Vec<SocketAddr> = got.iter().map(|a| a[0]).collect();
            assert!(!flat.contains(&addr(3)), "returned the asker");
            flat.sort();
            flat.dedup();
            assert_eq!(flat.len(), 5, "duplicates");
        }
        // Asking for more than exist returns every other record, once.
        assert_eq!(r.resolve(T0, client(3), &m, 100).len(), 9);
        assert!(r.resolve(T0, client(3), &mesh("other"), 3).is_empty());
        r.check_invariants().unwrap();
    }

    #[test]
    fn a_repeated_register_returns_the_same_record() {
        let mut r = Registry::new(RegistryConfig::default(), [1; 32]);
        let m = mesh("m");
        let g = r.register(T0, ip(1), client(1), &m, &[addr(1)]).unwrap();
        let again = r.register(Instant::from_millis(5_000), ip(1), client(1), &m, &[addr(1)]).unwrap();
        assert_eq!(g.id, again.id);
        assert_eq!(r.len(), 1);
        // Another client with the same address is another record.
        r.register(T0, ip(2), client(2), &m, &[addr(1)]).unwrap();
        assert_eq!(r.len(), 2);
        r.check_invariants().unwrap();
    }

    #[test]
    fn ids_are_distinct_and_depend_on_the_secret() {
        let mut a = Registry::new(RegistryConfig::default(), [1; 32]);
        let mut b = Registry::new(RegistryConfig::default(), [2; 32]);
        let m = mesh("m");
        let ga = a.register(T0, ip(1), client(1), &m, &[addr(1)]).unwrap();
        let ga2 = a.register(T0, ip(1), client(1), &m, &[addr(2)]).unwrap();
        let gb = b.register(T0, ip(1), client(1), &m, &[addr(1)]).unwrap();
        assert_ne!(ga.id, ga2.id);
        assert_ne!(ga.id, gb.id);
    }

    #[test]
    fn expired_records_are_never_returned_and_refresh_extends() {
        let cfg = RegistryConfig { lifetime: Duration::from_secs(60), ..Default::default() };
        let mut r = Registry::new(cfg, [3; 32]);
        let m = mesh("m");
        let a = r.register(T0, ip(1), client(1), &m, &[addr(1)]).unwrap();
        r.register(T0, ip(2), client(2), &m, &[addr(2)]).unwrap();
        let t = Instant::from_millis(59_000);
        assert_eq!(r.refresh(t, client(1), &m, a.id), Ok(Duration::from_secs(60)));
        let later = Instant::from_millis(60_000);
        let got = r.resolve(later, client(9), &m, 10);
        assert_eq!(got, vec![SmallVec::<[SocketAddr; 2]>::from_slice(&[addr(1)])]);
        assert_eq!(r.len(), 1);
        assert!(r.resolve(Instant::from_millis(119_000), client(9), &m, 10).is_empty());
        assert_eq!(r.mesh_count(), 0);
        r.check_invariants().unwrap();
    }

    #[test]
    fn only_the_holder_can_refresh_update_or_unregister() {
        let mut r = Registry::new(RegistryConfig::default(), [4; 32]);
        let m = mesh("m");
        let g = r.register(T0, ip(1), client(1), &m, &[addr(1)]).unwrap();
        assert_eq!(r.refresh(T0, client(2), &m, g.id), Err(RegistryError::NotFound));
        assert_eq!(r.unregister(T0, client(2), &m, g.id), Err(RegistryError::NotFound));
        assert_eq!(r.refresh(T0, client(1), &mesh("n"), g.id), Err(RegistryError::NotFound));
        // Someone else's ID in an Update makes a new record for the caller.
        let u = r.update(T0, ip(2), client(2), &m, g.id, &[addr(2)]).unwrap();
        assert_ne!(u.id, g.id);
        assert_eq!(r.len(), 2);
        // The holder's own update replaces addresses in place.
        let own = r.update(T0, ip(1), client(1), &m, g.id, &[addr(5)]).unwrap();
        assert_eq!(own.id, g.id);
        assert_eq!(r.len(), 2);
        assert_eq!(r.unregister(T0, client(1), &m, g.id), Ok(()));
        assert_eq!(r.unregister(T0, client(1), &m, g.id), Err(RegistryError::NotFound));
        r.check_invariants().unwrap();
    }

    #[test]
    fn quotas_are_enforced() {
        let cfg = RegistryConfig {
            max_meshes: 2,
            max_records_per_mesh: 3,
            max_records_per_source: 4,
            max_addresses_per_record: 2,
            ..Default::default()
        };
        let mut r = Registry::new(cfg, [5; 32]);
        for i in 0..3u8 {
            r.register(T0, ip(i), client(i), &mesh("a"), &[addr(u16::from(i))]).unwrap();
        }
        assert_eq!(r.register(T0, ip(9), client(9), &mesh("a"), &[addr(9)]), Err(RegistryError::MeshFull));
        r.register(T0, ip(9), client(9), &mesh("b"), &[addr(9)]).unwrap();
        assert_eq!(r.register(T0, ip(9), client(9), &mesh("c"), &[addr(9)]), Err(RegistryError::TooManyMeshes));
        assert_eq!(
            r.register(T0, ip(1), client(1), &mesh("b"), &[addr(1), addr(2), addr(3)]),
            Err(RegistryError::TooManyAddresses)
        );
        assert_eq!(
            r.register(T0, ip(1), client(1), &mesh("b"), &["0.0.0.0:1".parse().unwrap()]),
            Err(RegistryError::NoAddresses)
        );
        r.check_invariants().unwrap();
    }

    #[test]
    fn per_source_quota() {
        let cfg = RegistryConfig { max_records_per_source: 2, ..Default::default() };
        let mut r = Registry::new(cfg, [6; 32]);
        let m = mesh("m");
        r.register(T0, ip(1), client(1), &m, &[addr(1)]).unwrap();
        let g = r.register(T0, ip(1), client(2), &m, &[addr(2)]).unwrap();
        assert_eq!(r.register(T0, ip(1), client(3), &m, &[addr(3)]), Err(RegistryError::TooManyFromAddress));
        r.register(T0, ip(2), client(3), &m, &[addr(3)]).unwrap();
        r.unregister(T0, client(2), &m, g.id).unwrap();
        r.register(T0, ip(1), client(4), &m, &[addr(4)]).unwrap();
        r.check_invariants().unwrap();
    }

    #[test]
    fn large_meshes_sample_distinct_records() {
        let mut r = Registry::new(RegistryConfig::default(), [7; 32]);
        let m = mesh("big");
        for i in 0..2000u16 {
            r.register(T0, IpAddr::from([10, 1, (i >> 8) as u8, i as u8]), client((i % 250) as u8), &m, &[addr(i)])
                .unwrap();
        }
        let got = r.resolve(T0, client(0), &m, 10);
        assert_eq!(got.len(), 10);
        let mut flat: Vec<_> = got.iter().map(|a| a[0]).collect();
        flat.sort();
        flat.dedup();
        assert_eq!(flat.len(), 10);
        r.check_invariants().unwrap();
    }
}
