//! A text document as a client holds it: the local text (with the user's
//! unacknowledged edits applied), the core's OT state machine, and what it
//! takes to recover after a dropped connection.
//!
//! This part does no IO: it takes the server's messages and returns the
//! submissions to send, so [`crate::Client`] decides when to send them and
//! how to reconnect. The client id stays the same for the document's
//! lifetime, across reconnects, so the server recognises a resubmitted op
//! by (client id, seq) and acknowledges it instead of applying it twice.
//! The server files that id under the user (`opened` says as what: the
//! submitter id), and the document recognises its own ops by it. It also
//! keeps the digest of the version it is at, and gives it back when it
//! reopens, so a server whose store lost ops it had seen says so (a
//! `reset`) instead of sending another history's ops.

use std::collections::VecDeque;

use chorus_core::client::{OtClient, Submission};
use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_core::text::{Author, OpError, Selection, TextDoc, TextOp};
use chorus_protocol::{DocPosition, ResetReason};

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

/// Observes every op committed by someone else, as it arrives.
pub type OpObserver = Box<dyn FnMut(&LogEntry) + Send>;

/// The server's `opened`, as a document takes it.
#[derive(Debug, Clone)]
pub struct Opened {
    pub epoch: String,
    pub version: u64,
    pub digest: Digest,
    /// The submitter id the server files this client's ops under.
    pub client: Option<String>,
    pub text: Option<String>,
    pub ops: Option<Vec<LogEntry>>,
    pub reset: Option<ResetReason>,
}

pub struct TextDocument {
    pub room: String,
    pub doc: String,
    client_id: String,
    /// What the server's log calls this client's ops (`client_id` scoped
    /// to the user), once known.
    submitter: String,
    epoch: String,
    /// The digest of the history at `version()`, when known.
    digest: Option<Digest>,
    text: TextDoc,
    ot: OtClient,
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
            submitter: client_id.clone(),
            client_id,
            epoch: String::new(),
            digest: None,
            text: TextDoc::new(),
            ot: OtClient::new(0, 1),
            last_acked: 0,
            history: VecDeque::new(),
            resets: 0,
            lost_edits: 0,
            observer: None,
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Where this document stands, to reopen from.
    pub fn position(&self) -> DocPosition {
        DocPosition { epoch: self.epoch.clone(), version: self.version(), digest: self.digest }
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
        self.ot.is_synchronized()
    }

    /// The op awaiting acknowledgement.
    pub fn inflight(&self) -> Option<&Submission> {
        self.ot.inflight()
    }

    pub fn set_observer(&mut self, observer: OpObserver) {
        self.observer = Some(observer);
    }

    /// Applies a local edit; returns the submission to send now, if any.
    pub fn edit(&mut self, op: TextOp) -> Result<Option<Submission>, OpError> {
        self.text.apply(&op)?;
        Ok(self.ot.local(op))
    }

    /// The server's `opened`: either the whole text (first open, or a reset)
    /// or the ops missed since `version()`. Returns the in-flight op to
    /// (re)submit, if it is still unacknowledged.
    pub fn opened(&mut self, opened: Opened) -> Result<Option<Submission>, DocError> {
        let Opened { epoch, version, digest, client, text, ops, reset } = opened;
        if let Some(client) = client {
            self.submitter = client;
        }
        if let Some(text) = text {
            if reset.is_some() || !self.epoch.is_empty() {
                self.resets += 1;
                self.lost_edits += u32::from(self.ot.inflight().is_some()) + u32::from(self.ot.buffer().is_some());
            }
            self.epoch = epoch;
            self.text = TextDoc::from(text.as_str());
            // Sequence numbers keep increasing: the server remembers the last.
            self.ot = OtClient::new(version, self.ot.next_seq());
            self.digest = Some(digest);
            self.history.clear();
            return Ok(None);
        }
        if epoch != self.epoch {
            return Err(DocError::OutOfStep(format!("ops of epoch {epoch} for a document of epoch {}", self.epoch)));
        }
        for entry in ops.unwrap_or_default() {
            // An ack among them moves the buffer into flight; it is returned
            // below with whatever else is still pending.
            self.committed(&entry)?;
        }
        if self.ot.version() != version {
            return Err(DocError::OutOfStep(format!("caught up to {} but the server is at {version}", self.ot.version())));
        }
        self.digest = Some(digest);
        Ok(self.ot.inflight().cloned())
    }

    /// The server acknowledged our op `seq` as `version` (whose digest it
    /// gives when it knows it). Returns the next submission (the edits
    /// buffered meanwhile), if any.
    pub fn ack(&mut self, seq: u64, version: u64, digest: Option<Digest>) -> Result<Option<Submission>, DocError> {
        match self.ot.inflight() {
            Some(s) if s.seq == seq => {
                let op = s.op.clone();
                let next = self.ot.ack(version).map_err(|e| DocError::OutOfStep(e.to_string()))?;
                self.remember(version, op);
                self.last_acked = seq;
                self.digest = digest;
                Ok(next)
            }
            // A second acknowledgement of an op (it was resubmitted while the
            // first submission was still being committed).
            _ if seq <= self.last_acked => Ok(None),
            _ => Err(DocError::OutOfStep(format!("acknowledgement of op {seq}, which is not in flight"))),
        }
    }

