//! A node's security machinery, built once from its configuration and shared by its links.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::session::{KnownSigner, LinkSecurity};
use super::settings::{Credentials, Security, SecurityConfigError, SecurityMode, SecuritySetting};
use super::signing::{verify_credential, PeerCredential};
use super::tls::{TlsConfigs, WallClock};
use super::verify::{AuthFailure, CertificateChecker, PeerVerifier};
use super::{MeshKey, NodeIdentity};
use crate::id::NodeId;

/// Checked credentials a node remembers across links, so a certificate chain is validated once
/// per origin rather than once per link. Oldest forgotten first beyond this many.
const KNOWN_SIGNERS: usize = 4096;

/// Everything security a node holds beyond its links.
#[derive(Debug)]
pub struct SecurityContext {
    /// The configured mode.
    pub mode: SecurityMode,
    /// What this node announces in its Hello.
    pub setting: SecuritySetting,
    /// Password mode: the mesh key proofs are made with.
    pub mesh_key: Option<Arc<MeshKey>>,
    /// Certificate mode: what peers' certificates must pass.
    pub checker: Option<Arc<CertificateChecker>>,
    /// This node's key pair and certificate (any secure mode).
    pub identity: Option<NodeIdentity>,
    /// TLS configurations (Transport modes).
    pub tls: Option<TlsConfigs>,
    /// The wall-clock time certificates are checked against.
    pub clock: WallClock,
    /// Ordered, not hashed: std's hasher seeds itself from the OS, which the core never reads,
    /// and a fixed hasher over peer-chosen IDs could be flooded into collisions.
    known: std::collections::BTreeMap<NodeId, Arc<KnownSigner>>,
    known_order: VecDeque<NodeId>,
}

impl SecurityContext {
    /// Builds the context for `security`; `fallback_seed` seeds the password-mode key pair
    /// when no key seed is configured.
    pub fn new(security: &Security, fallback_seed: u64) -> Result<Self, SecurityConfigError> {
        security.check()?;
        let bad = |e: &dyn core::fmt::Display| SecurityConfigError::BadCredentials(e.to_string());
        let (identity, mesh_key, checker, verifier) = match &security.credentials {
            Credentials::None => (None, None, None, None),
            Credentials::Password(key) => {
                let seed = security.key_seed.unwrap_or_else(|| derive_key_seed(fallback_seed));
                let identity = NodeIdentity::self_signed(&seed).map_err(|e| bad(&e))?;
                (Some(identity), Some(key.clone()), None, Some(PeerVerifier::password()))
            }
            Credentials::Certificate(c) => {
                let identity = NodeIdentity::from_certificate(c.chain.clone(), &c.key).map_err(|e| bad(&e))?;
                let checker = Arc::new(
                    CertificateChecker::new(&c.trust_anchors, c.pinned.clone(), &c.revocations, c.validator.clone())
                        .map_err(|e| bad(&e))?,
                );
                let verifier = PeerVerifier::certificate(checker.clone());
                (Some(identity), None, Some(checker), Some(verifier))
            }
        };
        let clock = WallClock::default();
        let tls = match (&identity, verifier, security.mode.transport()) {
            (Some(identity), Some(verifier), true) => {
                Some(TlsConfigs::new(identity, Arc::new(verifier), &clock).map_err(|e| bad(&e))?)
            }
            _ => None,
        };
        Ok(SecurityContext {
            mode: security.mode,
            setting: security.setting(),
            mesh_key,
            checker,
            identity,
            tls,
            clock,
            known: std::collections::BTreeMap::new(),
            known_order: VecDeque::new(),
        })
    }

    /// The security state of a new link (`None` when the mesh runs without security).
    pub fn new_link(&self, initiator: bool) -> Result<Option<Box<LinkSecurity>>, AuthFailure> {
        if self.mode == SecurityMode::None {
            return Ok(None);
        }
        let tls = match &self.tls {
            Some(t) => Some(t.session(initiator).map_err(|e| AuthFailure::Tls(e.to_string()))?),
            None => None,
        };
        Ok(Some(Box::new(LinkSecurity { tls, ..LinkSecurity::default() })))
    }

    /// Checks a Credential frame's content for `origin`, reusing an earlier check of the same
    /// bytes.
    pub fn check_credential(&mut self, origin: NodeId, encoded: &Bytes) -> Result<Arc<KnownSigner>, AuthFailure> {
        if let Some(k) = self.known.get(&origin) {
            if k.encoded == *encoded {
                return Ok(k.clone());
            }
        }
        let cred = PeerCredential::decode(encoded).map_err(|e| AuthFailure::BadCertificate(e.to_string()))?;
        let now = self.clock.now();
        let signer = verify_credential(&cred, origin, self.checker.as_deref(), now)?;
        // A copy: the frame is a slice of a whole receive buffer (floods included), which a
        // remembered credential must not keep alive.
        let known = Arc::new(KnownSigner { signer, encoded: Bytes::copy_from_slice(encoded) });
        if self.known.insert(origin, known.clone()).is_none() {
            self.known_order.push_back(origin);
            if self.known_order.len() > KNOWN_SIGNERS {
                if let Some(old) = self.known_order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
        Ok(known)
    }

    /// The credential of `origin` as last checked (or this node's own), to introduce it on
    /// another link.
    pub fn credential_of(&self, me: NodeId, origin: NodeId) -> Option<Bytes> {
        if origin == me {
            return self.identity.as_ref().map(|i| i.credential().clone());
        }
        self.known.get(&origin).map(|k| k.encoded.clone())
    }
}

/// Password-mode key seed from the node's 64-bit seed (simulations; adapters set a random one).
fn derive_key_seed(seed: u64) -> [u8; 32] {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        &[b"peerchannel key seed v1".as_slice(), &seed.to_be_bytes()].concat(),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Credentials;
    use crate::uri::MeshId;

    /// A Credential frame is a slice of a whole receive buffer (a TLS record's plaintext,
    /// floods included); the signer the node remembers must not keep that buffer alive.
    #[test]
    fn a_remembered_credential_does_not_pin_its_receive_buffer() {
        let mesh = MeshId::new("m").unwrap();
        let creds = Credentials::password_with_iterations(&mesh, "pw", core::num::NonZeroU32::new(1).unwrap());
        let mut ctx = SecurityContext::new(&Security::new(SecurityMode::TransportAndMessage, creds), 1).unwrap();
        let peer = NodeIdentity::self_signed(&[5; 32]).unwrap();
        let mut buf = bytes::BytesMut::from(&peer.credential()[..]);
        buf.extend_from_slice(&[0u8; 64 * 1024]);
        let buf = buf.freeze();
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let known = ctx.check_credential(peer.node_id(), &buf.slice(..peer.credential().len())).unwrap();
        assert!(!range.contains(&(known.encoded.as_ptr() as usize)));
        assert_eq!(known.encoded, *peer.credential());
    }
}
