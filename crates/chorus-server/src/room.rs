//! One room on one node: a task that owns the room's local connections and
//! fans events out to them.
//!
//! Every change (join, leave, presence, cursor) goes to the store and then to
//! the bus; every node with members in the room, this one included, hears it
//! back from the bus and delivers it to its own connections. So a room behaves
//! the same whether its members sit on one node or many. The task is the only
//! owner of its state, so nothing here needs a lock, and each room's events
//! reach each connection in the order the bus gave them.
//!
//! Cursor updates are bounded at the sender: the first update after a quiet
//! spell goes out at once; updates faster than the configured rate wait and
//! are replaced by newer ones, and the latest always goes out at the end of
//! the interval. Readers get cursors through per-sender slots in their
//! outboxes (see [`crate::outbox`]).
//!
//! Text documents live here too (see [`crate::document`]): the task holds a
//! replica of each open document, commits ops through the store's
//! compare-and-set, and fans each committed op out in version order, so a
//! connection that opened a document at version v receives every op after
//! v exactly once. Ops committed by other nodes arrive on the bus; a gap in
//! their versions is filled from the store before anything newer goes out.
//!
//! Shared values live here too (see [`crate::values`]): changes are
//! applied to the latest state and written with a compare-and-set; every
//! write comes back on the bus as a whole state, told to the room once.
//!
//! The task stops when its last local connection leaves, unsubscribing from
//! the bus, so idle rooms cost nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::Utf8Bytes;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, UserInfo};
use chorus_core::text::TextOp;
use chorus_core::crdt::{Change, ValueKind};
use chorus_protocol::{CursorState, DocPosition, ErrorCode, LeaveReason, ResetReason, ServerMessage, UndoAction, ValueState};
use chorus_store::{Appended, BusError, RoomEvent, StoreError, Subscription, ValuePut};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::document::{DocLimits, Document, Prepared};
use crate::node::{now_ms, Node};
use crate::outbox::{CursorKey, Outbox};
use crate::history::History;
use crate::values::{RoomValues, ValueLimits};

/// How long one op may keep losing commit races to other nodes (each lost
/// race means another node committed first; this one catches up and
/// retries) before the submitter is told to retry later.
const COMMIT_DEADLINE: Duration = Duration::from_secs(2);

/// How long a history released here is trusted over the store's copy.
const RELEASED_TRUSTED: Duration = Duration::from_secs(5);

/// Why a room refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The room task was stopping; ask the node for the room again.
    Retry,
    Refused(ErrorCode, String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Refused(ErrorCode::Unavailable, e.to_string())
    }
}

/// A connection asking to enter the room.
pub struct JoinRequest {
    pub conn: Arc<str>,
    pub user: UserInfo,
    /// Listed as a member (has the presence permission) or only watching.
    pub visible: bool,
    pub state: Value,
    pub id: Option<u64>,
    pub outbox: Arc<Outbox>,
    /// Tells the session when the room drops it on its own (expiry).
    pub dropped: mpsc::UnboundedSender<Arc<str>>,
}

