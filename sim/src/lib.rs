//! # peerchannel-sim
//!
//! A deterministic discrete-event simulator that runs real [`peerchannel_core::Node`]s — the
//! production state machine, not a model of it — on virtual time, thousands at a time.
//!
//! - **Engine** ([`queue`]): one event queue ordered by (time, sequence number); each node's
//!   `poll_timeout` is one lazily re-armed entry in it.
//! - **Network** ([`network`]): per-pair latency (constant, uniform, region matrix), jitter that
//!   never reorders a link's bytes, loss as retransmission delay, optional per-node uplink
//!   bandwidth with queueing, connection set-up time, refused or hanging connects to dead
//!   hosts, and partitions whose cross links stall.
//! - **Lifecycle**: join through a simulated resolver ([`registry`]), graceful leave, crash
//!   (silent, or reset after a detection delay), restart with a new NodeId.
//! - **Scenarios** ([`scenario`]) in TOML, with built-in `steady-1k`, `churn-1k`,
//!   `mass-failure-10k` and `partition-heal`.
//! - **Metrics** ([`metrics`]): reliability, relative message redundancy, last delivery hop,
//!   latency percentiles, components and degrees over time, control vs flood bytes, and a hash
//!   of every output and delivery for determinism checks.
//!
//! ```
//! use peerchannel_sim::{Scenario, Simulation};
//!
//! let scenario = Scenario { nodes: 20, duration_secs: 40.0, ..Scenario::default() };
//! let report = Simulation::new(scenario).unwrap().run();
//! assert_eq!(report.delivery.reliability_min, 1.0);
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod metrics;
pub mod network;
pub mod plots;
pub mod queue;
pub mod registry;
pub mod scenario;
mod sim;

pub use metrics::{Report, Sample, Speed};
pub use scenario::{Scenario, ScenarioError};
pub use sim::{Departure, Progress, Simulation};
