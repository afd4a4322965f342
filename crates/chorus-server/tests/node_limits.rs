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
