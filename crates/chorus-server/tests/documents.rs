//! Shared text documents over real sockets: open, submit and acknowledge,
//! exactly-once resubmission, recovery from ops or from a snapshot, cursors
//! that follow the text, slow consumers, and the HTTP API.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_core::oplog::LogEntry;
use chorus_core::text::{apply_to_str, Selection, TextOp};
use chorus_protocol::{ErrorCode, ResetReason, ServerMessage};
use chorus_store::MemoryStore;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{drain, expect, http_post, start, start_on, start_with_reader, TestServer};

const ROOM: &str = "team/doc-tests";

/// A client in `ROOM` with document `doc` open.
async fn editor(server: &TestServer, user: &str, doc: &str) -> Client {
    let mut c = server.connect(ConnectOptions { reconnect: true, ..ConnectOptions::dev(user) }).await;
    c.join(ROOM, None).await.expect("join");
    c.open_doc(ROOM, doc).await.expect("open");
    c
}

/// A client that sees the raw document messages (nothing applied for it).
async fn watcher(server: &TestServer, user: &str, doc: &str) -> (Client, u64) {
    let mut c = server.client(user).await;
    c.join(ROOM, None).await.unwrap();
    let version = open_raw(&mut c, doc, None).await;
    (c, version)
}

/// Opens a document with raw messages; returns the version it was opened at.
async fn open_raw(c: &mut Client, doc: &str, client: Option<&str>) -> u64 {
    let msg = json!({"type": "open_doc", "id": 900, "room": ROOM, "doc": doc, "client": client});
    c.send_raw(msg.to_string()).unwrap();
    expect(c, "opened", |m| match m {
        ServerMessage::Opened { id: Some(900), version, .. } => Some(*version),
        _ => None,
    })
    .await
}

fn submit(c: &Client, doc: &str, seq: u64, base: u64, op: Value) {
    c.send_raw(json!({"type": "submit", "room": ROOM, "doc": doc, "seq": seq, "base": base, "op": op}).to_string()).unwrap();
}

async fn ack(c: &mut Client, seq: u64) -> u64 {
    expect(c, "ack", |m| match m {
        ServerMessage::Ack { seq: s, version, .. } if *s == seq => Some(*version),
        _ => None,
    })
    .await
}

async fn error(c: &mut Client, what: &str) -> (ErrorCode, String) {
    expect(c, what, |m| match m {
        ServerMessage::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    })
    .await
}

fn ops_of(msgs: &[ServerMessage]) -> Vec<LogEntry> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMessage::Op { entry, .. } => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn edits_are_acknowledged_and_reach_every_reader() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann", "body").await;
    let (mut bob, v0) = watcher(&server, "bob", "body").await;
    assert_eq!(v0, 0);
    ann.insert(ROOM, "body", 0, "hello 😭").unwrap();
    ann.sync(ROOM, "body").await.unwrap();
    // The simple forms are accepted too.
    submit(&bob, "body", 1, 1, json!({"insert": {"at": 6, "text": "wörld "}}));
    assert_eq!(ack(&mut bob, 1).await, 2);
    submit(&bob, "body", 2, 2, json!({"delete": {"at": 12, "length": 1}}));
    assert_eq!(ack(&mut bob, 2).await, 3);
    ann.catch_up(ROOM, "body", 3).await.unwrap();
    assert_eq!(ann.doc(ROOM, "body").unwrap().text().to_string(), "hello wörld ");
    let (text, version) = server.doc_text(ROOM, "body").await;
    assert_eq!((text.as_str(), version), ("hello wörld ", 3));
    // Bob saw Ann's op, and his own only as acks.
    let seen = ops_of(&drain(&mut bob, Duration::from_millis(100)).await);
    assert_eq!(seen.iter().map(|e| (e.version, e.op.clone())).collect::<Vec<_>>(), vec![(1, TextOp::insert(0, "hello 😭"))]);
}

