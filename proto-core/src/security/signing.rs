//! End-to-end signed floods: what the origin signs, the credential that tells receivers which
//! key to check it with, and the check.
//!
//! The origin signs a SHA-256 digest of the flood's ID, origin, path and payload. A relay
//! verifies the digest it computed over the bytes it holds, so it never copies the payload to
//! check it. Hop counts change at every relay and are never signed.

use core::fmt;

use bytes::{BufMut, BytesMut};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls::pki_types::{CertificateDer, UnixTime};
use smallvec::SmallVec;

use super::identity::{end_entity_key, node_id_for_key, KeyKind};
use super::verify::{AuthFailure, CertUsage, CertificateChecker};
use crate::{MessageId, NodeId};

/// Domain separation: a flood signature can never be mistaken for a signature over anything else
/// the same key signs (such as TLS handshakes).
const FLOOD_LABEL: &[u8] = b"peerchannel flood v1";

/// The digest an origin signs for one flood: SHA-256 over `"peerchannel flood v1"` ‖ `id` (16
/// bytes) ‖ `origin` (u64, big endian) ‖ path length (u16, big endian) ‖ `path` ‖ `payload`.
///
/// The path length separates path from payload, so bytes cannot be moved from one to the other
/// without changing the digest. Paths are at most [`MAX_PATH_LEN`](crate::uri::MAX_PATH_LEN)
/// bytes, well within a u16; a longer one is hashed with the length u16::MAX.
pub fn flood_digest(id: &MessageId, origin: NodeId, path: &[u8], payload: &[u8]) -> [u8; 32] {
    let path_len = u16::try_from(path.len()).unwrap_or(u16::MAX);
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(FLOOD_LABEL);
    ctx.update(&id.0);
    ctx.update(&origin.get().to_be_bytes());
    ctx.update(&path_len.to_be_bytes());
    ctx.update(path);
    ctx.update(payload);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A node's flood-signing key: Ed25519, or ECDSA P-256 (SHA-256, ASN.1 DER signatures).
///
/// Ed25519 signing is deterministic. ECDSA needs a fresh random nonce for every signature (a
/// repeated nonce reveals the private key), and ring only takes that nonce from the operating
/// system's generator; this is the one place the core draws OS randomness. It changes no output
/// of the protocol's logic, only the signature bytes.
pub struct FloodSigner(SignerKey);

enum SignerKey {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair, SystemRandom),
}

impl fmt::Debug for FloodSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SignerKey::Ed25519(_) => f.write_str("FloodSigner::Ed25519(***)"),
            SignerKey::EcdsaP256(..) => f.write_str("FloodSigner::EcdsaP256(***)"),
        }
    }
}

impl FloodSigner {
    /// Reads a PKCS#8 Ed25519 or P-256 private key; `None` for anything else.
    pub(super) fn from_pkcs8(der: &[u8]) -> Option<Self> {
        // maybe_unchecked accepts PKCS#8 v1 (seed only), which is what password mode builds and
        // what many tools write; the public key is compared with the certificate's by the caller.
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Some(FloodSigner(SignerKey::Ed25519(pair)));
        }
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng).ok()?;
        Some(FloodSigner(SignerKey::EcdsaP256(pair, rng)))
    }

    /// Wraps an Ed25519 key pair.
    pub(super) fn from_ed25519(pair: Ed25519KeyPair) -> Self {
        FloodSigner(SignerKey::Ed25519(pair))
    }

    /// Which kind of key this is.
    pub(super) fn kind(&self) -> KeyKind {
        match self.0 {
            SignerKey::Ed25519(_) => KeyKind::Ed25519,
            SignerKey::EcdsaP256(..) => KeyKind::EcdsaP256,
        }
    }

    /// The raw public key: 32 bytes for Ed25519, a 65-byte uncompressed point for P-256.
    pub fn public_key(&self) -> &[u8] {
        match &self.0 {
            SignerKey::Ed25519(pair) => pair.public_key().as_ref(),
            SignerKey::EcdsaP256(pair, _) => pair.public_key().as_ref(),
        }
    }

    /// Signs a [`flood_digest`]. Ed25519 signatures are 64 bytes, P-256 ones at most 72.
    ///
    /// Returns an empty signature, which every receiver rejects, in the one case ring can fail:
    /// the operating system's random generator failing during an ECDSA signature.
    pub fn sign(&self, digest: &[u8; 32]) -> SmallVec<[u8; 80]> {
        match &self.0 {
            SignerKey::Ed25519(pair) => SmallVec::from_slice(pair.sign(digest).as_ref()),
            SignerKey::EcdsaP256(pair, rng) => {
                pair.sign(rng, digest).map(|s| SmallVec::from_slice(s.as_ref())).unwrap_or_default()
            }
        }
    }
}

