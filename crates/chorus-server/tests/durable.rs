//! The default store on the real binary: `chorus serve` keeps documents and
//! values in its data folder across a restart (a client reconnecting with
//! the version it had carries on, no reset, no lost edit), leaves no ghost
//! members from before the restart, refuses a second server on the same
//! folder and a file that is not its database, and never overwrites one.
//! An older backup restored under clients that saw later ops (what a machine
//! crash with `--sqlite-sync normal` also does) is told apart from the
//! history they saw: each is told by a reset, never handed foreign ops.

mod process;

use std::time::Duration;

use chorus_client::{Client, ConnectOptions, Event};
use chorus_protocol::{Change, ResetReason, ServerMessage, ValueKind};
use process::Chorus;
use serde_json::json;

const ROOM: &str = "durable";

async fn editor(url: &str, user: &str) -> Client {
    let mut c = Client::connect(url, ConnectOptions::dev(user)).await.expect("connects");
    c.join(ROOM, None).await.expect("joins");
    c.open_doc(ROOM, "d").await.expect("opens");
    c
}

#[tokio::test]
async fn a_restart_keeps_documents_and_values_and_forgets_presence() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Chorus::start(&data, &[]).await;
    let log = first.log_text();
    let db = data.join("chorus.db");
    assert!(log.contains("created a new database"), "the first start says it created the database: {log}");
    assert!(log.contains(&db.canonicalize().unwrap().display().to_string()), "and where: {log}");

    let mut ann = editor(&first.url(), "ann").await;
    let mut bob = Client::connect(&first.url(), ConnectOptions::dev("bob")).await.unwrap();
    bob.join(ROOM, None).await.unwrap();
    for i in 0..20 {
        ann.insert(ROOM, "d", 0, &format!("<{i}>")).unwrap();
    }
    ann.sync(ROOM, "d").await.unwrap();
    ann.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 3 }).await.unwrap();
    let (epoch, version, text) = {
        let d = ann.doc(ROOM, "d").unwrap();
        (d.epoch().to_owned(), d.version(), d.text().to_string())
    };

    first.kill();
    let second = Chorus::start(&data, &[]).await;
    assert!(second.log_text().contains("opened the database"), "{}", second.log_text());
    ann.set_url(&second.url());
    ann.reconnect().await.expect("reconnects");
    ann.sync(ROOM, "d").await.unwrap();
    let d = ann.doc(ROOM, "d").unwrap();
    assert_eq!((d.epoch(), d.version(), d.text().to_string()), (epoch.as_str(), version, text.clone()), "carried on: same log, no reset");
    ann.insert(ROOM, "d", 0, "<after>").unwrap();
    ann.sync(ROOM, "d").await.unwrap();

    let mut carol = Client::connect(&second.url(), ConnectOptions::dev("carol")).await.unwrap();
    let joined = carol.join(ROOM, None).await.unwrap();
    let users: Vec<&str> = joined.members.iter().map(|m| m.user.id.as_str()).collect();
    assert!(!users.contains(&"bob"), "no ghost of bob's connection from before the restart: {users:?}");
    assert!(users.contains(&"ann"), "{users:?}");
    let views = joined.values.iter().find(|v| v.name == "views").expect("the value survived the restart");
    assert_eq!((views.version, &views.value), (1, &json!(3)));
    let opened = carol.open_doc(ROOM, "d").await.unwrap();
    assert_eq!(opened.text().to_string(), format!("<after>{text}"));
    assert_eq!(opened.version(), version + 1);
    drop(bob);
}

/// A histogram's count in a scrape.
fn count(body: &str, histogram: &str) -> u64 {
    let prefix = format!("{histogram}_count ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no {histogram}:\n{body}"))
}

