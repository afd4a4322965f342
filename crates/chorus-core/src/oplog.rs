//! The server side of OT: one total order per document.
//!
//! Every accepted op gets the next version. An op made against an older
//! version is transformed (as the later, `Right`, side) past every op ordered
//! since, then appended; with a single ordering point only TP1 is needed, never
//! TP2. A submission whose (client id, sequence number) is already in the log
//! is a resubmission after a lost ack: it is acknowledged with its original
//! version and never applied twice.
//!
//! Versions count ops: a document at version `v` has had `v` ops applied, and
//! the op that took it from `v - 1` to `v` is "the op at version `v`".

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::text::{OpError, Side, TextDoc, TextOp};

/// Who sent an op: a client id unique per connection session of one client.
pub type ClientId = String;

/// One ordered op, as it is stored and as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub version: u64,
    pub client: ClientId,
    pub seq: u64,
    pub op: TextOp,
}

/// Why a submission was refused; nothing was committed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("base version {base} is ahead of the document (version {head})")]
    FutureBase { base: u64, head: u64 },
    #[error("base version {base} is older than the log reaches (from version {oldest}); resync from a snapshot")]
    Trimmed { base: u64, oldest: u64 },
    #[error(transparent)]
    Op(#[from] OpError),
}

/// The outcome of an accepted submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Newly ordered at `version`, as `op` (transformed to the head).
    Committed { version: u64, op: TextOp },
    /// Already in the log at `version`: acknowledge, apply nothing.
    Duplicate { version: u64 },
}

impl Accepted {
    pub fn version(&self) -> u64 {
        match self {
            Accepted::Committed { version, .. } | Accepted::Duplicate { version } => *version,
        }
    }
}

/// The ordered ops of one document, from `oldest` onwards.
#[derive(Debug, Clone, Default)]
pub struct OpLog {
    /// Version the document had before the first kept entry.
    oldest: u64,
    entries: VecDeque<LogEntry>,
}

impl OpLog {
    /// An empty log for a document at `version`.
    pub fn starting_at(version: u64) -> Self {
        Self { oldest: version, entries: VecDeque::new() }
    }

    /// The version of the newest op.
    pub fn head(&self) -> u64 {
        self.oldest + self.entries.len() as u64
    }

    /// The oldest version a client may still catch up from.
    pub fn oldest(&self) -> u64 {
        self.oldest
    }

    /// Ops after `version`, in order; `None` when the log no longer reaches back.
    pub fn since(&self, version: u64) -> Option<impl Iterator<Item = &LogEntry>> {
        if version < self.oldest || version > self.head() {
            return None;
        }
        Some(self.entries.iter().skip((version - self.oldest) as usize))
    }

    /// Finds (client, seq) among the ops after `version`.
    pub fn find(&self, client: &str, seq: u64, version: u64) -> Option<u64> {
        self.since(version)?
            .find(|e| e.seq == seq && e.client == client)
            .map(|e| e.version)
    }

    /// Makes `op`, made at `base`, apply at the head; or finds it already
    /// ordered. The log is not changed.
    pub fn rebase(&self, client: &str, seq: u64, base: u64, op: &TextOp) -> Result<Rebased, SubmitError> {
        let head = self.head();
        if base > head {
            return Err(SubmitError::FutureBase { base, head });
        }
        let since = self.since(base).ok_or(SubmitError::Trimmed { base, oldest: self.oldest })?;
        let mut op = op.clone();
        for e in since {
            if e.client == client && e.seq == seq {
                return Ok(Rebased::Duplicate { version: e.version });
            }
            op = op.transform(&e.op, Side::Right);
        }
        Ok(Rebased::Fresh(op))
    }

    /// Length in code points of the document at `version`, given its length
    /// `head_len` at the head; `None` when the log no longer reaches back.
    pub fn len_at(&self, version: u64, head_len: usize) -> Option<usize> {
        let delta: isize = self.since(version)?.map(|e| e.op.len_delta()).sum();
        head_len.checked_add_signed(-delta)
    }

