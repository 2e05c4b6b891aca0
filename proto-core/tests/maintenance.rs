//! Neighbor maintenance decisions seen from one node: how it dials, waits and retries.

use std::time::Duration;

use peerchannel_core::*;

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
