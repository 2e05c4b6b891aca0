//! What a run simulates: a scenario, read from TOML or built in code, every field with a
//! default so a file only says what differs.
//!
//! Durations are seconds (`*_secs`, fractional allowed) or milliseconds (`*_ms`): plain numbers
//! keep the files readable without a duration-parsing dependency.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The scenarios shipped in `sim/scenarios/`, by name. They are compiled in so the CLI runs
/// them from any working directory.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("steady-1k", include_str!("../scenarios/steady-1k.toml")),
    ("churn-1k", include_str!("../scenarios/churn-1k.toml")),
    ("mass-failure-10k", include_str!("../scenarios/mass-failure-10k.toml")),
    ("partition-heal", include_str!("../scenarios/partition-heal.toml")),
    ("churn-1k-secure", include_str!("../scenarios/churn-1k-secure.toml")),
];

/// A whole simulated run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    /// A name for reports.
    pub name: String,
    /// Seed of every random choice in the run (nodes' seeds derive from it).
    pub seed: u64,
    /// Nodes that join at the start.
    pub nodes: usize,
    /// Simulated time to run.
    pub duration_secs: f64,
    /// The initial nodes open at evenly spread times over this span (a mesh is not born in one
    /// instant, and a thousand simultaneous resolves would only measure the resolver).
    pub join_over_secs: f64,
    /// The network between nodes.
    pub network: NetworkConfig,
    /// How the simulated resolver answers.
    pub resolver: ResolverConfig,
    /// What a crash looks like to the crashed node's peers.
    pub crash: CrashConfig,
    /// Continuous replacement of nodes.
    pub churn: Option<ChurnConfig>,
    /// Fractions of the live nodes that crash at once.
    pub mass_failure: Vec<MassFailure>,
    /// Cuts of the network into two sides, healed after a while.
    pub partition: Vec<Partition>,
    /// Who sends floods, how often, how big.
    pub publish: PublishConfig,
    /// Overrides of the core's `Config` defaults, for every node.
    pub core: CoreOverrides,
    /// Link encryption and flood signing (the core's `Config::security`), for every node.
    pub security: SecurityConfig,
    /// How metrics are sampled.
    pub metrics: MetricsConfig,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "custom".into(),
            seed: 1,
            nodes: 100,
            duration_secs: 120.0,
            join_over_secs: 10.0,
            network: NetworkConfig::default(),
            resolver: ResolverConfig::default(),
            crash: CrashConfig::default(),
            churn: None,
            mass_failure: Vec::new(),
            partition: Vec::new(),
            publish: PublishConfig::default(),
            core: CoreOverrides::default(),
            security: SecurityConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// Why a scenario cannot run.
