//! Observed-remove set of strings, where a concurrent add wins over a remove.
//!
//! Every add carries a unique tag (an [`Hlc`] stamp, unique per writer). A
//! remove names the tags of the element it has seen, and only those die; an add
//! made concurrently has a tag the remover never saw, so the element stays. An
//! element is present while it has a live tag.
//!
//! Removed tags are kept per element (tombstones), so that an add arriving
//! after the remove of its own tag stays dead, and every op and merge commutes.
//! Tombstones are never collected: dropping one safely needs to know every
//! replica has seen the remove, which the room's single order could provide
//! but this type does not assume. Sets that churn grow accordingly.
//!
//! Elements are strings rather than arbitrary JSON: set membership needs one
//! spelling per element, and JSON has several for one value (key order,
//! `1` and `1.0`). Applications that want structured elements can encode them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::hlc::Hlc;

/// The tags an element was added with, live and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tags {
    live: BTreeSet<Hlc>,
    removed: BTreeSet<Hlc>,
}

/// An observed-remove set of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet {
    /// Never holds an element with no tags at all, so equal contents and
    /// histories are equal states.
    elements: BTreeMap<String, Tags>,
}

impl OrSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `element` under a fresh `tag`. Returns whether the tag is now live
    /// (false when the tag was already there or already removed). Idempotent.
    pub fn add(&mut self, element: impl Into<String>, tag: Hlc) -> bool {
        let tags = self.elements.entry(element.into()).or_default();
        !tags.removed.contains(&tag) && tags.live.insert(tag)
    }

    /// Removes `element` as this replica sees it: kills its live tags and
    /// returns them, for the remove op to carry.
    pub fn remove(&mut self, element: &str) -> BTreeSet<Hlc> {
        let live = self.tags(element).cloned().collect::<BTreeSet<_>>();
        self.remove_tags(element, &live);
        live
    }

    /// Applies a remove made elsewhere: kills exactly `tags`, including ones
    /// whose add has not arrived yet. Idempotent.
    pub fn remove_tags(&mut self, element: &str, tags: &BTreeSet<Hlc>) {
        if tags.is_empty() {
            return;
        }
        let entry = self.elements.entry(element.to_owned()).or_default();
        for tag in tags {
            entry.live.remove(tag);
            entry.removed.insert(tag.clone());
        }
    }

    pub fn contains(&self, element: &str) -> bool {
        self.elements
            .get(element)
            .is_some_and(|t| !t.live.is_empty())
    }

    /// The live tags of `element`: what a remove made here would kill.
    pub fn tags(&self, element: &str) -> impl Iterator<Item = &Hlc> {
        self.elements
            .get(element)
            .into_iter()
            .flat_map(|t| t.live.iter())
    }

    /// The present elements, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.elements
            .iter()
            .filter(|(_, t)| !t.live.is_empty())
            .map(|(e, _)| e.as_str())
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Unions the tags of both sides; a tag removed on either side is dead.
    pub fn merge(&mut self, other: &OrSet) {
        for (element, theirs) in &other.elements {
            let ours = self.elements.entry(element.clone()).or_default();
            ours.removed.extend(theirs.removed.iter().cloned());
            ours.live.extend(
                theirs
                    .live
                    .iter()
                    .filter(|t| !ours.removed.contains(t))
                    .cloned(),
            );
            ours.live.retain(|t| !theirs.removed.contains(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(wall_ms: u64, writer: &str) -> Hlc {
        Hlc::new(wall_ms, 0, writer)
    }

    #[test]
    fn a_concurrent_add_wins_over_a_remove() {
        let mut a = OrSet::new();
        a.add("x", tag(1, "a"));
        let mut b = a.clone();
        // b removes what it saw while a adds "x" again.
        let removed = b.remove("x");
        assert_eq!(removed, BTreeSet::from([tag(1, "a")]));
        a.add("x", tag(2, "a"));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert!(ab.contains("x"));
        assert_eq!(ab.tags("x").collect::<Vec<_>>(), vec![&tag(2, "a")]);
    }

    #[test]
    fn a_remove_that_arrives_before_its_add_still_counts() {
        let mut s = OrSet::new();
        s.remove_tags("x", &BTreeSet::from([tag(1, "a")]));
        assert!(!s.add("x", tag(1, "a")));
        assert!(!s.contains("x"));
        assert!(s.is_empty());
    }

    #[test]
    fn removing_an_absent_element_leaves_no_trace() {
        let mut s = OrSet::new();
        assert!(s.remove("ghost").is_empty());
        assert_eq!(s, OrSet::new());
        s.add("b", tag(1, "a"));
        s.add("a", tag(2, "a"));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(s.len(), 2);
    }
}
