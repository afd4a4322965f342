//! Per-user undo and redo: the store's history is the truth, copies here
//! are caches.
//!
//! A user's history (see [`History`]) is read off the op log, so any node
//! can bring any copy forward. An undo loads the store's revision, takes
//! this node's copy if it is still good (no undo of the user's own that it
//! does not know is in the log) or the store's otherwise, proposes the op,
//! and commits op and resulting history in one compare-and-set on that
//! revision, with the revision as the op's sequence number. A race with
//! another node (another tab of the user) loses cleanly and tries again on
//! the newer history, so two presses take back two steps; a write whose
//! answer was lost is recognised by its token, so one press never takes
//! back two.
//!
//! Copies of the users with the document open here follow every op the
//! room commits (a push each, see [`History`]), so trimming the log costs
//! them nothing; they are saved (compare-and-set, off the room task) when
//! the log is trimmed past the store's copy, so the store's copy stays
//! usable by other nodes, and when released.
//!
//! A history built on ops the store no longer has (it went back in time:
//! an older backup, a failover to a replica that was behind) is never
//! brought forward on the store's log: a copy here is dropped when the
//! replica is reloaded or meets the new ops, and one found in the store
//! (saved by a node that had not noticed yet) is replaced by a new, empty
//! history at the head. The user's undo then takes back what the history
//! the store kept still holds, or nothing (`done: false`).

use std::collections::HashMap;
use std::sync::Arc;

use chorus_core::oplog::{LogEntry, OpLog};
use chorus_protocol::{ErrorCode, UndoAction};
use chorus_store::{random_id, Appended, Backend, Commit, HistoryWrite, StoreError, StoredHistory};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Room, COMMIT_DEADLINE};
use crate::document::Document;
use crate::history::{History, Owner, Unusable};
use crate::refusal::Refusal;
use crate::submitter;

/// This node's copies of the histories of users with a document open here
/// with undo, by document and user.
#[derive(Default)]
pub(super) struct Histories {
    copies: HashMap<Arc<str>, HashMap<String, Kept>>,
}

/// A copy, whose it is, and the version of the copy last saved to the store.
struct Kept {
    history: History,
    owner: Owner,
    saved: u64,
}

impl Kept {
    fn new(history: History, user: &str) -> Self {
        let saved = history.version();
        Self { history, owner: Owner::new(user), saved }
    }
}

impl Histories {
    pub(super) fn forget_doc(&mut self, doc: &str) {
        self.copies.remove(doc);
    }

    pub(super) fn users_of(&self, doc: &str) -> Vec<String> {
        self.copies.get(doc).map(|users| users.keys().cloned().collect()).unwrap_or_default()
    }

    fn get(&self, doc: &str, user: &str) -> Option<&Kept> {
        self.copies.get(doc)?.get(user)
    }

    fn insert(&mut self, doc: &Arc<str>, user: &str, copy: Kept) {
        self.copies.entry(doc.clone()).or_default().insert(user.to_owned(), copy);
    }

    fn remove(&mut self, doc: &str, user: &str) -> Option<Kept> {
        let users = self.copies.get_mut(doc)?;
        let copy = users.remove(user);
        if users.is_empty() {
            self.copies.remove(doc);
        }
        copy
    }

    /// Gives the copies of a document the ops committed to its replica
    /// since they last saw it (one, as the room commits them): a push each.
    /// A copy that missed an undo of its user is dropped; the store's copy
    /// is the one. So is a copy built on another history of the document
    /// than the replica's (the store went back in time).
    pub(super) fn committed(&mut self, doc: &str, log: &OpLog) {
        let Some(users) = self.copies.get_mut(doc) else { return };
        let mut shared = None;
        users.retain(|user, copy| match copy.history.follow(log, &copy.owner, &mut shared) {
            Ok(()) => true,
            Err(Unusable::Stale) => false,
            Err(Unusable::Foreign) => {
                warn!(%doc, %user, version = copy.history.version(), "undo history dropped: it was built on ops the store no longer has");
                false
            }
        });
        if users.is_empty() {
            self.copies.remove(doc);
        }
    }

    /// Before the log is trimmed to `trim_to`: saves the copies whose saved
    /// version the trim leaves behind, so that another node (or a later
    /// visit) can still bring the store's copy forward. Copies are at the
    /// head already; this clones them and saves them off the room task.
    pub(super) fn bring_forward_before_trim(&mut self, store: &Arc<dyn Backend>, room: &Arc<str>, name: &Arc<str>, doc: &Document, trim_to: u64) {
        self.committed(name, doc.text.log());
        let Some(users) = self.copies.get_mut(&**name) else { return };
        for (user, copy) in users.iter_mut() {
            if copy.saved < trim_to {
                copy.saved = copy.history.version();
                save_later(store.clone(), room.clone(), name.clone(), user.clone(), doc.epoch.clone(), copy.history.clone());
            }
        }
    }
}

