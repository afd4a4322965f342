//! Document logs in SQLite: a row per document (its epoch, head and where
//! its snapshot and kept log start; a group of ops rewrites it once, not
//! once per op), its snapshot's text in a table of its own (so a commit,
//! which rewrites the row, does not rewrite the text),
//! its kept ops as JSON entries keyed by version, each client's last
//! committed (seq, version), and the users' undo histories, written in the
//! same transaction as the undo op they go with. A document's row is
//! written by its first op (or an import), and a deletion removes its rows
//! from every table in one transaction.
//!
//! Numbers are u64 on the wire and i64 in SQLite: they are stored bit for
//! bit (`as` casts both ways) and compared in Rust, never in SQL.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_core::text::TextOp;
use chorus_store::{
    random_id, Appended, Commit, DeletedDoc, DocCatalog, DocHead, DocStore, DocSummary, Group, ImportedDoc, RoomEvent, Snapshot, StoreResult, StoredDoc,
};
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension};

use crate::writer::Events;
use crate::SqliteStore;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stored text that does not decode: the file was changed behind us.
pub(crate) fn bad(column: usize, what: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, what.to_string().into())
}

fn digest_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Digest> {
    let hex: String = row.get(i)?;
    Digest::from_hex(&hex).ok_or_else(|| bad(i, format!("bad digest {hex:?}")))
}

fn entry_from(json: &str) -> rusqlite::Result<LogEntry> {
    serde_json::from_str(json).map_err(|e| bad(0, format!("bad op entry: {e}")))
}

/// A document's row, without its snapshot's text.
pub(crate) struct DocRow {
    pub id: i64,
    pub epoch: String,
    pub snapshot_version: u64,
    pub oldest: u64,
    pub oldest_digest: Digest,
    pub head: u64,
    pub head_digest: Digest,
}

pub(crate) fn doc_row(conn: &Connection, room: &str, doc: &str) -> rusqlite::Result<Option<DocRow>> {
    conn.prepare_cached("SELECT id, epoch, snapshot_version, oldest, oldest_digest, head, head_digest FROM docs WHERE room = ?1 AND name = ?2")?
        .query_row(params![room, doc], |r| {
            Ok(DocRow {
                id: r.get(0)?,
                epoch: r.get(1)?,
                snapshot_version: r.get::<_, i64>(2)? as u64,
                oldest: r.get::<_, i64>(3)? as u64,
                oldest_digest: digest_at(r, 4)?,
                head: r.get::<_, i64>(5)? as u64,
                head_digest: digest_at(r, 6)?,
            })
        })
        .optional()
}

/// Writes a document's row: `text` as its snapshot at `version`, where its
/// (empty) log starts with `digest`.
fn insert_doc(conn: &Connection, room: &str, doc: &str, d: &ImportedDoc<'_>) -> rusqlite::Result<DocRow> {
    let (version, digest) = (d.version as i64, d.digest.to_hex());
    conn.prepare_cached(
        "INSERT INTO docs (room, name, epoch, snapshot_version, oldest, oldest_digest, head, head_digest, changed_at)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?4, ?5, ?6)",
    )?
    .execute(params![room, doc, d.epoch, version, digest, d.changed_at as i64])?;
    let row = doc_row(conn, room, doc)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    conn.prepare_cached("INSERT INTO snapshots (doc, text) VALUES (?1, ?2)")?.execute(params![row.id, d.text])?;
    Ok(row)
}

/// Creates an empty document with a fresh epoch, unless it exists.
pub(crate) fn create_doc(conn: &Connection, room: &str, doc: &str) -> rusqlite::Result<DocRow> {
    if let Some(row) = doc_row(conn, room, doc)? {
        return Ok(row);
    }
    insert_doc(conn, room, doc, &ImportedDoc { epoch: &random_id(), version: 0, digest: Digest::EMPTY, text: "", changed_at: now_ms() })
}

