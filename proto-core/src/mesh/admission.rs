use crate::id::{LinkId, NodeId};
use crate::reason::CloseReason;

/// Another live link to the same peer node.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ExistingLink {
    /// Its handle.
    pub link: LinkId,
    /// Whether this node dialed it.
    pub initiated_locally: bool,
    /// Whether it is a neighbor already (not still in its handshake): replacing it then frees
    /// the neighbor slot the new link takes.
    pub neighbor: bool,
}

/// Which of two links to the same node survives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DuplicateChoice {
    /// Keep the link that was there first; refuse or close the new one.
    KeepExisting,
    /// Keep the new link; close the existing one.
    KeepNew,
}

/// The duplicate-link rule, identical on both ends: keep the link initiated by the smaller
/// NodeId; if both links were initiated by the same side, keep the older one. Both ends compute
/// the same answer from the same facts, so they close the same link.
pub fn keep_on_duplicate(local: NodeId, peer: NodeId, existing_local: bool, new_local: bool) -> DuplicateChoice {
    if existing_local == new_local {
        return DuplicateChoice::KeepExisting;
    }
    let preferred_initiator_is_local = local < peer;
    if new_local == preferred_initiator_is_local {
        DuplicateChoice::KeepNew
    } else {
        DuplicateChoice::KeepExisting
    }
}

/// The answer to a peer that introduced itself (Connect at the responder, Welcome at the
/// initiator).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Become neighbors.
    Accept,
    /// Become neighbors over this link and close the named duplicate with DuplicateNeighbor.
    AcceptReplacing(LinkId),
    /// Refuse (responder) or disconnect (initiator) with this reason.
    Refuse(CloseReason),
}

/// Decides whether a peer that introduced itself as `peer` on a new link becomes a neighbor.
pub fn admit(
    local: NodeId,
    peer: NodeId,
    new_local: bool,
    existing: Option<ExistingLink>,
    connected: usize,
    max_neighbors: usize,
) -> Admission {
    if peer == local {
        return Admission::Refuse(CloseReason::DuplicateNodeId);
    }
    if let Some(e) = existing {
        return match keep_on_duplicate(local, peer, e.initiated_locally, new_local) {
            DuplicateChoice::KeepExisting => Admission::Refuse(CloseReason::DuplicateNeighbor),
            // Replacing a link still in its handshake frees no neighbor slot: the new link
            // must fit under `max_neighbors` like any other.
            DuplicateChoice::KeepNew if !e.neighbor && connected >= max_neighbors => {
                Admission::Refuse(CloseReason::NodeBusy)
            }
            DuplicateChoice::KeepNew => Admission::AcceptReplacing(e.link),
        };
    }
    if connected >= max_neighbors {
        return Admission::Refuse(CloseReason::NodeBusy);
    }
    Admission::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::new(n).unwrap()
    }

    /// Simultaneous dials between A and B: each end sees its own dial and the peer's. Whatever
    /// order the introductions arrive in, both ends must keep the same link.
    #[test]
    fn both_ends_keep_the_same_link() {
        for (a, b) in [(1, 2), (2, 1), (5, 900), (u64::MAX, 3)] {
            let (a, b) = (id(a), id(b));
            // Link X dialed by A, link Y dialed by B.
            // At A, X is local; at B, X is remote. Try both "which arrived first" orders.
            for x_first_at_a in [true, false] {
                for x_first_at_b in [true, false] {
                    let at_a = survivor(a, b, x_first_at_a, true);
                    let at_b = survivor(b, a, x_first_at_b, false);
                    assert_eq!(at_a, at_b, "a={a:?} b={b:?}");
                    let want_x = a < b;
                    assert_eq!(at_a == 'X', want_x);
                }
            }
        }
    }

    /// Which link ('X' dialed by the node whose perspective this is when `x_is_local`, else 'Y')
    /// survives at a node that saw `first` link introduced first.
    fn survivor(local: NodeId, peer: NodeId, x_first: bool, x_is_local: bool) -> char {
        let (existing_name, new_name) = if x_first { ('X', 'Y') } else { ('Y', 'X') };
        let local_of = |n: char| (n == 'X') == x_is_local;
        match keep_on_duplicate(local, peer, local_of(existing_name), local_of(new_name)) {
            DuplicateChoice::KeepExisting => existing_name,
            DuplicateChoice::KeepNew => new_name,
        }
    }

    #[test]
    fn same_initiator_keeps_the_older() {
        assert_eq!(keep_on_duplicate(id(1), id(2), true, true), DuplicateChoice::KeepExisting);
        assert_eq!(keep_on_duplicate(id(1), id(2), false, false), DuplicateChoice::KeepExisting);
    }

    #[test]
    fn admission_rules() {
        let me = id(10);
        assert_eq!(admit(me, me, false, None, 0, 7), Admission::Refuse(CloseReason::DuplicateNodeId));
        assert_eq!(admit(me, id(3), false, None, 7, 7), Admission::Refuse(CloseReason::NodeBusy));
        assert_eq!(admit(me, id(3), false, None, 6, 7), Admission::Accept);
        let e = ExistingLink { link: LinkId(4), initiated_locally: true, neighbor: true };
        // Peer 3 < me 10: the peer-initiated new link wins.
        assert_eq!(admit(me, id(3), false, Some(e), 7, 7), Admission::AcceptReplacing(LinkId(4)));
        // Peer 30 > me: our own existing link wins.
        assert_eq!(admit(me, id(30), false, Some(e), 2, 7), Admission::Refuse(CloseReason::DuplicateNeighbor));
        // The existing link is still in its handshake: the new one wins only if it fits, since
        // closing the old one frees no neighbor slot (found by fuzzing: max 1 became 2).
        let handshaking = ExistingLink { neighbor: false, ..e };
        assert_eq!(admit(me, id(3), false, Some(handshaking), 6, 7), Admission::AcceptReplacing(LinkId(4)));
        assert_eq!(admit(me, id(3), false, Some(handshaking), 7, 7), Admission::Refuse(CloseReason::NodeBusy));
        assert_eq!(admit(me, id(3), false, Some(e), 7, 7), Admission::AcceptReplacing(LinkId(4)));
    }
}
