//! A mesh of real nodes on loopback forms with bootstrap addresses only, keeps every degree
//! within bounds, and delivers many messages from several senders exactly once everywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use peerchannel_tests::{init_tracing, is_one_mesh, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{Channel, NodeId};

const NODES: usize = 30;
const SENDERS: usize = 5;
const PER_SENDER: usize = 200;

/// Reads `ch` until it has `want` messages; returns (origin, sequence) -> copies.
async fn collect(ch: &mut Channel, want: usize) -> BTreeMap<(NodeId, u32), u32> {
    let mut got = BTreeMap::new();
    let mut n = 0;
    while n < want {
        match tokio::time::timeout(PATIENCE, ch.recv()).await {
            Ok(Some(m)) => {
                let seq = u32::from_be_bytes(m.payload[..4].try_into().unwrap_or([0xff; 4]));
                *got.entry((m.origin, seq)).or_insert(0) += 1;
                n += 1;
            }
            Ok(None) => panic!("channel ended after {n} of {want} messages"),
            Err(_) => panic!("only {n} of {want} messages arrived"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_forms_within_bounds_and_floods_arrive_exactly_once() {
    init_tracing();
    let nodes = start_mesh("soccerpals", NODES, |_| {}).await;
    let refs: Vec<_> = nodes.iter().collect();
    wait_until("one mesh with every degree within [2, 7]", PATIENCE, || is_one_mesh(&refs, 2, 7)).await;

    let mut channels: Vec<Channel> = nodes.iter().map(|n| n.channel("/chat").unwrap()).collect();
    // Senders are spread over the mesh; each sends its sequence numbers with a 1 KiB payload.
    let senders: Vec<usize> = (0..SENDERS).map(|i| i * NODES / SENDERS).collect();
    let mut tasks = Vec::new();
    for &s in &senders {
        let tx = channels[s].sender();
        tasks.push(tokio::spawn(async move {
            for seq in 0..PER_SENDER as u32 {
                let mut payload = vec![0u8; 1024];
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                tx.send(payload).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let sender_ids: Vec<NodeId> = senders.iter().map(|&s| nodes[s].id()).collect();
    for (i, ch) in channels.iter_mut().enumerate() {
        let own = usize::from(senders.contains(&i));
        let want = (SENDERS - own) * PER_SENDER;
        let got = collect(ch, want).await;
        assert_eq!(got.len(), want, "node {i}: distinct messages");
        assert!(got.values().all(|&c| c == 1), "node {i} got a message more than once");
        assert!(!got.keys().any(|(o, _)| *o == nodes[i].id()), "node {i} got its own message back");
        for (o, seq) in got.keys() {
            assert!(sender_ids.contains(o) && (*seq as usize) < PER_SENDER, "node {i}: unexpected {o} #{seq}");
        }
    }
    // No late duplicates: the core's count of deliveries matches what the channels got.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, (n, ch)) in nodes.iter().zip(channels.iter_mut()).enumerate() {
        assert!(ch.try_recv().is_none(), "node {i} got an extra message");
        let s = n.stats().await.unwrap();
        let own = usize::from(senders.contains(&i));
        assert_eq!(s.core.delivered as usize, (SENDERS - own) * PER_SENDER, "node {i} core deliveries");
        assert_eq!(s.adapter.deliveries_dropped, 0);
    }
    for n in nodes {
        n.close().await;
    }
}
