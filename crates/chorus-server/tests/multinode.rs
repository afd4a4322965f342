//! Several Chorus nodes on one real Redis behave as one server: one member
//! list, one text, through concurrent commits on different nodes, lost
//! pub/sub connections, a Redis restart and a node killed mid-edit. Each of
//! these runs twice: on a standalone Redis (`…_on_redis`) and on a Redis
//! Cluster of three masters (`…_on_a_cluster`).

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::{LeaveReason, ServerMessage};
use chorus_redis::testing::{Persistence, Redis};
use chorus_redis::RedisStore;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{drain, expect, start_on, TestServer};

const ROOM: &str = "multi/node";

/// Runs a scenario on a standalone Redis and on a Cluster, each with the
/// persistence given.
macro_rules! on_both {
    ($scenario:ident, $persistence:expr, $standalone:ident, $cluster:ident) => {
        #[tokio::test]
        async fn $standalone() {
            $scenario(Redis::standalone($persistence)).await
        }

        #[tokio::test]
        async fn $cluster() {
            $scenario(Redis::cluster($persistence)).await
        }
    };
}

/// The Redis key of a document's log, to find the server that holds it.
fn doc_key(doc: &str) -> String {
    format!("chorus:{{{ROOM}}}:doc:{doc}:log")
}

async fn node(redis: &Redis, tune: impl FnOnce(&mut chorus_server::Config)) -> TestServer {
    let store = RedisStore::connect(&redis.url()).await.expect("connects to Redis");
    start_on(Arc::new(store), tune).await
}

async fn editor_at(url: &str, user: &str, doc: &str) -> Client {
    let options = ConnectOptions { reconnect: true, timeout: Duration::from_secs(20), ..ConnectOptions::dev(user) };
    let mut c = Client::connect(url, options).await.expect("connects");
    c.join(ROOM, None).await.expect("join");
    c.open_doc(ROOM, doc).await.expect("open");
    c
}

async fn editor(node: &TestServer, user: &str, doc: &str) -> Client {
    editor_at(&node.ws_url(), user, doc).await
}

/// Every client reaches `version` with `text`.
async fn assert_converged(clients: &mut [Client], doc: &str, text: &str, version: u64) {
    for (i, c) in clients.iter_mut().enumerate() {
        c.catch_up(ROOM, doc, version).await.unwrap_or_else(|e| panic!("client {i} did not reach version {version}: {e}"));
        let d = c.doc(ROOM, doc).unwrap();
        assert_eq!(d.version(), version, "client {i}");
        assert!(d.text().to_string() == text, "client {i} diverged");
    }
}

on_both!(three_nodes_share_one_member_list_and_converge, Persistence::None, three_nodes_converge_on_redis, three_nodes_converge_on_a_cluster);

async fn three_nodes_share_one_member_list_and_converge(redis: Redis) {
    let seed: u64 = std::env::var("CHORUS_DOC_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("three_nodes_share_one_member_list_and_converge: seed={seed} (CHORUS_DOC_SEED replays it)");
    let nodes = [node(&redis, |_| {}).await, node(&redis, |_| {}).await, node(&redis, |_| {}).await];
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(editor(&nodes[i % 3], &format!("user{i}"), "text").await);
    }
    // Every node lists all six, wherever they connected.
    for n in &nodes {
        let (_, body) = n.get("/v1/rooms/multi%2Fnode/members", None).await;
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 6, "{body}");
    }
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            for _ in 0..60 {
                let len = c.doc(ROOM, "text").unwrap().text().len_chars();
                if len == 0 || rng.random_bool(0.7) {
                    c.insert(ROOM, "text", rng.random_range(0..=len), ["a", "😭", "é"][rng.random_range(0..3)]).unwrap();
                } else {
                    c.delete(ROOM, "text", rng.random_range(0..len), 1).unwrap();
                }
                c.pump(Duration::from_millis(rng.random_range(0..3))).await;
            }
            c.sync(ROOM, "text").await.expect("sync");
            c
        }));
    }
    let mut clients: Vec<Client> = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let (text, version) = nodes[0].doc_text(ROOM, "text").await;
    for n in &nodes[1..] {
        assert_eq!(n.doc_text(ROOM, "text").await, (text.clone(), version), "seed {seed}: every node reads the same text");
    }
    assert_converged(&mut clients, "text", &text, version).await;
    assert!(nodes[2].replay_log(ROOM, "text").await == text, "seed {seed}: the log replayed from empty differs");
}

