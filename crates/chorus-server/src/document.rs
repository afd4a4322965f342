//! One text document as a room task holds it: the text at the head, the
//! log window behind it, and the connections that receive its ops.
//!
//! The store decides the order (see [`chorus_store::DocStore`]); this is
//! the node's replica of it, which is what makes a commit cost the same
//! whatever the document's size: the node transforms and checks an op
//! against its replica, and the store only compares versions and appends.
//! Everything here is synchronous; the room task does the IO around it.

use std::collections::HashMap;
use std::sync::Arc;

use chorus_core::digest::Digest;
use chorus_core::oplog::{CommitError, LogEntry, OrderedText, Rebased, RestoreError, SubmitError};
use chorus_core::text::{Author, Component, Delete, OpError, Selection, Side, TextDoc, TextOp};
use chorus_protocol::{CursorState, DocPosition, ErrorCode, ResetReason, ServerMessage};
use chorus_store::StoredDoc;
use serde_json::Value;

use crate::refusal::Refusal;

/// Size limits on what a submission may do.
#[derive(Debug, Clone, Copy)]
pub struct DocLimits {
    pub max_op_bytes: usize,
    pub max_document_bytes: usize,
}

/// A submission checked and moved to the head of the replica.
#[derive(Debug)]
pub enum Prepared {
    /// Apply this (transformed, with the text of its deletes) at the head.
    Fresh(TextOp),
    /// Already committed at this version: acknowledge only.
    Duplicate(u64),
    /// The base is older than the replica's log: ask the store whether it
    /// is a resubmission before refusing it.
    Trimmed { oldest: u64 },
}

/// The ops of a group that go to the store before the op being prepared,
/// and the text they leave: what [`Document::prepare_after`] moves it past.
#[derive(Clone, Copy)]
pub struct Ahead<'a> {
    pub ops: &'a [TextOp],
    pub text: &'a TextDoc,
}

pub struct Document {
    pub epoch: String,
    pub text: OrderedText,
    /// Connections that receive the ops, with the submitter id their ops
    /// carry.
    pub subscribers: HashMap<Arc<str>, Arc<str>>,
    /// Version of the last snapshot written.
    pub snapshot_version: u64,
    /// The replica is known to differ from the store (an op that did not
    /// continue it, a commit refused as from another history): it is being
    /// reloaded, and its readers are told once that is done.
    pub stale: bool,
    /// Bytes of the ops the log holds in memory (as [`op_bytes`] counts
    /// them): past `--max-doc-log-bytes` the log is trimmed.
    pub log_bytes: usize,
    /// The store announced this incarnation deleted: the reload that
    /// follows tells its readers so (`reset: deleted`).
    pub deleted: bool,
}

impl Document {
    pub fn restore(stored: StoredDoc) -> Result<Self, RestoreError> {
        let text = OrderedText::restore(TextDoc::from(stored.snapshot.as_str()), stored.snapshot_version, stored.oldest_digest, stored.ops)?;
        let mut doc = Self { epoch: stored.epoch, text, subscribers: HashMap::new(), snapshot_version: stored.snapshot_version, stale: false, log_bytes: 0, deleted: false };
        doc.count_log_bytes();
        Ok(doc)
    }

    /// Bytes this replica counts in the node's budget: its text, and the
    /// ops its log keeps with their records.
    pub fn state_bytes(&self) -> usize {
        let kept = self.version().saturating_sub(self.text.log().oldest()) as usize;
        self.text.text().rope().len_bytes() + self.log_bytes + kept * crate::budget::OP_RECORD_BYTES
    }

    /// Counts the bytes of the log's ops.
    fn count_log_bytes(&mut self) {
        let log = self.text.log();
        self.log_bytes = log.since(log.oldest()).map_or(0, |ops| ops.map(|e| op_bytes(&e.op)).sum());
    }

