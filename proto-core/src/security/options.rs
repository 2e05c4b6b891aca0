//! What an adapter's builder is told about security, and the rules that turn it into a
//! [`Config`]: shared by every adapter so that they cannot drift apart.
//!
//! The core reads no OS randomness: [`SecurityOptions::apply`] asks its caller for the node's
//! key seed through a closure, called only when a seed is needed.
//!
//! ```
//! use core::num::NonZeroU32;
//! use peerchannel_core::security::{SecurityMode, SecurityOptions};
//! use peerchannel_core::{Config, MeshId};
//!
//! let mut options = SecurityOptions::new();
//! options.password("correct horse battery staple").iterations(NonZeroU32::new(1_000).unwrap());
//! let config = Config::new(MeshId::new("soccerpals").unwrap(), 7);
//! // An adapter draws the seed from the operating system here.
//! let config = options.apply(config, || Some([7; 32])).unwrap();
//! assert_eq!(config.security.mode, SecurityMode::Transport);
//! assert!(config.validate().is_ok());
//! ```

use core::fmt;
use core::num::NonZeroU32;
use std::sync::Arc;

use super::password::{MeshKey, Secret, DEFAULT_PBKDF2_ITERATIONS};
use super::settings::{CertificateCredentials, Credentials, SecurityMode};
use crate::Config;

/// The credentials chosen: the password stays a [`Secret`] until `apply` knows the mesh that
/// salts the key.
#[derive(Clone, Default)]
enum Chosen {
    /// None chosen: the configuration's stand.
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

/// Security choices gathered by a builder (mode, password, certificate or ready-made
/// credentials, PBKDF2 rounds), applied on top of a [`Config`] when the node opens. Each
/// credential setter replaces the previous choice. `Debug` never shows the password.
#[derive(Clone, Debug)]
pub struct SecurityOptions {
    mode: Option<SecurityMode>,
    credentials: Chosen,
    iterations: NonZeroU32,
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
    /// Nothing chosen: applying leaves the configuration's security as it is (apart from a
    /// missing key seed).
    pub fn new() -> Self {
        Self::default()
    }

    /// The mode; it wins over the configuration's. Without one, any credential chosen here
    /// means [`SecurityMode::Transport`].
    pub fn mode(&mut self, mode: SecurityMode) -> &mut Self {
        self.mode = Some(mode);
        self
    }

    /// A mesh password, stretched into the mesh key by `apply` (salted with the config's mesh).
    pub fn password(&mut self, password: impl Into<String>) -> &mut Self {
        self.credentials = Chosen::Password(Secret::new(password));
        self
    }

    /// PBKDF2 rounds for [`password`](Self::password). Default [`DEFAULT_PBKDF2_ITERATIONS`].
    pub fn iterations(&mut self, iterations: NonZeroU32) -> &mut Self {
        self.iterations = iterations;
        self
    }

    /// X.509 certificate credentials.
    pub fn certificate(&mut self, credentials: CertificateCredentials) -> &mut Self {
        self.credentials = Chosen::Certificate(Arc::new(credentials));
        self
    }

    /// Ready-made credentials (e.g. one [`Credentials::password`] shared by several nodes).
    pub fn credentials(&mut self, credentials: Credentials) -> &mut Self {
        self.credentials = Chosen::Given(credentials);
        self
    }

    /// Whether `apply` will stretch a password: slow on purpose (a fraction of a second), so
    /// an async adapter runs it off its event-loop threads.
    pub fn needs_derivation(&self) -> bool {
        matches!(self.credentials, Chosen::Password(_))
    }

    /// Writes the choices into `config`: choices made here win over the configuration's,
    /// credentials without a mode mean [`SecurityMode::Transport`], and a node left in a secure
    /// mode without [`key_seed`](super::Security::key_seed) gets one from `key_seed` (called
    /// only then; adapters draw it from the operating system's random source). The result
    /// still has to pass [`Config::validate`].
    pub fn apply(
        self,
        mut config: Config,
        key_seed: impl FnOnce() -> Option<[u8; 32]>,
    ) -> Result<Config, NoRandomness> {
        let security = &mut config.security;
        let chosen = !matches!(self.credentials, Chosen::Unset);
        match self.credentials {
            Chosen::Unset => {}
            Chosen::Password(pw) => {
                security.credentials =
                    Credentials::Password(Arc::new(MeshKey::derive(&pw, &config.mesh, self.iterations)))
            }
            Chosen::Certificate(c) => security.credentials = Credentials::Certificate(c),
            Chosen::Given(c) => security.credentials = c,
        }
        match self.mode {
            Some(m) => security.mode = m,
            None if chosen => security.mode = SecurityMode::Transport,
            None => {}
        }
        if security.mode != SecurityMode::None && security.key_seed.is_none() {
            security.key_seed = Some(key_seed().ok_or(NoRandomness)?);
        }
        Ok(config)
    }
}

/// [`SecurityOptions::apply`] needed a key seed and the source gave none.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NoRandomness;

impl fmt::Display for NoRandomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no random key seed available for this node")
    }
}

