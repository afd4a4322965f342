//! Faults on purpose, around a real backend: for tests of the code that
//! talks to a store.
//!
//! [`Faulty`] wraps any backend and passes every call through, unless a
//! fault was planned for that kind of call: the call fails before reaching
//! the store ([`Fault::Fail`]), is carried out but its answer is lost
//! ([`Fault::LoseAnswer`], as when a connection drops after the command
//! ran), or is answered late ([`Fault::Delay`]). Its bus can also lose
//! chosen events on the way to this node's subscribers, as Redis pub/sub
//! does without a word. Nothing here imitates a store: every change is
//! made by the backend underneath; only answers and deliveries are taken
//! away or held back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, Millis};
use chorus_protocol::LeaveReason;
use serde_json::Value;

use crate::{
    Appended, Backend, Bus, Commit, DeletedDoc, DocCatalog, DocStore, DocSummary, Group, HistoryStore, ImportedDoc, Joined, Members, PresenceStore, RoomEvent, RoomStatus, RoomSummary, RoomValuesStored,
    Snapshot, StatusStore, StoreError, StoreResult, StoredDoc, StoredHistory, Subscription, Sweep, ValuePut, ValueStore,
};

/// The kinds of call a fault can be planned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    Join,
    Refresh,
    SetState,
    Leave,
    Members,
    Expire,
    Publish,
    Subscribe,
    Confirm,
    Load,
    /// An append of one op, or of a group.
    Append,
    OpsSince,
    LastCommitted,
    Snapshot,
    Values,
    PutValue,
    LoadHistory,
    SaveHistory,
    Status,
    ListDocs,
    DiscardDoc,
    DeleteDoc,
    ImportDoc,
}

/// What happens to one planned call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refused before reaching the store: nothing changes.
    Fail,
    /// Carried out, but the caller hears it failed.
    LoseAnswer,
    /// Answered after this long.
    Delay(Duration),
}

type Dropper = Box<dyn Fn(&RoomEvent) -> bool + Send + Sync>;

#[derive(Default)]
struct Plan {
    faults: HashMap<Call, VecDeque<Fault>>,
    /// Events matching this are not delivered to this node's subscribers,
    /// while `drops_left` lasts.
    drop: Option<Dropper>,
    drops_left: usize,
    dropped: usize,
}

/// A backend with planned faults (see the module docs).
pub struct Faulty<B> {
    inner: Arc<B>,
    plan: Arc<Mutex<Plan>>,
}

impl<B: Backend> Faulty<B> {
    pub fn new(inner: B) -> Self {
        Self { inner: Arc::new(inner), plan: Arc::default() }
    }

