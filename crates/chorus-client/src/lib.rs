//! A Rust client for Chorus, speaking the real protocol over a real WebSocket.
//!
//! [`Client::connect`] opens the socket, says `hello` and waits for
//! `welcome`. Requests that have replies (join, leave) wait for the reply
//! matching their id; every other server message is kept, in order, for
//! [`Client::next_event`]. A background task sends heartbeats at the interval
//! the server asks for, unless turned off (tests of expiry turn it off).
//!
//! Text documents ([`Client::open_doc`]) are driven by the core's OT state
//! machine (see [`document`]): local edits apply at once, one op is in
//! flight, later ones are composed, and the server's ops and acks for open
//! documents are consumed as they arrive, whichever call is reading. After a
//! dropped connection, [`Client::reconnect`] (or, with
//! [`ConnectOptions::reconnect`], any call that waits on a document) opens a
//! new connection, joins the rooms again, reopens each document from the
//! version it had, and resubmits the op that was in flight.
//!
//! The client keeps to the limits the server announced ([`limits`]): large
//! edits go out in ops that fit, an edit past the document limit is refused
//! at once ([`ClientError::Refused`]), an op the server refuses for good is
//! dropped and the document reloaded (never resent), and a submission the
//! rate limiter dropped is resent after a pause.
//!
//! `wss://` URLs are spoken over TLS ([`tls`]); a private CA is trusted with
//! [`ConnectOptions::with_ca_pem`].

pub mod document;
pub mod limits;
pub mod tls;
pub mod token;

pub use token::TokenSource;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chorus_core::client::Submission;
use chorus_core::presence::{Member, UserInfo};
use chorus_core::text::{Selection, TextOp};
use chorus_protocol::{
    Change, ClientMessage, CursorState, ErrorCode, Limits, ServerMessage, ValueKind, ValueState, PROTOCOL_VERSION, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX,
};
use document::{DocMeta, EditError};
use serde_json::json;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub token: Option<String>,
    /// Where fresh tokens come from: asked on every connection (instead of
    /// `token`) and before each expiry, the fresh token sent as `auth`.
    pub token_source: Option<TokenSource>,
    /// Send the token as the `chorus.token.<token>` subprotocol instead of
    /// in the query string (what browsers do when they want it out of URLs).
    pub token_in_subprotocol: bool,
    /// Development mode: the anonymous user id and name to claim.
    pub dev_user: Option<String>,
    pub dev_name: Option<String>,
    /// Send heartbeats automatically at the server's interval.
    pub heartbeats: bool,
    /// Protocol version to announce (tests try others).
    pub protocol: u32,
    /// How long to wait for the server's replies.
    pub timeout: Duration,
    /// Reconnect by itself when the connection drops while a document call
    /// waits (with exponential backoff and jitter, within `timeout`).
    pub reconnect: bool,
    /// Also hand the server's ops and acks for open documents to
    /// `next_event` (they are always applied to the documents).
    pub doc_events: bool,
    /// CA certificates (PEM) trusted for `wss://` besides the web roots.
    pub extra_ca_pem: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            token: None,
            token_source: None,
            token_in_subprotocol: false,
            dev_user: None,
            dev_name: None,
            heartbeats: true,
            protocol: PROTOCOL_VERSION,
            timeout: Duration::from_secs(10),
            reconnect: false,
            doc_events: false,
            extra_ca_pem: None,
        }
    }
}

impl ConnectOptions {
    pub fn dev(user: &str) -> Self {
        Self { dev_user: Some(user.into()), dev_name: Some(user.to_uppercase()), ..Self::default() }
    }

    pub fn token(token: impl Into<String>) -> Self {
        Self { token: Some(token.into()), ..Self::default() }
    }

    /// Also trusts the CA certificates in `pem` for `wss://` (a private CA).
    pub fn with_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.extra_ca_pem = Some(pem.into());
        self
    }
}

/// Something went wrong talking to the server.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("could not connect: {0}")]
    Connect(String),
    /// The server answered a request with an error.
    #[error("{code}: {message}")]
    Server { code: ErrorCode, message: String },
    /// The connection closed (with the server's close code and reason, if any).
    #[error("connection closed ({code:?}: {reason})")]
    Closed { code: Option<u16>, reason: String },
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// Refused here, before anything was sent: the server would refuse it
    /// with this code (an edit past the document limit, say).
    #[error("refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String },
}

/// A server message, or the end of the connection.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // Events are moved, not stored in bulk.
pub enum Event {
    Message(ServerMessage),
    Closed { code: Option<u16>, reason: String },
}

/// What `welcome` said.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub connection: String,
    pub user: UserInfo,
    pub heartbeat_ms: u64,
    pub presence_ttl_ms: u64,
    pub limits: Limits,
    /// When the connection's token expires (ms since the epoch), if it does;
    /// moved on by every accepted `auth`.
    pub token_expires_at: Option<u64>,
}

/// A room as `joined` described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub room: String,
    pub members: Vec<Member>,
    pub count: usize,
    pub cursors: Vec<CursorState>,
    pub values: Vec<ValueState>,
}


