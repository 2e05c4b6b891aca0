//! Resolvers map a mesh ID to a few member addresses so a new node can join.
//!
//! Both sides are sans-IO and live here: the [`registry`] the resolver service keeps (records,
//! lifetimes, quotas, random selection), the service's request/reply [`frames`], the
//! [`service`] that answers frames from a registry, and the node-side [`client`] that
//! registers, refreshes and re-registers. Transports (TCP to the service, LAN discovery) live in
//! the adapters.

pub mod client;
pub mod frames;
pub mod lan;
pub mod registry;
pub mod service;

use core::fmt;

/// The identity of one registration, handed out by the registry. It is unguessable (128 bits
/// from a keyed pseudo-random function) and is the capability to refresh, update or
/// unregister the record.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistrationId(pub [u8; 16]);

/// A resolver client's identity, random per client, constant for its lifetime.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClientId(pub [u8; 16]);

fn hex(f: &mut fmt::Formatter<'_>, name: &str, b: &[u8; 16]) -> fmt::Result {
    write!(f, "{name}(")?;
    for x in &b[..4] {
        write!(f, "{x:02x}")?;
    }
    write!(f, "…)")
}

impl fmt::Debug for RegistrationId {
    // Only a prefix: a registration ID is a capability and does not belong in logs whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(f, "RegistrationId", &self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        hex(f, "ClientId", &self.0)
    }
}

/// Why the registry refused a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RegistryError {
    /// No record with that registration ID (and client) exists: register again.
    NotFound = 1,
    /// The mesh already holds `max_records_per_mesh` records.
    MeshFull = 2,
    /// The registry already holds `max_meshes` meshes.
    TooManyMeshes = 3,
    /// The source address already holds `max_records_per_source` records.
    TooManyFromAddress = 4,
    /// A record may hold at most `max_addresses_per_record` addresses.
    TooManyAddresses = 5,
    /// A registration needs at least one dialable address.
    NoAddresses = 6,
    /// The request could not be decoded (the connection is closed after this reply).
    BadRequest = 7,
}

impl RegistryError {
    /// The error for a wire code.
    pub fn from_code(c: u8) -> Option<Self> {
        use RegistryError::*;
        [NotFound, MeshFull, TooManyMeshes, TooManyFromAddress, TooManyAddresses, NoAddresses, BadRequest]
            .get(usize::from(c).checked_sub(1)?)
            .copied()
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RegistryError::NotFound => "registration not found; register again",
            RegistryError::MeshFull => "the mesh has reached the resolver's record limit",
            RegistryError::TooManyMeshes => "the resolver has reached its mesh limit",
            RegistryError::TooManyFromAddress => "too many registrations from this address",
            RegistryError::TooManyAddresses => "too many addresses in one registration",
            RegistryError::NoAddresses => "a registration needs at least one dialable address",
            RegistryError::BadRequest => "malformed resolver request",
        })
    }
}

impl std::error::Error for RegistryError {}
