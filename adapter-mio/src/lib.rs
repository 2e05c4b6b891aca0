//! mio adapter (being built).
