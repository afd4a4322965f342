//! The embedded backend: presence tables and a bus in this process's memory.
//!
//! One lock guards all presence tables, so each operation (join, leave,
//! expiry sweep) is atomic, which is what makes "exactly one leave per
//! expiry" hold however many tasks sweep. The bus is a broadcast channel per
//! room, dropped when its last subscriber goes. Documents sit behind a lock
//! of their own, so an append is one compare-and-set. Nothing survives a
//! restart: a document's epoch is new each time the process starts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, Millis, PresenceTable};
use chorus_core::text::TextOp;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::{Appended, Backend, Bus, DocStore, Expired, PresenceStore, RoomEvent, RoomSummary, StoreResult, StoredDoc, StoredValue, Subscription, ValuePut, ValueStore, HistoryStore};

/// Events a slow subscriber may fall behind by before it must resync. The
/// channel allocates every slot up front, so this is also a fixed cost per
/// room with subscribers (about 40 bytes a slot).
const BUS_CAPACITY: usize = 1_024;

#[derive(Default)]
pub struct MemoryStore {
    rooms: Mutex<HashMap<String, PresenceTable>>,
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<RoomEvent>>>>,
    docs: Mutex<HashMap<(String, String), StoredLog>>,
    values: Mutex<HashMap<String, HashMap<String, StoredValue>>>,
    histories: Mutex<HashMap<(String, String, String), String>>,
}

/// One document's log in memory.
struct StoredLog {
    epoch: String,
    snapshot_version: u64,
    snapshot: String,
    /// Version before the first kept op.
    oldest: u64,
    ops: VecDeque<LogEntry>,
    /// Each client's last committed (seq, version), while that op is kept.
    clients: HashMap<String, (u64, u64)>,
}

impl StoredLog {
    fn new() -> Self {
        Self {
            epoch: format!("{:016x}", rand::random::<u64>()),
            snapshot_version: 0,
            snapshot: String::new(),
            oldest: 0,
            ops: VecDeque::new(),
            clients: HashMap::new(),
        }
    }

    fn head(&self) -> u64 {
        self.oldest + self.ops.len() as u64
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_doc<T>(&self, room: &str, doc: &str, f: impl FnOnce(&mut StoredLog) -> T) -> T {
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        let log = docs.entry((room.to_owned(), doc.to_owned())).or_insert_with(StoredLog::new);
        f(log)
    }

    fn broadcast(&self, room: &str, event: RoomEvent) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(room) {
            if tx.send(Arc::new(event)).is_err() {
                // No subscriber is left: forget the channel.
                channels.remove(room);
            }
        }
    }

    fn with_rooms<T>(&self, f: impl FnOnce(&mut HashMap<String, PresenceTable>) -> T) -> T {
        // A panic while holding the lock cannot leave a table half-changed
        // (every change is one call on PresenceTable), so poison is ignored.
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut rooms)
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis) -> StoreResult<usize> {
        Ok(self.with_rooms(|rooms| {
            let t = rooms.entry(room.to_owned()).or_default();
            t.upsert(member, expires_at);
            t.count(now)
        }))
    }

    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis) -> StoreResult<bool> {
        Ok(self.with_rooms(|rooms| rooms.get_mut(room).is_some_and(|t| t.refresh(connection, expires_at))))
    }

    async fn set_state(&self, room: &str, connection: &str, state: Value) -> StoreResult<bool> {
        Ok(self.with_rooms(|rooms| rooms.get_mut(room).is_some_and(|t| t.set_state(connection, state))))
    }

    async fn leave(&self, room: &str, connection: &str, now: Millis) -> StoreResult<Option<(Member, usize)>> {
        Ok(self.with_rooms(|rooms| {
            let t = rooms.get_mut(room)?;
            let m = t.remove(connection)?;
            let count = t.count(now);
            if t.is_empty() {
                rooms.remove(room);
            }
            Some((m, count))
        }))
    }

    async fn members(&self, room: &str, now: Millis) -> StoreResult<Vec<Member>> {
        Ok(self.with_rooms(|rooms| rooms.get(room).map(|t| t.members(now)).unwrap_or_default()))
    }

    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize> {
        Ok(self.with_rooms(|rooms| rooms.get(room).map_or(0, |t| t.count(now))))
    }

    async fn expire(&self, now: Millis) -> StoreResult<Vec<Expired>> {
        Ok(self.with_rooms(|rooms| {
            let mut out = Vec::new();
            rooms.retain(|room, t| {
                if t.next_expiry().is_some_and(|at| at <= now) {
                    for member in t.expire(now) {
                        out.push(Expired { room: room.clone(), member, count: 0 });
                    }
                    let count = t.count(now);
                    for e in out.iter_mut().filter(|e| &e.room == room) {
                        e.count = count;
                    }
                }
                !t.is_empty()
            });
            out
        }))
    }

    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>> {
        let mut v: Vec<RoomSummary> = self.with_rooms(|rooms| {
            rooms
                .iter()
                .map(|(room, t)| RoomSummary { room: room.clone(), members: t.count(now) })
                .filter(|s| s.members > 0)
                .collect()
        });
        v.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(v)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait]
