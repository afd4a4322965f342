//! Shared values and undo histories in SQLite. Each write keeps its token,
//! so a write repeated after a lost answer is found, not redone; a room's
//! values stamp (epoch, seq) lives in its own row.

use async_trait::async_trait;
use chorus_core::crdt::Value;
use chorus_store::{random_id, HistoryStore, StoreError, RoomEvent, RoomValuesStored, Stamp, StoreResult, StoredHistory, StoredValue, ValuePut, ValueStore, ValuesContent};
use rusqlite::{params, Connection, OptionalExtension};

use crate::docs::{bad, doc_row, history_row, write_history};
use crate::writer::Events;
use crate::SqliteStore;

pub(crate) fn values_stamp(conn: &Connection, room: &str) -> rusqlite::Result<Option<Stamp>> {
    conn.prepare_cached("SELECT epoch, seq FROM room_values WHERE room = ?1")?
        .query_row([room], |r| Ok(Stamp { epoch: r.get(0)?, seq: r.get::<_, i64>(1)? as u64 }))
        .optional()
}

/// What the room's values hold, from their stored JSON.
pub(crate) fn values_content(conn: &Connection, room: &str) -> rusqlite::Result<ValuesContent> {
    let mut stmt = conn.prepare_cached("SELECT name, version, state FROM vals WHERE room = ?1")?;
    let rows = stmt.query_map([room], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
    let mut content = ValuesContent::default();
    for row in rows {
        let (name, version, json) = row?;
        content = content.with(&name, version as u64, &json);
    }
    Ok(content)
}

fn state_from(json: &str) -> rusqlite::Result<Value> {
    serde_json::from_str(json).map_err(|e| bad(0, format!("bad value state: {e}")))
}

fn put_tx(conn: &Connection, room: &str, name: &str, expected: u64, state: &Value, token: &str, events: &mut Events) -> rusqlite::Result<ValuePut> {
    let current: Option<(i64, String, String)> = conn
        .prepare_cached("SELECT version, state, token FROM vals WHERE room = ?1 AND name = ?2")?
        .query_row([room, name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if current.as_ref().map_or(0, |c| c.0 as u64) != expected {
        return Ok(match current {
            Some((version, _, t)) if t == token => ValuePut::Written { version: version as u64 },
            Some((version, json, _)) => ValuePut::Conflict { current: Some(StoredValue { version: version as u64, state: state_from(&json)? }) },
            None => ValuePut::Conflict { current: None },
        });
    }
    let version = expected + 1;
    let json = serde_json::to_string(state).map_err(|e| bad(0, e))?;
    conn.prepare_cached("INSERT OR REPLACE INTO vals (room, name, version, state, token) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![room, name, version as i64, json, token])?;
    let stamp = match values_stamp(conn, room)? {
        Some(s) => Stamp { epoch: s.epoch, seq: s.seq + 1 },
        None => Stamp { epoch: random_id(), seq: 1 },
    };
    conn.prepare_cached("INSERT OR REPLACE INTO room_values (room, epoch, seq) VALUES (?1, ?2, ?3)")?
        .execute(params![room, stamp.epoch, stamp.seq as i64])?;
    events.push((room.to_owned(), RoomEvent::Value { name: name.to_owned(), version, state: state.clone(), stamp }));
    Ok(ValuePut::Written { version })
}

#[async_trait]
impl ValueStore for SqliteStore {
    async fn values(&self, room: &str) -> StoreResult<RoomValuesStored> {
        let room = room.to_owned();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let Some(stamp) = values_stamp(&tx, &room)? else { return Ok(RoomValuesStored { values: Vec::new(), stamp: None }) };
            let mut stmt = tx.prepare_cached("SELECT name, version, state FROM vals WHERE room = ?1 ORDER BY name")?;
            let rows = stmt.query_map([&room], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))?;
            let mut values = Vec::new();
            for row in rows {
                let (name, version, json) = row?;
                values.push((name, StoredValue { version: version as u64, state: state_from(&json)? }));
            }
            Ok(RoomValuesStored { values, stamp: Some(stamp) })
        })
        .await
    }

    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &Value, token: &str) -> StoreResult<ValuePut> {
        let (r, n, s, t) = (room.to_owned(), name.to_owned(), state.clone(), token.to_owned());
        self.writer().run(move |conn, events| put_tx(conn, &r, &n, expected, &s, &t, events)).await
    }
}

#[async_trait]
impl HistoryStore for SqliteStore {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<StoredHistory>> {
        let (r, d, u) = (room.to_owned(), doc.to_owned(), user.to_owned());
        self.read(move |conn| {
            conn.prepare_cached("SELECT rev, saved FROM histories WHERE room = ?1 AND doc = ?2 AND user = ?3")?
                .query_row([&r, &d, &u], |row| Ok(StoredHistory { rev: row.get::<_, i64>(0)? as u64, saved: row.get(1)? }))
                .optional()
        })
        .await
    }

    async fn save_history(&self, room: &str, doc: &str, epoch: &str, user: &str, expected_rev: u64, token: &str, saved: &str) -> StoreResult<bool> {
        let (r, d, u, t, s) = (room.to_owned(), doc.to_owned(), user.to_owned(), token.to_owned(), saved.to_owned());
        let e = epoch.to_owned();
        let written = self
            .writer()
            .run(move |conn, _| {
                // In the writer's transaction: no deletion comes between.
                if doc_row(conn, &r, &d)?.is_none_or(|row| row.epoch != e) {
                    return Ok(None);
                }
                match history_row(conn, &r, &d, &u)? {
                    Some((rev, stored_token, _)) if rev != expected_rev => return Ok(Some(stored_token == t)),
                    None if expected_rev != 0 => return Ok(Some(false)),
                    _ => {}
                }
                write_history(conn, (&r, &d, &u), expected_rev + 1, &t, &s, 0)?;
                Ok(Some(true))
            })
            .await?;
        written.ok_or_else(|| StoreError::Stale(format!("no undo history saved for document {doc}: it is not incarnation {epoch} any more (deleted or created again)")))
    }
}
