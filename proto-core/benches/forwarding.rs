//! Benchmarks of the core's forwarding hot path.
//! The forwarding hot path: decode a 1 KiB Flood frame, check the seen cache, deliver it to the
//! local channel, and queue it to 3 neighbors (then pull the queued chunks as an adapter would).
//!
//! Run: `cargo bench -p peerchannel-core --bench forwarding`

use std::hint::black_box;
use std::time::{Duration, Instant as WallInstant};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use peerchannel_core::wire::{encode_control, encode_flood_header, Connect, Frame, Hello, VERSION};
use peerchannel_core::*;

const POOL: usize = 1 << 16;

struct Bench {
    node: Node,
    links: Vec<LinkId>,
    frames: Vec<Bytes>,
    now: Instant,
}

fn setup(payload: usize) -> Bench {
    let mut cfg = Config::new(MeshId::new("bench").unwrap(), 1);
    // IDs come back every POOL frames; a short memory lets them count as new again, while the
    // cache still holds thousands of entries as a busy node's would.
    cfg.seen_ttl = Duration::from_millis(3);
    let mut node = Node::new(cfg, Instant::ZERO).unwrap();
    node.open_channel(ChannelPath::new("/chat").unwrap());
    node.handle_input(Instant::ZERO, Input::Open);
    let mut links = Vec::new();
    for i in 0..4u64 {
        let link = node.accept(Instant::ZERO, format!("10.0.0.{i}:1").parse().unwrap()).unwrap();
        let mut hs = BytesMut::new();
        encode_control(
            &Frame::Hello(Hello { version: VERSION, security: 0, mesh: MeshId::new("bench").unwrap() }),
            &mut hs,
        );
        encode_control(
            &Frame::Connect(Connect { node: NodeId::new(100 + i).unwrap(), addrs: Default::default() }),
            &mut hs,
        );
        node.handle_input(Instant::ZERO, Input::Received { link, data: hs.freeze() });
        links.push(link);
    }
    while node.poll_output().is_some() {}
    for l in &links {
        while node.poll_transmit(*l, usize::MAX).is_some() {}
    }
    assert_eq!(node.neighbor_count(), 4);
    // One contiguous receive buffer of POOL frames, sliced per frame as an adapter's read would be.
    let mut buf = BytesMut::with_capacity(POOL * (payload + 64));
    let mut bounds = Vec::with_capacity(POOL);
    for i in 0..POOL as u64 {
        let start = buf.len();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_le_bytes());
        id[8..].copy_from_slice(&(i ^ 0x5555).to_le_bytes());
        encode_flood_header(8, 16, &id, 77, b"/chat", payload, &mut buf);
        buf.put_bytes(0xA5, payload);
        bounds.push((start, buf.len()));
    }
    let all = buf.freeze();
    let frames = bounds.into_iter().map(|(a, b)| all.slice(a..b)).collect();
    Bench { node, links, frames, now: Instant::ZERO }
}

impl Bench {
    /// One received frame through the node, outputs drained and neighbor queues pulled.
    fn forward_one(&mut self, i: usize) {
        self.now = self.now + Duration::from_micros(1);
        let data = self.frames[i % POOL].clone();
        self.node.handle_input(self.now, Input::Received { link: self.links[0], data });
        while let Some(o) = self.node.poll_output() {
            black_box(o);
        }
        for l in &self.links {
            while let Some(b) = self.node.poll_transmit(*l, usize::MAX) {
                black_box(b);
            }
        }
    }
}

fn forwarding(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let mut b = setup(1024);
    let mut i = 0usize;
    g.bench_function("1KiB_flood_to_3_neighbors", |bench| {
        bench.iter_custom(|iters| {
            let start = WallInstant::now();
            for _ in 0..iters {
                b.forward_one(i);
                i += 1;
            }
            start.elapsed()
        })
    });
    g.finish();
    let s = b.node.stats();
    assert_eq!(s.reassembly_copied_bytes, 0, "frames were copied");
    assert_eq!(s.duplicates, 0, "IDs were still remembered when reused");
    assert_eq!(s.floods_queued, 3 * s.floods_first);
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