/// The kept ops of a document after `after`, in order.
fn entries_after(conn: &Connection, id: i64, after: u64) -> rusqlite::Result<Vec<LogEntry>> {
    let mut stmt = conn.prepare_cached("SELECT entry FROM ops WHERE doc = ?1 AND version > ?2 ORDER BY version")?;
    let rows = stmt.query_map(params![id, after as i64], |r| r.get::<_, String>(0))?;
    rows.map(|json| entry_from(&json?)).collect()
}

/// The commit of an op, owned, to travel to the writer thread.
pub(crate) struct OwnedCommit {
    epoch: String,
    expected: u64,
    expected_digest: Digest,
    client: String,
    seq: u64,
    op: TextOp,
    digest: Digest,
    history: Option<(String, u64, String, String)>,
}

impl OwnedCommit {
    fn from(c: &Commit<'_>) -> Self {
        Self {
            epoch: c.epoch.to_owned(),
            expected: c.expected,
            expected_digest: c.expected_digest,
            client: c.client.to_owned(),
            seq: c.seq,
            op: c.op.clone(),
            digest: c.digest,
            history: c.history.map(|h| (h.user.to_owned(), h.expected_rev, h.token.to_owned(), h.saved.to_owned())),
        }
    }
}

/// A user's stored history: (rev, token, op_version).
pub(crate) fn history_row(conn: &Connection, room: &str, doc: &str, user: &str) -> rusqlite::Result<Option<(u64, String, u64)>> {
    conn.prepare_cached("SELECT rev, token, op_version FROM histories WHERE room = ?1 AND doc = ?2 AND user = ?3")?
        .query_row(params![room, doc, user], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get::<_, i64>(2)? as u64)))
        .optional()
}

pub(crate) fn write_history(conn: &Connection, key: (&str, &str, &str), rev: u64, token: &str, saved: &str, op_version: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO histories (room, doc, user, rev, token, saved, op_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
        .execute(params![key.0, key.1, key.2, rev as i64, token, saved, op_version as i64])?;
    Ok(())
}

/// A document as a run of appends in one transaction sees it: its row,
/// whose head moves in memory with each op appended; whether that row is
/// stored yet (the run's first op may create it); and when the last op was
/// appended. The row's head is written once, at the end of the run: a
/// group of ops rewrites it once, not once per op.
struct Appending {
    row: DocRow,
    stored: bool,
    appended_at: Option<u64>,
}

/// Appends `commits` in order, up to and including the first that is not
/// committed (the ones after it expect a head it did not leave).
fn append_run<'c>(conn: &Connection, room: &str, doc: &str, commits: impl IntoIterator<Item = &'c OwnedCommit>, events: &mut Events) -> rusqlite::Result<Vec<Appended>> {
    let mut state = None;
    let mut outcomes = Vec::new();
    for c in commits {
        let outcome = append_one(conn, room, doc, &mut state, c, events)?;
        let committed = matches!(outcome, Appended::Committed { .. });
        outcomes.push(outcome);
        if !committed {
            break;
        }
    }
    if let Some(Appending { row, appended_at: Some(at), .. }) = &state {
        conn.prepare_cached("UPDATE docs SET head = ?2, head_digest = ?3, changed_at = ?4 WHERE id = ?1")?
            .execute(params![row.id, row.head as i64, row.head_digest.to_hex(), *at as i64])?;
    }
    Ok(outcomes)
}

