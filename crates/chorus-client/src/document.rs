//! A text document as a client holds it: the local text (with the user's
//! unacknowledged edits applied), the core's OT state machine, and what it
//! takes to recover after a dropped connection.
//!
//! This part does no IO: it takes the server's messages and returns the
//! submissions to send, so [`crate::Client`] decides when to send them and
//! how to reconnect. The client id stays the same for the document's
//! lifetime, across reconnects, so the server recognises a resubmitted op
//! by (client id, seq) and acknowledges it instead of applying it twice.
//!
//! Only ops that fit the server's limits are handed to the OT state machine
//! (see [`crate::limits`]): local edits wait in `held`, composed, and go into
//! flight a piece at a time, each when the one before it is acknowledged.
//! Server ops are transformed past `held` as past any pending edit. An edit
//! that would take the document past its size limit is refused and not
//! applied.

use std::collections::VecDeque;

use chorus_core::client::{OtClient, Submission};
use chorus_core::oplog::LogEntry;
use chorus_core::text::{Author, OpError, Selection, Side, TextDoc, TextOp};
use chorus_protocol::{Limits, ResetReason};
use serde::Deserialize;

use crate::limits::{self, Budget};

/// Server ops remembered to move remote cursors tagged with older versions.
const HISTORY: usize = 256;

/// The server's messages do not fit this document's state: reopen it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("out of step with the server: {0}")]
    OutOfStep(String),
    #[error("the server's op does not apply to the local text: {0}")]
    BadOp(OpError),
}

/// Why a local edit was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the edit does not apply to the local text: {0}")]
    Invalid(OpError),
    #[error("the edit would make the document {bytes} bytes; the server's limit is {limit}")]
    DocumentTooLarge { bytes: usize, limit: usize },
    #[error("the edit cannot be cut into ops that fit the server's limits")]
    CannotFit,
}

/// What the server says of a document besides its text and ops: the
/// submitter id it records this connection's ops under (`opened.client`)
/// and the fingerprint of the history at a version (`digest` on `opened`,
/// `ack` and `op`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DocMeta {
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// Observes every op committed by someone else, as it arrives.
pub type OpObserver = Box<dyn FnMut(&LogEntry) + Send>;

pub struct TextDocument {
    pub room: String,
    pub doc: String,
    client_id: String,
    /// The id the server records our ops under (`opened.client`), when it says.
    submitter: Option<String>,
    epoch: String,
    /// The server's fingerprint of its history at `version()`, when it sends one.
    digest: Option<String>,
    text: TextDoc,
    ot: OtClient,
    /// Local edits not handed to `ot` yet (they go in flight piece by piece).
    held: Option<TextOp>,
    /// The room for one op, from the server's limits (none: send ops whole).
    budget: Option<Budget>,
    max_document_bytes: Option<usize>,
    /// Our op cannot be sent as it is: reopen without `since`, dropping what is pending.
    pub(crate) drop_pending: bool,
    /// Seq of the last op of ours the server acknowledged.
    last_acked: u64,
    /// Recent server ops as (version, op), for anchoring remote cursors.
    history: VecDeque<(u64, TextOp)>,
    /// Times the server replaced the whole text (snapshot recovery).
    pub resets: u32,
    /// Local edits dropped by those resets (never acknowledged).
    pub lost_edits: u32,
    observer: Option<OpObserver>,
}

impl std::fmt::Debug for TextDocument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextDocument")
            .field("room", &self.room)
            .field("doc", &self.doc)
            .field("client_id", &self.client_id)
            .field("version", &self.ot.version())
            .field("synchronized", &self.ot.is_synchronized())
            .finish_non_exhaustive()
    }
}

impl TextDocument {
    /// A document not opened yet; `opened` fills it in.
    pub fn new(room: &str, doc: &str, client_id: String) -> Self {
        Self {
            room: room.into(),
            doc: doc.into(),
            client_id,
            submitter: None,
            epoch: String::new(),
            digest: None,
            text: TextDoc::new(),
            ot: OtClient::new(0, 1),
            held: None,
            budget: None,
            max_document_bytes: None,
            drop_pending: false,
            last_acked: 0,
            history: VecDeque::new(),
            resets: 0,
            lost_edits: 0,
            observer: None,
        }
    }

