//! What the room must fetch again from the store, and when.
//!
//! Three things send a room back to the store: a gap in what the bus
//! delivered (a skipped stamp or version), a subscription that reported lag
//! (a lost connection, a subscription the server ended), and the periodic
//! reconciliation, which looks at where the room stands in the store (one
//! call) and compares: presence and values stamps; at the same presence
//! stamp who is live (a count and a fingerprint of the connections: stamps
//! count changes without naming them), at the same values stamp what the
//! values hold (a count and a fingerprint of names, versions and states);
//! each open document's head and digest; and checks that the room's
//! subscription still delivers.
//! A difference the bus might still be delivering (the store is ahead by
//! events in flight) is acted on when a second look finds it again; one the
//! bus cannot explain (another epoch, a store that went back, another
//! history) at once. So any missed event is repaired within two
//! reconciliation intervals, plus the pauses below while the store does not
//! answer.
//!
//! A repair that fails stays pending and is tried again after a pause that
//! doubles up to [`MAX_PAUSE`]: nothing is repaired "once".

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chorus_store::{LiveMembers, Stamp, ValuesContent};
use tokio::time::Instant;
use tracing::{info, warn};

use super::Room;
use crate::clock::now_ms;

const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(5);

pub(super) struct Repair {
    members: bool,
    values: bool,
    docs: HashSet<Arc<str>>,
    /// When the pending repairs are tried next.
    attempt_at: Option<Instant>,
    pause: Duration,
    interval: Duration,
    next_reconcile: Instant,
    /// What the last look found ahead of the room, to act on if the next
    /// finds it still.
    suspect_presence: Option<Stamp>,
    suspect_values: Option<Stamp>,
    /// The store's live members, at a stamp the room is at too, that the
    /// last look found other than the room's list.
    suspect_members: Option<(Option<Stamp>, LiveMembers)>,
    /// The same for what the values hold.
    suspect_value_content: Option<(Option<Stamp>, ValuesContent)>,
}

/// The interval with up to a fifth more, so rooms do not all look at once.
fn jittered(interval: Duration) -> Duration {
    interval + interval.mul_f64(rand::random::<f64>() / 5.0)
}

impl Repair {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            members: false,
            values: false,
            docs: HashSet::new(),
            attempt_at: None,
            pause: FIRST_PAUSE,
            interval,
            next_reconcile: Instant::now() + jittered(interval),
            suspect_presence: None,
            suspect_values: None,
            suspect_members: None,
            suspect_value_content: None,
        }
    }

    pub(super) fn next_at(&self) -> Instant {
        self.attempt_at.map_or(self.next_reconcile, |at| at.min(self.next_reconcile))
    }

    fn soon(&mut self) {
        if self.attempt_at.is_none() {
            self.attempt_at = Some(Instant::now());
        }
    }

    pub(super) fn need_members(&mut self) {
        self.members = true;
        self.soon();
    }

    pub(super) fn need_values(&mut self) {
        self.values = true;
        self.soon();
    }

    pub(super) fn need_doc(&mut self, name: &Arc<str>) {
        self.docs.insert(name.clone());
        self.soon();
    }

    /// After missed events of unknown kind: everything.
    pub(super) fn everything(&mut self, docs: impl Iterator<Item = Arc<str>>) {
        self.members = true;
        self.values = true;
        self.docs.extend(docs);
        self.soon();
    }

    fn pending(&self) -> bool {
        self.members || self.values || !self.docs.is_empty()
    }
}

impl Room {
    pub(super) async fn run_repairs(&mut self) {
        let now = Instant::now();
        if now >= self.repair.next_reconcile {
            self.reconcile().await;
            self.repair.next_reconcile = Instant::now() + jittered(self.repair.interval);
        }
        if self.repair.attempt_at.is_some_and(|at| at <= Instant::now()) {
            self.attempt_repairs().await;
        }
    }

