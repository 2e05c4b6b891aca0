//! Test certificates, made with rcgen in the test (no private key is checked in).
#![allow(dead_code)]

use rcgen::{date_time_ymd, CertificateParams, DnType, Issuer, KeyPair, SerialNumber};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};

mod ca;

// Not every test binary that includes the support module uses it.
#[allow(unused_imports)]
pub use ca::NOW_SECS;

/// A certificate authority that issues leaves and CRLs.
pub struct Ca {
    pub cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// An end-entity certificate and its PKCS#8 key.
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Ca {
    /// A CA named `name`, with an Ed25519 key.
    pub fn new(name: &str) -> Ca {
        let (cert, issuer) = ca::self_signed_ca(name, KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap());
        Ca { cert, issuer }
    }

    /// An Ed25519 leaf valid from January 1st of `from` to January 1st of `to`.
    pub fn leaf_valid(&self, serial: u64, from: i32, to: i32) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, format!("node {serial}"));
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(to, 1, 1);
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(&key, &self.issuer).unwrap().der().clone();
        Leaf { cert, key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())) }
    }

    /// A leaf valid around [`NOW_SECS`].
    pub fn leaf(&self, serial: u64) -> Leaf {
        self.leaf_valid(serial, 2025, 2035)
    }

    /// A CRL revoking `revoked` (serials).
    pub fn crl(&self, revoked: &[u64]) -> CertificateRevocationListDer<'static> {
        ca::crl(&self.issuer, revoked)
    }
}