#[tokio::test]
async fn stale_ops_are_transformed_and_resubmissions_acknowledged_once() {
    let server = start(|_| {}).await;
    let (mut a, _) = watcher(&server, "ann", "d").await;
    let (mut b, _) = watcher(&server, "bob", "d").await;
    let (mut c, _) = watcher(&server, "cid", "d").await;
    submit(&a, "d", 1, 0, json!(["abc"]));
    assert_eq!(ack(&mut a, 1).await, 1);
    // Bob made his op at version 0 too: it is transformed past Ann's.
    submit(&b, "d", 1, 0, json!(["X"]));
    assert_eq!(ack(&mut b, 1).await, 2);
    // Ann lost her ack and resubmits (with the same or a later base).
    submit(&a, "d", 1, 0, json!(["abc"]));
    assert_eq!(ack(&mut a, 1).await, 1, "acknowledged with its original version");
    submit(&a, "d", 1, 2, json!(["abc"]));
    assert_eq!(ack(&mut a, 1).await, 1);
    let (text, version) = server.doc_text(ROOM, "d").await;
    assert_eq!((text.as_str(), version), ("abcX", 2), "applied once");
    let seen = ops_of(&drain(&mut c, Duration::from_millis(150)).await);
    assert_eq!(seen.iter().map(|e| (e.version, e.op.clone())).collect::<Vec<_>>(), vec![(1, TextOp::insert(0, "abc")), (2, TextOp::insert(3, "X"))]);
    // An older sequence number than the last committed one is refused.
    submit(&a, "d", 0, 2, json!(["z"]));
    assert_eq!(error(&mut a, "stale seq").await.0, ErrorCode::StaleSeq);
}

#[tokio::test]
async fn eight_clients_with_random_disconnects_converge() {
    let seed: u64 = std::env::var("CHORUS_DOC_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("eight_clients_with_random_disconnects_converge: seed={seed} (replay with CHORUS_DOC_SEED={seed})");
    let server = start(|c| c.messages_per_second = 10_000).await;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let mut c = editor(&server, &format!("user{i}"), "storm").await;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(i));
            let pieces = ["a", "bc", "😭", "é", "\n", "x", "👩‍👩‍👧", "ñ"];
            let mut drops = 0;
            for _ in 0..150 {
                let len = c.doc(ROOM, "storm").unwrap().text().len_chars();
                if len == 0 || rng.random_bool(0.65) {
                    let at = rng.random_range(0..=len);
                    let piece = pieces[rng.random_range(0..pieces.len())];
                    c.insert(ROOM, "storm", at, piece).unwrap();
                } else {
                    let at = rng.random_range(0..len);
                    let n = rng.random_range(1..=3.min(len - at));
                    c.delete(ROOM, "storm", at, n).unwrap();
                }
                if rng.random_bool(0.04) {
                    // Drop the connection; edit offline a little; come back.
                    c.disconnect();
                    drops += 1;
                    for _ in 0..rng.random_range(0..3) {
                        c.insert(ROOM, "storm", 0, "o").unwrap();
                    }
                    c.reconnect().await.expect("reconnect");
                }
                c.pump(Duration::from_millis(rng.random_range(0..3))).await;
            }
            c.sync(ROOM, "storm").await.expect("sync");
            (c, drops)
        }));
    }
    let mut clients = Vec::new();
    let mut drops = 0;
    for t in tasks {
        let (c, d) = t.await.expect("client task");
        clients.push(c);
        drops += d;
    }
    let (text, version) = server.doc_text(ROOM, "storm").await;
    assert!(drops > 0, "seed {seed}: the run should drop some connections");
    for (i, c) in clients.iter_mut().enumerate() {
        c.catch_up(ROOM, "storm", version).await.unwrap();
        let d = c.doc(ROOM, "storm").unwrap();
        assert_eq!((d.resets, d.lost_edits), (0, 0), "seed {seed}: client {i} recovered from ops, losing nothing");
        assert!(d.text().to_string() == text, "seed {seed}: client {i} diverged from the server");
    }
    // 8 × 150 edits plus offline ones, some composed while one was in flight.
    assert!(version > 300, "seed {seed}: only {version} ops committed");
    assert!(server.replay_log(ROOM, "storm").await == text, "seed {seed}: the op log replayed from empty differs from the text");
}