    /// Appends an op that applies at the head; returns its version.
    pub fn push(&mut self, client: ClientId, seq: u64, op: TextOp) -> u64 {
        let version = self.head() + 1;
        self.entries.push_back(LogEntry { version, client, seq, op });
        version
    }

    /// Forgets ops at or before `version` (kept in a snapshot elsewhere).
    pub fn trim_to(&mut self, version: u64) {
        while self.oldest < version.min(self.head()) {
            self.entries.pop_front();
            self.oldest += 1;
        }
    }
}

/// A stored document that does not add up: the store is damaged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestoreError {
    #[error("the stored log does not continue from version {snapshot} (next op is version {first})")]
    Gap { snapshot: u64, first: u64 },
    #[error("stored op at version {version} does not apply: {error}")]
    Op { version: u64, error: OpError },
}

/// An op moved to the head of the log, or found there already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebased {
    Fresh(TextOp),
    Duplicate { version: u64 },
}

/// A document with its order: the text at the head and the log behind it.
#[derive(Debug, Clone, Default)]
pub struct OrderedText {
    text: TextDoc,
    log: OpLog,
}

impl OrderedText {
    pub fn new(text: TextDoc, version: u64) -> Self {
        Self { text, log: OpLog::starting_at(version) }
    }

    /// Rebuilds a document from a snapshot (its text at `snapshot_version`)
    /// and the consecutive ops a store kept around it: those at or before the
    /// snapshot stay in the log for catching clients up, those after it are
    /// applied.
    pub fn restore(snapshot: TextDoc, snapshot_version: u64, entries: Vec<LogEntry>) -> Result<Self, RestoreError> {
        let oldest = entries.first().map_or(snapshot_version, |e| e.version - 1);
        if oldest > snapshot_version {
            return Err(RestoreError::Gap { snapshot: snapshot_version, first: oldest + 1 });
        }
        let mut doc = Self { text: snapshot, log: OpLog::starting_at(oldest) };
        for e in entries {
            if e.version != doc.log.head() + 1 {
                return Err(RestoreError::Gap { snapshot: doc.log.head(), first: e.version });
            }
            if e.version > snapshot_version {
                doc.text.apply(&e.op).map_err(|error| RestoreError::Op { version: e.version, error })?;
            }
            doc.log.push(e.client, e.seq, e.op);
        }
        if doc.log.head() < snapshot_version {
            return Err(RestoreError::Gap { snapshot: snapshot_version, first: doc.log.head() + 1 });
        }
        Ok(doc)
    }

    pub fn text(&self) -> &TextDoc {
        &self.text
    }

    pub fn log(&self) -> &OpLog {
        &self.log
    }

    pub fn version(&self) -> u64 {
        self.log.head()
    }

    /// Orders a client's op made at `base`: transforms it to the head, checks
    /// it against the text, applies and logs it. Refused ops change nothing.
    pub fn submit(&mut self, client: &str, seq: u64, base: u64, op: &TextOp) -> Result<Accepted, SubmitError> {
        match self.log.rebase(client, seq, base, op)? {
            Rebased::Duplicate { version } => Ok(Accepted::Duplicate { version }),
            Rebased::Fresh(op) => {
                self.text.apply(&op)?;
                let version = self.log.push(client.to_owned(), seq, op.clone());
                Ok(Accepted::Committed { version, op })
            }
        }
    }

    /// Forgets log entries at or before `version`.
    pub fn trim_to(&mut self, version: u64) {
        self.log.trim_to(version)
    }