    /// Forgets the log's ops at or before `version`, taking their bytes off
    /// the count: only the ops trimmed are looked at, not the window kept
    /// (ten thousand ops by default, every thousand commits).
    pub fn trim_log_to(&mut self, version: u64) {
        let log = self.text.log();
        let trimmed: usize = log.since(log.oldest()).map_or(0, |ops| ops.take_while(|e| e.version <= version).map(|e| op_bytes(&e.op)).sum());
        self.text.trim_to(version);
        self.log_bytes = self.log_bytes.saturating_sub(trimmed);
    }

    /// The oldest version to keep so the ops after it take at most
    /// `max_bytes`: the trim point a byte budget asks for.
    pub fn trim_point_for_bytes(&self, max_bytes: usize) -> u64 {
        let log = self.text.log();
        let mut excess = self.log_bytes.saturating_sub(max_bytes);
        let mut point = log.oldest();
        if let Some(ops) = log.since(point) {
            for e in ops {
                if excess == 0 {
                    break;
                }
                excess = excess.saturating_sub(op_bytes(&e.op));
                point = e.version;
            }
        }
        point
    }

    pub fn version(&self) -> u64 {
        self.text.version()
    }

    pub fn head_digest(&self) -> Digest {
        self.text.log().head_digest()
    }

    /// Where the replica's readers stand: its head.
    pub fn position(&self) -> DocPosition {
        DocPosition { epoch: self.epoch.clone(), version: self.version(), digest: Some(self.head_digest()) }
    }

    /// Checks a client's op made at `base` and transforms it to the head.
    /// Nothing changes here; the caller commits the result through the store.
    pub fn prepare(&self, client: &str, seq: u64, base: u64, op: &TextOp, limits: DocLimits) -> Result<Prepared, Refusal> {
        self.prepare_after(client, seq, base, op, limits, Ahead { ops: &[], text: self.text.text() })
    }

    /// [`prepare`](Self::prepare) for an op to commit after `ahead.ops`: ops
    /// moved to the head and not committed yet (the ones before it in a
    /// group commit), which leave the text `ahead.text`. The op is
    /// transformed past them too, and checked against that text.
    pub fn prepare_after(
        &self,
        client: &str,
        seq: u64,
        base: u64,
        op: &TextOp,
        limits: DocLimits,
        ahead: Ahead<'_>,
    ) -> Result<Prepared, Refusal> {
        let head = self.version();
        let log = self.text.log();
        if base > head {
            return Err(refused(ErrorCode::FutureVersion, format!("base version {base} is ahead of the document (version {head})")));
        }
        // A resubmission is acknowledged even if it would not pass the checks
        // below any more (it passed them once).
        let rebased = match log.rebase(client, seq, base, op) {
            Ok(Rebased::Duplicate { version }) => return Ok(Prepared::Duplicate(version)),
            Ok(Rebased::Fresh(op)) => op,
            Err(SubmitError::Trimmed { oldest, .. }) => return Ok(Prepared::Trimmed { oldest }),
            Err(e) => return Err(refused(ErrorCode::InvalidOp, e.to_string())),
        };
        op.check().map_err(invalid)?;
        let size = op_bytes(op);
        if size > limits.max_op_bytes {
            return Err(refused(ErrorCode::OpTooLarge, format!("the op is {size} bytes; the limit is {}", limits.max_op_bytes)));
        }
        let len_at_base = log.len_at(base, self.text.text().len_chars()).expect("the log reaches the base: rebase succeeded");
        op.check_against(len_at_base).map_err(|e| match e {
            OpError::Overrun { needed, doc_len } => refused(
                ErrorCode::InvalidOp,
                format!("the op spans {needed} code points but the document had {doc_len} at version {base}"),
            ),
            other => invalid(other),
        })?;
        let rebased = ahead.ops.iter().fold(rebased, |op, p| op.transform(p, Side::Right));
        let current = ahead.text;
        let rebased = current.make_invertible(&rebased).map_err(invalid)?;
        current.check(&rebased).map_err(invalid)?;
        let grown = current.rope().len_bytes() as isize + byte_delta(&rebased);
        if grown > limits.max_document_bytes as isize {
            return Err(refused(
                ErrorCode::DocumentTooLarge,
                format!("the document would be {grown} bytes; the limit is {}", limits.max_document_bytes),
            ));
        }
        Ok(Prepared::Fresh(rebased))
    }

