//! One user's undo and redo history of one document, as the server keeps it.
//!
//! The history itself is the core's [`UndoStack`], relative to some version
//! of the document. What belongs in it is read off the op log: the log
//! names every op's submitter, and submitter ids are scoped by the server to
//! the user ([`crate::submitter`]), so the user's own edits are the log's ops
//! whose submitter is theirs, whichever connection, tab or node made them.
//! The room gives each copy every op as it is committed, which costs a push
//! (the core moves a step through others' ops only when it is needed), so a
//! copy is always at the replica's head: trimming the log leaves it nothing
//! to catch up, and releasing it is only saving it.
//!
//! The store holds each history with a revision, and an undo commits its
//! op and the history it leaves in one compare-and-set on that revision.
//! So one user's history is one history whatever nodes serve their tabs:
//! a node whose copy is older than the store's (another tab undid since)
//! notices, because the log holds an undo op of that user after its copy,
//! and starts again from the store's. Copies are only ever caches.
//!
//! A history also holds the digest of the log at its version: which history
//! of the document its steps were built on. A store that went back in time
//! (an older backup restored, a failover to a replica that was behind) gives
//! the lost versions to other ops, and a history of the lost ops, kept by a
//! node or saved to the store before anyone noticed, would otherwise be
//! brought forward through the new ops as if they followed its own, and undo
//! would apply steps built against another text. Such a history is refused
//! ([`Unusable::Foreign`]) wherever it meets a log that holds another digest
//! at its version, and undo starts again from the present.

use std::sync::Arc;

use chorus_core::digest::Digest;
use chorus_core::oplog::OpLog;
use chorus_core::text::TextOp;
use chorus_core::undo::UndoStack;
use chorus_protocol::UndoAction;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::submitter;

#[derive(Clone)]
pub struct History {
    stack: UndoStack,
    /// The digest of the log at the stack's version; `None` only for a
    /// history saved by an earlier Chorus, until it is brought forward.
    digest: Option<Digest>,
}

/// Whose history it is: the submitter ids that mark the user's edits and
/// undos in the log, worked out once rather than at every op.
pub struct Owner {
    user: String,
    edits: submitter::UserEdits,
    undos: String,
}

impl Owner {
    pub fn new(user: &str) -> Self {
        Self { user: user.to_owned(), edits: submitter::of_user(user), undos: submitter::history(user) }
    }

    pub fn user(&self) -> &str {
        &self.user
    }
}

/// Why a history cannot be brought forward on the log given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// The log holds an undo of this user that the copy does not know (the
    /// store has a newer history), or the copy is ahead of the log given
    /// (catch the replica up first).
    Stale,
    /// The log holds another op at the history's version: the history was
    /// built on ops the store lost (or the replica is the one that holds
    /// them). Its steps would apply to another text; drop it.
    Foreign,
}

/// A history as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Saved {
    epoch: String,
    /// Absent in histories saved by an earlier Chorus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    stack: UndoStack,
}

impl History {
    /// An empty history of a document at `version`, whose log has `digest`
    /// there: the user's edits after it are theirs to undo.
    pub fn at(version: u64, digest: Digest) -> Self {
        Self { stack: UndoStack::starting_at(version), digest: Some(digest) }
    }

    /// An empty history at the head of `log`.
    pub fn at_head(log: &OpLog) -> Self {
        Self::at(log.head(), log.head_digest())
    }

    /// The version the history is relative to.
    pub fn version(&self) -> u64 {
        self.stack.version()
    }

    /// A saved history, unless it belongs to another incarnation of the
    /// document or does not decode.
    pub fn restore(saved: &str, epoch: &str) -> Option<Self> {
        let saved: Saved = serde_json::from_str(saved).map_err(|e| warn!("a saved undo history does not decode; starting a new one: {e}")).ok()?;
        (saved.epoch == epoch).then_some(Self { stack: saved.stack, digest: saved.digest })
    }

