//! The network model: host addresses, per-pair latency, jitter, loss as retransmission delay,
//! per-node uplink serialization, and in-order delivery on each direction of a link.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use peerchannel_core::Rng;

use crate::scenario::{millis, LatencyModel, NetworkConfig};

/// The port every simulated node listens on.
pub const LISTEN_PORT: u16 = 7000;

/// Hosts are numbered densely; host `h` is `10.x.y.z:7000` with `h` in the low 24 bits.
pub fn host_addr(h: u32) -> SocketAddr {
    let [_, a, b, c] = h.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), LISTEN_PORT)
}

/// The host of a listen address made by [`host_addr`], `None` for any other address.
pub fn host_of(addr: SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == LISTEN_PORT && v4.ip().octets()[0] == 10 => {
            let [_, a, b, c] = v4.ip().octets();
            Some(u32::from_be_bytes([0, a, b, c]))
        }
        _ => None,
    }
}

/// The source address an acceptor sees for a connection from host `h` (an ephemeral port, as
/// a real accept would report).
pub fn ephemeral_addr(h: u32, conn: u32) -> SocketAddr {
    let [_, a, b, c] = h.to_be_bytes();
    let port = 32768 + (conn % 28000) as u16;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, c)), port)
}

fn nanos(ms: f64) -> u64 {
    u64::try_from(millis(ms).as_nanos()).unwrap_or(u64::MAX)
}

/// A 64-bit mix (SplitMix64's finalizer): a stable hash of a node pair for per-pair latency.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Latency, jitter and loss of the whole network, plus each host's region.
#[derive(Debug)]
pub struct Network {
    model: LatencyModel,
    jitter: u64,
    loss: f64,
    retransmit: u64,
    setup: u64,
    /// Uplink rate in bytes per second; 0 = unlimited.
    uplink_bytes_per_sec: u64,
    /// Socket buffer room per node, in bytes.
    pub uplink_buffer: usize,
    pair_salt: u64,
    rng: Rng,
    regions: Vec<u16>,
    cumulative_weights: Vec<f64>,
}

impl Network {
    /// A network as `cfg` describes, seeded with `seed`.
    pub fn new(cfg: &NetworkConfig, seed: u64) -> Network {
        let cumulative_weights = match &cfg.latency {
            LatencyModel::Regions { weights, .. } => weights
                .iter()
                .scan(0.0, |acc, w| {
                    *acc += w;
                    Some(*acc)
                })
                .collect(),
            _ => vec![1.0],
        };
        Network {
            model: cfg.latency.clone(),
            jitter: nanos(cfg.jitter_ms),
            loss: cfg.loss,
            retransmit: nanos(cfg.retransmit_ms),
            setup: nanos(cfg.connect_setup_ms),
            uplink_bytes_per_sec: (cfg.uplink_mbps * 1e6 / 8.0) as u64,
            uplink_buffer: cfg.uplink_buffer_bytes.max(1),
            pair_salt: mix(seed ^ 0x5EED_1A7E_0000_0001),
            rng: Rng::from_seed(seed ^ 0x0E70_0000_0002),
            regions: Vec::new(),
            cumulative_weights,
        }
    }

    /// Places a new host (hosts are numbered in creation order) in a region.
    pub fn add_host(&mut self, h: u32, rng: &mut Rng) {
        let total = self.cumulative_weights.last().copied().unwrap_or(1.0);
        let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let region = self.cumulative_weights.iter().position(|c| x < *c).unwrap_or(0);
        let h = h as usize;
        if self.regions.len() <= h {
            self.regions.resize(h + 1, 0);
        }
        self.regions[h] = region as u16;
    }

    /// The one-way base latency between two hosts, in nanoseconds; the same every time for the
    /// same pair, in both directions.
    pub fn pair_latency(&self, a: u32, b: u32) -> u64 {
        match &self.model {
            LatencyModel::Constant { ms } => nanos(*ms),
            LatencyModel::Uniform { min_ms, max_ms } => {
                let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                let h = mix(self.pair_salt ^ (u64::from(lo) << 32 | u64::from(hi)));
                let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                nanos(min_ms + u * (max_ms - min_ms))
            }
            LatencyModel::Regions { matrix_ms, .. } => {
                let ra = self.regions.get(a as usize).copied().unwrap_or(0) as usize;
                let rb = self.regions.get(b as usize).copied().unwrap_or(0) as usize;
                matrix_ms.get(ra).and_then(|row| row.get(rb)).map_or(0, |ms| nanos(*ms))
            }
        }
    }

    /// The delay of one transmission on a link of base latency `base`: jitter, plus a
    /// retransmission timeout when a segment of it is lost.
    pub fn transit(&mut self, base: u64) -> u64 {
        let mut d = base;
        if self.jitter > 0 {
            d += self.rng.next_u64() % (self.jitter + 1);
        }
        if self.loss > 0.0 && ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < self.loss {
            d += self.retransmit + base;
        }
        d
    }

    /// Extra connection set-up time.
    pub fn setup(&self) -> u64 {
        self.setup
    }

    /// Whether uplinks are rate-limited.
    pub fn uplink_limited(&self) -> bool {
        self.uplink_bytes_per_sec > 0
    }

    /// Nanoseconds to put `bytes` on an uplink.
    pub fn serialization(&self, bytes: usize) -> u64 {
        if self.uplink_bytes_per_sec == 0 {
            0
        } else {
            (bytes as u128 * 1_000_000_000 / u128::from(self.uplink_bytes_per_sec)) as u64
        }
    }