    /// The backend underneath, to look at (or change) it directly.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The next calls of `call` meet `faults`, in order.
    pub fn plan(&self, call: Call, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.plan).faults.entry(call).or_default().extend(faults);
    }

    /// The next `count` events matching `which` never reach this node's
    /// subscribers.
    pub fn drop_events(&self, count: usize, which: impl Fn(&RoomEvent) -> bool + Send + Sync + 'static) {
        let mut plan = lock(&self.plan);
        plan.drop = Some(Box::new(which));
        plan.drops_left = count;
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> usize {
        lock(&self.plan).dropped
    }

    /// Faults planned and not met yet.
    pub fn pending(&self) -> usize {
        lock(&self.plan).faults.values().map(VecDeque::len).sum()
    }

    /// A subscription of the backend, passing over what the drop plan drops.
    fn through_drop_plan(&self, sub: Subscription) -> Subscription {
        let plan = self.plan.clone();
        sub.filtered(move |event| {
            let mut plan = lock(&plan);
            if plan.drops_left > 0 && plan.drop.as_ref().is_some_and(|which| which(event)) {
                plan.drops_left -= 1;
                plan.dropped += 1;
                return false;
            }
            true
        })
    }

    /// Runs `op` through the fault planned for `call`, if any.
    async fn run<T, F>(&self, call: Call, op: F) -> StoreResult<T>
    where
        F: std::future::Future<Output = StoreResult<T>>,
    {
        let fault = lock(&self.plan).faults.get_mut(&call).and_then(VecDeque::pop_front);
        match fault {
            None => op.await,
            Some(Fault::Fail) => Err(StoreError::Unavailable(format!("planned failure of {call:?}"))),
            Some(Fault::LoseAnswer) => {
                let _ = op.await;
                Err(StoreError::Unavailable(format!("planned loss of the answer to {call:?}")))
            }
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                op.await
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl<B: Backend> PresenceStore for Faulty<B> {
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis, limit: usize) -> StoreResult<Joined> {
        self.run(Call::Join, self.inner.join(room, member, expires_at, now, limit)).await
    }
    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis, now: Millis) -> StoreResult<bool> {
        self.run(Call::Refresh, self.inner.refresh(room, connection, expires_at, now)).await
    }
    async fn set_state(&self, room: &str, connection: &str, state: Value, now: Millis) -> StoreResult<bool> {
        self.run(Call::SetState, self.inner.set_state(room, connection, state, now)).await
    }
    async fn leave(&self, room: &str, connection: &str, reason: LeaveReason, now: Millis) -> StoreResult<Option<(Member, usize)>> {
        self.run(Call::Leave, self.inner.leave(room, connection, reason, now)).await
    }
    async fn members(&self, room: &str, now: Millis) -> StoreResult<Members> {
        self.run(Call::Members, self.inner.members(room, now)).await
    }
    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize> {
        self.inner.count(room, now).await
    }
    async fn expire(&self, now: Millis) -> StoreResult<Sweep> {
        self.run(Call::Expire, self.inner.expire(now)).await
    }
    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>> {
        self.inner.rooms(now).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}

#[async_trait]
impl<B: Backend> Bus for Faulty<B> {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        self.run(Call::Publish, self.inner.publish(room, event)).await
    }

    /// The backend's subscription, through the drop plan.
    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        let sub = self.run(Call::Subscribe, self.inner.subscribe(room)).await?;
        Ok(self.through_drop_plan(sub))
    }

    async fn subscribe_without_own_groups(&self, room: &str) -> StoreResult<Subscription> {
        let sub = self.run(Call::Subscribe, self.inner.subscribe_without_own_groups(room)).await?;
        Ok(self.through_drop_plan(sub))
    }

    async fn confirm(&self, room: &str) -> StoreResult<()> {
        self.run(Call::Confirm, self.inner.confirm(room)).await
    }

    fn subscribed_rooms(&self) -> usize {
        self.inner.subscribed_rooms()
    }
}

#[async_trait]
impl<B: Backend> DocStore for Faulty<B> {
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc> {
        self.run(Call::Load, self.inner.load(room, doc)).await
    }
    async fn append(&self, room: &str, doc: &str, commit: &Commit<'_>) -> StoreResult<Appended> {
        self.run(Call::Append, self.inner.append(room, doc, commit)).await
    }
    async fn append_group(&self, room: &str, doc: &str, group: &Group<'_>) -> StoreResult<Vec<Appended>> {
        self.run(Call::Append, self.inner.append_group(room, doc, group)).await
    }
    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>> {
        self.run(Call::OpsSince, self.inner.ops_since(room, doc, epoch, version)).await
    }
    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>> {
        self.run(Call::LastCommitted, self.inner.last_committed(room, doc, client)).await
    }
    async fn snapshot(&self, room: &str, doc: &str, snapshot: Snapshot<'_>) -> StoreResult<()> {
        self.run(Call::Snapshot, self.inner.snapshot(room, doc, snapshot)).await
    }
}

