//! A Rust client for Chorus, speaking the real protocol over a real WebSocket.
//!
//! [`Client::connect`] opens the socket, says `hello` and waits for
//! `welcome`. Requests that have replies (join, leave) wait for the reply
//! matching their id; every other server message is kept, in order, for
//! [`Client::next_event`]. A background task sends heartbeats at the interval
//! the server asks for, unless turned off (tests of expiry turn it off).

use std::collections::VecDeque;
use std::time::Duration;

use chorus_core::presence::{Member, UserInfo};
use chorus_protocol::{ClientMessage, CursorState, ErrorCode, Limits, ServerMessage, PROTOCOL_VERSION, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX};
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
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            token: None,
            token_in_subprotocol: false,
            dev_user: None,
            dev_name: None,
            heartbeats: true,
            protocol: PROTOCOL_VERSION,
            timeout: Duration::from_secs(10),
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
}

/// A server message, or the end of the connection.
#[derive(Debug, Clone, PartialEq)]
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
}

/// A room as `joined` described it.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub room: String,
    pub members: Vec<Member>,
    pub count: usize,
    pub cursors: Vec<CursorState>,
}

pub struct Client {
    pub session: Session,
    out: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Event>,
    backlog: VecDeque<Event>,
    next_id: u64,
    timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
}

impl Client {
    /// Connects to the WebSocket endpoint `url` (e.g. `ws://127.0.0.1:8787/v1/ws`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Client, ClientError> {
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
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await.map_err(|e| ClientError::Connect(e.to_string()))?;
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
        let reader = tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                match frame {
                    Ok(Message::Text(text)) => match serde_json::from_str::<ServerMessage>(&text) {
                        Ok(m) => {
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

        let mut client = Client {
            session: Session {
                connection: String::new(),
                user: UserInfo::new("", None, None, None),
                heartbeat_ms: 0,
                presence_ttl_ms: 0,
                limits: Limits { max_message_bytes: 0, messages_per_second: 0, rooms_per_connection: 0, members_per_room: 0, cursor_updates_per_second: 0 },
            },
            out,
            events,
            backlog: VecDeque::new(),
            next_id: 1,
            timeout: options.timeout,
            tasks: vec![writer, reader],
        };
        client.send(&ClientMessage::Hello { protocol: options.protocol, client: Some(format!("chorus-client/{}", env!("CARGO_PKG_VERSION"))) })?;
        match client.recv().await? {
            Event::Message(ServerMessage::Welcome { connection, user, heartbeat_ms, presence_ttl_ms, limits, .. }) => {
                client.session = Session { connection, user, heartbeat_ms, presence_ttl_ms, limits };
            }
            Event::Message(ServerMessage::Error { code, message, .. }) => return Err(ClientError::Server { code, message }),
            Event::Closed { code, reason } => return Err(ClientError::Closed { code, reason }),
            Event::Message(other) => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
        if options.heartbeats && client.session.heartbeat_ms > 0 {
            let out = client.out.clone();
            let every = Duration::from_millis(client.session.heartbeat_ms);
            client.tasks.push(tokio::spawn(async move {
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
        Ok(client)
    }

    /// This connection's id.
    pub fn connection(&self) -> &str {
        &self.session.connection
    }

    /// Sends a message without waiting for anything.
    pub fn send(&self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.send_raw(serde_json::to_string(msg).expect("client messages serialize"))
    }

    /// Sends any text frame (for testing how the server takes bad input).
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.out
            .send(Message::Text(text.into().into()))
            .map_err(|_| ClientError::Closed { code: None, reason: "connection closed".into() })
    }

    /// Sends a text frame whose payload is not valid UTF-8 (for tests).
    pub fn send_invalid_utf8(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
        self.out
            .send(Message::Frame(frame))
            .map_err(|_| ClientError::Closed { code: None, reason: "connection closed".into() })
    }

    /// Sends a binary frame (which the protocol does not allow).
    pub fn send_binary(&self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.out
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

    async fn recv_until(&mut self, deadline: tokio::time::Instant) -> Result<Event, ClientError> {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Ok(Event::Closed { code: None, reason: "connection ended".into() }),
            Err(_) => Err(ClientError::Timeout(self.timeout)),
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
        match self.backlog.pop_front() {
            Some(e) => Some(e),
            None => self.events.recv().await,
        }
    }

    /// The next event, if one arrives within `wait`.
    pub async fn next_event_within(&mut self, wait: Duration) -> Option<Event> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(e);
        }
        tokio::time::timeout(wait, self.events.recv()).await.ok().flatten()
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
        self.send(&ClientMessage::Join { id: Some(id), room: room.into(), state })?;
        self.reply(id, |m| match m {
            ServerMessage::Joined { id: Some(i), room, members, count, cursors, .. } if *i == id => {
                Some(Joined { room: room.clone(), members: members.clone(), count: *count, cursors: cursors.clone() })
            }
            _ => None,
        })
        .await
    }

    pub async fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Leave { id: Some(id), room: room.into() })?;
        self.reply(id, |m| matches!(m, ServerMessage::Left { id: Some(i), .. } if *i == id).then_some(())).await
    }

    /// Replaces this connection's presence state in a room (no reply on success).
    pub fn set_presence(&mut self, room: &str, state: Value) -> Result<(), ClientError> {
        let id = self.take_id();
        self.send(&ClientMessage::Presence { id: Some(id), room: room.into(), state })
    }

    /// Moves this connection's cursor in a room (`Value::Null` hides it).
    pub fn cursor(&self, room: &str, cursor: Value) -> Result<(), ClientError> {
        self.send(&ClientMessage::Cursor { room: room.into(), cursor, doc: None, version: None })
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
        let _ = self.out.send(Message::Close(Some(frame)));
        let mut tasks = std::mem::take(&mut self.tasks).into_iter();
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
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