#[derive(Debug)]
pub enum ScenarioError {
    /// The TOML did not parse or has unknown fields.
    Parse(String),
    /// A value is out of range; the message names the field.
    Invalid(String),
    /// The core rejected the node configuration the scenario produces.
    Core(String),
    /// Neither a built-in scenario nor a file that could be read.
    NotFound {
        /// The name or path given.
        name: String,
        /// Why the file could not be read.
        error: String,
    },
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScenarioError::Parse(m) => write!(f, "scenario does not parse: {m}"),
            ScenarioError::Invalid(m) => write!(f, "invalid scenario: {m}"),
            ScenarioError::Core(m) => write!(f, "the core rejects the node configuration: {m}"),
            ScenarioError::NotFound { name, error } => {
                let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                write!(f, "cannot read scenario file {name:?}: {error} (built-in scenarios: {})", names.join(", "))
            }
        }
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Parses a scenario from TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// One of the [`BUILT_IN`] scenarios by name.
    pub fn built_in(name: &str) -> Option<Scenario> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        // The shipped files are tested to parse; a failure here is a build defect.
        Scenario::from_toml(text).ok()
    }

    /// A built-in scenario by name, else the TOML file at that path.
    pub fn named(name: &str) -> Result<Scenario, ScenarioError> {
        if let Some(s) = Scenario::built_in(name) {
            return Ok(s);
        }
        let text = std::fs::read_to_string(name)
            .map_err(|e| ScenarioError::NotFound { name: name.to_string(), error: e.to_string() })?;
        Scenario::from_toml(&text).map_err(|e| match e {
            ScenarioError::Parse(m) => ScenarioError::Parse(format!("{name}: {m}")),
            ScenarioError::Invalid(m) => ScenarioError::Invalid(format!("{name}: {m}")),
            other => other,
        })
    }

    /// The scenario as TOML (for `--out`, so a run can be repeated exactly).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if self.nodes == 0 {
            return bad("nodes must be at least 1".into());
        }
        if self.nodes > (1 << 22) {
            return bad(format!("nodes = {} is more than the simulator's 4 M hosts", self.nodes));
        }
        for (name, v) in [
            ("duration_secs", self.duration_secs),
            ("join_over_secs", self.join_over_secs),
            ("publish.rate_per_sec", self.publish.rate_per_sec),
            ("publish.start_secs", self.publish.start_secs),
            ("metrics.window_secs", self.metrics.window_secs),
            ("network.jitter_ms", self.network.jitter_ms),
            ("network.connect_setup_ms", self.network.connect_setup_ms),
            ("network.retransmit_ms", self.network.retransmit_ms),
            ("network.uplink_mbps", self.network.uplink_mbps),
            ("resolver.rtt_ms", self.resolver.rtt_ms),
            ("resolver.registration_ttl_secs", self.resolver.registration_ttl_secs),
            ("crash.detection_delay_ms", self.crash.detection_delay_ms),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(format!("{name} = {v} must be a finite number ≥ 0"));
            }
        }
        if self.metrics.sample_secs.is_nan() || self.metrics.sample_secs <= 0.0 {
            return bad("metrics.sample_secs must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.network.loss) {
            return bad(format!("network.loss = {} must be within 0..=1", self.network.loss));
        }
        self.network.latency.validate()?;
        if self.publish.size == 0 {
            return bad("publish.size must be at least 1 byte".into());
        }
        if self.publish.paths.is_empty() {
            return bad("publish.paths must name at least one channel path".into());
        }
        if let Some(c) = &self.churn {
            if !c.replace_per_min.is_finite() || c.replace_per_min < 0.0 {
                return bad("churn.replace_per_min must be ≥ 0".into());
            }
            if !(0.0..=1.0).contains(&c.graceful_fraction) {
                return bad("churn.graceful_fraction must be within 0..=1".into());
            }
            if !c.start_secs.is_finite() || c.start_secs < 0.0 || !c.restart_delay_secs.is_finite() {
                return bad("churn.start_secs and churn.restart_delay_secs must be ≥ 0".into());
            }
        }
        for m in &self.mass_failure {
            if !(0.0..=1.0).contains(&m.fraction) || !m.at_secs.is_finite() || m.at_secs < 0.0 {
                return bad(format!("mass_failure at {} s: fraction must be within 0..=1", m.at_secs));
            }
        }
        self.security.validate()?;
        for p in &self.partition {
            if !(0.0..=1.0).contains(&p.fraction) || !p.at_secs.is_finite() || !p.duration_secs.is_finite() {
                return bad(format!("partition at {} s: fraction must be within 0..=1", p.at_secs));
            }
            if p.at_secs < 0.0 || p.duration_secs < 0.0 {
                return bad("partition times must be ≥ 0".into());
            }
        }
        Ok(())
    }

    /// The run's length.
    pub fn duration(&self) -> Duration {
        secs(self.duration_secs)
    }
}

/// Seconds as a duration (negative and NaN become zero; validation rejects them earlier).
pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 0.0 })
}

/// Milliseconds as a duration.
pub(crate) fn millis(ms: f64) -> Duration {
    secs(ms / 1000.0)
}

/// The simulated network.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// One-way latency of a link before jitter.
    pub latency: LatencyModel,
    /// Extra random delay per transmission, up to this many ms. Byte order on a link is kept
    /// (a later write never overtakes an earlier one), as on a TCP stream.
    pub jitter_ms: f64,
    /// Extra time to set up a connection, on top of the SYN / SYN-ACK round trip.
    pub connect_setup_ms: f64,
    /// Probability that a transmission loses a segment. Loss is not lost bytes on a reliable
    /// stream: it is a retransmission delay (`retransmit_ms`), and everything written after it
    /// on the same link waits behind it (head-of-line blocking).
    pub loss: f64,
    /// Delay a lost segment adds (a retransmission timeout).
    pub retransmit_ms: f64,
    /// Each node's uplink in Mbit/s; 0 means unlimited. When set, a node's writes are
    /// serialized on its uplink and queue behind each other.
    pub uplink_mbps: f64,
    /// Bytes a node's uplink may hold queued (its socket send buffers) before the simulator
    /// stops pulling from the core; the rest stays in the core's bounded link queues, so the
    /// core's backpressure (Busy, NodeTooSlow) is exercised. Used only with `uplink_mbps`.
    pub uplink_buffer_bytes: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency: LatencyModel::Uniform { min_ms: 10.0, max_ms: 60.0 },
            jitter_ms: 2.0,
            connect_setup_ms: 0.0,
            loss: 0.0,
            retransmit_ms: 200.0,
            uplink_mbps: 0.0,
            uplink_buffer_bytes: 256 * 1024,
        }
    }
}