#[async_trait]
impl<B: Backend> DocCatalog for Faulty<B> {
    async fn list_docs(&self, room: &str) -> StoreResult<Vec<DocSummary>> {
        self.run(Call::ListDocs, self.inner.list_docs(room)).await
    }
    async fn discard_if_empty(&self, room: &str, doc: &str, epoch: &str) -> StoreResult<bool> {
        self.run(Call::DiscardDoc, self.inner.discard_if_empty(room, doc, epoch)).await
    }
    async fn delete_doc(&self, room: &str, doc: &str) -> StoreResult<Option<DeletedDoc>> {
        self.run(Call::DeleteDoc, self.inner.delete_doc(room, doc)).await
    }
    async fn import_doc(&self, room: &str, doc: &str, imported: &ImportedDoc<'_>) -> StoreResult<bool> {
        self.run(Call::ImportDoc, self.inner.import_doc(room, doc, imported)).await
    }
}

#[async_trait]
impl<B: Backend> ValueStore for Faulty<B> {
    async fn values(&self, room: &str) -> StoreResult<RoomValuesStored> {
        self.run(Call::Values, self.inner.values(room)).await
    }
    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &chorus_core::crdt::Value, token: &str) -> StoreResult<ValuePut> {
        self.run(Call::PutValue, self.inner.put_value(room, name, expected, state, token)).await
    }
}

#[async_trait]
impl<B: Backend> HistoryStore for Faulty<B> {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<StoredHistory>> {
        self.run(Call::LoadHistory, self.inner.load_history(room, doc, user)).await
    }
    async fn save_history(&self, room: &str, doc: &str, epoch: &str, user: &str, expected_rev: u64, token: &str, saved: &str) -> StoreResult<bool> {
        self.run(Call::SaveHistory, self.inner.save_history(room, doc, epoch, user, expected_rev, token, saved)).await
    }
}

#[async_trait]
impl<B: Backend> StatusStore for Faulty<B> {
    async fn status(&self, room: &str, docs: &[&str], now: Millis) -> StoreResult<RoomStatus> {
        self.run(Call::Status, self.inner.status(room, docs, now)).await
    }
}

impl<B: Backend> Backend for Faulty<B> {
    fn describe(&self) -> String {
        format!("{} (with planned faults)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[tokio::test]
    async fn a_store_with_no_plan_passes_the_conformance_suite() {
        crate::conformance::run_all(|| async { Faulty::new(MemoryStore::new()) }).await;
    }

    #[tokio::test]
    async fn a_lost_answer_still_changes_the_store() {
        let f = Faulty::new(MemoryStore::new());
        f.plan(Call::PutValue, [Fault::LoseAnswer, Fault::Fail]);
        let v = chorus_core::crdt::Value::new(chorus_core::crdt::ValueKind::GCounter);
        assert!(f.put_value("r", "n", 0, &v, "t").await.is_err());
        assert_eq!(f.inner().values("r").await.unwrap().values.len(), 1, "carried out");
        assert!(f.put_value("r", "m", 0, &v, "u").await.is_err());
        assert_eq!(f.inner().values("r").await.unwrap().values.len(), 1, "refused before the store");
        assert_eq!(f.pending(), 0);
        assert_eq!(f.put_value("r", "m", 0, &v, "u").await.unwrap(), ValuePut::Written { version: 1 });
    }

    #[tokio::test]
    async fn dropped_events_never_arrive() {
        let f = Faulty::new(MemoryStore::new());
        let mut sub = f.subscribe("r").await.unwrap();
        f.drop_events(1, |e| matches!(e, RoomEvent::Cursor { cursor } if cursor.connection == "a"));
        for c in ["a", "b", "a"] {
            let cursor = chorus_protocol::CursorState { connection: c.into(), user: "u".into(), cursor: Value::Null, doc: None, version: None };
            f.publish("r", RoomEvent::Cursor { cursor }).await.unwrap();
        }
        for expected in ["b", "a"] {
            match &*sub.recv().await.unwrap() {
                RoomEvent::Cursor { cursor } => assert_eq!(cursor.connection, expected),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(f.dropped(), 1);
    }
}