    async fn attempt_repairs(&mut self) {
        let mut failed = Vec::new();
        if self.repair.members {
            match self.resync_members().await {
                Ok(()) => self.repair.members = false,
                Err(e) => failed.push(format!("members: {e}")),
            }
        }
        if self.repair.values {
            match self.resync_values().await {
                Ok(()) => self.repair.values = false,
                Err(e) => failed.push(format!("values: {e}")),
            }
        }
        let docs: Vec<Arc<str>> = self.repair.docs.drain().collect();
        for name in docs {
            if let Err(e) = self.repair_doc(&name).await {
                failed.push(format!("document {name}: {e:?}"));
                self.repair.docs.insert(name);
            }
        }
        if self.repair.pending() {
            let pause = self.repair.pause;
            warn!(room = %self.name, "repairs failed, trying again in {pause:?}: {}", failed.join("; "));
            metrics::counter!("chorus_repair_retries_total").increment(1);
            self.repair.attempt_at = Some(Instant::now() + pause);
            self.repair.pause = (pause * 2).min(MAX_PAUSE);
        } else {
            if self.repair.pause > FIRST_PAUSE {
                info!(room = %self.name, "repaired");
            }
            self.repair.attempt_at = None;
            self.repair.pause = FIRST_PAUSE;
        }
    }

    /// Compares the room with the store, and checks its subscription.
    async fn reconcile(&mut self) {
        // A document with a group in flight is ahead in the store until
        // its answer is settled: looked at next time.
        let names: Vec<Arc<str>> = self.docs.iter().filter(|(n, d)| !d.stale && !self.pipelines.busy(n)).map(|(n, _)| n.clone()).collect();
        let refs: Vec<&str> = names.iter().map(|n| &**n).collect();
        match self.store().status(&self.name, &refs, now_ms()).await {
            Ok(status) => {
                if let Some(why) = compare(self.members.stamp(), status.presence.as_ref(), &mut self.repair.suspect_presence) {
                    info!(room = %self.name, "reconciliation: presence {why}; resyncing members");
                    metrics::counter!("chorus_room_resyncs_total", "reason" => "reconcile_presence").increment(1);
                    self.repair.need_members();
                }
                let same_stamp = self.members.stamp() == status.presence.as_ref();
                let listed = self.members.live();
                if let Some(why) = compare_content(same_stamp, listed, status.presence.as_ref(), status.members, &mut self.repair.suspect_members) {
                    info!(room = %self.name, listed = listed.count, live = status.members.count, "reconciliation: the member list {why}; resyncing members");
                    metrics::counter!("chorus_room_resyncs_total", "reason" => "reconcile_members").increment(1);
                    self.repair.need_members();
                }
                if let Some(why) = compare(self.values.stamp(), status.values.as_ref(), &mut self.repair.suspect_values) {
                    info!(room = %self.name, "reconciliation: values {why}; reloading them");
                    metrics::counter!("chorus_room_resyncs_total", "reason" => "reconcile_values").increment(1);
                    self.repair.need_values();
                }
                // The fingerprint is computed only where it is compared.
                let same_stamp = self.values.stamp() == status.values.as_ref();
                let held = if same_stamp { self.values.content() } else { ValuesContent::default() };
                if let Some(why) = compare_content(same_stamp, held, status.values.as_ref(), status.value_content, &mut self.repair.suspect_value_content) {
                    info!(room = %self.name, held = held.count, stored = status.value_content.count, "reconciliation: the values {why}; reloading them");
                    metrics::counter!("chorus_room_resyncs_total", "reason" => "reconcile_value_content").increment(1);
                    self.repair.need_values();
                }
                for (name, head) in names.iter().zip(status.docs) {
                    let Some(doc) = self.docs.get_mut(name) else { continue };
                    let same = head.as_ref().is_some_and(|h| h.epoch == doc.epoch && h.version == doc.version() && h.digest == doc.head_digest());
                    // A document nobody edited is discarded when its readers
                    // elsewhere leave; this replica's first op creates it again.
                    let discarded = head.is_none() && doc.version() == 0;
                    if same || discarded {
                        continue;
                    }
                    let behind = head.as_ref().is_some_and(|h| h.epoch == doc.epoch && h.version > doc.version());
                    if !behind {
                        warn!(room = %self.name, doc = %name, "reconciliation: the store holds another history of the document; reloading");
                        doc.stale = true;
                    }
                    metrics::counter!("chorus_room_resyncs_total", "reason" => "reconcile_document").increment(1);
                    self.repair.need_doc(name);
                }
            }
            Err(e) => warn!(room = %self.name, "reconciliation could not read the store: {e}"),
        }
        if let Err(e) = self.store().confirm(&self.name).await {
            // The bus subscribes again and reports lag; the room resyncs then.
            warn!(room = %self.name, "reconciliation: {e}");
        }
    }
}

