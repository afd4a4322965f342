use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chorus_core::digest::Digest;
use chorus_core::text::TextOp;
use chorus_store::{Appended, Commit, DocStore, Group, GroupOp, ValuePut, ValueStore};

use super::*;

fn fresh(dir: &tempfile::TempDir, n: &AtomicUsize) -> SqliteStore {
    let path = dir.path().join(format!("db{}.sqlite", n.fetch_add(1, Ordering::Relaxed)));
    SqliteStore::open(&path, SyncMode::Full).expect("opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    chorus_store::conformance::run_all(|| async { fresh(&dir, &n) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_with_normal_sync_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    chorus_store::conformance::run_all(|| async {
        let path = dir.path().join(format!("db{}.sqlite", n.fetch_add(1, Ordering::Relaxed)));
        SqliteStore::open(&path, SyncMode::Normal).expect("opens")
    })
    .await;
}

async fn commit(b: &SqliteStore, epoch: &str, head: u64, digest: Digest, client: &str, seq: u64, text: &str) -> (Appended, Digest) {
    let op = TextOp::insert(0, text);
    let next = digest.next(head + 1, client, seq, &op);
    let c = Commit { epoch, expected: head, expected_digest: digest, client, seq, op: &op, digest: next, history: None };
    (b.append("r", "d", &c).await.unwrap(), next)
}

/// Commits `n` inserts of "x" by client "a" to a document at version 0: its
/// head and digest after them.
async fn commit_xs(b: &SqliteStore, epoch: &str, n: u64) -> (u64, Digest) {
    let (mut head, mut digest) = (0, Digest::EMPTY);
    for i in 1..=n {
        let (outcome, next) = commit(b, epoch, head, digest, "a", i, "x").await;
        assert!(matches!(outcome, Appended::Committed { .. }), "{outcome:?}");
        (head, digest) = (i, next);
    }
    (head, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_committed_is_there_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let b = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let d = b.load("r", "d").await.unwrap();
    let (mut head, mut digest) = (0, Digest::EMPTY);
    for i in 1..=5u64 {
        let (outcome, next) = commit(&b, &d.epoch, head, digest, "a", i, &i.to_string()).await;
        assert!(matches!(outcome, Appended::Committed { version, .. } if version == i), "{outcome:?}");
        (head, digest) = (i, next);
    }
    let state = chorus_core::crdt::Value::GCounter(Default::default());
    assert_eq!(b.put_value("r", "title", 0, &state, "t1").await.unwrap(), ValuePut::Written { version: 1 });
    drop(b);
    let b = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let again = b.load("r", "d").await.unwrap();
    assert_eq!((again.epoch.as_str(), again.head(), again.head_digest()), (d.epoch.as_str(), 5, digest), "the same log, with the same epoch");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), Some((5, 5)), "submitters are remembered: a resubmission is a duplicate");
    let (outcome, _) = commit(&b, &d.epoch, 4, Digest::EMPTY, "a", 5, "5").await;
    assert_eq!(outcome, Appended::Duplicate { version: 5 });
    let values = b.values("r").await.unwrap();
    assert_eq!(values.values.len(), 1);
    assert_eq!(values.stamp.map(|s| s.seq), Some(1));
}

#[tokio::test]
async fn a_second_store_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let first = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let err = SqliteStore::open(&path, SyncMode::Full).err().expect("refused");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another Chorus server"), "{err}");
    drop(first);
    SqliteStore::open(&path, SyncMode::Full).expect("free again once the first is closed");
}

#[test]
fn foreign_and_damaged_files_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    let bytes = b"this is not a database, but somebody's notes\n".repeat(200);
    std::fs::write(&garbage, &bytes).unwrap();
    let err = SqliteStore::open(&garbage, SyncMode::Full).err().expect("refused");
    assert!(matches!(err, OpenError::NotChorus { .. }), "{err}");
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes, "never overwritten");

    let foreign = dir.path().join("foreign.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');").unwrap();
    drop(conn);
    let before = std::fs::read(&foreign).unwrap();
    let err = SqliteStore::open(&foreign, SyncMode::Full).err().expect("refused");
    assert!(err.to_string().contains("another program"), "{err}");
    assert_eq!(std::fs::read(&foreign).unwrap(), before, "never overwritten");

    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer, SyncMode::Full).unwrap());
    rusqlite::Connection::open(&newer).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    let err = SqliteStore::open(&newer, SyncMode::Full).err().expect("refused");
    assert!(matches!(err, OpenError::UnknownSchema { found: 99, .. }), "{err}");

    // A Chorus database whose pages were damaged.
    let damaged = dir.path().join("damaged.db");
    drop(SqliteStore::open(&damaged, SyncMode::Full).unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b ^= 0x5a;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let err = SqliteStore::open(&damaged, SyncMode::Full).err().expect("refused");
    assert!(matches!(err, OpenError::NotChorus { .. } | OpenError::UnknownSchema { .. }), "{err}");
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes, "never overwritten");
}