#[tokio::test]
async fn the_automerge_paper_trace_over_the_socket_ends_with_its_text() {
    let trace = chorus_bench::load_trace("automerge-paper.json.gz");
    let server = start(|c| c.messages_per_second = 1_000_000).await;
    let mut c = editor(&server, "typist", "paper").await;
    let ops = trace.patch_ops();
    for op in &ops {
        c.edit(ROOM, "paper", op.clone()).unwrap();
        c.sync(ROOM, "paper").await.unwrap();
    }
    let (text, version) = server.doc_text(ROOM, "paper").await;
    assert_eq!(version, ops.len() as u64, "one op per patch");
    assert!(text == trace.end_content, "the server's text differs from the trace's end content");
    assert!(c.doc(ROOM, "paper").unwrap().text().to_string() == trace.end_content);
}

#[tokio::test]
async fn a_dropped_connection_resubmits_its_op_exactly_once() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann", "d").await;
    let mut bob = editor(&server, "bob", "d").await;
    for round in 0..20 {
        // Ann's op leaves and her connection drops at once: the server may or
        // may not have committed it. Bob edits meanwhile.
        ann.insert(ROOM, "d", 0, &format!("<{round}>")).unwrap();
        ann.disconnect();
        bob.insert(ROOM, "d", 0, "b").unwrap();
        bob.sync(ROOM, "d").await.unwrap();
        ann.reconnect().await.unwrap();
        ann.sync(ROOM, "d").await.unwrap();
    }
    let (text, version) = server.doc_text(ROOM, "d").await;
    for round in 0..20 {
        assert_eq!(text.matches(&format!("<{round}>")).count(), 1, "round {round}: {text}");
    }
    assert_eq!(text.matches('b').count(), 20);
    for c in [&mut ann, &mut bob] {
        c.catch_up(ROOM, "d", version).await.unwrap();
        assert_eq!(c.doc(ROOM, "d").unwrap().text().to_string(), text);
        assert_eq!(c.doc(ROOM, "d").unwrap().resets, 0);
    }
}

/// A client opens a document nobody has edited and drops before anything is
/// committed: the document is discarded (opening one leaves nothing behind)
/// and the next reader opens a new incarnation. The first client comes back
/// at version 0 of the old one with edits made offline: the empty text it
/// edited is where the new one starts too, so they land, with no reset.
#[tokio::test]
async fn offline_edits_made_at_version_0_survive_the_document_being_recreated() {
    let store = Arc::new(MemoryStore::new());
    let server = start_on(store.clone(), |_| {}).await;
    let mut ann = editor(&server, "ann", "fresh").await;
    let old_epoch = ann.doc(ROOM, "fresh").unwrap().epoch().to_owned();
    ann.disconnect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.held_docs().0 > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the unedited document is discarded once its reader is gone");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut bob = editor(&server, "bob", "fresh").await;
    let new_epoch = bob.doc(ROOM, "fresh").unwrap().epoch().to_owned();
    assert_ne!(new_epoch, old_epoch, "a new incarnation");
    bob.insert(ROOM, "fresh", 0, "bob ").unwrap();
    bob.sync(ROOM, "fresh").await.unwrap();
    // Ann typed offline meanwhile: one edit to go in flight, one behind it.
    ann.insert(ROOM, "fresh", 0, "hé").unwrap();
    ann.insert(ROOM, "fresh", 2, "llo 😭").unwrap();
    ann.reconnect().await.unwrap();
    ann.sync(ROOM, "fresh").await.unwrap();
    let (text, version) = server.doc_text(ROOM, "fresh").await;
    let d = ann.doc(ROOM, "fresh").unwrap();
    assert_eq!((d.resets, d.lost_edits), (0, 0), "recovered from ops, losing nothing");
    assert_eq!((d.epoch(), d.text().to_string(), d.version()), (new_epoch.as_str(), text.clone(), version));
    assert!(text.contains("héllo 😭") && text.contains("bob "), "{text}");
    bob.catch_up(ROOM, "fresh", version).await.unwrap();
    assert_eq!(bob.doc(ROOM, "fresh").unwrap().text().to_string(), text);
    assert_eq!(server.replay_log(ROOM, "fresh").await, text);
}

