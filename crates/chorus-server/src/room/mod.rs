//! One room on one node: a task that owns the room's local connections and
//! fans events out to them.
//!
//! Every change (join, leave, presence, an op, a value) goes to the store,
//! which announces it on the bus in the same step; every node with members
//! in the room, this one included, hears it back and delivers it to its own
//! connections. So a room behaves the same whether its members sit on one
//! node or many. The task is the only owner of its state, so nothing here
//! needs a lock, and each room's events reach each connection in the order
//! the bus gave them.
//!
//! The bus is a wake-up, not the truth. Every event says where it follows
//! from (a document version with its digest, the room's presence or values
//! stamp); a gap, a lost subscription or a periodic look at the store
//! ([`repair`]) sends the room back to the store for what it missed, and a
//! repair that fails is tried again, with growing pauses, until it works.
//!
//! The concerns live beside this loop:
//! - [`presence`]: who is here, on any node; joins, leaves, states;
//! - [`cursors`]: cursor rate bounds and fan-out;
//! - [`documents`]: the replicas of open documents and catching them up;
//! - [`pipeline`]: group commit, one group in flight per document;
//! - [`histories`]: per-user undo and redo;
//! - [`values`]: shared values;
//! - [`joined`]: the `joined` reply, counted before it is built;
//! - [`repair`]: what to fetch again, when, and the periodic reconciliation.
//!
//! The task stops when its last local connection leaves, unsubscribing from
//! the bus, so idle rooms cost nothing.

mod cursors;
mod documents;
mod histories;
mod joined;
mod pipeline;
mod presence;
mod repair;
mod values;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chorus_core::crdt::{Change, ValueKind};
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, UserInfo};
use chorus_core::text::TextOp;
use chorus_protocol::{DocPosition, ErrorCode, LeaveReason, ServerMessage, UndoAction, ValueState};
use chorus_store::{Backend, BusError, RoomEvent, StoreError, Subscription};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::budget::Budget;
use crate::clock::now_ms;
use crate::config::Config;
use crate::document::Document;
use crate::outbox::Outbox;
use crate::refusal::Refusal;
use crate::values::RoomValues;

/// How long one request may keep losing races to other nodes (each lost
/// race means another node wrote first; this one catches up and retries)
/// before its sender is told to retry later.
const COMMIT_DEADLINE: Duration = Duration::from_secs(2);

/// The rooms of one node: starts them, finds them, and holds what they share.
pub struct Registry {
    pub config: Arc<Config>,
    pub backend: Arc<dyn Backend>,
    rooms: Mutex<HashMap<String, RoomHandle>>,
    next_generation: AtomicU64,
    /// Room state in memory, all rooms together (`--max-state-bytes`).
    pub budget: Budget,
}

