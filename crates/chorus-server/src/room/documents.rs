//! The room's text documents: replicas of the store's order, the commit
//! path, and catching up.
//!
//! The room holds a replica of each open document (see [`Document`]),
//! commits ops through the store's compare-and-set on the head version and
//! its digest, and fans each committed op out in version order, so a
//! connection that opened a document at version v receives every op after v
//! exactly once. Ops committed by other nodes arrive on the bus; a gap in
//! their versions is filled from the store before anything newer goes out.
//!
//! A replica never silently parts from the store. An op that does not
//! continue it (its digest does not follow), a commit the store refuses as
//! coming from another history, a store whose log went back or was
//! recreated: each marks the replica stale, and it is reloaded (retried
//! until the store answers). Then every reader is told where it stands: the
//! ops it missed when the store's log still continues what it has, else the
//! whole text with a `reset` saying why.
//!
//! A document deleted in the store (announced on the bus) is reloaded as the
//! new, empty document of that name, its readers told `reset: deleted`; one
//! that was never edited is discarded from the store once nobody here reads
//! it, so opening a document leaves nothing behind.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use chorus_core::oplog::LogEntry;
use chorus_protocol::{DocPosition, ErrorCode, ResetReason, ServerMessage};
use chorus_store::Snapshot;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::{Committed, DocRead, DocSubmission, Room, Submitter};
use crate::document::{DocLimits, Document};
use crate::outbox::report_error;
use crate::refusal::Refusal;

pub(super) fn reset_refusal(name: &str) -> Refusal {
    Refusal::new(ErrorCode::VersionTrimmed, format!("document {name} was reset; open it again"))
}

pub(super) fn stale_seq(seq: u64, last: u64) -> Refusal {
    Refusal::new(ErrorCode::StaleSeq, format!("sequence number {seq} is older than this client's last committed op ({last})"))
}

impl Room {
    pub(super) fn doc_limits(&self) -> DocLimits {
        DocLimits { max_op_bytes: self.config().max_op_bytes, max_document_bytes: self.config().max_document_bytes }
    }

    /// Loads a document into the room if it is not here yet, and reloads a
    /// stale one.
    pub(super) async fn load_doc(&mut self, name: &Arc<str>) -> Result<(), Refusal> {
        match self.docs.get(name) {
            Some(doc) if !doc.stale => return Ok(()),
            Some(_) => return self.reload(name).await,
            None => {}
        }
        let limit = self.config().documents_per_room;
        if self.docs.len() >= limit {
            let msg = format!("room {} holds its limit of {limit} documents (--documents-per-room)", self.name);
            return Err(Refusal::new(ErrorCode::TooManyDocuments, msg));
        }
        let stored = self.store().load(&self.name, name).await?;
        let doc = Document::restore(stored).map_err(|e| {
            warn!(room = %self.name, doc = %name, "stored document is damaged: {e}");
            Refusal::new(ErrorCode::Internal, format!("document {name} cannot be loaded: {e}"))
        })?;
        let size = doc.state_bytes();
        self.rooms.budget.admit(size, || format!("document {name} ({size} bytes) cannot be loaded"))?;
        debug!(room = %self.name, doc = %name, version = doc.version(), "document loaded");
        self.docs.insert(name.clone(), doc);
        Ok(())
    }

    /// Loads a document, catching its replica up first when a client has
    /// seen version `seen` and the replica has not (the client saw it on
    /// another node).
    pub(super) async fn load_doc_seen(&mut self, name: &Arc<str>, seen: Option<u64>) -> Result<(), Refusal> {
        self.load_doc(name).await?;
        if seen.is_some_and(|v| v > self.docs[name].version()) {
            self.catch_up(name).await?;
        }
        Ok(())
    }

