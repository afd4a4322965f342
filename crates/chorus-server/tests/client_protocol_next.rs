//! The Rust client against a scripted server: a real WebSocket server that
//! answers with exactly the messages given, to pin down how the client
//! handles sequences a real server sends only now and then: `opened.client`
//! (the submitter id the server records this connection's ops under),
//! `digest` on `opened`, `ack` and `op` (sent back in `since`), `at` on
//! ops, the `diverged` reset, and the answer to a join that went through
//! after the client stopped waiting for it.

use std::sync::{Arc, Mutex};

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::ClientMessage;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Socket = WebSocketStream<TcpStream>;

const LIMITS: &str = r#"{"max_message_bytes":65536,"messages_per_second":100,"rooms_per_connection":50,"members_per_room":1000,
"cursor_updates_per_second":30,"max_op_bytes":32768,"max_document_bytes":8388608,"documents_per_connection":50,"max_value_bytes":65536,"values_per_room":100}"#;

/// Accepts the client's connection, selecting the `chorus.v1` subprotocol it offers.
async fn accept(listener: &TcpListener) -> Socket {
    let (tcp, _) = listener.accept().await.unwrap();
    // The callback's error type is tungstenite's (a whole HTTP response); it never fails here.
    #[allow(clippy::result_large_err)]
    fn select(_: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
        response.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("chorus.v1"));
        Ok(response)
    }
    tokio_tungstenite::accept_hdr_async(tcp, select).await.unwrap()
}

/// The client's next message of type `kind` (others, such as heartbeats, are skipped).
async fn next(ws: &mut Socket, kind: &str) -> Value {
    loop {
        match ws.next().await.expect("the client is connected").unwrap() {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
            _ => continue,
        }
    }
}

