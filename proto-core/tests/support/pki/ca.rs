//! What the integration tests' PKI (`support::pki`) and the unit tests' (`test_pki` in
//! `src/security/verify.rs`, which includes this file) share: the tests' wall clock, the
//! certificate authority's certificate and its CRLs. Each PKI picks its own key algorithms.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

/// 2030-01-01T00:00:00Z, the wall clock of every certificate test.
pub const NOW_SECS: u64 = 1_893_456_000;

/// A self-signed CA certificate named `name` for `key`, valid 2020 to 2040 and allowed to sign
/// certificates and CRLs, with the issuer that signs in its name.
pub fn self_signed_ca(name: &str, key: KeyPair) -> (CertificateDer<'static>, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    let cert = params.self_signed(&key).unwrap().der().clone();
    (cert, Issuer::new(params, key))
}

/// A CRL by `issuer` revoking `revoked` (serials) for key compromise, current at [`NOW_SECS`].
pub fn crl(issuer: &Issuer<'_, KeyPair>, revoked: &[u64]) -> CertificateRevocationListDer<'static> {
    let params = CertificateRevocationListParams {
        this_update: date_time_ymd(2029, 1, 1),
        next_update: date_time_ymd(2031, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|&s| RevokedCertParams {
                serial_number: SerialNumber::from(s),
                revocation_time: date_time_ymd(2029, 6, 1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    params.signed_by(issuer).unwrap().der().clone()
}