    /// Bytes an uplink still has to send when it is busy until `busy_until` at `now`.
    pub fn backlog(&self, now: u64, busy_until: u64) -> usize {
        if busy_until <= now || self.uplink_bytes_per_sec == 0 {
            0
        } else {
            ((busy_until - now) as u128 * u128::from(self.uplink_bytes_per_sec) / 1_000_000_000) as usize
        }
    }
}

/// One direction of a link: a byte stream that never reorders. Each write arrives no earlier
/// than the write before it, whatever jitter or loss delays it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stream {
    last_arrival: u64,
}

impl Stream {
    /// When a write departing at `depart` with transit delay `delay` arrives, keeping order.
    pub fn arrival(&mut self, depart: u64, delay: u64) -> u64 {
        let at = depart.saturating_add(delay).max(self.last_arrival);
        self.last_arrival = at;
        at
    }

    /// Nothing written on this stream may arrive before `at` (the connection is not up there).
    pub fn not_before(&mut self, at: u64) {
        self.last_arrival = self.last_arrival.max(at);
    }
}

/// A node's uplink: writes are serialized one after another at the link rate.
#[derive(Debug, Default, Clone, Copy)]
pub struct Uplink {
    /// When the last queued byte leaves.
    pub busy_until: u64,
}

impl Uplink {
    /// Queues `bytes` at `now`; returns when the last of them has left the host.
    pub fn send(&mut self, net: &Network, now: u64, bytes: usize) -> u64 {
        let start = self.busy_until.max(now);
        self.busy_until = start + net.serialization(bytes);
        self.busy_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for h in [0, 1, 255, 256, 65_535, 1 << 20, (1 << 24) - 1] {
            assert_eq!(host_of(host_addr(h)), Some(h));
        }
        assert_eq!(host_of(ephemeral_addr(5, 9)), None, "an ephemeral port is no listen address");
        assert_eq!(host_of("192.168.0.1:7000".parse().unwrap()), None);
    }

    #[test]
    fn stream_keeps_byte_order_under_jitter() {
        let cfg =
            NetworkConfig { latency: LatencyModel::Constant { ms: 10.0 }, jitter_ms: 50.0, ..NetworkConfig::default() };
        let mut net = Network::new(&cfg, 3);
        let mut s = Stream::default();
        let mut last = 0;
        let mut reordered_by_jitter_alone = false;
        let mut prev_raw = 0;
        for i in 0..1000u64 {
            let depart = i * 1_000_000; // a write every ms, jitter up to 50 ms
            let d = net.transit(net.pair_latency(1, 2));
            let raw = depart + d;
            reordered_by_jitter_alone |= raw < prev_raw;
            prev_raw = raw;
            let at = s.arrival(depart, d);
            assert!(at >= last, "write {i} overtook the one before it");
            assert!(at >= raw);
            last = at;
        }
        assert!(reordered_by_jitter_alone, "the test needs jitter large enough to reorder");
    }

    #[test]
    fn per_pair_latency_is_stable_symmetric_and_in_range() {
        let cfg = NetworkConfig::default(); // uniform 10..60 ms
        let net = Network::new(&cfg, 9);
        let mut distinct = std::collections::BTreeSet::new();
        for a in 0..50 {
            for b in 0..50 {
                let l = net.pair_latency(a, b);
                assert_eq!(l, net.pair_latency(b, a));
                assert!((10_000_000..=60_000_000).contains(&l));
                distinct.insert(l);
            }
        }
        assert!(distinct.len() > 100);
    }

    #[test]
    fn regions_use_the_matrix() {
        let cfg = NetworkConfig {
            latency: LatencyModel::Regions { weights: vec![1.0, 0.0], matrix_ms: vec![vec![5.0, 100.0]; 2] },
            ..NetworkConfig::default()
        };
        let mut net = Network::new(&cfg, 1);
        let mut rng = Rng::from_seed(1);
        net.add_host(0, &mut rng);
        net.add_host(1, &mut rng);
        // Weight 0 for region 1: both hosts land in region 0.
        assert_eq!(net.pair_latency(0, 1), 5_000_000);
    }

    #[test]
    fn loss_adds_a_retransmission_delay() {
        let cfg = NetworkConfig {
            latency: LatencyModel::Constant { ms: 10.0 },
            jitter_ms: 0.0,
            loss: 1.0,
            retransmit_ms: 200.0,
            ..NetworkConfig::default()
        };
        let mut net = Network::new(&cfg, 1);
        assert_eq!(net.transit(10_000_000), 220_000_000);
    }

    #[test]
    fn uplink_serializes_writes_and_reports_backlog() {
        let cfg = NetworkConfig { uplink_mbps: 8.0, ..NetworkConfig::default() }; // 1 MB/s
        let net = Network::new(&cfg, 1);
        let mut up = Uplink::default();
        // 1000 bytes take 1 ms; two writes at t=0 queue one behind the other.
        assert_eq!(up.send(&net, 0, 1000), 1_000_000);
        assert_eq!(up.send(&net, 0, 1000), 2_000_000);
        assert_eq!(net.backlog(0, up.busy_until), 2000);
        assert_eq!(net.backlog(1_500_000, up.busy_until), 500);
        // An idle uplink starts at `now`.
        assert_eq!(up.send(&net, 10_000_000, 500), 10_500_000);
    }
}
