//! Security options of the builder: the mode (none, TLS links, signed floods, both) and the
//! credentials (a mesh password or X.509 certificates). Everything protocol lives in the core;
//! the adapter only gathers the options, stretches the password once, draws the node's key seed
//! from the operating system and tells the core the wall-clock time. (The tokio adapter has
//! the same options, kept in step with these.)
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use peerchannel_mio::MioNode;
//!
//! let poll = mio::Poll::new()?;
//! // Every link is TLS 1.3; each side proves it knows the password, bound to its session.
//! let node = MioNode::builder().mesh("soccerpals").password("correct horse battery staple").open_alone().open(poll.registry())?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

pub use peerchannel_core::security::{
    AuthFailure, CertificateCredentials, Credentials, PeerValidator, SecurityConfigError, SecurityMode,
    DEFAULT_PBKDF2_ITERATIONS,
};
/// Certificate and key types of [`CertificateCredentials`] (from `rustls-pki-types`).
pub use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use peerchannel_core::security::{MeshKey, Secret};
use peerchannel_core::{Config, MeshId};

/// The credentials chosen on the builder (the password is kept as a [`Secret`] until `open`
/// knows the mesh it salts the key with).
#[derive(Clone, Default)]
pub(crate) enum Chosen {
    /// None chosen on the builder: the configuration's stand.
    #[default]
    Unset,
    Password(Secret),
    Certificate(Arc<CertificateCredentials>),
    Given(Credentials),
}

impl fmt::Debug for Chosen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chosen::Unset => f.write_str("Unset"),
            Chosen::Password(_) => f.write_str("Password(***)"),
            Chosen::Certificate(c) => c.fmt(f),
            Chosen::Given(c) => c.fmt(f),
        }
    }
}

/// What the builder was told about security.
#[derive(Clone, Debug)]
pub(crate) struct SecurityOptions {
    pub(crate) mode: Option<SecurityMode>,
    pub(crate) credentials: Chosen,
    pub(crate) iterations: NonZeroU32,
}

impl Default for SecurityOptions {
    fn default() -> Self {
        SecurityOptions {
            mode: None,
            credentials: Chosen::Unset,
            iterations: NonZeroU32::new(DEFAULT_PBKDF2_ITERATIONS).unwrap_or(NonZeroU32::MIN),
        }
    }
}

impl SecurityOptions {
    /// Writes the options into `config`: builder choices win over the configuration's, a
    /// credential without a mode means Transport, and a secure node gets a key seed from the
    /// OS unless the configuration fixed one. The result is checked by `Config::validate`.
    pub(crate) fn apply(self, mesh: &MeshId, mut config: Config) -> Result<Config, ApplyError> {
        let chosen_credentials = !matches!(self.credentials, Chosen::Unset);
        match self.credentials {
            Chosen::Unset => {}
            Chosen::Password(pw) => {
                config.security.credentials =
                    Credentials::Password(Arc::new(MeshKey::derive(&pw, mesh, self.iterations)))
            }
            Chosen::Certificate(c) => config.security.credentials = Credentials::Certificate(c),
            Chosen::Given(c) => config.security.credentials = c,
        }
        match self.mode {
            Some(m) => config.security.mode = m,
            None if chosen_credentials => config.security.mode = SecurityMode::Transport,
            None => {}
        }
        if config.security.mode != SecurityMode::None && config.security.key_seed.is_none() {
            config.security.key_seed = Some(os_key_seed().ok_or(ApplyError::NoRandomness)?);
        }
        Ok(config)
    }
}

/// Why the security options could not be applied.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// The OS random source failed.
    NoRandomness,
}

/// 32 bytes from the operating system's random source (the seed of this node's key pair).
fn os_key_seed() -> Option<[u8; 32]> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).ok()?;
    Some(seed)
}

/// Seconds since the Unix epoch now, for `Input::WallClock` (certificates are checked against
/// it; a clock before 1970 counts as the epoch).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
