//! The measurements: throughput (as fast as the origin can send) and latency (a fixed offered
//! rate, the send time in the payload), for a peerchannel topology and for the plain TCP
//! reference. Every figure counts only what happens in the window after the warm-up.

use std::time::{Duration, Instant};

use peerchannel_tokio::Channel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::mesh::Net;
pub use crate::stamp::quantile_us;
use crate::stamp::{header, payload, stamp, HEADER};
use crate::sys;

/// The channel every run uses.
const PATH: &str = "/bench";
/// Sequence number of the probes that check every receiver is reached before the run.
const PROBE: u64 = u64::MAX;
/// How long receivers wait for in-flight messages after the last latency-mode send.
const GRACE: Duration = Duration::from_secs(1);

/// Throughput or latency, and the timing of the run.
#[derive(Copy, Clone, Debug)]
pub struct Plan {
    /// Payload bytes per message (at least [`HEADER`]).
    pub size: usize,
    /// Nothing is counted before this much time has passed.
    pub warmup: Duration,
    /// The measured window after the warm-up.
    pub duration: Duration,
    /// `None`: as fast as possible (throughput); `Some(r)`: `r` messages per second (latency).
    pub rate: Option<u32>,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Measured {
    /// Messages per second at the slowest receiver, in the window (throughput mode).
    pub slowest_msgs_per_s: Option<f64>,
    /// Messages per second averaged over the receivers, in the window (throughput mode).
    pub mean_msgs_per_s: Option<f64>,
    /// Messages delivered in the window, summed over the receivers.
    pub deliveries: u64,
    /// Latencies in nanoseconds, origin → every receiver (latency mode), sorted.
    pub latencies_ns: Vec<u64>,
    /// Messages sent in the window times receivers, less those received (latency mode).
    pub lost: Option<u64>,
    /// How far the sender fell behind its schedule at worst (latency mode).
    pub max_send_lag: Option<Duration>,
    /// Process CPU time (user + system) spent in the window.
    pub cpu: Duration,
    /// Heap bytes of the process once the topology is formed and idle, less the heap before it.
    pub heap_idle: isize,
    /// Largest heap bytes sampled in the window, less the heap before the topology.
    pub heap_load: isize,
    /// Messages dropped by the receivers' channel queues (full queue).
    pub dropped: u64,
}

fn tokio_at(t: Instant) -> tokio::time::Instant {
    tokio::time::Instant::from_std(t)
}

/// The window's start and end, and the CPU time and peak heap measured over it.
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn new(plan: &Plan) -> Window {
        let start = Instant::now() + plan.warmup;
        Window { start, end: start + plan.duration }
    }

    /// Sleeps through the window; the CPU time spent in it and the largest heap sampled.
    async fn observe(&self) -> (Duration, isize) {
        tokio::time::sleep_until(tokio_at(self.start)).await;
        let cpu = sys::cpu_time();
        let sampler = sys::HeapSampler::start();
        tokio::time::sleep_until(tokio_at(self.end)).await;
        (sys::cpu_time().saturating_sub(cpu), sampler.finish())
    }
}

/// What one receiver saw.
#[derive(Default)]
struct Received {
    in_window: u64,
    latencies_ns: Vec<u64>,
}

async fn receive(mut rx: Channel, window: (Instant, Instant), latency: bool) -> (Received, Channel) {
    let (start, end) = window;
    let (from, until) = (stamp(start), if latency { end + GRACE } else { end });
    let mut r = Received::default();
    while let Ok(Some(m)) = tokio::time::timeout_at(tokio_at(until), rx.recv()).await {
        if latency {
            let now = stamp(Instant::now());
            match header(&m.payload) {
                Some((_, PROBE)) | None => {}
                Some((sent, _)) if sent >= from => r.latencies_ns.push(now.saturating_sub(sent)),
                Some(_) => {}
            }
        } else if Instant::now() >= start {
            r.in_window += 1;
        }
    }
    (r, rx)
}

/// Sends probes until every receiver has one, so the run starts on a formed topology.
async fn probe(tx: &Channel, rxs: &mut [Channel]) -> Result<(), Box<dyn std::error::Error>> {
    let mut reached = vec![false; rxs.len()];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reached.iter().all(|&r| r) {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} receivers reached in 10 s",
                reached.iter().filter(|&&r| r).count(),
                rxs.len()
            )
            .into());
        }
        tx.send(payload(HEADER, PROBE, Instant::now())).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (k, rx) in rxs.iter_mut().enumerate() {
            while rx.try_recv().is_some() {
                reached[k] = true;
            }
        }
    }
    Ok(())
}

/// Sends at `rate` messages per second from now until `end`; the messages sent at or after
/// `from` and the worst lag behind the schedule.
async fn paced(
    tx: &Channel,
    size: usize,
    rate: u32,
    from: Instant,
    end: Instant,
) -> Result<(u64, Duration), peerchannel_tokio::Error> {
    let t0 = Instant::now();
    let (mut seq, mut in_window, mut lag) = (0u64, 0u64, Duration::ZERO);
    loop {
        let due = t0 + Duration::from_secs_f64(seq as f64 / f64::from(rate.max(1)));
        if due >= end {
            return Ok((in_window, lag));
        }
        tokio::time::sleep_until(tokio_at(due)).await;
        let now = Instant::now();
        lag = lag.max(now - due);
        tx.send(payload(size, seq, now)).await?;
        if now >= from {
            in_window += 1;
        }
        seq += 1;
    }
}

