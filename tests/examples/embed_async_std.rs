//! The sans-IO core on async-std without an adapter: three nodes on loopback, each says hello,
//! each prints what it hears. The embedding (`peerchannel_tests::embed`) is runtime-neutral:
//! on smol, pass `Arc::new(|f| smol::spawn(f).detach())` as the spawner instead.
//!
//! ```sh
//! cargo run -p peerchannel-tests --example embed_async_std
//! ```

use std::sync::Arc;
use std::time::Duration;

use peerchannel_core::{ChannelPath, Config, MeshId};
use peerchannel_tests::embed::{self, Command, Embedded, Spawn};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spawn: Spawn = Arc::new(|f| {
        async_std::task::spawn(f);
    });
    async_std::task::block_on(async {
        let chat = ChannelPath::new("/chat")?;
        let mut nodes: Vec<Embedded> = Vec::new();
        let mut inboxes = Vec::new();
        for i in 0..3u64 {
            let mut config = Config::new(MeshId::new("embedded")?, i + 1);
            config.bootstrap = nodes.iter().map(|n| n.addr).collect();
            let node = embed::start(config, spawn.clone())?;
            let (tx, rx) = async_channel::bounded(16);
            node.commands.send(Command::Subscribe(chat.clone(), tx)).await?;
            println!("node {} listens on {}", node.id, node.addr);
            nodes.push(node);
            inboxes.push(rx);
        }
        // Give the mesh a moment to connect (a real application would watch its events).
        async_std::task::sleep(Duration::from_secs(1)).await;
        for n in &nodes {
            n.commands.send(Command::Send(chat.clone(), format!("hello from {}", n.id).into_bytes().into())).await?;
        }
        for (n, inbox) in nodes.iter().zip(&inboxes) {
            for _ in 0..2 {
                let m = async_std::future::timeout(Duration::from_secs(10), inbox.recv()).await??;
                println!("{} heard {:?} ({} hops)", n.id, String::from_utf8_lossy(&m.payload), m.hops);
            }
        }
        for n in &nodes {
            n.commands.send(Command::Close).await?;
        }
        Ok(())
    })
}