    /// The `opened` reply for a client that has the document at `since`
    /// (or nothing) and submits as `client`: the ops it missed when the log
    /// reaches back to its position and its history there is this one,
    /// else the whole text, saying why when it asked for ops.
    ///
    /// Version 0 is the empty text in every incarnation (a document starts
    /// empty; an import never starts one at 0), so a client there, whatever
    /// its epoch, has nothing this incarnation could contradict: it gets the
    /// ops from 0 and keeps its unacknowledged edits, which were made on
    /// that empty text. Past 0, versions of another incarnation name other
    /// ops (or ops the store lost) and get the text.
    pub fn opened(&self, id: Option<u64>, room: &str, doc: &str, since: Option<&DocPosition>, client: &str) -> ServerMessage {
        let version = self.version();
        let log = self.text.log();
        let reset = match since {
            None => None,
            Some(p) if p.epoch != self.epoch && (p.version > 0 || log.oldest() > 0) => Some(ResetReason::Epoch),
            Some(p) if p.version > version => Some(ResetReason::Ahead),
            Some(p) => match (log.since(p.version), log.digest_at(p.version)) {
                (Some(_), Some(here)) if p.digest.is_some_and(|d| d != here) => Some(ResetReason::Diverged),
                (Some(ops), _) => {
                    return ServerMessage::Opened {
                        id,
                        room: room.to_owned(),
                        doc: doc.to_owned(),
                        epoch: self.epoch.clone(),
                        version,
                        digest: self.head_digest(),
                        client: Some(client.to_owned()),
                        text: None,
                        ops: Some(ops.cloned().collect()),
                        reset: None,
                    };
                }
                _ => Some(ResetReason::Trimmed),
            },
        };
        self.whole(id, room, doc, client, reset)
    }

    /// The `opened` reply with the whole text at the head, and `reset` when
    /// it replaces what a reader had.
    pub fn whole(&self, id: Option<u64>, room: &str, doc: &str, client: &str, reset: Option<ResetReason>) -> ServerMessage {
        ServerMessage::Opened {
            id,
            room: room.to_owned(),
            doc: doc.to_owned(),
            epoch: self.epoch.clone(),
            version: self.version(),
            digest: self.head_digest(),
            client: Some(client.to_owned()),
            text: Some(self.text.text().to_string()),
            ops: None,
            reset,
        }
    }

    /// Moves a text selection cursor (`{"anchor": n, "head": n}` tagged with
    /// this document and a version) forward to the head, through the ops
    /// committed since its version. Cursors of other shapes, of versions the
    /// log no longer reaches, or from the future are left as they are.
    pub fn anchor(&self, cursor: &mut CursorState) {
        let Some(version) = cursor.version else { return };
        let head = self.version();
        if version >= head {
            return;
        }
        let Some(selection) = selection_of(&cursor.cursor) else { return };
        let Some(ops) = self.text.log().since(version) else { return };
        let owner = self.subscribers.get(cursor.connection.as_str());
        let mut s = selection;
        for e in ops {
            let author = if owner.is_some_and(|c| **c == *e.client) { Author::Own } else { Author::Other };
            s = e.op.transform_selection(s, author);
        }
        if let Value::Object(map) = &mut cursor.cursor {
            map.insert("anchor".into(), s.anchor.into());
            map.insert("head".into(), s.head.into());
        }
        cursor.version = Some(head);
    }

    /// Applies an op the store committed; the caller fans it out. Refuses,
    /// changing nothing, an entry that does not continue this replica's
    /// history.
    pub fn commit(&mut self, entry: LogEntry) -> Result<(), CommitError> {
        let bytes = op_bytes(&entry.op);
        self.text.append(entry)?;
        self.log_bytes += bytes;
        Ok(())
    }

