//! Several meshes in one process stay apart: nodes bootstrapped with each other's addresses
//! are refused (WrongMesh) and never see each other's messages.

use std::collections::BTreeSet;
use std::time::Duration;

use peerchannel_tests::{fast_config, init_tracing, is_one_mesh, loopback, start_mesh, wait_until, PATIENCE};
use peerchannel_tokio::{CloseReason, NodeId, PeerNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshes_in_one_process_never_mix() {
    init_tracing();
    let red = start_mesh("red", 4, |_| {}).await;
    // Blue's first node opens alone; the others bootstrap from blue's first node AND two red
    // nodes, so they certainly try the wrong mesh.
    let mut blue: Vec<PeerNode> =
        vec![PeerNode::builder().config(fast_config("blue")).listen(loopback()).open_alone().open().await.unwrap()];
    for _ in 0..3 {
        let boot = [blue[0].local_addr(), red[0].local_addr(), red[1].local_addr()];
        let n = PeerNode::builder().config(fast_config("blue")).listen(loopback()).bootstrap(boot).open().await;
        blue.push(n.unwrap());
    }
    let red_refs: Vec<&PeerNode> = red.iter().collect();
    let blue_refs: Vec<&PeerNode> = blue.iter().collect();
    wait_until("red forms one mesh of red nodes only", PATIENCE, || is_one_mesh(&red_refs, 2, 7)).await;
    wait_until("blue forms one mesh of blue nodes only", PATIENCE, || is_one_mesh(&blue_refs, 2, 7)).await;

    let mut wrong_mesh = 0;
    for n in red.iter().chain(blue.iter()) {
        wrong_mesh += n.stats().await.unwrap().core.closed_for(CloseReason::WrongMesh);
    }
    assert!(wrong_mesh >= 1, "no Connect to the wrong mesh was refused");

    let mut red_rx: Vec<_> = red.iter().map(|n| n.channel("/chat").unwrap()).collect();
    let mut blue_rx: Vec<_> = blue.iter().map(|n| n.channel("/chat").unwrap()).collect();
    for (i, ch) in red_rx.iter().enumerate() {
        ch.send(format!("red {i}")).await.unwrap();
    }
    for (i, ch) in blue_rx.iter().enumerate() {
        ch.send(format!("blue {i}")).await.unwrap();
    }
    for (nodes, rxs, color) in [(&red, &mut red_rx, "red"), (&blue, &mut blue_rx, "blue")] {
        let members: BTreeSet<NodeId> = nodes.iter().map(|n| n.id()).collect();
        for ch in rxs.iter_mut() {
            for _ in 0..3 {
                let m = tokio::time::timeout(PATIENCE, ch.recv()).await.expect("delivery in time").unwrap();
                assert!(members.contains(&m.origin), "a {color} node got a message from another mesh");
                assert!(m.payload.starts_with(color.as_bytes()));
            }
        }
    }
    // Nothing else trickles in from the other mesh.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for ch in red_rx.iter_mut().chain(blue_rx.iter_mut()) {
        assert!(ch.try_recv().is_none());
    }
}
