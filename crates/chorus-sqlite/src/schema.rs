//! Opening the database file: refusing what is not ours, creating what is
//! missing.
//!
//! A Chorus database says so in its header (`application_id`) and names its
//! layout (`user_version`). A file that is not SQLite, is another
//! program's database, or has a layout this build does not know is refused
//! before anything is written to it: Chorus never overwrites data it does
//! not understand. A database of an older layout is brought to this one
//! in one transaction at start.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::{OpenError, SyncMode};

/// "Chor" in ASCII: the header mark of a Chorus database.
pub(crate) const APPLICATION_ID: i32 = 0x4368_6f72;
/// The layout of the tables below. Layout 1 kept each document's snapshot
/// in its `docs` row, which every commit rewrites: a commit then read and
/// rewrote the whole snapshot, its cost growing with the document.
pub(crate) const SCHEMA_VERSION: i32 = 2;

/// Whether this build opens (and, if older, migrates) a database of `layout`.
pub(crate) fn known_layout(layout: i64) -> bool {
    (1..=i64::from(SCHEMA_VERSION)).contains(&layout)
}

const TABLES: &str = "
CREATE TABLE docs (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    name TEXT NOT NULL,
    epoch TEXT NOT NULL,
    snapshot_version INTEGER NOT NULL,
    oldest INTEGER NOT NULL,
    oldest_digest TEXT NOT NULL,
    head INTEGER NOT NULL,
    head_digest TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    UNIQUE (room, name)
);
CREATE TABLE snapshots (
    doc INTEGER PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE ops (
    doc INTEGER NOT NULL,
    version INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (doc, version)
) WITHOUT ROWID;
CREATE TABLE clients (
    doc INTEGER NOT NULL,
    client TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (doc, client)
) WITHOUT ROWID;
CREATE TABLE histories (
    room TEXT NOT NULL,
    doc TEXT NOT NULL,
    user TEXT NOT NULL,
    rev INTEGER NOT NULL,
    token TEXT NOT NULL,
    saved TEXT NOT NULL,
    op_version INTEGER NOT NULL,
    PRIMARY KEY (room, doc, user)
) WITHOUT ROWID;
CREATE TABLE room_values (
    room TEXT PRIMARY KEY,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE vals (
    room TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    token TEXT NOT NULL,
    PRIMARY KEY (room, name)
) WITHOUT ROWID;
";

fn refused(path: &Path, reason: impl Into<String>) -> OpenError {
    OpenError::NotChorus { path: path.to_owned(), reason: reason.into() }
}

/// Opens the writer's connection: checks the file, creates the tables in a
/// new one, and sets WAL mode and the durability asked for.
pub(crate) fn open_writer(path: &Path, sync: SyncMode) -> Result<Connection, OpenError> {
    let conn = Connection::open(path).map_err(|e| refused(path, e.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(OpenError::Sqlite)?;
    // The first read of the header tells SQLite from anything else.
    let read = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    let app = read("PRAGMA application_id").map_err(|e| refused(path, format!("not a SQLite database ({e})")))?;
    let layout = read("PRAGMA user_version").map_err(|e| refused(path, e.to_string()))?;
    let objects = read("SELECT count(*) FROM sqlite_master").map_err(|e| refused(path, format!("unreadable ({e})")))?;
    match (app, objects) {
        (0, 0) => create(&conn).map_err(OpenError::Sqlite)?,
        (app, _) if app == i64::from(APPLICATION_ID) => {
            if !known_layout(layout) {
                return Err(OpenError::UnknownSchema { path: path.to_owned(), found: layout, known: SCHEMA_VERSION });
            }
        }
        _ => return Err(refused(path, "a SQLite database of another program")),
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| refused(path, format!("damaged ({e})")))?;
    if check != "ok" {
        return Err(refused(path, format!("damaged ({check})")));
    }
    if layout == 1 {
        migrate_from_1(&conn).map_err(OpenError::Sqlite)?;
    }
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(OpenError::Sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(refused(path, format!("cannot use WAL mode (got {mode})")));
    }
    let sync = sync_pragma(sync);
    // The checkpoint thread keeps the WAL short; the writer checkpoints
    // only when the WAL grows past this many pages anyway (it does under a
    // steady stream of commits: a checkpoint running beside the writer
    // leaves the pages committed meanwhile, so the WAL never empties and
    // cannot start over from its beginning).
    conn.execute_batch(&format!("PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES};"))
        .map_err(OpenError::Sqlite)?;
    // Room for every statement the writer runs, so none is parsed again
    // after being pushed out by others.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {TABLES} PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
    ))
}

/// Layout 1 to 2: snapshots move out of the `docs` rows into their own table.
fn migrate_from_1(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE snapshots (doc INTEGER PRIMARY KEY, text TEXT NOT NULL);
         INSERT INTO snapshots (doc, text) SELECT id, snapshot FROM docs;
         ALTER TABLE docs DROP COLUMN snapshot;
         PRAGMA user_version = 2;
         COMMIT;",
    )
}

/// WAL pages past which the writer checkpoints after a commit (see
/// `open_writer`): 16 MB, 4 times SQLite's default.
pub(crate) const WRITER_CHECKPOINT_PAGES: u32 = 4_096;

fn sync_pragma(sync: SyncMode) -> &'static str {
    match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    }
}

/// The checkpoint thread's connection (the writer's checks ran first): it
/// writes to the database file, so it is not read-only.
pub(crate) fn open_checkpointer(path: &Path, sync: SyncMode) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(&format!("PRAGMA synchronous={}; PRAGMA wal_autocheckpoint=0;", sync_pragma(sync)))?;
    Ok(conn)
}

/// A connection for reads (the writer's checks ran first).
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}
