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
//! Copies of the users with the document open here are brought forward
//! before the log is trimmed past them, and saved (compare-and-set, off the
//! room task) so the store's copy stays usable.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_core::oplog::LogEntry;
use chorus_protocol::{ErrorCode, UndoAction};
use chorus_store::{random_id, Appended, Backend, Commit, HistoryWrite, StoredHistory};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Room, COMMIT_DEADLINE};
use crate::document::Document;
use crate::history::History;
use crate::refusal::Refusal;
use crate::submitter;

/// This node's copies of the histories of users with a document open here
/// with undo, by (document, user).
#[derive(Default)]
pub(super) struct Histories {
    copies: HashMap<(Arc<str>, String), History>,
}

impl Histories {
    pub(super) fn forget_doc(&mut self, doc: &str) {
        self.copies.retain(|(d, _), _| &**d != doc);
    }

    pub(super) fn users_of(&self, doc: &str) -> Vec<String> {
        self.copies.keys().filter(|(d, _)| &**d == doc).map(|(_, u)| u.clone()).collect()
    }

    /// Brings forward the copies the trim would leave behind, and saves them.
    pub(super) fn bring_forward_before_trim(&mut self, store: &Arc<dyn Backend>, room: &Arc<str>, name: &Arc<str>, doc: &Document, trim_to: u64) {
        let mut stale = Vec::new();
        for (key, history) in self.copies.iter_mut() {
            if &key.0 != name || history.version() >= trim_to {
                continue;
            }
            match history.bring_forward(doc.text.log(), &key.1) {
                Ok(()) => save_later(store.clone(), room.clone(), name.clone(), key.1.clone(), doc.epoch.clone(), history.clone()),
                // Another node undid since: the store's copy is the one.
                Err(_) => stale.push(key.clone()),
            }
        }
        for key in stale {
            self.copies.remove(&key);
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
            if stored.and_then(|s| History::restore(&s.saved, &epoch)).is_some_and(|s| s.version() >= history.version()) {
                return;
            }
            match store.save_history(&room, &doc, &user, rev, &token, &history.save(&epoch)).await {
                Ok(true) => return,
                Ok(false) => continue,
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
        let key = (name.clone(), user.to_owned());
        if self.histories.copies.contains_key(&key) {
            return;
        }
        let Some(doc) = self.docs.get(name) else { return };
        let (epoch, head) = (doc.epoch.clone(), doc.version());
        for _ in 0..3 {
            let stored = match self.store().load_history(&self.name, name, user).await {
                Ok(stored) => stored,
                Err(e) => {
                    warn!(room = %self.name, doc = %name, %user, "could not load the undo history (undo will try again): {e}");
                    return;
                }
            };
            let rev = stored.as_ref().map_or(0, |s| s.rev);
            if let Some(history) = stored.and_then(|s| History::restore(&s.saved, &epoch)) {
                self.histories.copies.insert(key, history);
                return;
            }
            // None yet (or one of a lost incarnation): the user's edits from
            // now on are theirs to undo, on every node.
            let history = History::at(head);
            match self.store().save_history(&self.name, name, user, rev, &random_id(), &history.save(&epoch)).await {
                Ok(true) => {
                    self.histories.copies.insert(key, history);
                    return;
                }
                Ok(false) => continue, // Another node made it meanwhile.
                Err(e) => {
                    warn!(room = %self.name, doc = %name, %user, "could not create the undo history: {e}");
                    return;
                }
            }
        }
    }

    /// The user's history to undo from, brought forward to the replica's
    /// head: this node's copy while it is good, else the store's. `None`
    /// when the store's is ahead of the replica (catch up and ask again).
    fn history_for(&mut self, name: &Arc<str>, user: &str, stored: Option<StoredHistory>) -> Option<History> {
        let doc = self.docs.get(name)?;
        let key = (name.clone(), user.to_owned());
        if let Some(copy) = self.histories.copies.get_mut(&key) {
            if copy.bring_forward(doc.text.log(), user).is_ok() {
                return Some(copy.clone());
            }
            self.histories.copies.remove(&key);
        }
        let mut history = match stored.and_then(|s| History::restore(&s.saved, &doc.epoch)) {
            Some(h) => h,
            None => return Some(History::at(doc.version())),
        };
        history.bring_forward(doc.text.log(), user).ok()?;
        Some(history)
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
        while Instant::now() < deadline {
            // What other nodes committed counts: the undo goes on top of it.
            self.catch_up(&name).await?;
            let stored = self.store().load_history(&self.name, &name, &user).await?;
            let rev = stored.as_ref().map_or(0, |s| s.rev);
            let Some(mut history) = self.history_for(&name, &user, stored) else { continue };
            let doc = &self.docs[&name];
            let Some(op) = history.propose(direction, doc.text.log()) else { return Ok(None) };
            let (head, head_digest, epoch) = (doc.version(), doc.head_digest(), doc.epoch.clone());
            let Some(after) = history.committed(direction, &op, head + 1) else { return Ok(None) };
            let saved = after.save(&epoch);
            let token = random_id();
            let seq = rev + 1;
            let digest = head_digest.next(head + 1, &client, seq, &op);
            let write = HistoryWrite { user: &user, expected_rev: rev, token: &token, saved: &saved };
            let commit = Commit { epoch: &epoch, expected: head, expected_digest: head_digest, client: &client, seq, op: &op, digest, history: Some(write) };
            match self.store().append(&self.name, &name, &commit).await? {
                Appended::Committed { version, at } => {
                    let entry = LogEntry { version, client: client.clone(), seq, op, at, digest };
                    self.apply(&name, entry, None);
                    self.histories.copies.insert((name.clone(), user.clone()), after);
                    metrics::counter!("chorus_ops_committed_total").increment(1);
                    return Ok(Some(version));
                }
                Appended::Duplicate { version } => {
                    // This very write landed before its answer was lost.
                    self.histories.copies.remove(&(name.clone(), user.clone()));
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
                    self.histories.copies.remove(&(name.clone(), user.clone()));
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
    /// visit, starts from it.
    pub(super) fn release_history(&mut self, name: &Arc<str>, user: &str) {
        let Some(mut history) = self.histories.copies.remove(&(name.clone(), user.to_owned())) else { return };
        let Some(doc) = self.docs.get(name) else { return };
        // A document nobody edited has nothing to undo, and is discarded
        // from the store when unread: saving would leave a history behind.
        if doc.version() == 0 {
            return;
        }
        if history.bring_forward(doc.text.log(), user).is_ok() {
            save_later(self.rooms.backend.clone(), self.name.clone(), name.clone(), user.to_owned(), doc.epoch.clone(), history);
        }
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