on_both!(
    concurrent_submissions_on_two_nodes_against_one_base_both_commit_once,
    Persistence::None,
    concurrent_submissions_on_two_nodes_on_redis,
    concurrent_submissions_on_two_nodes_on_a_cluster
);

async fn concurrent_submissions_on_two_nodes_against_one_base_both_commit_once(redis: Redis) {
    let (a, b, c) = (node(&redis, |_| {}).await, node(&redis, |_| {}).await, node(&redis, |_| {}).await);
    let mut on_a = a.client("ann").await;
    let mut on_b = b.client("bob").await;
    for (c, name) in [(&mut on_a, "ann"), (&mut on_b, "bob")] {
        c.join(ROOM, None).await.unwrap();
        c.send_raw(json!({"type": "open_doc", "id": 1, "room": ROOM, "doc": "race", "client": name}).to_string()).unwrap();
        expect(c, "opened", |m| matches!(m, ServerMessage::Opened { .. }).then_some(())).await;
    }
    for round in 0..20u64 {
        let base = round * 2;
        on_a.send_raw(json!({"type": "submit", "room": ROOM, "doc": "race", "seq": round + 1, "base": base, "op": ["A"]}).to_string()).unwrap();
        on_b.send_raw(json!({"type": "submit", "room": ROOM, "doc": "race", "seq": round + 1, "base": base, "op": ["B"]}).to_string()).unwrap();
        let mut versions = Vec::new();
        for c in [&mut on_a, &mut on_b] {
            let outcome = expect(c, "ack", |m| match m {
                ServerMessage::Ack { seq, version, .. } if *seq == round + 1 => Some(Ok(*version)),
                ServerMessage::Error { code, message, .. } => Some(Err(format!("{code}: {message}"))),
                _ => None,
            })
            .await;
            versions.push(outcome.unwrap_or_else(|e| panic!("round {round}: {e}")));
        }
        versions.sort();
        assert_eq!(versions, vec![base + 1, base + 2], "round {round}: both committed, in one order");
    }
    let (text, version) = a.doc_text(ROOM, "race").await;
    assert_eq!((text.matches('A').count(), text.matches('B').count(), version), (20, 20, 40));
    assert!(b.replay_log(ROOM, "race").await == text);
    assert_eq!(c.doc_text(ROOM, "race").await, (text, version), "a third node reads the same order");
}

on_both!(killed_pubsub_connections_are_noticed_and_the_gap_repaired, Persistence::None, killed_pubsub_on_redis, killed_pubsub_on_a_cluster);

async fn killed_pubsub_connections_are_noticed_and_the_gap_repaired(redis: Redis) {
    let (a, b, c) = (node(&redis, |_| {}).await, node(&redis, |_| {}).await, node(&redis, |_| {}).await);
    let mut writer = editor(&a, "writer", "d").await;
    let mut readers = [editor(&b, "reader", "d").await, editor(&c, "second-reader", "d").await];
    writer.insert(ROOM, "d", 0, "before ").unwrap();
    writer.sync(ROOM, "d").await.unwrap();
    assert_converged(&mut readers, "d", "before ", 1).await;
    for round in 0..3 {
        let killed: u32 = redis.cli_everywhere(&["CLIENT", "KILL", "TYPE", "pubsub"]).iter().map(|n| n.parse::<u32>().unwrap_or(0)).sum();
        assert!(killed >= 3, "round {round}: every node's subscriber was killed ({killed})");
        // Ops committed while the nodes are not listening.
        for i in 0..10 {
            writer.insert(ROOM, "d", 0, &format!("{round}.{i} ")).unwrap();
            writer.sync(ROOM, "d").await.unwrap();
        }
        let (text, version) = a.doc_text(ROOM, "d").await;
        assert_converged(&mut readers, "d", &text, version).await;
    }
    // And the other way round.
    readers[0].insert(ROOM, "d", 0, "reply ").unwrap();
    readers[0].sync(ROOM, "d").await.unwrap();
    let (text, version) = b.doc_text(ROOM, "d").await;
    assert_converged(std::slice::from_mut(&mut writer), "d", &text, version).await;
    assert_converged(&mut readers[1..], "d", &text, version).await;
}