impl Registry {
    pub fn new(config: Arc<Config>, backend: Arc<dyn Backend>) -> Arc<Self> {
        let budget = Budget::new(config.max_state_bytes);
        Arc::new(Self { config, backend, rooms: Mutex::new(HashMap::new()), next_generation: AtomicU64::new(1), budget })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomHandle>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rooms running on this node.
    pub fn loaded(&self) -> usize {
        self.lock().len()
    }

    /// The room's task on this node, started if it is not running.
    pub async fn room(self: &Arc<Self>, name: &str) -> Result<RoomHandle, Refusal> {
        if let Some(h) = self.lock().get(name) {
            if !h.tx.is_closed() {
                return Ok(h.clone());
            }
        }
        // A node holds a bounded number of rooms: every one costs memory
        // (members, values, documents) that outlives the connections.
        let limit = self.config.max_rooms;
        if self.lock().values().filter(|h| !h.tx.is_closed()).count() >= limit {
            return Err(StoreError::Unavailable(format!("this node holds its limit of {limit} rooms (--max-rooms); try again later")).into());
        }
        self.budget.admit(1, || format!("room {name} cannot be loaded"))?;
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let handle = Room::spawn(self.clone(), name, generation).await?;
        let mut rooms = self.lock();
        // Another session may have started the room meanwhile: use theirs
        // (ours stops at once, its handle dropped).
        match rooms.get(name) {
            Some(h) if !h.tx.is_closed() => Ok(h.clone()),
            _ => {
                rooms.insert(name.to_owned(), handle.clone());
                Ok(handle)
            }
        }
    }

    /// Sends a command to the room's task (starting it if needed) and waits
    /// for its answer; retries when the task was just stopping.
    pub async fn ask<T>(self: &Arc<Self>, room: &str, make: impl Fn(oneshot::Sender<Result<T, Refusal>>) -> RoomCommand) -> Result<T, Refusal> {
        for _ in 0..10 {
            let handle = self.room(room).await?;
            let (reply, done) = oneshot::channel();
            if handle.tx.send(make(reply)).await.is_err() {
                continue;
            }
            match done.await {
                Ok(Err(Refusal::Retry)) | Err(_) => continue,
                Ok(outcome) => return outcome,
            }
        }
        Err(Refusal::new(ErrorCode::Unavailable, format!("room {room} is restarting; try again")))
    }

    fn unregister(&self, name: &str, generation: u64) {
        let mut rooms = self.lock();
        if rooms.get(name).is_some_and(|h| h.generation == generation) {
            rooms.remove(name);
        }
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
    /// When the client last sent a frame (ms since the epoch).
    pub heard: Arc<AtomicU64>,
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
        /// The submitter id of the connection's ops (scoped to its user).
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
    /// When the node took it in, for `chorus_submit_seconds`.
    pub received: Instant,
}

pub enum Submitter {
    Connection { conn: Arc<str>, id: Option<u64>, outbox: Arc<Outbox> },
    /// A backend, under a submitter id of the API's namespace.
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

/// A connection of this node in the room.
struct Local {
    outbox: Arc<Outbox>,
    dropped: mpsc::UnboundedSender<Arc<str>>,
    /// When the client last sent a frame (ms since the epoch).
    heard: Arc<AtomicU64>,
    user: String,
    visible: bool,
    /// As it joined (its state kept up to date), to put it back if the
    /// store loses it while it is here.
    member: Member,
}

pub struct Room {
    name: Arc<str>,
    generation: u64,
    rooms: Arc<Registry>,
    local: HashMap<Arc<str>, Local>,
    /// Members on every node, as the bus and the store told.
    members: presence::Members,
    cursors: cursors::Cursors,
    /// Open documents (loaded on first use, unloaded with their last reader).
    docs: HashMap<Arc<str>, Document>,
    values: RoomValues,
    histories: histories::Histories,
    pipelines: pipeline::Pipelines,
    repair: repair::Repair,
    /// Entries of this node's connections being taken back.
    settling: presence::Settling,
    /// Bytes of this room's state counted in the node's budget.
    held: usize,
}

impl Room {
    /// Starts a room task; the caller registers the handle.
    async fn spawn(rooms: Arc<Registry>, name: &str, generation: u64) -> Result<RoomHandle, StoreError> {
        let store = &rooms.backend;
        // This node's own groups are applied from their answers (see
        // `pipeline`): heard back as well, each op woke the room twice.
        let sub = store.subscribe_without_own_groups(name).await?;
        // Read after subscribing, so no change falls in between; anything
        // announced before the reads is recognised by its stamp.
        let values = RoomValues::new(store.values(name).await?);
        let members = store.members(name, now_ms()).await?;
        let (tx, rx) = mpsc::channel(1_024);
        let config = &rooms.config;
        let room = Room {
            name: Arc::from(name),
            generation,
            local: HashMap::new(),
            members: presence::Members::new(members),
            cursors: cursors::Cursors::new(Duration::from_secs(1) / config.cursor_rate),
            docs: HashMap::new(),
            values,
            histories: histories::Histories::default(),
            pipelines: pipeline::Pipelines::new(),
            repair: repair::Repair::new(config.reconcile_interval()),
            settling: presence::Settling::default(),
            rooms,
            held: 0,
        };
        metrics::gauge!("chorus_rooms").increment(1.0);
        tokio::spawn(room.run(rx, sub));
        Ok(RoomHandle { tx, generation })
    }

    fn config(&self) -> &Config {
        &self.rooms.config
    }

    fn store(&self) -> &Arc<dyn Backend> {
        &self.rooms.backend
    }

    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>, mut sub: Subscription) {
        debug!(room = %self.name, "room loaded");
        // One timer for the repairs, moved only when their time changes: a
        // timer made afresh on every turn of the loop would be registered
        // and removed again with every op.
        let repair_timer = tokio::time::sleep_until(self.repair.next_at());
        tokio::pin!(repair_timer);
        loop {
            let next_flush = self.cursors.next_flush();
            let next_repair = self.repair.next_at();
            if repair_timer.deadline() != next_repair {
                repair_timer.as_mut().reset(next_repair);
            }
            // A room with nobody here stops after a command (the one that
            // left it empty, or an API request), or after a bus event that
            // removed its last connection; not after bus events that come in
            // before its first join, which would never let it start.
            let had_local = !self.local.is_empty();
            let mut commanded = false;
            // Bus events first: ops other nodes committed are applied before
            // this node commits its next one, which then rarely conflicts.
            tokio::select! {
                biased;
                event = sub.recv() => match event {
                    Ok(event) => self.on_event(&event).await,
                    Err(BusError::Lagged { missed }) => {
                        warn!(room = %self.name, missed, "room missed bus events; resyncing members, values and documents from the store");
                        metrics::counter!("chorus_room_resyncs_total", "reason" => "lagged").increment(1);
                        self.repair.everything(self.docs.keys().cloned());
                    }
                    Err(BusError::Closed) => break,
                },
                (doc, id) = self.pipelines.answered() => {
                    commanded = true;
                    self.group_done(&doc, id).await;
                }
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        commanded = true;
                        self.handle(cmd).await
                    }
                    None => break,
                },
                _ = sleep_until(next_flush), if next_flush.is_some() => self.flush_cursors(),
                () = self.cursors.published() => {}
                _ = &mut repair_timer => self.run_repairs().await,
            }
            self.send_ready_groups().await;
            self.settle_budget();
            // Not while a submission waits for its answer (an API request,
            // or an op of a connection that just left).
            if self.local.is_empty() && (commanded || had_local) && self.pipelines.idle() && self.stop(&mut rx) {
                break;
            }
        }
        self.rooms.budget.settle(&mut self.held, 0);
        metrics::gauge!("chorus_rooms").decrement(1.0);
        debug!(room = %self.name, "room unloaded");
    }

