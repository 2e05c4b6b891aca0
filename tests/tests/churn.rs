//! Nodes leave a live mesh — some crash (dropped without close), some close gracefully — and
//! the survivors re-form one mesh that delivers every later message to all of them.

use std::collections::BTreeSet;
use std::time::Duration;

use peerchannel_tests::{init_tracing, is_one_mesh, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{Channel, CloseReason, PeerNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_reform_after_crashes_and_graceful_leaves() {
    init_tracing();
    let mut nodes: Vec<Option<PeerNode>> = start_mesh("churn", 30, |_| {}).await.into_iter().map(Some).collect();
    {
        let refs: Vec<&PeerNode> = nodes.iter().flatten().collect();
        wait_until("the initial mesh forms", PATIENCE, || is_one_mesh(&refs, 2, 7)).await;
    }

    // Crash 10: dropping a node must return at once (it must not wait on its peers).
    let crash: Vec<usize> = (0..30).filter(|i| i % 3 == 1).collect();
    let started = std::time::Instant::now();
    for &i in &crash {
        drop(nodes[i].take());
    }
    assert!(started.elapsed() < Duration::from_secs(1), "dropping nodes took {:?}", started.elapsed());
    // Close 5 gracefully, concurrently.
    let leave: Vec<usize> = vec![2, 8, 14, 20, 26];
    let closing: Vec<PeerNode> = leave.iter().filter_map(|&i| nodes[i].take()).collect();
    let closes: Vec<_> = closing.into_iter().map(|n| tokio::spawn(n.close())).collect();
    for c in closes {
        tokio::time::timeout(PATIENCE, c).await.expect("graceful close finished").unwrap();
    }

    let survivors: Vec<&PeerNode> = nodes.iter().flatten().collect();
    assert_eq!(survivors.len(), 15);
    wait_until("the 15 survivors re-form one mesh with at least min neighbors", PATIENCE, || {
        is_one_mesh(&survivors, 2, 7)
    })
    .await;

    // The survivors saw both kinds of departure, each with its reason.
    let mut leaving = 0;
    let mut crashed = 0;
    for n in &survivors {
        let s = n.stats().await.unwrap();
        leaving += s.core.neighbors_down_for(CloseReason::LeavingMesh);
        crashed += s.core.neighbors_down_for(CloseReason::Closed) + s.core.neighbors_down_for(CloseReason::Faulted);
    }
    assert!(leaving >= 1, "no survivor saw a LeavingMesh disconnect");
    assert!(crashed >= 1, "no survivor saw a crashed neighbor's connection end");

    // Every later message reaches every survivor exactly once.
    let mut channels: Vec<Channel> = survivors.iter().map(|n| n.channel("/after").unwrap()).collect();
    for (k, ch) in channels.iter().enumerate().take(3) {
        for seq in 0..50u32 {
            ch.send(format!("{k}:{seq}")).await.unwrap();
        }
    }
    for (i, ch) in channels.iter_mut().enumerate() {
        let want = if i < 3 { 100 } else { 150 };
        let mut got = BTreeSet::new();
        while got.len() < want {
            let m = tokio::time::timeout(PATIENCE, ch.recv()).await.expect("message in time").expect("open");
            assert!(got.insert(m.payload.clone()), "survivor {i} got {:?} twice", m.payload);
        }
    }
    drop(channels);
    for n in nodes.into_iter().flatten() {
        n.close().await;
    }
}
