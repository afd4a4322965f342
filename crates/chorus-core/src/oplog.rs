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
//! the op that took it from `v - 1` to `v` is "the op at version `v`". Every
//! entry also carries the [`Digest`] of the history up to it, so a log that
//! reuses version numbers for other ops (a store that lost its latest ops)
//! is told apart from the one a client or replica knew.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::digest::Digest;
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
    /// When the store committed it, in milliseconds since the Unix epoch
    /// (0 when unknown).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at: u64,
    /// The digest of the history up to and including this op.
    #[serde(default)]
    pub digest: Digest,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LogEntry {
    /// The entry for `op` committed at `version` on top of a history whose
    /// digest is `previous`.
    pub fn new(version: u64, client: impl Into<ClientId>, seq: u64, op: TextOp, at: u64, previous: Digest) -> Self {
        let client = client.into();
        let digest = previous.next(version, &client, seq, &op);
        Self { version, client, seq, op, at, digest }
    }

    /// Whether this entry's digest follows from `previous`.
    pub fn follows(&self, previous: Digest) -> bool {
        previous.next(self.version, &self.client, self.seq, &self.op) == self.digest
    }
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
    /// The digest at `oldest`.
    oldest_digest: Digest,
    entries: VecDeque<LogEntry>,
}

/// An entry that does not continue the log: another version than the next,
/// or a digest that does not follow from the log's (the entry comes from
/// another history).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Discontinuity {
    #[error("expected version {expected} next, got {got}")]
    Version { expected: u64, got: u64 },
    #[error("the op at version {version} belongs to another history (its digest does not follow)")]
    Digest { version: u64 },
}

impl OpLog {
    /// An empty log for a document at `version`, whose history there has
    /// the digest `digest`.
    pub fn starting_at(version: u64, digest: Digest) -> Self {
        Self { oldest: version, oldest_digest: digest, entries: VecDeque::new() }
    }

    /// The version of the newest op.
    pub fn head(&self) -> u64 {
        self.oldest + self.entries.len() as u64
    }

    /// The digest at the head.
    pub fn head_digest(&self) -> Digest {
        self.entries.back().map_or(self.oldest_digest, |e| e.digest)
    }