    /// The id sent in `open_doc`.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The id our ops are committed under: the server's name for it when it
    /// gives one, else our own.
    pub fn submitter(&self) -> &str {
        self.submitter.as_deref().unwrap_or(&self.client_id)
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The server's fingerprint of its history at `version()`, when it sends one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// Keeps ops within the limits the server announced in `welcome`.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.budget = Some(Budget::new(limits, &self.room, &self.doc));
        self.max_document_bytes = Some(limits.max_document_bytes);
    }

    /// The local text, with this client's pending edits.
    pub fn text(&self) -> &TextDoc {
        &self.text
    }

    /// The last server version seen.
    pub fn version(&self) -> u64 {
        self.ot.version()
    }

    /// True when every local edit is acknowledged.
    pub fn is_synchronized(&self) -> bool {
        self.ot.is_synchronized() && self.held.is_none()
    }

    /// Local edits not acknowledged yet: the op in flight, and what waits behind it.
    pub fn pending_ops(&self) -> usize {
        usize::from(self.ot.inflight().is_some()) + usize::from(self.held.is_some())
    }

    /// The op awaiting acknowledgement.
    pub fn inflight(&self) -> Option<&Submission> {
        self.ot.inflight()
    }

    pub fn set_observer(&mut self, observer: OpObserver) {
        self.observer = Some(observer);
    }

    /// Applies a local edit; returns the submission to send now, if any.
    /// An edit that would take the document past the server's size limit is
    /// refused and leaves everything as it was.
    pub fn edit(&mut self, op: TextOp) -> Result<Option<Submission>, EditError> {
        let mut next = self.text.clone();
        next.apply(&op).map_err(EditError::Invalid)?;
        let (bytes, before) = (next.rope().len_bytes(), self.text.rope().len_bytes());
        if let Some(limit) = self.max_document_bytes {
            if bytes > limit && bytes > before {
                return Err(EditError::DocumentTooLarge { bytes, limit });
            }
        }
        self.text = next;
        if op.is_noop() {
            return Ok(None);
        }
        self.held = Some(match self.held.take() {
            Some(held) => held.compose(&op),
            None => op,
        });
        self.promote()
    }

    /// Puts the next piece of `held` in flight, if nothing is.
    fn promote(&mut self) -> Result<Option<Submission>, EditError> {
        if !self.ot.is_synchronized() {
            return Ok(None);
        }
        let Some(held) = self.held.take() else { return Ok(None) };
        let (first, rest) = match &self.budget {
            Some(budget) => limits::split(&held, budget).ok_or(EditError::CannotFit)?,
            None => (held, None),
        };
        self.held = rest;
        Ok(self.ot.local(first))
    }

    /// The server's `opened`: either the whole text (first open, or a reset)
    /// or the ops missed since `version()`. Returns the in-flight op to
    /// (re)submit, if it is still unacknowledged.
    pub fn opened(
        &mut self,
        epoch: String,
        version: u64,
        text: Option<String>,
        ops: Option<Vec<LogEntry>>,
        reset: Option<ResetReason>,
        meta: &DocMeta,
    ) -> Result<Option<Submission>, DocError> {
        if let Some(client) = meta.client.as_ref().filter(|c| !c.is_empty()) {
            self.submitter = Some(client.clone());
        }
        if let Some(text) = text {
            if reset.is_some() || !self.epoch.is_empty() {
                self.resets += 1;
                self.lost_edits += self.pending_ops() as u32;
            }
            self.epoch = epoch;
            self.digest = meta.digest.clone();
            self.text = TextDoc::from(text.as_str());
            // Sequence numbers keep increasing: the server remembers the last.
            self.ot = OtClient::new(version, self.ot.next_seq());
            self.held = None;
            self.drop_pending = false;
            self.history.clear();
            return Ok(None);
        }
        if epoch != self.epoch {
            // At version 0 nothing of ours was acknowledged, and every
            // incarnation starts from the empty text our pending edits were
            // made on: they carry on in the new one. Past 0, our versions
            // name ops of the old one.
            if self.ot.version() != 0 {
                return Err(DocError::OutOfStep(format!("ops of epoch {epoch} for a document of epoch {}", self.epoch)));
            }
            self.epoch = epoch;
        }
        for entry in ops.unwrap_or_default() {
            // An ack among them may put the next piece in flight; it is
            // returned below with whatever else is still pending.
            self.committed(&entry, None)?;
        }
        if self.ot.version() != version {
            return Err(DocError::OutOfStep(format!("caught up to {} but the server is at {version}", self.ot.version())));
        }
        if meta.digest.is_some() {
            self.digest = meta.digest.clone();
        }
        self.promote().map_err(|e| DocError::OutOfStep(e.to_string()))?;
        Ok(self.ot.inflight().cloned())
    }

