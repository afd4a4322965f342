//! Shared values (CRDTs) over real sockets: every kind converges on every
//! client under concurrent changes, joiners and reconnecting clients get the
//! current state, bad changes get typed errors and change nothing, and the
//! HTTP API reads and writes them.

mod support;

use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::{Change, ErrorCode, ServerMessage, ValueKind};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{drain, expect, http_post, start, start_with_reader};

const ROOM: &str = "team/values";

async fn member(server: &support::TestServer, user: &str) -> Client {
    let mut c = server.connect(ConnectOptions { reconnect: true, ..ConnectOptions::dev(user) }).await;
    c.join(ROOM, None).await.expect("join");
    c
}

/// Waits until the client has been told `name` at `version`.
async fn wait_for_version(c: &mut Client, name: &str, version: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = c.value(ROOM, name).filter(|v| v.version >= version) {
            return v.value.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never reached version {version}: {:?}", c.value(ROOM, name));
        c.pump(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn values_of_every_kind_converge_under_concurrent_changes() {
    let seed: u64 = std::env::var("CHORUS_VALUE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("values_of_every_kind_converge_under_concurrent_changes: seed={seed} (CHORUS_VALUE_SEED replays it)");
    let server = start(|c| c.messages_per_second = 10_000).await;
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let mut c = member(&server, &format!("user{i}")).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(i));
            let (mut ups, mut downs) = (0i64, 0i64);
            for step in 0..40 {
                let outcome = match rng.random_range(0..5) {
                    0 => c.update_value(ROOM, "title", ValueKind::Register, Change::Set { value: json!(format!("title {i}.{step}")) }).await,
                    1 => {
                        ups += 1;
                        c.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 1 }).await
                    }
                    2 => {
                        let by = rng.random_range(-3..=3);
                        downs += by;
                        c.update_value(ROOM, "score", ValueKind::PnCounter, Change::Increment { by }).await
                    }
                    3 => {
                        let element = ["red", "green", "blue"][rng.random_range(0..3)].to_owned();
                        let change = if rng.random_bool(0.6) { Change::Add { element } } else { Change::Remove { element } };
                        c.update_value(ROOM, "tags", ValueKind::OrSet, change).await
                    }
                    _ => {
                        let key = ["a", "b"][rng.random_range(0..2)].to_owned();
                        let change = if rng.random_bool(0.8) { Change::MapSet { key, value: json!(step) } } else { Change::MapDelete { key } };
                        c.update_value(ROOM, "settings", ValueKind::LwwMap, change).await
                    }
                };
                outcome.unwrap_or_else(|e| panic!("seed {seed}: client {i} step {step}: {e}"));
            }
            (c, ups, downs)
        }));
    }
    let mut clients = Vec::new();
    let (mut views, mut score) = (0i64, 0i64);
    for t in tasks {
        let (c, ups, downs) = t.await.unwrap();
        clients.push(c);
        views += ups;
        score += downs;
    }
    // The server's state, read over HTTP, is what every client ends with.
    let (status, body) = server.get("/v1/rooms/team%2Fvalues/values", None).await;
    assert_eq!(status, 200, "{body}");
    let stored: Vec<Value> = serde_json::from_str::<Value>(&body).unwrap()["values"].as_array().unwrap().clone();
    for value in &stored {
        let (name, version) = (value["name"].as_str().unwrap(), value["version"].as_u64().unwrap());
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(&wait_for_version(c, name, version).await, &value["value"], "seed {seed}: client {i} disagrees on {name}");
        }
    }
    let by_name = |n: &str| stored.iter().find(|v| v["name"] == n).map(|v| v["value"].clone());
    assert_eq!(by_name("views").unwrap_or(json!(0)), json!(views), "seed {seed}: every increment counted once");
    assert_eq!(by_name("score").unwrap_or(json!(0)), json!(score), "seed {seed}");
    // A joiner gets every value in `joined`.
    let mut late = server.client("late").await;
    let joined = late.join(ROOM, None).await.unwrap();
    assert_eq!(serde_json::to_value(&joined.values).unwrap(), Value::Array(stored.clone()));
}

#[tokio::test]
async fn a_write_reaches_everyone_once_and_survives_a_reconnect() {
    let server = start(|_| {}).await;
    let mut ann = member(&server, "ann").await;
    let mut bob = member(&server, "bob").await;
    let version = ann.update_value(ROOM, "title", ValueKind::Register, Change::Set { value: json!("Q3 plan") }).await.unwrap();
    assert_eq!(version, 1);
    assert_eq!(wait_for_version(&mut bob, "title", 1).await, json!("Q3 plan"));
    assert_eq!(ann.value(ROOM, "title").map(|v| v.value.clone()), Some(json!("Q3 plan")), "the writer is told too");
    // Bob is away while Ann writes again; he is told when he comes back.
    bob.disconnect();
    ann.update_value(ROOM, "title", ValueKind::Register, Change::Set { value: json!("Q4 plan") }).await.unwrap();
    bob.reconnect().await.unwrap();
    assert_eq!(wait_for_version(&mut bob, "title", 2).await, json!("Q4 plan"));
    // Each write was told once.
    let mut watcher = server.client("watcher").await;
    watcher.join(ROOM, None).await.unwrap();
    ann.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 5 }).await.unwrap();
    let seen = drain(&mut watcher, Duration::from_millis(200)).await;
    let told: Vec<(String, u64)> = seen
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Value { value, .. } => Some((value.name.clone(), value.version)),
            _ => None,
        })
        .collect();
    assert_eq!(told, [("views".to_owned(), 1)]);
}