/// Concurrent commits share transactions (group commit); each is answered
/// only after its own transaction is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(SqliteStore::open(&dir.path().join("chorus.db"), SyncMode::Full).unwrap());
    let writers = 32;
    for w in 0..writers {
        b.load("r", &format!("d{w}")).await.unwrap();
    }
    let before = b.stats().transactions.load(Ordering::Relaxed);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let b = b.clone();
            tokio::spawn(async move {
                let doc = format!("d{w}");
                let epoch = b.load("r", &doc).await.unwrap().epoch;
                let (mut head, mut digest) = (0, Digest::EMPTY);
                for seq in 1..=10u64 {
                    let op = TextOp::insert(0, "x");
                    let next = digest.next(head + 1, "c", seq, &op);
                    let c = Commit { epoch: &epoch, expected: head, expected_digest: digest, client: "c", seq, op: &op, digest: next, history: None };
                    assert!(matches!(b.append("r", &doc, &c).await.unwrap(), Appended::Committed { .. }));
                    (head, digest) = (seq, next);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let transactions = b.stats().transactions.load(Ordering::Relaxed) - before;
    println!("{} commits in {transactions} transactions", writers * 10);
    assert!(transactions <= writers as u64 * 10, "never more transactions than commits");
    for w in 0..writers {
        assert_eq!(b.load("r", &format!("d{w}")).await.unwrap().head(), 10);
    }
}

/// A write that fails leaves nothing of itself behind, also alone in its
/// transaction (which then has no savepoint: it is rolled back whole), and
/// the writer carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqliteStore::open(&dir.path().join("chorus.db"), SyncMode::Full).unwrap();
    let failed = b
        .writer()
        .run(|conn, _| {
            conn.execute("INSERT INTO room_values (room, epoch, seq) VALUES ('r', 'e', 1)", [])?;
            Err::<(), _>(rusqlite::Error::QueryReturnedNoRows)
        })
        .await;
    assert!(failed.is_err(), "{failed:?}");
    let rows = b.read(|conn| conn.query_row("SELECT count(*) FROM room_values", [], |r| r.get::<_, i64>(0))).await.unwrap();
    assert_eq!(rows, 0, "the failed write's row was rolled back");
    let (head, _) = commit_xs(&b, &b.load("r", "d").await.unwrap().epoch, 2).await;
    assert_eq!(b.load("r", "d").await.unwrap().head(), head, "later writes commit");
}

/// A group of ops of one document is one transaction (one fsync), however
/// many ops it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqliteStore::open(&dir.path().join("chorus.db"), SyncMode::Full).unwrap();
    let d = b.load("r", "d").await.unwrap();
    let ops: Vec<TextOp> = (0..50).map(|i| TextOp::insert(0, i.to_string())).collect();
    let clients: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    let mut digest = Digest::EMPTY;
    let group_ops: Vec<GroupOp<'_>> = ops
        .iter()
        .zip(&clients)
        .enumerate()
        .map(|(i, (op, client))| {
            digest = digest.next(i as u64 + 1, client, 1, op);
            GroupOp { client, seq: 1, op, digest }
        })
        .collect();
    let before = b.stats().transactions.load(Ordering::Relaxed);
    let group = Group { epoch: &d.epoch, expected: 0, expected_digest: Digest::EMPTY, ops: &group_ops };
    let outcomes = b.append_group("r", "d", &group).await.unwrap();
    assert_eq!(outcomes.len(), 50);
    assert!(outcomes.iter().enumerate().all(|(i, o)| matches!(o, Appended::Committed { version, .. } if *version == i as u64 + 1)), "{outcomes:?}");
    assert_eq!(b.stats().transactions.load(Ordering::Relaxed) - before, 1, "one transaction for the group");
    assert_eq!(b.load("r", "d").await.unwrap().head_digest(), digest);
}