/// One WebSocket connection: its writer, reader and heartbeat tasks.
struct Link {
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

type DocKey = (String, String);

pub struct Client {
    pub session: Session,
    url: String,
    options: ConnectOptions,
    link: Link,
    connected: bool,
    backlog: VecDeque<Event>,
    next_id: u64,
    timeout: Duration,
    /// Joined rooms with the presence state to join again with.
    rooms: HashMap<String, Option<Value>>,
    docs: HashMap<DocKey, document::TextDocument>,
    /// The latest state of each shared value of the joined rooms, by
    /// (room, name).
    values: HashMap<(String, String), ValueState>,
    /// Selections waiting for their document's pending edits to be acked.
    pending_cursors: HashMap<DocKey, Selection>,
    /// When to resubmit ops the server could not commit, and the pause
    /// before the next such retry.
    resubmit_at: Option<tokio::time::Instant>,
    retry_delay: Duration,
    /// Submissions by request id, so the server's refusal of one names it.
    submits: HashMap<u64, (DocKey, u64)>,
    /// When each document's op in flight (by seq) was last sent.
    sent_at: HashMap<DocKey, (u64, tokio::time::Instant)>,
    /// The rate limiter dropped messages: keep resending ops left unanswered.
    rate_limited: bool,
    /// Rooms the server says this connection is not in, although it joined
    /// them (the server dropped it, or a rejoin failed): joined again.
    lost_rooms: std::collections::BTreeSet<String>,
}

/// The first pause before resubmitting an op the server could not commit.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// After `rate_limited`: the pause before resending a dropped submission.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// The close code of a frame over `max_message_bytes`.
const MESSAGE_TOO_BIG: u16 = 1009;

impl Client {
    /// Connects to the WebSocket endpoint `url` (e.g. `ws://127.0.0.1:8787/v1/ws`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Client, ClientError> {
        let (link, session) = Self::open_link(url, &options).await?;
        Ok(Client {
            session,
            url: url.to_owned(),
            timeout: options.timeout,
            options,
            link,
            connected: true,
            backlog: VecDeque::new(),
            next_id: 1,
            rooms: HashMap::new(),
            docs: HashMap::new(),
            values: HashMap::new(),
            pending_cursors: HashMap::new(),
            resubmit_at: None,
            retry_delay: FIRST_RETRY,
            submits: HashMap::new(),
            sent_at: HashMap::new(),
            rate_limited: false,
            lost_rooms: Default::default(),
        })
    }