async fn send(ws: &mut Socket, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// hello, welcome, join, joined.
async fn handshake(ws: &mut Socket, n: u32) {
    next(ws, "hello").await;
    let limits: Value = serde_json::from_str(LIMITS).unwrap();
    send(ws, json!({"type": "welcome", "protocol": 1, "server": "chorus/scripted", "connection": format!("c{n}"),
        "user": {"id": "ann", "color": "#d22d9b"}, "heartbeat_ms": 60000, "presence_ttl_ms": 180000, "limits": limits})).await;
    let join = next(ws, "join").await;
    send(ws, json!({"type": "joined", "id": join["id"], "room": join["room"], "connection": format!("c{n}"), "members": [], "count": 0, "cursors": []})).await;
}

#[tokio::test]
async fn the_client_uses_opened_client_digests_and_the_diverged_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let opens: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = opens.clone();
    let server = tokio::spawn(async move {
        let submitter = |open: &Value| format!("u1:ann:{}", open["client"].as_str().unwrap());
        // First connection: our op comes back as an `op` under the server's
        // submitter id (as if seen from another connection), someone else's
        // op, and an ack, each with a digest; then the connection drops.
        let mut ws = accept(&listener).await;
        handshake(&mut ws, 1).await;
        let open = next(&mut ws, "open_doc").await;
        seen.lock().unwrap().push(open.clone());
        let doc = json!({"room": open["room"], "doc": open["doc"]});
        let base = |mut v: Value| {
            v["room"] = doc["room"].clone();
            v["doc"] = doc["doc"].clone();
            v
        };
        send(&mut ws, base(json!({"type": "opened", "id": open["id"], "epoch": "e1", "version": 3, "text": "abc", "client": submitter(&open), "digest": "00000000000000d3"}))).await;
        let s1 = next(&mut ws, "submit").await;
        send(&mut ws, base(json!({"type": "op", "version": 4, "client": submitter(&open), "seq": s1["seq"], "op": s1["op"], "digest": "00000000000000d4", "at": 1_764_000_000_000u64}))).await;
        send(&mut ws, base(json!({"type": "op", "version": 5, "client": "u2:bob:x", "seq": 9, "op": ["Q"], "digest": "00000000000000d5", "at": 1_764_000_000_001u64}))).await;
        let s2 = next(&mut ws, "submit").await;
        send(&mut ws, base(json!({"type": "ack", "id": s2["id"], "seq": s2["seq"], "version": 6, "digest": "00000000000000d6"}))).await;
        next(&mut ws, "heartbeat").await; // the test's signal that it saw all that
        drop(ws);
        // Second connection: the catch-up holds our offline edit, committed
        // under the server's submitter id: that is its ack.
        let mut ws = accept(&listener).await;
        handshake(&mut ws, 2).await;
        let open = next(&mut ws, "open_doc").await;
        seen.lock().unwrap().push(open.clone());
        send(&mut ws, base(json!({"type": "opened", "id": open["id"], "epoch": "e1", "version": 7, "client": submitter(&open), "digest": "00000000000000d7",
            "ops": [{"version": 7, "client": submitter(&open), "seq": 3, "op": [6, "!"], "at": 1_764_000_000_002u64}]}))).await;
        next(&mut ws, "heartbeat").await;
        drop(ws);
        // Third connection: the store lost history the client had seen.
        let mut ws = accept(&listener).await;
        handshake(&mut ws, 3).await;
        let open = next(&mut ws, "open_doc").await;
        seen.lock().unwrap().push(open.clone());
        send(&mut ws, base(json!({"type": "opened", "id": open["id"], "epoch": "e1", "version": 2, "text": "restored", "client": submitter(&open), "digest": "00000000000000e2", "reset": "diverged"}))).await;
        next(&mut ws, "heartbeat").await;
    });

    let options = ConnectOptions { reconnect: true, heartbeats: false, ..ConnectOptions::dev("ann") };
    let mut client = Client::connect(&url, options).await.unwrap();
    client.join("r", None).await.unwrap();
    client.open_doc("r", "d").await.unwrap();
    let doc = client.doc("r", "d").unwrap();
    assert_eq!(doc.submitter(), format!("u1:ann:{}", doc.client_id()), "the server named our submitter id");
    assert_eq!(doc.digest(), Some("00000000000000d3"));
    assert!(opens.lock().unwrap()[0].get("since").is_none(), "a first open has no since");

    client.insert("r", "d", 3, "X").unwrap();
    client.sync("r", "d").await.unwrap();
    client.catch_up("r", "d", 5).await.unwrap();
    assert_eq!(client.doc("r", "d").unwrap().text().to_string(), "QabcX", "our op, seen as an op, was its ack (not applied twice)");
    assert_eq!(client.doc("r", "d").unwrap().digest(), Some("00000000000000d5"));
    client.insert("r", "d", 5, "Y").unwrap();
    client.sync("r", "d").await.unwrap();
    let doc = client.doc("r", "d").unwrap();
    assert_eq!((doc.version(), doc.digest()), (6, Some("00000000000000d6")), "an ack moves the digest");

    // Offline: an edit is made while the connection is lost.
    client.send(&ClientMessage::Heartbeat { id: None }).unwrap();
    let _ = client.closed().await;
    client.insert("r", "d", 6, "!").unwrap();
    client.sync("r", "d").await.expect("reconnected and caught up");
    let second = opens.lock().unwrap()[1].clone();
    assert_eq!(second["since"], json!({"epoch": "e1", "version": 6, "digest": "00000000000000d6"}), "the reopen carries the digest");
    assert_eq!(second["client"], json!(client.doc("r", "d").unwrap().client_id()), "open_doc still names our own id");
    let doc = client.doc("r", "d").unwrap();
    assert_eq!((doc.text().to_string(), doc.version(), doc.digest()), ("QabcXY!".into(), 7, Some("00000000000000d7")));
    assert_eq!(doc.resets, 0);

    client.send(&ClientMessage::Heartbeat { id: None }).unwrap();
    let _ = client.closed().await;
    client.reconnect().await.unwrap();
    let third = opens.lock().unwrap()[2].clone();
    assert_eq!(third["since"], json!({"epoch": "e1", "version": 7, "digest": "00000000000000d7"}));
    let doc = client.doc("r", "d").unwrap();
    assert_eq!((doc.text().to_string(), doc.version(), doc.digest()), ("restored".into(), 2, Some("00000000000000e2")));
    assert_eq!(doc.resets, 1, "the diverged history replaced the text");
    client.send(&ClientMessage::Heartbeat { id: None }).unwrap();
    server.await.unwrap();
}

