//! Certificate-mode policy and the certificate verifier both TLS roles use.
//!
//! In a certificate mesh a peer is trusted when its chain leads to one of the configured trust
//! anchors (checked by rustls-webpki), is not revoked by a configured CRL, matches a pin if pins
//! are configured, and passes the user's validator. In a password mesh any certificate is
//! accepted at the TLS layer: trust comes from the password proof bound to the session, and TLS
//! only has to prove that the peer holds the key of the certificate it showed.
//!
//! Everything here is synchronous and reads no clock: the time to check against is an argument.

use core::fmt;
use std::sync::Arc;

use ring::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use webpki::{
    CertRevocationList, EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeId, KeyPurposeIdIter, KeyUsage,
    OwnedCertRevocationList, RequiredEkuNotFoundContext, RevocationOptionsBuilder, UnknownStatusPolicy,
};

/// Why a peer failed authentication. `Display` names the failing check in plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// The peer's certificate (or one in its chain) is past its notAfter time.
    Expired,
    /// The peer's certificate (or one in its chain) is before its notBefore time.
    NotYetValid,
    /// The peer's chain does not lead to a configured trust anchor.
    UnknownIssuer,
    /// A configured CRL revokes the peer's certificate (or one in its chain).
    Revoked,
    /// The user's [`PeerValidator`] rejected the peer, with its reason.
    RejectedByValidator(String),
    /// Pins are configured and the peer's end-entity certificate is not one of them.
    NotPinned,
    /// The peer's certificate cannot be used: malformed, wrong key usage, unsupported key type, or
    /// the wrong kind of credential for this mesh. The text says which.
    BadCertificate(String),
    /// The peer's password proof did not verify: it does not know the mesh password.
    WrongPassword,
    /// The peer did not send a password proof.
    MissingProof,
    /// A signature made by the peer did not verify.
    BadSignature,
    /// The peer's key does not hash to the node ID it claims.
    IdentityMismatch,
    /// The peer refused this node's credentials; the text is the TLS alert it sent.
    PeerRejectedUs(String),
    /// TLS failed for a reason other than the peer's credentials.
    Tls(String),
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFailure::Expired => f.write_str("the peer's certificate has expired"),
            AuthFailure::NotYetValid => f.write_str("the peer's certificate is not valid yet"),
            AuthFailure::UnknownIssuer => {
                f.write_str("the peer's certificate does not chain to a trusted certificate authority")
            }
            AuthFailure::Revoked => f.write_str("the peer's certificate has been revoked"),
            AuthFailure::RejectedByValidator(why) => write!(f, "the peer validator rejected the peer: {why}"),
            AuthFailure::NotPinned => f.write_str("the peer's certificate is not one of the pinned certificates"),
            AuthFailure::BadCertificate(why) => write!(f, "the peer's certificate is unusable: {why}"),
            AuthFailure::WrongPassword => f.write_str("the peer does not know the mesh password"),
            AuthFailure::MissingProof => f.write_str("the peer sent no password proof"),
            AuthFailure::BadSignature => f.write_str("a signature by the peer did not verify"),
            AuthFailure::IdentityMismatch => f.write_str("the peer's key does not match the node ID it claims"),
            AuthFailure::PeerRejectedUs(alert) => {
                write!(f, "the peer rejected this node's credentials (TLS alert {alert})")
            }
            AuthFailure::Tls(why) => write!(f, "TLS failed: {why}"),
        }
    }
}

impl std::error::Error for AuthFailure {}