fn append_one(conn: &Connection, room: &str, doc: &str, state: &mut Option<Appending>, c: &OwnedCommit, events: &mut Events) -> rusqlite::Result<Appended> {
    if state.is_none() {
        // A missing document (discarded while a replica of it was open) is
        // created again by an op at version 0, in the epoch its writer
        // loaded, once the op commits. One past 0 was made on a replica of
        // a deleted incarnation: never recreate it.
        *state = Some(match doc_row(conn, room, doc)? {
            Some(row) => Appending { row, stored: true, appended_at: None },
            None if c.expected != 0 => return Ok(Appended::EpochChanged { epoch: random_id() }),
            None => {
                let row = DocRow { id: -1, epoch: c.epoch.clone(), snapshot_version: 0, oldest: 0, oldest_digest: Digest::EMPTY, head: 0, head_digest: Digest::EMPTY };
                Appending { row, stored: false, appended_at: None }
            }
        });
    }
    let s = state.as_mut().expect("loaded above");
    if s.row.epoch != c.epoch {
        return Ok(Appended::EpochChanged { epoch: s.row.epoch.clone() });
    }
    if let Some((user, expected_rev, token, _)) = &c.history {
        let stored = history_row(conn, room, doc, user)?;
        if stored.as_ref().map_or(0, |s| s.0) != *expected_rev {
            return Ok(match stored {
                Some((_, t, op_version)) if t == *token => Appended::Duplicate { version: op_version },
                _ => Appended::HistoryMoved,
            });
        }
    }
    let last: Option<(i64, i64)> = conn
        .prepare_cached("SELECT seq, version FROM clients WHERE doc = ?1 AND client = ?2")?
        .query_row(params![s.row.id, c.client], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match last.map(|(s, v)| (s as u64, v as u64)) {
        Some((last, version)) if last == c.seq => return Ok(Appended::Duplicate { version }),
        Some((last, _)) if last > c.seq => return Ok(Appended::StaleSeq { last }),
        _ => {}
    }
    let row = &s.row;
    if row.head != c.expected {
        let missed = if c.expected >= row.oldest && c.expected < row.head { entries_after(conn, row.id, c.expected)? } else { Vec::new() };
        return Ok(Appended::Conflict { head: row.head, missed });
    }
    if row.head_digest != c.expected_digest {
        return Ok(Appended::Diverged);
    }
    let version = c.expected + 1;
    let at = now_ms();
    if !s.stored {
        s.row = insert_doc(conn, room, doc, &ImportedDoc { epoch: &c.epoch, version: 0, digest: Digest::EMPTY, text: "", changed_at: at })?;
        s.stored = true;
    }
    let entry = LogEntry { version, client: c.client.clone(), seq: c.seq, op: c.op.clone(), at, digest: c.digest };
    let json = serde_json::to_string(&entry).map_err(|e| bad(0, e))?;
    let id = s.row.id;
    conn.prepare_cached("INSERT INTO ops (doc, version, entry) VALUES (?1, ?2, ?3)")?.execute(params![id, version as i64, json])?;
    conn.prepare_cached("INSERT OR REPLACE INTO clients (doc, client, seq, version) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id, c.client, c.seq as i64, version as i64])?;
    if let Some((user, expected_rev, token, saved)) = &c.history {
        write_history(conn, (room, doc, user), expected_rev + 1, token, saved, version)?;
    }
    (s.row.head, s.row.head_digest, s.appended_at) = (version, c.digest, Some(at));
    events.push((room.to_owned(), RoomEvent::DocOp { doc: doc.to_owned(), entry: Arc::new(entry) }));
    Ok(Appended::Committed { version, at })
}

pub(crate) struct OwnedSnapshot {
    epoch: String,
    version: u64,
    text: String,
    trim_to: u64,
    trim_digest: Digest,
}

fn snapshot_tx(conn: &Connection, room: &str, doc: &str, s: &OwnedSnapshot) -> rusqlite::Result<()> {
    let Some(row) = doc_row(conn, room, doc)? else { return Ok(()) };
    if row.epoch != s.epoch || s.version <= row.snapshot_version || s.version > row.head {
        return Ok(());
    }
    let trim_to = s.trim_to.min(s.version);
    let (mut oldest, mut oldest_digest) = (row.oldest, row.oldest_digest);
    if oldest < trim_to {
        let last: Option<String> = conn
            .prepare_cached("SELECT entry FROM ops WHERE doc = ?1 AND version = ?2")?
            .query_row(params![row.id, trim_to as i64], |r| r.get(0))
            .optional()?;
        oldest_digest = match last {
            Some(json) => entry_from(&json)?.digest,
            None => s.trim_digest,
        };
        oldest = trim_to;
        conn.prepare_cached("DELETE FROM ops WHERE doc = ?1 AND version <= ?2")?.execute(params![row.id, trim_to as i64])?;
    }
    conn.prepare_cached("UPDATE docs SET snapshot_version = ?2, oldest = ?3, oldest_digest = ?4 WHERE id = ?1")?
        .execute(params![row.id, s.version as i64, oldest as i64, oldest_digest.to_hex()])?;
    conn.prepare_cached("UPDATE snapshots SET text = ?2 WHERE doc = ?1")?.execute(params![row.id, s.text])?;
    // A client whose last op is gone can only come back from before the
    // trim point, and so gets a snapshot anyway.
    conn.prepare_cached("DELETE FROM clients WHERE doc = ?1 AND version <= ?2")?.execute(params![row.id, oldest as i64])?;
    Ok(())
}

/// The document as stored, read in one transaction; `None` when absent.
fn load_read(conn: &Connection, room: &str, doc: &str) -> rusqlite::Result<Option<StoredDoc>> {
    let tx = conn.unchecked_transaction()?;
    let Some(row) = doc_row(&tx, room, doc)? else { return Ok(None) };
    let snapshot: String = tx.prepare_cached("SELECT text FROM snapshots WHERE doc = ?1")?.query_row([row.id], |r| r.get(0))?;
    let ops = entries_after(&tx, row.id, row.oldest)?;
    tx.commit()?;
    Ok(Some(StoredDoc { epoch: row.epoch, snapshot_version: row.snapshot_version, snapshot, oldest_digest: row.oldest_digest, ops }))
}

pub(crate) fn head_of(row: DocRow) -> DocHead {
    DocHead { epoch: row.epoch, version: row.head, digest: row.head_digest }
}

#[async_trait]
impl DocStore for SqliteStore {
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc> {
        let (r, d) = (room.to_owned(), doc.to_owned());
        if let Some(stored) = self.read(move |conn| load_read(conn, &r, &d)).await? {
            return Ok(stored);
        }
        let (r, d) = (room.to_owned(), doc.to_owned());
        self.writer().run(move |conn, _| create_doc(conn, &r, &d)).await?;
        let (r, d) = (room.to_owned(), doc.to_owned());
        let stored = self.read(move |conn| load_read(conn, &r, &d)).await?;
        stored.ok_or_else(|| chorus_store::StoreError::Backend("sqlite: a document created just now is missing".into()))
    }

    async fn append(&self, room: &str, doc: &str, commit: &Commit<'_>) -> StoreResult<Appended> {
        let (r, d, c) = (room.to_owned(), doc.to_owned(), OwnedCommit::from(commit));
        self.writer()
            .run(move |conn, events| {
                let mut outcomes = append_run(conn, &r, &d, [&c], events)?;
                Ok(outcomes.pop().expect("one commit, one outcome"))
            })
            .await
    }

    async fn append_group(&self, room: &str, doc: &str, group: &Group<'_>) -> StoreResult<Vec<Appended>> {
        group.check_size()?;
        if group.ops.is_empty() {
            return Ok(Vec::new());
        }
        let (r, d) = (room.to_owned(), doc.to_owned());
        let commits: Vec<OwnedCommit> = group.commits().map(|c| OwnedCommit::from(&c)).collect();
        // One task, so one transaction and one fsync for the whole group.
        self.writer().run(move |conn, events| append_run(conn, &r, &d, &commits, events)).await
    }

    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>> {
        let (r, d, e) = (room.to_owned(), doc.to_owned(), epoch.to_owned());
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(row) = doc_row(&tx, &r, &d)? else { return Ok((version == 0).then(Vec::new)) };
            if row.epoch != e || version < row.oldest || version > row.head {
                return Ok(None);
            }
            entries_after(&tx, row.id, version).map(Some)
        })
        .await
    }

    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>> {
        let (r, d, c) = (room.to_owned(), doc.to_owned(), client.to_owned());
        self.read(move |conn| {
            conn.prepare_cached("SELECT c.seq, c.version FROM clients c JOIN docs d ON c.doc = d.id WHERE d.room = ?1 AND d.name = ?2 AND c.client = ?3")?
                .query_row(params![r, d, c], |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)))
                .optional()
        })
        .await
    }

    async fn snapshot(&self, room: &str, doc: &str, s: Snapshot<'_>) -> StoreResult<()> {
        let (r, d) = (room.to_owned(), doc.to_owned());
        let s = OwnedSnapshot { epoch: s.epoch.to_owned(), version: s.version, text: s.text, trim_to: s.trim_to, trim_digest: s.trim_digest };
        self.writer().run(move |conn, _| snapshot_tx(conn, &r, &d, &s)).await
    }
}