/// A backup taken while the store is open and writing is a consistent
/// database of its own; restored in place of another, it is what opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_restores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let b = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let d = b.load("r", "d").await.unwrap();
    let (head, digest) = commit_xs(&b, &d.epoch, 20).await;
    let copy = dir.path().join("backup.db");
    crate::backup(&path, &copy).expect("an online backup");
    let err = crate::backup(&path, &copy).expect_err("never overwrites");
    assert!(err.to_string().contains("already exists"), "{err}");
    // More commits after the backup: not in it.
    let (outcome, _) = commit(&b, &d.epoch, head, digest, "a", 21, "y").await;
    assert!(matches!(outcome, Appended::Committed { version: 21, .. }));
    let err = crate::restore(&copy, &path).expect_err("refused while the store is open");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    drop(b);
    crate::restore(&copy, &path).expect("restores");
    let b = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let restored = b.load("r", "d").await.unwrap();
    assert_eq!((restored.epoch.as_str(), restored.head(), restored.head_digest()), (d.epoch.as_str(), 20, digest));
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"not a database at all").unwrap();
    drop(b);
    assert!(matches!(crate::restore(&garbage, &path), Err(OpenError::NotChorus { .. })), "a foreign file is never restored");
}

/// Rows of the document tables, read beside the server's connections.
fn document_rows(path: &std::path::Path) -> Vec<(&'static str, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    ["docs", "snapshots", "ops", "clients", "histories"]
        .into_iter()
        .map(|t| (t, conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_document_and_a_deleted_one_leave_no_row() {
    use chorus_store::{DocCatalog, HistoryStore, HistoryWrite, Snapshot};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let b = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let none = vec![("docs", 0), ("snapshots", 0), ("ops", 0), ("clients", 0), ("histories", 0)];
    let d = b.load("r", "d").await.unwrap();
    b.ops_since("r", "d", &d.epoch, 0).await.unwrap();
    b.last_committed("r", "d", "a").await.unwrap();
    b.snapshot("r", "d", Snapshot { epoch: &d.epoch, version: 0, text: String::new(), trim_to: 0, trim_digest: Digest::EMPTY }).await.unwrap();
    assert!(b.save_history("r", "d", &d.epoch, "ann", 0, "t0", "h").await.unwrap());
    assert!(b.discard_if_empty("r", "d", &d.epoch).await.unwrap());
    assert_eq!(document_rows(&path), none, "a document opened and never edited leaves no row once discarded");
    let d = b.load("r", "d").await.unwrap();

    let (_, digest) = commit_xs(&b, &d.epoch, 4).await;
    let op = TextOp::insert(0, "u");
    let next = digest.next(5, "h:ann", 1, &op);
    let history = Some(HistoryWrite { user: "ann", expected_rev: 0, token: "t", saved: "h" });
    let c = Commit { epoch: &d.epoch, expected: 4, expected_digest: digest, client: "h:ann", seq: 1, op: &op, digest: next, history };
    assert!(matches!(b.append("r", "d", &c).await.unwrap(), Appended::Committed { version: 5, .. }));
    assert!(b.save_history("r", "d", &d.epoch, "bob", 0, "t2", "h2").await.unwrap());
    b.snapshot("r", "d", Snapshot { epoch: &d.epoch, version: 3, text: "xxx".into(), trim_to: 2, trim_digest: Digest::EMPTY }).await.unwrap();
    assert_eq!(document_rows(&path), vec![("docs", 1), ("snapshots", 1), ("ops", 3), ("clients", 2), ("histories", 2)]);
    assert!(b.delete_doc("r", "d").await.unwrap().is_some());
    assert_eq!(document_rows(&path), none, "a deleted document leaves no row in any table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_layout_1_is_migrated_at_start_with_its_documents() {
    use chorus_store::Snapshot;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let b = SqliteStore::open(&path, SyncMode::Full).unwrap();
    let d = b.load("r", "d").await.unwrap();
    let (head, digest) = commit_xs(&b, &d.epoch, 4).await;
    b.snapshot("r", "d", Snapshot { epoch: &d.epoch, version: 3, text: "xxx".into(), trim_to: 2, trim_digest: Digest::EMPTY }).await.unwrap();
    drop(b);
    // Back to layout 1: the snapshot's text in the document's row (the
    // migration names columns, so where the column sits does not matter).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE docs ADD COLUMN snapshot TEXT NOT NULL DEFAULT '';
             UPDATE docs SET snapshot = (SELECT text FROM snapshots WHERE doc = docs.id);
             DROP TABLE snapshots;
             PRAGMA user_version = 1;",
        )
        .unwrap();

    let b = SqliteStore::open(&path, SyncMode::Full).expect("a layout 1 database opens");
    let again = b.load("r", "d").await.unwrap();
    assert_eq!((again.snapshot_version, again.snapshot.as_str()), (3, "xxx"), "the snapshot moved with its document");
    assert_eq!((again.epoch.as_str(), again.head(), again.head_digest()), (d.epoch.as_str(), 4, digest));
    let (outcome, _) = commit(&b, &d.epoch, head, digest, "a", 5, "x").await;
    assert!(matches!(outcome, Appended::Committed { version: 5, .. }), "{outcome:?}");
    drop(b);
    let conn = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
    let columns: Vec<String> = conn.prepare("SELECT name FROM pragma_table_info('docs')").unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert!(!columns.iter().any(|c| c == "snapshot"), "the row no longer holds the text: {columns:?}");
}

/// A group whose run stops at an op that is not committed (here a
/// resubmission) leaves the document's head at the last op it committed:
/// the head is written once, after the run, not with each op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_cut_short_leaves_the_head_at_its_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let b = SqliteStore::open(&dir.path().join("chorus.db"), SyncMode::Full).unwrap();
    let d = b.load("r", "d").await.unwrap();
    let ops = [TextOp::insert(0, "a"), TextOp::insert(0, "b"), TextOp::insert(0, "c")];
    let first = Digest::EMPTY.next(1, "x", 1, &ops[0]);
    let second = first.next(2, "y", 1, &ops[1]);
    let group_ops = [
        GroupOp { client: "x", seq: 1, op: &ops[0], digest: first },
        GroupOp { client: "y", seq: 1, op: &ops[1], digest: second },
        GroupOp { client: "x", seq: 1, op: &ops[2], digest: second.next(3, "x", 1, &ops[2]) },
    ];
    let group = Group { epoch: &d.epoch, expected: 0, expected_digest: Digest::EMPTY, ops: &group_ops };
    let outcomes = b.append_group("r", "d", &group).await.unwrap();
    assert!(
        matches!(outcomes.as_slice(), [Appended::Committed { version: 1, .. }, Appended::Committed { version: 2, .. }, Appended::Duplicate { version: 1 }]),
        "{outcomes:?}"
    );
    let stored = b.load("r", "d").await.unwrap();
    assert_eq!((stored.ops.len(), stored.head_digest()), (2, second));
    let heads = b.status("r", &["d"], 0).await.unwrap().docs;
    assert!(matches!(heads.as_slice(), [Some(h)] if h.version == 2 && h.digest == second), "{heads:?}");
    let (outcome, _) = commit(&b, &d.epoch, 2, second, "z", 1, "d").await;
    assert!(matches!(outcome, Appended::Committed { version: 3, .. }), "{outcome:?}");
}

/// The checkpoint thread copies the WAL into the database as commits go
/// on, and the WAL stays near the writer's own checkpoint bound however
/// long the stream of commits (a checkpoint beside the writer never
/// empties a WAL that keeps growing). Near: while the checkpoint thread
/// holds the checkpoint, the writer's own is skipped and commits go on
/// appending, by how many depends on the disk; the slack allowed is half
/// the bound, and the stream (close to 3 pages per commit) is long enough
/// to pass twice the allowed size were nothing checkpointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_beside_the_writer_and_stays_bounded() {
    const COMMITS: u64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let b = SqliteStore::open(&path, SyncMode::Normal).unwrap();
    let d = b.load("r", "d").await.unwrap();
    commit_xs(&b, &d.epoch, COMMITS).await;
    assert!(b.stats().checkpoints.load(Ordering::Relaxed) > 0, "the checkpoint thread ran");
    let wal = std::fs::metadata(dir.path().join("chorus.db-wal")).unwrap().len();
    let bound = u64::from(schema::WRITER_CHECKPOINT_PAGES) * 3 / 2 * (4_096 + 24);
    assert!(wal <= bound, "WAL of {wal} bytes, more than {bound}");
    drop(b);
    let b = SqliteStore::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(b.load("r", "d").await.unwrap().ops.len() as u64, COMMITS);
}