/// Runs `plan` on `net`: the origin sends, every receiver counts.
pub async fn peerchannel(net: &Net, plan: Plan, heap_before: isize) -> Result<Measured, Box<dyn std::error::Error>> {
    let tx = net.nodes[0].channel(PATH)?;
    let mut rxs = net.receivers.iter().map(|&i| net.nodes[i].channel(PATH)).collect::<Result<Vec<_>, _>>()?;
    probe(&tx, &mut rxs).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for rx in &mut rxs {
        while rx.try_recv().is_some() {}
    }
    let heap_idle = sys::heap() - heap_before;

    let window = Window::new(&plan);
    let latency = plan.rate.is_some();
    let tasks: Vec<_> =
        rxs.into_iter().map(|rx| tokio::spawn(receive(rx, (window.start, window.end), latency))).collect();
    let (start, end) = (window.start, window.end);
    let size = plan.size;
    let sender = tokio::spawn(async move {
        match plan.rate {
            Some(rate) => paced(&tx, size, rate, start, end).await.map(|(n, lag)| (Some(n), Some(lag))),
            None => {
                let p = payload(size, 0, Instant::now());
                while Instant::now() < end {
                    tx.send(p.clone()).await?;
                }
                Ok((None, None))
            }
        }
    });
    let (cpu, heap_peak) = window.observe().await;
    let (sent, lag) =
        tokio::time::timeout(Duration::from_secs(30), sender).await.map_err(|_| "the sender is stuck")???;

    let mut m = Measured { cpu, heap_idle, heap_load: heap_peak - heap_before, ..Measured::default() };
    let secs = plan.duration.as_secs_f64().max(1e-9);
    let mut counts = Vec::new();
    let receivers = tasks.len() as u64;
    for t in tasks {
        let (r, rx) = t.await?;
        m.dropped += rx.dropped();
        counts.push(r.in_window);
        m.latencies_ns.extend(r.latencies_ns);
    }
    if latency {
        m.latencies_ns.sort_unstable();
        m.deliveries = m.latencies_ns.len() as u64;
        m.lost = sent.map(|s| (s * receivers).saturating_sub(m.deliveries));
        m.max_send_lag = lag;
    } else {
        m.deliveries = counts.iter().sum();
        m.slowest_msgs_per_s = counts.iter().min().map(|&c| c as f64 / secs);
        m.mean_msgs_per_s = Some(m.deliveries as f64 / receivers.max(1) as f64 / secs);
    }
    Ok(m)
}

/// The reference: a plain tokio TCP stream from a sender to a receiver in this process,
/// carrying the same byte stream: one `write_all` of `size` bytes per message (as the adapter's
/// `throughput` example), or with `batched` (throughput only) as many whole messages per
/// `write_all` as fit in 64 KiB, the most a single stream carries on this machine.
pub async fn plain_tcp(plan: Plan, batched: bool) -> Result<Measured, Box<dyn std::error::Error>> {
    let heap_before = sys::heap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut w = tokio::net::TcpStream::connect(addr).await?;
    let (mut r, _) = listener.accept().await?;
    if plan.rate.is_some() {
        // Latency: no Nagle delay (the nodes set TCP_NODELAY too).
        w.set_nodelay(true)?;
        r.set_nodelay(true)?;
    }
    let heap_idle = sys::heap() - heap_before;

    let window = Window::new(&plan);
    let (start, end) = (window.start, window.end);
    let size = plan.size;
    let latency = plan.rate.is_some();
    let reader = tokio::spawn(async move {
        let mut got = Received::default();
        if latency {
            // Until the writer, done at the window's end, closes the stream.
            let mut buf = vec![0u8; size];
            let from = stamp(start);
            while r.read_exact(&mut buf).await.is_ok() {
                let now = stamp(Instant::now());
                if let Some((sent, _)) = header(&buf) {
                    if sent >= from {
                        got.latencies_ns.push(now.saturating_sub(sent));
                    }
                }
            }
        } else {
            let mut buf = vec![0u8; 256 * 1024];
            let mut bytes = 0u64;
            // Until the writer, done at the window's end, closes the stream.
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                if now >= start && now < end {
                    bytes += n as u64;
                }
            }
            got.in_window = bytes / size as u64;
        }
        got
    });
    let writer = tokio::spawn(async move {
        let (mut seq, mut in_window, mut lag) = (0u64, 0u64, Duration::ZERO);
        match plan.rate {
            Some(rate) => {
                let t0 = Instant::now();
                loop {
                    let due = t0 + Duration::from_secs_f64(seq as f64 / f64::from(rate.max(1)));
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(tokio_at(due)).await;
                    let now = Instant::now();
                    lag = lag.max(now - due);
                    w.write_all(&payload(size, seq, now)).await?;
                    in_window += u64::from(now >= start);
                    seq += 1;
                }
            }
            None => {
                let per_write = if batched { (64 * 1024 / size).max(1) } else { 1 };
                let p = vec![0u8; size * per_write];
                while Instant::now() < end {
                    w.write_all(&p).await?;
                }
            }
        }
        Ok::<_, std::io::Error>((in_window, lag))
    });
    let (cpu, heap_peak) = window.observe().await;
    let (sent, lag) = writer.await??;
    let got = reader.await?;

    let mut m = Measured { cpu, heap_idle, heap_load: heap_peak - heap_before, ..Measured::default() };
    if latency {
        m.latencies_ns = got.latencies_ns;
        m.latencies_ns.sort_unstable();
        m.deliveries = m.latencies_ns.len() as u64;
        m.lost = Some(sent.saturating_sub(m.deliveries));
        m.max_send_lag = Some(lag);
    } else {
        let rate = got.in_window as f64 / plan.duration.as_secs_f64().max(1e-9);
        m.deliveries = got.in_window;
        m.slowest_msgs_per_s = Some(rate);
        m.mean_msgs_per_s = Some(rate);
    }
    Ok(m)
}
