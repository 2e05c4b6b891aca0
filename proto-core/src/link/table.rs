//! The node's links by handle, where a handle names its own slot.

use crate::id::LinkId;

use super::Link;

/// The smallest table, in slots.
const MIN_SLOTS: usize = 8;

/// The node's links, found by handle with one mask and one comparison.
///
/// Every frame a node relays looks its links up several times (the link it came from, each
/// neighbor it is queued to); a hash map spent about 30 instructions a lookup there. Here the
/// handle picks the slot: link `id` lives in slot `id & mask`. Handles are still handed out in
/// increasing order and never reused, but a handle whose slot is taken is skipped, so handles
/// may have gaps. The table is at most 7/8 full (as full as a hash map of the same links would
/// be, so it takes no more memory), so a free slot is always near. Doubling the table keeps
/// every link's slot free of others (two handles that differ under the small mask differ under
/// the larger one too), and the table never shrinks: a node's links are bounded by its
/// configuration.
///
/// Iteration is in slot order, a function of the node's own history only, so runs stay
/// deterministic.
#[derive(Debug)]
pub struct LinkTable {
    /// Empty, or a power of two of slots.
    slots: Vec<Option<Link>>,
    len: usize,
    /// The next handle to consider (handles start at 1).
    next: u64,
}

impl Default for LinkTable {
    fn default() -> Self {
        LinkTable { slots: Vec::new(), len: 0, next: 1 }
    }
}

impl LinkTable {
    /// Adds the link `make` builds for a new handle, and returns the handle.
    pub fn insert_new(&mut self, make: impl FnOnce(LinkId) -> Link) -> LinkId {
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow();
        }
        let mask = self.mask();
        // Ends: at least one slot in eight is free.
        let id = loop {
            let id = self.next;
            self.next += 1;
            if self.slots[id as usize & mask].is_none() {
                break LinkId(id);
            }
        };
        let link = make(id);
        debug_assert_eq!(link.id, id, "a link must carry the handle it was made for");
        self.slots[id.0 as usize & mask] = Some(link);
        self.len += 1;
        id
    }

    /// The link of handle `id`.
    #[inline]
    pub fn get(&self, id: &LinkId) -> Option<&Link> {
        match self.slots.get(id.0 as usize & self.mask()) {
            Some(Some(l)) if l.id == *id => Some(l),
            _ => None,
        }
    }

    /// The link of handle `id`, to change.
    #[inline]
    pub fn get_mut(&mut self, id: &LinkId) -> Option<&mut Link> {
        let mask = self.mask();
        match self.slots.get_mut(id.0 as usize & mask) {
            Some(Some(l)) if l.id == *id => Some(l),
            _ => None,
        }
    }

    /// Whether handle `id` names a link.
    pub fn contains_key(&self, id: &LinkId) -> bool {
        self.get(id).is_some()
    }

    /// Takes the link of handle `id` out.
    pub fn remove(&mut self, id: &LinkId) -> Option<Link> {
        let mask = self.mask();
        let slot = self.slots.get_mut(id.0 as usize & mask)?;
        if slot.as_ref()?.id != *id {
            return None;
        }
        self.len -= 1;
        slot.take()
    }

    /// Links held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No links.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The links, in slot order.
    pub fn values(&self) -> impl Iterator<Item = &Link> {
        self.slots.iter().flatten()
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = core::mem::replace(&mut self.slots, (0..size).map(|_| None).collect());
        let mask = self.mask();
        for link in old.into_iter().flatten() {
            let at = link.id.0 as usize & mask;
            debug_assert!(self.slots[at].is_none(), "doubling put two links in one slot");
            self.slots[at] = Some(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{LinkState, Role};
    use crate::time::Instant;

    fn add(t: &mut LinkTable) -> LinkId {
        t.insert_new(|id| {
            Link::new(id, Role::Initiator, LinkState::Dialing, "10.0.0.1:1".parse().unwrap(), Instant::ZERO)
        })
    }

    #[test]
    fn handles_increase_are_never_reused_and_find_their_links() {
        let mut t = LinkTable::default();
        let mut live: Vec<LinkId> = Vec::new();
        let mut last = LinkId(0);
        // A churn of links: add three, drop the oldest, for many rounds, with some long-lived.
        for round in 0..500u64 {
            for _ in 0..3 {
                let id = add(&mut t);
                assert!(id > last, "handle {id:?} after {last:?}");
                last = id;
                live.push(id);
            }
            let drop = if round % 7 == 0 { live.len() - 1 } else { 1 };
            let gone = live.remove(drop);
            assert_eq!(t.remove(&gone).map(|l| l.id), Some(gone));
            assert!(t.get(&gone).is_none() && !t.contains_key(&gone));
            assert!(t.remove(&gone).is_none(), "removed twice");
            while live.len() > 40 {
                let gone = live.remove(0);
                t.remove(&gone);
            }
            assert_eq!(t.len(), live.len());
            for id in &live {
                assert_eq!(t.get(id).map(|l| l.id), Some(*id));
            }
            assert!(t.len() * 8 <= t.slots.len() * 7, "more than 7/8 full");
        }
        let mut listed: Vec<LinkId> = t.values().map(|l| l.id).collect();
        listed.sort();
        let mut expected = live.clone();
        expected.sort();
        assert_eq!(listed, expected);
        // Bounded by the most links held at once, not by how many handles were handed out.
        assert!(t.slots.len() <= 64, "{} slots for at most 43 links", t.slots.len());
    }

    #[test]
    fn a_handle_of_another_link_in_the_same_slot_finds_nothing() {
        let mut t = LinkTable::default();
        let a = add(&mut t);
        let stale = LinkId(a.0 + t.slots.len() as u64);
        assert!(t.get(&stale).is_none());
        assert!(t.remove(&stale).is_none());
        assert_eq!(t.len(), 1);
        assert!(t.get(&LinkId(0)).is_none());
        assert!(LinkTable::default().get(&a).is_none(), "an empty table holds nothing");
    }
}
