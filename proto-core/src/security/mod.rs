//! Security building blocks (issue "Security"): the mesh-password proof, bound to a TLS session.
//!
//! The TLS link layer that will carry these proofs is not built yet; what is here is the
//! cryptography it will use, tested on its own: a password stretched once per node into a mesh
//! key, and per-link proofs of that key bound to the session (so a recorded proof is worthless
//! on another link) and to the prover's role (so a proof cannot be reflected back).

mod password;

pub use password::{MeshKey, ProofRole, Secret, DEFAULT_PBKDF2_ITERATIONS, PROOF_LEN};