    async fn on_event(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::DocOp { doc, entry } => self.remote_op(doc, entry).await,
            RoomEvent::DocDeleted { doc, epoch } => self.doc_deleted(doc, epoch).await,
            RoomEvent::Value { name, version, state, stamp } => self.value_event(name, *version, state, stamp),
            RoomEvent::Cursor { cursor } => self.cursor_event(cursor.clone()),
            RoomEvent::MemberJoined { .. } | RoomEvent::MemberLeft { .. } | RoomEvent::Presence { .. } => self.presence_event(event).await,
        }
    }

    /// Unregisters the room if nobody is here. Commands that raced in are
    /// answered so their senders try again with a fresh room.
    fn stop(&mut self, rx: &mut mpsc::Receiver<RoomCommand>) -> bool {
        self.rooms.unregister(&self.name, self.generation);
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
            RoomCommand::Cursor { conn, cursor, doc, version } => self.cursor(conn, cursor, doc, version),
            RoomCommand::OpenDoc { conn, doc, client, since, undo, id, reply } => {
                let _ = reply.send(self.open_doc(conn, doc, client, since, undo, id).await);
            }
            RoomCommand::CloseDoc { conn, doc, id, reply } => {
                let _ = reply.send(self.close_doc(&conn, &doc, id));
            }
            RoomCommand::Submit { doc, submission, reply } => self.enqueue(doc, submission, reply).await,
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

    /// Bytes of state this room holds: its documents' texts and kept ops,
    /// and its values.
    fn state_bytes(&self) -> usize {
        let docs: usize = self.docs.values().map(Document::state_bytes).sum();
        docs + self.values.total_bytes()
    }

    /// Tells the node's budget what this room holds now.
    fn settle_budget(&mut self) {
        let now = self.state_bytes();
        self.rooms.budget.settle(&mut self.held, now);
    }

    /// Sends a message to every local connection but `skip`.
    fn fan_out(&self, msg: ServerMessage, skip: Option<&str>) {
        let started = Instant::now();
        let text: Utf8Bytes = msg.to_json().into();
        let mut sent = 0;
        for (conn, local) in &self.local {
            if skip != Some(&**conn) {
                local.outbox.push(text.clone());
                sent += 1;
            }
        }
        crate::hot_metrics().messages_out.increment(sent);
        crate::hot_metrics().fanout_seconds.record(started.elapsed().as_secs_f64());
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
