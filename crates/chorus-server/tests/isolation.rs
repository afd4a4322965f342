//! Names and ids that clients choose never reach anything of anyone else:
//! document names holding the separators of Redis keys, client ids copied
//! from another user (they travel in every op), the ids of the HTTP API and
//! of undo, and sequence numbers beyond what a double holds. Each runs on
//! the embedded store, a standalone Redis and a 3-master Cluster.

mod support;

use std::sync::Arc;

use chorus_client::Client;
use chorus_protocol::{ErrorCode, ServerMessage};
use chorus_redis::testing::{Persistence, Redis};
use chorus_redis::RedisStore;
use chorus_store::{Backend, MemoryStore};
use serde_json::{json, Value};
use support::{expect, http_post, start_on, TestServer};

const ROOM: &str = "iso/room";

/// Runs a scenario on the embedded store, a standalone Redis and a Cluster.
macro_rules! on_every_store {
    ($scenario:ident, $memory:ident, $standalone:ident, $cluster:ident) => {
        #[tokio::test]
        async fn $memory() {
            $scenario(Arc::new(MemoryStore::new()), None).await
        }

        #[tokio::test]
        async fn $standalone() {
            let redis = Redis::standalone(Persistence::None);
            $scenario(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), Some(redis)).await
        }

        #[tokio::test]
        async fn $cluster() {
            let redis = Redis::cluster(Persistence::None);
            $scenario(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), Some(redis)).await
        }
    };
}

/// A connection that speaks the protocol by hand: opens a document under a
/// client id of its choosing and submits ops with sequence numbers of its
/// choosing.
struct Raw {
    client: Client,
    doc: String,
}

impl Raw {
    async fn open(server: &TestServer, user: &str, doc: &str, client_id: &str) -> Self {
        let mut client = server.client(user).await;
        client.join(ROOM, None).await.expect("join");
        client.send_raw(json!({"type": "open_doc", "id": 1, "room": ROOM, "doc": doc, "client": client_id}).to_string()).unwrap();
        expect(&mut client, "opened", |m| matches!(m, ServerMessage::Opened { .. }).then_some(())).await;
        Self { client, doc: doc.into() }
    }

    /// Submits `op` at the head with `seq`; the version it was acked with,
    /// or the error code.
    async fn submit(&mut self, server: &TestServer, seq: u64, op: Value) -> Result<u64, ErrorCode> {
        let (_, base) = server.doc_text(ROOM, &self.doc).await;
        self.client.send_raw(json!({"type": "submit", "room": ROOM, "doc": self.doc, "seq": seq, "base": base, "op": op}).to_string()).unwrap();
        expect(&mut self.client, "an ack or an error", |m| match m {
            ServerMessage::Ack { seq: s, version, .. } if *s == seq => Some(Ok(*version)),
            ServerMessage::Error { code, .. } => Some(Err(*code)),
            _ => None,
        })
        .await
    }
}

on_every_store!(
    nobody_can_claim_another_users_client_id,
    client_ids_are_per_user_on_the_embedded_store,
    client_ids_are_per_user_on_redis,
    client_ids_are_per_user_on_a_cluster
);

/// A writer who copies another user's client id (every `op` carries it),
/// an HTTP importer's id, or the id of another user's undo, changes
/// nothing for them: their ops are applied, acknowledged and undone as if
/// the copier did not exist.
async fn nobody_can_claim_another_users_client_id(store: Arc<dyn Backend>, _redis: Option<Redis>) {
    let server = start_on(store, |_| {}).await;
    let mut ann = server.client("ann").await;
    ann.join(ROOM, None).await.unwrap();
    ann.open_doc(ROOM, "d").await.unwrap();
    let anns_id = ann.doc(ROOM, "d").unwrap().client_id().to_owned();
    // Eve takes Ann's client id and runs ahead with its sequence numbers.
    let mut eve = Raw::open(&server, "eve", "d", &anns_id).await;
    for seq in 1..=5 {
        eve.submit(&server, seq, json!(["e"])).await.expect("eve's own ops are hers to commit");
    }
    for _ in 0..5 {
        ann.insert(ROOM, "d", 0, "a").unwrap();
        ann.sync(ROOM, "d").await.expect("ann's ops are acknowledged");
    }
    let (text, version) = server.doc_text(ROOM, "d").await;
    assert_eq!((text.matches('a').count(), text.matches('e').count(), version), (5, 5, 10), "{text}");
    assert!(ann.doc(ROOM, "d").unwrap().text().to_string() == text, "ann's client agrees with the server");

    // An importer's id: Eve claims it first, with higher numbers.
    let mut eve_api = Raw::open(&server, "eve", "d", "api:importer").await;
    eve_api.submit(&server, 7, json!(["x"])).await.expect("eve's op");
    for seq in 1..=3 {
        let (status, body) = http_post(server.addr, "/v1/rooms/iso%2Froom/docs/d/ops", None, &json!({"op": ["i"], "client": "importer", "seq": seq}).to_string()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["duplicate"], false, "the importer's op {seq} was applied: {body}");
    }
    assert_eq!(server.doc_text(ROOM, "d").await.0.matches('i').count(), 3);

    // Ann's undo: Eve claims every id it might have had, with huge numbers.
    for claimed in ["ann~history", "h3:ann", "u3:ann:tab"] {
        let mut eve_undo = Raw::open(&server, "eve", "d", claimed).await;
        eve_undo.submit(&server, u64::MAX - 1, json!(["z"])).await.expect("eve's op");
    }
    ann.sync(ROOM, "d").await.unwrap();
    let before = server.doc_text(ROOM, "d").await.0;
    let undone = ann.undo(ROOM, "d").await.expect("undo answers").expect("ann's last step is undone");
    let (after, version) = server.doc_text(ROOM, "d").await;
    assert_eq!(version, undone);
    assert!(after.matches('a').count() < before.matches('a').count(), "ann's own typing went: {before} -> {after}");
    let others = |t: &str| t.replace('a', "");
    assert_eq!(others(&after), others(&before), "nobody else's text was touched");
}