#[tokio::test]
async fn past_the_trim_window_recovery_is_a_snapshot_and_says_so() {
    let server = start(|c| {
        c.doc_log_window = 5;
        c.doc_snapshot_every = 10;
    })
    .await;
    let mut ann = editor(&server, "ann", "d").await;
    let mut bob = editor(&server, "bob", "d").await;
    ann.insert(ROOM, "d", 0, "start ").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    bob.catch_up(ROOM, "d", 1).await.unwrap();
    // Bob drops with an edit in flight; Ann makes 40 more.
    bob.disconnect();
    bob.insert(ROOM, "d", 0, "lost? ").unwrap();
    for i in 0..40 {
        ann.insert(ROOM, "d", 0, &i.to_string()).unwrap();
        ann.sync(ROOM, "d").await.unwrap();
    }
    // The HTTP API says the early versions are gone.
    let (status, body) = server.get("/v1/rooms/team%2Fdoc-tests/docs/d/ops?since=1", None).await;
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("version_trimmed"), "{body}");
    bob.reconnect().await.unwrap();
    let (text, version) = server.doc_text(ROOM, "d").await;
    let d = bob.doc(ROOM, "d").unwrap();
    assert_eq!((d.resets, d.lost_edits), (1, 1), "one reset; the unsent edit is reported lost");
    assert_eq!((d.text().to_string(), d.version()), (text.clone(), version));
    assert!(!text.contains("lost?"), "an edit that never reached the server is not in the text");
    // A raw reopen from an old version is told why it gets the text.
    let (mut raw, _) = watcher(&server, "cid", "other").await;
    let epoch = bob.doc(ROOM, "d").unwrap().epoch().to_owned();
    raw.send_raw(json!({"type": "open_doc", "id": 7, "room": ROOM, "doc": "d", "since": {"epoch": epoch, "version": 1}}).to_string()).unwrap();
    let reset = expect(&mut raw, "opened", |m| match m {
        ServerMessage::Opened { id: Some(7), reset, text: Some(t), .. } => Some((*reset, t.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reset, (Some(ResetReason::Trimmed), text.clone()));
    raw.send_raw(json!({"type": "open_doc", "id": 8, "room": ROOM, "doc": "d", "since": {"epoch": "gone", "version": version}}).to_string()).unwrap();
    let reset = expect(&mut raw, "opened", |m| match m {
        ServerMessage::Opened { id: Some(8), reset, .. } => Some(*reset),
        _ => None,
    })
    .await;
    assert_eq!(reset, Some(ResetReason::Epoch));
    // Within the window, the same request gets ops.
    raw.send_raw(json!({"type": "open_doc", "id": 9, "room": ROOM, "doc": "d", "since": {"epoch": epoch, "version": version - 3}}).to_string()).unwrap();
    let ops = expect(&mut raw, "opened", |m| match m {
        ServerMessage::Opened { id: Some(9), ops: Some(ops), reset: None, .. } => Some(ops.len()),
        _ => None,
    })
    .await;
    assert_eq!(ops, 3);
}

#[tokio::test]
async fn cursors_follow_the_text() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann", "d").await;
    let mut bob = editor(&server, "bob", "d").await;
    ann.insert(ROOM, "d", 0, "hello world").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    bob.catch_up(ROOM, "d", 1).await.unwrap();
    // Ann selects "world" at version 1.
    ann.doc_cursor(ROOM, "d", Selection { anchor: 6, head: 11 }).unwrap();
    let seen = expect(&mut bob, "ann's cursor", |m| match m {
        ServerMessage::Cursor { cursor, .. } => Some((cursor.cursor.clone(), cursor.version)),
        _ => None,
    })
    .await;
    assert_eq!(seen, (json!({"anchor": 6, "head": 11}), Some(1)));
    // Bob types before it: a newcomer sees the selection moved, at the new version.
    bob.insert(ROOM, "d", 0, "😭 ").unwrap();
    bob.sync(ROOM, "d").await.unwrap();
    let mut cid = server.client("cid").await;
    let joined = cid.join(ROOM, None).await.unwrap();
    let c = joined.cursors.iter().find(|c| c.user == "ann").expect("ann's cursor");
    assert_eq!((c.cursor.clone(), c.version), (json!({"anchor": 8, "head": 13}), Some(2)));
    // A cursor sent for an older version is moved forward before fan-out.
    ann.catch_up(ROOM, "d", 2).await.unwrap();
    let old = json!({"type": "cursor", "room": ROOM, "doc": "d", "version": 1, "cursor": {"anchor": 0, "head": 5}});
    tokio::time::sleep(Duration::from_millis(60)).await; // past the cursor rate bound
    ann.send_raw(old.to_string()).unwrap();
    let seen = expect(&mut bob, "the moved cursor", |m| match m {
        ServerMessage::Cursor { cursor, .. } if cursor.version == Some(2) => Some(cursor.cursor.clone()),
        _ => None,
    })
    .await;
    // Someone else's insert exactly at the anchor leaves it before the new text.
    assert_eq!(seen, json!({"anchor": 0, "head": 7}));
    // And Bob's client places a remote selection in its local text.
    let d = bob.doc(ROOM, "d").unwrap();
    assert_eq!(d.local_selection(1, Selection { anchor: 6, head: 11 }), Some(Selection { anchor: 8, head: 13 }));
}

#[tokio::test]
async fn bad_document_input_gets_typed_errors_and_changes_nothing() {
    let server = start(|c| {
        c.max_op_bytes = 1_000;
        c.max_document_bytes = 500;
        c.documents_per_connection = 2;
    })
    .await;
    let (mut bad, _) = watcher(&server, "mallory", "d").await;
    let (mut bystander, _) = watcher(&server, "bob", "d").await;
    submit(&bad, "d", 1, 0, json!(["0123456789"]));
    assert_eq!(ack(&mut bad, 1).await, 1);
    bystander.pump(Duration::from_millis(50)).await;
    drain(&mut bystander, Duration::from_millis(50)).await;

    let cases: Vec<(Value, ErrorCode, &str)> = vec![
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": [11, "x"]}), ErrorCode::InvalidOp, "the document had 10"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 0, "op": [1, "x"]}), ErrorCode::InvalidOp, "had 0 at version 0"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": [{"d": 11}]}), ErrorCode::InvalidOp, "spans 11"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": [{"d": "xyz"}]}), ErrorCode::InvalidOp, "differs"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": [2, -1]}), ErrorCode::InvalidOp, "positive"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": "text"}), ErrorCode::InvalidOp, "list of components"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": [3, 4]}), ErrorCode::InvalidOp, "retain follows a retain"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 9, "op": ["x"]}), ErrorCode::FutureVersion, "ahead"),
        (json!({"type": "submit", "room": ROOM, "doc": "other", "seq": 1, "base": 0, "op": ["x"]}), ErrorCode::NotOpen, "not open"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": ["y".repeat(1_200)]}), ErrorCode::OpTooLarge, "limit is 1000"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": 2, "base": 1, "op": ["😭".repeat(130)]}), ErrorCode::DocumentTooLarge, "limit is 500"),
        (json!({"type": "submit", "room": "elsewhere", "doc": "d", "seq": 2, "base": 1, "op": ["x"]}), ErrorCode::NotJoined, "join it first"),
        (json!({"type": "submit", "room": ROOM, "doc": "d", "seq": "two", "base": 1, "op": ["x"]}), ErrorCode::BadMessage, "invalid"),
        (json!({"type": "open_doc", "room": ROOM, "doc": "bad name!"}), ErrorCode::InvalidDocument, "not allowed"),
    ];
    for (msg, code, says) in cases {
        bad.send_raw(msg.to_string()).unwrap();
        let (got, message) = error(&mut bad, &msg.to_string()).await;
        assert_eq!(got, code, "{msg}: {message}");
        assert!(message.contains(says), "{msg}: {message:?} should say {says:?}");
    }
    // A third open document is over the per-connection limit.
    open_raw(&mut bad, "second", None).await;
    bad.send_raw(json!({"type": "open_doc", "room": ROOM, "doc": "third"}).to_string()).unwrap();
    assert_eq!(error(&mut bad, "too many documents").await.0, ErrorCode::TooManyDocuments);

    assert_eq!(server.doc_text(ROOM, "d").await, ("0123456789".to_string(), 1), "nothing was committed");
    let seen = drain(&mut bystander, Duration::from_millis(200)).await;
    assert!(ops_of(&seen).is_empty() && !seen.iter().any(|m| matches!(m, ServerMessage::Error { .. })), "the bystander saw nothing: {seen:?}");
    // The connection still works.
    submit(&bad, "d", 2, 1, json!([10, "!"]));
    assert_eq!(ack(&mut bad, 2).await, 2);
}

