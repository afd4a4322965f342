//! `chorus export` and `chorus import` on the real binary: a room written on
//! the embedded store moves to Redis and back with the same documents
//! (text, version, epoch, digest) and values; a client that was at the head
//! carries on against the new store without a reset; an import into a room
//! that has the documents already is refused, with nothing changed, unless
//! `--replace` is given.

mod process;

use std::ffi::OsStr;
use std::path::Path;

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::{Change, ValueKind};
use chorus_redis::testing::RedisServer;
use process::Chorus;
use serde_json::Value;

const ROOM: &str = "move/me";

fn run(args: &[&str]) -> (bool, String) {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    process::run(&args)
}

/// The lines of an export, parsed.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn a_room_moves_from_sqlite_to_redis_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let (data, back) = (dir.path().join("data"), dir.path().join("back"));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // A room on the embedded store.
    let mut first = Chorus::start(&data, &[]).await;
    let mut ann = Client::connect(&first.url(), ConnectOptions::dev("ann")).await.unwrap();
    ann.join(ROOM, None).await.unwrap();
    for (doc, text) in [("notes", "héllo 😀 wörld"), ("todo", "one\ntwo")] {
        ann.open_doc(ROOM, doc).await.unwrap();
        for (i, part) in text.split(' ').enumerate() {
            let at = ann.doc(ROOM, doc).unwrap().text().len_chars();
            ann.insert(ROOM, doc, at, &if i == 0 { part.to_owned() } else { format!(" {part}") }).unwrap();
        }
        ann.sync(ROOM, doc).await.unwrap();
    }
    ann.open_doc(ROOM, "untouched").await.unwrap();
    ann.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 3 }).await.unwrap();
    let (epoch, version, text) = {
        let d = ann.doc(ROOM, "notes").unwrap();
        (d.epoch().to_owned(), d.version(), d.text().to_string())
    };
    first.kill();

    // Out of SQLite, into Redis.
    let data_dir = data.to_str().unwrap();
    let (ok, out) = run(&["export", "--data", data_dir, "--room", ROOM, "--out", &path("sqlite.jsonl")]);
    assert!(ok, "export: {out}");
    assert!(out.contains("exported 2 documents and 1 values"), "{out}");
    let (ok, out) = run(&["export", "--data", data_dir, "--room", ROOM, "--out", &path("sqlite.jsonl")]);
    assert!(!ok && out.contains("sqlite.jsonl"), "an existing file is not overwritten: {out}");
    let exported = lines(&dir.path().join("sqlite.jsonl"));
    assert_eq!(exported[0]["format"], "chorus-export/1");
    let notes = exported.iter().find(|l| l["doc"] == "notes").expect("notes exported");
    assert_eq!((notes["text"].as_str(), notes["version"].as_u64(), notes["epoch"].as_str()), (Some(text.as_str()), Some(version), Some(epoch.as_str())));

    let redis = RedisServer::start();
    let url = redis.url();
    let (ok, out) = run(&["import", "--redis", &url, &path("sqlite.jsonl")]);
    assert!(ok, "import: {out}");
    assert!(out.contains("imported 2 documents and 1 values"), "{out}");

    // A node on Redis serves what was moved; the client at the head carries on.
    let node = Chorus::start_in(dir.path(), &["--redis", &url]).await;
    ann.set_url(&node.url());
    ann.reconnect().await.expect("reconnects");
    ann.sync(ROOM, "notes").await.unwrap();
    let d = ann.doc(ROOM, "notes").unwrap();
    assert_eq!((d.epoch(), d.version(), d.text().to_string(), d.resets), (epoch.as_str(), version, text.clone(), 0), "no reset");
    ann.update_value(ROOM, "views", ValueKind::GCounter, Change::Increment { by: 1 }).await.unwrap();
    assert_eq!(ann.value(ROOM, "views").map(|v| v.value.clone()), Some(serde_json::json!(4)), "the counter went on from its imported state");

    // Into a room that has them: refused, nothing changed; or replaced.
    let (ok, out) = run(&["import", "--redis", &url, &path("sqlite.jsonl")]);
    assert!(!ok, "{out}");
    assert!(out.contains("already has document notes") && out.contains("--replace"), "a clear refusal: {out}");
    ann.insert(ROOM, "notes", 0, "new: ").unwrap();
    ann.sync(ROOM, "notes").await.unwrap();
    let (ok, out) = run(&["export", "--redis", &url, "--room", ROOM, "--out", &path("redis.jsonl")]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["import", "--redis", &url, "--replace", &path("sqlite.jsonl")]);
    assert!(ok, "--replace: {out}");
    drop(node);

    // Back into a new embedded store: the same documents and values.
    let back_dir = back.to_str().unwrap();
    let (ok, out) = run(&["import", "--data", back_dir, &path("redis.jsonl")]);
    assert!(ok, "import into SQLite: {out}");
    let (ok, out) = run(&["export", "--data", back_dir, "--room", ROOM, "--out", &path("back.jsonl")]);
    assert!(ok, "{out}");
    assert_eq!(lines(&dir.path().join("back.jsonl")), lines(&dir.path().join("redis.jsonl")), "SQLite to Redis and back: the same contents");
    let moved_back = lines(&dir.path().join("back.jsonl"));
    let notes = moved_back.iter().find(|l| l["doc"] == "notes").unwrap();
    assert_eq!((notes["text"].as_str(), notes["version"].as_u64()), (Some(format!("new: {text}").as_str()), Some(version + 1)));
    assert!(!moved_back.iter().any(|l| l["doc"] == "untouched"), "a document nobody edited is not exported");
}
