//! Shared values and undo histories in memory. Each write remembers its
//! token, so a write repeated after a lost answer is found, not redone.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{lock, MemoryStore};
use crate::{random_id, HistoryStore, StoreError, RoomEvent, RoomValuesStored, Stamp, StoreResult, StoredHistory, StoredValue, ValuePut, ValueStore, ValuesContent};

pub(super) struct RoomValues {
    values: HashMap<String, (StoredValue, String)>,
    epoch: String,
    seq: u64,
}

impl RoomValues {
    fn stamp(&self) -> Stamp {
        Stamp { epoch: self.epoch.clone(), seq: self.seq }
    }
}

/// A user's stored history, with the write that made it.
pub(super) struct History {
    pub rev: u64,
    pub token: String,
    pub saved: String,
    /// The version of the undo op written with it (0: none).
    pub op_version: u64,
}

impl MemoryStore {
    /// The room's values stamp, and what its values hold.
    pub(super) fn values_status(&self, room: &str) -> (Option<Stamp>, ValuesContent) {
        let values = lock(&self.inner.values);
        let Some(v) = values.get(room) else { return (None, ValuesContent::default()) };
        (Some(v.stamp()), ValuesContent::of(v.values.iter().map(|(n, (v, _))| (n.as_str(), v))))
    }
}

#[async_trait]
impl ValueStore for MemoryStore {
    async fn values(&self, room: &str) -> StoreResult<RoomValuesStored> {
        let values = lock(&self.inner.values);
        Ok(match values.get(room) {
            Some(v) => RoomValuesStored {
                values: v.values.iter().map(|(n, (v, _))| (n.clone(), v.clone())).collect(),
                stamp: Some(v.stamp()),
            },
            None => RoomValuesStored { values: Vec::new(), stamp: None },
        })
    }

    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &chorus_core::crdt::Value, token: &str) -> StoreResult<ValuePut> {
        let mut values = lock(&self.inner.values);
        let room_values = values.entry(room.to_owned()).or_insert_with(|| RoomValues { values: HashMap::new(), epoch: random_id(), seq: 0 });
        let current = room_values.values.get(name);
        if current.map_or(0, |(v, _)| v.version) != expected {
            return Ok(match current {
                Some((v, t)) if t == token => ValuePut::Written { version: v.version },
                _ => ValuePut::Conflict { current: current.map(|(v, _)| v.clone()) },
            });
        }
        let version = expected + 1;
        room_values.values.insert(name.to_owned(), (StoredValue { version, state: state.clone() }, token.to_owned()));
        room_values.seq += 1;
        let stamp = room_values.stamp();
        // Published under the lock, so in version order.
        self.broadcast(room, RoomEvent::Value { name: name.to_owned(), version, state: state.clone(), stamp });
        Ok(ValuePut::Written { version })
    }
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<StoredHistory>> {
        let histories = lock(&self.inner.histories);
        Ok(histories
            .get(&(room.to_owned(), doc.to_owned(), user.to_owned()))
            .map(|h| StoredHistory { rev: h.rev, saved: h.saved.clone() }))
    }

    async fn save_history(&self, room: &str, doc: &str, epoch: &str, user: &str, expected_rev: u64, token: &str, saved: &str) -> StoreResult<bool> {
        // Lock order: documents, then histories; held until written, so a
        // deletion cannot come between the check and the write.
        let docs = lock(&self.inner.docs);
        if docs.get(room).and_then(|logs| logs.get(doc)).is_none_or(|log| log.epoch() != epoch) {
            return Err(StoreError::Stale(format!("no undo history saved for document {doc}: it is not incarnation {epoch} any more (deleted or created again)")));
        }
        let mut histories = lock(&self.inner.histories);
        let key = (room.to_owned(), doc.to_owned(), user.to_owned());
        match histories.get(&key) {
            Some(h) if h.rev != expected_rev => return Ok(h.token == token),
            None if expected_rev != 0 => return Ok(false),
            _ => {}
        }
        histories.insert(key, History { rev: expected_rev + 1, token: token.to_owned(), saved: saved.to_owned(), op_version: 0 });
        Ok(true)
    }
}