on_both!(
    a_redis_restart_with_an_append_only_file_loses_no_acknowledged_op,
    Persistence::AofAlways,
    a_redis_restart_with_aof_loses_nothing_on_redis,
    a_master_restart_with_aof_loses_nothing_on_a_cluster
);

/// On a Cluster, the master holding the document restarts.
async fn a_redis_restart_with_an_append_only_file_loses_no_acknowledged_op(mut redis: Redis) {
    let (a, b, c) = (node(&redis, |_| {}).await, node(&redis, |_| {}).await, node(&redis, |_| {}).await);
    let mut on_a = editor(&a, "ann", "d").await;
    let mut on_b = editor(&b, "bob", "d").await;
    let on_c = editor(&c, "cid", "d").await;
    let mut acked = Vec::new();
    for i in 0..60 {
        if i == 30 {
            let server = redis.server_for(&doc_key("d"));
            server.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            server.restart();
        }
        let (c, token) = if i % 2 == 0 { (&mut on_a, format!("<a{i}>")) } else { (&mut on_b, format!("<b{i}>")) };
        c.insert(ROOM, "d", 0, &token).unwrap();
        if i == 29 {
            // This one is in flight when Redis dies.
            continue;
        }
        c.sync(ROOM, "d").await.unwrap_or_else(|e| panic!("op {i}: {e}"));
        acked.push(token);
    }
    on_a.sync(ROOM, "d").await.unwrap();
    let (text, version) = a.doc_text(ROOM, "d").await;
    for token in &acked {
        assert_eq!(text.matches(token.as_str()).count(), 1, "{token} in {text}");
    }
    assert_eq!(text.matches("<b29>").count(), 1, "the op in flight during the restart was committed once");
    assert_converged(&mut [on_a, on_b, on_c], "d", &text, version).await;
    assert!(b.replay_log(ROOM, "d").await == text);
}

/// A `chorus serve` process on a free port, for tests that kill nodes.
struct NodeProcess {
    child: Child,
    url: String,
}

