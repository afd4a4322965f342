//! Documents with a lifecycle, over real sockets, on every backend: a room's
//! documents are listed with their versions, sizes and change times; a past
//! version is read from the store's snapshot and log (or refused with 410
//! beyond what is kept); a deleted document's readers, on every node, are
//! told `reset: deleted`, and its storage is freed; and a document opened
//! and never edited leaves nothing behind. What is left is checked in the
//! backend itself: maps in memory, rows in SQLite, keys in Redis.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::{ResetReason, ServerMessage};
use chorus_redis::testing::{Persistence, Redis};
use chorus_redis::RedisStore;
use chorus_sqlite::{SqliteStore, SyncMode};
use chorus_store::MemoryStore;
use serde_json::Value;
use support::{expect, http_delete, start_on, TestServer};

const ROOM: &str = "life/cycle";
const PATH_ROOM: &str = "life%2Fcycle";

/// Where a backend keeps documents, to look at what is left.
enum Inspect {
    Memory(MemoryStore),
    Sqlite(PathBuf),
    Redis(Redis),
}

impl Inspect {
    /// What the backend still holds of the room's documents (empty: nothing).
    fn held(&self) -> Vec<String> {
        match self {
            Inspect::Memory(m) => {
                let (docs, histories) = m.held_docs();
                [("docs", docs), ("histories", histories)].iter().filter(|(_, n)| *n > 0).map(|(t, n)| format!("{t}: {n}")).collect()
            }
            Inspect::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                ["docs", "ops", "clients", "histories"]
                    .iter()
                    .filter_map(|t| {
                        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap();
                        (n > 0).then(|| format!("{t}: {n}"))
                    })
                    .collect()
            }
            Inspect::Redis(redis) => {
                let mut keys: Vec<String> = redis
                    .cli_everywhere(&["KEYS", &format!("chorus:{{{ROOM}}}:*")])
                    .iter()
                    .flat_map(|out| out.lines().map(str::to_owned).collect::<Vec<_>>())
                    .filter(|k| k.contains(":d:") || k.ends_with(":docs"))
                    .collect();
                keys.sort();
                keys
            }
        }
    }

    /// Waits (up to 5 s) until the backend holds nothing of the room's
    /// documents: discards happen off the room task.
    async fn wait_until_empty(&self, what: &str) {
        let mut held = self.held();
        for _ in 0..100 {
            if held.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            held = self.held();
        }
        panic!("{what}: the backend still holds {held:?}");
    }
}

fn tune(c: &mut chorus_server::Config) {
    // Snapshots every 4 ops, keeping 2 behind: early versions get out of reach.
    c.doc_snapshot_every = 4;
    c.doc_log_window = 2;
}

async fn editor(node: &TestServer, user: &str, doc: &str) -> Client {
    // With document events, so the test sees the resets.
    let mut c = node.connect(ConnectOptions { doc_events: true, ..ConnectOptions::dev(user) }).await;
    c.join(ROOM, None).await.expect("join");
    c.open_doc(ROOM, doc).await.expect("open");
    c
}

