//! Test support: real Chorus servers on free ports, real clients, and a small
//! HTTP client for the API.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions, Event};
use chorus_core::oplog::LogEntry;
use chorus_core::text::apply_to_str;
use chorus_protocol::ServerMessage;
use chorus_server::{Config, Server};
use chorus_store::{Backend, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
}

/// Starts a server on 127.0.0.1:0 with the embedded store; `tune` adjusts the
/// defaults.
pub async fn start(tune: impl FnOnce(&mut Config)) -> TestServer {
    start_on(Arc::new(MemoryStore::new()), tune).await
}

/// A server that requires tokens, and a client of it whose token lets it
/// read `room` and show presence there, but not write; joined to `room`.
pub async fn start_with_reader(room: &str) -> (TestServer, Client) {
    let server = start(|c| {
        c.jwt_secret = Some("s3cret".into());
        c.dev = false;
    })
    .await;
    let claims = serde_json::json!({"sub": "reader", "exp": 4_000_000_000u64, "rooms": {room: ["read", "presence"]}});
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(b"s3cret")).unwrap();
    let mut client = server.connect(ConnectOptions::token(token)).await;
    client.join(room, None).await.expect("a reader may join");
    (server, client)
}

/// Starts a server on 127.0.0.1:0 with the given backend.
pub async fn start_on(backend: Arc<dyn Backend>, tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::for_address("127.0.0.1:0".parse().unwrap());
    config.shutdown_grace_ms = 2_000;
    tune(&mut config);
    // Without a key a server runs only in development mode: the tests that
    // do not care about tokens get it.
    if !config.has_token_key() {
        config.dev = true;
    }
    let server = Server::start(config, backend).await.expect("server starts");
    let addr = server.addr;
    TestServer { server: Some(server), addr }
}

impl TestServer {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// A development-mode client claiming to be `user`.
    pub async fn client(&self, user: &str) -> Client {
        self.connect(ConnectOptions::dev(user)).await
    }

    pub async fn connect(&self, options: ConnectOptions) -> Client {
        Client::connect(&self.ws_url(), options).await.expect("client connects")
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    /// GET `path`, with a bearer token if given: (status, body).
    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        http_get(self.addr, path, token).await
    }

    /// A document's whole op log, read over the HTTP API and replayed from
    /// the empty text; asserts that the log has no gap.
    pub async fn replay_log(&self, room: &str, doc: &str) -> String {
        let (status, body) = self.get(&format!("/v1/rooms/{}/docs/{doc}/ops?since=0", room.replace('/', "%2F")), None).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let ops: Vec<LogEntry> = serde_json::from_value(v["ops"].clone()).unwrap();
        let mut text = String::new();
        for (i, e) in ops.iter().enumerate() {
            assert_eq!(e.version, i as u64 + 1, "the log has no gap");
            text = apply_to_str(&text, &e.op).unwrap_or_else(|err| panic!("op {} does not apply: {err}", e.version));
        }
        text
    }

    /// A document's text and version, read over the HTTP API.
    pub async fn doc_text(&self, room: &str, doc: &str) -> (String, u64) {
        let (status, body) = self.get(&format!("/v1/rooms/{}/docs/{doc}", room.replace('/', "%2F")), None).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (v["text"].as_str().unwrap().to_owned(), v["version"].as_u64().unwrap())
    }
}

pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(addr, "GET", path, token, None).await
}

/// POST `body` (JSON) to `path`: (status, body).
pub async fn http_post(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    http_request(addr, "POST", path, token, Some(body)).await
}

/// DELETE `path`: (status, body).
pub async fn http_delete(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(addr, "DELETE", path, token, None).await
}

async fn http_request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let content = body.map(|b| format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len())).unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}{content}Connection: close\r\n\r\n{}", body.unwrap_or(""));
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, dechunk(&body))
}