on_every_store!(
    document_names_never_reach_other_documents,
    document_names_stay_apart_on_the_embedded_store,
    document_names_stay_apart_on_redis,
    document_names_stay_apart_on_a_cluster
);

/// Documents whose names hold the separators of the keys of others: a
/// reader opening `x:log` must not break `x`, and `body`'s snapshot must not
/// land on a document called `body:snapshot`.
async fn document_names_never_reach_other_documents(store: Arc<dyn Backend>, _redis: Option<Redis>) {
    let server = start_on(store.clone(), |c| c.doc_snapshot_every = 3).await;
    let mut writer = server.client("ann").await;
    writer.join(ROOM, None).await.unwrap();
    let names = ["x", "x:log", "x:snapshot", "x:clients", "body", "body:snapshot", "body:log"];
    // A reader opens the crafted names first.
    let mut reader = server.client("bob").await;
    reader.join(ROOM, None).await.unwrap();
    for name in &names[1..] {
        reader.open_doc(ROOM, name).await.unwrap_or_else(|e| panic!("open {name}: {e}"));
    }
    for name in names {
        writer.open_doc(ROOM, name).await.unwrap_or_else(|e| panic!("open {name}: {e}"));
        for i in 0..7 {
            writer.insert(ROOM, name, 0, &format!("<{name}.{i}>")).unwrap();
            writer.sync(ROOM, name).await.unwrap_or_else(|e| panic!("edit {i} of {name}: {e}"));
        }
    }
    for name in names {
        let (text, version) = server.doc_text(ROOM, name).await;
        let expected: String = (0..7).rev().map(|i| format!("<{name}.{i}>")).collect();
        assert_eq!((text, version), (expected, 7), "document {name}");
    }
    // And read back from the store alone, by a node that never saw them.
    drop(writer);
    drop(reader);
    let fresh = start_on(store, |_| {}).await;
    for name in names {
        let expected: String = (0..7).rev().map(|i| format!("<{name}.{i}>")).collect();
        assert_eq!(fresh.doc_text(ROOM, name).await, (expected, 7), "document {name}, loaded from the store");
    }
}

on_every_store!(
    sequence_numbers_are_compared_exactly,
    big_sequence_numbers_on_the_embedded_store,
    big_sequence_numbers_on_redis,
    big_sequence_numbers_on_a_cluster
);

/// 2^53 + 1 is not 2^53: an op with the next sequence number is applied,
/// not acknowledged as a duplicate and dropped.
async fn sequence_numbers_are_compared_exactly(store: Arc<dyn Backend>, _redis: Option<Redis>) {
    let server = start_on(store, |_| {}).await;
    let mut raw = Raw::open(&server, "ann", "d", "big").await;
    let big = 1u64 << 53;
    for (seq, text) in [(big, "a"), (big + 1, "b"), (u64::MAX, "c")] {
        raw.submit(&server, seq, json!([text])).await.unwrap_or_else(|code| panic!("seq {seq}: {code}"));
    }
    assert_eq!(raw.submit(&server, big + 1, json!(["d"])).await, Err(ErrorCode::StaleSeq));
    assert_eq!(server.doc_text(ROOM, "d").await, ("cba".to_string(), 3), "every op applied once");
}
