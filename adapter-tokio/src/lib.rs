//! tokio adapter (being built).