/// Saves a copy unless the store's is at least as far along; off the room task.
fn save_later(store: Arc<dyn Backend>, room: Arc<str>, doc: Arc<str>, user: String, epoch: String, history: History) {
    tokio::spawn(async move {
        let token = random_id();
        for _ in 0..3 {
            let stored = match store.load_history(&room, &doc, &user).await {
                Ok(stored) => stored,
                Err(e) => {
                    warn!(%room, %doc, %user, "could not save the undo history: {e}");
                    return;
                }
            };
            let rev = stored.as_ref().map_or(0, |s| s.rev);
            if stored.and_then(|s| History::saved_version(&s.saved, &epoch)).is_some_and(|v| v >= history.version()) {
                return;
            }
            match store.save_history(&room, &doc, &epoch, &user, rev, &token, &history.save(&epoch)).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(StoreError::Stale(why)) => {
                    // Deleted (or created again) meanwhile: nothing to keep.
                    debug!(%room, %doc, %user, "undo history not saved: {why}");
                    return;
                }
                Err(e) => {
                    warn!(%room, %doc, %user, "could not save the undo history: {e}");
                    return;
                }
            }
        }
    });
}

impl Room {
    /// Makes sure the user's history of an open document exists in the
    /// store and has a copy here.
    pub(super) async fn ensure_history(&mut self, name: &Arc<str>, user: &str) {
        if self.histories.get(name, user).is_some() {
            return;
        }
        let Some(doc) = self.docs.get(name) else { return };
        let (epoch, head, head_digest) = (doc.epoch.clone(), doc.version(), doc.head_digest());
        for _ in 0..3 {
            let stored = match self.store().load_history(&self.name, name, user).await {
                Ok(stored) => stored,
                Err(e) => {
                    warn!(room = %self.name, doc = %name, %user, "could not load the undo history (undo will try again): {e}");
                    return;
                }
            };
            let rev = stored.as_ref().map_or(0, |s| s.rev);
            if let Some(mut history) = stored.and_then(|s| History::restore(&s.saved, &epoch)) {
                let Some(doc) = self.docs.get(name) else { return };
                // Brought to the head now, through the log's window at most:
                // from here on it takes the room's ops one by one.
                match history.bring_forward(doc.text.log(), user) {
                    Ok(()) => {
                        self.histories.insert(name, user, Kept::new(history, user));
                        return;
                    }
                    // Ahead of the replica: the undo takes the store's.
                    Err(Unusable::Stale) => return,
                    Err(Unusable::Foreign) => {
                        warn!(room = %self.name, doc = %name, %user, version = history.version(), "the stored undo history was built on ops the store no longer has; starting a new one");
                    }
                }
            }
            // None yet (or one of a lost incarnation, or of ops the store
            // lost): the user's edits from now on are theirs to undo, on
            // every node.
            let history = History::at(head, head_digest);
            match self.store().save_history(&self.name, name, &epoch, user, rev, &random_id(), &history.save(&epoch)).await {
                Ok(true) => {
                    self.histories.insert(name, user, Kept::new(history, user));
                    return;
                }
                Ok(false) => continue, // Another node made it meanwhile.
                Err(StoreError::Stale(why)) => {
                    // The store has no such incarnation: deleted (this replica
                    // is fenced off when it hears or finds that), or discarded
                    // while open here, in which case the first op creates it
                    // again and the first undo writes the history with its op.
                    debug!(room = %self.name, doc = %name, %user, "undo history kept here only: {why}");
                    self.histories.insert(name, user, Kept::new(history, user));
                    return;
                }
                Err(e) => {
                    warn!(room = %self.name, doc = %name, %user, "could not create the undo history: {e}");
                    return;
                }
            }
        }
    }

    /// The user's history to undo from, brought forward to the replica's
    /// head: this node's copy while it is good, else the store's. `None`
    /// when the store's is ahead of the replica (catch up and ask again),
    /// unless `ahead_is_lost`: the replica caught up after that very
    /// history was read and is still behind it, so its version is one the
    /// store lost. A store's history built on lost ops is replaced by an
    /// empty one at the head, kept here as the copy (the first undo or redo
    /// committed writes it over the store's).
    fn history_for(&mut self, name: &Arc<str>, user: &str, stored: Option<StoredHistory>, ahead_is_lost: bool) -> Option<History> {
        let doc = self.docs.get(name)?;
        self.histories.committed(name, doc.text.log());
        if let Some(copy) = self.histories.get(name, user) {
            return Some(copy.history.clone());
        }
        let log = doc.text.log();
        let mut history = match stored.and_then(|s| History::restore(&s.saved, &doc.epoch)) {
            Some(h) => h,
            None => return Some(History::at_head(log)),
        };
        match history.bring_forward(log, user) {
            Ok(()) => return Some(history),
            Err(Unusable::Stale) if !ahead_is_lost => return None,
            Err(_) => {}
        }
        warn!(room = %self.name, doc = %name, %user, version = history.version(), head = log.head(), "the stored undo history was built on ops the store no longer has; starting a new one");
        let fresh = History::at_head(log);
        self.histories.insert(name, user, Kept::new(fresh.clone(), user));
        Some(fresh)
    }

