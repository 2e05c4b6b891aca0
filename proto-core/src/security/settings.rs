//! What a node is configured with: the security mode and its credentials.

use core::fmt;
use core::num::NonZeroU32;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::password::{MeshKey, Secret, DEFAULT_PBKDF2_ITERATIONS};
use super::verify::PeerValidator;
use crate::uri::MeshId;

/// How a mesh protects itself (the original's `SecurityMode`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SecurityMode {
    /// Plain TCP: no authentication, no confidentiality, no signatures.
    #[default]
    None,
    /// Every link is TLS 1.3 with mutual authentication (by password proof or certificate).
    Transport,
    /// Every flood is signed end to end by its origin; links are not encrypted.
    Message,
    /// Both.
    TransportAndMessage,
}

impl SecurityMode {
    /// Whether links run TLS.
    pub fn transport(self) -> bool {
        matches!(self, SecurityMode::Transport | SecurityMode::TransportAndMessage)
    }

    /// Whether floods are signed.
    pub fn message(self) -> bool {
        matches!(self, SecurityMode::Message | SecurityMode::TransportAndMessage)
    }

    fn code(self) -> u8 {
        match self {
            SecurityMode::None => 0,
            SecurityMode::Transport => 1,
            SecurityMode::Message => 2,
            SecurityMode::TransportAndMessage => 3,
        }
    }
}

/// Who may join: the mesh password or a certificate chained to the mesh's CA.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No credentials (only with [`SecurityMode::None`]).
    #[default]
    None,
    /// A mesh password, already stretched into the mesh key (see [`Credentials::password`]).
    Password(Arc<MeshKey>),
    /// A certificate chain, its key and the policy peers' certificates must pass.
    Certificate(Arc<CertificateCredentials>),
}

impl Credentials {
    /// Password credentials with the default PBKDF2 iteration count (600,000). The derivation
    /// runs here, once: share the returned value between nodes of one process rather than
    /// deriving again.
    pub fn password(mesh: &MeshId, password: impl Into<String>) -> Self {
        Self::password_with_iterations(
            mesh,
            password,
            NonZeroU32::new(DEFAULT_PBKDF2_ITERATIONS).unwrap_or(NonZeroU32::MIN),
        )
    }

    /// Password credentials with an explicit PBKDF2 iteration count (every member of a mesh
    /// must use the same count; lower counts make offline guessing cheaper).
    pub fn password_with_iterations(mesh: &MeshId, password: impl Into<String>, iterations: NonZeroU32) -> Self {
        Credentials::Password(Arc::new(MeshKey::derive(&Secret::new(password), mesh, iterations)))
    }

    fn code(&self) -> u8 {
        match self {
            Credentials::None => 0,
            Credentials::Password(_) => 1,
            Credentials::Certificate(_) => 2,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Password(_) => f.write_str("Password(***)"),
            Credentials::Certificate(c) => c.fmt(f),
        }
    }
}

/// Certificate credentials: this node's chain and key, and what a peer's chain must pass.
pub struct CertificateCredentials {
    /// This node's certificate chain, end-entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The end-entity certificate's private key (PKCS#8; Ed25519 or ECDSA P-256).
    pub key: PrivateKeyDer<'static>,
    /// The mesh CA(s): a peer's chain must lead to one of these.
    pub trust_anchors: Vec<CertificateDer<'static>>,
    /// SHA-256 fingerprints of the end-entity certificates accepted; empty accepts any
    /// certificate that passes the other checks.
    pub pinned: Vec<[u8; 32]>,
    /// Certificate revocation lists to check peers against.
    pub revocations: Vec<CertificateRevocationListDer<'static>>,
    /// A last, application-defined check (synchronous, so the core stays sans-IO).
    pub validator: Option<Arc<dyn PeerValidator>>,
}

impl CertificateCredentials {
    /// Credentials with `chain` and `key`, trusting `trust_anchors`; no pinning, no
    /// revocation lists, no validator.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        trust_anchors: Vec<CertificateDer<'static>>,
    ) -> Self {
        CertificateCredentials {
            chain,
            key,
            trust_anchors,
            pinned: Vec::new(),
            revocations: Vec::new(),
            validator: None,
        }
    }
}