    /// Whether `entry`, at or before the head, is the op this replica has
    /// at its version (unknown, so yes, when the log no longer holds it).
    pub fn agrees(&self, entry: &LogEntry) -> bool {
        self.text.log().digest_at(entry.version).is_none_or(|d| d == entry.digest)
    }
}

fn selection_of(cursor: &Value) -> Option<Selection> {
    let anchor = cursor.get("anchor")?.as_u64()?;
    let head = cursor.get("head")?.as_u64()?;
    Some(Selection { anchor: usize::try_from(anchor).ok()?, head: usize::try_from(head).ok()? })
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal::Refused(code, message.into())
}

fn invalid(e: OpError) -> Refusal {
    refused(ErrorCode::InvalidOp, e.to_string())
}

/// The size of an op for the op size limit: the text it carries, plus a
/// little per component.
pub fn op_bytes(op: &TextOp) -> usize {
    op.components()
        .iter()
        .map(|c| {
            8 + match c {
                Component::Insert(s) | Component::Delete(Delete::Text(s)) => s.len(),
                Component::Retain(_) | Component::Delete(Delete::Len(_)) => 0,
            }
        })
        .sum()
}

/// Change in UTF-8 bytes when an op whose deletes carry their text applies.
fn byte_delta(op: &TextOp) -> isize {
    op.components()
        .iter()
        .map(|c| match c {
            Component::Insert(s) => s.len() as isize,
            Component::Delete(Delete::Text(s)) => -(s.len() as isize),
            Component::Retain(_) | Component::Delete(Delete::Len(_)) => 0,
        })
        .sum()
}

