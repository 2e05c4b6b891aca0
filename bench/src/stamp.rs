//! The payload header both harnesses stamp and read (send time and sequence number), and the
//! quantile they report. Shared by file with `bench/peers` (a workspace of its own), which
//! includes it with `#[path]`.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the header at the start of every payload: send time (ns, u64 LE), sequence (u64 LE).
pub const HEADER: usize = 16;

/// The measurement window and output options every harness takes (`#[command(flatten)]`).
#[derive(clap::Args, Debug, Clone)]
pub struct Window {
    /// Offered rate of the latency mode, messages per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u32,
    /// Seconds before anything is counted.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds measured after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Print one JSON object per measurement on standard output (the table goes to standard
    /// error).
    #[arg(long)]
    pub json: bool,
}

impl Window {
    /// Checks the window before anything runs: seconds that `Duration` can hold (a negative or
    /// infinite value would panic there), warm-up ≥ 0, duration > 0, and under an hour in all.
    pub fn check(&self) -> Result<(), String> {
        let ok = self.warmup >= 0.0 && self.duration > 0.0 && self.warmup + self.duration < 3600.0;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "--warmup and --duration must be seconds, warmup ≥ 0 and duration > 0, under an hour together (got {} and {})",
                self.warmup, self.duration
            ))
        }
    }
}

/// The message sizes of the whole matrix (`--size all`).
pub const SIZES: [usize; 3] = [64, 1024, 65536];

/// Reads a `--size` argument: `all`, or one size of at least [`HEADER`] bytes.
pub fn parse_sizes(arg: &str) -> Result<Vec<usize>, String> {
    if arg == "all" {
        return Ok(SIZES.to_vec());
    }
    match arg.parse() {
        Ok(n) if n >= HEADER => Ok(vec![n]),
        Ok(_) => Err(format!("--size must be at least {HEADER} (the send time and sequence number)")),
        Err(_) => Err(format!("--size: {arg:?} is neither a number nor `all`")),
    }
}

/// Start of the process's clock for the timestamps carried in payloads.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds of `at` on the payload clock.
pub fn stamp(at: Instant) -> u64 {
    at.saturating_duration_since(base()).as_nanos() as u64
}

/// A payload of `size` bytes carrying `seq` and the send time `sent`.
pub fn payload(size: usize, seq: u64, sent: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64_le(stamp(sent));
    b.put_u64_le(seq);
    b.resize(size, 0);
    b.freeze()
}

/// The send time and sequence number a payload carries.
pub fn header(p: &[u8]) -> Option<(u64, u64)> {
    let sent = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
    Some((sent, seq))
}

/// The `q` quantile (0..=1) of sorted values, in microseconds.
pub fn quantile_us(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1e3)
}