    /// Commits the inverse of the user's latest step (or of their latest
    /// undo, for a redo) as a new op, transformed past everything committed
    /// since, so it never takes back anyone else's text.
    pub(super) async fn undo(&mut self, conn: Arc<str>, name: Arc<str>, direction: UndoAction) -> Result<Option<u64>, Refusal> {
        let Some(user) = self.local.get(&conn).map(|l| l.user.clone()) else {
            return Err(Refusal::new(ErrorCode::NotJoined, format!("not in room {}", self.name)));
        };
        if !self.docs.get(&name).is_some_and(|d| d.subscribers.contains_key(&conn)) {
            return Err(Refusal::new(ErrorCode::NotOpen, format!("document {name} is not open; open it first")));
        }
        let client = submitter::history(&user);
        let deadline = Instant::now() + COMMIT_DEADLINE;
        // The revision of a stored history found ahead of the replica.
        let mut ahead_rev = None;
        while Instant::now() < deadline {
            // What other nodes committed counts: the undo goes on top of it.
            self.catch_up(&name).await?;
            let stored = self.store().load_history(&self.name, &name, &user).await?;
            let rev = stored.as_ref().map_or(0, |s| s.rev);
            // A history is written with the op it leaves: one read before
            // the catch-up just made cannot still be ahead of it.
            let Some(mut history) = self.history_for(&name, &user, stored, ahead_rev == Some(rev)) else {
                ahead_rev = Some(rev);
                continue;
            };
            let doc = &self.docs[&name];
            let Some(op) = history.propose(direction, doc.text.log()) else { return Ok(None) };
            let (head, head_digest, epoch) = (doc.version(), doc.head_digest(), doc.epoch.clone());
            let seq = rev + 1;
            let digest = head_digest.next(head + 1, &client, seq, &op);
            let Some(after) = history.committed(direction, &op, head + 1, digest) else { return Ok(None) };
            let saved = after.save(&epoch);
            let token = random_id();
            let write = HistoryWrite { user: &user, expected_rev: rev, token: &token, saved: &saved };
            let commit = Commit { epoch: &epoch, expected: head, expected_digest: head_digest, client: &client, seq, op: &op, digest, history: Some(write) };
            match self.store().append(&self.name, &name, &commit).await? {
                Appended::Committed { version, at } => {
                    let entry = LogEntry { version, client: client.clone(), seq, op, at, digest };
                    // The copy, given its own undo, was dropped as stale.
                    self.apply(&name, entry, None);
                    let mut copy = Kept::new(after, &user);
                    copy.saved = version;
                    self.histories.insert(&name, &user, copy);
                    crate::hot_metrics().ops_committed.increment(1);
                    return Ok(Some(version));
                }
                Appended::Duplicate { version } => {
                    // This very write landed before its answer was lost.
                    self.histories.remove(&name, &user);
                    self.catch_up(&name).await?;
                    return Ok(Some(version));
                }
                Appended::Conflict { missed, .. } => {
                    for entry in missed {
                        if !self.apply(&name, entry, None) {
                            break;
                        }
                    }
                }
                Appended::HistoryMoved | Appended::StaleSeq { .. } => {
                    debug!(room = %self.name, doc = %name, %user, "the undo history moved on another node; trying again on it");
                    self.histories.remove(&name, &user);
                }
                Appended::EpochChanged { .. } | Appended::Diverged => {
                    self.reload(&name).await?;
                    return Err(Refusal::new(ErrorCode::VersionTrimmed, format!("document {name} was reset; open it again")));
                }
            }
        }
        Err(Refusal::new(ErrorCode::Unavailable, format!("document {name} is too busy to undo in; retry")))
    }

    /// Forgets the copy of a user who no longer has the document open here,
    /// saving it first (off the room task) so another node, or a later
    /// visit, starts from it. The copy is at the head already: nothing to
    /// work out here.
    pub(super) fn release_history(&mut self, name: &Arc<str>, user: &str) {
        let Some(copy) = self.histories.remove(name, user) else { return };
        let Some(doc) = self.docs.get(name) else { return };
        // A document nobody edited has nothing to undo, and is discarded
        // from the store when unread: saving would leave a history behind.
        if doc.version() == 0 {
            return;
        }
        save_later(self.rooms.backend.clone(), self.name.clone(), name.clone(), user.to_owned(), doc.epoch.clone(), copy.history);
    }

    /// Releases a user's history unless another of their connections here
    /// still has the document open.
    pub(super) fn release_history_unless_open(&mut self, name: &Arc<str>, user: &str) {
        let still_open = self.docs.get(name).is_some_and(|d| d.subscribers.keys().any(|c| self.local.get(c).is_some_and(|l| l.user == user)));
        if !still_open {
            self.release_history(name, user);
        }
    }
}
