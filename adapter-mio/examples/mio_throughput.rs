//! Loopback throughput of mio nodes: one link A→B (one `mio::Poll`, one thread), or a chain
//! A→B→C with the relay B on a second thread and its own `Poll`. The same measurement as the tokio adapter's `throughput` example, for
//! comparing the two adapters in one run (see BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p peerchannel-mio --example mio_throughput -- --size 1024 --count 500000
//! cargo run --release -p peerchannel-mio --example mio_throughput -- --size 65536 --count 20000 --chain
//! ```

use std::time::{Duration, Instant};

use mio::{Events, Poll};
use peerchannel_mio::{Bytes, ChannelPath, Config, Error, MeshId, MioNode};

struct Args {
    size: usize,
    count: usize,
    chain: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args { size: 1024, count: 200_000, chain: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value =
            || it.next().ok_or(format!("{flag} needs a value"))?.parse::<usize>().map_err(|e| e.to_string());
        match flag.as_str() {
            "--size" => a.size = value()?,
            "--count" => a.count = value()?,
            "--chain" => a.chain = true,
            other => return Err(format!("unknown argument {other}; use --size N --count N [--chain]")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let local = "127.0.0.1:0".parse()?;
    let mut base = Config::new(MeshId::new("throughput")?, 0);
    base.max_message_size = args.size.max(base.max_message_size);
    base.refresh_interval = None;
    let leaf = |mut c: Config, seed: u64| {
        c.min_neighbors = 1;
        c.ideal_neighbors = 1;
        c.max_neighbors = 1;
        c.seed = seed;
        c
    };
    let mut nodes = Vec::new();
    let a = MioNode::builder()
        .config(leaf(base.clone(), 1))
        .listen(local)
        .tokens(1000, 16)
        .open_alone()
        .open(poll.registry())?;
    let mut boot = a.local_addr();
    nodes.push(a);
    // The relay runs on its own thread with its own Poll, as a relay would on its own host (and
    // as the tokio example's runtime spreads its nodes over two worker threads).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut relay = None;
    if args.chain {
        let mut c = base.clone();
        c.min_neighbors = 1;
        c.ideal_neighbors = 2;
        c.max_neighbors = 2;
        c.seed = 2;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stop = stop.clone();
        relay = Some(std::thread::spawn(move || -> std::io::Result<()> {
            let mut poll = Poll::new()?;
            let mut events = Events::with_capacity(1024);
            let mut b = MioNode::builder()
                .config(c)
                .listen(local)
                .tokens(2000, 16)
                .bootstrap([boot])
                .open(poll.registry())
                .map_err(std::io::Error::other)?;
            let _ = addr_tx.send(b.local_addr());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let wait = b.poll_timeout().unwrap_or(Duration::from_millis(10)).min(Duration::from_millis(10));
                poll.poll(&mut events, Some(wait))?;
                for e in events.iter() {
                    b.handle_event(e);
                }
                b.handle_timeout();
            }
            Ok(())
        }));
        boot = addr_rx.recv_timeout(Duration::from_secs(5))?;
    }
    let c = MioNode::builder()
        .config(leaf(base, 3))
        .listen(local)
        .tokens(3000, 16)
        .bootstrap([boot])
        .open(poll.registry())?;
    nodes.push(c);
    let path = ChannelPath::new("/t")?;
    for n in nodes.iter_mut() {
        n.open_channel(&path);
    }
    let turn = |poll: &mut Poll, events: &mut Events, nodes: &mut Vec<MioNode>| -> std::io::Result<()> {
        let wait = nodes.iter().filter_map(|n| n.poll_timeout()).min().unwrap_or(Duration::from_millis(10));
        poll.poll(events, Some(wait.min(Duration::from_millis(10))))?;
        for e in events.iter() {
            for n in nodes.iter_mut() {
                if n.handle_event(e) {
                    break;
                }
            }
        }
        for n in nodes.iter_mut() {
            n.handle_timeout();
        }
        Ok(())
    };
    // Form the mesh: every node online.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().all(|n| n.is_online()) {
        if Instant::now() > deadline {
            return Err("the mesh did not form within 10 s".into());
        }
        turn(&mut poll, &mut events, &mut nodes)?;
    }
    let payload = Bytes::from(vec![0u8; args.size]);
    let last = nodes.len() - 1;
    let (mut sent, mut got) = (0usize, 0usize);
    let started = Instant::now();
    let mut idle_since = Instant::now();
    while got < args.count {
        while sent < args.count {
            match nodes[0].send(&path, payload.clone()) {
                Ok(_) => sent += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => return Err(e.into()),
            }
        }
        turn(&mut poll, &mut events, &mut nodes)?;
        let before = got;
        while nodes[last].try_recv(&path).is_some() {
            got += 1;
        }
        if got > before {
            idle_since = Instant::now();
        } else if idle_since.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(r) = relay {
        let _ = r.join();
    }
    let s = elapsed.as_secs_f64().max(1e-9);
    let bytes = got * args.size;
    println!(
        "{:<22} {got} msgs in {elapsed:>10.3?}: {:>12.0} msg/s {:>10.1} MB/s ({:.2} Gbit/s)",
        if args.chain { "mio A→B→C" } else { "mio A→B" },
        got as f64 / s,
        bytes as f64 / s / 1e6,
        bytes as f64 * 8.0 / s / 1e9
    );
    Ok(())
}
