//! One client connection: the handshake, then every message it sends.
//!
//! A session is two tasks. The reader (this module's loop) decodes frames,
//! enforces the per-connection limits and talks to room tasks; the writer
//! drains the connection's [`Outbox`] and batches frames into one flush. Bad
//! input gets an error naming what was wrong and changes nothing; only
//! protocol violations that make the conversation impossible (no `hello`, an
//! invalid token, a frame over the size limit, invalid UTF-8, a flood) close
//! the connection, each with its documented close code.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use chorus_protocol::{close, decode_client, ClientMessage, ErrorCode, LeaveReason, ServerMessage, UndoAction, PROTOCOL_VERSION};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::auth::{check_doc_name, check_room_name, check_value_name, AuthError, Identity, Permission};
use crate::clock::now_ms;
use crate::document::parse_op;
use crate::node::Node;
use crate::outbox::{report_error, Outbox};
use crate::refusal::Refusal;
use crate::room::{DocSubmission, JoinRequest, RoomCommand, RoomHandle, Submitter};
use crate::submitter;

mod array_frame;
mod reauth;
mod wire;

use wire::{finish, refuse, refuse_read_error, write_loop};

/// How long a new connection has to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// An error for the client: code, message, and the request it answers.
struct Reply {
    code: ErrorCode,
    message: String,
}

impl Reply {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Runs a connection to its end.
pub async fn run(node: Arc<Node>, socket: WebSocket, identity: Result<Identity, AuthError>) {
    let (sink, mut stream) = socket.split();
    let outbox = Arc::new(Outbox::new(node.config.outbox_capacity, node.config.max_outbox_bytes));
    let batching = Arc::new(AtomicBool::new(false));
    let mut writer = tokio::spawn(write_loop(sink, outbox.clone(), batching.clone()));
    metrics::gauge!("chorus_connections").increment(1.0);

    let identity = match identity {
        Ok(id) => id,
        Err(e) => {
            info!("connection refused: {e}");
            refuse(&outbox, ErrorCode::Unauthorized, close::UNAUTHORIZED, e.to_string());
            finish(writer, &mut stream, &node).await;
            return;
        }
    };

    // Handshake: the first frame must be a hello in our protocol version.
    let first = tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await;
    let hello = match first {
        Ok(Some(Ok(Message::Text(text)))) => decode_client(&text),
        Ok(Some(Ok(Message::Close(_))) | None) => {
            finish(writer, &mut stream, &node).await;
            return;
        }
        Ok(Some(Err(e))) => {
            // An oversized frame, invalid UTF-8, a protocol violation: told
            // like after the handshake.
            refuse_read_error(&outbox, &e.to_string(), node.config.max_message_bytes, "-");
            finish(writer, &mut stream, &node).await;
            return;
        }
        Ok(Some(Ok(_))) => {
            refuse(&outbox, ErrorCode::HelloRequired, close::PROTOCOL, "the first frame must be a hello text frame".into());
            finish(writer, &mut stream, &node).await;
            return;
        }
        Err(_) => {
            refuse(&outbox, ErrorCode::HelloRequired, close::PROTOCOL, format!("no hello within {HELLO_TIMEOUT:?}"));
            finish(writer, &mut stream, &node).await;
            return;
        }
    };
    match hello {
        Ok(ClientMessage::Hello { protocol, client, batch }) if protocol == PROTOCOL_VERSION => {
            debug!(client = client.as_deref().unwrap_or("-"), batch, "hello");
            // Before `welcome` is queued: the writer reads the flag after
            // taking a batch from the outbox, whose lock orders the two.
            batching.store(batch, Ordering::Relaxed);
        }
        Ok(ClientMessage::Hello { protocol, .. }) => {
            let msg = format!("protocol version {protocol} is not supported; this server speaks {PROTOCOL_VERSION}");
            refuse(&outbox, ErrorCode::UnsupportedProtocol, close::PROTOCOL, msg);
            finish(writer, &mut stream, &node).await;
            return;
        }
        Ok(_) => {
            refuse(&outbox, ErrorCode::HelloRequired, close::PROTOCOL, "the first message must be hello".into());
            finish(writer, &mut stream, &node).await;
            return;
        }
        Err(e) => {
            refuse(&outbox, e.code, close::PROTOCOL, format!("{} (expected hello)", e.message));
            finish(writer, &mut stream, &node).await;
            return;
        }
    }

    let conn = node.connection_id();
    info!(%conn, user = %identity.user.id, anonymous = identity.anonymous, "connected");
    let welcome = ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        server: format!("chorus/{}", env!("CARGO_PKG_VERSION")),
        connection: conn.to_string(),
        user: identity.user.clone(),
        heartbeat_ms: node.config.heartbeat_interval().as_millis() as u64,
        presence_ttl_ms: node.config.presence_ttl_ms,
        limits: node.config.limits(),
        token_expires_at: identity.expires_at,
    };
    outbox.push(welcome.to_json().into());

