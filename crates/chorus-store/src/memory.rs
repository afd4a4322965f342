//! The embedded backend: presence tables and a bus in this process's memory.
//!
//! One lock guards all presence tables, so each operation (join, leave,
//! expiry sweep) is atomic, which is what makes "exactly one leave per
//! expiry" hold however many tasks sweep. The bus is a broadcast channel per
//! room, dropped when its last subscriber goes. Nothing survives a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chorus_core::presence::{Member, Millis, PresenceTable};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::{Backend, Bus, Expired, PresenceStore, RoomEvent, RoomSummary, StoreResult, Subscription};

/// Events a slow subscriber may fall behind by before it must resync. The
/// channel allocates every slot up front, so this is also a fixed cost per
/// room with subscribers (about 40 bytes a slot).
const BUS_CAPACITY: usize = 1_024;

#[derive(Default)]
pub struct MemoryStore {
    rooms: Mutex<HashMap<String, PresenceTable>>,
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<RoomEvent>>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = channels.get(room) {
            if tx.send(Arc::new(event)).is_err() {
                // No subscriber is left: forget the channel.
                channels.remove(room);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let tx = channels.entry(room.to_owned()).or_insert_with(|| broadcast::channel(BUS_CAPACITY).0);
        Ok(Subscription::new(tx.subscribe()))
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
        crate::conformance::run_all(MemoryStore::new).await;
    }
}
