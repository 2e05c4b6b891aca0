//! Security options of the builder: the mode (none, TLS links, signed floods, both) and the
//! credentials (a mesh password or X.509 certificates). Everything protocol lives in the core;
//! the adapter only gathers the options (into the core's
//! [`SecurityOptions`](peerchannel_core::security::SecurityOptions), which holds the rules),
//! stretches the password once, draws the node's key seed from the operating system and tells
//! the core the wall-clock time. (The tokio adapter has the same options.)
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

pub use peerchannel_core::security::{
    AuthFailure, CertificateCredentials, Credentials, PeerValidator, SecurityConfigError, SecurityMode,
    DEFAULT_PBKDF2_ITERATIONS,
};
/// Certificate and key types of [`CertificateCredentials`] (from `rustls-pki-types`).
pub use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// 32 bytes from the operating system's random source (the seed of this node's key pair), for
/// `SecurityOptions::apply`: the core draws no randomness itself.
pub(crate) fn os_key_seed() -> Option<[u8; 32]> {
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