    let (dropped, mut dropped_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut session = Session {
        dropped,
        bucket: TokenBucket::new(node.config.messages_per_second),
        node: node.clone(),
        conn: conn.clone(),
        identity,
        outbox: outbox.clone(),
        rooms: HashMap::new(),
        docs: HashSet::new(),
        last_refresh: Instant::now(),
        wall: WallClock::now(),
        refreshing: Arc::default(),
        heard: Arc::new(AtomicU64::new(now_ms())),
        dropped_in_row: 0,
        last_rate_error: None,
    };
    let ttl = node.config.presence_ttl();
    let mut deadline = Instant::now() + ttl;
    let reason = loop {
        // A frame that has arrived wins over the deadline: if handling the
        // previous one took long (a slow store), the client was not silent.
        tokio::select! {
            biased;
            Some(room) = dropped_rx.recv() => {
                session.forget_room(&room);
            }
            frame = stream.next() => {
                // The clock is read once per frame: the deadline, the time
                // heard, the presence refresh and the rate limit all use it
                // (each read was a few hundred nanoseconds of every op).
                let now = Instant::now();
                deadline = now + ttl;
                let arrived = session.wall.ms_at(now);
                // Not silent while a frame is being handled, however long
                // that takes (a slow store): as for the deadline above.
                session.heard.store(HANDLING_A_FRAME, Ordering::Relaxed);
                // Any frame shows the client is alive.
                session.refresh_presence_if_due(now).await;
                match frame {
                    Some(Ok(Message::Text(text))) => session.on_text(&text, now).await,
                    Some(Ok(Message::Binary(_))) => {
                        if session.admit(now) {
                            session.error(None, None, Reply::new(ErrorCode::BinaryFrame, "binary frames are not part of the protocol; send JSON text frames"));
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break LeaveReason::Closed,
                    Some(Err(e)) => {
                        session.on_read_error(&e.to_string());
                        break LeaveReason::Closed;
                    }
                }
                // Heard when the frame came, as the deadline counts: a
                // connection the store expires is then judged by the same
                // clock the session closes it by.
                session.heard.store(arrived, Ordering::Relaxed);
                if outbox.is_closing() {
                    break LeaveReason::Closed;
                }
            }
            _ = reauth::sleep_until(session.token_deadline()) => {
                info!(%conn, "token expired without a fresh one; closing");
                refuse(&outbox, ErrorCode::Unauthorized, close::UNAUTHORIZED, "the token expired: send auth with a fresh token before it does".into());
                break LeaveReason::Closed;
            }
            _ = tokio::time::sleep_until(deadline) => {
                info!(%conn, "no message within the presence TTL; closing");
                outbox.close(close::HEARTBEAT_TIMEOUT, format!("no message within {} ms", ttl.as_millis()));
                break LeaveReason::Expired;
            }
            _ = node.shutdown.cancelled() => {
                outbox.push(ServerMessage::Shutdown { reason: "server shutting down".into(), reconnect_after_ms: 1_000 }.to_json().into());
                outbox.close(close::SERVICE_RESTART, "server shutting down; reconnect");
                // Presence is not removed here: the entries expire within the
                // TTL (on a shared store, other nodes sweep them), and this
                // node's last moments go to telling clients to reconnect.
                session.rooms.clear();
                break LeaveReason::Closed;
            }
            _ = &mut writer => {
                // The socket is gone.
                break LeaveReason::Closed;
            }
        }
    };
    session.leave_all(reason).await;
    info!(%conn, "disconnected");
    // The client closed (or vanished): answer its close frame, so the writer
    // ends and the socket with it.
    if !outbox.is_closing() {
        outbox.close(close::NORMAL, "closed");
    }
    finish(writer, &mut stream, &node).await;
}

/// Messages per second with bursts of twice the rate.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self { rate, tokens: rate * 2.0, at: Instant::now() }
    }

    fn take(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Wall-clock milliseconds read off the monotonic clock: one reading of
/// both, and the monotonic time elapsed since. Anchored again at every
/// presence refresh (each heartbeat interval), so it strays from the wall
/// clock by no more than the clock's slew over one interval.
struct WallClock {
    at: Instant,
    ms: u64,
}

impl WallClock {
    fn now() -> Self {
        Self { at: Instant::now(), ms: now_ms() }
    }

    /// The wall-clock time at `now` (not before the anchor).
    fn ms_at(&self, now: Instant) -> u64 {
        self.ms + now.saturating_duration_since(self.at).as_millis() as u64
    }
}

/// `Session::heard` while a frame is being handled: never silent then.
const HANDLING_A_FRAME: u64 = u64::MAX;

struct Session {
    /// Given to rooms, which report here when they drop this connection.
    dropped: tokio::sync::mpsc::UnboundedSender<Arc<str>>,
    /// When the session last handled a frame of the client (ms since the
    /// epoch; HANDLING_A_FRAME while it handles one), read by rooms to tell
    /// a silent connection from one whose presence refresh failed.
    heard: Arc<AtomicU64>,
    node: Arc<Node>,
    conn: Arc<str>,
    identity: Identity,
    outbox: Arc<Outbox>,
    rooms: HashMap<String, RoomHandle>,
    /// Open documents, as (room, document).
    docs: HashSet<(String, Arc<str>)>,
    bucket: TokenBucket,
    last_refresh: Instant,
    /// Wall-clock time from the monotonic clock read for each frame,
    /// anchored again at every presence refresh.
    wall: WallClock,
    /// A presence refresh is under way.
    refreshing: Arc<std::sync::atomic::AtomicBool>,
    dropped_in_row: u32,
    last_rate_error: Option<Instant>,
}

impl Session {
    fn send(&self, msg: ServerMessage) {
        self.outbox.push(msg.to_json().into());
    }

    fn error(&self, id: Option<u64>, room: Option<&str>, reply: Reply) {
        report_error(&self.outbox, &self.conn, id, room, reply.code, reply.message);
    }

    fn on_read_error(&self, error: &str) {
        refuse_read_error(&self.outbox, error, self.node.config.max_message_bytes, &self.conn);
    }

    async fn on_text(&mut self, text: &str, now: Instant) {
        crate::hot_metrics().messages_in.increment(1);
        let limit = self.node.config.max_message_bytes;
        if text.len() > limit {
            refuse(&self.outbox, ErrorCode::MessageTooLarge, close::MESSAGE_TOO_BIG, format!("message of {} bytes is over the {limit}-byte limit", text.len()));
            return;
        }
        if !self.admit(now) {
            return;
        }
        let msg = match decode_client(text) {
            Ok(msg) => msg,
            Err(e) => return self.error(None, None, Reply::new(e.code, e.message)),
        };
        let id = msg.id();
        let room = msg.room().map(str::to_owned);
        if let Err(reply) = self.handle(msg).await {
            self.error(id, room.as_deref(), reply);
        }
    }

    /// Takes a frame against the rate limit. Over it, the frame is dropped
    /// (with an error at most once a second) and a flood closes the connection.
    fn admit(&mut self, now: Instant) -> bool {
        if !self.bucket.take(now) {
            self.dropped_in_row += 1;
            metrics::counter!("chorus_errors_total", "code" => "rate_limited").increment(1);
            let limit = self.node.config.messages_per_second;
            if self.dropped_in_row > limit.max(10) {
                warn!(conn = %self.conn, "flood: {} messages over the rate in a row; closing", self.dropped_in_row);
                refuse(&self.outbox, ErrorCode::RateLimited, close::FLOOD, format!("far over {limit} messages per second"));
                return false;
            }
            // One error per second at most, so a flood is not echoed back.
            if self.last_rate_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                self.last_rate_error = Some(Instant::now());
                self.send(ServerMessage::error(None, None, ErrorCode::RateLimited, format!("over {limit} messages per second; messages are being dropped")));
            }
            return false;
        }
        self.dropped_in_row = 0;
        true
    }

    async fn handle(&mut self, msg: ClientMessage) -> Result<(), Reply> {
        match msg {
            ClientMessage::Hello { .. } => Err(Reply::new(ErrorCode::BadMessage, "hello was already received")),
            ClientMessage::Join { id, room, state } => self.join(id, room, state.unwrap_or(Value::Null)).await,
            ClientMessage::Leave { id, room } => {
                let handle = self.joined(&room)?.clone();
                let (reply, done) = oneshot::channel();
                let cmd = RoomCommand::Leave { conn: self.conn.clone(), reason: LeaveReason::Left, id, reply };
                if handle.tx.send(cmd).await.is_ok() {
                    let _ = done.await;
                }
                self.forget_room(&room);
                Ok(())
            }
            ClientMessage::Presence { id: _, room, state } => {
                let handle = self.joined(&room)?.clone();
                self.require(&room, Permission::Presence)?;
                let (reply, done) = oneshot::channel();
                let cmd = RoomCommand::Presence { conn: self.conn.clone(), state, reply };
                self.ask(&room, &handle, cmd, done).await
            }
            ClientMessage::Cursor { room, cursor, doc, version } => {
                let handle = self.joined(&room)?.clone();
                self.require(&room, Permission::Presence)?;
                if !(cursor.is_object() || cursor.is_null()) {
                    return Err(Reply::new(ErrorCode::BadMessage, "cursor must be an object or null"));
                }
                let cmd = RoomCommand::Cursor { conn: self.conn.clone(), cursor, doc, version };
                if handle.tx.send(cmd).await.is_err() {
                    self.forget_room(&room);
                }
                Ok(())
            }
            ClientMessage::Auth { id, token } => self.reauthenticate(id, &token).await,
            ClientMessage::Heartbeat { id } => {
                self.refresh_presence().await;
                self.send(ServerMessage::Heartbeat { id, server_time: now_ms() });
                Ok(())
            }
            ClientMessage::OpenDoc { id, room, doc, client, since, undo } => {
                let handle = self.joined(&room)?.clone();
                check_doc_name(&doc).map_err(|m| Reply::new(ErrorCode::InvalidDocument, m))?;
                let doc: Arc<str> = Arc::from(doc);
                let key = (room.clone(), doc.clone());
                let limit = self.node.config.documents_per_connection;
                if !self.docs.contains(&key) && self.docs.len() >= limit {
                    return Err(Reply::new(ErrorCode::TooManyDocuments, format!("a connection may have at most {limit} documents open")));
                }
                let client = match client {
                    Some(c) if c.is_empty() || c.len() > 128 => {
                        return Err(Reply::new(ErrorCode::BadMessage, "a client id is 1 to 128 bytes long"));
                    }
                    Some(c) => c,
                    None => self.conn.to_string(),
                };
                // Filed under this connection's user: nobody else's ops can
                // be claimed or blocked by naming their client id.
                let client: Arc<str> = Arc::from(submitter::connection(&self.identity.user.id, &client));
                let (reply, done) = oneshot::channel();
                let cmd = RoomCommand::OpenDoc { conn: self.conn.clone(), doc, client, since, undo, id, reply };
                self.ask(&room, &handle, cmd, done).await?;
                self.docs.insert(key);
                Ok(())
            }
            ClientMessage::CloseDoc { id, room, doc } => {
                let handle = self.joined(&room)?.clone();
                let doc: Arc<str> = Arc::from(doc);
                self.docs.remove(&(room.clone(), doc.clone()));
                let (reply, done) = oneshot::channel();
                let cmd = RoomCommand::CloseDoc { conn: self.conn.clone(), doc, id, reply };
                self.ask(&room, &handle, cmd, done).await
            }
            ClientMessage::Submit { id, room, doc, seq, base, op } => {
                let handle = self.joined(&room)?.clone();
                self.require(&room, Permission::Write)?;
                let op = parse_op(op).map_err(|m| Reply::new(ErrorCode::InvalidOp, m))?;
                let from = Submitter::Connection { conn: self.conn.clone(), id, outbox: self.outbox.clone() };
                let submission = DocSubmission { from, seq, base: Some(base), op, received: Instant::now() };
                // Answered by the room on the outbox: the next frame need not
                // wait for this one's commit.
                let cmd = RoomCommand::Submit { doc: Arc::from(doc), submission, reply: None };
                if handle.tx.send(cmd).await.is_err() {
                    self.forget_room(&room);
                    return Err(Reply::new(ErrorCode::NotJoined, format!("not in room {room} any more; join it again")));
                }
                Ok(())
            }
            ClientMessage::UpdateValue { id, room, name, kind, change } => {
                let handle = self.joined(&room)?.clone();
                self.require(&room, Permission::Write)?;
                check_value_name(&name).map_err(|m| Reply::new(ErrorCode::InvalidValue, m))?;
                let (reply, done) = oneshot::channel();
                let cmd = RoomCommand::UpdateValue { name: name.clone(), kind, change, writer: self.identity.user.id.clone(), reply };
                let version = self.ask(&room, &handle, cmd, done).await?;
                self.send(ServerMessage::ValueUpdated { id, room, name, version });
                Ok(())
            }
            ClientMessage::Undo { id, room, doc } => self.undo(id, room, doc, UndoAction::Undo).await,
            ClientMessage::Redo { id, room, doc } => self.undo(id, room, doc, UndoAction::Redo).await,
        }
    }

    async fn undo(&mut self, id: Option<u64>, room: String, doc: String, action: UndoAction) -> Result<(), Reply> {
        let handle = self.joined(&room)?.clone();
        self.require(&room, Permission::Write)?;
        let (reply, done) = oneshot::channel();
        let cmd = RoomCommand::Undo { conn: self.conn.clone(), doc: Arc::from(doc.as_str()), direction: action, reply };
        let version = self.ask(&room, &handle, cmd, done).await?;
        self.send(ServerMessage::UndoResult { id, room, doc, action, done: version.is_some(), version });
        Ok(())
    }

    /// Forgets a room (and the documents open in it) after leaving it.
    fn forget_room(&mut self, room: &str) {
        self.rooms.remove(room);
        self.docs.retain(|(r, _)| r != room);
    }

    fn joined(&self, room: &str) -> Result<&RoomHandle, Reply> {
        self.rooms.get(room).ok_or_else(|| Reply::new(ErrorCode::NotJoined, format!("not in room {room}; join it first")))
    }

    fn require(&self, room: &str, perm: Permission) -> Result<(), Reply> {
        if self.identity.can(room, perm) {
            Ok(())
        } else {
            Err(Reply::new(ErrorCode::Forbidden, format!("your token does not allow {} in room {room}", perm.as_str())))
        }
    }

    async fn ask<T>(&mut self, room: &str, handle: &RoomHandle, cmd: RoomCommand, done: oneshot::Receiver<Result<T, Refusal>>) -> Result<T, Reply> {
        let outcome = if handle.tx.send(cmd).await.is_ok() { done.await.ok() } else { None };
        match outcome {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(Refusal::Refused(code, message))) => Err(Reply::new(code, message)),
            // The room task is gone, and with it this connection's membership.
            Some(Err(Refusal::Retry)) | None => {
                self.forget_room(room);
                Err(Reply::new(ErrorCode::NotJoined, format!("not in room {room} any more; join it again")))
            }
        }
    }

    async fn join(&mut self, id: Option<u64>, room: String, state: Value) -> Result<(), Reply> {
        check_room_name(&room).map_err(|m| Reply::new(ErrorCode::InvalidRoom, m))?;
        if self.rooms.contains_key(&room) {
            return Err(Reply::new(ErrorCode::AlreadyJoined, format!("already in room {room}")));
        }
        let limit = self.node.config.rooms_per_connection;
        if self.rooms.len() >= limit {
            return Err(Reply::new(ErrorCode::TooManyRooms, format!("a connection may be in at most {limit} rooms")));
        }
        self.require(&room, Permission::Read)?;
        let visible = self.identity.can(&room, Permission::Presence);
        for _ in 0..10 {
            let handle = match self.node.rooms.room(&room).await {
                Ok(handle) => handle,
                Err(Refusal::Refused(code, message)) => return Err(Reply::new(code, message)),
                Err(Refusal::Retry) => continue,
            };
            let (reply, done) = oneshot::channel();
            let request = JoinRequest {
                conn: self.conn.clone(),
                user: self.identity.user.clone(),
                visible,
                state: state.clone(),
                id,
                outbox: self.outbox.clone(),
                dropped: self.dropped.clone(),
                heard: self.heard.clone(),
            };
            let cmd = RoomCommand::Join { request, reply };
            if handle.tx.send(cmd).await.is_err() {
                continue;
            }
            match done.await {
                Ok(Ok(())) => {
                    debug!(conn = %self.conn, %room, "joined");
                    self.rooms.insert(room, handle);
                    return Ok(());
                }
                Ok(Err(Refusal::Refused(code, message))) => return Err(Reply::new(code, message)),
                Ok(Err(Refusal::Retry)) | Err(_) => continue,
            }
        }
        Err(Reply::new(ErrorCode::Unavailable, format!("room {room} is restarting; try again")))
    }

    async fn refresh_presence_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_refresh) >= self.node.config.heartbeat_interval() {
            self.refresh_presence().await;
        }
    }

    /// Pushes this connection's presence expiry forward in every room.
    /// Pushes this connection's presence expiry forward in every room, off
    /// the read loop: a slow store must not hold up reading the client's
    /// frames (that would close a live connection as silent). One batch at a
    /// time; a frame that comes while one runs does not start another.
    async fn refresh_presence(&mut self) {
        self.last_refresh = Instant::now();
        self.wall = WallClock::now();
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let expires = self.wall.ms + self.node.config.presence_ttl_ms;
        let rooms: Vec<String> = self.rooms.keys().filter(|room| self.identity.can(room, Permission::Presence)).cloned().collect();
        let (backend, conn, refreshing) = (self.node.backend.clone(), self.conn.clone(), self.refreshing.clone());
        tokio::spawn(async move {
            for room in rooms {
                if let Err(e) = backend.refresh(&room, &conn, expires, now_ms()).await {
                    warn!(%conn, %room, "presence refresh failed: {e}");
                }
            }
            refreshing.store(false, Ordering::Release);
        });
    }

    async fn leave_all(&mut self, reason: LeaveReason) {
        for (_, handle) in self.rooms.drain() {
            let (reply, done) = oneshot::channel();
            let cmd = RoomCommand::Leave { conn: self.conn.clone(), reason, id: None, reply };
            if handle.tx.send(cmd).await.is_ok() {
                let _ = done.await;
            }
        }
    }
}
