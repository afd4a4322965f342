//! A store that goes back in time is noticed, never trusted: after an older
//! backup is restored (or a replica that was behind takes over), the same
//! version numbers name other ops. Clients that reopen with where they were
//! (and its digest) are told they diverged and get the text; replicas that
//! hear ops of the other history reload and tell their readers; commits
//! made on the old history are refused. Every client ends with the store's
//! text, and every client whose acknowledged ops were lost was told.
//! Each runs on a standalone Redis and on a 3-master Cluster.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_redis::testing::{Persistence, Redis};
use chorus_redis::RedisStore;
use support::{start_on, TestServer};

const ROOM: &str = "fence/room";
const DOC: &str = "d";

/// Any key of the room: they all live on the server of its hash tag.
fn room_key() -> String {
    format!("chorus:{{{ROOM}}}:anything")
}

macro_rules! on_both {
    ($scenario:ident, $standalone:ident, $cluster:ident) => {
        #[tokio::test]
        async fn $standalone() {
            $scenario(Redis::standalone(Persistence::AofAlways)).await
        }

        #[tokio::test]
        async fn $cluster() {
            $scenario(Redis::cluster(Persistence::AofAlways)).await
        }
    };
}

async fn node(redis: &Redis) -> TestServer {
    let store = RedisStore::connect(&redis.url()).await.expect("connects to Redis");
    start_on(Arc::new(store), |c| c.reconcile_interval_ms = 300).await
}

async fn editor(node: &TestServer, user: &str) -> Client {
    let options = ConnectOptions { reconnect: true, timeout: Duration::from_secs(20), ..ConnectOptions::dev(user) };
    let mut c = Client::connect(&node.ws_url(), options).await.expect("connects");
    c.join(ROOM, None).await.expect("join");
    c.open_doc(ROOM, DOC).await.expect("open");
    c
}

async fn type_acked(c: &mut Client, token: &str) {
    c.insert(ROOM, DOC, 0, token).unwrap();
    c.sync(ROOM, DOC).await.unwrap_or_else(|e| panic!("{token}: {e}"));
}

/// Every client reaches the store's text (read on `reference`), within a
/// few seconds of being pumped.
async fn assert_converged(reference: &TestServer, clients: &mut [(&str, &mut Client)]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (text, version) = reference.doc_text(ROOM, DOC).await;
        let mut behind = Vec::new();
        for (name, c) in clients.iter_mut() {
            c.pump(Duration::from_millis(20)).await;
            let d = c.doc(ROOM, DOC).unwrap();
            if d.version() != version || d.text().to_string() != text || !d.is_synchronized() {
                behind.push(format!("{name} at {} with {:?}", d.version(), d.text().to_string()));
            }
        }
        if behind.is_empty() {
            assert!(reference.replay_log(ROOM, DOC).await == text, "the log replays to the text");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "not converged on {text:?} (version {version}): {behind:?}");
    }
}

on_both!(a_restored_backup_is_told_apart_from_the_history_clients_saw, a_restored_backup_on_redis, a_restored_backup_on_a_cluster);

/// An older backup restored under running nodes: Redis restarts with the
/// data of an earlier moment, and new ops take the versions of lost ones.
async fn a_restored_backup_is_told_apart_from_the_history_clients_saw(mut redis: Redis) {
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut writer = editor(&a, "writer").await;
    let mut reader = editor(&a, "reader").await;
    for i in 0..5 {
        type_acked(&mut writer, &format!("<kept{i}>")).await;
    }
    let backup = redis.server_for(&room_key()).save_rdb();
    for i in 0..2 {
        type_acked(&mut writer, &format!("<lost{i}>")).await;
    }
    // Someone who saw version 7 of this history goes away for a while.
    let mut away = editor(&a, "away").await;
    away.catch_up(ROOM, DOC, 7).await.unwrap();
    away.disconnect();
    for i in 2..5 {
        type_acked(&mut writer, &format!("<lost{i}>")).await;
    }
    redis.server_for(&room_key()).restore_rdb(&backup);
    if let Redis::Cluster(c) = &redis {
        c.wait_until_serving();
    }
    // New ops take versions 6 to 10 of another history, through node b.
    let mut newcomer = editor(&b, "newcomer").await;
    for i in 0..5 {
        type_acked(&mut newcomer, &format!("<new{i}>")).await;
    }
    // The one who went away comes back, to node b: it must not take ops 8
    // to 10 of the new history as the continuation of its version 7.
    away.set_url(&b.ws_url());
    away.reconnect().await.unwrap();
    let mut clients = [("writer", &mut writer), ("reader", &mut reader), ("away", &mut away), ("newcomer", &mut newcomer)];
    assert_converged(&b, &mut clients).await;
    let (text, _) = b.doc_text(ROOM, DOC).await;
    assert!(!text.contains("<lost"), "the restored store holds none of the lost ops: {text}");
    assert!(text.contains("<kept4>") && text.contains("<new4>"), "{text}");
    assert!(away.doc(ROOM, DOC).unwrap().resets >= 1, "the returning client was told its history is gone");
    assert!(writer.doc(ROOM, DOC).unwrap().resets >= 1, "the writer whose acknowledged ops were lost was told");
    assert_eq!(a.doc_text(ROOM, DOC).await, b.doc_text(ROOM, DOC).await, "both nodes read the store's history");
}