    /// Replaces a replica with the store's and tells every reader where it
    /// stands. On failure the replica stays stale and a repair is scheduled:
    /// its readers are told once the store answers, never left silent.
    pub(super) async fn reload(&mut self, name: &Arc<str>) -> Result<(), Refusal> {
        self.settle_in_flight(name).await;
        let Some(old) = self.docs.get_mut(name) else { return Ok(()) };
        old.stale = true;
        let fresh = match self.store().load(&self.name, name).await {
            Ok(stored) => Document::restore(stored).map_err(|e| {
                warn!(room = %self.name, doc = %name, "stored document is damaged: {e}");
                Refusal::new(ErrorCode::Internal, format!("document {name} cannot be loaded: {e}"))
            }),
            Err(e) => Err(e.into()),
        };
        let mut fresh = match fresh {
            Ok(fresh) => fresh,
            Err(refusal) => {
                self.repair.need_doc(name);
                return Err(refusal);
            }
        };
        let old = self.docs.remove(name).expect("present above");
        let position = old.position();
        if fresh.epoch != old.epoch {
            // Histories of a lost incarnation mean nothing in the new one.
            self.histories.forget_doc(name);
        }
        fresh.subscribers = old.subscribers;
        let mut reasons = Vec::new();
        for (conn, client) in &fresh.subscribers {
            let Some(local) = self.local.get(conn) else { continue };
            // A deletion is told even to a reader at version 0, whose
            // position the new incarnation would otherwise just continue:
            // its unacknowledged edits were made on the deleted document.
            let msg = if old.deleted {
                fresh.whole(None, &self.name, name, client, Some(ResetReason::Deleted))
            } else {
                fresh.opened(None, &self.name, name, Some(&position), client)
            };
            if let ServerMessage::Opened { reset: Some(reason), .. } = &msg {
                reasons.push(*reason);
            }
            local.outbox.push(msg.to_json().into());
        }
        warn!(room = %self.name, doc = %name, from = position.version, to = fresh.version(), readers = fresh.subscribers.len(), reset = ?reasons.first(), "document replica reloaded from the store");
        metrics::counter!("chorus_document_reloads_total").increment(1);
        self.docs.insert(name.clone(), fresh);
        // Copies built on ops the store no longer has go now, before a
        // release could save one over the store's.
        self.histories.committed(name, self.docs[name].text.log());
        Ok(())
    }

    /// Fetches and applies the ops the replica missed; reloads it when the
    /// store's log does not continue it.
    pub(super) async fn catch_up(&mut self, name: &Arc<str>) -> Result<(), Refusal> {
        self.settle_in_flight(name).await;
        self.load_doc(name).await?;
        let doc = &self.docs[name];
        let (epoch, head) = (doc.epoch.clone(), doc.version());
        match self.store().ops_since(&self.name, name, &epoch, head).await? {
            Some(ops) => {
                for entry in ops {
                    if !self.apply(name, entry, None) {
                        break;
                    }
                }
            }
            None => self.reload(name).await?,
        }
        self.load_doc(name).await
    }

    /// An op another node committed, or this one (a store that tells its
    /// node's own groups apart does not send those: they are known already).
    pub(super) async fn remote_op(&mut self, name: &str, entry: &Arc<LogEntry>) {
        if self.hold_if_in_flight(name, entry) {
            return; // Applied once the group's answer is settled.
        }
        // The map's own name: no new string for every op heard.
        let Some((name, doc)) = self.docs.get_key_value(name) else { return };
        if doc.stale {
            return; // The reload brings it.
        }
        let head = doc.version();
        let agrees = entry.version > head || doc.agrees(entry);
        let name = name.clone();
        if !agrees {
            warn!(room = %self.name, doc = %name, version = entry.version, "the store holds another op at a version this replica has; reloading");
            if let Some(doc) = self.docs.get_mut(&name) {
                doc.stale = true;
            }
            self.repair.need_doc(&name);
            return;
        }
        if entry.version <= head {
            return;
        }
        if entry.version == head + 1 {
            self.apply(&name, LogEntry::clone(entry), None);
        } else if let Err(e) = self.catch_up(&name).await {
            warn!(room = %self.name, doc = %name, "could not fill a gap in the op stream; retrying: {e:?}");
            self.repair.need_doc(&name);
        }
    }

    /// Applies a committed op to the replica and sends it to every reader
    /// but its submitter (who gets an ack). Snapshots every so often. An
    /// entry that does not continue the replica marks it stale (false).
    pub(super) fn apply(&mut self, name: &Arc<str>, entry: LogEntry, submitter: Option<&str>) -> bool {
        let Some(doc) = self.docs.get_mut(name) else { return false };
        if doc.stale {
            return false;
        }
        let version = entry.version;
        // The frame is built only when someone here reads it: with a single
        // editor (its submitter gets an ack instead), the JSON of every op
        // was made and freed unread.
        let local = &self.local;
        let readers = doc.subscribers.keys().any(|conn| Some(&**conn) != submitter && local.contains_key(conn));
        let text: Option<Utf8Bytes> = readers.then(|| ServerMessage::op_json(&self.name, name, &entry).into());
        if let Err(e) = doc.commit(entry) {
            warn!(room = %self.name, doc = %name, version, "a committed op does not continue the replica ({e}); reloading");
            doc.stale = true;
            self.repair.need_doc(name);
            return false;
        }
        self.histories.committed(name, doc.text.log());
        if let Some(text) = text {
            let mut sent = 0;
            for conn in doc.subscribers.keys() {
                if Some(&**conn) != submitter {
                    if let Some(local) = self.local.get(conn) {
                        local.outbox.push(text.clone());
                        sent += 1;
                    }
                }
            }
            crate::hot_metrics().messages_out.increment(sent);
        }
        self.snapshot_if_due(name);
        true
    }