#[tokio::test]
async fn every_commit_and_checkpoint_of_the_store_is_timed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Chorus::start(&dir.path().join("data"), &[]).await;
    let mut ann = editor(&server.url(), "ann").await;
    // Each op acknowledged before the next is sent: a transaction each,
    // more than the writer commits between two checkpoints.
    for _ in 0..150 {
        ann.insert(ROOM, "d", 0, "x").unwrap();
        ann.sync(ROOM, "d").await.unwrap();
    }
    let addr = server.addr().to_string();
    let (status, body) = process::http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(count(&body, "chorus_sqlite_commit_seconds") >= 150, "{body}");
    assert!(body.contains("chorus_sqlite_commit_seconds_bucket{le=\"0.001\"}"), "{body}");
    // The checkpoint runs on a thread of its own, beside the writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&process::http_get(&addr, "/metrics").1, "chorus_sqlite_checkpoint_seconds") == 0 {
        assert!(std::time::Instant::now() < deadline, "no checkpoint timed after 150 transactions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_second_server_on_the_same_data_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Chorus::start(dir.path(), &[]).await;
    let (ok, stderr) = process::run_to_exit(dir.path(), &[]).await;
    assert!(!ok, "the second server must not start");
    assert!(stderr.contains("another Chorus server is using this database"), "{stderr}");
    // The first is unharmed.
    let mut c = editor(&first.url(), "ann").await;
    c.insert(ROOM, "d", 0, "still here").unwrap();
    c.sync(ROOM, "d").await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_chorus_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chorus.db");
    let garbage = b"SQLite format 3\0 but then nothing that makes sense ".repeat(100);
    std::fs::write(&db, &garbage).unwrap();
    let (ok, stderr) = process::run_to_exit(dir.path(), &[]).await;
    assert!(!ok);
    assert!(stderr.contains("not a Chorus database"), "{stderr}");
    assert_eq!(std::fs::read(&db).unwrap(), garbage, "never overwritten");
}

#[tokio::test]
async fn memory_mode_keeps_nothing_and_writes_no_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let server = Chorus::start_in(dir.path(), &["--memory"]).await;
    let mut c = editor(&server.url(), "ann").await;
    c.insert(ROOM, "d", 0, "x").unwrap();
    c.sync(ROOM, "d").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!dir.path().join("chorus-data").exists(), "--memory writes nothing");
    assert!(server.log_text().contains("in-memory"), "{}", server.log_text());
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_into_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (data, restored, backup) = (dir.path().join("data"), dir.path().join("restored"), dir.path().join("backup.db"));
    let server = Chorus::start(&data, &[]).await;
    let mut ann = editor(&server.url(), "ann").await;
    ann.insert(ROOM, "d", 0, "in the backup").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    let (ok, out) = process::run(&["backup".as_ref(), backup.as_os_str(), "--data".as_ref(), data.as_os_str()]);
    assert!(ok, "chorus backup, while the server runs: {out}");
    let (ok, out) = process::run(&["backup".as_ref(), backup.as_os_str(), "--data".as_ref(), data.as_os_str()]);
    assert!(!ok && out.contains("never overwrites"), "{out}");
    ann.insert(ROOM, "d", 0, "after it; ").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    let (ok, out) = process::run(&["restore".as_ref(), backup.as_os_str(), "--data".as_ref(), data.as_os_str()]);
    assert!(!ok && out.contains("another Chorus server"), "no restore under a running server: {out}");
    drop(server);
    let (ok, out) = process::run(&["restore".as_ref(), backup.as_os_str(), "--data".as_ref(), restored.as_os_str()]);
    assert!(ok, "chorus restore: {out}");
    let server = Chorus::start(&restored, &[]).await;
    let mut bob = editor(&server.url(), "bob").await;
    assert_eq!(bob.doc(ROOM, "d").unwrap().text().to_string(), "in the backup");
    bob.insert(ROOM, "d", 0, "and on; ").unwrap();
    bob.sync(ROOM, "d").await.unwrap();
}

/// Opens the document on a fresh connection with `since` at `(version,
/// digest)` of `epoch`: the reset reason the server answers with, and the
/// text it sends.
async fn reopen_since(url: &str, epoch: &str, version: u64, digest: &str) -> (Option<ResetReason>, Option<String>, u64) {
    let mut c = Client::connect(url, ConnectOptions::dev("probe")).await.expect("connects");
    c.join(ROOM, None).await.expect("joins");
    let since = json!({"epoch": epoch, "version": version, "digest": digest});
    c.send_raw(json!({"type": "open_doc", "id": 77, "room": ROOM, "doc": "d", "since": since}).to_string()).unwrap();
    c.wait_for(|e| match e {
        Event::Message(ServerMessage::Opened { id: Some(77), reset, text, version, .. }) => Some((*reset, text.clone(), *version)),
        _ => None,
    })
    .await
    .expect("opened")
}

