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
//! The task stops when its last local connection leaves, unsubscribing from
//! the bus, so idle rooms cost nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::ws::Utf8Bytes;
use chorus_core::presence::{Member, UserInfo};
use chorus_protocol::{CursorState, ErrorCode, LeaveReason, ServerMessage};
use chorus_store::{BusError, RoomEvent, StoreError, Subscription};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::node::{now_ms, Node};
use crate::outbox::{CursorKey, Outbox};

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

pub enum RoomCommand {
    Join {
        conn: Arc<str>,
        user: UserInfo,
        /// Listed as a member (has the presence permission) or only watching.
        visible: bool,
        state: Value,
        id: Option<u64>,
        outbox: Arc<Outbox>,
        /// Tells the session when the room drops it on its own (expiry).
        dropped: mpsc::UnboundedSender<Arc<str>>,
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
}

impl Room {
    /// Starts a room task; the caller registers the handle.
    pub async fn spawn(node: Arc<Node>, name: &str, generation: u64) -> Result<RoomHandle, StoreError> {
        let sub = node.backend.subscribe(name).await?;
        let (tx, rx) = mpsc::channel(1_024);
        let room = Room {
            name: Arc::from(name),
            generation,
            cursor_interval: Duration::from_secs(1) / node.config.cursor_rate,
            node,
            local: HashMap::new(),
            cursors: HashMap::new(),
            gates: HashMap::new(),
        };
        metrics::gauge!("chorus_rooms").increment(1.0);
        tokio::spawn(room.run(rx, sub));
        Ok(RoomHandle { tx, generation })
    }

    async fn run(mut self, mut rx: mpsc::Receiver<RoomCommand>, mut sub: Subscription) {
        debug!(room = %self.name, "room loaded");
        loop {
            let next_flush = self.next_cursor_flush();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                event = sub.recv() => match event {
                    Ok(event) => self.deliver(&event),
                    Err(BusError::Lagged { missed }) => {
                        warn!(room = %self.name, missed, "room fell behind its bus; resyncing members");
                        self.resync().await;
                    }
                    Err(BusError::Closed) => break,
                },
                _ = sleep_until(next_flush), if next_flush.is_some() => self.flush_cursors().await,
            }
            if self.local.is_empty() && self.stop(&mut rx) {
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
                RoomCommand::Presence { reply, .. } => {
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
            RoomCommand::Join { conn, user, visible, state, id, outbox, dropped, reply } => {
                let result = self.join(conn, user, visible, state, id, outbox, dropped).await;
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
        }
    }

    async fn join(
        &mut self,
        conn: Arc<str>,
        user: UserInfo,
        visible: bool,
        state: Value,
        id: Option<u64>,
        outbox: Arc<Outbox>,
        dropped: mpsc::UnboundedSender<Arc<str>>,
    ) -> Result<(), Refusal> {
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
            RoomEvent::Cursor { cursor } => {
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
            cursors: self.cursors.values().filter(|c| c.connection != conn).cloned().collect(),
        }
    }

    /// After missing bus events: every local connection gets a fresh member
    /// list (an unsolicited `joined`), which replaces what it had.
    async fn resync(&mut self) {
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

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
