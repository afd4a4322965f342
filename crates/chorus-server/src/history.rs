//! Each user's undo and redo history of one document, as a room keeps it
//! for the users who opened the document with `undo` on.
//!
//! The history itself is the core's [`UndoStack`]; this module decides when
//! it does its work. Committing an edit only notes its version and time (a
//! constant cost on the hot path): the stack records noted edits, and moves
//! through everyone else's ops, only when it is needed — an undo or redo,
//! saving it, or the log about to be trimmed past it. All of that comes
//! from the op log the room already holds. Moving a history costs a
//! transform of its steps through each op, which is why histories are
//! kept only for clients that offer undo.
//!
//! Histories are saved to the store (with the document's epoch, so a reset
//! document drops them) after every undo and redo and when the user's last
//! connection here closes the document, so undo keeps working after a
//! reconnect, on this node or another. Edits made in the moments before a
//! node crashes may be missing from the saved history; they stay in the
//! document, they just cannot be undone.

use chorus_core::oplog::OpLog;
use chorus_core::text::TextOp;
use chorus_core::undo::UndoStack;
use chorus_protocol::UndoAction;
use serde::{Deserialize, Serialize};
use tracing::warn;

pub struct History {
    stack: UndoStack,
    /// The user's edits committed here and not recorded yet: (version, ms).
    noted: Vec<(u64, u64)>,
    /// Sequence numbers of the undo and redo ops this history commits, as
    /// their own submitter (so the log deduplicates them like any op).
    pub seq: u64,
}

/// A history as the store keeps it.
#[derive(Serialize, Deserialize)]
struct Saved {
    epoch: String,
    seq: u64,
    stack: UndoStack,
}

/// Edits noted before the history records them (16 bytes each); past this
/// it records them at once, to bound the memory a user costs.
const MAX_NOTED: usize = 10_000;

impl History {
    pub fn new(now_ms: u64) -> Self {
        Self { stack: UndoStack::new(), noted: Vec::new(), seq: now_ms }
    }

    /// The oldest version whose following ops the history still needs from
    /// the log.
    pub fn needs_log_from(&self) -> u64 {
        self.noted.first().map_or(self.stack.version(), |(v, _)| (v - 1).min(self.stack.version()))
    }

    /// Nothing recorded and nothing noted.
    pub fn is_blank(&self) -> bool {
        self.noted.is_empty() && self.stack.is_empty()
    }

    /// A saved history, unless it belongs to another incarnation of the
    /// document or does not decode.
    pub fn restore(saved: &str, epoch: &str, now_ms: u64) -> Option<Self> {
        let saved: Saved = serde_json::from_str(saved).map_err(|e| warn!("a saved undo history does not decode; starting a new one: {e}")).ok()?;
        (saved.epoch == epoch).then(|| Self { stack: saved.stack, noted: Vec::new(), seq: saved.seq.max(now_ms) })
    }

    /// The history to save; call [`History::bring_forward`] first.
    pub fn save(&self, epoch: &str) -> String {
        serde_json::to_string(&Saved { epoch: epoch.to_owned(), seq: self.seq, stack: self.stack.clone() }).expect("histories serialize")
    }

    /// Notes one of the user's edits, committed as `version` at `now_ms`.
    pub fn edited(&mut self, version: u64, now_ms: u64, log: &OpLog) {
        self.noted.push((version, now_ms));
        if self.noted.len() >= MAX_NOTED {
            self.bring_forward(log);
        }
    }

    /// Records the noted edits and moves the history to the log's head. A
    /// history the log no longer reaches back to is dropped (with a warning):
    /// its steps could not be placed in the present text.
    pub fn bring_forward(&mut self, log: &OpLog) {
        let noted = std::mem::take(&mut self.noted);
        let mut outcome = Ok(());
        for (version, at) in noted {
            let Some(entry) = log.since(version - 1).and_then(|mut e| e.next()) else {
                outcome = Err(format!("edit {version} is no longer in the log"));
                break;
            };
            outcome = self.stack.record(&entry.op, version, at, later(log, self.stack.version())).map_err(|e| e.to_string());
            if outcome.is_err() {
                break;
            }
        }
        if outcome.is_ok() {
            outcome = self.stack.catch_up(later(log, self.stack.version())).map_err(|e| e.to_string());
        }
        if let Err(e) = outcome {
            warn!("undo history dropped: {e}");
            self.stack.clear();
        }
    }

    /// The op that takes the latest step back (or forward again), to commit
    /// at the head; `None` when there is none. Brings the history forward first.
    pub fn propose(&mut self, direction: UndoAction, log: &OpLog) -> Option<TextOp> {
        self.bring_forward(log);
        let head = log.head();
        let proposal = match direction {
            UndoAction::Undo => self.stack.undo(head, later(log, self.stack.version())),
            UndoAction::Redo => self.stack.redo(head, later(log, self.stack.version())),
        };
        proposal.unwrap_or_else(|e| {
            warn!("undo history dropped: {e}");
            self.stack.clear();
            None
        })
    }

    /// The proposal was committed as `version` (the log's copy of it, which
    /// may have been rebased past ops committed meanwhile).
    pub fn committed(&mut self, direction: UndoAction, op: &TextOp, version: u64, log: &OpLog) {
        let settled = match direction {
            UndoAction::Undo => self.stack.undone(op, version, later(log, self.stack.version())),
            UndoAction::Redo => self.stack.redone(op, version, later(log, self.stack.version())),
        };
        if let Err(e) = settled {
            warn!("undo history dropped: {e}");
            self.stack.clear();
        }
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

    fn commit(text: &mut OrderedText, client: &str, op: TextOp) -> u64 {
        let op = text.text().make_invertible(&op).unwrap();
        let seq = text.version() + 1;
        text.commit(client, seq, op).unwrap()
    }

    #[test]
    fn noted_edits_are_recorded_when_undo_needs_them() {
        let mut text = OrderedText::new(TextDoc::new(), 0);
        let mut ann = History::new(0);
        let v = commit(&mut text, "ann", TextOp::insert(0, "hello"));
        ann.edited(v, 0, text.log());
        commit(&mut text, "bob", TextOp::insert(5, " world"));
        let undo = ann.propose(UndoAction::Undo, text.log()).expect("something to undo");
        let v = commit(&mut text, "ann-undo", undo);
        let committed = text.log().since(v - 1).unwrap().next().unwrap().op.clone();
        ann.committed(UndoAction::Undo, &committed, v, text.log());
        assert_eq!(text.text().to_string(), " world");
        assert!(ann.propose(UndoAction::Undo, text.log()).is_none(), "nothing left to undo");
        let redo = ann.propose(UndoAction::Redo, text.log()).expect("something to redo");
        commit(&mut text, "ann-undo", redo);
        assert_eq!(text.text().to_string(), "hello world");
    }

    #[test]
    fn a_saved_history_comes_back_only_for_its_epoch() {
        let mut text = OrderedText::new(TextDoc::new(), 0);
        let mut ann = History::new(7);
        let v = commit(&mut text, "ann", TextOp::insert(0, "hi"));
        ann.edited(v, 0, text.log());
        ann.bring_forward(text.log());
        let saved = ann.save("e1");
        assert!(History::restore(&saved, "e2", 0).is_none());
        let mut back = History::restore(&saved, "e1", 0).expect("same epoch");
        assert_eq!(back.seq, 7);
        assert!(back.propose(UndoAction::Undo, text.log()).is_some());
    }
}