    /// The digest at `version`, while the log reaches back to it.
    pub fn digest_at(&self, version: u64) -> Option<Digest> {
        if version == self.oldest {
            return Some(self.oldest_digest);
        }
        let index = version.checked_sub(self.oldest + 1)?;
        self.entries.get(index as usize).map(|e| e.digest)
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

    /// Appends an op that applies at the head, committed at `at`; returns
    /// its entry.
    pub fn push(&mut self, client: ClientId, seq: u64, op: TextOp, at: u64) -> &LogEntry {
        let entry = LogEntry::new(self.head() + 1, client, seq, op, at, self.head_digest());
        self.entries.push_back(entry);
        self.entries.back().expect("just pushed")
    }

    /// Checks that `entry` continues the log (next version, digest that
    /// follows), without appending it.
    pub fn check_next(&self, entry: &LogEntry) -> Result<(), Discontinuity> {
        let expected = self.head() + 1;
        if entry.version != expected {
            return Err(Discontinuity::Version { expected, got: entry.version });
        }
        if !entry.follows(self.head_digest()) {
            return Err(Discontinuity::Digest { version: entry.version });
        }
        Ok(())
    }

    /// Appends an entry ordered elsewhere, once [`OpLog::check_next`] passed.
    fn append_checked(&mut self, entry: LogEntry) {
        self.entries.push_back(entry);
    }

    /// Forgets ops at or before `version` (kept in a snapshot elsewhere).
    pub fn trim_to(&mut self, version: u64) {
        while self.oldest < version.min(self.head()) {
            if let Some(e) = self.entries.pop_front() {
                self.oldest_digest = e.digest;
            }
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
    #[error("the stored op at version {version} does not follow the history before it (its digest does not match)")]
    Digest { version: u64 },
}

/// Why an op ordered elsewhere could not be appended; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitError {
    #[error(transparent)]
    Discontinuity(#[from] Discontinuity),
    #[error("the op at version {version} does not apply: {error}")]
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
        Self { text, log: OpLog::starting_at(version, Digest::EMPTY) }
    }

    /// Rebuilds a document from a snapshot (its text at `snapshot_version`)
    /// and the consecutive ops a store kept around it: those at or before the
    /// snapshot stay in the log for catching clients up, those after it are
    /// applied. `oldest_digest` is the digest at the version before the
    /// first entry (the snapshot's, when there are none); every entry's
    /// digest must follow from it.
    pub fn restore(snapshot: TextDoc, snapshot_version: u64, oldest_digest: Digest, entries: Vec<LogEntry>) -> Result<Self, RestoreError> {
        let oldest = entries.first().map_or(snapshot_version, |e| e.version - 1);
        if oldest > snapshot_version {
            return Err(RestoreError::Gap { snapshot: snapshot_version, first: oldest + 1 });
        }
        let mut doc = Self { text: snapshot, log: OpLog::starting_at(oldest, oldest_digest) };
        for e in entries {
            match doc.log.check_next(&e) {
                Ok(()) => {}
                Err(Discontinuity::Version { .. }) => return Err(RestoreError::Gap { snapshot: doc.log.head(), first: e.version }),
                Err(Discontinuity::Digest { version }) => return Err(RestoreError::Digest { version }),
            }
            if e.version > snapshot_version {
                doc.text.apply(&e.op).map_err(|error| RestoreError::Op { version: e.version, error })?;
            }
            doc.log.append_checked(e);
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
                let version = self.log.push(client.to_owned(), seq, op.clone(), 0).version;
                Ok(Accepted::Committed { version, op })
            }
        }
    }

    /// Forgets log entries at or before `version`.
    pub fn trim_to(&mut self, version: u64) {
        self.log.trim_to(version)
    }

    /// Appends an op ordered here, committed at `at`, at the next version;
    /// returns its entry. Refuses, changing nothing, an op that does not
    /// apply to the head.
    pub fn commit(&mut self, client: &str, seq: u64, op: TextOp, at: u64) -> Result<&LogEntry, OpError> {
        self.text.apply(&op)?;
        Ok(self.log.push(client.to_owned(), seq, op, at))
    }

    /// Appends an entry ordered elsewhere (by the store). Refuses, changing
    /// nothing, an entry that does not continue this history or whose op
    /// does not apply to the head.
    pub fn append(&mut self, entry: LogEntry) -> Result<(), CommitError> {
        self.log.check_next(&entry)?;
        self.text.apply(&entry.op).map_err(|error| CommitError::Op { version: entry.version, error })?;
        self.log.append_checked(entry);
        Ok(())
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

    /// Entries chained from the empty history, inserting `texts` in turn.
    fn chain(texts: &[&str]) -> Vec<LogEntry> {
        let mut previous = Digest::EMPTY;
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let e = LogEntry::new(i as u64 + 1, "x", i as u64 + 1, op(&format!(r#"["{text}"]"#)), 0, previous);
            previous = e.digest;
            out.push(e);
        }
        out
    }

    #[test]
    fn restore_applies_only_the_ops_after_the_snapshot() {
        let entries = chain(&["a", "b", "c"]);
        // Snapshot "ba" at version 2; ops 1 and 2 are kept for catch-up.
        let d = OrderedText::restore(TextDoc::from("ba"), 2, Digest::EMPTY, entries.clone()).unwrap();
        assert_eq!((d.text().to_string(), d.version(), d.log().oldest()), ("cba".to_string(), 3, 0));
        assert_eq!(d.log().head_digest(), entries[2].digest);
        assert_eq!(d.log().digest_at(1), Some(entries[0].digest));
        assert_eq!(d.log().digest_at(0), Some(Digest::EMPTY));
        assert_eq!(d.log().digest_at(4), None);
        let empty = OrderedText::restore(TextDoc::from("q"), 7, entries[1].digest, vec![]).unwrap();
        assert_eq!((empty.version(), empty.log().oldest(), empty.log().head_digest()), (7, 7, entries[1].digest));
        // Kept from version 1 on: the log starts from the digest at 1.
        let later = OrderedText::restore(TextDoc::from("ba"), 2, entries[0].digest, entries[1..].to_vec()).unwrap();
        assert_eq!(later.log().head_digest(), entries[2].digest);
        let gap = |v: u64| LogEntry { version: v, ..entries[0].clone() };
        assert!(matches!(OrderedText::restore(TextDoc::new(), 2, Digest::EMPTY, vec![gap(4)]), Err(RestoreError::Gap { .. })));
        assert!(matches!(OrderedText::restore(TextDoc::new(), 0, Digest::EMPTY, vec![entries[0].clone(), gap(3)]), Err(RestoreError::Gap { .. })));
        assert!(matches!(OrderedText::restore(TextDoc::new(), 5, Digest::EMPTY, vec![entries[0].clone()]), Err(RestoreError::Gap { .. })));
        // A kept op from another history is a damaged store, not a gap.
        let foreign = LogEntry::new(2, "y", 1, op(r#"["b"]"#), 0, Digest::EMPTY.next(1, "y", 1, &op(r#"["a"]"#)));
        assert_eq!(
            OrderedText::restore(TextDoc::new(), 0, Digest::EMPTY, vec![entries[0].clone(), foreign]).unwrap_err(),
            RestoreError::Digest { version: 2 }
        );
    }

    #[test]
    fn entries_from_another_history_are_refused() {
        let entries = chain(&["a", "b"]);
        let mut d = OrderedText::new(TextDoc::new(), 0);
        d.append(entries[0].clone()).unwrap();
        // The same version and op, but after a different first op.
        let other = LogEntry::new(2, "x", 2, op(r#"["b"]"#), 0, Digest::EMPTY.next(1, "x", 1, &op(r#"["z"]"#)));
        assert_eq!(d.append(other), Err(CommitError::Discontinuity(Discontinuity::Digest { version: 2 })));
        assert_eq!(d.append(entries[0].clone()), Err(CommitError::Discontinuity(Discontinuity::Version { expected: 2, got: 1 })));
        assert_eq!((d.version(), d.text().to_string()), (1, "a".to_string()), "nothing changed");
        d.append(entries[1].clone()).unwrap();
        assert_eq!(d.text().to_string(), "ba");
        // Trimming keeps the digest of the version the log now starts at.
        d.trim_to(1);
        assert_eq!(d.log().digest_at(1), Some(entries[0].digest));
        assert_eq!(d.log().digest_at(0), None);
    }

    #[test]
    fn lengths_at_past_versions_follow_the_log() {
        let mut d = OrderedText::new(TextDoc::from("ab"), 3);
        d.commit("x", 1, op(r#"["xyz"]"#), 0).unwrap();
        d.commit("x", 2, op(r#"[{"d":4}]"#), 0).unwrap();
        assert_eq!(d.text().to_string(), "b");
        assert_eq!(d.log().len_at(3, 1), Some(2));
        assert_eq!(d.log().len_at(4, 1), Some(5));
        assert_eq!(d.log().len_at(5, 1), Some(1));
        assert_eq!(d.log().len_at(2, 1), None, "before the log");
        assert_eq!(d.log().len_at(6, 1), None, "after the head");
        assert!(d.commit("x", 3, op(r#"[2,"q"]"#), 0).is_err());
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
