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

use thiserror::Error;

use crate::text::{OpError, Side, TextDoc, TextOp};

/// Who sent an op: a client id unique per connection session of one client.
pub type ClientId = String;

/// One ordered op.
#[derive(Debug, Clone, PartialEq, Eq)]
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
