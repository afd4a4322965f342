//! The embedded backend: everything in this process's memory.
//!
//! Each kind of state sits behind a lock of its own, and every operation
//! (join, leave, expiry sweep, append, value write) runs inside one lock
//! hold, publishing its event before the lock is released. That is what
//! makes "exactly one leave per expiry" hold however many tasks sweep, and
//! what keeps each room's events in the order of their changes. The bus is
//! a broadcast channel per room, dropped with its last subscription.
//! Nothing survives a restart: a document's epoch is new each time the
//! process starts.
//!
//! Keys are the names clients chose, one level per name (or tuples of
//! them), so no two names can meet.

mod bus;
mod docs;
mod presence;
mod values;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::{Backend, RoomEvent, RoomStatus, StatusStore, StoreResult};

/// Events a slow subscriber may fall behind by before it must resync. The
/// channel allocates every slot up front, so this is also a fixed cost per
/// room with subscribers (about 40 bytes a slot).
const BUS_CAPACITY: usize = 1_024;

/// One process's rooms, documents, values and histories. Cheap to clone:
/// clones share everything.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: Mutex<HashMap<String, presence::RoomPresence>>,
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<RoomEvent>>>>,
    docs: Mutex<docs::DocLogs>,
    values: Mutex<HashMap<String, values::RoomValues>>,
    histories: Mutex<HashMap<(String, String, String), values::History>>,
}

/// A panic while holding one of these locks cannot leave the state half
/// changed (every change is computed first, then stored), so poison is
/// ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends an event to the room's subscribers, if any, right now (no
    /// await): for a backend that keeps its bus in this process and must
    /// publish in the order of its commits, from the thread that made them.
    pub fn publish_now(&self, room: &str, event: RoomEvent) {
        self.broadcast(room, event);
    }

    /// Sends an event to the room's subscribers, if any; callers hold the
    /// lock of the state the event reports, so events leave in order.
    fn broadcast(&self, room: &str, event: RoomEvent) {
        let channels = lock(&self.inner.channels);
        if let Some(tx) = channels.get(room) {
            let _ = tx.send(Arc::new(event));
        }
    }
}

#[async_trait]
impl StatusStore for MemoryStore {
    async fn status(&self, room: &str, docs: &[&str], now: chorus_core::presence::Millis) -> StoreResult<RoomStatus> {
        let (presence, members) = self.presence_status(room, now);
        let (values, value_content) = self.values_status(room);
        Ok(RoomStatus {
            presence,
            members,
            values,
            value_content,
            docs: docs.iter().map(|d| self.doc_head(room, d)).collect(),
        })
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
    async fn an_opened_document_holds_nothing_and_a_deleted_one_is_dropped() {
        use crate::{Commit, DocCatalog, DocStore, HistoryStore, Snapshot};
        use chorus_core::digest::Digest;
        let b = MemoryStore::new();
        let d = b.load("r", "d").await.unwrap();
        b.ops_since("r", "d", &d.epoch, 0).await.unwrap();
        b.last_committed("r", "d", "a").await.unwrap();
        b.snapshot("r", "d", Snapshot { epoch: &d.epoch, version: 0, text: String::new(), trim_to: 0, trim_digest: Digest::EMPTY }).await.unwrap();
        assert!(b.save_history("r", "d", &d.epoch, "ann", 0, "t0", "h").await.unwrap());
        assert!(b.discard_if_empty("r", "d", &d.epoch).await.unwrap());
        assert_eq!(b.held_docs(), (0, 0), "a document opened and never edited leaves nothing once discarded");
        let d = b.load("r", "d").await.unwrap();
        let op = chorus_core::text::TextOp::insert(0, "x");
        let digest = Digest::EMPTY.next(1, "a", 1, &op);
        let c = Commit { epoch: &d.epoch, expected: 0, expected_digest: Digest::EMPTY, client: "a", seq: 1, op: &op, digest, history: None };
        b.append("r", "d", &c).await.unwrap();
        assert!(b.save_history("r", "d", &d.epoch, "ann", 0, "t", "h").await.unwrap());
        assert_eq!(b.held_docs(), (1, 1));
        assert!(b.delete_doc("r", "d").await.unwrap().is_some());
        assert_eq!(b.held_docs(), (0, 0), "a deleted document leaves nothing");
    }

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        crate::conformance::run_all(|| async { MemoryStore::new() }).await;
    }
}
