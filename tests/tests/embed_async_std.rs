//! The third runtime: the sans-IO core driven by async-std with no adapter at all (the
//! runtime-neutral embedding of `peerchannel_tests::embed`). Five nodes form a mesh and every
//! message reaches every other node exactly once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_std::future::timeout;
use peerchannel_core::ChannelPath;
use peerchannel_tests::embed::{self, Command, Embedded, Spawn};
use peerchannel_tests::{fast_config, PATIENCE};

const NODES: usize = 5;
const PER_NODE: u32 = 100;

fn spawner() -> Spawn {
    Arc::new(|f| {
        async_std::task::spawn(f);
    })
}

async fn neighbors(n: &Embedded) -> usize {
    let (tx, rx) = async_channel::bounded(1);
    if n.commands.send(Command::Neighbors(tx)).await.is_err() {
        return 0;
    }
    rx.recv().await.unwrap_or(0)
}

#[test]
fn async_std_embedding_forms_a_five_node_mesh_with_exactly_once_delivery() {
    async_std::task::block_on(async {
        let mut nodes: Vec<Embedded> = Vec::new();
        for i in 0..NODES {
            let mut c = fast_config("embedded");
            c.seed = 0xA5A5 + i as u64; // distinct node IDs
            c.bootstrap = nodes.iter().map(|n| n.addr).collect();
            nodes.push(embed::start(c, spawner()).expect("node starts"));
        }
        let formed = timeout(PATIENCE, async {
            loop {
                let mut degrees = Vec::new();
                for n in &nodes {
                    degrees.push(neighbors(n).await);
                }
                if degrees.iter().all(|&d| d >= 2) {
                    return degrees;
                }
                async_std::task::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let degrees = formed.expect("every node reaches min_neighbors (2) in time");
        assert!(degrees.iter().all(|&d| d <= 4), "degrees {degrees:?}");

        let path = ChannelPath::new("/chat").expect("valid path");
        let mut rx = Vec::new();
        for n in &nodes {
            let (tx, r) = async_channel::bounded(NODES * PER_NODE as usize);
            n.commands.send(Command::Subscribe(path.clone(), tx)).await.expect("node running");
            rx.push(r);
        }
        // A node takes its commands in order, so an answered query means its channel is open:
        // a message that arrived before would be dropped as having no channel, and missed.
        for n in &nodes {
            neighbors(n).await;
        }
        for (i, n) in nodes.iter().enumerate() {
            for seq in 0..PER_NODE {
                let payload = format!("{i}:{seq}").into_bytes().into();
                n.commands.send(Command::Send(path.clone(), payload)).await.expect("node running");
            }
        }
        for (i, r) in rx.iter().enumerate() {
            let want = (NODES - 1) * PER_NODE as usize;
            let mut got = BTreeSet::new();
            while got.len() < want {
                let m = timeout(PATIENCE, r.recv()).await.expect("message in time").expect("node running");
                assert_ne!(m.origin, nodes[i].id, "node {i} got its own message back");
                assert!(got.insert(m.payload.clone()), "node {i} got {:?} twice", m.payload);
            }
        }
        // Nothing more trickles in: exactly once.
        async_std::task::sleep(Duration::from_millis(300)).await;
        for (i, r) in rx.iter().enumerate() {
            assert!(r.try_recv().is_err(), "node {i} got an extra message");
        }
        for n in &nodes {
            let _ = n.commands.send(Command::Close).await;
        }
    });
}