impl NodeProcess {
    async fn start(redis: &Redis) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--redis", &redis.url(), "--presence-ttl-ms", "1500"])
            .env("CHORUS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chorus");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "chorus did not start listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, url: format!("ws://127.0.0.1:{port}/v1/ws") }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

on_both!(
    a_node_killed_mid_edit_loses_nothing_acknowledged_and_its_presence_expires_once,
    Persistence::None,
    a_node_killed_mid_edit_on_redis,
    a_node_killed_mid_edit_on_a_cluster
);

async fn a_node_killed_mid_edit_loses_nothing_acknowledged_and_its_presence_expires_once(redis: Redis) {
    let mut doomed = NodeProcess::start(&redis).await;
    let survivor = NodeProcess::start(&redis).await;
    let bystander = NodeProcess::start(&redis).await;
    let mut watcher = Client::connect(&bystander.url, ConnectOptions::dev("watcher")).await.unwrap();
    watcher.join(ROOM, None).await.unwrap();
    let mut typist = editor_at(&doomed.url, "typist", "d").await;
    let mut idle = Client::connect(&doomed.url, ConnectOptions::dev("idle")).await.unwrap();
    idle.join(ROOM, None).await.unwrap();
    let gone = [typist.connection().to_owned(), idle.connection().to_owned()];
    for i in 0..40 {
        typist.insert(ROOM, "d", 0, &format!("<{i}>")).unwrap();
        if i < 20 {
            typist.sync(ROOM, "d").await.unwrap();
        }
        if i == 25 {
            doomed.child.kill().unwrap(); // SIGKILL, mid-edit
            let _ = doomed.child.wait();
        }
    }
    // The typist's client notices, moves to the other node and resubmits.
    typist.set_url(&survivor.url);
    typist.sync(ROOM, "d").await.expect("recovers on the surviving node");
    let text = typist.doc(ROOM, "d").unwrap().text().to_string();
    for i in 0..40 {
        assert_eq!(text.matches(&format!("<{i}>")).count(), 1, "edit {i} exactly once in {text}");
    }
    // The dead node's connections leave within the TTL, once each.
    let seen = drain(&mut watcher, Duration::from_millis(3_500)).await;
    for conn in &gone {
        let leaves: Vec<&ServerMessage> =
            seen.iter().filter(|m| matches!(m, ServerMessage::MemberLeft { connection, .. } if connection == conn)).collect();
        assert_eq!(leaves.len(), 1, "one leave for {conn}: {leaves:?}");
        assert!(matches!(leaves[0], ServerMessage::MemberLeft { reason: LeaveReason::Expired, .. }));
    }
}

#[tokio::test]
async fn a_redis_outage_fails_writes_with_unavailable_and_everything_recovers_by_itself() {
    let mut redis = Redis::standalone(Persistence::AofAlways);
    let a = node(&redis, |_| {}).await;
    let mut c = editor(&a, "ann", "d").await;
    c.insert(ROOM, "d", 0, "kept ").unwrap();
    c.sync(ROOM, "d").await.unwrap();
    assert_eq!(a.get("/readyz", None).await.0, 200);
    redis.server_for(&doc_key("d")).kill();
    let started = std::time::Instant::now();
    c.insert(ROOM, "d", 0, "later ").unwrap();
    let (code, message) = expect(&mut c, "an error", |m| match m {
        ServerMessage::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    })
    .await;
    assert_eq!(code, chorus_protocol::ErrorCode::Unavailable, "{message}");
    assert!(started.elapsed() < Duration::from_secs(8), "the write failed in {:?}, not hung", started.elapsed());
    let (status, body) = a.get("/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store unavailable"), "{body}");
    redis.server_for(&doc_key("d")).restart();
    // The client resubmits by itself; the node reconnects by itself.
    c.sync(ROOM, "d").await.expect("the op goes through once Redis is back");
    assert_eq!(a.get("/readyz", None).await.0, 200);
    assert_eq!(a.doc_text(ROOM, "d").await, ("later kept ".to_string(), 2));
}

#[test]
fn start_up_fails_clearly_when_the_given_redis_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--redis", &format!("redis://user:pw@127.0.0.1:{port}")])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run chorus");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach Redis at redis://***@127.0.0.1"), "{stderr}");
    assert!(stderr.contains("--redis (CHORUS_REDIS_URL)"), "{stderr}");
    assert!(!stderr.contains("pw"), "the password stays out of the message: {stderr}");
}

#[tokio::test]
async fn a_redis_restart_without_persistence_resets_documents_and_says_so() {
    let mut redis = Redis::standalone(Persistence::None);
    let a = node(&redis, |_| {}).await;
    let mut c = editor(&a, "ann", "d").await;
    c.insert(ROOM, "d", 0, "before").unwrap();
    c.sync(ROOM, "d").await.unwrap();
    let old_epoch = c.doc(ROOM, "d").unwrap().epoch().to_owned();
    redis.server_for(&doc_key("d")).restart(); // everything in Redis is gone
    c.insert(ROOM, "d", 0, "lost ").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.doc(ROOM, "d").unwrap().resets == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the client was never told its document was reset");
        c.pump(Duration::from_millis(50)).await;
    }
    let d = c.doc(ROOM, "d").unwrap();
    assert_ne!(d.epoch(), old_epoch, "a new epoch");
    assert_eq!((d.text().to_string(), d.version(), d.lost_edits), (String::new(), 0, 1));
    // Editing goes on in the new incarnation.
    c.insert(ROOM, "d", 0, "after").unwrap();
    c.sync(ROOM, "d").await.unwrap();
    assert_eq!(a.doc_text(ROOM, "d").await, ("after".to_string(), 1));
}