/// How the one-way latency of a node pair is chosen. It is fixed per pair (drawn from a hash
/// of the pair and the run's seed), so reconnecting does not change the path's length.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LatencyModel {
    /// The same latency everywhere.
    Constant {
        /// One-way latency.
        ms: f64,
    },
    /// Uniform in `[min_ms, max_ms]` per pair.
    Uniform {
        /// Lower bound.
        min_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Nodes are placed in regions by weight; a pair's latency is the matrix entry of their
    /// regions (the matrix must be square, one row per region).
    Regions {
        /// Relative share of nodes in each region.
        weights: Vec<f64>,
        /// One-way latency in ms from region i to region j.
        matrix_ms: Vec<Vec<f64>>,
    },
}

impl LatencyModel {
    fn validate(&self) -> Result<(), ScenarioError> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let valid = match self {
            LatencyModel::Constant { ms } => ok(*ms),
            LatencyModel::Uniform { min_ms, max_ms } => ok(*min_ms) && ok(*max_ms) && min_ms <= max_ms,
            LatencyModel::Regions { weights, matrix_ms } => {
                !weights.is_empty()
                    && weights.iter().all(|w| ok(*w))
                    && weights.iter().sum::<f64>() > 0.0
                    && matrix_ms.len() == weights.len()
                    && matrix_ms.iter().all(|row| row.len() == weights.len() && row.iter().all(|v| ok(*v)))
            }
        };
        if valid {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(
                "network.latency: values must be ≥ 0, min ≤ max, and a regions matrix square with one row per weight"
                    .into(),
            ))
        }
    }
}

/// The simulated resolver, backed by the core's resolver registry (the one the resolver
/// service runs): a node registers when it opens and unregisters when it leaves gracefully; a
/// crashed node's entry stays until its registration lifetime runs out, as it would with a
/// real resolver service (it cannot know the node died).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// Round trip to the resolver.
    pub rtt_ms: f64,
    /// How long a crashed node's registration lingers (the design's default lifetime: 10 min).
    pub registration_ttl_secs: f64,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig { rtt_ms: 20.0, registration_ttl_secs: 600.0 }
    }
}

/// What a crash looks like from outside.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrashConfig {
    /// How peers learn of the crash.
    pub mode: CrashMode,
    /// With `reset`: time until each peer's transport reports the connection reset.
    pub detection_delay_ms: f64,
}

impl Default for CrashConfig {
    fn default() -> Self {
        CrashConfig { mode: CrashMode::Silent, detection_delay_ms: 0.0 }
    }
}

/// How peers of a crashed node find out.
#[derive(Copy, Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CrashMode {
    /// The host vanished: nothing tells the peers; their keepalive / idle timeout must. New
    /// connects to it hang until the dialer's connect timeout.
    Silent,
    /// The process died and its OS resets the connections: each peer sees a reset after
    /// `detection_delay_ms` (plus the link's latency); new connects are refused.
    Reset,
}

/// Continuous churn: nodes leave or crash and fresh nodes take their place.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnConfig {
    /// Share of the initial node count replaced per simulated minute (0.1 = 10%). Departures
    /// form a Poisson process with this rate; each departure starts a replacement.
    pub replace_per_min: f64,
    /// Churn starts here (after the mesh has formed).
    pub start_secs: f64,
    /// Share of departures that leave gracefully (Disconnect LeavingMesh); the rest crash.
    pub graceful_fraction: f64,
    /// How the replacement appears.
    pub replacement: Replacement,
    /// Delay between a departure and its replacement's start.
    pub restart_delay_secs: f64,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        ChurnConfig {
            replace_per_min: 0.1,
            start_secs: 60.0,
            graceful_fraction: 0.5,
            replacement: Replacement::NewHost,
            restart_delay_secs: 0.0,
        }
    }
}