impl std::error::Error for NoRandomness {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MeshId;
    use std::cell::Cell;

    fn config() -> Config {
        Config::new(MeshId::new("m").unwrap(), 1)
    }

    fn few() -> NonZeroU32 {
        NonZeroU32::new(10).unwrap()
    }

    fn password() -> SecurityOptions {
        let mut o = SecurityOptions::new();
        o.password("pw").iterations(few());
        o
    }

    #[test]
    fn nothing_chosen_leaves_an_open_config_alone_and_draws_no_seed() {
        let o = SecurityOptions::new();
        assert!(!o.needs_derivation());
        let c = o.apply(config(), || panic!("no seed needed")).unwrap();
        assert_eq!(c.security.mode, SecurityMode::None);
        assert!(matches!(c.security.credentials, Credentials::None));
        assert!(c.security.key_seed.is_none());
    }

    #[test]
    fn credentials_without_a_mode_mean_transport() {
        let o = password();
        assert!(o.needs_derivation());
        let c = o.apply(config(), || Some([3; 32])).unwrap();
        assert_eq!(c.security.mode, SecurityMode::Transport);
        assert!(matches!(c.security.credentials, Credentials::Password(_)));
        assert_eq!(c.security.key_seed, Some([3; 32]));
        assert!(c.validate().is_ok());

        let mut o = SecurityOptions::new();
        o.credentials(Credentials::password_with_iterations(&MeshId::new("m").unwrap(), "pw", few()));
        assert!(!o.needs_derivation(), "given credentials are already derived");
        let c = o.apply(config(), || Some([3; 32])).unwrap();
        assert_eq!(c.security.mode, SecurityMode::Transport);
    }

    #[test]
    fn the_builder_choice_wins_over_the_config() {
        let mut base = config();
        base.security.mode = SecurityMode::Transport;
        base.security.credentials = Credentials::password_with_iterations(&MeshId::new("m").unwrap(), "old", few());
        let mut o = password();
        o.mode(SecurityMode::TransportAndMessage);
        let c = o.apply(base.clone(), || Some([0; 32])).unwrap();
        assert_eq!(c.security.mode, SecurityMode::TransportAndMessage);

        // A mode alone keeps the configuration's credentials.
        let mut o = SecurityOptions::new();
        o.mode(SecurityMode::None);
        let c = o.apply(base, || panic!("no seed for mode None")).unwrap();
        assert_eq!(c.security.mode, SecurityMode::None);
        assert!(matches!(c.security.credentials, Credentials::Password(_)));
    }

    #[test]
    fn a_seed_is_drawn_only_for_a_secure_mode_without_one() {
        let calls = Cell::new(0);
        let mut base = config();
        base.security.key_seed = Some([9; 32]);
        let c = password()
            .apply(base, || {
                calls.set(calls.get() + 1);
                Some([1; 32])
            })
            .unwrap();
        assert_eq!((calls.get(), c.security.key_seed), (0, Some([9; 32])), "the config's seed stays");

        let mut secure_config = config();
        secure_config.security.mode = SecurityMode::Transport;
        let c = SecurityOptions::new()
            .apply(secure_config.clone(), || {
                calls.set(calls.get() + 1);
                Some([1; 32])
            })
            .unwrap();
        assert_eq!((calls.get(), c.security.key_seed), (1, Some([1; 32])), "a secure config gets a seed");

        assert_eq!(password().apply(config(), || None).map(|_| ()), Err(NoRandomness));
    }

    #[test]
    fn debug_hides_the_password() {
        let mut o = SecurityOptions::new();
        o.password("open sesame");
        let text = format!("{o:?}");
        assert!(text.contains("Password(***)") && !text.contains("sesame"), "{text}");
    }
}