async fn get_json(node: &TestServer, path: &str) -> (u16, Value) {
    let (status, body) = node.get(path, None).await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// The `reset` reason and text of the next unsolicited `opened` of `doc`.
async fn next_reset(c: &mut Client, doc: &str) -> (Option<ResetReason>, String, u64) {
    expect(c, "a reset", |m| match m {
        ServerMessage::Opened { id: None, doc: d, reset, text: Some(t), version, .. } if d == doc => Some((*reset, t.clone(), *version)),
        _ => None,
    })
    .await
}

/// The whole lifecycle on `nodes` (one node, or several sharing a store).
async fn lifecycle(nodes: Vec<TestServer>, inspect: Inspect) {
    let first = &nodes[0];
    let last = nodes.last().unwrap();

    // Opened and never edited: nothing is left once its reader goes.
    let mut idle = editor(last, "idle", "draft").await;
    idle.close_doc(ROOM, "draft").await.unwrap();
    inspect.wait_until_empty("a document opened and never edited").await;
    let (status, body) = get_json(first, &format!("/v1/rooms/{PATH_ROOM}/docs")).await;
    assert_eq!((status, body["docs"].clone()), (200, Value::Array(vec![])), "nothing listed");

    // Two editors, on the first and the last node.
    let mut ann = editor(first, "ann", "notes").await;
    let mut bob = editor(last, "bob", "notes").await;
    let words = ["héllo", " wörld", " 😀", " one", " two", " three", " four", " five", " six", " seven"];
    let mut texts = vec![String::new()];
    for w in words {
        let at = ann.doc(ROOM, "notes").unwrap().text().len_chars();
        ann.insert(ROOM, "notes", at, w).unwrap();
        ann.sync(ROOM, "notes").await.unwrap();
        texts.push(format!("{}{w}", texts.last().unwrap()));
    }
    let head = words.len() as u64;
    bob.catch_up(ROOM, "notes", head).await.unwrap();
    let mut draft = editor(first, "ann", "scratch").await;
    draft.insert(ROOM, "scratch", 0, "x").unwrap();
    draft.sync(ROOM, "scratch").await.unwrap();

    // The list: versions, sizes in bytes, change times.
    for node in &nodes {
        let (status, body) = get_json(node, &format!("/v1/rooms/{PATH_ROOM}/docs")).await;
        assert_eq!(status, 200, "{body}");
        let docs = body["docs"].as_array().unwrap();
        let summary: Vec<(&str, u64, u64)> = docs.iter().map(|d| (d["doc"].as_str().unwrap(), d["version"].as_u64().unwrap(), d["bytes"].as_u64().unwrap())).collect();
        assert_eq!(summary, vec![("notes", head, texts[head as usize].len() as u64), ("scratch", 1, 1)], "{body}");
        assert!(docs.iter().all(|d| d["changed_at"].as_u64().unwrap() > 1_600_000_000_000), "{body}");
    }

    // Past versions: from the snapshot and the log, 410 beyond them.
    let at = |v: u64| format!("/v1/rooms/{PATH_ROOM}/docs/notes?version={v}");
    for v in [8, 9, head] {
        let (status, body) = get_json(last, &at(v)).await;
        assert_eq!((status, body["text"].as_str(), body["version"].as_u64()), (200, Some(texts[v as usize].as_str()), Some(v)), "version {v}: {body}");
    }
    let (status, body) = get_json(last, &at(1)).await;
    assert_eq!((status, body["code"].as_str()), (410, Some("version_trimmed")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("no longer kept"), "{body}");
    let (status, body) = get_json(last, &at(head + 1)).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("future_version")), "{body}");
    let (status, body) = get_json(last, &format!("/v1/rooms/{PATH_ROOM}/docs/nothing?version=1")).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_document")), "{body}");

    // Delete: every reader, on every node, is told; the document is gone.
    let (status, body) = http_delete(first.addr, &format!("/v1/rooms/{PATH_ROOM}/docs/notes"), None).await;
    assert_eq!(status, 200, "{body}");
    for c in [&mut ann, &mut bob] {
        assert_eq!(next_reset(c, "notes").await, (Some(ResetReason::Deleted), String::new(), 0), "reset: deleted");
        let d = c.doc(ROOM, "notes").unwrap();
        assert_eq!((d.text().to_string(), d.version()), (String::new(), 0));
    }
    let (status, body) = http_delete(last.addr, &format!("/v1/rooms/{PATH_ROOM}/docs/notes"), None).await;
    assert_eq!((status, body.contains("unknown_document")), (404, true), "deleted once: {body}");
    let (status, _) = get_json(last, &at(head)).await;
    assert_eq!(status, 404, "no version of a deleted document");
    let (_, body) = get_json(last, &format!("/v1/rooms/{PATH_ROOM}/docs")).await;
    assert_eq!(body["docs"].as_array().unwrap().iter().map(|d| d["doc"].as_str().unwrap()).collect::<Vec<_>>(), vec!["scratch"], "{body}");

    // The readers carry on with the new, empty document.
    bob.insert(ROOM, "notes", 0, "again").unwrap();
    bob.sync(ROOM, "notes").await.unwrap();
    ann.catch_up(ROOM, "notes", 1).await.unwrap();
    assert_eq!(ann.doc(ROOM, "notes").unwrap().text().to_string(), "again");
    let (_, body) = get_json(first, &at(1)).await;
    assert_eq!(body["text"].as_str(), Some("again"), "{body}");

    // Deleting everything frees everything.
    for doc in ["notes", "scratch"] {
        let (status, body) = http_delete(last.addr, &format!("/v1/rooms/{PATH_ROOM}/docs/{doc}"), None).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(next_reset(&mut draft, "scratch").await.0, Some(ResetReason::Deleted));
    assert_eq!(next_reset(&mut bob, "notes").await.0, Some(ResetReason::Deleted));
    assert_eq!(next_reset(&mut ann, "notes").await.0, Some(ResetReason::Deleted));
    for (c, doc) in [(&mut ann, "notes"), (&mut bob, "notes"), (&mut draft, "scratch")] {
        c.close_doc(ROOM, doc).await.unwrap();
    }
    inspect.wait_until_empty("deleted documents").await;
}

#[tokio::test]
async fn documents_have_a_lifecycle_in_memory() {
    let store = MemoryStore::new();
    let node = start_on(Arc::new(store.clone()), tune).await;
    lifecycle(vec![node], Inspect::Memory(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_have_a_lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let store = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let node = start_on(Arc::new(store), tune).await;
    lifecycle(vec![node], Inspect::Sqlite(path)).await;
}

async fn on_redis(redis: Redis) {
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect(&redis.url()).await.expect("connects to Redis");
        nodes.push(start_on(Arc::new(store), tune).await);
    }
    lifecycle(nodes, Inspect::Redis(redis)).await;
}

#[tokio::test]
async fn documents_have_a_lifecycle_on_two_nodes_of_redis() {
    on_redis(Redis::standalone(Persistence::None)).await;
}

#[tokio::test]
async fn documents_have_a_lifecycle_on_two_nodes_of_a_cluster() {
    on_redis(Redis::cluster(Persistence::None)).await;
}
