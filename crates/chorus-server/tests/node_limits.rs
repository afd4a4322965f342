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