/// A user hook that gets the last word on a peer whose chain passed every other check. It is
/// synchronous so the core stays sans-IO; `chain` is the end-entity certificate first.
///
/// Any `Fn(&[CertificateDer<'_>]) -> Result<(), String> + Send + Sync` is a validator.
pub trait PeerValidator: Send + Sync {
    /// `Ok(())` to accept the peer, or the reason for refusing it.
    fn validate(&self, chain: &[CertificateDer<'_>]) -> Result<(), String>;
}

impl<F> PeerValidator for F
where
    F: Fn(&[CertificateDer<'_>]) -> Result<(), String> + Send + Sync,
{
    fn validate(&self, chain: &[CertificateDer<'_>]) -> Result<(), String> {
        self(chain)
    }
}

/// What a certificate is being checked for; decides the extended key usage it must allow.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CertUsage {
    /// The peer is the TLS client (it dialed us): clientAuth, if the certificate lists EKUs.
    TlsClient,
    /// The peer is the TLS server (we dialed it): serverAuth, if the certificate lists EKUs.
    TlsServer,
    /// The certificate vouches for an origin's flood-signing key. Every node is both a TLS
    /// client and a TLS server, so either clientAuth or serverAuth will do.
    Signing,
}

/// Why a [`CertificateChecker`] could not be built from its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertConfigError {
    /// No trust anchors: no certificate could ever be accepted.
    NoTrustAnchors,
    /// Trust anchor number `index` (from 0) is not a usable certificate.
    BadTrustAnchor {
        /// Position in the configured list.
        index: usize,
        /// What rustls-webpki found wrong.
        reason: String,
    },
    /// CRL number `index` (from 0) is not a usable certificate revocation list.
    BadCrl {
        /// Position in the configured list.
        index: usize,
        /// What rustls-webpki found wrong.
        reason: String,
    },
}

impl fmt::Display for CertConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertConfigError::NoTrustAnchors => f.write_str("certificate mode needs at least one trust anchor"),
            CertConfigError::BadTrustAnchor { index, reason } => {
                write!(f, "trust anchor {index} is not a usable certificate: {reason}")
            }
            CertConfigError::BadCrl { index, reason } => {
                write!(f, "CRL {index} is not a usable certificate revocation list: {reason}")
            }
        }
    }
}

impl std::error::Error for CertConfigError {}