    /// Appends an op ordered elsewhere (by the store) at the next version.
    /// Refuses, changing nothing, an op that does not apply to the head.
    pub fn commit(&mut self, client: &str, seq: u64, op: TextOp) -> Result<u64, OpError> {
        self.text.apply(&op)?;
        Ok(self.log.push(client.to_owned(), seq, op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;

    #[test]
    fn stale_ops_are_transformed_and_resubmissions_acknowledged() {
        let mut d = OrderedText::new(TextDoc::from("ab"), 0);
        assert_eq!(d.submit("x", 1, 0, &op(r#"[1,"X"]"#)).unwrap(), Accepted::Committed { version: 1, op: op(r#"[1,"X"]"#) });
        // y made its op at version 0 too, inserting at the same spot: it goes after.
        assert_eq!(d.submit("y", 1, 0, &op(r#"[1,"Y"]"#)).unwrap(), Accepted::Committed { version: 2, op: op(r#"[2,"Y"]"#) });
        assert_eq!(d.text().to_string(), "aXYb");
        // x lost its ack and resubmits: acknowledged, not applied again.
        assert_eq!(d.submit("x", 1, 0, &op(r#"[1,"X"]"#)).unwrap(), Accepted::Duplicate { version: 1 });
        assert_eq!(d.text().to_string(), "aXYb");
        assert_eq!(d.version(), 2);
    }

    #[test]
    fn restore_applies_only_the_ops_after_the_snapshot() {
        let entry = |version, text: &str| LogEntry { version, client: "x".into(), seq: version, op: op(&format!(r#"["{text}"]"#)) };
        // Snapshot "ba" at version 2; ops 1 and 2 are kept for catch-up.
        let d = OrderedText::restore(TextDoc::from("ba"), 2, vec![entry(1, "a"), entry(2, "b"), entry(3, "c")]).unwrap();
        assert_eq!((d.text().to_string(), d.version(), d.log().oldest()), ("cba".to_string(), 3, 0));
        let empty = OrderedText::restore(TextDoc::from("q"), 7, vec![]).unwrap();
        assert_eq!((empty.version(), empty.log().oldest()), (7, 7));
        assert!(matches!(OrderedText::restore(TextDoc::new(), 2, vec![entry(4, "a")]), Err(RestoreError::Gap { .. })));
        assert!(matches!(OrderedText::restore(TextDoc::new(), 0, vec![entry(1, "a"), entry(3, "b")]), Err(RestoreError::Gap { .. })));
        assert!(matches!(OrderedText::restore(TextDoc::new(), 5, vec![entry(1, "a")]), Err(RestoreError::Gap { .. })));
    }

    #[test]
    fn lengths_at_past_versions_follow_the_log() {
        let mut d = OrderedText::new(TextDoc::from("ab"), 3);
        d.commit("x", 1, op(r#"["xyz"]"#)).unwrap();
        d.commit("x", 2, op(r#"[{"d":4}]"#)).unwrap();
        assert_eq!(d.text().to_string(), "b");
        assert_eq!(d.log().len_at(3, 1), Some(2));
        assert_eq!(d.log().len_at(4, 1), Some(5));
        assert_eq!(d.log().len_at(5, 1), Some(1));
        assert_eq!(d.log().len_at(2, 1), None, "before the log");
        assert_eq!(d.log().len_at(6, 1), None, "after the head");
        assert!(d.commit("x", 3, op(r#"[2,"q"]"#)).is_err());
        assert_eq!(d.version(), 5, "a refused commit changes nothing");
    }

    #[test]
    fn refused_submissions_commit_nothing() {
        let mut d = OrderedText::new(TextDoc::from("ab"), 10);
        assert_eq!(d.submit("x", 1, 11, &op(r#"["z"]"#)), Err(SubmitError::FutureBase { base: 11, head: 10 }));
        assert_eq!(d.submit("x", 1, 10, &op(r#"[3,"z"]"#)), Err(SubmitError::Op(OpError::Overrun { needed: 3, doc_len: 2 })));
        assert_eq!(d.version(), 10);
        d.submit("x", 1, 10, &op(r#"["z"]"#)).unwrap();
        d.submit("x", 2, 11, &op(r#"["z"]"#)).unwrap();
        d.trim_to(11);
        assert_eq!(d.submit("y", 1, 10, &op(r#"["q"]"#)), Err(SubmitError::Trimmed { base: 10, oldest: 11 }));
        assert_eq!(d.log().since(11).unwrap().map(|e| e.version).collect::<Vec<_>>(), vec![12]);
        assert_eq!(d.text().to_string(), "zzab");
    }
}