/// Where a replacement node runs.
#[derive(Copy, Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    /// A new host with a new address.
    NewHost,
    /// The departed node restarts on the same host and address, with a new NodeId and seed.
    Restart,
}

/// A share of the live nodes crashing at the same instant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MassFailure {
    /// When.
    pub at_secs: f64,
    /// Share of the nodes alive at that time that crash.
    pub fraction: f64,
}

/// A cut of the network: `fraction` of the live nodes (chosen at random) can reach each other
/// but not the rest. Bytes on links across the cut stall (they are not lost: a TCP stream
/// retransmits) and arrive after the heal if their links still exist; connects across the cut
/// hang. The resolver stays reachable from both sides.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// When the cut starts.
    pub at_secs: f64,
    /// How long it lasts.
    pub duration_secs: f64,
    /// Share of live nodes on the far side.
    pub fraction: f64,
}

/// Publishers: at a fixed rate, a random online node sends a flood.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Floods per simulated second over the whole mesh (0 = none).
    pub rate_per_sec: f64,
    /// Payload bytes.
    pub size: usize,
    /// First flood at this time.
    pub start_secs: f64,
    /// Channel paths; every node opens all of them and sends round-robin over them.
    pub paths: Vec<String>,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig { rate_per_sec: 1.0, size: 1024, start_secs: 30.0, paths: vec!["/chat".into()] }
    }
}

/// Changes to the core's defaults (fields left out keep the core's default).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoreOverrides {
    /// `Config::min_neighbors`.
    pub min_neighbors: Option<usize>,
    /// `Config::ideal_neighbors`.
    pub ideal_neighbors: Option<usize>,
    /// `Config::max_neighbors`.
    pub max_neighbors: Option<usize>,
    /// `Config::maintainer_interval`, seconds.
    pub maintainer_interval_secs: Option<f64>,
    /// `Config::refresh_interval`, seconds; 0 disables the refresh.
    pub refresh_interval_secs: Option<f64>,
    /// `Config::keepalive_interval`, seconds.
    pub keepalive_interval_secs: Option<f64>,
    /// `Config::idle_timeout`, seconds.
    pub idle_timeout_secs: Option<f64>,
    /// `Config::connect_timeout`, seconds.
    pub connect_timeout_secs: Option<f64>,
    /// `Config::link_queue_bytes`.
    pub link_queue_bytes: Option<usize>,
}

impl CoreOverrides {
    /// Applies the overrides to a core configuration.
    pub fn apply(&self, c: &mut peerchannel_core::Config) {
        if let Some(v) = self.min_neighbors {
            c.min_neighbors = v;
        }
        if let Some(v) = self.ideal_neighbors {
            c.ideal_neighbors = v;
        }
        if let Some(v) = self.max_neighbors {
            c.max_neighbors = v;
        }
        if let Some(v) = self.maintainer_interval_secs {
            c.maintainer_interval = secs(v);
        }
        if let Some(v) = self.refresh_interval_secs {
            c.refresh_interval = if v > 0.0 { Some(secs(v)) } else { None };
        }
        if let Some(v) = self.keepalive_interval_secs {
            c.keepalive_interval = secs(v);
        }
        if let Some(v) = self.idle_timeout_secs {
            c.idle_timeout = secs(v);
        }
        if let Some(v) = self.connect_timeout_secs {
            c.connect_timeout = secs(v);
        }
        if let Some(v) = self.link_queue_bytes {
            c.link_queue_bytes = v;
        }
    }
}

/// The security modes the simulator runs. `Message` alone is left out: it needs certificate
/// credentials (a password-mode key is self-made, so without TLS its signatures would prove
/// nothing), and the simulator runs password meshes only.
#[derive(Copy, Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum SecurityModeName {
    /// Plain links, unsigned floods.
    #[default]
    #[serde(rename = "none")]
    None,
    /// TLS 1.3 on every link, peers authenticated by the mesh password.
    #[serde(rename = "transport")]
    Transport,
    /// TLS links as with `transport`, and every flood signed by its origin.
    #[serde(rename = "transport+message")]
    TransportAndMessage,
}

impl SecurityModeName {
    /// Every mode, for CLI help and error messages.
    pub const ALL: [SecurityModeName; 3] =
        [SecurityModeName::None, SecurityModeName::Transport, SecurityModeName::TransportAndMessage];

