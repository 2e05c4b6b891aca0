//! Security inside the core: TLS 1.3 links driven sans-IO by rustls, mesh-password and
//! certificate authentication, and end-to-end signed floods.
//!
//! - `settings`: what a node is configured with ([`Security`], [`SecurityMode`],
//!   [`Credentials`]).
//! - `options`: the choices an adapter's builder gathers ([`SecurityOptions`]) and the rules
//!   that apply them to a [`Config`](crate::Config).
//! - `password`: the mesh key (PBKDF2 of the password, salted with the mesh ID) and the
//!   per-link proofs, bound to the TLS session and to the prover's role.
//! - `identity`, `verify`, `signing`: key pairs and certificates, the checks a peer's
//!   certificate must pass, flood signatures and the credentials that verify them.
//! - `tls`, `session`, `context`: a link's TLS session and authentication state, and the
//!   node-wide machinery they share.

mod context;
mod options;
mod password;
mod session;
mod settings;
mod tls;

pub use context::SecurityContext;
pub use options::{NoRandomness, SecurityOptions};
pub use password::{MeshKey, ProofRole, Secret, DEFAULT_PBKDF2_ITERATIONS, PROOF_LEN};
pub use session::{CredentialWindow, KnownSigner, LinkSecurity, ProofOutcome, CREDENTIAL_WINDOW};
pub use settings::{CertificateCredentials, Credentials, Security, SecurityConfigError, SecurityMode, SecuritySetting};
pub use tls::{TlsConfigs, TlsFailure, TlsSession, WallClock};

mod identity;
mod signing;
mod verify;

pub use identity::{node_id_for_certificate, node_id_for_key, IdentityError, NodeIdentity};
pub use signing::{
    flood_digest, verify_credential, CredentialError, FloodSigner, PeerCredential, VerifiedSigner, MAX_CHAIN_LEN,
    MAX_CREDENTIAL_LEN,
};
pub use verify::{
    auth_failure_from_tls, AuthFailure, CertConfigError, CertUsage, CertificateChecker, PeerValidator, PeerVerifier,
};