    /// Every `doc_snapshot_every` ops, or when the log holds more than
    /// `max_doc_log_bytes`: records the text in the store and trims the log
    /// behind it to the window, and to the byte budget (histories here are
    /// saved first).
    fn snapshot_if_due(&mut self, name: &Arc<str>) {
        let config = &self.rooms.config;
        let (every, window, max_bytes) = (config.doc_snapshot_every, config.doc_log_window, config.max_doc_log_bytes);
        let Some(doc) = self.docs.get_mut(name) else { return };
        let version = doc.version();
        // Also when the log outgrows its byte budget: a few large ops must
        // not keep hundreds of megabytes until the next snapshot is due. It
        // is then trimmed to half the budget, so large ops cost a snapshot
        // only every half budget of them.
        if version < doc.snapshot_version + every && doc.log_bytes <= max_bytes {
            return;
        }
        doc.snapshot_version = version;
        let trim_to = version.saturating_sub(window).max(doc.text.log().oldest()).max(doc.trim_point_for_bytes(max_bytes / 2));
        self.histories.bring_forward_before_trim(&self.rooms.backend, &self.name, name, doc, trim_to);
        let trim_digest = doc.text.log().digest_at(trim_to).expect("the log reaches its own start");
        doc.trim_log_to(trim_to);
        let text = doc.text.text().rope().clone();
        let (store, room, name, epoch) = (self.rooms.backend.clone(), self.name.clone(), name.clone(), doc.epoch.clone());
        // Written off the room task: the text is a cheap copy of the rope.
        // A snapshot that fails loses nothing (the log still holds the ops);
        // the next one trims instead.
        tokio::spawn(async move {
            let snapshot = Snapshot { epoch: &epoch, version, text: text.to_string(), trim_to, trim_digest };
            match store.snapshot(&room, &name, snapshot).await {
                Ok(()) => debug!(%room, doc = %name, version, trim_to, "snapshot saved"),
                Err(e) => warn!(%room, doc = %name, version, "could not save a snapshot: {e}"),
            }
        });
    }

    pub(super) async fn open_doc(
        &mut self,
        conn: Arc<str>,
        name: Arc<str>,
        client: Arc<str>,
        since: Option<DocPosition>,
        undo: bool,
        id: Option<u64>,
    ) -> Result<(), Refusal> {
        let Some(outbox) = self.local.get(&conn).map(|l| l.outbox.clone()) else {
            return Err(Refusal::new(ErrorCode::NotJoined, format!("not in room {}", self.name)));
        };
        self.load_doc(&name).await?;
        let seen = since.as_ref().filter(|p| p.epoch == self.docs[&name].epoch).map(|p| p.version);
        self.load_doc_seen(&name, seen).await?;
        let doc = self.docs.get_mut(&name).expect("loaded above");
        // Counted before it is built: a reader that keeps asking for a large
        // text without reading is closed instead of answered again.
        if !outbox.reserve(doc.text.text().rope().len_bytes()) {
            return Ok(());
        }
        let msg = doc.opened(id, &self.name, &name, since.as_ref(), &client);
        if let ServerMessage::Opened { reset: Some(reason), .. } = &msg {
            info!(room = %self.name, doc = %name, %conn, ?reason, "client resynced from the whole text");
        }
        doc.subscribers.insert(conn.clone(), client);
        outbox.push(msg.to_json().into());
        if let Some(user) = self.local.get(&conn).map(|l| l.user.clone()).filter(|_| undo) {
            self.ensure_history(&name, &user).await;
        }
        Ok(())
    }

    pub(super) fn close_doc(&mut self, conn: &Arc<str>, name: &Arc<str>, id: Option<u64>) -> Result<(), Refusal> {
        let was_open = self.docs.get_mut(name).is_some_and(|d| d.subscribers.remove(conn).is_some());
        if !was_open {
            return Err(Refusal::new(ErrorCode::NotOpen, format!("document {name} is not open")));
        }
        if let Some(user) = self.local.get(conn).map(|l| l.user.clone()) {
            self.release_history_unless_open(name, &user);
        }
        self.unload_if_unread(name);
        if let Some(local) = self.local.get(conn) {
            local.outbox.push(ServerMessage::DocClosed { id, room: self.name.to_string(), doc: name.to_string() }.to_json().into());
        }
        Ok(())
    }