    /// The name used in scenario files, flags and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityModeName::None => "none",
            SecurityModeName::Transport => "transport",
            SecurityModeName::TransportAndMessage => "transport+message",
        }
    }

    /// The core's mode.
    pub fn core(self) -> peerchannel_core::security::SecurityMode {
        use peerchannel_core::security::SecurityMode;
        match self {
            SecurityModeName::None => SecurityMode::None,
            SecurityModeName::Transport => SecurityMode::Transport,
            SecurityModeName::TransportAndMessage => SecurityMode::TransportAndMessage,
        }
    }
}

impl fmt::Display for SecurityModeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SecurityModeName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SecurityModeName::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = SecurityModeName::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown security mode {s:?} (one of: {})", names.join(", "))
        })
    }
}

/// PBKDF2 iterations the simulator stretches the mesh password with unless a scenario says
/// otherwise. Far below the core's default (600,000) on purpose: the derivation's cost is per
/// process in a real deployment, but a simulator that derived it per node would pay it for every
/// one of thousands of (re)started nodes and the derivation would dominate the run. The
/// simulator derives the key once per run and shares it; the construction (and everything on
/// the wire) is the same at any count.
pub const SIM_PBKDF2_ITERATIONS: u32 = 1000;

/// Link security and flood signing for every node of the run (the core's `Config::security`
/// with mesh-password credentials). Each node's key pair is derived from its seed, so runs
/// stay reproducible; in `transport+message` a node's NodeId is derived from its key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `none`, `transport` or `transport+message`.
    pub mode: SecurityModeName,
    /// The mesh password (required by the secure modes, refused with `none`).
    pub password: Option<String>,
    /// PBKDF2 iterations for the mesh key (default [`SIM_PBKDF2_ITERATIONS`]).
    pub pbkdf2_iterations: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig { mode: SecurityModeName::None, password: None, pbkdf2_iterations: SIM_PBKDF2_ITERATIONS }
    }
}

impl SecurityConfig {
    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: &str| Err(ScenarioError::Invalid(m.into()));
        match (self.mode, &self.password) {
            (SecurityModeName::None, Some(_)) => bad("security.password is set but security.mode is \"none\""),
            (SecurityModeName::None, None) => Ok(()),
            (_, None) => bad("security.mode needs security.password (the simulator runs password meshes)"),
            (_, Some(_)) if self.pbkdf2_iterations == 0 => bad("security.pbkdf2_iterations must be at least 1"),
            (_, Some(_)) => Ok(()),
        }
    }

    /// The core's security configuration. The mesh key is derived here, once: call it once
    /// per run and clone the result into every node's configuration (the clone shares the key).
    pub fn to_core(
        &self,
        mesh: &peerchannel_core::MeshId,
    ) -> Result<peerchannel_core::security::Security, ScenarioError> {
        use peerchannel_core::security::{Credentials, Security};
        self.validate()?;
        let credentials = match &self.password {
            Some(pw) if self.mode != SecurityModeName::None => {
                let iterations = std::num::NonZeroU32::new(self.pbkdf2_iterations)
                    .ok_or_else(|| ScenarioError::Invalid("security.pbkdf2_iterations must be at least 1".into()))?;
                Credentials::password_with_iterations(mesh, pw.as_str(), iterations)
            }
            _ => Credentials::None,
        };
        // `key_seed` stays `None`: each node's key pair then derives from its `Config::seed`.
        Ok(Security::new(self.mode.core(), credentials))
    }

    /// A one-line description for reports (never the password).
    pub fn describe(&self) -> String {
        match self.mode {
            SecurityModeName::None => "none".into(),
            m => format!("{m} (mesh password, PBKDF2 {} iterations)", self.pbkdf2_iterations),
        }
    }
}