/// Largest encoded [`PeerCredential`], in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 8192;
/// Most certificates a [`PeerCredential::Chain`] carries (end entity and intermediates).
pub const MAX_CHAIN_LEN: usize = 4;

const KIND_RAW_ED25519: u8 = 1;
const KIND_CHAIN: u8 = 2;

/// What a receiver needs to verify the floods of one origin.
///
/// Encoded as a kind byte, then for kind 1 (raw Ed25519 key, password meshes) the 32 key bytes,
/// and for kind 2 (certificate chain, end entity first) a count byte (1 to [`MAX_CHAIN_LEN`])
/// followed by each certificate as a u16 big-endian length and its DER. The whole encoding is
/// at most [`MAX_CREDENTIAL_LEN`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCredential {
    /// An Ed25519 public key, vouched for by nothing but the mesh password.
    RawEd25519([u8; 32]),
    /// A certificate chain, end entity first; its end-entity key signs the floods.
    Chain(Vec<CertificateDer<'static>>),
}

/// Why a [`PeerCredential`] could not be decoded or encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialError {
    /// The input ended inside the credential.
    Truncated,
    /// The credential is longer than [`MAX_CREDENTIAL_LEN`] (the length given).
    TooLong(usize),
    /// The kind byte is neither 1 (raw Ed25519) nor 2 (chain).
    UnknownKind(u8),
    /// A chain must hold 1 to [`MAX_CHAIN_LEN`] certificates (the count given).
    BadChainLength(usize),
    /// A certificate in the chain is empty, or too long for its u16 length field.
    BadCertificateLength,
    /// Bytes follow the last certificate.
    TrailingBytes,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialError::Truncated => f.write_str("the credential is truncated"),
            CredentialError::TooLong(n) => {
                write!(f, "the credential is {n} bytes; the limit is {MAX_CREDENTIAL_LEN}")
            }
            CredentialError::UnknownKind(k) => write!(f, "unknown credential kind {k}"),
            CredentialError::BadChainLength(n) => {
                write!(f, "a credential chain holds {n} certificates; it must hold 1 to {MAX_CHAIN_LEN}")
            }
            CredentialError::BadCertificateLength => {
                f.write_str("a certificate in the credential is empty or longer than 65535 bytes")
            }
            CredentialError::TrailingBytes => f.write_str("bytes follow the credential"),
        }
    }
}

impl std::error::Error for CredentialError {}

impl PeerCredential {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            PeerCredential::RawEd25519(_) => 1 + 32,
            PeerCredential::Chain(chain) => 2 + chain.iter().map(|c| 2 + c.len()).sum::<usize>(),
        }
    }

    /// Appends the encoding to `out`. A chain that breaks a limit (count, certificate size or
    /// total size) is refused and nothing is written, so a credential that encodes always decodes.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), CredentialError> {
        match self {
            PeerCredential::RawEd25519(key) => {
                out.reserve(33);
                out.put_u8(KIND_RAW_ED25519);
                out.put_slice(key);
            }
            PeerCredential::Chain(chain) => {
                if chain.is_empty() || chain.len() > MAX_CHAIN_LEN {
                    return Err(CredentialError::BadChainLength(chain.len()));
                }
                if chain.iter().any(|c| c.is_empty() || c.len() > usize::from(u16::MAX)) {
                    return Err(CredentialError::BadCertificateLength);
                }
                let len = self.encoded_len();
                if len > MAX_CREDENTIAL_LEN {
                    return Err(CredentialError::TooLong(len));
                }
                out.reserve(len);
                out.put_u8(KIND_CHAIN);
                out.put_u8(chain.len() as u8); // at most MAX_CHAIN_LEN, checked above
                for cert in chain {
                    out.put_u16(cert.len() as u16); // at most u16::MAX, checked above
                    out.put_slice(cert);
                }
            }
        }
        Ok(())
    }

    /// Decodes exactly one credential filling `b`. Every length is checked against the input
    /// and the limits before anything is allocated. Certificates are not parsed here; that is
    /// [`verify_credential`]'s job.
    pub fn decode(b: &[u8]) -> Result<Self, CredentialError> {
        if b.len() > MAX_CREDENTIAL_LEN {
            return Err(CredentialError::TooLong(b.len()));
        }
        let (&kind, rest) = b.split_first().ok_or(CredentialError::Truncated)?;
        match kind {
            KIND_RAW_ED25519 => {
                let key: [u8; 32] = match rest.len() {
                    32 => rest.try_into().map_err(|_| CredentialError::Truncated)?,
                    n if n < 32 => return Err(CredentialError::Truncated),
                    _ => return Err(CredentialError::TrailingBytes),
                };
                Ok(PeerCredential::RawEd25519(key))
            }
            KIND_CHAIN => {
                let (&count, mut rest) = rest.split_first().ok_or(CredentialError::Truncated)?;
                let count = usize::from(count);
                if count == 0 || count > MAX_CHAIN_LEN {
                    return Err(CredentialError::BadChainLength(count));
                }
                let mut chain = Vec::with_capacity(count);
                for _ in 0..count {
                    let (len, after) = rest.split_first_chunk::<2>().ok_or(CredentialError::Truncated)?;
                    let len = usize::from(u16::from_be_bytes(*len));
                    if len == 0 {
                        return Err(CredentialError::BadCertificateLength);
                    }
                    if after.len() < len {
                        return Err(CredentialError::Truncated);
                    }
                    let (der, after) = after.split_at(len);
                    chain.push(CertificateDer::from(der.to_vec()));
                    rest = after;
                }
                if !rest.is_empty() {
                    return Err(CredentialError::TrailingBytes);
                }
                Ok(PeerCredential::Chain(chain))
            }
            other => Err(CredentialError::UnknownKind(other)),
        }
    }
}