impl fmt::Debug for CertificateCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("chain", &self.chain.len())
            .field("key", &"***")
            .field("trust_anchors", &self.trust_anchors.len())
            .field("pinned", &self.pinned.len())
            .field("revocations", &self.revocations.len())
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

/// A node's security configuration.
#[derive(Clone, Default)]
pub struct Security {
    /// The mode. Default [`SecurityMode::None`].
    pub mode: SecurityMode,
    /// The credentials the mode needs.
    pub credentials: Credentials,
    /// Seed of this node's key pair in password mode (its self-signed TLS certificate and its
    /// flood-signing key). `None` derives it from [`Config::seed`](crate::Config::seed), which
    /// keeps simulations reproducible; adapters fill it from the operating system's random
    /// source, so that a key is never guessable from a 64-bit seed.
    pub key_seed: Option<[u8; 32]>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("mode", &self.mode)
            .field("credentials", &self.credentials)
            .field("key_seed", &self.key_seed.map(|_| "***"))
            .finish()
    }
}

impl Security {
    /// No security (the default).
    pub fn none() -> Self {
        Security::default()
    }

    /// `mode` with `credentials`.
    pub fn new(mode: SecurityMode, credentials: Credentials) -> Self {
        Security { mode, credentials, key_seed: None }
    }

    /// What this node announces in its Hello.
    pub fn setting(&self) -> SecuritySetting {
        SecuritySetting(self.mode.code() << 4 | self.credentials.code())
    }

    /// Whether the mode and the credentials fit together.
    pub(crate) fn check(&self) -> Result<(), SecurityConfigError> {
        match (self.mode, &self.credentials) {
            (SecurityMode::None, Credentials::None) => Ok(()),
            (SecurityMode::None, _) => Err(SecurityConfigError::CredentialsWithoutMode),
            (_, Credentials::None) => Err(SecurityConfigError::ModeWithoutCredentials),
            // Without TLS nothing authenticates a link, and a key from a password-mode node
            // is self-made: signatures would prove nothing about membership.
            (SecurityMode::Message, Credentials::Password(_)) => Err(SecurityConfigError::MessageModeNeedsCertificate),
            (_, Credentials::Certificate(c)) if c.chain.is_empty() => Err(SecurityConfigError::EmptyChain),
            (_, Credentials::Certificate(c)) if c.trust_anchors.is_empty() => Err(SecurityConfigError::NoTrustAnchors),
            _ => Ok(()),
        }
    }
}

/// The security byte of a Hello: mode in the high nibble (0 none, 1 transport, 2 message,
/// 3 both), credential kind in the low nibble (0 none, 1 password, 2 certificate). Peers must
/// announce the same byte, or the link is refused with
/// [`CloseReason::SecurityMismatch`](crate::CloseReason::SecurityMismatch): a node never
/// lowers its own setting to match a peer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SecuritySetting(pub u8);

/// A security configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityConfigError {
    /// Credentials were given but the mode is `None`.
    CredentialsWithoutMode,
    /// A secure mode without credentials.
    ModeWithoutCredentials,
    /// `Message` mode alone needs certificate credentials (use `TransportAndMessage` with a
    /// password).
    MessageModeNeedsCertificate,
    /// Certificate credentials with an empty chain.
    EmptyChain,
    /// Certificate credentials without a trust anchor.
    NoTrustAnchors,
    /// The certificate or key could not be used (the text says why).
    BadCredentials(String),
}

impl fmt::Display for SecurityConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecurityConfigError::CredentialsWithoutMode => f.write_str("credentials given but security mode is None"),
            SecurityConfigError::ModeWithoutCredentials => {
                f.write_str("a secure mode needs a password or a certificate")
            }
            SecurityConfigError::MessageModeNeedsCertificate => f.write_str(
                "Message mode alone needs certificate credentials (use TransportAndMessage with a password)",
            ),
            SecurityConfigError::EmptyChain => f.write_str("certificate credentials with an empty chain"),
            SecurityConfigError::NoTrustAnchors => f.write_str("certificate credentials without a trust anchor"),
            SecurityConfigError::BadCredentials(e) => write!(f, "unusable credentials: {e}"),
        }
    }
}

impl std::error::Error for SecurityConfigError {}