impl Bus for MemoryStore {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        self.broadcast(room, event);
        Ok(())
    }

    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let tx = channels.entry(room.to_owned()).or_insert_with(|| broadcast::channel(BUS_CAPACITY).0);
        Ok(Subscription::new(tx.subscribe()))
    }
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<String>> {
        let histories = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        Ok(histories.get(&(room.to_owned(), doc.to_owned(), user.to_owned())).cloned())
    }

    async fn save_history(&self, room: &str, doc: &str, user: &str, saved: String) -> StoreResult<()> {
        let mut histories = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        histories.insert((room.to_owned(), doc.to_owned(), user.to_owned()), saved);
        Ok(())
    }
}

#[async_trait]
impl ValueStore for MemoryStore {
    async fn values(&self, room: &str) -> StoreResult<Vec<(String, StoredValue)>> {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        Ok(values.get(room).map(|v| v.iter().map(|(n, v)| (n.clone(), v.clone())).collect()).unwrap_or_default())
    }

    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &chorus_core::crdt::Value) -> StoreResult<ValuePut> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let room_values = values.entry(room.to_owned()).or_default();
        let current = room_values.get(name);
        if current.map_or(0, |v| v.version) != expected {
            return Ok(ValuePut::Conflict { current: current.cloned() });
        }
        let version = expected + 1;
        room_values.insert(name.to_owned(), StoredValue { version, state: state.clone() });
        // Published under the lock, so in version order.
        self.broadcast(room, RoomEvent::Value { name: name.to_owned(), version, state: state.clone() });
        Ok(ValuePut::Written { version })
    }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc> {
        Ok(self.with_doc(room, doc, |log| StoredDoc {
            epoch: log.epoch.clone(),
            snapshot_version: log.snapshot_version,
            snapshot: log.snapshot.clone(),
            ops: log.ops.iter().cloned().collect(),
        }))
    }

    async fn append(&self, room: &str, doc: &str, epoch: &str, expected: u64, client: &str, seq: u64, op: &TextOp) -> StoreResult<Appended> {
        let outcome = self.with_doc(room, doc, |log| {
            if log.epoch != epoch {
                return Appended::EpochChanged { epoch: log.epoch.clone() };
            }
            match log.clients.get(client) {
                Some(&(last, version)) if last == seq => return Appended::Duplicate { version },
                Some(&(last, _)) if last > seq => return Appended::StaleSeq { last },
                _ => {}
            }
            if log.head() != expected {
                let missed = match expected.checked_sub(log.oldest) {
                    Some(skip) if expected < log.head() => log.ops.iter().skip(skip as usize).cloned().collect(),
                    _ => Vec::new(),
                };
                return Appended::Conflict { head: log.head(), missed };
            }
            let version = expected + 1;
            let entry = LogEntry { version, client: client.to_owned(), seq, op: op.clone() };
            log.ops.push_back(entry.clone());
            log.clients.insert(client.to_owned(), (seq, version));
            // Published under the document's lock, so in commit order.
            self.broadcast(room, RoomEvent::DocOp { doc: doc.to_owned(), entry });
            Appended::Committed { version }
        });
        Ok(outcome)
    }

    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>> {
        Ok(self.with_doc(room, doc, |log| {
            if log.epoch != epoch || version < log.oldest || version > log.head() {
                return None;
            }
            Some(log.ops.iter().skip((version - log.oldest) as usize).cloned().collect())
        }))
    }

    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>> {
        Ok(self.with_doc(room, doc, |log| log.clients.get(client).copied()))
    }

    async fn snapshot(&self, room: &str, doc: &str, epoch: &str, version: u64, text: String, trim_to: u64) -> StoreResult<()> {
        self.with_doc(room, doc, |log| {
            if log.epoch != epoch || version <= log.snapshot_version || version > log.head() {
                return;
            }
            log.snapshot_version = version;
            log.snapshot = text;
            let trim_to = trim_to.min(version);
            while log.oldest < trim_to {
                log.ops.pop_front();
                log.oldest += 1;
            }
            // A client whose last op is gone from the log can only come back
            // from before the trim point, and so gets a snapshot anyway.
            let oldest = log.oldest;
            log.clients.retain(|_, (_, v)| *v > oldest);
        });
        Ok(())
    }
}

impl Backend for MemoryStore {
    fn describe(&self) -> String {
        "embedded in-memory store (nothing is kept across restarts)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        crate::conformance::run_all(|| async { MemoryStore::new() }).await;
    }
}
