//! Neighbor maintenance decisions seen from one node: how it dials, waits and retries.

use std::time::Duration;

use peerchannel_core::wire;
use peerchannel_core::*;

mod support;
use support::frames::{cat, connect, frame, hello};

fn dials(node: &mut Node) -> Vec<LinkId> {
    std::iter::from_fn(|| node.poll_output())
        .filter_map(|o| match o {
            Output::Dial { link, .. } => Some(link),
            _ => None,
        })
        .collect()
}

#[test]
fn dials_that_hang_do_not_stall_the_join() {
    let mut cfg = Config::new(MeshId::new("m").unwrap(), 3);
    cfg.bootstrap = (1..=20).map(|i| format!("10.0.0.{i}:7000").parse().unwrap()).collect();
    let mut node = Node::new(cfg, Instant::ZERO).unwrap();
    node.handle_input(Instant::ZERO, Input::Open);
    let first = dials(&mut node);
    assert_eq!(first.len(), 2, "joins toward min_neighbors first");
    // Nothing answers. Within the patience nothing more is dialed.
    node.handle_timeout(Instant::from_millis(1_500));
    assert!(dials(&mut node).is_empty());
    // After it, more candidates are tried in parallel, never more than 2 × ideal at once.
    let mut total = first.len();
    let mut t = Instant::from_millis(1_500);
    while t < Instant::from_millis(9_000) {
        t = t + Duration::from_millis(500);
        node.handle_timeout(t);
        total += dials(&mut node).len();
    }
    assert!(total >= 4, "only {total} dials while the first ones hang");
    assert!(total <= 6, "{total} dials in flight");
}

/// A node at `max_neighbors` dialed a referral whose NodeId it knows; while that link is still in
/// its handshake, the same node connects in. The duplicate rule prefers the new link, but closing
/// one that is not yet a neighbor frees no neighbor slot: the new link is refused as NodeBusy,
/// and the node stays at its maximum (it went above it once: found by fuzzing `node_inputs`).
#[test]
fn a_duplicate_of_a_link_still_in_its_handshake_does_not_take_a_node_above_its_maximum() {
    let mut cfg = Config::new(MeshId::new("m").unwrap(), 3);
    (cfg.min_neighbors, cfg.ideal_neighbors, cfg.max_neighbors) = (1, 1, 1);
    // Larger than the referred node's, so the duplicate rule prefers the link it dials in.
    cfg.node_id = NodeId::new(1 << 40);
    cfg.bootstrap = vec!["10.0.0.1:7000".parse().unwrap()];
    let mut node = Node::new(cfg, Instant::ZERO).unwrap();
    let mut t = Instant::ZERO;
    node.handle_input(t, Input::Open);
    let first = dials(&mut node);
    assert_eq!(first.len(), 1);
    node.handle_input(t, Input::LinkConnected { link: first[0] });
    // The bootstrap node is busy and refers to X.
    let x = NodeId::new(5).unwrap();
    let x_addr: std::net::SocketAddr = "10.0.0.5:7000".parse().unwrap();
    let refuse = wire::Frame::Refuse(wire::Refuse {
        reason: CloseReason::NodeBusy,
        referrals: vec![wire::Referral { node: x, addr: x_addr }],
    });
    node.handle_input(t, Input::Received { link: first[0], data: cat(&[hello("m"), frame(&refuse)]) });
    // The node dials X (at once or on a later tick) and the transport connects: its handshake
    // is under way, X's NodeId known from the referral.
    let mut to_x = None;
    while to_x.is_none() && t < Instant::from_millis(20_000) {
        t = t + Duration::from_millis(100);
        node.handle_timeout(t);
        to_x = std::iter::from_fn(|| node.poll_output()).find_map(|o| match o {
            Output::Dial { link, addr } if addr == x_addr => Some(link),
            _ => None,
        });
    }
    let to_x = to_x.expect("the referral was never dialed");
    node.handle_input(t, Input::LinkConnected { link: to_x });
    // Another node connects in and fills the one neighbor slot.
    let y = node.accept(t, "10.0.0.9:5000".parse().unwrap()).unwrap();
    node.handle_input(t, Input::Received { link: y, data: cat(&[hello("m"), connect(9)]) });
    assert_eq!(node.neighbor_count(), 1);
    // X connects in as well.
    let x_inbound: std::net::SocketAddr = "10.0.0.5:41000".parse().unwrap();
    let from_x = node.accept(t, x_inbound).unwrap();
    node.handle_input(t, Input::Received { link: from_x, data: cat(&[hello("m"), connect(x.get())]) });
    assert_eq!(node.neighbor_count(), 1, "{:?}", node.neighbors());
    node.check_invariants().unwrap();
    let refused = std::iter::from_fn(|| node.poll_output()).any(|o| {
        matches!(o, Output::Event(Event::InboundRefused { addr, reason: CloseReason::NodeBusy }) if addr == x_inbound)
    });
    assert!(refused, "the link from X was not refused as NodeBusy");
}