/// The client's next message other than a heartbeat, whatever its type.
async fn next_request(ws: &mut Socket) -> Value {
    loop {
        let v = next_any(ws).await;
        if v["type"] != "heartbeat" {
            return v;
        }
    }
}

async fn next_any(ws: &mut Socket) -> Value {
    loop {
        if let Message::Text(t) = ws.next().await.expect("the client is connected").unwrap() {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// A rejoin after a reconnection whose caller gave up waiting (a timeout
/// dropped the call) may still go through on the server; the next call
/// joins again, is told `already_joined`, and leaves and joins to get the
/// room as it is, instead of failing every call from then on.
#[tokio::test]
async fn a_rejoin_that_went_through_after_its_caller_gave_up_is_recovered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let opened = |open: &Value, version: u64| {
            json!({"type": "opened", "id": open["id"], "room": "r", "doc": "d", "epoch": "e1", "version": version, "text": "abc",
                "client": format!("u1:ann:{}", open["client"].as_str().unwrap()), "digest": "00000000000000d3"})
        };
        let mut ws = accept(&listener).await;
        handshake(&mut ws, 1).await;
        let open = next(&mut ws, "open_doc").await;
        send(&mut ws, opened(&open, 3)).await;
        next(&mut ws, "heartbeat").await;
        drop(ws);
        // The rejoin is not answered while the client waits...
        let mut ws = accept(&listener).await;
        next(&mut ws, "hello").await;
        let limits: Value = serde_json::from_str(LIMITS).unwrap();
        send(&mut ws, json!({"type": "welcome", "protocol": 1, "server": "chorus/scripted", "connection": "c2",
            "user": {"id": "ann", "color": "#d22d9b"}, "heartbeat_ms": 60000, "presence_ttl_ms": 180000, "limits": limits})).await;
        let first = next_request(&mut ws).await;
        assert_eq!(first["type"], "join");
        next(&mut ws, "heartbeat").await; // the client gave up
        // ...but went through: its answer comes late.
        send(&mut ws, json!({"type": "joined", "id": first["id"], "room": "r", "connection": "c2", "members": [], "count": 1, "cursors": []})).await;
        let again = next_request(&mut ws).await;
        assert_eq!(again["type"], "join", "the next call joins again: {again}");
        send(&mut ws, json!({"type": "error", "id": again["id"], "code": "already_joined", "message": "already in room r", "room": "r"})).await;
        let leave = next_request(&mut ws).await;
        assert_eq!(leave["type"], "leave", "told it is in already, the client leaves: {leave}");
        send(&mut ws, json!({"type": "left", "id": leave["id"], "room": "r", "reason": "left"})).await;
        let join = next_request(&mut ws).await;
        assert_eq!(join["type"], "join", "and joins again: {join}");
        send(&mut ws, json!({"type": "joined", "id": join["id"], "room": "r", "connection": "c2", "members": [], "count": 1, "cursors": []})).await;
        let open = next_request(&mut ws).await;
        assert_eq!(open["type"], "open_doc");
        assert_eq!(open["since"]["version"], 3, "the document is reopened from where it was: {open}");
        send(&mut ws, opened(&open, 3)).await;
        next(&mut ws, "heartbeat").await;
    });

    let options = ConnectOptions { reconnect: true, heartbeats: false, ..ConnectOptions::dev("ann") };
    let mut client = Client::connect(&url, options).await.unwrap();
    client.join("r", None).await.unwrap();
    client.open_doc("r", "d").await.unwrap();
    client.send(&ClientMessage::Heartbeat { id: None }).unwrap();
    let _ = client.closed().await;
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(500), client.sync("r", "d")).await;
    assert!(gave_up.is_err(), "the rejoin was not answered in time: {gave_up:?}");
    client.send(&ClientMessage::Heartbeat { id: None }).unwrap();
    client.sync("r", "d").await.expect("the room is joined again and the document reopened");
    assert_eq!(client.doc("r", "d").unwrap().text().to_string(), "abc");
    client.send(&ClientMessage::Heartbeat { id: None }).unwrap();
    server.await.unwrap();
}