/// Undoes chunked transfer encoding, if the body uses it.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else { return body.to_owned() };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return body.to_owned() };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_owned();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Waits for the next server message matching `pick`, skipping others.
pub async fn expect<T>(client: &mut Client, what: &str, mut pick: impl FnMut(&ServerMessage) -> Option<T>) -> T {
    client
        .wait_for(|e| match e {
            Event::Message(m) => pick(m),
            Event::Closed { .. } => None,
        })
        .await
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Collects every message arriving during the next `wait`.
pub async fn drain(client: &mut Client, wait: Duration) -> Vec<ServerMessage> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return out;
        }
        match client.next_event_within(left).await {
            Some(Event::Message(m)) => out.push(m),
            Some(Event::Closed { .. }) | None => return out,
        }
    }
}

/// A room's member list as one client sees it, built from the messages it
/// gets (`joined`, including unsolicited ones after a resync, and
/// `member_joined`/`member_left`), with every leave it was told of.
#[derive(Debug, Default)]
pub struct MemberView {
    pub members: std::collections::BTreeSet<String>,
    pub leaves: std::collections::HashMap<String, usize>,
    /// Each member's presence state as last told.
    pub states: std::collections::HashMap<String, serde_json::Value>,
}

impl MemberView {
    /// Starts from the list a join returned.
    pub fn from_joined(joined: &chorus_client::Joined) -> Self {
        let states = joined.members.iter().map(|m| (m.connection.clone(), m.state.clone())).collect();
        Self { members: joined.members.iter().map(|m| m.connection.clone()).collect(), leaves: Default::default(), states }
    }

    pub fn apply(&mut self, room: &str, msg: &ServerMessage) {
        match msg {
            ServerMessage::Joined { room: r, members, .. } if r == room => {
                self.members = members.iter().map(|m| m.connection.clone()).collect();
                self.states = members.iter().map(|m| (m.connection.clone(), m.state.clone())).collect();
            }
            ServerMessage::MemberJoined { room: r, member, .. } if r == room => {
                self.members.insert(member.connection.clone());
                self.states.insert(member.connection.clone(), member.state.clone());
            }
            ServerMessage::Presence { room: r, connection, state } if r == room => {
                self.states.insert(connection.clone(), state.clone());
            }
            ServerMessage::MemberLeft { room: r, connection, .. } if r == room => {
                self.members.remove(connection);
                *self.leaves.entry(connection.clone()).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Reads `client`'s messages until its list is `expected`, or fails
    /// after `within` saying what it has.
    pub async fn settle(&mut self, client: &mut Client, room: &str, expected: &[&str], within: Duration) {
        let expected: std::collections::BTreeSet<String> = expected.iter().map(|c| c.to_string()).collect();
        let deadline = tokio::time::Instant::now() + within;
        while self.members != expected {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "the member list did not settle on {expected:?}; it is {:?}", self.members);
            match client.next_event_within(left.min(Duration::from_millis(100))).await {
                Some(Event::Message(m)) => self.apply(room, &m),
                Some(Event::Closed { code, reason }) => panic!("the watcher was closed ({code:?}: {reason})"),
                None => {}
            }
        }
    }

    /// Reads `client`'s messages until it lists `conn` with `state`.
    pub async fn settle_state(&mut self, client: &mut Client, room: &str, conn: &str, state: &serde_json::Value, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !(self.members.contains(conn) && self.states.get(conn) == Some(state)) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "never listed {conn} with state {state}; the list is {:?}, the states {:?}", self.members, self.states);
            match client.next_event_within(left.min(Duration::from_millis(100))).await {
                Some(Event::Message(m)) => self.apply(room, &m),
                Some(Event::Closed { code, reason }) => panic!("the watcher was closed ({code:?}: {reason})"),
                None => {}
            }
        }
    }

    /// Reads `client`'s messages until it was told `conn` left.
    pub async fn wait_for_leave(&mut self, client: &mut Client, room: &str, conn: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.leaves.contains_key(conn) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "never told that {conn} left; the list is {:?}", self.members);
            match client.next_event_within(left.min(Duration::from_millis(100))).await {
                Some(Event::Message(m)) => self.apply(room, &m),
                Some(Event::Closed { code, reason }) => panic!("the watcher was closed ({code:?}: {reason})"),
                None => {}
            }
        }
    }
}