    /// An op the server committed (ours, seen from another connection or in
    /// a catch-up, or someone else's). Returns the next submission if it
    /// was ours and acknowledges our in-flight op.
    pub fn committed(&mut self, entry: &LogEntry) -> Result<Option<Submission>, DocError> {
        if entry.version <= self.ot.version() {
            return Ok(None);
        }
        if entry.client == self.submitter {
            return self.ack(entry.seq, entry.version, Some(entry.digest));
        }
        let apply = self.ot.remote(entry.version, &entry.op).map_err(|e| DocError::OutOfStep(e.to_string()))?;
        self.text.apply(&apply).map_err(DocError::BadOp)?;
        self.remember(entry.version, entry.op.clone());
        self.digest = Some(entry.digest);
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
        Some(s)
    }

    /// A local selection in server coordinates at `version()`, when nothing
    /// is pending (otherwise the caller waits for the ack).
    pub fn server_selection(&self, selection: Selection) -> Option<(u64, Selection)> {
        self.ot.is_synchronized().then_some((self.ot.version(), selection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(json: &str) -> TextOp {
        serde_json::from_str(json).unwrap()
    }

    fn entry(version: u64, client: &str, seq: u64, o: &str) -> LogEntry {
        LogEntry::new(version, client, seq, op(o), 0, Digest::EMPTY)
    }

    fn opened(epoch: &str, version: u64, text: Option<&str>, ops: Option<Vec<LogEntry>>, reset: Option<ResetReason>) -> Opened {
        let digest = Digest::EMPTY.next(version, "someone", 1, &op(r#"["z"]"#));
        Opened { epoch: epoch.into(), version, digest, client: Some("u2:me:tab".into()), text: text.map(str::to_owned), ops, reset }
    }

    fn opened_with(text: &str, version: u64) -> TextDocument {
        let mut d = TextDocument::new("r", "d", "tab".into());
        d.opened(opened("e", version, Some(text), None, None)).unwrap();
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
        let ops = vec![entry(5, "u3:bob:tab", 9, r#"["Q"]"#), entry(6, "u2:me:tab", 1, r#"[2,"X"]"#)];
        let again = d.opened(opened("e", 6, None, Some(ops), None)).unwrap();
        let next = again.expect("the buffered edit is now in flight");
        assert_eq!((next.base, next.seq, next.op.clone()), (6, 2, op(r#"[4,"Y"]"#)));
        assert_eq!(d.text().to_string(), "QaXbY");
        // A late second ack of op 1 is ignored; the ack of op 2 completes.
        assert_eq!(d.ack(1, 6, None), Ok(None));
        let digest = Digest::EMPTY.next(7, "u2:me:tab", 2, &op(r#"[4,"Y"]"#));
        assert_eq!(d.ack(2, 7, Some(digest)), Ok(None));
        assert!(d.is_synchronized());
        assert_eq!(d.position(), DocPosition { epoch: "e".into(), version: 7, digest: Some(digest) }, "reopens with the digest of its version");
        assert_eq!(d.ack(5, 8, None).unwrap_err(), DocError::OutOfStep("acknowledgement of op 5, which is not in flight".into()));
    }

    #[test]
    fn own_ops_are_recognised_by_the_submitter_id_the_server_gave() {
        let mut d = opened_with("", 1);
        d.edit(op(r#"["a"]"#)).unwrap();
        // Another user who chose the same client id is not us.
        let theirs = entry(2, "u3:eve:tab", 1, r#"["b"]"#);
        d.committed(&theirs).unwrap();
        assert_eq!(d.text().to_string(), "ba", "theirs was ordered first");
        assert!(!d.is_synchronized());
        d.committed(&entry(3, "u2:me:tab", 1, r#"[1,"a"]"#)).unwrap();
        assert!(d.is_synchronized());
    }

    #[test]
    fn resets_replace_the_text_and_count_what_was_lost() {
        let mut d = opened_with("abc", 1);
        d.edit(op(r#"["1"]"#)).unwrap();
        d.edit(op(r#"["2"]"#)).unwrap();
        d.opened(opened("e2", 50, Some("fresh"), None, Some(ResetReason::Trimmed))).unwrap();
        assert_eq!((d.text().to_string(), d.version(), d.resets, d.lost_edits), ("fresh".into(), 50, 1, 2));
        let s = d.edit(op(r#"["!"]"#)).unwrap().unwrap();
        assert_eq!((s.base, s.seq), (50, 2), "sequence numbers keep increasing after a reset");
    }

    #[test]
    fn remote_selections_are_placed_in_the_local_text() {
        let mut d = opened_with("hello", 1);
        d.committed(&entry(2, "u3:bob:tab", 1, r#"["AB"]"#)).unwrap();
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
        assert!(matches!(d.committed(&entry(3, "bob", 1, r#"["a"]"#)), Err(DocError::OutOfStep(_))));
        assert_eq!(d.committed(&entry(1, "bob", 1, r#"["a"]"#)), Ok(None), "already seen");
        assert_eq!(d.text().to_string(), "");
    }
}