    /// The version of a saved history, unless it belongs to another
    /// incarnation of the document or does not decode; read without
    /// building its steps, which can be large.
    pub fn saved_version(saved: &str, epoch: &str) -> Option<u64> {
        #[derive(Deserialize)]
        struct Head {
            epoch: String,
            stack: StackHead,
        }
        #[derive(Deserialize)]
        struct StackHead {
            version: u64,
        }
        let head: Head = serde_json::from_str(saved).ok()?;
        (head.epoch == epoch).then_some(head.stack.version)
    }

    /// The history to save.
    pub fn save(&self, epoch: &str) -> String {
        serde_json::to_string(&Saved { epoch: epoch.to_owned(), digest: self.digest, stack: self.stack.clone() }).expect("histories serialize")
    }

    /// Whether the history was built on `log`'s history, as far as the log
    /// reaches back: the same digest at the history's version.
    fn built_on(&self, log: &OpLog) -> Result<(), Unusable> {
        match (self.digest, log.digest_at(self.stack.version())) {
            (Some(mine), Some(theirs)) if mine != theirs => Err(Unusable::Foreign),
            _ => Ok(()),
        }
    }

    /// Notes the log's digest at the history's version, once it has moved.
    fn anchor(&mut self, log: &OpLog) {
        if let Some(digest) = log.digest_at(self.stack.version()) {
            self.digest = Some(digest);
        }
    }

    /// Records `user`'s edits among the log's ops after the history's
    /// version and moves it to the log's head. A history the log no longer
    /// reaches back to is emptied (with a warning): its steps could not be
    /// placed in the present text.
    pub fn bring_forward(&mut self, log: &OpLog, user: &str) -> Result<(), Unusable> {
        self.bring_forward_for(log, &Owner::new(user))
    }

    /// Brings the copy forward when the log has just committed one op
    /// after it, the common case: an op of someone else's is handed over
    /// as `shared`, one copy for all the document's histories (made on
    /// first use). Anything else goes through [`History::bring_forward`].
    pub fn follow(&mut self, log: &OpLog, owner: &Owner, shared: &mut Option<Arc<TextOp>>) -> Result<(), Unusable> {
        let head = log.head();
        let at = self.stack.version();
        let last = if at + 1 == head { log.since(at).and_then(|mut e| e.next()) } else { None };
        let Some(entry) = last.filter(|e| e.client != owner.undos && !owner.edits.owns(&e.client)) else {
            return self.bring_forward_for(log, owner);
        };
        self.built_on(log)?;
        let op = shared.get_or_insert_with(|| Arc::new(entry.op.strip_invertible()));
        if let Err(e) = self.stack.follow(entry.version, op) {
            warn!(user = owner.user(), "undo history dropped: {e}");
            self.stack.clear();
        }
        self.anchor(log);
        Ok(())
    }