/// A checked credential: the key the floods of [`node`](Self::node) must verify against.
#[derive(Debug)]
pub struct VerifiedSigner {
    key: UnparsedPublicKey<Vec<u8>>,
    node: NodeId,
}

impl VerifiedSigner {
    /// Whether `signature` is the origin's signature of `digest` (a [`flood_digest`]).
    pub fn verify(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        self.key.verify(digest, signature).is_ok()
    }

    /// The node whose floods this key verifies.
    pub fn node(&self) -> NodeId {
        self.node
    }
}

/// Checks that `cred` belongs to `claimed_origin` (its key hashes to that node ID, see
/// [`node_id_for_key`]) and is trusted in this mesh:
///
/// - in a password mesh (`checker` is `None`) only a raw Ed25519 key is accepted: the password
///   proof on every link is what keeps outsiders from injecting floods at all;
/// - in a certificate mesh (`checker` given) only a chain is accepted, and it must pass the
///   checker at `now` for [`CertUsage::Signing`].
pub fn verify_credential(
    cred: &PeerCredential,
    claimed_origin: NodeId,
    checker: Option<&CertificateChecker>,
    now: UnixTime,
) -> Result<VerifiedSigner, AuthFailure> {
    let (kind, raw) = match (cred, checker) {
        (PeerCredential::RawEd25519(key), None) => {
            if node_id_for_key(key) != claimed_origin {
                return Err(AuthFailure::IdentityMismatch);
            }
            (KeyKind::Ed25519, key.to_vec())
        }
        (PeerCredential::RawEd25519(_), Some(_)) => {
            return Err(AuthFailure::BadCertificate("a raw key where this mesh requires a certificate chain".into()))
        }
        (PeerCredential::Chain(_), None) => {
            return Err(AuthFailure::BadCertificate(
                "a certificate chain where this password mesh has no trust anchors".into(),
            ))
        }
        (PeerCredential::Chain(chain), Some(checker)) => {
            let (end_entity, intermediates) =
                chain.split_first().ok_or_else(|| AuthFailure::BadCertificate("an empty certificate chain".into()))?;
            let (kind, raw) = end_entity_key(end_entity).map_err(|e| AuthFailure::BadCertificate(e.to_string()))?;
            // The cheap identity check first: a mismatched credential costs no chain building.
            if node_id_for_key(&raw) != claimed_origin {
                return Err(AuthFailure::IdentityMismatch);
            }
            checker.check(end_entity, intermediates, now, CertUsage::Signing)?;
            (kind, raw)
        }
    };
    let alg: &'static dyn signature::VerificationAlgorithm = match kind {
        KeyKind::Ed25519 => &signature::ED25519,
        KeyKind::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
    };
    Ok(VerifiedSigner { key: UnparsedPublicKey::new(alg, raw), node: claimed_origin })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::verify::test_pki::{now, Ca};
    use crate::security::NodeIdentity;
    use proptest::prelude::*;

    fn digest() -> [u8; 32] {
        flood_digest(&MessageId([7; 16]), NodeId::new(42).unwrap(), b"/chat", b"hello")
    }

    #[test]
    fn the_digest_covers_every_signed_field() {
        let id = MessageId([7; 16]);
        let origin = NodeId::new(42).unwrap();
        let d = flood_digest(&id, origin, b"/chat", b"hello");
        assert_ne!(d, flood_digest(&MessageId([8; 16]), origin, b"/chat", b"hello"));
        assert_ne!(d, flood_digest(&id, NodeId::new(43).unwrap(), b"/chat", b"hello"));
        assert_ne!(d, flood_digest(&id, origin, b"/chat2", b"hello"));
        assert_ne!(d, flood_digest(&id, origin, b"/chat", b"hellO"));
        // A byte moved from the path to the payload changes the digest.
        assert_ne!(d, flood_digest(&id, origin, b"/cha", b"thello"));
    }

    #[test]
    fn ed25519_signatures_verify_and_tampering_is_caught() {
        let me = NodeIdentity::self_signed(&[3; 32]).unwrap();
        let cred = PeerCredential::decode(me.credential()).unwrap();
        let v = verify_credential(&cred, me.node_id(), None, now()).unwrap();
        assert_eq!(v.node(), me.node_id());
        let sig = me.signer().sign(&digest());
        assert_eq!(sig.len(), 64);
        assert!(v.verify(&digest(), &sig));
        let mut altered = digest();
        altered[0] ^= 1;
        assert!(!v.verify(&altered, &sig));
        assert!(!v.verify(&digest(), &sig[..63]));
    }

    #[test]
    fn p256_signatures_verify_and_tampering_is_caught() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(1);
        let me = NodeIdentity::from_certificate(vec![leaf.cert.clone(), ca.cert.clone()], &leaf.key).unwrap();
        let checker = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], None).unwrap();
        let cred = PeerCredential::decode(me.credential()).unwrap();
        let v = verify_credential(&cred, me.node_id(), Some(&checker), now()).unwrap();
        let sig = me.signer().sign(&digest());
        assert!(sig.len() <= 72 && !sig.is_empty());
        assert!(v.verify(&digest(), &sig));
        let mut altered = digest();
        altered[31] ^= 0x80;
        assert!(!v.verify(&altered, &sig));
    }

    #[test]
    fn an_ed25519_certificate_signs_floods_too() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf_with(&rcgen::PKCS_ED25519, 2025, 2035, 1, Vec::new());
        let me = NodeIdentity::from_certificate(vec![leaf.cert.clone()], &leaf.key).unwrap();
        let checker = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], None).unwrap();
        let cred = PeerCredential::decode(me.credential()).unwrap();
        let v = verify_credential(&cred, me.node_id(), Some(&checker), now()).unwrap();
        assert!(v.verify(&digest(), &me.signer().sign(&digest())));
    }

    #[test]
    fn a_credential_for_another_node_is_an_identity_mismatch() {
        let me = NodeIdentity::self_signed(&[3; 32]).unwrap();
        let other = NodeIdentity::self_signed(&[4; 32]).unwrap();
        let cred = PeerCredential::decode(me.credential()).unwrap();
        assert_eq!(verify_credential(&cred, other.node_id(), None, now()).unwrap_err(), AuthFailure::IdentityMismatch);

        let ca = Ca::new("ca");
        let leaf = ca.leaf(1);
        let certified = NodeIdentity::from_certificate(vec![leaf.cert.clone()], &leaf.key).unwrap();
        let checker = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], None).unwrap();
        let cred = PeerCredential::decode(certified.credential()).unwrap();
        assert_eq!(
            verify_credential(&cred, other.node_id(), Some(&checker), now()).unwrap_err(),
            AuthFailure::IdentityMismatch
        );
    }

    #[test]
    fn each_mesh_kind_accepts_only_its_own_kind_of_credential() {
        let ca = Ca::new("ca");
        let checker = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], None).unwrap();
        let raw = NodeIdentity::self_signed(&[3; 32]).unwrap();
        let raw_cred = PeerCredential::decode(raw.credential()).unwrap();
        assert!(matches!(
            verify_credential(&raw_cred, raw.node_id(), Some(&checker), now()),
            Err(AuthFailure::BadCertificate(_))
        ));
        let leaf = ca.leaf(1);
        let certified = NodeIdentity::from_certificate(vec![leaf.cert.clone()], &leaf.key).unwrap();
        let chain_cred = PeerCredential::decode(certified.credential()).unwrap();
        assert!(matches!(
            verify_credential(&chain_cred, certified.node_id(), None, now()),
            Err(AuthFailure::BadCertificate(_))
        ));
    }

    #[test]
    fn a_chain_credential_must_pass_the_checker() {
        let ca = Ca::new("ca");
        let other = Ca::new("other");
        let leaf = other.leaf(1);
        let stranger = NodeIdentity::from_certificate(vec![leaf.cert.clone()], &leaf.key).unwrap();
        let checker = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], None).unwrap();
        let cred = PeerCredential::decode(stranger.credential()).unwrap();
        assert_eq!(
            verify_credential(&cred, stranger.node_id(), Some(&checker), now()).unwrap_err(),
            AuthFailure::UnknownIssuer
        );
    }

    #[test]
    fn credentials_round_trip() {
        let ca = Ca::new("ca");
        for cred in [
            PeerCredential::RawEd25519([9; 32]),
            PeerCredential::Chain(vec![ca.leaf(1).cert]),
            PeerCredential::Chain(vec![ca.leaf(2).cert, ca.cert.clone()]),
        ] {
            let mut out = BytesMut::new();
            cred.encode(&mut out).unwrap();
            assert_eq!(out.len(), cred.encoded_len());
            assert_eq!(PeerCredential::decode(&out), Ok(cred));
        }
    }

    #[test]
    fn encoding_refuses_what_decoding_would_refuse() {
        let cert = CertificateDer::from(vec![1u8; 100]);
        let mut out = BytesMut::new();
        assert_eq!(PeerCredential::Chain(Vec::new()).encode(&mut out), Err(CredentialError::BadChainLength(0)));
        assert_eq!(PeerCredential::Chain(vec![cert; 5]).encode(&mut out), Err(CredentialError::BadChainLength(5)));
        let big = CertificateDer::from(vec![1u8; 5000]);
        assert_eq!(
            PeerCredential::Chain(vec![big.clone(), big]).encode(&mut out),
            Err(CredentialError::TooLong(10006))
        );
        assert_eq!(
            PeerCredential::Chain(vec![CertificateDer::from(Vec::new())]).encode(&mut out),
            Err(CredentialError::BadCertificateLength)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn malformed_credentials_are_rejected_with_their_reason() {
        use CredentialError::*;
        assert_eq!(PeerCredential::decode(&[]), Err(Truncated));
        assert_eq!(PeerCredential::decode(&[1; 32]), Err(Truncated));
        assert_eq!(PeerCredential::decode(&[1; 34]), Err(TrailingBytes));
        assert_eq!(PeerCredential::decode(&[3, 0]), Err(UnknownKind(3)));
        assert_eq!(PeerCredential::decode(&[2]), Err(Truncated));
        assert_eq!(PeerCredential::decode(&[2, 0]), Err(BadChainLength(0)));
        assert_eq!(PeerCredential::decode(&[2, 5]), Err(BadChainLength(5)));
        assert_eq!(PeerCredential::decode(&[2, 1, 0]), Err(Truncated));
        assert_eq!(PeerCredential::decode(&[2, 1, 0, 0]), Err(BadCertificateLength));
        assert_eq!(PeerCredential::decode(&[2, 1, 0, 3, 1, 2]), Err(Truncated));
        assert_eq!(PeerCredential::decode(&[2, 1, 0, 1, 1, 9]), Err(TrailingBytes));
        assert_eq!(PeerCredential::decode(&[2, 2, 0, 1, 1]), Err(Truncated));
        // A claimed length far past the input allocates nothing and is refused.
        assert_eq!(PeerCredential::decode(&[2, 1, 0xff, 0xff, 1]), Err(Truncated));
        assert_eq!(PeerCredential::decode(&vec![2; MAX_CREDENTIAL_LEN + 1]), Err(TooLong(MAX_CREDENTIAL_LEN + 1)));
    }

    #[test]
    fn a_decoded_chain_of_garbage_fails_verification_without_panicking() {
        let ca = Ca::new("ca");
        let checker = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], None).unwrap();
        let cred = PeerCredential::decode(&[2, 1, 0, 3, 1, 2, 3]).unwrap();
        assert!(matches!(
            verify_credential(&cred, NodeId::new(1).unwrap(), Some(&checker), now()),
            Err(AuthFailure::BadCertificate(_))
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(cred) = PeerCredential::decode(&b) {
                // Whatever decodes re-encodes to the same bytes.
                let mut out = BytesMut::new();
                cred.encode(&mut out).unwrap();
                prop_assert_eq!(&out[..], &b[..]);
            }
        }

        #[test]
        fn decoding_chain_shaped_bytes_never_panics(count in 0u8..6, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = vec![2, count];
            b.extend_from_slice(&body);
            let _ = PeerCredential::decode(&b);
        }
    }
}