    /// Drops a document nobody reads any more (once it has nothing left to
    /// commit); one never edited is discarded from the store too (off the
    /// room task: a discard that fails leaves an empty document, which the
    /// next reader's departure discards).
    pub(super) fn unload_if_unread(&mut self, name: &str) {
        if self.docs.get(name).is_some_and(|d| d.subscribers.is_empty()) && !self.pipelines.busy(name) {
            let name: Arc<str> = Arc::from(name);
            for user in self.histories.users_of(&name) {
                self.release_history(&name, &user);
            }
            let doc = self.docs.remove(&name).expect("present above");
            self.pipelines.forget_idle(&name);
            debug!(room = %self.name, doc = %name, "document unloaded");
            if doc.version() == 0 && !doc.stale {
                let (store, room, epoch) = (self.rooms.backend.clone(), self.name.clone(), doc.epoch);
                tokio::spawn(async move {
                    match store.discard_if_empty(&room, &name, &epoch).await {
                        Ok(discarded) => debug!(%room, doc = %name, discarded, "unedited document discarded"),
                        Err(e) => warn!(%room, doc = %name, "could not discard an unedited document: {e}"),
                    }
                });
            }
        }
    }

    /// The store deleted the incarnation `epoch` of a document: a replica of
    /// it is reloaded (as the new, empty document), its readers told why.
    pub(super) async fn doc_deleted(&mut self, name: &str, epoch: &str) {
        let Some(doc) = self.docs.get_mut(name) else { return };
        if doc.epoch != epoch {
            return; // Another incarnation: reloaded already.
        }
        doc.deleted = true;
        let name: Arc<str> = Arc::from(name);
        info!(room = %self.name, doc = %name, readers = doc.subscribers.len(), "document deleted; telling its readers");
        // On failure the reload is retried by the repair, still as a deletion.
        let _ = self.reload(&name).await;
    }

    /// Closes every document `conn` (of `user`, gone from `local`) has open.
    pub(super) fn unsubscribe_all(&mut self, conn: &str, user: Option<&str>) {
        let names: Vec<Arc<str>> = self.docs.iter().filter(|(_, d)| d.subscribers.contains_key(conn)).map(|(n, _)| n.clone()).collect();
        for name in names {
            if let Some(d) = self.docs.get_mut(&name) {
                d.subscribers.remove(conn);
            }
            if let Some(user) = user {
                self.release_history_unless_open(&name, user);
            }
            self.unload_if_unread(&name);
        }
    }

    /// Answers a submission: through `reply` for the API, on the outbox for
    /// a connection (whose ack went out on commit).
    pub(super) fn answer_submit(&self, doc: &str, sub: &DocSubmission, reply: Option<oneshot::Sender<Result<Committed, Refusal>>>, outcome: Result<Committed, Refusal>) {
        crate::hot_metrics().submit_seconds.record(sub.received.elapsed().as_secs_f64());
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
            return;
        }
        let Submitter::Connection { conn, id, outbox } = &sub.from else { return };
        let (code, message) = match outcome {
            Ok(_) => return,
            Err(Refusal::Refused(code, message)) => (code, message),
            Err(Refusal::Retry) => (ErrorCode::NotJoined, format!("not in room {} any more; join it again", self.name)),
        };
        let message = format!("op {} on document {doc}: {message}", sub.seq);
        report_error(outbox, conn, *id, Some(&self.name), code, message);
    }

    pub(super) async fn read_doc(&mut self, name: Arc<str>, since: Option<u64>) -> Result<DocRead, Refusal> {
        // A reader expects what any node has acknowledged, not what this
        // one has heard of so far.
        let caught_up = self.catch_up(&name).await;
        let read = caught_up.and_then(|()| {
            let doc = self.docs.get(&name).expect("loaded by the catch-up");
            match since {
                None => Ok(DocRead { epoch: doc.epoch.clone(), version: doc.version(), text: Some(doc.text.text().to_string()), ops: None }),
                Some(v) => match doc.text.log().since(v) {
                    Some(ops) => Ok(DocRead { epoch: doc.epoch.clone(), version: doc.version(), text: None, ops: Some(ops.cloned().collect()) }),
                    None => Err(Refusal::new(
                        ErrorCode::VersionTrimmed,
                        format!("the log of {name} holds the ops after version {} up to {}", doc.text.log().oldest(), doc.version()),
                    )),
                },
            }
        });
        self.unload_if_unread(&name);
        read
    }

    /// Repair: a document's replica brought level with the store.
    pub(super) async fn repair_doc(&mut self, name: &Arc<str>) -> Result<(), Refusal> {
        match self.docs.get(name) {
            None => Ok(()),
            Some(doc) if doc.stale => self.reload(name).await,
            Some(_) => self.catch_up(name).await,
        }
    }
}
