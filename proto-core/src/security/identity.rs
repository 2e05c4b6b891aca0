//! A node's identity: the certificate and key it shows in TLS, the key it signs floods with,
//! the credential that tells others how to check those signatures, and the node ID bound to
//! that key.
//!
//! One key does both jobs, so a peer that authenticated a node over TLS and a receiver checking
//! that node's floods see the same key, and the node ID is a hash of it: nobody can sign floods
//! under another node's ID without that node's private key.

use core::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rcgen::{CertificateParams, DistinguishedName, DnType};
use ring::digest;
use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::signing::{CredentialError, FloodSigner, PeerCredential};
use crate::NodeId;

/// The fixed RFC 8410 PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// The DER SubjectPublicKeyInfo of an Ed25519 key up to the key: the algorithm has no
/// parameters (RFC 8410), so the encoding is fixed and the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The DER SubjectPublicKeyInfo of a P-256 key up to the key (id-ecPublicKey, namedCurve
/// prime256v1; RFC 5480): also fixed, followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Domain separation for [`node_id_for_key`].
const NODE_ID_LABEL: &[u8] = b"peerchannel node id v1";

/// The kinds of key a node identity can have.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum KeyKind {
    Ed25519,
    EcdsaP256,
}

/// The node ID bound to a public key: the first 8 bytes, big endian, of SHA-256(`"peerchannel
/// node id v1"` ‖ `raw_public_key`), with 0 (never a valid ID) replaced by 1.
///
/// `raw_public_key` is the subjectPublicKey bit string's contents: 32 bytes for Ed25519, the
/// 65-byte uncompressed point for P-256.
pub fn node_id_for_key(raw_public_key: &[u8]) -> NodeId {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(NODE_ID_LABEL);
    ctx.update(raw_public_key);
    let hash = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    match NodeId::new(u64::from_be_bytes(first)) {
        Some(id) => id,
        None => NodeId::new(1).unwrap_or_else(|| unreachable!("1 is a valid node ID")),
    }
}

/// The node ID a peer's end-entity certificate binds, for matching the node a TLS link reached
/// with the node ID it announces.
pub fn node_id_for_certificate(end_entity: &CertificateDer<'_>) -> Result<NodeId, IdentityError> {
    end_entity_key(end_entity).map(|(_, raw)| node_id_for_key(&raw))
}

/// The kind and raw bytes of an end-entity certificate's public key.
pub(super) fn end_entity_key(cert: &CertificateDer<'_>) -> Result<(KeyKind, Vec<u8>), IdentityError> {
    let parsed =
        webpki::EndEntityCert::try_from(cert).map_err(|e| IdentityError::MalformedCertificate(e.to_string()))?;
    let spki = parsed.subject_public_key_info();
    // Both supported encodings are fixed byte strings up to the key, so comparing prefixes is a
    // complete DER check; anything else (RSA, other curves, explicit parameters) is unsupported.
    let spki: &[u8] = spki.as_ref();
    if let Some(key) = spki.strip_prefix(&ED25519_SPKI_PREFIX[..]).filter(|k| k.len() == 32) {
        return Ok((KeyKind::Ed25519, key.to_vec()));
    }
    if let Some(key) = spki.strip_prefix(&P256_SPKI_PREFIX[..]).filter(|k| k.len() == 65) {
        return Ok((KeyKind::EcdsaP256, key.to_vec()));
    }
    Err(IdentityError::UnsupportedKeyType)
}

/// Why a [`NodeIdentity`] could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityError {
    /// The certificate chain is empty; it needs at least the node's own certificate.
    EmptyChain,
    /// The node's certificate cannot be parsed (the parser's reason).
    MalformedCertificate(String),
    /// The key (private, or in the certificate) is not an Ed25519 or ECDSA P-256 key, or the
    /// private key is not in PKCS#8 form.
    UnsupportedKeyType,
    /// The private key does not belong to the certificate's public key.
    KeyMismatch,
    /// The chain cannot travel as a flood credential (too many or too large certificates).
    Credential(CredentialError),
    /// Making the self-signed certificate failed (rcgen's reason).
    CertificateGeneration(String),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::EmptyChain => f.write_str("the certificate chain is empty"),
            IdentityError::MalformedCertificate(why) => write!(f, "the node's certificate is malformed: {why}"),
            IdentityError::UnsupportedKeyType => {
                f.write_str("unsupported key type: keys must be Ed25519 or ECDSA P-256, private keys in PKCS#8 form")
            }
            IdentityError::KeyMismatch => f.write_str("the private key does not match the certificate's public key"),
            IdentityError::Credential(e) => write!(f, "the certificate chain cannot be sent to peers: {e}"),
            IdentityError::CertificateGeneration(why) => write!(f, "making the self-signed certificate failed: {why}"),
        }
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdentityError::Credential(e) => Some(e),
            _ => None,
        }
    }
}