pub enum RoomCommand {
    Join {
        request: JoinRequest,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Leave {
        conn: Arc<str>,
        reason: LeaveReason,
        id: Option<u64>,
        reply: oneshot::Sender<()>,
    },
    Presence {
        conn: Arc<str>,
        state: Value,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    Cursor {
        conn: Arc<str>,
        cursor: Value,
        doc: Option<String>,
        version: Option<u64>,
    },
    OpenDoc {
        conn: Arc<str>,
        doc: Arc<str>,
        client: Arc<str>,
        since: Option<DocPosition>,
        /// Keep the user's undo history.
        undo: bool,
        id: Option<u64>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    CloseDoc {
        conn: Arc<str>,
        doc: Arc<str>,
        id: Option<u64>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Commit an op. A connection's submission is answered on its outbox
    /// (ack or error), so its session need not wait; the API's through `reply`.
    Submit {
        doc: Arc<str>,
        submission: DocSubmission,
        reply: Option<oneshot::Sender<Result<Committed, Refusal>>>,
    },
    /// A document's text, or its ops since a version (for the HTTP API).
    ReadDoc {
        doc: Arc<str>,
        since: Option<u64>,
        reply: oneshot::Sender<Result<DocRead, Refusal>>,
    },
    /// Change a shared value (created as `kind` on first use); answered
    /// with the version written.
    UpdateValue {
        name: String,
        kind: ValueKind,
        change: Change,
        /// Whose counter entry an increment raises.
        writer: String,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    ReadValues {
        reply: oneshot::Sender<Result<Vec<ValueState>, Refusal>>,
    },
    /// Undo or redo the connection's user's latest step in an open
    /// document; answered with the version committed, or `None` when there
    /// is nothing to do.
    Undo {
        conn: Arc<str>,
        doc: Arc<str>,
        direction: UndoAction,
        reply: oneshot::Sender<Result<Option<u64>, Refusal>>,
    },
}

/// An op to commit, from a connection (acknowledged on its outbox) or
/// from the HTTP API (answered through the command's reply).
pub struct DocSubmission {
    pub from: Submitter,
    pub seq: u64,
    /// The version the op was made at; `None` for the head (API only).
    pub base: Option<u64>,
    pub op: TextOp,
}

pub enum Submitter {
    Connection { conn: Arc<str>, id: Option<u64>, outbox: Arc<Outbox> },
    Api { client: Arc<str> },
}

/// A committed (or already committed) op's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub version: u64,
    pub duplicate: bool,
}

/// A document as the HTTP API reads it.
pub struct DocRead {
    pub epoch: String,
    pub version: u64,
    pub text: Option<String>,
    pub ops: Option<Vec<LogEntry>>,
}

/// A way to reach a room task.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<RoomCommand>,
    pub generation: u64,
}

struct Local {
    outbox: Arc<Outbox>,
    dropped: mpsc::UnboundedSender<Arc<str>>,
    user: String,
    visible: bool,
}

#[derive(Default)]
struct Gate {
    last_sent: Option<Instant>,
    pending: Option<CursorState>,
}

pub struct Room {
    name: Arc<str>,
    generation: u64,
    node: Arc<Node>,
    local: HashMap<Arc<str>, Local>,
    /// Latest cursor of every connection in the room, on any node.
    cursors: HashMap<Arc<str>, CursorState>,
    gates: HashMap<Arc<str>, Gate>,
    cursor_interval: Duration,
    /// Open documents (loaded on first use, unloaded with their last reader).
    docs: HashMap<Arc<str>, Document>,
    values: RoomValues,
    /// Undo histories of the users with an open document here, by
    /// (document, user).
    histories: HashMap<(Arc<str>, String), History>,
    /// Histories released and being saved in the background, so a user who
    /// comes back at once gets the latest even before the save lands. Only
    /// trusted for a few seconds: after that the store's copy is as new, or
    /// newer (the user may have moved on to another node).
    released: HashMap<(Arc<str>, String), (Instant, String)>,
}

impl Room {
    /// Starts a room task; the caller registers the handle.
    pub async fn spawn(node: Arc<Node>, name: &str, generation: u64) -> Result<RoomHandle, StoreError> {
        let sub = node.backend.subscribe(name).await?;
        // Read after subscribing, so no write falls in between.
        let values = RoomValues::new(node.backend.values(name).await?);
        let (tx, rx) = mpsc::channel(1_024);
        let room = Room {
            name: Arc::from(name),
            generation,
            cursor_interval: Duration::from_secs(1) / node.config.cursor_rate,
            node,
            local: HashMap::new(),
            cursors: HashMap::new(),
            gates: HashMap::new(),
            docs: HashMap::new(),
            values,
            histories: HashMap::new(),
            released: HashMap::new(),
        };
        metrics::gauge!("chorus_rooms").increment(1.0);
        tokio::spawn(room.run(rx, sub));
        Ok(RoomHandle { tx, generation })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>, mut sub: Subscription) {
        debug!(room = %self.name, "room loaded");
        loop {
            let next_flush = self.next_cursor_flush();
            // A room with nobody here stops after a command (the one that
            // left it empty, or an API request), or after a bus event that
            // removed its last connection; not after bus events that come
            // in before its first join, which would never let it start.
            let had_local = !self.local.is_empty();
            let mut commanded = false;
            // Bus events first: ops other nodes committed are applied before
            // this node commits its next one, which then rarely conflicts.
            tokio::select! {
                biased;
                event = sub.recv() => match event {
                    Ok(event) => match &*event {
                        RoomEvent::DocOp { doc, entry } => self.remote_op(doc, entry).await,
                        RoomEvent::Value { name, version, state } => self.value_changed(name, *version, state.clone()),
                        _ => self.deliver(&event),
                    },
                    Err(BusError::Lagged { missed }) => {
                        warn!(room = %self.name, missed, "room missed bus events; resyncing members and documents");
                        self.resync().await;
                        let names: Vec<Arc<str>> = self.docs.keys().cloned().collect();
                        for name in names {
                            if let Err(e) = self.catch_up(&name).await {
                                warn!(room = %self.name, doc = %name, "could not catch up after missed events: {e:?}");
                            }
                        }
                    }
                    Err(BusError::Closed) => break,
                },
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        commanded = true;
                        self.handle(cmd).await
                    }
                    None => break,
                },
                _ = sleep_until(next_flush), if next_flush.is_some() => self.flush_cursors().await,
            }
            if self.local.is_empty() && (commanded || had_local) && self.stop(&mut rx) {
                break;
            }
        }
        metrics::gauge!("chorus_rooms").decrement(1.0);
        debug!(room = %self.name, "room unloaded");
    }

    /// Unregisters the room if nobody is here. Commands that raced in are
    /// answered so their senders try again with a fresh room.
    fn stop(&mut self, rx: &mut mpsc::Receiver<RoomCommand>) -> bool {
        {
            let mut rooms = self.node.rooms.lock().unwrap_or_else(|p| p.into_inner());
            if rooms.get(&*self.name).is_some_and(|h| h.generation == self.generation) {
                rooms.remove(&*self.name);
            }
        }
        rx.close();
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                RoomCommand::Join { reply, .. } => {
                    let _ = reply.send(Err(Refusal::Retry));
                }
                RoomCommand::Presence { reply, .. } | RoomCommand::OpenDoc { reply, .. } | RoomCommand::CloseDoc { reply, .. } => {
                    let _ = reply.send(Err(Refusal::Retry));
                }
                RoomCommand::Submit { submission, reply, doc } => {
                    self.answer_submit(&doc, &submission, reply, Err(Refusal::Retry));
                }
                RoomCommand::ReadDoc { reply, .. } => {
                    let _ = reply.send(Err(Refusal::Retry));
                }
                RoomCommand::UpdateValue { reply, .. } => {
                    let _ = reply.send(Err(Refusal::Retry));
                }
                RoomCommand::ReadValues { reply } => {
                    let _ = reply.send(Err(Refusal::Retry));
                }
                RoomCommand::Undo { reply, .. } => {
                    let _ = reply.send(Err(Refusal::Retry));
                }
                RoomCommand::Leave { reply, .. } => {
                    let _ = reply.send(());
                }
                RoomCommand::Cursor { .. } => {}
            }
        }
        true
    }

    async fn handle(&mut self, cmd: RoomCommand) {
        match cmd {
            RoomCommand::Join { request, reply } => {
                let result = self.join(request).await;
                let _ = reply.send(result);
            }
            RoomCommand::Leave { conn, reason, id, reply } => {
                self.leave(&conn, reason, id).await;
                let _ = reply.send(());
            }
            RoomCommand::Presence { conn, state, reply } => {
                let _ = reply.send(self.presence(conn, state).await);
            }
            RoomCommand::Cursor { conn, cursor, doc, version } => self.cursor(conn, cursor, doc, version).await,
            RoomCommand::OpenDoc { conn, doc, client, since, undo, id, reply } => {
                let _ = reply.send(self.open_doc(conn, doc, client, since, undo, id).await);
            }
            RoomCommand::CloseDoc { conn, doc, id, reply } => {
                let _ = reply.send(self.close_doc(&conn, &doc, id));
            }
            RoomCommand::Submit { doc, submission, reply } => {
                let outcome = self.submit(doc.clone(), &submission).await;
                self.answer_submit(&doc, &submission, reply, outcome);
            }
            RoomCommand::ReadDoc { doc, since, reply } => {
                let _ = reply.send(self.read_doc(doc, since).await);
            }
            RoomCommand::UpdateValue { name, kind, change, writer, reply } => {
                let _ = reply.send(self.update_value(name, kind, change, writer).await);
            }
            RoomCommand::ReadValues { reply } => {
                let _ = reply.send(Ok(self.values.states()));
            }
            RoomCommand::Undo { conn, doc, direction, reply } => {
                let _ = reply.send(self.undo(conn, doc, direction).await);
            }
        }
    }

    /// Commits the inverse of the user's latest step (or of their latest
    /// undo, for a redo) as a new op, transformed past everything committed
    /// since, so it never takes back anyone else's text.
    async fn undo(&mut self, conn: Arc<str>, name: Arc<str>, direction: UndoAction) -> Result<Option<u64>, Refusal> {
        let Some(user) = self.local.get(&conn).map(|l| l.user.clone()) else {
            return Err(Refusal::Refused(ErrorCode::NotJoined, format!("not in room {}", self.name)));
        };
        if !self.docs.get(&name).is_some_and(|d| d.subscribers.contains_key(&conn)) {
            return Err(Refusal::Refused(ErrorCode::NotOpen, format!("document {name} is not open; open it first")));
        }
        // What other nodes committed counts: the undo goes on top of it.
        self.catch_up(&name).await?;
        let key = (name.clone(), user.clone());
        // A blank history may predate the save of the user's history on the
        // node they came from: look again.
        if self.histories.get(&key).is_some_and(History::is_blank) {
            self.histories.remove(&key);
        }
        self.ensure_history(&name, &user).await;
        let (Some(doc), Some(history)) = (self.docs.get(&name), self.histories.get_mut(&key)) else {
            return Err(Refusal::Refused(ErrorCode::Internal, format!("document {name} was unloaded during an undo")));
        };
        let Some(op) = history.propose(direction, doc.text.log()) else { return Ok(None) };
        history.seq += 1;
        // The history is a submitter of its own, so its ops are deduplicated
        // and never mistaken for the user's edits.
        let client: Arc<str> = Arc::from(format!("{user}~history"));
        let submission = DocSubmission { from: Submitter::Api { client: client.clone() }, seq: history.seq, base: Some(doc.version()), op };
        let committed = self.commit(&name, &client, &submission).await?;
        if let (Some(doc), Some(history)) = (self.docs.get(&name), self.histories.get_mut(&key)) {
            if let Some(entry) = doc.text.log().since(committed.version - 1).and_then(|mut e| e.next()) {
                history.committed(direction, &entry.op, committed.version, doc.text.log());
            }
            history.bring_forward(doc.text.log());
            let saved = history.save(&doc.epoch);
            self.node.backend.save_history(&self.name, &name, &user, saved).await?;
        }
        Ok(Some(committed.version))
    }

    /// Makes sure the user's history of an open document is here: from the
    /// store, or new.
    async fn ensure_history(&mut self, name: &Arc<str>, user: &str) {
        let key = (name.clone(), user.to_owned());
        if self.histories.contains_key(&key) {
            return;
        }
        let recent = self.released.remove(&key).filter(|(at, _)| at.elapsed() < RELEASED_TRUSTED);
        self.released.retain(|_, (at, _)| at.elapsed() < RELEASED_TRUSTED);
        let saved = match recent {
            Some((_, saved)) => Some(saved),
            None => match self.node.backend.load_history(&self.name, name, user).await {
                Ok(saved) => saved,
                Err(e) => {
                    warn!(room = %self.name, doc = %name, %user, "could not load the undo history; starting a new one: {e}");
                    None
                }
            },
        };
        let Some(doc) = self.docs.get(name) else { return };
        let history = saved.and_then(|s| History::restore(&s, &doc.epoch, now_ms())).unwrap_or_else(|| History::new(now_ms()));
        self.histories.insert(key, history);
    }

    /// Saves (in the background) and forgets the history of a user who no
    /// longer has the document open here, so another node can take it on.
    fn release_history(&mut self, name: &Arc<str>, user: &str) {
        let Some(mut history) = self.histories.remove(&(name.clone(), user.to_owned())) else { return };
        let Some(doc) = self.docs.get(name) else { return };
        history.bring_forward(doc.text.log());
        let saved = history.save(&doc.epoch);
        self.released.insert((name.clone(), user.to_owned()), (Instant::now(), saved.clone()));
        let (store, room, name, user) = (self.node.backend.clone(), self.name.clone(), name.clone(), user.to_owned());
        tokio::spawn(async move {
            if let Err(e) = store.save_history(&room, &name, &user, saved).await {
                warn!(%room, doc = %name, %user, "could not save the undo history: {e}");
            }
        });
    }

    /// Releases a user's history unless another of their connections here
    /// still has the document open.
    fn release_history_unless_open(&mut self, name: &Arc<str>, user: &str) {
        let still_open = self.docs.get(name).is_some_and(|d| d.subscribers.keys().any(|c| self.local.get(c).is_some_and(|l| l.user == user)));
        if !still_open {
            self.release_history(name, user);
        }
    }

    /// Applies a change to the latest state of a value and writes it with
    /// the store's compare-and-set, applying it again on the newer state
    /// when another node wrote first.
    async fn update_value(&mut self, name: String, kind: ValueKind, change: Change, writer: String) -> Result<u64, Refusal> {
        let config = &self.node.config;
        let limits = ValueLimits { max_value_bytes: config.max_value_bytes, values_per_room: config.values_per_room };
        let deadline = Instant::now() + COMMIT_DEADLINE;
        while Instant::now() < deadline {
            let prepared = self.values.prepare(&name, kind, &change, &writer, limits, now_ms())?;
            match self.node.backend.put_value(&self.name, &name, prepared.expected, &prepared.state).await? {
                ValuePut::Written { version } => {
                    self.value_changed(&name, version, prepared.state);
                    return Ok(version);
                }
                ValuePut::Conflict { current } => self.values.conflict(&name, current),
            }
        }
        Err(Refusal::Refused(ErrorCode::Unavailable, format!("value {name} is too busy to change; retry")))
    }

    fn value_changed(&mut self, name: &str, version: u64, state: chorus_core::crdt::Value) {
        if let Some(value) = self.values.changed(name, version, state) {
            self.fan_out(ServerMessage::Value { room: self.name.to_string(), value }, None);
        }
    }

    async fn join(&mut self, request: JoinRequest) -> Result<(), Refusal> {
        let JoinRequest { conn, user, visible, state, id, outbox, dropped } = request;
        if self.local.contains_key(&conn) {
            return Err(Refusal::Refused(ErrorCode::AlreadyJoined, format!("already in room {}", self.name)));
        }
        let store = &self.node.backend;
        let now = now_ms();
        if visible {
            let count = store.count(&self.name, now).await?;
            let limit = self.node.config.members_per_room;
            if count >= limit {
                return Err(Refusal::Refused(ErrorCode::RoomFull, format!("room {} is full ({limit} members)", self.name)));
            }
            let member = Member { connection: conn.to_string(), user: user.clone(), state, joined_at: now };
            let expires = now + self.node.config.presence_ttl_ms;
            let count = store.join(&self.name, member.clone(), expires, now).await?;
            store.publish(&self.name, RoomEvent::MemberJoined { member, count }).await?;
        }
        let members = store.members(&self.name, now).await?;
        outbox.push(self.joined(id, &conn, members).to_json().into());
        self.local.insert(conn, Local { outbox, dropped, user: user.id, visible });
        Ok(())
    }

    async fn leave(&mut self, conn: &Arc<str>, reason: LeaveReason, id: Option<u64>) {
        let Some(local) = self.local.remove(conn) else { return };
        self.gates.remove(conn);
        self.unsubscribe_all(conn, Some(&local.user));
        if local.visible {
            match self.node.backend.leave(&self.name, conn, now_ms()).await {
                Ok(Some((member, count))) => {
                    let event = RoomEvent::MemberLeft { connection: conn.to_string(), user: member.user.id, reason, count };
                    if let Err(e) = self.node.backend.publish(&self.name, event).await {
                        warn!(room = %self.name, %conn, "could not publish a leave: {e}");
                    }
                }
                Ok(None) => {} // Already removed by expiry, which announced it.
                Err(e) => warn!(room = %self.name, %conn, "could not remove presence: {e}"),
            }
        }
        if reason == LeaveReason::Left {
            local.outbox.push(ServerMessage::Left { id, room: self.name.to_string(), reason }.to_json().into());
        }
    }

    async fn presence(&mut self, conn: Arc<str>, state: Value) -> Result<(), Refusal> {
        if !self.local.get(&conn).is_some_and(|l| l.visible) {
            return Err(Refusal::Refused(ErrorCode::NotJoined, format!("not a member of room {}", self.name)));
        }
        let store = &self.node.backend;
        if !store.set_state(&self.name, &conn, state.clone()).await? {
            return Err(Refusal::Refused(
                ErrorCode::NotJoined,
                format!("your presence in room {} expired; join again", self.name),
            ));
        }
        store.publish(&self.name, RoomEvent::Presence { connection: conn.to_string(), state }).await?;
        Ok(())
    }

    async fn cursor(&mut self, conn: Arc<str>, cursor: Value, doc: Option<String>, version: Option<u64>) {
        let Some(local) = self.local.get(&conn).filter(|l| l.visible) else { return };
        let state = CursorState { connection: conn.to_string(), user: local.user.clone(), cursor, doc, version };
        let gate = self.gates.entry(conn).or_default();
        let now = Instant::now();
        if gate.last_sent.is_none_or(|t| now.duration_since(t) >= self.cursor_interval) {
            gate.last_sent = Some(now);
            gate.pending = None;
            self.publish_cursor(state).await;
        } else {
            metrics::counter!("chorus_cursor_updates_coalesced_total").increment(u64::from(gate.pending.is_some()));
            gate.pending = Some(state);
        }
    }

    fn next_cursor_flush(&self) -> Option<Instant> {
        self.gates
            .values()
            .filter(|g| g.pending.is_some())
            .filter_map(|g| g.last_sent.map(|t| t + self.cursor_interval))
            .min()
    }

    async fn flush_cursors(&mut self) {
        let now = Instant::now();
        let interval = self.cursor_interval;
        let due: Vec<CursorState> = self
            .gates
            .values_mut()
            .filter(|g| g.pending.is_some() && g.last_sent.is_none_or(|t| now.duration_since(t) >= interval))
            .filter_map(|g| {
                g.last_sent = Some(now);
                g.pending.take()
            })
            .collect();
        for state in due {
            self.publish_cursor(state).await;
        }
    }

    async fn publish_cursor(&self, cursor: CursorState) {
        if let Err(e) = self.node.backend.publish(&self.name, RoomEvent::Cursor { cursor }).await {
            warn!(room = %self.name, "could not publish a cursor: {e}");
        }
    }

    /// Delivers a bus event to this node's connections in the room.
    fn deliver(&mut self, event: &RoomEvent) {
        let started = Instant::now();
        match event.clone() {
            RoomEvent::MemberJoined { member, count } => {
                let skip = member.connection.clone();
                let msg = ServerMessage::MemberJoined { room: self.name.to_string(), member, count };
                self.fan_out(msg, Some(&skip));
            }
            RoomEvent::MemberLeft { connection, user, reason, count } => {
                let conn: Arc<str> = Arc::from(connection.as_str());
                self.cursors.remove(&conn);
                if let Some(local) = self.local.remove(&conn) {
                    // Expired while still connected: tell the connection, and
                    // its session, which may join again.
                    self.gates.remove(&conn);
                    self.unsubscribe_all(&conn, Some(&local.user));
                    local.outbox.push(ServerMessage::Left { id: None, room: self.name.to_string(), reason }.to_json().into());
                    let _ = local.dropped.send(self.name.clone());
                }
                let msg: Utf8Bytes =
                    ServerMessage::MemberLeft { room: self.name.to_string(), connection, user, reason, count }.to_json().into();
                let key: CursorKey = (self.name.clone(), conn);
                for local in self.local.values() {
                    local.outbox.push_clearing_cursor(msg.clone(), &key);
                }
                metrics::counter!("chorus_messages_out_total").increment(self.local.len() as u64);
            }
            RoomEvent::Presence { connection, state } => {
                let skip = connection.clone();
                self.fan_out(ServerMessage::Presence { room: self.name.to_string(), connection, state }, Some(&skip));
            }
            // Ordered separately: see remote_op and value_changed.
            RoomEvent::DocOp { .. } | RoomEvent::Value { .. } => {}
            RoomEvent::Cursor { mut cursor } => {
                self.anchor(&mut cursor);
                let conn: Arc<str> = Arc::from(cursor.connection.as_str());
                if cursor.cursor.is_null() {
                    self.cursors.remove(&conn);
                } else {
                    self.cursors.insert(conn.clone(), cursor.clone());
                }
                let msg: Utf8Bytes = ServerMessage::Cursor { room: self.name.to_string(), cursor }.to_json().into();
                let key: CursorKey = (self.name.clone(), conn.clone());
                let mut sent = 0;
                for (c, local) in &self.local {
                    if *c != conn {
                        local.outbox.push_cursor(key.clone(), msg.clone());
                        sent += 1;
                    }
                }
                metrics::counter!("chorus_messages_out_total").increment(sent);
            }
        }
        metrics::histogram!("chorus_fanout_seconds").record(started.elapsed().as_secs_f64());
    }

    fn fan_out(&self, msg: ServerMessage, skip: Option<&str>) {
        let text: Utf8Bytes = msg.to_json().into();
        let mut sent = 0;
        for (conn, local) in &self.local {
            if skip != Some(&**conn) {
                local.outbox.push(text.clone());
                sent += 1;
            }
        }
        metrics::counter!("chorus_messages_out_total").increment(sent);
    }

    /// The room as `conn` should see it: members, and everyone else's cursors.
    fn joined(&self, id: Option<u64>, conn: &str, members: Vec<Member>) -> ServerMessage {
        ServerMessage::Joined {
            id,
            room: self.name.to_string(),
            connection: conn.to_owned(),
            count: members.len(),
            members,
            cursors: self
                .cursors
                .values()
                .filter(|c| c.connection != conn)
                .map(|c| {
                    let mut c = c.clone();
                    self.anchor(&mut c);
                    c
                })
                .collect(),
            values: self.values.states(),
        }
    }

    /// Moves a text cursor forward to its document's head, if it is open here.
    fn anchor(&self, cursor: &mut CursorState) {
        if let Some(doc) = cursor.doc.as_deref().and_then(|d| self.docs.get(d)) {
            doc.anchor(cursor);
        }
    }

    fn doc_limits(&self) -> DocLimits {
        DocLimits { max_op_bytes: self.node.config.max_op_bytes, max_document_bytes: self.node.config.max_document_bytes }
    }

    /// Loads a document into the room if it is not here yet.
    async fn load_doc(&mut self, name: &Arc<str>) -> Result<(), Refusal> {
        if self.docs.contains_key(name) {
            return Ok(());
        }
        let stored = self.node.backend.load(&self.name, name).await?;
        let doc = Document::restore(stored).map_err(|e| {
            warn!(room = %self.name, doc = %name, "stored document is damaged: {e}");
            Refusal::Refused(ErrorCode::Internal, format!("document {name} cannot be loaded: {e}"))
        })?;
        debug!(room = %self.name, doc = %name, version = doc.version(), "document loaded");
        self.docs.insert(name.clone(), doc);
        Ok(())
    }

    /// Drops a document nobody reads any more.
    fn unload_if_unread(&mut self, name: &str) {
        if self.docs.get(name).is_some_and(|d| d.subscribers.is_empty()) {
            let users: Vec<(Arc<str>, String)> = self.histories.keys().filter(|(d, _)| &**d == name).cloned().collect();
            for (doc, user) in users {
                self.release_history(&doc, &user);
            }
            self.docs.remove(name);
            debug!(room = %self.name, doc = %name, "document unloaded");
        }
    }

    /// Closes every document `conn` (of `user`, gone from `local`) has open.
    fn unsubscribe_all(&mut self, conn: &str, user: Option<&str>) {
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

    async fn open_doc(&mut self, conn: Arc<str>, name: Arc<str>, client: Arc<str>, since: Option<DocPosition>, undo: bool, id: Option<u64>) -> Result<(), Refusal> {
        let Some(outbox) = self.local.get(&conn).map(|l| l.outbox.clone()) else {
            return Err(Refusal::Refused(ErrorCode::NotJoined, format!("not in room {}", self.name)));
        };
        self.load_doc(&name).await?;
        let seen = since.as_ref().filter(|p| p.epoch == self.docs[&name].epoch).map(|p| p.version);
        self.load_doc_seen(&name, seen).await?;
        let doc = self.docs.get_mut(&name).expect("loaded above");
        let msg = doc.opened(id, &self.name, &name, since.as_ref());
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

    fn close_doc(&mut self, conn: &Arc<str>, name: &Arc<str>, id: Option<u64>) -> Result<(), Refusal> {
        let was_open = self.docs.get_mut(name).is_some_and(|d| d.subscribers.remove(conn).is_some());
        if !was_open {
            return Err(Refusal::Refused(ErrorCode::NotOpen, format!("document {name} is not open")));
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

    /// Orders an op: transforms it to the head, commits it through the
    /// store's compare-and-set (catching up and retrying when another node
    /// got there first), then acknowledges it and fans it out.
    /// Answers a submission: through `reply` for the API, on the outbox for
    /// a connection (whose ack went out on commit).
    fn answer_submit(&self, doc: &str, sub: &DocSubmission, reply: Option<oneshot::Sender<Result<Committed, Refusal>>>, outcome: Result<Committed, Refusal>) {
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
        crate::session::report_error(outbox, conn, *id, Some(&self.name), code, message);
    }

    async fn submit(&mut self, name: Arc<str>, sub: &DocSubmission) -> Result<Committed, Refusal> {
        let client: Arc<str> = match &sub.from {
            Submitter::Connection { conn, .. } => {
                match self.docs.get(&name).and_then(|d| d.subscribers.get(conn)) {
                    Some(client) => client.clone(),
                    None => return Err(Refusal::Refused(ErrorCode::NotOpen, format!("document {name} is not open; open it first"))),
                }
            }
            Submitter::Api { client } => client.clone(),
        };
        self.load_doc(&name).await?;
        let result = self.commit(&name, &client, sub).await;
        if let (Ok(done), Submitter::Connection { outbox, id, .. }) = (&result, &sub.from) {
            let ack = ServerMessage::Ack { id: *id, room: self.name.to_string(), doc: name.to_string(), seq: sub.seq, version: done.version };
            outbox.push(ack.to_json().into());
        }
        self.unload_if_unread(&name);
        result
    }

    async fn commit(&mut self, name: &Arc<str>, client: &Arc<str>, sub: &DocSubmission) -> Result<Committed, Refusal> {
        let limits = self.doc_limits();
        let store = self.node.backend.clone();
        let deadline = Instant::now() + COMMIT_DEADLINE;
        while Instant::now() < deadline {
            // Loaded by the caller, or again after applying the ops of a
            // conflict dropped a replica that disagreed with the store.
            self.load_doc_seen(name, sub.base).await?;
            let doc = self.docs.get(name).expect("loaded above");
            let head = doc.version();
            let base = sub.base.unwrap_or(head);
            let op = match doc.prepare(client, sub.seq, base, &sub.op, limits)? {
                Prepared::Fresh(op) => op,
                Prepared::Duplicate(version) => return Ok(Committed { version, duplicate: true }),
                Prepared::Trimmed { oldest } => {
                    return match store.last_committed(&self.name, name, client).await? {
                        Some((seq, version)) if seq == sub.seq => Ok(Committed { version, duplicate: true }),
                        Some((last, _)) if last > sub.seq => Err(stale_seq(sub.seq, last)),
                        _ => Err(Refusal::Refused(
                            ErrorCode::VersionTrimmed,
                            format!("base version {base} is older than the log reaches (from version {oldest}); open the document again"),
                        )),
                    };
                }
            };
            let epoch = doc.epoch.clone();
            match store.append(&self.name, name, &epoch, head, client, sub.seq, &op).await? {
                Appended::Committed { version } => {
                    let entry = LogEntry { version, client: client.to_string(), seq: sub.seq, op };
                    let origin = match &sub.from {
                        Submitter::Connection { conn, .. } => Some(conn.clone()),
                        Submitter::Api { .. } => None,
                    };
                    // The store published it to the other nodes with the commit.
                    self.apply(name, entry, origin.as_deref());
                    metrics::counter!("chorus_ops_committed_total").increment(1);
                    return Ok(Committed { version, duplicate: false });
                }
                Appended::Duplicate { version } => {
                    // Committed by an attempt whose answer was lost (a Redis
                    // failover, say): this replica may not have it yet.
                    if version > head {
                        self.catch_up(name).await?;
                    }
                    return Ok(Committed { version, duplicate: true });
                }
                Appended::StaleSeq { last } => return Err(stale_seq(sub.seq, last)),
                Appended::Conflict { head: store_head, missed } => {
                    // Another node committed first; the store sent what it
                    // committed, so the retry costs one round trip.
                    let complete = missed.first().is_some_and(|e| e.version == head + 1) && missed.last().is_some_and(|e| e.version == store_head);
                    if complete {
                        for entry in missed {
                            self.apply(name, entry, None);
                        }
                    } else if store_head == head {
                        // Another node has the turn after losing a race:
                        // let it commit first.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        self.catch_up(name).await?;
                    }
                }
                Appended::EpochChanged { .. } => {
                    self.reload(name, ResetReason::Epoch).await?;
                    return Err(Refusal::Refused(ErrorCode::VersionTrimmed, format!("document {name} was reset; open it again")));
                }
            }
        }
        Err(Refusal::Refused(ErrorCode::Unavailable, format!("document {name} is too busy to commit; retry")))
    }

    /// Applies a committed op to the replica and sends it to every reader
    /// but its submitter (who gets an ack). Snapshots every so often.
    fn apply(&mut self, name: &Arc<str>, entry: LogEntry, submitter: Option<&str>) {
        let Some(doc) = self.docs.get_mut(name) else { return };
        if let Err(e) = doc.commit(&entry) {
            // The store's order and this replica disagree: drop the replica;
            // the next use reloads it from the store.
            warn!(room = %self.name, doc = %name, version = entry.version, "committed op does not apply to the replica ({e}); reloading");
            self.docs.remove(name);
            return;
        }
        // Most rooms keep no history: skip building the key for them.
        let user = submitter.filter(|_| !self.histories.is_empty()).and_then(|conn| self.local.get(conn)).map(|l| &l.user);
        if let Some(user) = user {
            if let Some(history) = self.histories.get_mut(&(name.clone(), user.clone())) {
                history.edited(entry.version, now_ms(), doc.text.log());
            }
        }
        let msg: Utf8Bytes = ServerMessage::Op { room: self.name.to_string(), doc: name.to_string(), entry }.to_json().into();
        let mut sent = 0;
        for conn in doc.subscribers.keys() {
            if Some(&**conn) != submitter {
                if let Some(local) = self.local.get(conn) {
                    local.outbox.push(msg.clone());
                    sent += 1;
                }
            }
        }
        metrics::counter!("chorus_messages_out_total").increment(sent);
        let version = doc.version();
        let config = &self.node.config;
        if version >= doc.snapshot_version + config.doc_snapshot_every {
            let trim_to = version.saturating_sub(config.doc_log_window);
            doc.snapshot_version = version;
            // Histories take what they need from the log before it goes.
            for ((_, _), history) in self.histories.iter_mut().filter(|((d, _), _)| d == name) {
                if history.needs_log_from() < trim_to {
                    history.bring_forward(doc.text.log());
                }
            }
            doc.text.trim_to(trim_to);
            let rope = doc.text.text().rope().clone();
            let (store, room, name, epoch) = (self.node.backend.clone(), self.name.clone(), name.clone(), doc.epoch.clone());
            // Written off the room task: the text is a cheap copy of the rope.
            tokio::spawn(async move {
                if let Err(e) = store.snapshot(&room, &name, &epoch, version, rope.to_string(), trim_to).await {
                    warn!(%room, doc = %name, version, "could not save a snapshot: {e}");
                } else {
                    debug!(%room, doc = %name, version, trim_to, "snapshot saved");
                }
            });
        }
    }

    /// Fetches and applies the ops the replica missed. The document is
    /// loaded afterwards (again, if applying dropped a replica that
    /// disagreed with the store).
    async fn catch_up(&mut self, name: &Arc<str>) -> Result<(), Refusal> {
        self.load_doc(name).await?;
        let doc = &self.docs[name];
        let (epoch, head) = (doc.epoch.clone(), doc.version());
        match self.node.backend.ops_since(&self.name, name, &epoch, head).await? {
            Some(ops) => {
                for entry in ops {
                    self.apply(name, entry, None);
                }
            }
            None => self.reload(name, ResetReason::Trimmed).await?,
        }
        self.load_doc(name).await
    }

    /// Loads a document, catching its replica up first when a client has
    /// seen version `seen` and the replica has not (the client saw it on
    /// another node).
    async fn load_doc_seen(&mut self, name: &Arc<str>, seen: Option<u64>) -> Result<(), Refusal> {
        self.load_doc(name).await?;
        if seen.is_some_and(|v| v > self.docs[name].version()) {
            self.catch_up(name).await?;
        }
        Ok(())
    }

    /// Replaces a replica that fell too far behind (or whose log was
    /// recreated) with the store's, and gives every reader the whole text.
    async fn reload(&mut self, name: &Arc<str>, reason: ResetReason) -> Result<(), Refusal> {
        let Some(old) = self.docs.remove(name) else { return Ok(()) };
        warn!(room = %self.name, doc = %name, ?reason, "document replica reloaded; readers get the whole text");
        self.load_doc(name).await?;
        let doc = self.docs.get_mut(name).expect("loaded above");
        doc.subscribers = old.subscribers;
        // A log the store lost and created again is a new epoch, whatever
        // the path that noticed it.
        let reason = if doc.epoch != old.epoch { ResetReason::Epoch } else { reason };
        if reason == ResetReason::Epoch {
            // Histories of the lost incarnation mean nothing in the new one.
            for ((_, _), history) in self.histories.iter_mut().filter(|((d, _), _)| d == name) {
                *history = History::new(now_ms());
            }
        }
        let mut msg = doc.opened(None, &self.name, name, None);
        if let ServerMessage::Opened { reset, .. } = &mut msg {
            *reset = Some(reason);
        }
        let text: Utf8Bytes = msg.to_json().into();
        for conn in doc.subscribers.keys() {
            if let Some(local) = self.local.get(conn) {
                local.outbox.push(text.clone());
            }
        }
        Ok(())
    }

    /// An op another node committed (or this one: then it is known already).
    async fn remote_op(&mut self, name: &str, entry: &LogEntry) {
        let Some(doc) = self.docs.get(name) else { return };
        let head = doc.version();
        let name: Arc<str> = Arc::from(name);
        if entry.version <= head {
            return;
        }
        if entry.version == head + 1 {
            self.apply(&name, entry.clone(), None);
        } else if let Err(e) = self.catch_up(&name).await {
            warn!(room = %self.name, doc = %name, "could not fill a gap in the op stream: {e:?}");
        }
    }

    async fn read_doc(&mut self, name: Arc<str>, since: Option<u64>) -> Result<DocRead, Refusal> {
        // A reader expects what any node has acknowledged, not what this
        // one has heard of so far.
        self.catch_up(&name).await?;
        let doc = self.docs.get(&name).expect("loaded by the catch-up");
        let read = match since {
            None => Ok(DocRead { epoch: doc.epoch.clone(), version: doc.version(), text: Some(doc.text.text().to_string()), ops: None }),
            Some(v) => match doc.text.log().since(v) {
                Some(ops) => Ok(DocRead { epoch: doc.epoch.clone(), version: doc.version(), text: None, ops: Some(ops.cloned().collect()) }),
                None => Err(Refusal::Refused(
                    ErrorCode::VersionTrimmed,
                    format!("the log of {name} holds the ops after version {} up to {}", doc.text.log().oldest(), doc.version()),
                )),
            },
        };
        self.unload_if_unread(&name);
        read
    }

    /// After missing bus events: every local connection gets a fresh member
    /// list and the values (an unsolicited `joined`), which replace what it
    /// had.
    async fn resync(&mut self) {
        match self.node.backend.values(&self.name).await {
            Ok(stored) => self.values.reset(stored),
            Err(e) => warn!(room = %self.name, "could not reload values: {e}"),
        }
        let members = match self.node.backend.members(&self.name, now_ms()).await {
            Ok(m) => m,
            Err(e) => {
                warn!(room = %self.name, "resync failed: {e}");
                return;
            }
        };
        for (conn, local) in &self.local {
            local.outbox.push(self.joined(None, conn, members.clone()).to_json().into());
        }
    }
}

fn stale_seq(seq: u64, last: u64) -> Refusal {
    Refusal::Refused(ErrorCode::StaleSeq, format!("sequence number {seq} is older than this client's last committed op ({last})"))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