    /// The server acknowledged our op `seq` as `version` (with the history's
    /// digest there, if it sends one). Returns the next submission (the next
    /// piece of the edits made meanwhile), if any.
    pub fn ack(&mut self, seq: u64, version: u64, digest: Option<&str>) -> Result<Option<Submission>, DocError> {
        match self.ot.inflight() {
            Some(s) if s.seq == seq => {
                let op = s.op.clone();
                self.ot.ack(version).map_err(|e| DocError::OutOfStep(e.to_string()))?;
                self.remember(version, op);
                self.last_acked = seq;
                self.digest = digest.map(str::to_owned);
                self.promote().map_err(|e| DocError::OutOfStep(e.to_string()))
            }
            // A second acknowledgement of an op (it was resubmitted while the
            // first submission was still being committed).
            _ if seq <= self.last_acked => Ok(None),
            _ => Err(DocError::OutOfStep(format!("acknowledgement of op {seq}, which is not in flight"))),
        }
    }

    /// An op the server committed (ours, seen from another connection or in
    /// a catch-up, or someone else's), with the history's digest there if
    /// the server sends one. Returns the next submission if it was ours and
    /// acknowledges our in-flight op.
    pub fn committed(&mut self, entry: &LogEntry, digest: Option<&str>) -> Result<Option<Submission>, DocError> {
        if entry.version <= self.ot.version() {
            return Ok(None);
        }
        if entry.client == self.submitter() {
            return self.ack(entry.seq, entry.version, digest);
        }
        let mut apply = self.ot.remote(entry.version, &entry.op).map_err(|e| DocError::OutOfStep(e.to_string()))?;
        if let Some(held) = self.held.take() {
            // As past a buffered edit: ours is the later one at a tie.
            self.held = Some(held.transform(&apply, Side::Right));
            apply = apply.transform(&held, Side::Left);
        }
        self.text.apply(&apply).map_err(DocError::BadOp)?;
        self.digest = digest.map(str::to_owned);
        self.remember(entry.version, entry.op.clone());
        if let Some(observe) = &mut self.observer {
            observe(entry);
        }
        Ok(None)
    }

