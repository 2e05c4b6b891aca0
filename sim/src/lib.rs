//! Deterministic simulator (being built).