on_both!(values_changed_on_three_nodes_at_once_count_every_change_once, Persistence::None, values_on_three_nodes_on_redis, values_on_three_nodes_on_a_cluster);

/// Values are written with a compare-and-set in the store; nodes racing on
/// one value retry on the newer state, so no increment is lost or doubled.
async fn values_changed_on_three_nodes_at_once_count_every_change_once(redis: Redis) {
    use chorus_protocol::{Change, ValueKind};
    let nodes = [node(&redis, |_| {}).await, node(&redis, |_| {}).await, node(&redis, |_| {}).await];
    let mut tasks = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = n.client(&format!("user{i}")).await;
        c.join(ROOM, None).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for step in 0..30 {
                c.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 1 }).await.unwrap();
                c.update_value(ROOM, "tags", ValueKind::OrSet, Change::Add { element: format!("t{i}-{}", step % 3) }).await.unwrap();
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let expected_tags: Vec<String> = (0..3).flat_map(|i| (0..3).map(move |k| format!("t{i}-{k}"))).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while c.value(ROOM, "views").map(|v| v.version) != Some(90) || c.value(ROOM, "tags").map(|v| v.version) != Some(90) {
            assert!(tokio::time::Instant::now() < deadline, "client {i} saw {:?} / {:?}", c.value(ROOM, "views"), c.value(ROOM, "tags"));
            c.pump(Duration::from_millis(20)).await;
        }
        assert_eq!(c.value(ROOM, "views").unwrap().value, json!(90), "client {i}");
        assert_eq!(c.value(ROOM, "tags").unwrap().value, json!(expected_tags), "client {i}");
    }
    // The HTTP API reads the same.
    let (_, body) = nodes[0].get("/v1/rooms/multi%2Fnode/values", None).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["values"][1]["value"], json!(90), "{body}");
}

on_both!(undo_works_from_another_node, Persistence::None, undo_from_another_node_on_redis, undo_from_another_node_on_a_cluster);

/// A user's undo history is in the store: after moving to another node,
/// undo still takes back their own edit and only theirs.
async fn undo_works_from_another_node(redis: Redis) {
    let (a, b) = (node(&redis, |_| {}).await, node(&redis, |_| {}).await);
    let mut ann = editor(&a, "ann", "u").await;
    let mut bob = editor(&b, "bob", "u").await;
    ann.insert(ROOM, "u", 0, "mine").unwrap();
    ann.sync(ROOM, "u").await.unwrap();
    bob.catch_up(ROOM, "u", 1).await.unwrap();
    bob.insert(ROOM, "u", 4, " and yours").unwrap();
    bob.sync(ROOM, "u").await.unwrap();
    // Ann's connection moves to node B.
    ann.disconnect();
    ann.set_url(&b.ws_url());
    ann.reconnect().await.unwrap();
    ann.sync(ROOM, "u").await.unwrap();
    let version = ann.undo(ROOM, "u").await.unwrap().expect("the history followed ann to node B");
    let (text, head) = a.doc_text(ROOM, "u").await;
    assert_eq!((text.as_str(), head), (" and yours", version));
    assert_converged(&mut [ann, bob], "u", " and yours", version).await;
}

on_both!(one_users_tabs_on_two_nodes_share_one_history, Persistence::None, one_history_across_nodes_on_redis, one_history_across_nodes_on_a_cluster);