    /// Opens a connection and completes the handshake.
    async fn open_link(url: &str, options: &ConnectOptions) -> Result<(Link, Session), ClientError> {
        let fresh = match &options.token_source {
            Some(source) => Some(source.get().await.map_err(|e| ClientError::Connect(format!("could not get a token: {e}")))?),
            None => None,
        };
        let options = &ConnectOptions { token: fresh.or_else(|| options.token.clone()), ..options.clone() };
        let mut query = Vec::new();
        if let (Some(t), false) = (&options.token, options.token_in_subprotocol) {
            query.push(format!("token={t}"));
        }
        if let Some(u) = &options.dev_user {
            query.push(format!("user={u}"));
        }
        if let Some(n) = &options.dev_name {
            query.push(format!("name={n}"));
        }
        let full = if query.is_empty() { url.to_owned() } else { format!("{url}?{}", query.join("&")) };
        let mut request = full.into_client_request().map_err(|e| ClientError::Connect(e.to_string()))?;
        let mut protocols = SUBPROTOCOL.to_owned();
        if let (Some(t), true) = (&options.token, options.token_in_subprotocol) {
            protocols.push_str(&format!(", {TOKEN_SUBPROTOCOL_PREFIX}{t}"));
        }
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(&protocols).map_err(|e| ClientError::Connect(e.to_string()))?,
        );
        let connector = if request.uri().scheme_str() == Some("wss") {
            Some(tokio_tungstenite::Connector::Rustls(tls::client_config(options.extra_ca_pem.as_deref())?))
        } else {
            None
        };
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();

        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                let last = matches!(m, Message::Close(_));
                if sink.send(m).await.is_err() || last {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (expiry_tx, expiry) = tokio::sync::watch::channel(None);
        let reader = tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Message::Text(text)) => match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(m) => {
                            if let ServerMessage::Welcome { token_expires_at: at, .. } | ServerMessage::Authenticated { token_expires_at: at, .. } = &m {
                                expiry_tx.send_replace(*at);
                            }
                            let _ = ev_tx.send(Event::Message(m));
                        }
                        Err(e) => tracing::warn!("undecodable server message ({e}): {text}"),
                    },
                    Ok(Message::Close(frame)) => {
                        let (code, reason) = frame.map_or((None, String::new()), |f| (Some(u16::from(f.code)), f.reason.to_string()));
                        let _ = ev_tx.send(Event::Closed { code, reason });
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ev_tx.send(Event::Closed { code: None, reason: e.to_string() });
                        return;
                    }
                }
            }
            let _ = ev_tx.send(Event::Closed { code: None, reason: "connection ended".into() });
        });

        let mut link = Link { out, events, tasks: vec![writer, reader] };
        let hello = ClientMessage::Hello { protocol: options.protocol, client: Some(format!("chorus-client/{}", env!("CARGO_PKG_VERSION"))), batch: false };
        send_on(&link.out, &hello)?;
        let first = tokio::time::timeout(options.timeout, link.events.recv()).await.map_err(|_| ClientError::Timeout(options.timeout))?;
        let session = match first {
            Some(Event::Message(ServerMessage::Welcome { connection, user, heartbeat_ms, presence_ttl_ms, limits, token_expires_at, .. })) => {
                Session { connection, user, heartbeat_ms, presence_ttl_ms, limits, token_expires_at }
            }
            Some(Event::Message(ServerMessage::Error { code, message, .. })) => return Err(ClientError::Server { code, message }),
            Some(Event::Closed { code, reason }) => return Err(ClientError::Closed { code, reason }),
            None => return Err(ClientError::Closed { code: None, reason: "connection ended".into() }),
            Some(Event::Message(other)) => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        if let Some(source) = options.token_source.clone() {
            link.tasks.push(tokio::spawn(token::keep_fresh(source, expiry, link.out.clone())));
        }
        if options.heartbeats && session.heartbeat_ms > 0 {
            let out = link.out.clone();
            let every = Duration::from_millis(session.heartbeat_ms);
            link.tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let beat = serde_json::to_string(&ClientMessage::Heartbeat { id: None }).expect("serializes");
                    if out.send(Message::Text(beat.into())).is_err() {
                        return;
                    }
                }
            }));
        }
        Ok((link, session))
    }

    /// This connection's id.
    pub fn connection(&self) -> &str {
        &self.session.connection
    }

    /// Sends a message without waiting for anything.
    pub fn send(&self, msg: &ClientMessage) -> Result<(), ClientError> {
        send_on(&self.link.out, msg)
    }

    /// Sends any text frame (for testing how the server takes bad input).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.link
            .out
            .send(Message::Text(text.into().into()))
            .map_err(|_| ClientError::Closed { code: None, reason: "connection closed".into() })
    }

    /// Sends a text frame whose payload is not valid UTF-8 (for tests).
    pub fn send_invalid_utf8(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.link
            .out
            .send(Message::Frame(frame))
            .map_err(|_| ClientError::Closed { code: None, reason: "connection closed".into() })
    }

    /// Sends a binary frame (which the protocol does not allow).
    pub fn send_binary(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.link
            .out
            .send(Message::Binary(bytes.into()))
            .map_err(|_| ClientError::Closed { code: None, reason: "connection closed".into() })
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn recv(&mut self) -> Result<Event, ClientError> {
        self.recv_until(tokio::time::Instant::now() + self.timeout).await
    }

    /// The next event for the caller; document traffic is applied on the
    /// way and kept back (unless `doc_events`).
    async fn recv_until(&mut self, deadline: tokio::time::Instant) -> Result<Event, ClientError> {
        loop {
            if let Some(e) = self.recv_step(deadline).await? {
                return Ok(e);
            }
        }
    }

    /// Takes one message off the connection: the event, or `None` when it
    /// was document traffic that has been applied.
    async fn recv_step(&mut self, deadline: tokio::time::Instant) -> Result<Option<Event>, ClientError> {
        let event = match tokio::time::timeout_at(deadline, self.link.events.recv()).await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => Event::Closed { code: None, reason: "connection ended".into() },
            Err(_) => return Err(ClientError::Timeout(self.timeout)),
        };
        Ok(self.absorb(event))
    }

    /// Applies document messages to the open documents, sending whatever
    /// they make ready. Returns the event if the caller should see it.
    fn absorb(&mut self, event: Event) -> Option<Event> {
        let msg = match event {
            Event::Closed { code, .. } => {
                self.connected = false;
                if code == Some(MESSAGE_TOO_BIG) {
                    // A frame of ours was over the limit (the client keeps its
                    // frames within the limit it was told, so the limit must
                    // have changed). Resending the op in flight would only
                    // close the connection again: drop what is pending and
                    // take the server's text on reopening.
                    for d in self.docs.values_mut() {
                        if d.inflight().is_some() {
                            d.drop_pending = true;
                        }
                    }
                }
                return Some(event);
            }
            Event::Message(msg) => msg,
        };
        let (key, outcome, surface) = match &msg {
            ServerMessage::Opened { id, room, doc, epoch, version, text, ops, reset, digest, client } => {
                let key = (room.clone(), doc.clone());
                let Some(d) = self.docs.get_mut(&key) else { return Some(Event::Message(msg)) };
                if let Some(reason) = reset {
                    tracing::warn!(%room, %doc, ?reason, "document reset to the server's text; unacknowledged edits are dropped");
                }
                let meta = DocMeta { client: client.clone(), digest: Some(digest.to_hex()) };
                let outcome = d.opened(epoch.clone(), *version, text.clone(), ops.clone(), *reset, &meta);
                (key, outcome, id.is_some() || self.options.doc_events)
            }
            ServerMessage::Ack { id, room, doc, seq, version, digest } => {
                let key = (room.clone(), doc.clone());
                if let Some(i) = id {
                    self.submits.remove(i);
                }
                let Some(d) = self.docs.get_mut(&key) else { return Some(Event::Message(msg)) };
                (key, d.ack(*seq, *version, digest.map(|d| d.to_hex()).as_deref()), self.options.doc_events)
            }
            ServerMessage::Op { room, doc, entry } => {
                let key = (room.clone(), doc.clone());
                let Some(d) = self.docs.get_mut(&key) else { return Some(Event::Message(msg)) };
                (key, d.committed(entry, Some(entry.digest.to_hex().as_str())), self.options.doc_events)
            }
            ServerMessage::Error { id: Some(id), code, message, .. } if self.submits.contains_key(id) => {
                let (key, seq) = self.submits.remove(id).expect("checked above");
                self.refused(&key, seq, *code, message);
                return Some(Event::Message(msg));
            }
            ServerMessage::Error { code: ErrorCode::NotJoined, room: Some(room), .. } if self.rooms.contains_key(room) => {
                // The server no longer has this connection in a room it
                // joined: join it again before the next request.
                self.lost_rooms.insert(room.clone());
                return Some(Event::Message(msg));
            }
            ServerMessage::Error { code: ErrorCode::RateLimited, .. } => {
                // The server drops what is over its rate without a reply: the
                // op in flight may be among it. Resend what is left unanswered.
                self.rate_limited = true;
                let at = tokio::time::Instant::now() + RATE_LIMIT_PAUSE;
                self.resubmit_at = Some(self.resubmit_at.map_or(at, |t| t.min(at)));
                return Some(Event::Message(msg));
            }
            ServerMessage::Joined { room, values, .. } => {
                // Every `joined` (a resync too) carries all of the room's values.
                self.values.retain(|(r, _), _| r != room);
                for v in values {
                    self.values.insert((room.clone(), v.name.clone()), v.clone());
                }
                return Some(Event::Message(msg));
            }
            ServerMessage::Value { room, value } => {
                let key = (room.clone(), value.name.clone());
                if self.values.get(&key).is_none_or(|known| known.version < value.version) {
                    self.values.insert(key, value.clone());
                }
                return Some(Event::Message(msg));
            }
            ServerMessage::Error { code: ErrorCode::Unavailable, room: Some(room), .. } => {
                // The server could not commit (its store is unreachable):
                // the op in flight is resubmitted after a pause, and the
                // server acknowledges it once whatever happened to the first.
                let retry = tokio::time::Instant::now() + self.retry_delay;
                self.retry_delay = (self.retry_delay * 2).min(Duration::from_secs(2));
                for ((r, _), d) in &self.docs {
                    if r == room && d.inflight().is_some() {
                        self.resubmit_at.get_or_insert(retry);
                    }
                }
                return Some(Event::Message(msg));
            }
            _ => return Some(Event::Message(msg)),
        };
        if matches!(msg, ServerMessage::Ack { .. }) {
            self.retry_delay = FIRST_RETRY;
        }
        match outcome {
            Ok(Some(sub)) => self.submit(&key, &sub),
            Ok(None) => self.flush_cursor(&key),
            Err(e) => {
                tracing::warn!(room = %key.0, doc = %key.1, "{e}; opening the document again");
                self.reopen(&key, false, None);
            }
        }
        surface.then_some(Event::Message(msg))
    }

    /// The server refused our submission `seq` of `key`.
    fn refused(&mut self, key: &DocKey, seq: u64, code: ErrorCode, message: &str) {
        let Some(d) = self.docs.get_mut(key) else { return };
        if d.inflight().is_none_or(|s| s.seq != seq) {
            return; // An older submission's answer.
        }
        match code {
            ErrorCode::Unavailable => {
                // The server could not commit: the op is resubmitted after a
                // pause, and acknowledged once whatever happened to the first.
                let retry = tokio::time::Instant::now() + self.retry_delay;
                self.retry_delay = (self.retry_delay * 2).min(Duration::from_secs(2));
                self.resubmit_at.get_or_insert(retry);
            }
            ErrorCode::NotOpen | ErrorCode::VersionTrimmed => self.reopen(key, true, None),
            // The connection lost the room: the op goes again once the room
            // is joined again and the document reopened.
            ErrorCode::NotJoined => {
                self.lost_rooms.insert(key.0.clone());
            }
            _ => {
                // The op can never be committed as it is (too large, invalid,
                // not allowed): resending it would be refused again. Drop what
                // is pending and take the server's text.
                tracing::warn!(room = %key.0, doc = %key.1, ?code, "the server refused our op ({message}); reloading the document");
                d.drop_pending = true;
                self.reopen(key, false, None);
            }
        }
    }

    fn submit(&mut self, key: &DocKey, sub: &Submission) {
        if !self.connected {
            return; // Resubmitted after reconnecting.
        }
        let id = self.take_id();
        self.submits.insert(id, (key.clone(), sub.seq));
        self.sent_at.insert(key.clone(), (sub.seq, tokio::time::Instant::now()));
        let op = serde_json::to_value(&sub.op).expect("ops serialize");
        let msg = ClientMessage::Submit { id: Some(id), room: key.0.clone(), doc: key.1.clone(), seq: sub.seq, base: sub.base, op };
        let _ = self.send(&msg);
    }

    /// Asks for a document again: from where it is (`since`, with the
    /// history's digest when the server gave one) unless `since` is false or
    /// its pending edits are to be dropped, else whole.
    fn reopen(&mut self, key: &DocKey, since: bool, id: Option<u64>) {
        let Some(d) = self.docs.get(key) else { return };
        let since = (since && !d.drop_pending && !d.epoch().is_empty()).then(|| chorus_protocol::DocPosition {
            epoch: d.epoch().to_owned(),
            version: d.version(),
            digest: d.digest().and_then(chorus_protocol::Digest::from_hex),
        });
        // Undo is always on: the client offers undo and redo.
        let msg = ClientMessage::OpenDoc { id, room: key.0.clone(), doc: key.1.clone(), client: Some(d.client_id().to_owned()), since, undo: true };
        let _ = self.send(&msg);
    }

    fn flush_cursor(&mut self, key: &DocKey) {
        if !self.connected || !self.docs.get(key).is_some_and(|d| d.is_synchronized()) {
            return;
        }
        if let Some(selection) = self.pending_cursors.remove(key) {
            let _ = self.doc_cursor(&key.0, &key.1, selection);
        }
    }

    /// The next event: a server message, or the close of the connection.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        match self.backlog.pop_front() {
            Some(e) => Ok(e),
            None => self.recv().await,
        }
    }

    /// The next event, waiting as long as it takes (`None` once the
    /// connection's event stream has ended). Cancel-safe, for `select!`.
    pub async fn recv_event(&mut self) -> Option<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        loop {
            let e = self.link.events.recv().await?;
            if let Some(e) = self.absorb(e) {
                return Some(e);
            }
        }
    }

    /// The next event, if one arrives within `wait`.
    pub async fn next_event_within(&mut self, wait: Duration) -> Option<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        let deadline = tokio::time::Instant::now() + wait;
        self.recv_until(deadline).await.ok()
    }

    /// Waits for the next event that `pick` accepts, keeping the others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&Event) -> Option<T>) -> Result<T, ClientError> {
        if let Some(i) = self.backlog.iter().position(|e| pick(e).is_some()) {
            let e = self.backlog.remove(i).expect("index is in range");
            return Ok(pick(&e).expect("picked above"));
        }
        // One deadline for the whole wait: a stream of other messages (heartbeat
        // replies, say) must not keep it waiting forever.
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let e = self.recv_until(deadline).await?;
            if let Some(t) = pick(&e) {
                return Ok(t);
            }
            if let Event::Closed { code, reason } = &e {
                let err = ClientError::Closed { code: *code, reason: reason.clone() };
                self.backlog.push_back(e);
                return Err(err);
            }
            self.backlog.push_back(e);
        }
    }

    /// Waits for the error answering request `id`.
    async fn reply<T>(&mut self, id: u64, mut ok: impl FnMut(&ServerMessage) -> Option<T>) -> Result<T, ClientError> {
        let outcome = self
            .wait_for(|e| match e {
                Event::Message(ServerMessage::Error { id: Some(i), code, message, .. }) if *i == id => {
                    Some(Err(ClientError::Server { code: *code, message: message.clone() }))
                }
                Event::Message(m) => ok(m).map(Ok),
                Event::Closed { .. } => None,
            })
            .await?;
        outcome
    }

    /// Joins a room and returns its members and cursors.
    pub async fn join(&mut self, room: &str, state: Option<Value>) -> Result<Joined, ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Join { id: Some(id), room: room.into(), state: state.clone() })?;
        let joined = self
            .reply(id, |m| match m {
                ServerMessage::Joined { id: Some(i), room, members, count, cursors, values, .. } if *i == id => Some(Joined {
                    room: room.clone(),
                    members: members.clone(),
                    count: *count,
                    cursors: cursors.clone(),
                    values: values.clone(),
                }),
                _ => None,
            })
            .await?;
        self.rooms.insert(room.to_owned(), state);
        Ok(joined)
    }

    /// Changes a shared value of a joined room (created as `kind` on first
    /// use); returns the version written. Everyone in the room, this client
    /// too, then gets the new state (see [`Client::value`]).
    pub async fn update_value(&mut self, room: &str, name: &str, kind: ValueKind, change: Change) -> Result<u64, ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::UpdateValue { id: Some(id), room: room.into(), name: name.into(), kind, change })?;
        self.reply(id, |m| match m {
            ServerMessage::ValueUpdated { id: Some(i), version, .. } if *i == id => Some(*version),
            _ => None,
        })
        .await
    }

    /// Takes back this user's latest step in an open document (only their
    /// own edits). Returns the version of the op it committed, which reaches
    /// this client like anyone's op, or `None` when there was nothing to undo.
    pub async fn undo(&mut self, room: &str, doc: &str) -> Result<Option<u64>, ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Undo { id: Some(id), room: room.into(), doc: doc.into() })?;
        self.undo_result(id).await
    }

    /// Puts back what this user's latest undo took back; see [`Client::undo`].
    pub async fn redo(&mut self, room: &str, doc: &str) -> Result<Option<u64>, ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Redo { id: Some(id), room: room.into(), doc: doc.into() })?;
        self.undo_result(id).await
    }

    async fn undo_result(&mut self, id: u64) -> Result<Option<u64>, ClientError> {
        self.reply(id, |m| match m {
            ServerMessage::UndoResult { id: Some(i), version, .. } if *i == id => Some(*version),
            _ => None,
        })
        .await
    }

    /// The latest state of a shared value this client has been told.
    pub fn value(&self, room: &str, name: &str) -> Option<&ValueState> {
        self.values.get(&(room.to_owned(), name.to_owned()))
    }

    pub async fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.send_leave(room).await?;
        self.rooms.remove(room);
        self.docs.retain(|(r, _), _| r != room);
        self.values.retain(|(r, _), _| r != room);
        Ok(())
    }

    /// Leaves a room on the server, keeping what this client knows of it.
    async fn send_leave(&mut self, room: &str) -> Result<(), ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Leave { id: Some(id), room: room.into() })?;
        self.reply(id, |m| matches!(m, ServerMessage::Left { id: Some(i), .. } if *i == id).then_some(())).await
    }

    /// Replaces this connection's presence state in a room (no reply on success).
    pub fn set_presence(&mut self, room: &str, state: Value) -> Result<(), ClientError> {
        let id = self.take_id();
        if let Some(s) = self.rooms.get_mut(room) {
            *s = Some(state.clone());
        }
        self.send(&ClientMessage::Presence { id: Some(id), room: room.into(), state })
    }

    /// Moves this connection's cursor in a room (`Value::Null` hides it).
    pub fn cursor(&self, room: &str, cursor: Value) -> Result<(), ClientError> {
        self.send(&ClientMessage::Cursor { room: room.into(), cursor, doc: None, version: None })
    }

    /// Sends a fresh token (`auth`) and waits for the server to accept it;
    /// returns the new expiry. Its permissions apply from then on: rooms it
    /// no longer grants are left (a `left` event with reason `forbidden`).
    pub async fn refresh_token(&mut self, token: &str) -> Result<Option<u64>, ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Auth { id: Some(id), token: token.into() })?;
        let at = self
            .reply(id, |m| match m {
                ServerMessage::Authenticated { id: Some(i), token_expires_at } if *i == id => Some(*token_expires_at),
                _ => None,
            })
            .await?;
        self.session.token_expires_at = at;
        Ok(at)
    }

    /// Sends a heartbeat and waits for the answer.
    pub async fn heartbeat(&mut self) -> Result<u64, ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Heartbeat { id: Some(id) })?;
        self.reply(id, |m| match m {
            ServerMessage::Heartbeat { id: Some(i), server_time } if *i == id => Some(*server_time),
            _ => None,
        })
        .await
    }

    /// Waits for the connection to close; returns the close code and reason.
    pub async fn closed(&mut self) -> Result<(Option<u16>, String), ClientError> {
        self.wait_for(|e| match e {
            Event::Closed { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
        .await
    }

    /// Closes the connection normally.
    pub async fn close(mut self) {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = self.link.out.send(Message::Close(Some(frame)));
        let mut tasks = std::mem::take(&mut self.link.tasks).into_iter();
        if let Some(writer) = tasks.next() {
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        }
        for t in tasks {
            t.abort();
        }
    }

    /// Drops the connection without a close frame, as a crashed client would.
    pub fn abort(self) {
        drop(self);
    }

    /// Drops the connection without a close frame but keeps the client's
    /// rooms and documents, as a network failure would; edits made
    /// meanwhile wait for [`Client::reconnect`].
    pub fn disconnect(&mut self) {
        for t in &self.link.tasks {
            t.abort();
        }
        self.connected = false;
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Opens a new connection and restores this client's place: joins its
    /// rooms again, reopens each document from the version it has (the
    /// server sends the ops missed, or the whole text if its log no longer
    /// reaches back), and resubmits the op that was in flight. Retries with
    /// exponential backoff and jitter until `timeout`.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        self.disconnect();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut delay = Duration::from_millis(20);
        let (link, session) = loop {
            match Self::open_link(&self.url, &self.options).await {
                Ok(ok) => break ok,
                Err(e) if tokio::time::Instant::now() + delay >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!("reconnect failed ({e}); retrying in {delay:?}");
                    let jitter = Duration::from_millis(rand::random::<u64>() % (delay.as_millis() as u64 / 2 + 1));
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        };
        self.link = link;
        self.session = session;
        self.connected = true;
        self.rate_limited = false;
        self.submits.clear();
        for d in self.docs.values_mut() {
            d.set_limits(&self.session.limits);
        }
        // What the old connection still had queued belongs to it.
        self.backlog.retain(|e| !matches!(e, Event::Closed { .. }));
        self.lost_rooms = self.rooms.keys().cloned().collect();
        if let Err(e) = self.rejoin_lost_rooms().await {
            // Half back is not back: the next request reconnects again.
            self.disconnect();
            return Err(e);
        }
        Ok(())
    }

    /// Joins again the rooms the connection lost (all of them after a
    /// reconnection) and reopens their documents from where they are.
    async fn rejoin_lost_rooms(&mut self) -> Result<(), ClientError> {
        while let Some(room) = self.lost_rooms.first().cloned() {
            let state = self.rooms.get(&room).cloned().flatten();
            let joined = match self.join(&room, state.clone()).await {
                Err(ClientError::Server { code: ErrorCode::AlreadyJoined, .. }) => {
                    // An earlier rejoin went through after its caller gave up
                    // waiting (its future was dropped by a timeout): leave and
                    // join again for the room as it is now.
                    self.send_leave(&room).await?;
                    self.join(&room, state).await?
                }
                joined => joined?,
            };
            // The room as it is now reaches the caller like a resync: an
            // unsolicited `joined` that replaces what it had.
            let Joined { room, members, count, cursors, values } = joined;
            let connection = self.session.connection.clone();
            self.backlog.push_back(Event::Message(ServerMessage::Joined { id: None, room: room.clone(), connection, members, count, cursors, values }));
            let keys: Vec<DocKey> = self.docs.keys().filter(|(r, _)| *r == room).cloned().collect();
            for key in keys {
                self.open_and_wait(&key, true).await?;
            }
            self.lost_rooms.remove(&room);
        }
        Ok(())
    }

    /// Reconnects if the connection is down and the options allow it.
    async fn ensure_connected(&mut self) -> Result<(), ClientError> {
        match (self.connected, self.options.reconnect) {
            (true, _) if !self.lost_rooms.is_empty() => self.rejoin_lost_rooms().await,
            (true, _) => Ok(()),
            (false, true) => self.reconnect().await,
            (false, false) => Err(ClientError::Closed { code: None, reason: "disconnected".into() }),
        }
    }

    async fn open_and_wait(&mut self, key: &DocKey, since: bool) -> Result<(), ClientError> {
        let id = self.take_id();
        self.reopen(key, since, Some(id));
        self.reply(id, |m| matches!(m, ServerMessage::Opened { id: Some(i), .. } if *i == id).then_some(())).await
    }

    /// Opens a text document in a joined room and waits for its text.
    pub async fn open_doc(&mut self, room: &str, doc: &str) -> Result<&document::TextDocument, ClientError> {
        let key = (room.to_owned(), doc.to_owned());
        let client_id = format!("{}-{:012x}", self.session.user.id, rand::random::<u64>() & 0xffff_ffff_ffff);
        let mut document = document::TextDocument::new(room, doc, client_id);
        document.set_limits(&self.session.limits);
        self.docs.insert(key.clone(), document);
        if let Err(e) = self.open_and_wait(&key, false).await {
            self.docs.remove(&key);
            return Err(e);
        }
        Ok(&self.docs[&key])
    }

    /// Stops receiving a document's ops and forgets it.
    pub async fn close_doc(&mut self, room: &str, doc: &str) -> Result<(), ClientError> {
        self.docs.remove(&(room.to_owned(), doc.to_owned()));
        let id = self.take_id();
        self.send(&ClientMessage::CloseDoc { id: Some(id), room: room.into(), doc: doc.into() })?;
        self.reply(id, |m| matches!(m, ServerMessage::DocClosed { id: Some(i), .. } if *i == id).then_some(())).await
    }

    /// An open document.
    pub fn doc(&self, room: &str, doc: &str) -> Option<&document::TextDocument> {
        self.docs.get(&(room.to_owned(), doc.to_owned()))
    }

    pub fn doc_mut(&mut self, room: &str, doc: &str) -> Option<&mut document::TextDocument> {
        self.docs.get_mut(&(room.to_owned(), doc.to_owned()))
    }

    /// Applies a local edit to an open document and sends it when it can go
    /// (in pieces that fit the server's limits, if it is large). An edit that
    /// would take the document past the server's size limit is refused with
    /// [`ClientError::Refused`] and not applied.
    pub fn edit(&mut self, room: &str, doc: &str, op: TextOp) -> Result<(), ClientError> {
        let key = (room.to_owned(), doc.to_owned());
        let d = self.docs.get_mut(&key).ok_or_else(|| ClientError::Unexpected(format!("document {doc} in {room} is not open")))?;
        let sub = d.edit(op).map_err(|e| match e {
            EditError::Invalid(_) => ClientError::Unexpected(e.to_string()),
            EditError::DocumentTooLarge { .. } => ClientError::Refused { code: ErrorCode::DocumentTooLarge, message: e.to_string() },
            EditError::CannotFit => ClientError::Refused { code: ErrorCode::OpTooLarge, message: e.to_string() },
        })?;
        if let Some(sub) = sub {
            self.submit(&key, &sub);
        }
        Ok(())
    }

    /// Inserts `text` at code point `at`.
    pub fn insert(&mut self, room: &str, doc: &str, at: usize, text: &str) -> Result<(), ClientError> {
        self.edit(room, doc, TextOp::insert(at, text))
    }

    /// Deletes `len` code points at `at`.
    pub fn delete(&mut self, room: &str, doc: &str, at: usize, len: usize) -> Result<(), ClientError> {
        self.edit(room, doc, TextOp::delete(at, len))
    }

    /// Waits until every local edit of the document is acknowledged,
    /// reconnecting if allowed.
    pub async fn sync(&mut self, room: &str, doc: &str) -> Result<(), ClientError> {
        self.wait_doc(room, doc, |d| d.is_synchronized()).await
    }

    /// Waits until the document has seen server version `version`.
    pub async fn catch_up(&mut self, room: &str, doc: &str, version: u64) -> Result<(), ClientError> {
        self.wait_doc(room, doc, |d| d.version() >= version).await
    }

    async fn wait_doc(&mut self, room: &str, doc: &str, done: impl Fn(&document::TextDocument) -> bool) -> Result<(), ClientError> {
        let key = (room.to_owned(), doc.to_owned());
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            self.ensure_connected().await?;
            match self.docs.get(&key) {
                None => return Err(ClientError::Unexpected(format!("document {doc} in {room} is not open"))),
                Some(d) if done(d) => return Ok(()),
                Some(_) => {}
            }
            let wake = self.resubmit_at.map_or(deadline, |at| at.min(deadline));
            match self.recv_step(wake).await {
                Ok(Some(Event::Closed { .. }) | None) => {}
                Ok(Some(e)) => self.backlog.push_back(e),
                Err(ClientError::Timeout(_)) if wake < deadline => self.resubmit_inflight(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends every document's op in flight again (same seq: the server
    /// acknowledges it once, whether or not the first one was committed).
    /// After `rate_limited`, only ops sent at least a pause ago go again,
    /// and this repeats a pause later while any op is in flight: the server
    /// says `rate_limited` at most once a second, so a resent op that was
    /// dropped again may go unmentioned.
    fn resubmit_inflight(&mut self) {
        self.resubmit_at = None;
        let now = tokio::time::Instant::now();
        let pending: Vec<(DocKey, Submission)> =
            self.docs.iter().filter_map(|(k, d)| d.inflight().map(|s| (k.clone(), s.clone()))).collect();
        let in_flight = !pending.is_empty();
        for (key, sub) in pending {
            let sent = self.sent_at.get(&key).filter(|(seq, _)| *seq == sub.seq).map(|(_, at)| *at);
            if self.rate_limited && sent.is_some_and(|at| now.duration_since(at) < RATE_LIMIT_PAUSE) {
                continue;
            }
            self.submit(&key, &sub);
        }
        if self.rate_limited {
            if in_flight {
                self.resubmit_at = Some(now + RATE_LIMIT_PAUSE);
            } else {
                self.rate_limited = false;
            }
        }
    }

    /// Where [`Client::reconnect`] connects next: another node of the same
    /// cluster, say, when this one is gone.
    pub fn set_url(&mut self, url: &str) {
        self.url = url.to_owned();
    }

    /// Processes incoming messages for `wait`, applying document traffic;
    /// other events are kept for `next_event`.
    pub async fn pump(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(e) = self.recv_step(deadline).await {
            match e {
                Some(Event::Closed { .. }) => return,
                Some(e) => self.backlog.push_back(e),
                None => {}
            }
        }
    }

    /// Shows this connection's selection in a document to the room. Sent
    /// tagged with the document's version once no local edit is pending
    /// (the server moves it forward through later ops).
    pub fn doc_cursor(&mut self, room: &str, doc: &str, selection: Selection) -> Result<(), ClientError> {
        let key = (room.to_owned(), doc.to_owned());
        let d = self.docs.get(&key).ok_or_else(|| ClientError::Unexpected(format!("document {doc} in {room} is not open")))?;
        match d.server_selection(selection) {
            Some((version, s)) => self.send(&ClientMessage::Cursor {
                room: room.into(),
                cursor: json!({ "anchor": s.anchor, "head": s.head }),
                doc: Some(doc.into()),
                version: Some(version),
            }),
            None => {
                self.pending_cursors.insert(key, selection);
                Ok(())
            }
        }
    }
}

fn send_on(out: &mpsc::UnboundedSender<Message>, msg: &ClientMessage) -> Result<(), ClientError> {
    out.send(Message::Text(serde_json::to_string(msg).expect("client messages serialize").into()))
        .map_err(|_| ClientError::Closed { code: None, reason: "connection closed".into() })
}
