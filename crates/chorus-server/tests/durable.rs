//! The default store on the real binary: `chorus serve` keeps documents and
//! values in its data folder across a restart (a client reconnecting with
//! the version it had carries on, no reset, no lost edit), leaves no ghost
//! members from before the restart, refuses a second server on the same
//! folder and a file that is not its database, and never overwrites one.

mod process;

use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::{Change, ValueKind};
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