#[tokio::test]
async fn a_read_only_token_cannot_submit() {
    let (_server, mut c) = start_with_reader(ROOM).await;
    open_raw(&mut c, "d", None).await;
    submit(&c, "d", 1, 0, json!(["x"]));
    assert_eq!(error(&mut c, "forbidden").await.0, ErrorCode::Forbidden);
}

#[tokio::test]
async fn the_http_api_reads_documents_and_applies_ops_that_reach_every_reader() {
    let server = start(|_| {}).await;
    let (mut bob, _) = watcher(&server, "bob", "notes").await;
    let path = "/v1/rooms/team%2Fdoc-tests/docs/notes/ops";
    let (status, body) = http_post(server.addr, path, None, r#"{"op": ["from the backend"], "client": "importer", "seq": 1}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["version"], 1);
    let seen = expect(&mut bob, "the backend's op", |m| match m {
        ServerMessage::Op { entry, .. } => Some(entry.clone()),
        _ => None,
    })
    .await;
    assert_eq!((seen.version, seen.op), (1, TextOp::insert(0, "from the backend")));
    // Retrying the same request changes nothing.
    let (status, body) = http_post(server.addr, path, None, r#"{"op": ["from the backend"], "client": "importer", "seq": 1}"#).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["duplicate"].clone()), (200, json!(true)));
    // At an old base, an op is transformed like any other.
    let (status, _) = http_post(server.addr, path, None, r#"{"op": {"insert": {"at": 0, "text": "!"}}, "base": 0}"#).await;
    assert_eq!(status, 200);
    assert_eq!(server.doc_text(ROOM, "notes").await, ("from the backend!".to_string(), 2));
    let (status, body) = server.get(&format!("{path}?since=1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["ops"][0]["op"], json!([16, "!"]));
    // Bad requests are refused with their codes, and commit nothing.
    for (body, status, code) in [
        (r#"{"op": [99, "x"]}"#, 400, "invalid_op"),
        (r#"{"op": ["x"], "base": 7}"#, 409, "future_version"),
        (r#"{"op": ["x"], "client": "only-client"}"#, 400, "bad_message"),
        (r#"{"nope": 1}"#, 400, "bad_message"),
        (r#"not json"#, 400, "bad_message"),
    ] {
        let (got, text) = http_post(server.addr, path, None, body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(code), "{body}: {text}");
    }
    let (status, _) = http_post(server.addr, "/v1/rooms/team%2Fdoc-tests/docs/bad%20name/ops", None, r#"{"op": ["x"]}"#).await;
    assert_eq!(status, 400);
    assert_eq!(server.doc_text(ROOM, "notes").await.1, 2);
    let seen = ops_of(&drain(&mut bob, Duration::from_millis(100)).await);
    assert_eq!(seen.len(), 1, "one more op reached Bob: {seen:?}");
}

#[tokio::test]
async fn the_http_api_needs_its_token() {
    let server = start(|c| {
        c.api_token = Some("backend".into());
    })
    .await;
    let path = "/v1/rooms/r/docs/d/ops";
    assert_eq!(http_post(server.addr, path, None, r#"{"op": ["x"]}"#).await.0, 401);
    assert_eq!(http_post(server.addr, path, Some("wrong"), r#"{"op": ["x"]}"#).await.0, 401);
    assert_eq!(server.get("/v1/rooms/r/docs/d", None).await.0, 401);
    assert_eq!(http_post(server.addr, path, Some("backend"), r#"{"op": ["x"]}"#).await.0, 200);
    assert_eq!(server.get("/v1/rooms/r/docs/d", Some("backend")).await.0, 200);
}

#[tokio::test]
async fn a_slow_consumer_is_told_to_resync_and_recovers_through_the_same_path() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let server = start(|c| {
        c.outbox_capacity = 32;
        c.max_op_bytes = 20_000;
        c.messages_per_second = 100_000;
        // The 13 MB of ops below stay in the log, so the reconnecting
        // reader catches up with ops (the default budget would trim them).
        c.max_doc_log_bytes = 64 << 20;
    })
    .await;
    // The slow reader: a raw socket that opens the document and stops reading.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?user=slow", server.ws_url())).await.unwrap();
    for msg in [
        json!({"type": "hello", "protocol": 1}),
        json!({"type": "join", "room": ROOM}),
        json!({"type": "open_doc", "id": 1, "room": ROOM, "doc": "d", "client": "slow-1"}),
    ] {
        ws.send(Message::Text(msg.to_string().into())).await.unwrap();
    }
    let (epoch, version) = loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("socket ended") };
        if let Ok(ServerMessage::Opened { epoch, version, .. }) = serde_json::from_str(&t) {
            break (epoch, version);
        }
    };
    let mut writer = editor(&server, "writer", "d").await;
    let (mut reader, _) = watcher(&server, "reader", "d").await;
    let chunk = "x".repeat(16_000);
    // Big ops, inserted and deleted in turn, until the slow socket's buffers
    // and then its outbox are full.
    for _ in 0..400 {
        writer.insert(ROOM, "d", 0, &chunk).unwrap();
        writer.sync(ROOM, "d").await.unwrap();
        writer.delete(ROOM, "d", 0, 16_000).unwrap();
        writer.sync(ROOM, "d").await.unwrap();
    }
    writer.insert(ROOM, "d", 0, "end").unwrap();
    writer.sync(ROOM, "d").await.unwrap();
    let (text, head) = server.doc_text(ROOM, "d").await;
    assert_eq!((text.as_str(), head), ("end", 801));
    // The room was never blocked: the other reader has every op.
    let mut got = 0;
    while got < 801 {
        let m = expect(&mut reader, "ops", |m| match m {
            ServerMessage::Op { entry, .. } => Some(entry.version),
            _ => None,
        })
        .await;
        got = m;
    }
    // The slow socket ends with the slow-consumer close code after what was queued.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("the slow socket is closed") {
            Some(Ok(Message::Close(Some(f)))) => break u16::from(f.code),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, chorus_protocol::close::SLOW_CONSUMER);
    // Reconnecting from where it was, it gets the ops it missed, not a reset.
    let mut back = server.client("slow").await;
    back.join(ROOM, None).await.unwrap();
    back.send_raw(json!({"type": "open_doc", "id": 2, "room": ROOM, "doc": "d", "client": "slow-1", "since": {"epoch": epoch, "version": version}}).to_string()).unwrap();
    let ops = expect(&mut back, "catch-up", |m| match m {
        ServerMessage::Opened { id: Some(2), ops: Some(ops), reset: None, version, .. } => Some((ops.clone(), *version)),
        _ => None,
    })
    .await;
    assert_eq!(ops.1, 801);
    let mut caught_up = String::new();
    for e in &ops.0 {
        caught_up = apply_to_str(&caught_up, &e.op).unwrap();
    }
    assert_eq!(caught_up, "end");
}

#[tokio::test]
async fn documents_of_one_room_and_of_other_rooms_keep_apart() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann", "one").await;
    ann.open_doc(ROOM, "two").await.unwrap();
    let mut elsewhere = server.client("bob").await;
    elsewhere.join("other-room", None).await.unwrap();
    elsewhere.send_raw(json!({"type": "open_doc", "id": 1, "room": "other-room", "doc": "one"}).to_string()).unwrap();
    expect(&mut elsewhere, "opened", |m| matches!(m, ServerMessage::Opened { .. }).then_some(())).await;
    ann.insert(ROOM, "one", 0, "1").unwrap();
    ann.insert(ROOM, "two", 0, "2").unwrap();
    ann.sync(ROOM, "one").await.unwrap();
    ann.sync(ROOM, "two").await.unwrap();
    assert_eq!(server.doc_text(ROOM, "one").await.0, "1");
    assert_eq!(server.doc_text(ROOM, "two").await.0, "2");
    assert!(ops_of(&drain(&mut elsewhere, Duration::from_millis(100)).await).is_empty());
    // Closing a document stops its ops.
    ann.close_doc(ROOM, "two").await.unwrap();
    http_post(server.addr, "/v1/rooms/team%2Fdoc-tests/docs/two/ops", None, r#"{"op": ["z"]}"#).await;
    http_post(server.addr, "/v1/rooms/team%2Fdoc-tests/docs/one/ops", None, r#"{"op": ["y"]}"#).await;
    ann.catch_up(ROOM, "one", 2).await.unwrap();
    let seen = drain(&mut ann, Duration::from_millis(100)).await;
    assert!(!seen.iter().any(|m| matches!(m, ServerMessage::Op { doc, .. } if doc == "two")), "{seen:?}");
}