/// A node's TLS identity and flood-signing key, which are the same key pair.
pub struct NodeIdentity {
    certified: Arc<CertifiedKey>,
    signer: FloodSigner,
    credential: Bytes,
    node_id: NodeId,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signer's Debug hides the key; the rest is public.
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .field("signer", &self.signer)
            .field("chain_len", &self.certified.cert.len())
            .finish()
    }
}

impl NodeIdentity {
    /// Password mode: an Ed25519 key from `seed` and a self-signed certificate for it (common
    /// name "peerchannel node", rcgen's fixed default validity of 1975 to 4096).
    ///
    /// Deterministic: the same seed gives a byte-identical certificate (Ed25519 signatures need
    /// no randomness, and rcgen derives the serial number from the key), so a node's identity
    /// follows from its configured seed alone.
    pub fn self_signed(seed: &[u8; 32]) -> Result<Self, IdentityError> {
        let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + seed.len());
        pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        pkcs8.extend_from_slice(seed);
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).map_err(|_| IdentityError::UnsupportedKeyType)?;
        let mut raw = [0u8; 32];
        raw.copy_from_slice(pair.public_key().as_ref());

        let gen_err = |e: rcgen::Error| IdentityError::CertificateGeneration(e.to_string());
        let pkcs8 = PrivatePkcs8KeyDer::from(pkcs8);
        let rc_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "peerchannel node");
        let cert = params.self_signed(&rc_key).map_err(gen_err)?.der().clone();

        let key = rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(pkcs8))
            .map_err(|_| IdentityError::UnsupportedKeyType)?;
        let mut credential = BytesMut::with_capacity(33);
        PeerCredential::RawEd25519(raw).encode(&mut credential).map_err(IdentityError::Credential)?;
        Ok(NodeIdentity {
            certified: Arc::new(CertifiedKey::new(vec![cert], key)),
            signer: FloodSigner::from_ed25519(pair),
            credential: credential.freeze(),
            node_id: node_id_for_key(&raw),
        })
    }

    /// Certificate mode: the user's chain (end entity first, then intermediates) and the end
    /// entity's PKCS#8 private key, Ed25519 or ECDSA P-256.
    ///
    /// The chain is also this node's flood credential, so it is limited to
    /// [`MAX_CHAIN_LEN`](super::MAX_CHAIN_LEN) certificates and
    /// [`MAX_CREDENTIAL_LEN`](super::MAX_CREDENTIAL_LEN) bytes.
    pub fn from_certificate(
        chain: Vec<CertificateDer<'static>>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<Self, IdentityError> {
        let end_entity = chain.first().ok_or(IdentityError::EmptyChain)?;
        // The flood signer reads PKCS#8 only (ring's ECDSA does not read SEC1).
        let PrivateKeyDer::Pkcs8(pkcs8) = key else {
            return Err(IdentityError::UnsupportedKeyType);
        };
        let signer = FloodSigner::from_pkcs8(pkcs8.secret_pkcs8_der()).ok_or(IdentityError::UnsupportedKeyType)?;
        let (kind, cert_key) = end_entity_key(end_entity)?;
        if kind != signer.kind() || cert_key != signer.public_key() {
            return Err(IdentityError::KeyMismatch);
        }
        let node_id = node_id_for_key(&cert_key);
        // The chain is cloned once, at startup, rather than borrowed into the encoder.
        let credential = PeerCredential::Chain(chain.clone());
        let mut encoded = BytesMut::with_capacity(credential.encoded_len());
        credential.encode(&mut encoded).map_err(IdentityError::Credential)?;
        let tls_key =
            rustls::crypto::ring::sign::any_supported_type(key).map_err(|_| IdentityError::UnsupportedKeyType)?;
        Ok(NodeIdentity {
            certified: Arc::new(CertifiedKey::new(chain, tls_key)),
            signer,
            credential: encoded.freeze(),
            node_id,
        })
    }

    /// The certificate chain and key for rustls (client and server certificate resolvers).
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.certified.clone()
    }

    /// This node's ID, bound to its public key by [`node_id_for_key`].
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The key this node signs its floods with.
    pub fn signer(&self) -> &FloodSigner {
        &self.signer
    }

    /// This node's encoded [`PeerCredential`]: a raw Ed25519 key for
    /// [`self_signed`](Self::self_signed), the certificate chain for
    /// [`from_certificate`](Self::from_certificate).
    pub fn credential(&self) -> &Bytes {
        &self.credential
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::verify::test_pki::Ca;

    #[test]
    fn self_signed_identities_are_deterministic_per_seed() {
        let a1 = NodeIdentity::self_signed(&[1; 32]).unwrap();
        let a2 = NodeIdentity::self_signed(&[1; 32]).unwrap();
        let b = NodeIdentity::self_signed(&[2; 32]).unwrap();
        assert_eq!(a1.certified_key().cert, a2.certified_key().cert);
        assert_eq!(a1.node_id(), a2.node_id());
        assert_eq!(a1.credential(), a2.credential());
        assert_ne!(a1.node_id(), b.node_id());
        assert_ne!(a1.certified_key().cert, b.certified_key().cert);
        // The certificate carries the signing key, so it names the same node.
        assert_eq!(node_id_for_certificate(&a1.certified_key().cert[0]), Ok(a1.node_id()));
        assert_eq!(a1.credential()[0], 1);
        assert_eq!(a1.credential().len(), 33);
        assert!(a1.certified_key().keys_match().is_ok());
    }

    #[test]
    fn the_self_signed_certificate_is_well_formed() {
        let a = NodeIdentity::self_signed(&[5; 32]).unwrap();
        let cert = &a.certified_key().cert[0];
        assert!(webpki::EndEntityCert::try_from(cert).is_ok());
        let cn = b"peerchannel node";
        assert!(cert.windows(cn.len()).any(|w| w == cn));
    }

    #[test]
    fn certificate_identities_take_the_key_of_their_certificate() {
        let ca = Ca::new("ca");
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
            let leaf = ca.leaf_with(alg, 2025, 2035, 1, Vec::new());
            let id = NodeIdentity::from_certificate(vec![leaf.cert.clone(), ca.cert.clone()], &leaf.key).unwrap();
            assert_eq!(node_id_for_certificate(&leaf.cert), Ok(id.node_id()));
            assert_eq!(node_id_for_key(id.signer().public_key()), id.node_id());
            assert_eq!(id.certified_key().cert.len(), 2);
            assert!(id.certified_key().keys_match().is_ok());
            assert_eq!(id.credential()[..2], [2, 2]);
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(1);
        let other = ca.leaf(2);
        let ed = ca.leaf_with(&rcgen::PKCS_ED25519, 2025, 2035, 3, Vec::new());
        assert_eq!(
            NodeIdentity::from_certificate(vec![leaf.cert.clone()], &other.key).unwrap_err(),
            IdentityError::KeyMismatch
        );
        assert_eq!(
            NodeIdentity::from_certificate(vec![leaf.cert.clone()], &ed.key).unwrap_err(),
            IdentityError::KeyMismatch
        );
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(1);
        assert_eq!(NodeIdentity::from_certificate(Vec::new(), &leaf.key).unwrap_err(), IdentityError::EmptyChain);
        assert!(matches!(
            NodeIdentity::from_certificate(vec![CertificateDer::from(vec![1, 2, 3])], &leaf.key),
            Err(IdentityError::MalformedCertificate(_))
        ));
        let junk_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(vec![1, 2, 3]));
        assert_eq!(
            NodeIdentity::from_certificate(vec![leaf.cert.clone()], &junk_key).unwrap_err(),
            IdentityError::UnsupportedKeyType
        );
        // A P-384 certificate and key: a valid pair, but not a supported kind of key.
        let p384 = ca.leaf_with(&rcgen::PKCS_ECDSA_P384_SHA384, 2025, 2035, 2, Vec::new());
        assert_eq!(
            NodeIdentity::from_certificate(vec![p384.cert.clone()], &p384.key).unwrap_err(),
            IdentityError::UnsupportedKeyType
        );
        assert_eq!(node_id_for_certificate(&p384.cert), Err(IdentityError::UnsupportedKeyType));
        let too_long = vec![leaf.cert.clone(); 5];
        assert_eq!(
            NodeIdentity::from_certificate(too_long, &leaf.key).unwrap_err(),
            IdentityError::Credential(CredentialError::BadChainLength(5))
        );
    }

    #[test]
    fn node_ids_never_come_out_zero_and_depend_on_every_key_byte() {
        let a = node_id_for_key(&[0; 32]);
        let mut k = [0; 32];
        k[31] = 1;
        assert_ne!(a, node_id_for_key(&k));
        assert_ne!(a.get(), 0);
    }
}
