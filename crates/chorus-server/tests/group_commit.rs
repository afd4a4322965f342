//! Group commit as a room does it: a document's commit in flight holds up
//! neither cursors nor the room's other documents, and what the document's
//! submitters send meanwhile goes to the store as one group, each op acked
//! with its own version; a cursor on its way to the bus holds up nothing
//! either (another sender's leave included), and reaches the bus before its
//! sender's leave. Faults are planned
//! around the in-memory store.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chorus_protocol::ServerMessage;
use chorus_store::faults::{Call, Fault, Faulty};
use chorus_store::MemoryStore;
use serde_json::json;
use support::{drain, expect, start_on, TestServer};

const ROOM: &str = "groups/room";

async fn faulty_server() -> (Arc<Faulty<MemoryStore>>, TestServer) {
    let store = Arc::new(Faulty::new(MemoryStore::new()));
    let server = start_on(store.clone(), |_| {}).await;
    (store, server)
}

/// A client of `user`, joined to the room.
async fn member(server: &TestServer, user: &str) -> chorus_client::Client {
    let mut client = server.client(user).await;
    client.join(ROOM, None).await.unwrap();
    client
}

#[tokio::test]
async fn a_commit_in_flight_holds_up_neither_cursors_nor_other_documents() {
    let (store, server) = faulty_server().await;
    let mut ann = member(&server, "ann").await;
    ann.open_doc(ROOM, "slow").await.unwrap();
    ann.open_doc(ROOM, "quick").await.unwrap();
    let bob = member(&server, "bob").await;
    store.plan(Call::Append, [Fault::Delay(Duration::from_secs(2))]);
    ann.insert(ROOM, "slow", 0, "late").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    bob.cursor(ROOM, json!({ "x": 1 })).unwrap();
    let bobs = bob.connection().to_owned();
    expect(&mut ann, "bob's cursor", |m| matches!(m, ServerMessage::Cursor { cursor, .. } if cursor.connection == bobs).then_some(())).await;
    ann.insert(ROOM, "quick", 0, "on time").unwrap();
    ann.sync(ROOM, "quick").await.unwrap();
    assert!(!ann.doc(ROOM, "slow").unwrap().is_synchronized(), "the slow document's op is still waiting for its store answer");
    assert_eq!(store.pending(), 0, "the slow commit is under way");
    ann.sync(ROOM, "slow").await.expect("the slow answer comes");
    assert_eq!(server.doc_text(ROOM, "slow").await, ("late".to_string(), 1));
}

#[tokio::test]
async fn what_is_sent_during_a_commit_goes_as_one_group() {
    let (store, server) = faulty_server().await;
    let users = ["ann", "bob", "carl", "dan"];
    let mut clients = Vec::new();
    for user in users {
        let mut c = server.client(user).await;
        c.join(ROOM, None).await.unwrap();
        c.open_doc(ROOM, "d").await.unwrap();
        clients.push(c);
    }
    // Two slow store calls, and a third would fail: the first op alone,
    // then the three sent while it was in flight, together.
    let slow = Fault::Delay(Duration::from_millis(800));
    store.plan(Call::Append, [slow, slow, Fault::Fail]);
    clients[0].insert(ROOM, "d", 0, "a").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (c, letter) in clients[1..].iter_mut().zip(["b", "c", "d"]) {
        c.insert(ROOM, "d", 0, letter).unwrap();
    }
    for c in &mut clients {
        c.sync(ROOM, "d").await.expect("acknowledged");
    }
    assert_eq!(store.pending(), 1, "two store calls for four ops");
    let (text, version) = server.doc_text(ROOM, "d").await;
    assert_eq!(version, 4);
    let mut letters: Vec<char> = text.chars().collect();
    letters.sort_unstable();
    assert_eq!(letters, ['a', 'b', 'c', 'd'], "each op once: {text:?}");
    let replay = server.replay_log(ROOM, "d").await;
    assert_eq!(replay, text, "the log replays to the text");
}

#[tokio::test]
async fn a_cursor_on_its_way_to_the_bus_holds_up_neither_ops_nor_cursors() {
    let (store, server) = faulty_server().await;
    let mut ann = member(&server, "ann").await;
    ann.open_doc(ROOM, "d").await.unwrap();
    let bob = member(&server, "bob").await;
    let carl = member(&server, "carl").await;
    // Bob's cursor takes two seconds to reach the bus (a slow Redis).
    store.plan(Call::Publish, [Fault::Delay(Duration::from_secs(2))]);
    bob.cursor(ROOM, json!({ "x": 1 })).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    ann.insert(ROOM, "d", 0, "on time").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    carl.cursor(ROOM, json!({ "y": 2 })).unwrap();
    let carls = carl.connection().to_owned();
    expect(&mut ann, "carl's cursor", |m| matches!(m, ServerMessage::Cursor { cursor, .. } if cursor.connection == carls).then_some(())).await;
    assert!(started.elapsed() < Duration::from_secs(1), "the room went on while bob's cursor was on its way: {:?}", started.elapsed());
    let bobs = bob.connection().to_owned();
    expect(&mut ann, "bob's cursor, late", |m| matches!(m, ServerMessage::Cursor { cursor, .. } if cursor.connection == bobs).then_some(())).await;
}

#[tokio::test]
async fn a_leave_waits_for_the_cursors_on_their_way_to_the_bus() {
    let (store, server) = faulty_server().await;
    let mut ann = member(&server, "ann").await;
    let mut bob = member(&server, "bob").await;
    store.plan(Call::Publish, [Fault::Delay(Duration::from_millis(500))]);
    bob.cursor(ROOM, json!({ "x": 1 })).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let bobs = bob.connection().to_owned();
    bob.leave(ROOM).await.unwrap();
    // Bob's cursor reaches ann before his leave, or not at all (his leave
    // takes a cursor still waiting in her queue with it): one heard after
    // his leave would stay on her screen, a cursor of nobody.
    let heard = drain(&mut ann, Duration::from_millis(1_200)).await;
    let order: Vec<&str> = heard
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Cursor { cursor, .. } if cursor.connection == bobs => Some("cursor"),
            ServerMessage::MemberLeft { connection, .. } if *connection == bobs => Some("left"),
            _ => None,
        })
        .collect();
    assert_eq!(order.last(), Some(&"left"), "bob's leave comes last: {order:?}");
    assert_eq!(order.iter().filter(|&&o| o == "left").count(), 1, "{order:?}");
}

#[tokio::test]
async fn a_leave_does_not_wait_for_other_senders_cursors() {
    let (store, server) = faulty_server().await;
    let mut ann = member(&server, "ann").await;
    let bob = member(&server, "bob").await;
    let mut carl = member(&server, "carl").await;
    // Bob's cursor takes three seconds to reach the bus (a slow Redis).
    store.plan(Call::Publish, [Fault::Delay(Duration::from_secs(3))]);
    bob.cursor(ROOM, json!({ "x": 1 })).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let carls = carl.connection().to_owned();
    carl.leave(ROOM).await.unwrap();
    expect(&mut ann, "carl's leave", |m| matches!(m, ServerMessage::MemberLeft { connection, .. } if *connection == carls).then_some(())).await;
    assert!(started.elapsed() < Duration::from_secs(2), "carl's leave waited for bob's cursor: {:?}", started.elapsed());
    let bobs = bob.connection().to_owned();
    expect(&mut ann, "bob's cursor, late", |m| matches!(m, ServerMessage::Cursor { cursor, .. } if cursor.connection == bobs).then_some(())).await;
}