/// Why the store's stamp calls for a resync, if it does: at once for
/// another incarnation or a store that went back; for a store ahead, only
/// when the previous look found the same (the bus may still be delivering).
fn compare(known: Option<&Stamp>, store: Option<&Stamp>, suspect: &mut Option<Stamp>) -> Option<&'static str> {
    let verdict = match (known, store) {
        (Some(k), Some(s)) if k == s => None,
        (Some(k), Some(s)) if k.epoch != s.epoch => Some("is another incarnation in the store"),
        (Some(k), Some(s)) if s.seq < k.seq => Some("went back in the store"),
        (Some(_), None) => Some("is gone from the store"),
        (None, None) => None,
        (_, Some(s)) => {
            let again = suspect.as_ref() == Some(s);
            *suspect = Some(s.clone());
            return again.then_some("is ahead of what the bus delivered");
        }
    };
    *suspect = None;
    verdict
}

/// Why the store's live members (or what its values hold) call for a resync
/// though the stamps agree, if they do. At the same stamp the room and the
/// store should hold the same; when they do not, a change was made without
/// an announcement this room heard, or announced with a number it had seen
/// already (a store that went back and moved on between two looks). Acted
/// on when the next look finds the same at the same stamp: an entry that
/// just expired is live in the room's list until the sweep announces its
/// leave (within a second).
fn compare_content<T: Copy + PartialEq>(same_stamp: bool, listed: T, stamp: Option<&Stamp>, store: T, suspect: &mut Option<(Option<Stamp>, T)>) -> Option<&'static str> {
    if !same_stamp || listed == store {
        // Another stamp is the stamps' comparison's to act on.
        *suspect = None;
        return None;
    }
    let seen = (stamp.cloned(), store);
    let again = suspect.as_ref() == Some(&seen);
    *suspect = Some(seen);
    again.then_some("differs from the store's at the same stamp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_that_differ_at_the_same_stamp_are_acted_on_when_seen_twice() {
        let mut suspect = None;
        let (ab, ac) = (LiveMembers::of(["a", "b"]), LiveMembers::of(["a", "c"]));
        let s = at("e", 3);
        assert_eq!(compare_content(true, ab, Some(&s), ab, &mut suspect), None);
        assert_eq!(compare_content(true, ab, Some(&s), ac, &mut suspect), None, "an expiry's leave may be on its way");
        assert!(compare_content(true, ab, Some(&s), ac, &mut suspect).is_some(), "the same at the next look: same count, other members");
        assert_eq!(compare_content(false, ab, Some(&at("e", 4)), ac, &mut suspect), None, "stamps that differ are compared as stamps");
        assert_eq!(compare_content(true, ab, Some(&at("e", 4)), ac, &mut suspect), None, "moved on: look again");
        assert_eq!(compare_content(true, ab, None, LiveMembers::default(), &mut suspect), None);
        assert!(compare_content(true, ab, None, LiveMembers::default(), &mut suspect).is_some(), "listed members the store has no record of");
    }

    fn at(epoch: &str, seq: u64) -> Stamp {
        Stamp { epoch: epoch.into(), seq }
    }

    #[test]
    fn a_store_ahead_is_acted_on_when_seen_twice() {
        let mut suspect = None;
        assert_eq!(compare(Some(&at("e", 3)), Some(&at("e", 3)), &mut suspect), None);
        assert_eq!(compare(Some(&at("e", 3)), Some(&at("e", 5)), &mut suspect), None, "events may be in flight");
        assert!(compare(Some(&at("e", 3)), Some(&at("e", 5)), &mut suspect).is_some(), "still missing at the next look");
        assert_eq!(compare(Some(&at("e", 3)), Some(&at("e", 6)), &mut suspect), None, "moved on: look again");
        assert!(compare(Some(&at("e", 3)), Some(&at("f", 1)), &mut suspect).is_some(), "another incarnation at once");
        assert!(compare(Some(&at("e", 3)), Some(&at("e", 2)), &mut suspect).is_some(), "a store that went back at once");
        assert!(compare(Some(&at("e", 3)), None, &mut suspect).is_some(), "a store that lost it at once");
        assert_eq!(compare(None, None, &mut suspect), None);
    }
}
