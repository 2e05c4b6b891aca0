//! A mio node in a loop you own: it joins (or starts) a mesh, sends a line every second on
//! `/chat`, and prints what it hears and what happens to its neighbors.
//!
//! ```sh
//! cargo run -p peerchannel-mio --example ticker -- 127.0.0.1:7000            # starts the mesh
//! cargo run -p peerchannel-mio --example ticker -- 127.0.0.1:7001 127.0.0.1:7000
//! ```

use std::time::{Duration, Instant};

use mio::{Events, Poll};
use peerchannel_mio::{ChannelPath, Error, MioNode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".into()).parse()?;
    let peers: Vec<std::net::SocketAddr> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;

    let mut poll = Poll::new()?;
    let mut builder = MioNode::builder().mesh("soccerpals").listen(listen).tokens(1000, 64);
    builder = if peers.is_empty() { builder.open_alone() } else { builder.bootstrap(peers) };
    let mut node = builder.open(poll.registry())?;
    println!("node {} listening on {}", node.id(), node.local_addr());

    let chat = ChannelPath::new("/chat")?;
    node.open_channel(&chat);
    let mut events = Events::with_capacity(256);
    let (mut next_tick, mut n) = (Instant::now(), 0u64);
    loop {
        let until_tick = next_tick.saturating_duration_since(Instant::now());
        poll.poll(&mut events, Some(node.poll_timeout().map_or(until_tick, |t| t.min(until_tick))))?;
        for event in events.iter() {
            node.handle_event(event); // false for tokens that are not the node's
        }
        node.handle_timeout();
        while let Some(msg) = node.try_recv(&chat) {
            println!("{} ({} hops): {}", msg.origin, msg.hops, String::from_utf8_lossy(&msg.payload));
        }
        for e in node.events() {
            println!("event: {e:?}");
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            n += 1;
            match node.send(&chat, format!("tick {n} from {}", node.id())) {
                Ok(_) | Err(Error::WouldBlock) => {} // backed up: this tick is skipped
                Err(e) => return Err(e.into()),
            }
        }
    }
}
