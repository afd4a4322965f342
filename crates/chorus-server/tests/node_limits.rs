//! What one node holds whoever asks: rooms loaded on the node and documents
//! loaded in a room are bounded, and going over gets a typed error.

mod support;

use chorus_client::ClientError;
use chorus_protocol::ErrorCode;
use support::start;

#[tokio::test]
async fn a_node_loads_at_most_its_rooms() {
    let s = start(|c| c.max_rooms = 2).await;
    let mut c = s.client("ann").await;
    c.join("a", None).await.unwrap();
    c.join("b", None).await.unwrap();
    match c.join("c", None).await {
        Err(ClientError::Server { code: ErrorCode::Unavailable, message }) => assert!(message.contains("--max-rooms"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Rooms already loaded are still served.
    let mut bob = s.client("bob").await;
    bob.join("a", None).await.expect("a loaded room takes members");
}

#[tokio::test]
async fn a_room_loads_at_most_its_documents() {
    let s = start(|c| c.documents_per_room = 2).await;
    let mut c = s.client("ann").await;
    c.join("r", None).await.unwrap();
    c.open_doc("r", "d1").await.unwrap();
    c.open_doc("r", "d2").await.unwrap();
    match c.open_doc("r", "d3").await {
        Err(ClientError::Server { code: ErrorCode::TooManyDocuments, message }) => assert!(message.contains("--documents-per-room"), "{message}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    c.open_doc("r", "d1").await.expect("a loaded document opens again");
}

#[tokio::test]
async fn a_documents_log_in_memory_is_bounded_in_bytes() {
    let s = start(|c| c.max_doc_log_bytes = 2_000).await;
    let chunk = "x".repeat(292); // 300 bytes as the limits count them
    for _ in 0..20 {
        let body = serde_json::json!({ "op": [chunk] }).to_string();
        let (status, answer) = support::http_post(s.addr, "/v1/rooms/r/docs/d/ops", None, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    // 6,000 bytes of ops were committed; the log keeps at most the budget,
    // and a reader further back is told so (and would get the text).
    let (status, body) = s.get("/v1/rooms/r/docs/d/ops?since=0", None).await;
    assert_eq!(status, 410, "{body}");
    let (status, body) = s.get("/v1/rooms/r/docs/d/ops?since=17", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.doc_text("r", "d").await, (chunk.repeat(20), 20), "the text is whole");
}

/// The node-wide budget for room state (`--max-state-bytes`): growth past
/// it is refused with `node_full`, naming the flag; what is loaded is still
/// served to others; once rooms unload, the budget is free again.
#[tokio::test]
async fn room_state_of_a_whole_node_is_bounded_in_bytes() {
    let s = start(|c| c.max_state_bytes = 30_000).await;
    let budget = |s: &support::TestServer| s.server.as_ref().unwrap().node.rooms.budget.used();
    // Ann keeps the room and the document loaded while the API writes.
    let mut ann = s.client("ann").await;
    ann.join("big", None).await.unwrap();
    ann.open_doc("big", "d").await.unwrap();
    let chunk = "x".repeat(992); // 1,000 bytes as ops are counted
    let body = serde_json::json!({ "op": [chunk] }).to_string();
    let mut refused = None;
    for i in 0..40 {
        let (status, answer) = support::http_post(s.addr, "/v1/rooms/big/docs/d/ops", None, &body).await;
        if status != 200 {
            refused = Some((i, status, answer));
            break;
        }
    }
    // Each op holds 992 bytes of text, 1,000 of log and a record of 192,
    // and is admitted while twice its size and a record still fit: the
    // 14th would not.
    let (accepted, status, answer) = refused.expect("the budget refuses at some point");
    assert_eq!((accepted, status), (13, 503), "{answer}");
    assert!(answer.contains("node_full") && answer.contains("--max-state-bytes"), "{answer}");
    assert_eq!(budget(&s), 13 * (1_992 + 192));
    let metrics = s.get("/metrics", None).await.1;
    assert!(metrics.lines().any(|l| l.starts_with("chorus_state_refusals_total ") && !l.ends_with(" 0")), "{metrics}");

    // Over the WebSocket too: the op is refused with the same code.
    ann.send_raw(serde_json::json!({"type": "submit", "id": 7, "room": "big", "doc": "d", "seq": 1, "base": 13, "op": [chunk]}).to_string()).unwrap();
    let (code, message) = support::expect(&mut ann, "node_full", |m| match m {
        chorus_protocol::ServerMessage::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::NodeFull, "{message}");

    // Others are served what is loaded: bob joins and reads the whole text.
    let mut bob = s.client("bob").await;
    bob.join("big", None).await.expect("a loaded room takes members");
    let text = bob.open_doc("big", "d").await.expect("a loaded document opens").text().to_string();
    assert_eq!(text.len(), 13 * 992);
    // A small room elsewhere still starts (the budget is not yet spent).
    bob.join("small", None).await.expect("a new room with nothing in it");

    // Everyone leaves: the room unloads and its bytes are released.
    ann.leave("big").await.unwrap();
    bob.leave("big").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while budget(&s) != 0 {
        assert!(std::time::Instant::now() < deadline, "still held: {}", budget(&s));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, answer) = support::http_post(s.addr, "/v1/rooms/big/docs/other/ops", None, &body).await;
    assert_eq!(status, 200, "{answer}");
}

/// A `joined` reply is counted against the connection's outbox budget
/// before it is built: a room whose state would not fit closes the
/// connection as a slow consumer (4005) instead of queueing its values.
#[tokio::test]
async fn a_joined_reply_that_would_not_fit_the_outbox_closes_the_connection() {
    let s = start(|c| c.max_outbox_bytes = 100_000).await;
    let big = "y".repeat(50_000);
    for name in ["a", "b", "c"] {
        let body = serde_json::json!({ "kind": "register", "change": { "op": "set", "value": big } }).to_string();
        let (status, answer) = support::http_post(s.addr, &format!("/v1/rooms/heavy/values/{name}"), None, &body).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut ann = s.client("ann").await;
    match ann.join("heavy", None).await {
        Err(ClientError::Closed { code: Some(code), .. }) => assert_eq!(code, chorus_protocol::close::SLOW_CONSUMER),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // A room whose state fits is joined as usual, on the same server.
    let mut bob = s.client("bob").await;
    let body = serde_json::json!({ "kind": "register", "change": { "op": "set", "value": "small" } }).to_string();
    support::http_post(s.addr, "/v1/rooms/light/values/a", None, &body).await;
    let joined = bob.join("light", None).await.expect("a room that fits");
    assert_eq!(joined.values.len(), 1);
}