/// The store goes back to an older backup while clients that saw later
/// ops are away: the versions it lost are given to other ops. A client at
/// a version the store has again with another history is told
/// `diverged`, one past the store's head `ahead`; a client of the server's
/// own client library that reconnects is reset and converges, its lost
/// edits gone and nobody else's ops taken for its own.
#[tokio::test]
async fn an_older_backup_restored_under_clients_who_saw_more_is_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backup) = (dir.path().join("data"), dir.path().join("backup.db"));
    let mut first = Chorus::start(&data, &[]).await;
    let options = ConnectOptions { reconnect: true, ..ConnectOptions::dev("ann") };
    let mut ann = Client::connect(&first.url(), options).await.unwrap();
    ann.join(ROOM, None).await.unwrap();
    ann.open_doc(ROOM, "d").await.unwrap();
    for i in 0..5 {
        ann.insert(ROOM, "d", 0, &format!("<kept{i}>")).unwrap();
        ann.sync(ROOM, "d").await.unwrap();
    }
    let (ok, out) = process::run(&["backup".as_ref(), backup.as_os_str(), "--data".as_ref(), data.as_os_str()]);
    assert!(ok, "chorus backup: {out}");
    // Versions 6 and 7 of the history ann and "away" saw; then 8 to 12.
    for i in 0..2 {
        ann.insert(ROOM, "d", 0, &format!("<lost{i}>")).unwrap();
        ann.sync(ROOM, "d").await.unwrap();
    }
    let away = {
        let d = ann.doc(ROOM, "d").unwrap();
        (d.epoch().to_owned(), d.version(), d.digest().expect("a digest at the head").to_owned())
    };
    assert_eq!(away.1, 7);
    for i in 2..7 {
        ann.insert(ROOM, "d", 0, &format!("<lost{i}>")).unwrap();
        ann.sync(ROOM, "d").await.unwrap();
    }
    let ahead = {
        let d = ann.doc(ROOM, "d").unwrap();
        (d.version(), d.digest().unwrap().to_owned())
    };
    assert_eq!(ahead.0, 12);
    ann.disconnect();
    first.kill();
    let (ok, out) = process::run(&["restore".as_ref(), backup.as_os_str(), "--data".as_ref(), data.as_os_str()]);
    assert!(ok, "chorus restore: {out}");
    let second = Chorus::start(&data, &[]).await;
    // Versions 6 to 10 of another history.
    let mut bob = editor(&second.url(), "bob").await;
    for i in 0..5 {
        bob.insert(ROOM, "d", 0, &format!("<new{i}>")).unwrap();
        bob.sync(ROOM, "d").await.unwrap();
    }
    let text = bob.doc(ROOM, "d").unwrap().text().to_string();
    assert!(!text.contains("<lost") && text.contains("<kept4>") && text.contains("<new4>"), "{text}");

    let (reset, sent, version) = reopen_since(&second.url(), &away.0, away.1, &away.2).await;
    assert_eq!((reset, sent.as_deref(), version), (Some(ResetReason::Diverged), Some(text.as_str()), 10), "version 7 names another op now");
    let (reset, sent, _) = reopen_since(&second.url(), &away.0, ahead.0, &ahead.1).await;
    assert_eq!((reset, sent.as_deref()), (Some(ResetReason::Ahead), Some(text.as_str())), "version 12 is past the store's head");

    // The client library, reconnecting from version 12, is reset onto the
    // store's history, and edits on from there.
    ann.set_url(&second.url());
    ann.reconnect().await.expect("reconnects");
    ann.insert(ROOM, "d", 0, "<after>").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    let d = ann.doc(ROOM, "d").unwrap();
    assert!(d.resets >= 1, "ann was told its history is gone");
    assert_eq!((d.version(), d.text().to_string()), (11, format!("<after>{text}")));
    bob.catch_up(ROOM, "d", 11).await.unwrap();
    assert_eq!(bob.doc(ROOM, "d").unwrap().text().to_string(), format!("<after>{text}"));
    // Ann's undo history came back with the file, as of the backup: on the
    // embedded store the store cannot go back under a running node (a
    // restore needs it stopped), so no history of the lost ops survives in
    // a node. Her latest step is her edit after the restore.
    assert_eq!(ann.undo(ROOM, "d").await.unwrap(), Some(12));
    bob.catch_up(ROOM, "d", 12).await.unwrap();
    assert_eq!(bob.doc(ROOM, "d").unwrap().text().to_string(), text, "only <after> was taken back");
}
