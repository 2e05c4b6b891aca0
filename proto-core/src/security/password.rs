use core::fmt;
use core::num::NonZeroU32;

use ring::{hmac, pbkdf2};

use crate::uri::MeshId;

/// PBKDF2-HMAC-SHA256 iterations used when none is configured (OWASP's 2023 recommendation
/// for PBKDF2-HMAC-SHA256). The key is derived once per node, not per link.
pub const DEFAULT_PBKDF2_ITERATIONS: u32 = 600_000;
/// Bytes of a password proof (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;

/// A secret string (a mesh password). Its `Debug` output never shows the value, so it cannot
/// leak into logs through a derived `Debug` of a configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret's bytes, for deriving keys.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which side of a link a proof is for. Each side's proof carries its own label, so a peer
/// cannot send a node's own proof back to it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProofRole {
    /// The node that dialed.
    Initiator,
    /// The node that accepted.
    Responder,
}

impl ProofRole {
    fn label(self) -> &'static [u8] {
        match self {
            ProofRole::Initiator => b"peerchannel password proof v1 initiator",
            ProofRole::Responder => b"peerchannel password proof v1 responder",
        }
    }
}

/// The key every member of a password-protected mesh derives from the password, salted with
/// the mesh ID (the same password in two meshes gives unrelated keys).
pub struct MeshKey(hmac::Key);

impl fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MeshKey(***)")
    }
}

impl MeshKey {
    /// Stretches `password` with PBKDF2-HMAC-SHA256 (`iterations` rounds) into the mesh key.
    pub fn derive(password: &Secret, mesh: &MeshId, iterations: NonZeroU32) -> Self {
        let mut salt = b"peerchannel mesh key v1 ".to_vec();
        salt.extend_from_slice(mesh.as_str().as_bytes());
        let mut key = [0u8; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &salt, password.expose(), &mut key);
        MeshKey(hmac::Key::new(hmac::HMAC_SHA256, &key))
    }

    /// This node's proof of the mesh key for one link: HMAC(key, role label ‖ session binding),
    /// where the binding is keying material exported from that link's TLS session.
    pub fn prove(&self, role: ProofRole, session_binding: &[u8]) -> [u8; PROOF_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(role.label());
        ctx.update(session_binding);
        let mut out = [0u8; PROOF_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Checks a peer's proof for `role` on this session, in constant time.
    pub fn verify(&self, role: ProofRole, session_binding: &[u8], proof: &[u8]) -> bool {
        let mut msg = Vec::with_capacity(64 + session_binding.len());
        msg.extend_from_slice(role.label());
        msg.extend_from_slice(session_binding);
        hmac::verify(&self.0, &msg, proof).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pw: &str, mesh: &str) -> MeshKey {
        // Few iterations keep the test fast; the construction is the same.
        MeshKey::derive(&Secret::new(pw), &MeshId::new(mesh).unwrap(), NonZeroU32::new(10).unwrap())
    }

    #[test]
    fn the_right_password_verifies_and_a_wrong_one_does_not() {
        let a = key("hunter2", "soccerpals");
        let b = key("hunter2", "soccerpals");
        let wrong = key("hunter3", "soccerpals");
        let session = [7u8; 32];
        let p = a.prove(ProofRole::Initiator, &session);
        assert!(b.verify(ProofRole::Initiator, &session, &p));
        assert!(!wrong.verify(ProofRole::Initiator, &session, &p));
        assert!(!b.verify(ProofRole::Initiator, &session, &p[..31]));
    }

    #[test]
    fn a_proof_is_bound_to_its_session_role_and_mesh() {
        let a = key("pw", "soccerpals");
        let p = a.prove(ProofRole::Initiator, &[1u8; 32]);
        // Replayed on another session (another link): rejected.
        assert!(!a.verify(ProofRole::Initiator, &[2u8; 32], &p));
        // Reflected back as the other role: rejected.
        assert!(!a.verify(ProofRole::Responder, &[1u8; 32], &p));
        // Same password, other mesh: unrelated key.
        assert!(!key("pw", "othermesh").verify(ProofRole::Initiator, &[1u8; 32], &p));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Secret::new("correct horse battery staple");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", key("correct horse", "m")), "MeshKey(***)");
    }
}
