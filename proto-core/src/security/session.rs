//! The security state of one link: its TLS session, where the password proofs stand, and the
//! signers of signed floods the link has introduced in each direction.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::password::{MeshKey, ProofRole, PROOF_LEN};
use super::signing::VerifiedSigner;
use super::tls::TlsSession;
use crate::id::NodeId;

/// Origins whose credentials a link has carried, at most this many per direction. Sender and
/// receiver forget the oldest in the same order (the stream is in order), so they always agree
/// on which origins need a Credential frame again.
pub const CREDENTIAL_WINDOW: usize = 256;

/// A checked credential and its encoding (to hand on to the next neighbor as received).
#[derive(Debug)]
pub struct KnownSigner {
    /// The key floods of this origin verify against.
    pub signer: VerifiedSigner,
    /// The credential as it travels in a Credential frame.
    pub encoded: Bytes,
}

/// The origins introduced on a link in one direction, oldest first.
#[derive(Debug, Default)]
pub struct CredentialWindow {
    entries: VecDeque<(NodeId, Option<Arc<KnownSigner>>)>,
}

impl CredentialWindow {
    /// Whether `origin` was introduced and not yet forgotten.
    pub fn contains(&self, origin: NodeId) -> bool {
        self.entries.iter().any(|(o, _)| *o == origin)
    }

    /// The checked signer introduced for `origin` (receive direction).
    pub fn get(&self, origin: NodeId) -> Option<&Arc<KnownSigner>> {
        self.entries.iter().rev().find(|(o, _)| *o == origin).and_then(|(_, s)| s.as_ref())
    }

    /// Records an introduction, forgetting the oldest beyond [`CREDENTIAL_WINDOW`].
    pub fn push(&mut self, origin: NodeId, signer: Option<Arc<KnownSigner>>) {
        if self.entries.len() == CREDENTIAL_WINDOW {
            self.entries.pop_front();
        }
        self.entries.push_back((origin, signer));
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was introduced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where a link's authentication stands.
#[derive(Debug, Default)]
pub struct LinkSecurity {
    /// The TLS session (Transport modes), created with the link.
    pub tls: Option<TlsSession>,
    /// The peer's Hello arrived: bytes from here on are TLS records.
    pub tls_started: bool,
    /// The handshake finished and the node reacted to it (sent its proof or Connect).
    pub tls_reported: bool,
    /// Password mode: this node's proof went out.
    pub proof_sent: bool,
    /// The peer is authenticated (its proof checked out, or its certificate did).
    pub peer_authenticated: bool,
    /// Origins whose credential this node sent on the link.
    pub creds_sent: CredentialWindow,
    /// Origins whose credential the peer sent, with the checked signer.
    pub creds_received: CredentialWindow,
    /// Ciphertext made but not yet pulled (a pull may take less than one batch makes).
    pub pending: Bytes,
}

/// What a received password proof means for the link.
#[derive(Debug, PartialEq, Eq)]
pub enum ProofOutcome {
    /// The peer is authenticated; the responder answers with its own proof (`Some`).
    Accepted(Option<[u8; PROOF_LEN]>),
    /// The proof does not check out: the peer does not know the password (or replayed a proof
    /// made for another session or role).
    Wrong,
    /// A proof out of turn: before TLS completed, a second one, or the responder's before the
    /// initiator proved.
    OutOfTurn,
}

impl LinkSecurity {
    /// The initiator's proof, once TLS completed (the initiator proves first).
    pub fn initiator_proof(&mut self, key: &MeshKey) -> Option<[u8; PROOF_LEN]> {
        let binding = self.tls.as_ref().filter(|t| t.is_established())?.session_binding()?;
        self.proof_sent = true;
        Some(key.prove(ProofRole::Initiator, &binding))
    }

    /// Checks the peer's proof against this link's TLS session and the peer's role. The
    /// responder proves itself only after the initiator's proof checked out.
    pub fn on_proof(&mut self, key: &MeshKey, initiator: bool, proof: &[u8; PROOF_LEN]) -> ProofOutcome {
        let binding = self.tls.as_ref().filter(|t| t.is_established()).and_then(|t| t.session_binding());
        // The responder hears first (before proving); the initiator after its own proof.
        let my_turn_done = self.proof_sent == initiator;
        let (Some(binding), true, false) = (binding, my_turn_done, self.peer_authenticated) else {
            return ProofOutcome::OutOfTurn;
        };
        let peer_role = if initiator { ProofRole::Responder } else { ProofRole::Initiator };
        if !key.verify(peer_role, &binding, proof) {
            return ProofOutcome::Wrong;
        }
        self.peer_authenticated = true;
        if initiator {
            return ProofOutcome::Accepted(None);
        }
        self.proof_sent = true;
        ProofOutcome::Accepted(Some(key.prove(ProofRole::Responder, &binding)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::MeshId;

    #[test]
    fn a_proof_before_tls_completes_is_out_of_turn_and_authenticates_nobody() {
        let key = MeshKey::derive(
            &super::super::Secret::new("pw"),
            &MeshId::new("m").unwrap(),
            core::num::NonZeroU32::new(1).unwrap(),
        );
        let mut ls = LinkSecurity::default();
        for initiator in [false, true] {
            assert_eq!(ls.on_proof(&key, initiator, &[0; PROOF_LEN]), ProofOutcome::OutOfTurn);
        }
        assert!(!ls.peer_authenticated);
        assert_eq!(ls.initiator_proof(&key), None, "no proof without a TLS session to bind it to");
    }

    #[test]
    fn both_ends_forget_the_same_oldest_origin() {
        let (mut sent, mut received) = (CredentialWindow::default(), CredentialWindow::default());
        for i in 1..=(CREDENTIAL_WINDOW as u64 + 1) {
            let origin = NodeId::new(i).unwrap();
            sent.push(origin, None);
            received.push(origin, None);
        }
        let first = NodeId::new(1).unwrap();
        assert!(!sent.contains(first) && !received.contains(first));
        assert_eq!((sent.len(), received.len()), (CREDENTIAL_WINDOW, CREDENTIAL_WINDOW));
    }
}