    fn remember(&mut self, version: u64, op: TextOp) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((version, op));
    }

    /// Where a remote selection made at server `version` is in the local
    /// text: moved through the server's later ops and this client's pending
    /// edits. `None` when it is too old to place.
    pub fn local_selection(&self, version: u64, selection: Selection) -> Option<Selection> {
        if version > self.ot.version() {
            return None;
        }
        let mut s = selection;
        if version < self.ot.version() {
            let first = self.history.front().map_or(self.ot.version() + 1, |(v, _)| *v);
            if version + 1 < first {
                return None;
            }
            for (_, op) in self.history.iter().filter(|(v, _)| *v > version) {
                s = op.transform_selection(s, Author::Other);
            }
        }
        if let Some(inflight) = self.ot.inflight() {
            s = inflight.op.transform_selection(s, Author::Other);
        }
        if let Some(buffer) = self.ot.buffer() {
            s = buffer.transform_selection(s, Author::Other);
        }
        if let Some(held) = &self.held {
            s = held.transform_selection(s, Author::Other);
        }
        Some(s)
    }

    /// A local selection in server coordinates at `version()`, when nothing
    /// is pending (otherwise the caller waits for the ack).
    pub fn server_selection(&self, selection: Selection) -> Option<(u64, Selection)> {
        self.is_synchronized().then_some((self.ot.version(), selection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::text::apply_to_str;

    fn op(json: &str) -> TextOp {
        serde_json::from_str(json).unwrap()
    }

    fn entry(version: u64, client: &str, seq: u64, o: &str) -> LogEntry {
        LogEntry::new(version, client, seq, op(o), 0, chorus_core::digest::Digest::EMPTY)
    }

    fn opened_with(text: &str, version: u64) -> TextDocument {
        let mut d = TextDocument::new("r", "d", "me".into());
        d.opened("e".into(), version, Some(text.into()), None, None, &DocMeta::default()).unwrap();
        d
    }

    #[test]
    fn own_ops_in_a_catch_up_count_as_acknowledgements() {
        let mut d = opened_with("ab", 4);
        let s = d.edit(op(r#"[1,"X"]"#)).unwrap().unwrap();
        assert_eq!((s.base, s.seq), (4, 1));
        assert!(d.edit(op(r#"[3,"Y"]"#)).unwrap().is_none(), "buffered behind the op in flight");
        // The connection dropped; on reopening, the server says someone's op
        // came first and ours was committed after it.
        let again = d.opened("e".into(), 6, None, Some(vec![entry(5, "bob", 9, r#"["Q"]"#), entry(6, "me", 1, r#"[2,"X"]"#)]), None, &DocMeta::default()).unwrap();
        let next = again.expect("the buffered edit is now in flight");
        assert_eq!((next.base, next.seq, next.op.clone()), (6, 2, op(r#"[4,"Y"]"#)));
        assert_eq!(d.text().to_string(), "QaXbY");
        // A late second ack of op 1 is ignored; the ack of op 2 completes.
        assert_eq!(d.ack(1, 6, None), Ok(None));
        assert_eq!(d.ack(2, 7, None), Ok(None));
        assert!(d.is_synchronized());
        assert_eq!(d.ack(5, 8, None).unwrap_err(), DocError::OutOfStep("acknowledgement of op 5, which is not in flight".into()));
    }

    #[test]
    fn resets_replace_the_text_and_count_what_was_lost() {
        let mut d = opened_with("abc", 1);
        d.edit(op(r#"["1"]"#)).unwrap();
        d.edit(op(r#"["2"]"#)).unwrap();
        d.opened("e2".into(), 50, Some("fresh".into()), None, Some(ResetReason::Trimmed), &DocMeta::default()).unwrap();
        assert_eq!((d.text().to_string(), d.version(), d.resets, d.lost_edits), ("fresh".into(), 50, 1, 2));
        let s = d.edit(op(r#"["!"]"#)).unwrap().unwrap();
        assert_eq!((s.base, s.seq), (50, 2), "sequence numbers keep increasing after a reset");
    }

    #[test]
    fn at_version_0_the_ops_of_a_new_epoch_keep_what_is_pending() {
        let mut d = opened_with("", 0);
        let first = d.edit(op(r#"["hi"]"#)).unwrap().unwrap();
        d.edit(op(r#"[2,"!"]"#)).unwrap();
        // The document was recreated (epoch e2) and someone typed first.
        let again = d.opened("e2".into(), 1, None, Some(vec![entry(1, "bob", 1, r#"["B"]"#)]), None, &DocMeta::default()).unwrap();
        let resubmit = again.expect("the op in flight goes again");
        assert_eq!((resubmit.seq, resubmit.base, resubmit.op.clone()), (first.seq, 1, op(r#"[1,"hi"]"#)));
        assert_eq!((d.epoch(), d.text().to_string(), d.resets, d.lost_edits), ("e2", "Bhi!".into(), 0, 0));
        // Past 0, ops of another epoch do not continue what we have.
        assert!(matches!(d.opened("e3".into(), 1, None, Some(vec![]), None, &DocMeta::default()), Err(DocError::OutOfStep(_))));
    }

    #[test]
    fn remote_selections_are_placed_in_the_local_text() {
        let mut d = opened_with("hello", 1);
        d.committed(&entry(2, "bob", 1, r#"["AB"]"#), None).unwrap();
        d.edit(op(r#"["x"]"#)).unwrap();
        // Bob's caret after "hel" at version 1: "AB" moved it two on, our
        // pending "x" one more.
        assert_eq!(d.local_selection(1, Selection::caret(3)), Some(Selection::caret(6)));
        assert_eq!(d.local_selection(2, Selection::caret(5)), Some(Selection::caret(6)));
        assert_eq!(d.local_selection(3, Selection::caret(0)), None, "from the future");
        assert_eq!(d.server_selection(Selection::caret(1)), None, "not while an edit is pending");
    }

    #[test]
    fn gaps_are_refused() {
        let mut d = opened_with("", 1);
        assert!(matches!(d.committed(&entry(3, "bob", 1, r#"["a"]"#), None), Err(DocError::OutOfStep(_))));
        assert_eq!(d.committed(&entry(1, "bob", 1, r#"["a"]"#), None), Ok(None), "already seen");
        assert_eq!(d.text().to_string(), "");
    }

    fn limits(max_op_bytes: usize, max_document_bytes: usize) -> Limits {
        Limits {
            max_message_bytes: 65_536,
            messages_per_second: 100,
            rooms_per_connection: 50,
            members_per_room: 1000,
            cursor_updates_per_second: 30,
            max_op_bytes,
            max_document_bytes,
            documents_per_connection: 50,
            max_value_bytes: 65_536,
            values_per_room: 100,
        }
    }

    #[test]
    fn a_large_edit_goes_out_in_pieces_and_others_ops_move_past_the_rest() {
        let mut d = opened_with("ab", 1);
        d.set_limits(&limits(40, 1 << 20));
        let paste = "x".repeat(100);
        let first = d.edit(TextOp::insert(1, paste.as_str())).unwrap().expect("the first piece goes out");
        assert!(crate::limits::split(&first.op, d.budget.as_ref().unwrap()).unwrap().1.is_none(), "it fits");
        assert!(!d.is_synchronized());
        // Bob types at the start meanwhile: our waiting pieces move past him.
        d.committed(&entry(2, "bob", 1, r#"["B"]"#), None).unwrap();
        assert_eq!(d.text().to_string(), format!("Ba{paste}b"));
        let mut version = 2;
        let mut sent = 1;
        let mut sub = first;
        let mut server = apply_to_str("Bab", &sub.op.transform(&op(r#"["B"]"#), Side::Right)).unwrap();
        loop {
            version += 1;
            match d.ack(sub.seq, version, None).unwrap() {
                Some(next) => {
                    assert_eq!(next.base, version);
                    server = apply_to_str(&server, &next.op).unwrap();
                    sub = next;
                    sent += 1;
                }
                None => break,
            }
        }
        assert!(sent >= 3, "{sent} pieces");
        assert!(d.is_synchronized());
        assert_eq!(server, d.text().to_string(), "the pieces add up to the edit");
    }

    #[test]
    fn an_edit_past_the_document_limit_is_refused_and_not_applied() {
        let mut d = opened_with("abc", 1);
        d.set_limits(&limits(32_768, 6));
        assert_eq!(d.edit(TextOp::insert(3, "defgh")).unwrap_err(), EditError::DocumentTooLarge { bytes: 8, limit: 6 });
        assert_eq!(d.text().to_string(), "abc");
        assert!(d.is_synchronized());
        assert!(d.edit(TextOp::insert(3, "d")).unwrap().is_some(), "what fits goes");
    }

    #[test]
    fn the_servers_submitter_id_and_digest_are_used_when_it_sends_them() {
        let mut d = TextDocument::new("r", "d", "me".into());
        let meta = DocMeta { client: Some("u1:ann:me".into()), digest: Some("d1".into()) };
        d.opened("e".into(), 1, Some("a".into()), None, None, &meta).unwrap();
        assert_eq!((d.submitter(), d.digest()), ("u1:ann:me", Some("d1")));
        let s = d.edit(TextOp::insert(1, "b")).unwrap().unwrap();
        // Our op under the server's name for us is our ack, not someone else's op.
        assert_eq!(d.committed(&entry(2, "u1:ann:me", s.seq, r#"[1,"b"]"#), Some("d2")), Ok(None));
        assert!(d.is_synchronized());
        assert_eq!((d.text().to_string(), d.digest()), ("ab".into(), Some("d2")));
        d.committed(&entry(3, "u2:bob:x", 1, r#"["!"]"#), Some("d3")).unwrap();
        assert_eq!(d.digest(), Some("d3"));
        d.committed(&entry(4, "u2:bob:x", 2, r#"["?"]"#), None).unwrap();
        assert_eq!(d.digest(), None, "a version without a digest has none");
    }
}