    /// [`History::bring_forward`] for an owner worked out before.
    pub fn bring_forward_for(&mut self, log: &OpLog, owner: &Owner) -> Result<(), Unusable> {
        let user = owner.user();
        let from = self.stack.version();
        if from > log.head() {
            return Err(Unusable::Stale);
        }
        self.built_on(log)?;
        let Some(entries) = log.since(from) else {
            if !self.stack.is_empty() {
                warn!(user, "undo history dropped: the log was trimmed past it (version {from}, log from {})", log.oldest());
                self.stack.clear();
            }
            return Ok(());
        };
        let mut outcome = Ok(());
        for e in entries {
            if e.client == owner.undos {
                return Err(Unusable::Stale);
            }
            if !owner.edits.owns(&e.client) {
                continue;
            }
            outcome = self.stack.record(&e.op, e.version, e.at, later(log, self.stack.version()));
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_ok() {
            outcome = self.stack.catch_up(later(log, self.stack.version()));
        }
        if let Err(e) = outcome {
            warn!(user, "undo history dropped: {e}");
            self.stack.clear();
        }
        self.anchor(log);
        Ok(())
    }

    /// The op that takes the latest step back (or forward again), to commit
    /// at the log's head; `None` when there is none (or the history was
    /// built on another history of the document: it is emptied). Bring the
    /// history forward first.
    pub fn propose(&mut self, direction: UndoAction, log: &OpLog) -> Option<TextOp> {
        if self.built_on(log).is_err() {
            warn!("undo history dropped: it was built on ops the store no longer has");
            *self = Self::at_head(log);
            return None;
        }
        let head = log.head();
        let proposal = match direction {
            UndoAction::Undo => self.stack.undo(head, later(log, self.stack.version())),
            UndoAction::Redo => self.stack.redo(head, later(log, self.stack.version())),
        };
        self.anchor(log);
        proposal.unwrap_or_else(|e| {
            warn!("undo history dropped: {e}");
            self.stack.clear();
            None
        })
    }

    /// The history once `op`, its proposal, is committed at `version` (the
    /// next version: it is written together with the op) with `digest`.
    pub fn committed(&self, direction: UndoAction, op: &TextOp, version: u64, digest: Digest) -> Option<History> {
        let mut after = self.clone();
        after.digest = Some(digest);
        let none = std::iter::empty();
        let settled = match direction {
            UndoAction::Undo => after.stack.undone(op, version, none),
            UndoAction::Redo => after.stack.redone(op, version, none),
        };
        settled.map_err(|e| warn!("undo history dropped: {e}")).ok().map(|()| after)
    }
}

/// The log's ops after `version`, as the undo stack takes them (none when
/// the log does not reach back so far, which the stack reports as a gap).
fn later(log: &OpLog, version: u64) -> impl Iterator<Item = (u64, &TextOp)> {
    log.since(version).into_iter().flatten().map(|e| (e.version, &e.op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::oplog::OrderedText;
    use chorus_core::text::{TextDoc, TextOp};

    fn commit(text: &mut OrderedText, client: &str, op: TextOp, at: u64) -> u64 {
        let op = text.text().make_invertible(&op).unwrap();
        let seq = text.version() + 1;
        text.commit(client, seq, op, at).unwrap().version
    }

    /// Commits `op`, a proposal of `history`, as `user`'s undo or redo; the
    /// history it leaves.
    fn commit_step(text: &mut OrderedText, history: &History, user: &str, direction: UndoAction, op: TextOp, at: u64) -> History {
        commit(text, &submitter::history(user), op.clone(), at);
        history.committed(direction, &op, text.version(), text.log().head_digest()).expect("settles")
    }

    fn ann_edit() -> String {
        submitter::connection("ann", "tab-1")
    }

    #[test]
    fn the_users_edits_are_read_off_the_log_whichever_tab_made_them() {
        let mut text = OrderedText::new(TextDoc::new(), 0);
        let mut ann = History::at(0, Digest::EMPTY);
        commit(&mut text, &ann_edit(), TextOp::insert(0, "hello"), 0);
        commit(&mut text, &submitter::connection("bob", "tab-1"), TextOp::insert(5, " world"), 10);
        commit(&mut text, &submitter::connection("ann", "tab-2"), TextOp::insert(0, ">"), 5_000);
        ann.bring_forward(text.log(), "ann").unwrap();
        let undo = ann.propose(UndoAction::Undo, text.log()).expect("something to undo");
        let after = commit_step(&mut text, &ann, "ann", UndoAction::Undo, undo, 5_001);
        assert_eq!(text.text().to_string(), "hello world", "the other tab's edit, the latest step, was taken back");
        let mut ann = after;
        ann.bring_forward(text.log(), "ann").unwrap();
        let undo = ann.propose(UndoAction::Undo, text.log()).expect("the first step");
        let after = commit_step(&mut text, &ann, "ann", UndoAction::Undo, undo, 5_002);
        assert_eq!(text.text().to_string(), " world", "only ann's text went");
        let mut ann = after;
        ann.bring_forward(text.log(), "ann").unwrap();
        assert!(ann.propose(UndoAction::Undo, text.log()).is_none(), "nothing left to undo");
        let redo = ann.propose(UndoAction::Redo, text.log()).expect("something to redo");
        commit(&mut text, &submitter::history("ann"), redo, 5_003);
        assert_eq!(text.text().to_string(), "hello world");
    }

    #[test]
    fn a_copy_that_missed_an_undo_of_its_user_is_stale() {
        let mut text = OrderedText::new(TextDoc::new(), 0);
        let mut copy = History::at(0, Digest::EMPTY);
        commit(&mut text, &ann_edit(), TextOp::insert(0, "hi"), 0);
        // Another node undid it and saved the history with it.
        commit(&mut text, &submitter::history("ann"), TextOp::delete(0, 2), 1);
        assert_eq!(copy.bring_forward(text.log(), "ann"), Err(Unusable::Stale));
        // Someone else's undo is just someone else's op.
        let mut bob = History::at(0, Digest::EMPTY);
        assert_eq!(bob.bring_forward(text.log(), "bob"), Ok(()));
    }

    #[test]
    fn a_saved_history_comes_back_only_for_its_epoch() {
        let mut text = OrderedText::new(TextDoc::new(), 0);
        let mut ann = History::at(0, Digest::EMPTY);
        commit(&mut text, &ann_edit(), TextOp::insert(0, "hi"), 0);
        ann.bring_forward(text.log(), "ann").unwrap();
        let saved = ann.save("e1");
        assert!(History::restore(&saved, "e2").is_none());
        let mut back = History::restore(&saved, "e1").expect("same epoch");
        assert_eq!(back.version(), 1);
        assert!(back.propose(UndoAction::Undo, text.log()).is_some());
        assert_eq!(History::saved_version(&saved, "e1"), Some(1));
        assert_eq!(History::saved_version(&saved, "e2"), None);
    }

    #[test]
    fn a_history_of_ops_the_store_lost_is_never_brought_forward_on_the_new_ones() {
        // Ann's history of the log as it was: her "hello" and " there".
        let mut lost = OrderedText::new(TextDoc::new(), 0);
        commit(&mut lost, &ann_edit(), TextOp::insert(0, "hello"), 0);
        commit(&mut lost, &ann_edit(), TextOp::insert(5, " there"), 5_000);
        let mut ann = History::at(0, Digest::EMPTY);
        ann.bring_forward(lost.log(), "ann").unwrap();
        let saved = ann.save("e1");
        // The store went back to version 1 and others took versions 2 to 4.
        let mut now = OrderedText::new(TextDoc::new(), 0);
        commit(&mut now, &ann_edit(), TextOp::insert(0, "hello"), 0);
        for (i, word) in ["<a>", "<b>", "<c>"].into_iter().enumerate() {
            commit(&mut now, &submitter::connection("bob", "tab-1"), TextOp::insert(0, word), 6_000 + i as u64);
        }
        assert_eq!(now.version(), 4);
        let mut copy = ann.clone();
        assert_eq!(copy.bring_forward(now.log(), "ann"), Err(Unusable::Foreign), "a copy kept by a node");
        assert_eq!(copy.follow(now.log(), &Owner::new("ann"), &mut None), Err(Unusable::Foreign));
        let mut stored = History::restore(&saved, "e1").expect("same epoch");
        assert_eq!(stored.bring_forward(now.log(), "ann"), Err(Unusable::Foreign), "a copy saved to the store");
        // Proposed from anyway, it offers nothing rather than a step of the lost text.
        assert_eq!(stored.propose(UndoAction::Undo, now.log()), None);
        assert_eq!(stored.version(), 4, "it starts again at the head");
        assert_eq!(stored.bring_forward(now.log(), "ann"), Ok(()));
        // The history where the logs still agree (version 1) is good.
        let mut at_one = OrderedText::new(TextDoc::new(), 0);
        commit(&mut at_one, &ann_edit(), TextOp::insert(0, "hello"), 0);
        let mut good = History::at(0, Digest::EMPTY);
        good.bring_forward(at_one.log(), "ann").unwrap();
        assert_eq!(good.bring_forward(now.log(), "ann"), Ok(()));
        assert_eq!(good.propose(UndoAction::Undo, now.log()), Some(TextOp::delete_text(9, "hello")));
    }

    #[test]
    fn a_history_saved_by_an_earlier_chorus_has_no_digest_and_is_taken_as_it_is() {
        let old = r#"{"epoch":"e1","stack":{"undo":[],"redo":[],"version":1,"depth":100,"capture_ms":500,"last_edit_ms":0}}"#;
        let mut text = OrderedText::new(TextDoc::new(), 0);
        commit(&mut text, &ann_edit(), TextOp::insert(0, "hi"), 0);
        let mut back = History::restore(old, "e1").unwrap();
        assert_eq!(back.bring_forward(text.log(), "ann"), Ok(()));
        assert!(back.save("e1").contains(&text.log().head_digest().to_hex()), "it has one from then on: {}", back.save("e1"));
    }

    #[test]
    fn a_history_ahead_of_the_replica_asks_for_a_catch_up() {
        let text = OrderedText::new(TextDoc::new(), 0);
        let mut ann = History::at(0, Digest::EMPTY);
        let mut other = OrderedText::new(TextDoc::new(), 0);
        commit(&mut other, &ann_edit(), TextOp::insert(0, "x"), 0);
        ann.bring_forward(other.log(), "ann").unwrap();
        assert_eq!(ann.bring_forward(text.log(), "ann"), Err(Unusable::Stale));
    }

    #[test]
    fn a_history_saved_before_steps_moved_lazily_still_loads() {
        // How a history of "hi" typed at version 1 was stored: each chain a
        // list of ops, all relative to the saved version.
        let old = r#"{"epoch":"e1","stack":{"undo":[[{"d":"hi"}]],"redo":[],"version":1,"depth":100,"capture_ms":500,"last_edit_ms":0}}"#;
        let mut text = OrderedText::new(TextDoc::new(), 0);
        commit(&mut text, &ann_edit(), TextOp::insert(0, "hi"), 0);
        commit(&mut text, &submitter::connection("bob", "tab-1"), TextOp::insert(0, ">"), 10);
        let mut back = History::restore(old, "e1").expect("the old form loads");
        back.bring_forward(text.log(), "ann").unwrap();
        assert_eq!(back.propose(UndoAction::Undo, text.log()), Some(TextOp::delete_text(1, "hi")));
        // What does not decode is dropped (with a warning), never half read.
        assert!(History::restore(r#"{"epoch":"e1","stack":{"undo":[7]}}"#, "e1").is_none());
    }

    #[test]
    fn a_copy_given_each_op_agrees_with_one_brought_forward_at_once() {
        let mut text = OrderedText::new(TextDoc::new(), 0);
        let (mut followed, mut at_once) = (History::at(0, Digest::EMPTY), History::at(0, Digest::EMPTY));
        let owner = Owner::new("ann");
        for i in 0..60u64 {
            let (who, op) = match i % 3 {
                0 => (ann_edit(), TextOp::insert(0, "a")),
                _ => (submitter::connection("bob", "tab-1"), TextOp::insert((i as usize / 2) % (text.text().len_chars() + 1), "b")),
            };
            commit(&mut text, &who, op, i * 400);
            followed.follow(text.log(), &owner, &mut None).unwrap();
        }
        at_once.bring_forward(text.log(), "ann").unwrap();
        assert_eq!(followed.save("e"), at_once.save("e"));
        for _ in 0..30 {
            let (a, b) = (followed.propose(UndoAction::Undo, text.log()), at_once.propose(UndoAction::Undo, text.log()));
            assert_eq!(a, b);
            let Some(op) = a else { break };
            let next = commit_step(&mut text, &followed, "ann", UndoAction::Undo, op.clone(), 50_000);
            let (version, digest) = (text.version(), text.log().head_digest());
            at_once = at_once.committed(UndoAction::Undo, &op, version, digest).unwrap();
            followed = next;
        }
        assert!(!text.text().to_string().contains('a'), "every step of ann's was undone: {}", text.text());
    }
}