/// One user, two tabs, each on another node: Ctrl-Z in either tab takes
/// back the user's latest step, wherever it was typed, and the steps go
/// back one by one, redone in turn; never refused as stale, never reported
/// done while doing nothing.
async fn one_users_tabs_on_two_nodes_share_one_history(redis: Redis) {
    let (a, b) = (node(&redis, |_| {}).await, node(&redis, |_| {}).await);
    let mut tab1 = editor(&a, "ann", "h").await;
    let mut tab2 = editor(&b, "ann", "h").await;
    let mut bob = editor(&a, "bob", "h").await;
    // Three steps, apart by more than the capture window.
    let pause = Duration::from_millis(chorus_core::undo::DEFAULT_CAPTURE_MS + 100);
    tab1.insert(ROOM, "h", 0, "one ").unwrap();
    tab1.sync(ROOM, "h").await.unwrap();
    tokio::time::sleep(pause).await;
    tab2.catch_up(ROOM, "h", 1).await.unwrap();
    tab2.insert(ROOM, "h", 4, "two ").unwrap();
    tab2.sync(ROOM, "h").await.unwrap();
    bob.catch_up(ROOM, "h", 2).await.unwrap();
    bob.insert(ROOM, "h", 8, "bob ").unwrap();
    bob.sync(ROOM, "h").await.unwrap();
    tab1.catch_up(ROOM, "h", 3).await.unwrap();
    tab2.catch_up(ROOM, "h", 3).await.unwrap();
    let steps: [(&str, bool, &str); 4] = [("tab1", true, "one bob "), ("tab2", true, "bob "), ("tab1", false, "one bob "), ("tab2", false, "one two bob ")];
    for (i, (tab, undo, expected)) in steps.into_iter().enumerate() {
        let c = if tab == "tab1" { &mut tab1 } else { &mut tab2 };
        let outcome = if undo { c.undo(ROOM, "h").await } else { c.redo(ROOM, "h").await };
        let version = outcome.unwrap_or_else(|e| panic!("step {i} in {tab}: {e}")).unwrap_or_else(|| panic!("step {i} in {tab} did nothing"));
        let (text, head) = b.doc_text(ROOM, "h").await;
        assert_eq!((text.as_str(), head), (expected, version), "step {i}: {} in {tab}", if undo { "undo" } else { "redo" });
        for c in [&mut tab1, &mut tab2, &mut bob] {
            c.catch_up(ROOM, "h", version).await.unwrap();
        }
    }
    assert_converged(&mut [tab1, tab2, bob], "h", "one two bob ", 7).await;
}

on_both!(a_full_room_admits_no_more_than_its_limit_across_nodes, Persistence::None, a_full_room_across_nodes_on_redis, a_full_room_across_nodes_on_a_cluster);

/// The members-per-room limit is checked inside the store's join, so
/// nodes racing to admit members never put more in the room than it holds.
async fn a_full_room_admits_no_more_than_its_limit_across_nodes(redis: Redis) {
    const LIMIT: usize = 2;
    let limit = |c: &mut chorus_server::Config| c.members_per_room = LIMIT;
    let nodes = [node(&redis, limit).await, node(&redis, limit).await, node(&redis, limit).await];
    for round in 0..5 {
        let room = format!("full/{round}");
        let mut clients = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            for k in 0..3 {
                clients.push(n.client(&format!("user{i}-{k}")).await);
            }
        }
        let joins = clients.into_iter().map(|mut c| {
            let room = room.clone();
            tokio::spawn(async move {
                let admitted = c.join(&room, None).await.is_ok();
                (admitted, c)
            })
        });
        let mut kept = Vec::new();
        for join in joins.collect::<Vec<_>>() {
            kept.push(join.await.unwrap());
        }
        let admitted = kept.iter().filter(|(ok, _)| *ok).count();
        let (_, body) = nodes[0].get(&format!("/v1/rooms/{}/members", room.replace('/', "%2F")), None).await;
        let listed = serde_json::from_str::<Value>(&body).unwrap()["count"].as_u64().unwrap() as usize;
        assert!(admitted <= LIMIT && listed <= LIMIT, "round {round}: {admitted} joins admitted, {listed} listed, in a room of {LIMIT}");
        assert_eq!(admitted, LIMIT, "round {round}: the room fills up to its limit");
        assert_eq!(listed, admitted, "round {round}: {body}");
    }
}