on_both!(a_store_gone_back_under_live_connections_is_noticed, gone_back_in_place_on_redis, gone_back_in_place_on_a_cluster);

/// The room's keys go back in time while Redis and every connection stay
/// up (as when a replica that was behind takes over): no lost connection
/// says anything happened. Node a's replica hears new ops at versions it
/// holds other ops at; it reloads and tells its readers. A commit made on
/// the old history is refused, not stacked on the new one.
async fn a_store_gone_back_under_live_connections_is_noticed(mut redis: Redis) {
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut writer = editor(&a, "writer").await;
    let mut reader = editor(&a, "reader").await;
    for i in 0..5 {
        type_acked(&mut writer, &format!("<kept{i}>")).await;
    }
    let pattern = format!("chorus:{{{ROOM}}}:*");
    let earlier = redis.server_for(&room_key()).dump_keys(&pattern);
    for i in 0..5 {
        type_acked(&mut writer, &format!("<lost{i}>")).await;
    }
    reader.catch_up(ROOM, DOC, 10).await.unwrap();
    redis.server_for(&room_key()).restore_keys(&pattern, &earlier);
    let mut newcomer = editor(&b, "newcomer").await;
    for i in 0..7 {
        type_acked(&mut newcomer, &format!("<new{i}>")).await;
    }
    // The writer goes on typing on node a, from its version 10.
    writer.insert(ROOM, DOC, 0, "<after>").unwrap();
    let mut clients = [("writer", &mut writer), ("reader", &mut reader), ("newcomer", &mut newcomer)];
    assert_converged(&b, &mut clients).await;
    let (text, _) = b.doc_text(ROOM, DOC).await;
    assert!(!text.contains("<lost"), "{text}");
    assert!(reader.doc(ROOM, DOC).unwrap().resets >= 1, "the reader of node a was told, not left on the old history");
    assert_eq!(a.doc_text(ROOM, DOC).await, b.doc_text(ROOM, DOC).await, "node a reloaded");
}

on_both!(an_undo_history_of_lost_ops_is_never_applied_to_the_store_s_history, lost_undo_history_on_redis, lost_undo_history_on_a_cluster);

/// The user's undo history follows the store back in time. Node a keeps
/// ann's history of ops that an older backup then loses, and saves it when
/// she leaves, before anything tells it the store went back; others take
/// those versions (and more) with other ops. When ann comes back and
/// presses undo, a step built on the lost text must not be applied to the
/// store's: her undo takes back only her own text of the store's history
/// (or nothing), and the redo puts exactly that back.
async fn an_undo_history_of_lost_ops_is_never_applied_to_the_store_s_history(mut redis: Redis) {
    let (a, b) = (node(&redis).await, node(&redis).await);
    let mut ann = editor(&a, "ann").await;
    for i in 0..3 {
        type_acked(&mut ann, &format!("<kept{i}>")).await;
    }
    let backup = redis.server_for(&room_key()).save_rdb();
    // Versions 4 to 8, in ann's history on node a, of the history the store
    // is about to lose.
    for i in 0..5 {
        type_acked(&mut ann, &format!("<lost{i}>")).await;
    }
    redis.server_for(&room_key()).restore_rdb(&backup);
    if let Redis::Cluster(c) = &redis {
        c.wait_until_serving();
    }
    // Node a is connected to the store again; then ann leaves, and node a
    // saves the history it holds.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ann.disconnect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Versions 4 to 10 of another history, through node b.
    let mut newcomer = editor(&b, "newcomer").await;
    for i in 0..7 {
        type_acked(&mut newcomer, &format!("<new{i}>")).await;
    }
    ann.set_url(&b.ws_url());
    ann.reconnect().await.unwrap();
    ann.sync(ROOM, DOC).await.unwrap();
    let mut clients = [("ann", &mut ann), ("newcomer", &mut newcomer)];
    assert_converged(&b, &mut clients).await;
    let (before, _) = b.doc_text(ROOM, DOC).await;
    assert!(ann.doc(ROOM, DOC).unwrap().resets >= 1, "ann was told her history is gone");
    let undone = ann.undo(ROOM, DOC).await.expect("undo");
    let (after_undo, _) = b.doc_text(ROOM, DOC).await;
    // Only ann's text of the store's history may go, and only whole steps.
    let others = |t: &str| (0..3).fold(t.to_owned(), |t, i| t.replace(&format!("<kept{i}>"), ""));
    assert_eq!(others(&after_undo), others(&before), "ann's undo (at {undone:?}) took back others' text: {before:?} became {after_undo:?}");
    if undone.is_some() {
        assert_ne!(after_undo, before, "the undo took something back");
        assert!(ann.redo(ROOM, DOC).await.expect("redo").is_some(), "what was undone can be redone");
    }
    let mut clients = [("ann", &mut ann), ("newcomer", &mut newcomer)];
    assert_converged(&b, &mut clients).await;
    assert_eq!(b.doc_text(ROOM, DOC).await.0, before, "the undo and the redo gave the text back");
    assert_eq!(a.doc_text(ROOM, DOC).await, b.doc_text(ROOM, DOC).await, "both nodes read the store's history");
}