/// Removes a document's rows from every table.
fn remove_doc(conn: &Connection, room: &str, doc: &str, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM ops WHERE doc = ?1")?.execute([id])?;
    conn.prepare_cached("DELETE FROM clients WHERE doc = ?1")?.execute([id])?;
    conn.prepare_cached("DELETE FROM snapshots WHERE doc = ?1")?.execute([id])?;
    conn.prepare_cached("DELETE FROM docs WHERE id = ?1")?.execute([id])?;
    conn.prepare_cached("DELETE FROM histories WHERE room = ?1 AND doc = ?2")?.execute(params![room, doc])?;
    Ok(())
}

fn delete_tx(conn: &Connection, room: &str, doc: &str, events: &mut Events) -> rusqlite::Result<Option<DeletedDoc>> {
    let Some(row) = doc_row(conn, room, doc)? else { return Ok(None) };
    remove_doc(conn, room, doc, row.id)?;
    events.push((room.to_owned(), RoomEvent::DocDeleted { doc: doc.to_owned(), epoch: row.epoch.clone() }));
    Ok(Some(DeletedDoc { epoch: row.epoch, version: row.head }))
}

#[async_trait]
impl DocCatalog for SqliteStore {
    async fn list_docs(&self, room: &str) -> StoreResult<Vec<DocSummary>> {
        let r = room.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT name, epoch, head, changed_at FROM docs WHERE room = ?1 AND head > 0 ORDER BY name")?;
            let rows = stmt.query_map([r], |row| {
                Ok(DocSummary { name: row.get(0)?, epoch: row.get(1)?, version: row.get::<_, i64>(2)? as u64, changed_at: row.get::<_, i64>(3)? as u64 })
            })?;
            rows.collect()
        })
        .await
    }

    async fn discard_if_empty(&self, room: &str, doc: &str, epoch: &str) -> StoreResult<bool> {
        let (r, d, e) = (room.to_owned(), doc.to_owned(), epoch.to_owned());
        self.writer()
            .run(move |conn, _| match doc_row(conn, &r, &d)? {
                Some(row) if row.epoch == e && row.head == 0 => remove_doc(conn, &r, &d, row.id).map(|()| true),
                Some(_) => Ok(false),
                None => remove_doc(conn, &r, &d, -1).map(|()| false),
            })
            .await
    }

    async fn delete_doc(&self, room: &str, doc: &str) -> StoreResult<Option<DeletedDoc>> {
        let (r, d) = (room.to_owned(), doc.to_owned());
        self.writer().run(move |conn, events| delete_tx(conn, &r, &d, events)).await
    }

    async fn import_doc(&self, room: &str, doc: &str, imported: &ImportedDoc<'_>) -> StoreResult<bool> {
        let (r, d) = (room.to_owned(), doc.to_owned());
        let (epoch, text) = (imported.epoch.to_owned(), imported.text.to_owned());
        let (version, digest, changed_at) = (imported.version, imported.digest, imported.changed_at);
        self.writer()
            .run(move |conn, _| {
                match doc_row(conn, &r, &d)? {
                    Some(row) if row.head > 0 => return Ok(false),
                    Some(row) => remove_doc(conn, &r, &d, row.id)?,
                    None => {}
                }
                insert_doc(conn, &r, &d, &ImportedDoc { epoch: &epoch, version, digest, text: &text, changed_at })?;
                Ok(true)
            })
            .await
    }
}