/// Parses the `op` field of a submission: an ot-text-unicode op, or one of
/// the simple forms.
pub fn parse_op(value: Value) -> Result<TextOp, String> {
    match value {
        Value::Array(_) => serde_json::from_value::<TextOp>(value).map_err(|e| format!("malformed op: {e}")),
        Value::Object(_) => {
            use chorus_core::text::SimpleEdit;
            let edit = serde_json::from_value::<SimpleEdit>(value)
                .map_err(|e| format!("malformed op: {e} (expected {{\"insert\": {{\"at\", \"text\"}}}} or {{\"delete\": {{\"at\", \"length\"}}}})"))?;
            // Refused like the list forms' empty components: an op that
            // changes nothing would still take a version.
            match &edit {
                SimpleEdit::Insert { text, .. } if text.is_empty() => Err("malformed op: an insert must not be empty".into()),
                SimpleEdit::Delete { length: 0, .. } => Err("malformed op: a delete must not be empty".into()),
                _ => Ok(TextOp::from(edit)),
            }
        }
        other => Err(format!("an op is a list of components or an insert/delete object, not {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(v: Value) -> TextOp {
        parse_op(v).unwrap()
    }

    fn doc(text: &str) -> Document {
        Document::restore(StoredDoc { epoch: "e".into(), snapshot_version: 0, snapshot: text.into(), oldest_digest: Digest::EMPTY, ops: vec![] }).unwrap()
    }

    /// Commits `op` by "x" at the next version.
    fn commit(d: &mut Document, op: TextOp) {
        let v = d.version() + 1;
        d.commit(LogEntry::new(v, "x", v, op, 0, d.head_digest())).unwrap();
    }

    const LIMITS: DocLimits = DocLimits { max_op_bytes: 1_000, max_document_bytes: 100 };

    fn code(r: Result<Prepared, Refusal>) -> ErrorCode {
        match r {
            Err(Refusal::Refused(code, _)) => code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn ops_are_checked_at_their_base_and_transformed_to_the_head() {
        let mut d = doc("abc");
        commit(&mut d, op(json!(["XY"])));
        // Made at version 0, where the document had 3 code points.
        match d.prepare("y", 1, 0, &op(json!([3, "!"])), LIMITS).unwrap() {
            Prepared::Fresh(o) => assert_eq!(o, op(json!([5, "!"]))),
            other => panic!("{other:?}"),
        }
        // Deletes get their text, so the log can be inverted later.
        match d.prepare("y", 1, 1, &op(json!([{"d": 2}])), LIMITS).unwrap() {
            Prepared::Fresh(o) => assert_eq!(o, op(json!([{"d": "XY"}]))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.prepare("x", 1, 0, &op(json!(["Q"])), LIMITS), Ok(Prepared::Duplicate(1))));
        // Four code points do not fit the three the document had at version 0,
        // although they would fit the five it has now.
        assert_eq!(code(d.prepare("y", 1, 0, &op(json!([4, "!"])), LIMITS)), ErrorCode::InvalidOp);
        assert_eq!(code(d.prepare("y", 1, 2, &op(json!(["!"])), LIMITS)), ErrorCode::FutureVersion);
        assert_eq!(code(d.prepare("y", 1, 1, &op(json!([1, 1, "!"])), LIMITS)), ErrorCode::InvalidOp);
        assert_eq!(code(d.prepare("y", 1, 1, &op(json!([{"d": "zz"}])), LIMITS)), ErrorCode::InvalidOp);
        assert_eq!(code(d.prepare("y", 1, 1, &op(json!([0, "a"])), LIMITS)), ErrorCode::InvalidOp);
        assert_eq!(code(d.prepare("y", 1, 1, &op(json!(["a".repeat(1_001)])), LIMITS)), ErrorCode::OpTooLarge);
        assert_eq!(code(d.prepare("y", 1, 1, &op(json!(["😭".repeat(24)])), LIMITS)), ErrorCode::DocumentTooLarge);
        assert!(matches!(d.prepare("y", 1, 1, &op(json!(["😭".repeat(23)])), LIMITS), Ok(Prepared::Fresh(_))));
    }

    #[test]
    fn opened_sends_ops_when_the_log_reaches_back_and_says_why_when_not() {
        let mut d = doc("");
        for _ in 1..=3 {
            commit(&mut d, op(json!(["a"])));
        }
        let digest_at_2 = d.text.log().digest_at(2);
        d.text.trim_to(1);
        let at = |epoch: &str, version, digest| DocPosition { epoch: epoch.into(), version, digest };
        let ops = |m: ServerMessage| match m {
            ServerMessage::Opened { ops, text, reset, version, .. } => (ops.map(|o| o.len()), text, reset, version),
            other => panic!("{other:?}"),
        };
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("e", 1, None)), "c")), (Some(2), None, None, 3));
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("e", 2, digest_at_2)), "c")), (Some(1), None, None, 3), "the same history");
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("e", 3, None)), "c")), (Some(0), None, None, 3));
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("e", 0, None)), "c")), (None, Some("aaa".into()), Some(ResetReason::Trimmed), 3));
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("other", 2, None)), "c")), (None, Some("aaa".into()), Some(ResetReason::Epoch), 3));
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("other", 0, None)), "c")), (None, Some("aaa".into()), Some(ResetReason::Epoch), 3), "the log no longer starts at 0");
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("e", 4, None)), "c")), (None, Some("aaa".into()), Some(ResetReason::Ahead), 3));
        assert_eq!(ops(d.opened(None, "r", "d", None, "c")), (None, Some("aaa".into()), None, 3));
        // Version 2 of another history: the ops after it here would not
        // continue what the client has.
        let elsewhere = Some(Digest::EMPTY.next(2, "y", 1, &op(json!(["b"]))));
        assert_eq!(ops(d.opened(None, "r", "d", Some(&at("e", 2, elsewhere)), "c")), (None, Some("aaa".into()), Some(ResetReason::Diverged), 3));
    }

    #[test]
    fn version_0_of_any_epoch_gets_the_ops_from_0() {
        let mut d = doc("");
        commit(&mut d, op(json!(["a"])));
        commit(&mut d, op(json!(["b"])));
        let at = |epoch: &str, version, digest| DocPosition { epoch: epoch.into(), version, digest };
        // A client that opened an earlier, never edited incarnation and edited
        // offline: its edits were made on the empty text, as this one's are.
        match d.opened(None, "r", "d", Some(&at("gone", 0, Some(Digest::EMPTY))), "c") {
            ServerMessage::Opened { epoch, version, ops: Some(ops), text: None, reset: None, .. } => {
                assert_eq!((epoch.as_str(), version, ops.iter().map(|e| e.version).collect::<Vec<_>>()), ("e", 2, vec![1, 2]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.opened(None, "r", "d", Some(&at("gone", 0, None)), "c"), ServerMessage::Opened { ops: Some(_), reset: None, .. }));
        // Past 0, a version of another incarnation names other ops.
        assert!(matches!(d.opened(None, "r", "d", Some(&at("gone", 1, None)), "c"), ServerMessage::Opened { text: Some(_), reset: Some(ResetReason::Epoch), .. }));
        // A digest at 0 that is not the empty history's is another history.
        let other = Some(Digest::EMPTY.next(1, "y", 1, &op(json!(["z"]))));
        assert!(matches!(d.opened(None, "r", "d", Some(&at("gone", 0, other)), "c"), ServerMessage::Opened { reset: Some(ResetReason::Diverged), .. }));
    }

    #[test]
    fn cursors_move_with_the_text_before_them() {
        let mut d = doc("hello world");
        commit(&mut d, op(json!(["😭😭"])));
        commit(&mut d, op(json!([8, {"d": 2}])));
        let mut c = CursorState {
            connection: "c".into(),
            user: "u".into(),
            cursor: json!({"anchor": 6, "head": 11, "color": "red"}),
            doc: Some("d".into()),
            version: Some(0),
        };
        d.anchor(&mut c);
        assert_eq!(c.cursor, json!({"anchor": 8, "head": 11, "color": "red"}));
        assert_eq!(c.version, Some(2));
        let mut xy = CursorState { cursor: json!({"x": 1}), version: Some(0), ..c.clone() };
        d.anchor(&mut xy);
        assert_eq!((xy.cursor, xy.version), (json!({"x": 1}), Some(0)), "non-text cursors are left alone");
    }

    #[test]
    fn the_log_counts_its_bytes_and_finds_where_to_trim_for_a_budget() {
        let mut d = doc("");
        for _ in 0..4 {
            commit(&mut d, op(json!(["x".repeat(92)]))); // 100 bytes each
        }
        assert_eq!(d.log_bytes, 400);
        assert_eq!(d.trim_point_for_bytes(1_000), 0, "within the budget: nothing to trim");
        assert_eq!(d.trim_point_for_bytes(250), 2, "ops 3 and 4 stay");
        d.trim_log_to(2);
        assert_eq!(d.log_bytes, 200);
        d.trim_log_to(3);
        assert_eq!(d.log_bytes, 100, "only the trimmed op is taken off");
        d.count_log_bytes();
        assert_eq!(d.log_bytes, 100, "as counting the log again says");
    }

    #[test]
    fn simple_forms_and_bad_ops_parse_with_reasons() {
        assert_eq!(op(json!({"insert": {"at": 1, "text": "é"}})), op(json!([1, "é"])));
        assert_eq!(op(json!({"delete": {"at": 0, "length": 2}})), op(json!([{"d": 2}])));
        assert!(parse_op(json!([-1])).unwrap_err().contains("positive"));
        assert!(parse_op(json!("abc")).unwrap_err().contains("not \"abc\""));
        assert!(parse_op(json!({"move": 1})).unwrap_err().contains("insert"));
        // Empty simple forms are refused as the list forms' empty components are.
        assert!(parse_op(json!({"insert": {"at": 0, "text": ""}})).unwrap_err().contains("insert must not be empty"));
        assert!(parse_op(json!({"delete": {"at": 0, "length": 0}})).unwrap_err().contains("delete must not be empty"));
    }
}