/// Certificate-mode policy: the chain must lead to one of the trust anchors, pass the CRLs (if
/// any), match a pin (if any) and pass the validator (if any), in that order.
///
/// Key usage: a certificate without an extended key usage extension is accepted for every
/// [`CertUsage`]; one with the extension must list the purpose the usage asks for.
///
/// Revocation: every certificate of the chain is looked up in the CRLs; one that no CRL covers
/// is accepted (there is no other revocation source to ask), and an expired CRL still counts
/// (refusing every peer because a CRL file went stale would take the mesh down).
pub struct CertificateChecker {
    anchors: Vec<TrustAnchor<'static>>,
    pins: Vec<[u8; 32]>,
    crls: Vec<CertRevocationList<'static>>,
    validator: Option<Arc<dyn PeerValidator>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for CertificateChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateChecker")
            .field("anchors", &self.anchors.len())
            .field("pins", &self.pins.len())
            .field("crls", &self.crls.len())
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

impl CertificateChecker {
    /// A checker trusting `trust_anchors`; `pins` are SHA-256 hashes of accepted end-entity
    /// certificates (empty: no pinning); `crls` are DER CRLs; `validator` runs last.
    pub fn new(
        trust_anchors: &[CertificateDer<'_>],
        pins: Vec<[u8; 32]>,
        crls: &[CertificateRevocationListDer<'_>],
        validator: Option<Arc<dyn PeerValidator>>,
    ) -> Result<Self, CertConfigError> {
        if trust_anchors.is_empty() {
            return Err(CertConfigError::NoTrustAnchors);
        }
        let anchors = trust_anchors
            .iter()
            .enumerate()
            .map(|(index, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|e| CertConfigError::BadTrustAnchor { index, reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let crls = crls
            .iter()
            .enumerate()
            .map(|(index, der)| {
                OwnedCertRevocationList::from_der(der)
                    .map(CertRevocationList::from)
                    .map_err(|e| CertConfigError::BadCrl { index, reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CertificateChecker {
            anchors,
            pins,
            crls,
            validator,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        })
    }

    /// Checks a peer's end-entity certificate, with the intermediates it sent, at `now`.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: CertUsage,
    ) -> Result<(), AuthFailure> {
        let cert = EndEntityCert::try_from(end_entity).map_err(failure_from_webpki)?;
        // RevocationOptions borrows a slice of references, so it is rebuilt per check.
        let crl_refs: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| b.with_status_policy(UnknownStatusPolicy::Allow).build());
        cert.verify_for_usage(self.algorithms.all, &self.anchors, intermediates, now, Purpose(usage), revocation, None)
            .map_err(failure_from_webpki)?;
        if !self.pins.is_empty() {
            let hash = digest::digest(&digest::SHA256, end_entity.as_ref());
            if !self.pins.iter().any(|pin| pin[..] == *hash.as_ref()) {
                return Err(AuthFailure::NotPinned);
            }
        }
        if let Some(validator) = &self.validator {
            let mut chain = Vec::with_capacity(1 + intermediates.len());
            chain.push(CertificateDer::from(end_entity.as_ref()));
            chain.extend(intermediates.iter().map(|c| CertificateDer::from(c.as_ref())));
            validator.validate(&chain).map_err(AuthFailure::RejectedByValidator)?;
        }
        Ok(())
    }
}

/// DER contents of the serverAuth (1.3.6.1.5.5.7.3.1) and clientAuth (…3.2) purpose OIDs.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// webpki's own `KeyUsage` takes exactly one purpose; signing credentials need "either".
struct Purpose(CertUsage);

impl ExtendedKeyUsageValidator for Purpose {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let (server, client) = match self.0 {
            CertUsage::TlsClient => (false, true),
            CertUsage::TlsServer => (true, false),
            CertUsage::Signing => (true, true),
        };
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            if (server && id == KeyPurposeId::new(EKU_SERVER_AUTH))
                || (client && id == KeyPurposeId::new(EKU_CLIENT_AUTH))
            {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        let required = if client { KeyUsage::client_auth() } else { KeyUsage::server_auth() };
        Err(webpki::Error::RequiredEkuNotFoundContext(RequiredEkuNotFoundContext { required, present }))
    }
}

fn failure_from_webpki(e: webpki::Error) -> AuthFailure {
    match e {
        webpki::Error::CertExpired { .. } => AuthFailure::Expired,
        webpki::Error::CertNotValidYet { .. } => AuthFailure::NotYetValid,
        webpki::Error::UnknownIssuer => AuthFailure::UnknownIssuer,
        webpki::Error::CertRevoked => AuthFailure::Revoked,
        other => AuthFailure::BadCertificate(other.to_string()),
    }
}

/// The rustls error a verifier returns for `failure`. The four failures rustls has its own
/// variants for use them (so the right TLS alert goes to the peer); the others travel inside
/// `CertificateError::Other`, so [`auth_failure_from_tls`] gets the exact reason back.
fn tls_error(failure: AuthFailure) -> rustls::Error {
    let e = match failure {
        AuthFailure::Expired => CertificateError::Expired,
        AuthFailure::NotYetValid => CertificateError::NotValidYet,
        AuthFailure::UnknownIssuer => CertificateError::UnknownIssuer,
        AuthFailure::Revoked => CertificateError::Revoked,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    };
    rustls::Error::InvalidCertificate(e)
}

/// The certificate verifier both TLS roles use (`ServerCertVerifier` for the dialing side,
/// `ClientCertVerifier` for the accepting side; client authentication is mandatory).
///
/// Password mode accepts any well-formed certificate, because trust comes from the password
/// proof bound to the session; certificate mode runs a [`CertificateChecker`]. Both modes verify
/// the TLS 1.3 handshake signatures, so the peer provably holds the certificate's key. Server
/// names are ignored: peers are addressed by socket address, not by name. TLS 1.2 is refused.
#[derive(Debug)]
pub struct PeerVerifier {
    checker: Option<Arc<CertificateChecker>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    /// The password-mode verifier.
    pub fn password() -> Self {
        Self::with_checker(None)
    }

    /// The certificate-mode verifier, applying `checker`.
    pub fn certificate(checker: Arc<CertificateChecker>) -> Self {
        Self::with_checker(Some(checker))
    }

    fn with_checker(checker: Option<Arc<CertificateChecker>>) -> Self {
        PeerVerifier { checker, algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: CertUsage,
    ) -> Result<(), rustls::Error> {
        match &self.checker {
            Some(checker) => checker.check(end_entity, intermediates, now, usage).map_err(tls_error),
            // Parsing here gives a clear "bad certificate" instead of a failure later inside
            // the handshake signature check.
            None => EndEntityCert::try_from(end_entity).map(|_| ()).map_err(|e| tls_error(failure_from_webpki(e))),
        }
    }
}

/// The handshake-signature methods of [`PeerVerifier`], which `ServerCertVerifier` and
/// `ClientCertVerifier` each declare: both roles must check signatures the same way (TLS 1.3
/// signatures verified with the ring algorithms, TLS 1.2 refused), so one definition serves both
/// impls.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("peerchannel links use TLS 1.3 only".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, CertUsage::TlsServer)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signature_checks!();
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would reveal the trust anchors to anyone who connects, and peers have exactly
        // one identity each, so there is nothing for them to choose between.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, CertUsage::TlsClient)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signature_checks!();
}

/// Translates a rustls error into the authentication failure it stands for.
///
/// Certificate errors map to the matching [`AuthFailure`] (the reasons [`PeerVerifier`] carried
/// inside `CertificateError::Other` come back out exactly); a TLS alert from the peer means the
/// peer refused us ([`AuthFailure::PeerRejectedUs`]); anything else is [`AuthFailure::Tls`].
pub fn auth_failure_from_tls(e: &rustls::Error) -> AuthFailure {
    match e {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => AuthFailure::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => AuthFailure::NotYetValid,
            CertificateError::UnknownIssuer => AuthFailure::UnknownIssuer,
            CertificateError::Revoked => AuthFailure::Revoked,
            // A failed handshake signature: the peer does not hold its certificate's key.
            CertificateError::BadSignature => AuthFailure::BadSignature,
            CertificateError::ApplicationVerificationFailure => {
                AuthFailure::RejectedByValidator("the application rejected the certificate".into())
            }
            CertificateError::Other(other) => match other.0.downcast_ref::<AuthFailure>() {
                Some(failure) => failure.clone(),
                None => AuthFailure::BadCertificate(other.to_string()),
            },
            other => AuthFailure::BadCertificate(other.to_string()),
        },
        rustls::Error::AlertReceived(alert) => AuthFailure::PeerRejectedUs(format!("{alert:?}")),
        other => AuthFailure::Tls(other.to_string()),
    }
}

/// The CA and CRL code the integration tests' PKI uses too: one copy, in their support folder.
#[cfg(test)]
#[path = "../../tests/support/pki/ca.rs"]
mod shared_test_pki;

/// Certificates for the tests of the security modules, made with rcgen at fixed times so the
/// tests never depend on the clock.
#[cfg(test)]
pub(crate) mod test_pki {
    use core::time::Duration;

    use rcgen::{
        date_time_ymd, CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SerialNumber,
        SignatureAlgorithm,
    };
    use rustls::pki_types::{
        CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime,
    };

    use super::shared_test_pki::{self as shared, NOW_SECS};

    /// 2030-01-01T00:00:00Z ([`NOW_SECS`]), the "now" of every test.
    pub(crate) fn now() -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(NOW_SECS))
    }

    /// A certificate authority that can issue leaves and CRLs.
    pub(crate) struct Ca {
        pub(crate) cert: CertificateDer<'static>,
        issuer: Issuer<'static, KeyPair>,
    }

    /// An end-entity certificate and its PKCS#8 key.
    pub(crate) struct Leaf {
        pub(crate) cert: CertificateDer<'static>,
        pub(crate) key: PrivateKeyDer<'static>,
    }

    impl Ca {
        /// A CA named `name`, with a P-256 key.
        pub(crate) fn new(name: &str) -> Ca {
            let (cert, issuer) =
                shared::self_signed_ca(name, KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
            Ca { cert, issuer }
        }

        /// A leaf valid from `from` to `to` (years, January 1st), with serial `serial`.
        pub(crate) fn leaf_with(
            &self,
            alg: &'static SignatureAlgorithm,
            from: i32,
            to: i32,
            serial: u64,
            eku: Vec<ExtendedKeyUsagePurpose>,
        ) -> Leaf {
            let key = KeyPair::generate_for(alg).unwrap();
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, format!("leaf {serial}"));
            params.not_before = date_time_ymd(from, 1, 1);
            params.not_after = date_time_ymd(to, 1, 1);
            params.serial_number = Some(SerialNumber::from(serial));
            params.extended_key_usages = eku;
            let cert = params.signed_by(&key, &self.issuer).unwrap().der().clone();
            Leaf { cert, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
        }

        /// A P-256 leaf valid around [`now`].
        pub(crate) fn leaf(&self, serial: u64) -> Leaf {
            self.leaf_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2025, 2035, serial, Vec::new())
        }

        /// A CRL revoking the given serials.
        pub(crate) fn crl(&self, revoked: &[u64]) -> CertificateRevocationListDer<'static> {
            shared::crl(&self.issuer, revoked)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_pki::{now, Ca};
    use super::*;
    use rcgen::ExtendedKeyUsagePurpose;

    fn checker(ca: &Ca, pins: Vec<[u8; 32]>, crls: &[CertificateRevocationListDer<'_>]) -> CertificateChecker {
        CertificateChecker::new(core::slice::from_ref(&ca.cert), pins, crls, None).unwrap()
    }

    fn sha256(der: &CertificateDer<'_>) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, der.as_ref()).as_ref());
        out
    }

    #[test]
    fn a_valid_chain_is_accepted_for_every_usage() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(1);
        let c = checker(&ca, Vec::new(), &[]);
        for usage in [CertUsage::TlsClient, CertUsage::TlsServer, CertUsage::Signing] {
            assert_eq!(c.check(&leaf.cert, &[], now(), usage), Ok(()));
        }
    }

    #[test]
    fn each_broken_check_names_its_own_failure() {
        let ca = Ca::new("ca");
        let other = Ca::new("other ca");
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let expired = ca.leaf_with(alg, 2020, 2025, 2, Vec::new());
        let early = ca.leaf_with(alg, 2031, 2035, 3, Vec::new());
        let stranger = other.leaf(4);
        let revoked = ca.leaf(5);
        let fine = ca.leaf(6);
        let crl = ca.crl(&[5]);
        let c = checker(&ca, Vec::new(), &[crl]);
        let usage = CertUsage::TlsClient;
        assert_eq!(c.check(&expired.cert, &[], now(), usage), Err(AuthFailure::Expired));
        assert_eq!(c.check(&early.cert, &[], now(), usage), Err(AuthFailure::NotYetValid));
        assert_eq!(c.check(&stranger.cert, &[], now(), usage), Err(AuthFailure::UnknownIssuer));
        assert_eq!(c.check(&revoked.cert, &[], now(), usage), Err(AuthFailure::Revoked));
        // Covered by the CRL and not on it.
        assert_eq!(c.check(&fine.cert, &[], now(), usage), Ok(()));
        assert!(matches!(
            c.check(&CertificateDer::from(&b"junk"[..]), &[], now(), usage),
            Err(AuthFailure::BadCertificate(_))
        ));
    }

    #[test]
    fn a_certificate_from_a_ca_without_a_crl_is_accepted() {
        // Unknown revocation status is allowed: the CRL only covers its own issuer.
        let ca = Ca::new("ca");
        let other = Ca::new("other");
        let c =
            CertificateChecker::new(&[ca.cert.clone(), other.cert.clone()], Vec::new(), &[ca.crl(&[1])], None).unwrap();
        assert_eq!(c.check(&other.leaf(1).cert, &[], now(), CertUsage::TlsServer), Ok(()));
        assert_eq!(c.check(&ca.leaf(1).cert, &[], now(), CertUsage::TlsServer), Err(AuthFailure::Revoked));
    }

    #[test]
    fn pins_accept_only_the_pinned_certificate() {
        let ca = Ca::new("ca");
        let pinned = ca.leaf(1);
        let unpinned = ca.leaf(2);
        let c = checker(&ca, vec![sha256(&pinned.cert)], &[]);
        assert_eq!(c.check(&pinned.cert, &[], now(), CertUsage::Signing), Ok(()));
        assert_eq!(c.check(&unpinned.cert, &[], now(), CertUsage::Signing), Err(AuthFailure::NotPinned));
    }

    #[test]
    fn the_validator_gets_the_last_word_and_its_reason_is_kept() {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(1);
        let intermediate = ca.leaf(2).cert; // stands in for an intermediate; webpki ignores it
        let validator = |chain: &[CertificateDer<'_>]| {
            if chain.len() == 2 {
                Err("not on the guest list".to_string())
            } else {
                Ok(())
            }
        };
        let c = CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[], Some(Arc::new(validator)))
            .unwrap();
        assert_eq!(c.check(&leaf.cert, &[], now(), CertUsage::TlsClient), Ok(()));
        assert_eq!(
            c.check(&leaf.cert, &[intermediate], now(), CertUsage::TlsClient),
            Err(AuthFailure::RejectedByValidator("not on the guest list".into()))
        );
    }

    #[test]
    fn extended_key_usage_is_enforced_only_when_present() {
        let ca = Ca::new("ca");
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let client_only = ca.leaf_with(alg, 2025, 2035, 1, vec![ExtendedKeyUsagePurpose::ClientAuth]);
        let server_only = ca.leaf_with(alg, 2025, 2035, 2, vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let neither = ca.leaf_with(alg, 2025, 2035, 3, vec![ExtendedKeyUsagePurpose::CodeSigning]);
        let c = checker(&ca, Vec::new(), &[]);
        let t = now();
        assert_eq!(c.check(&client_only.cert, &[], t, CertUsage::TlsClient), Ok(()));
        assert!(matches!(
            c.check(&client_only.cert, &[], t, CertUsage::TlsServer),
            Err(AuthFailure::BadCertificate(_))
        ));
        assert_eq!(c.check(&server_only.cert, &[], t, CertUsage::TlsServer), Ok(()));
        assert!(matches!(
            c.check(&server_only.cert, &[], t, CertUsage::TlsClient),
            Err(AuthFailure::BadCertificate(_))
        ));
        assert_eq!(c.check(&client_only.cert, &[], t, CertUsage::Signing), Ok(()));
        assert_eq!(c.check(&server_only.cert, &[], t, CertUsage::Signing), Ok(()));
        assert!(matches!(c.check(&neither.cert, &[], t, CertUsage::Signing), Err(AuthFailure::BadCertificate(_))));
    }

    #[test]
    fn bad_configuration_is_reported_by_position() {
        let ca = Ca::new("ca");
        assert_eq!(CertificateChecker::new(&[], Vec::new(), &[], None).unwrap_err(), CertConfigError::NoTrustAnchors);
        let junk = CertificateDer::from(&b"junk"[..]);
        assert!(matches!(
            CertificateChecker::new(&[ca.cert.clone(), junk], Vec::new(), &[], None),
            Err(CertConfigError::BadTrustAnchor { index: 1, .. })
        ));
        let junk_crl = CertificateRevocationListDer::from(&b"junk"[..]);
        assert!(matches!(
            CertificateChecker::new(core::slice::from_ref(&ca.cert), Vec::new(), &[ca.crl(&[]), junk_crl], None),
            Err(CertConfigError::BadCrl { index: 1, .. })
        ));
    }

    #[test]
    fn rustls_errors_map_back_to_the_exact_failure() {
        for f in [
            AuthFailure::Expired,
            AuthFailure::NotYetValid,
            AuthFailure::UnknownIssuer,
            AuthFailure::Revoked,
            AuthFailure::NotPinned,
            AuthFailure::RejectedByValidator("no".into()),
            AuthFailure::BadCertificate("bent".into()),
        ] {
            assert_eq!(auth_failure_from_tls(&tls_error(f.clone())), f);
        }
        assert_eq!(
            auth_failure_from_tls(&rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired)),
            AuthFailure::PeerRejectedUs("CertificateExpired".into())
        );
        assert!(matches!(auth_failure_from_tls(&rustls::Error::HandshakeNotComplete), AuthFailure::Tls(_)));
    }

    mod handshake {
        use super::super::test_pki::{now, Ca, Leaf};
        use super::super::*;
        use crate::security::NodeIdentity;
        use rustls::crypto::CryptoProvider;
        use rustls::sign::{CertifiedKey, SingleCertAndKey};
        use rustls::time_provider::TimeProvider;
        use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

        /// rustls asks this for the time, so certificate validity is judged at the tests' "now".
        #[derive(Debug)]
        struct FixedTime;

        impl TimeProvider for FixedTime {
            fn current_time(&self) -> Option<UnixTime> {
                Some(now())
            }
        }

        fn provider() -> Arc<CryptoProvider> {
            Arc::new(rustls::crypto::ring::default_provider())
        }

        fn client(verifier: Arc<PeerVerifier>, key: Arc<CertifiedKey>) -> ClientConnection {
            let config = ClientConfig::builder_with_details(provider(), Arc::new(FixedTime))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
            ClientConnection::new(Arc::new(config), ServerName::try_from("peer").unwrap()).unwrap()
        }

        fn server(verifier: Arc<PeerVerifier>, key: Arc<CertifiedKey>) -> ServerConnection {
            let config = ServerConfig::builder_with_details(provider(), Arc::new(FixedTime))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
            ServerConnection::new(Arc::new(config)).unwrap()
        }

        /// Pumps bytes both ways until both sides finish or one fails; returns each side's error.
        fn pump(c: &mut ClientConnection, s: &mut ServerConnection) -> (Option<rustls::Error>, Option<rustls::Error>) {
            let (mut client_err, mut server_err) = (None, None);
            for _ in 0..20 {
                let mut buf = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut buf).unwrap();
                }
                if server_err.is_none() && !buf.is_empty() {
                    s.read_tls(&mut &buf[..]).unwrap();
                    server_err = s.process_new_packets().err();
                }
                let mut buf = Vec::new();
                while s.wants_write() {
                    s.write_tls(&mut buf).unwrap();
                }
                if client_err.is_none() && !buf.is_empty() {
                    c.read_tls(&mut &buf[..]).unwrap();
                    client_err = c.process_new_packets().err();
                }
                let done = !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write();
                if done || (client_err.is_some() && server_err.is_some()) {
                    break;
                }
            }
            (client_err, server_err)
        }

        /// The certificate-mode verifier trusting `ca`, with no pins, CRLs or validator.
        fn certificate_verifier(ca: &Ca) -> Arc<PeerVerifier> {
            Arc::new(PeerVerifier::certificate(Arc::new(super::checker(ca, Vec::new(), &[]))))
        }

        fn certified(leaf: &Leaf) -> Arc<CertifiedKey> {
            NodeIdentity::from_certificate(vec![leaf.cert.clone()], &leaf.key).unwrap().certified_key()
        }

        #[test]
        fn password_mode_completes_between_two_self_signed_identities() {
            let a = NodeIdentity::self_signed(&[1; 32]).unwrap();
            let b = NodeIdentity::self_signed(&[2; 32]).unwrap();
            let v = Arc::new(PeerVerifier::password());
            let mut c = client(v.clone(), a.certified_key());
            let mut s = server(v, b.certified_key());
            assert_eq!(pump(&mut c, &mut s), (None, None));
            assert!(!c.is_handshaking() && !s.is_handshaking());
            // Each side saw the other's self-signed certificate.
            assert_eq!(s.peer_certificates().unwrap()[0], a.certified_key().cert[0]);
            assert_eq!(c.peer_certificates().unwrap()[0], b.certified_key().cert[0]);
        }

        #[test]
        fn certificate_mode_completes_with_valid_chains() {
            let ca = Ca::new("ca");
            let v = certificate_verifier(&ca);
            let ed = ca.leaf_with(&rcgen::PKCS_ED25519, 2025, 2035, 1, Vec::new());
            let p256 = ca.leaf(2);
            let mut c = client(v.clone(), certified(&ed));
            let mut s = server(v, certified(&p256));
            assert_eq!(pump(&mut c, &mut s), (None, None));
            assert!(!c.is_handshaking() && !s.is_handshaking());
        }

        #[test]
        fn an_expired_client_certificate_fails_on_both_sides_with_the_reason() {
            let ca = Ca::new("ca");
            let v = certificate_verifier(&ca);
            let expired = ca.leaf_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2020, 2025, 1, Vec::new());
            let mut c = client(v.clone(), certified(&expired));
            let mut s = server(v, certified(&ca.leaf(2)));
            let (client_err, server_err) = pump(&mut c, &mut s);
            assert_eq!(auth_failure_from_tls(&server_err.unwrap()), AuthFailure::Expired);
            assert_eq!(
                auth_failure_from_tls(&client_err.unwrap()),
                AuthFailure::PeerRejectedUs("CertificateExpired".into())
            );
        }

        #[test]
        fn a_password_identity_is_refused_in_a_certificate_mesh() {
            let ca = Ca::new("ca");
            let v = certificate_verifier(&ca);
            let rogue = NodeIdentity::self_signed(&[9; 32]).unwrap();
            let mut c = client(v.clone(), certified(&ca.leaf(1)));
            let mut s = server(v, rogue.certified_key());
            let (client_err, _) = pump(&mut c, &mut s);
            assert_eq!(auth_failure_from_tls(&client_err.unwrap()), AuthFailure::UnknownIssuer);
        }
    }
}