/// How the run is measured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Components, degrees and liveness are sampled this often.
    pub sample_secs: f64,
    /// A message's window: a node counts toward its reliability if it had joined (been online)
    /// when the message was sent and stayed alive for this long after; only deliveries within
    /// the window count. Messages whose window passes the end of the run are not scored.
    pub window_secs: f64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { sample_secs: 5.0, window_secs: 10.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_parse_and_validate() {
        for (name, text) in BUILT_IN {
            let s = Scenario::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&s.name, name);
            assert!(Scenario::built_in(name).is_some());
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected() {
        assert!(matches!(Scenario::from_toml("nodez = 3"), Err(ScenarioError::Parse(_))));
        assert!(matches!(Scenario::from_toml("nodes = 0"), Err(ScenarioError::Invalid(_))));
        let bad_matrix = "[network.latency]\nkind = \"regions\"\nweights = [1.0, 1.0]\nmatrix_ms = [[1.0]]";
        assert!(matches!(Scenario::from_toml(bad_matrix), Err(ScenarioError::Invalid(_))));
        assert!(matches!(Scenario::from_toml("[network]\nloss = 1.5"), Err(ScenarioError::Invalid(_))));
    }

    #[test]
    fn a_scenario_is_named_by_built_in_name_or_by_path() {
        assert_eq!(Scenario::named("steady-1k").unwrap().name, "steady-1k");
        let dir = std::env::temp_dir().join(format!("peerchannel-sim-named-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (good, bad) = (dir.join("good.toml"), dir.join("bad.toml"));
        std::fs::write(&good, "name = \"mine\"\nnodes = 7\n").unwrap();
        std::fs::write(&bad, "nodez = 7\n").unwrap();
        assert_eq!(Scenario::named(good.to_str().unwrap()).unwrap().nodes, 7);
        let e = Scenario::named(bad.to_str().unwrap()).unwrap_err();
        assert!(matches!(&e, ScenarioError::Parse(m) if m.contains("bad.toml")), "{e}");
        let e = Scenario::named("no-such-scenario").unwrap_err();
        assert!(matches!(e, ScenarioError::NotFound { .. }));
        assert!(e.to_string().contains("churn-1k"), "the message lists the built-in names: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("README has a toml example") + 8;
        let len = readme[start..].find("```").expect("closed block");
        let s = Scenario::from_toml(&readme[start..start + len]).unwrap();
        assert_eq!(s.mass_failure.len(), 1);
        assert_eq!(s.core.max_neighbors, Some(9));
    }

    #[test]
    fn security_table_parses_and_bad_combinations_are_rejected() {
        let s = Scenario::from_toml("[security]\nmode = \"transport+message\"\npassword = \"pw\"").unwrap();
        assert_eq!(s.security.mode, SecurityModeName::TransportAndMessage);
        assert_eq!(s.security.pbkdf2_iterations, SIM_PBKDF2_ITERATIONS);
        assert!(!s.security.describe().contains("pw"), "the password must not show in reports");
        let s =
            Scenario::from_toml("[security]\nmode = \"transport\"\npassword = \"pw\"\npbkdf2_iterations = 7").unwrap();
        assert_eq!((s.security.mode, s.security.pbkdf2_iterations), (SecurityModeName::Transport, 7));
        assert_eq!(Scenario::from_toml("").unwrap().security, SecurityConfig::default());
        // Message mode alone needs certificates, which the simulator does not run.
        assert!(matches!(Scenario::from_toml("[security]\nmode = \"message\""), Err(ScenarioError::Parse(_))));
        for bad in [
            "[security]\nmode = \"transport\"",
            "[security]\npassword = \"pw\"",
            "[security]\nmode = \"transport\"\npassword = \"pw\"\npbkdf2_iterations = 0",
        ] {
            assert!(matches!(Scenario::from_toml(bad), Err(ScenarioError::Invalid(_))), "{bad}");
        }
        assert_eq!("transport+message".parse::<SecurityModeName>(), Ok(SecurityModeName::TransportAndMessage));
        assert!("message".parse::<SecurityModeName>().is_err());
    }

    #[test]
    fn round_trips_through_toml() {
        let mut s = Scenario { churn: Some(ChurnConfig::default()), ..Scenario::default() };
        s.partition.push(Partition { at_secs: 10.0, duration_secs: 5.0, fraction: 0.5 });
        s.network.latency = LatencyModel::Regions { weights: vec![1.0, 2.0], matrix_ms: vec![vec![5.0, 80.0]; 2] };
        assert_eq!(Scenario::from_toml(&s.to_toml()).unwrap(), s);
        s.security = SecurityConfig {
            mode: SecurityModeName::TransportAndMessage,
            password: Some("pw".into()),
            pbkdf2_iterations: 3,
        };
        assert_eq!(Scenario::from_toml(&s.to_toml()).unwrap(), s);
    }
}