async fn error(c: &mut Client, what: &str) -> (ErrorCode, String) {
    expect(c, what, |m| match m {
        ServerMessage::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn bad_changes_get_typed_errors_and_change_nothing() {
    let server = start(|c| {
        c.max_value_bytes = 1_000;
        c.values_per_room = 3;
    })
    .await;
    let mut ann = member(&server, "ann").await;
    let mut bystander = server.client("bystander").await;
    bystander.join(ROOM, None).await.unwrap();
    ann.update_value(ROOM, "title", ValueKind::Register, Change::Set { value: json!("kept") }).await.unwrap();
    ann.update_value(ROOM, "score", ValueKind::PnCounter, Change::Increment { by: i64::MAX }).await.unwrap();
    ann.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 1 }).await.unwrap();
    drain(&mut bystander, Duration::from_millis(100)).await;
    let before = server.get("/v1/rooms/team%2Fvalues/values", None).await.1;
    let cases = [
        (json!({"type": "update_value", "room": ROOM, "name": "title", "kind": "g_counter", "change": {"op": "increment", "by": 1}}), ErrorCode::WrongKind),
        (json!({"type": "update_value", "room": ROOM, "name": "title", "kind": "register", "change": {"op": "add", "element": "x"}}), ErrorCode::WrongKind),
        (json!({"type": "update_value", "room": ROOM, "name": "score", "kind": "pn_counter", "change": {"op": "increment", "by": 1}}), ErrorCode::ValueOverflow),
        (json!({"type": "update_value", "room": ROOM, "name": "views", "kind": "g_counter", "change": {"op": "increment", "by": -1}}), ErrorCode::ValueOverflow),
        (json!({"type": "update_value", "room": ROOM, "name": "title", "kind": "register", "change": {"op": "set", "value": "x".repeat(2_000)}}), ErrorCode::ValueTooLarge),
        (json!({"type": "update_value", "room": ROOM, "name": "a fourth", "kind": "or_set", "change": {"op": "add", "element": "x"}}), ErrorCode::InvalidValue),
        (json!({"type": "update_value", "room": ROOM, "name": "fourth", "kind": "or_set", "change": {"op": "add", "element": "x"}}), ErrorCode::TooManyValues),
        (json!({"type": "update_value", "room": "elsewhere", "name": "t", "kind": "register", "change": {"op": "set", "value": 1}}), ErrorCode::NotJoined),
        (json!({"type": "update_value", "room": ROOM, "name": "t", "kind": "vector", "change": {"op": "set", "value": 1}}), ErrorCode::BadMessage),
        (json!({"type": "update_value", "room": ROOM, "name": "t", "kind": "register", "change": {"op": "set", "value": 1, "extra": 2}}), ErrorCode::BadMessage),
        (json!({"type": "update_value", "room": ROOM, "name": "views", "kind": "g_counter", "change": {"op": "increment", "by": "one"}}), ErrorCode::BadMessage),
    ];
    for (i, (msg, code)) in cases.into_iter().enumerate() {
        let mut msg = msg;
        msg["id"] = json!(100 + i);
        ann.send_raw(msg.to_string()).unwrap();
        let (got, message) = error(&mut ann, "an error").await;
        assert_eq!(got, code, "case {i}: {message}");
        assert!(!message.is_empty());
    }
    // Nothing changed, nobody was told anything, and the connection works.
    assert_eq!(server.get("/v1/rooms/team%2Fvalues/values", None).await.1, before);
    let seen = drain(&mut bystander, Duration::from_millis(100)).await;
    assert!(!seen.iter().any(|m| matches!(m, ServerMessage::Value { .. })), "{seen:?}");
    assert_eq!(ann.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 2 }).await.unwrap(), 2);
}

#[tokio::test]
async fn a_read_only_token_cannot_change_values() {
    let (_server, mut c) = start_with_reader(ROOM).await;
    let err = c.update_value(ROOM, "t", ValueKind::Register, Change::Set { value: json!(1) }).await.unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn the_http_api_changes_values_that_reach_every_client() {
    let server = start(|_| {}).await;
    let mut bob = member(&server, "bob").await;
    let path = "/v1/rooms/team%2Fvalues/values/tags";
    let (status, body) = http_post(server.addr, path, None, r#"{"kind": "or_set", "change": {"op": "add", "element": "urgent"}}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["version"], 1);
    assert_eq!(wait_for_version(&mut bob, "tags", 1).await, json!(["urgent"]));
    for (body, status, code) in [
        (r#"{"kind": "register", "change": {"op": "set", "value": 1}}"#, 409, "wrong_kind"),
        (r#"{"kind": "or_set"}"#, 400, "bad_message"),
        (r#"not json"#, 400, "bad_message"),
    ] {
        let (got, text) = http_post(server.addr, path, None, body).await;
        assert_eq!(got, status, "{body}: {text}");
        assert!(text.contains(code), "{body}: {text}");
    }
    let (status, _) = http_post(server.addr, "/v1/rooms/team%2Fvalues/values/bad%20name", None, r#"{"kind": "register", "change": {"op": "set", "value": 1}}"#).await;
    assert_eq!(status, 400);
}
