//! Where Chorus keeps shared state and how nodes tell each other about it.
//!
//! Two traits, each with one guarantee the server is built on:
//!
//! - [`PresenceStore`] holds who is in which room, with per-entry expiry.
//!   Removing an entry (leave or expiry) hands it back to exactly one caller,
//!   however many nodes try at once, so exactly one leave event is published.
//! - [`Bus`] carries room events between nodes. It is a wake-up, not the
//!   truth: delivery is at most once, and a subscriber that falls behind is
//!   told so ([`BusError::Lagged`]) and resyncs from the store.
//! - [`DocStore`] holds each text document's order: a log of ops appended
//!   by compare-and-set on the head version (so one order exists however
//!   many nodes commit at once), with (client, seq) deduplication, and
//!   snapshots behind which the log is trimmed. It never holds the text at
//!   the head: nodes keep that, so a commit costs the same whatever the
//!   document's size.
//!
//! [`MemoryStore`] implements both for one process with zero setup. Every
//! backend must pass [`conformance`], the same suite, unchanged.

use std::sync::Arc;

use async_trait::async_trait;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, Millis};
use chorus_core::text::TextOp;
use chorus_protocol::{CursorState, LeaveReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

pub mod conformance;
mod memory;

pub use memory::MemoryStore;

/// A failure of the backend itself (not of the request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached; the request may be retried later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A presence entry removed by expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub room: String,
    pub member: Member,
    /// Live members left in the room.
    pub count: usize,
}

/// A room and how many are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub room: String,
    pub members: usize,
}

/// Who is in which room.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds or replaces a connection's entry; returns the live count after.
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis) -> StoreResult<usize>;

    /// Pushes an entry's expiry forward; false when the entry is gone.
    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis) -> StoreResult<bool>;

    /// Replaces an entry's application state; false when the entry is gone.
    async fn set_state(&self, room: &str, connection: &str, state: Value) -> StoreResult<bool>;

    /// Removes an entry. Returns it with the live count after, to the one
    /// caller that removed it; `None` to everyone else.
    async fn leave(&self, room: &str, connection: &str, now: Millis) -> StoreResult<Option<(Member, usize)>>;

    /// Live entries at `now`, in join order.
    async fn members(&self, room: &str, now: Millis) -> StoreResult<Vec<Member>>;

    /// Number of live entries at `now`.
    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize>;

    /// Removes every entry expired at `now`, in every room. Each expired entry
    /// is returned by exactly one call, however many run at once.
    async fn expire(&self, now: Millis) -> StoreResult<Vec<Expired>>;

    /// Rooms with live members at `now`.
    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>>;

    /// Whether the backend answers (for readiness checks).
    async fn ping(&self) -> StoreResult<()>;
}

/// An event in a room, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    MemberJoined { member: Member, count: usize },
    MemberLeft { connection: String, user: String, reason: LeaveReason, count: usize },
    Presence { connection: String, state: Value },
    Cursor { cursor: CursorState },
    /// An op committed to a document of the room.
    DocOp { doc: String, entry: LogEntry },
    /// A shared value's new state, as version `version`.
    Value { name: String, version: u64, state: chorus_core::crdt::Value },
}

/// Why a subscription stopped delivering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The subscriber fell behind and `missed` events were dropped (0 when
    /// the count is unknown: the bus connection was lost); resync.
    #[error("subscriber fell behind; {missed} events missed")]
    Lagged { missed: u64 },
    /// The bus is gone (the backend shut down).
    #[error("bus closed")]
    Closed,
}

/// Events of one room, in publish order, from the moment of subscribing.
/// Dropping it unsubscribes. Events are shared, not copied, between the
/// subscribers of a node.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<RoomEvent>>,
    /// Bumped by a backend whose connection to the bus was lost and
    /// restored: whatever was published meanwhile is gone.
    resync: Option<watch::Receiver<u64>>,
}

impl Subscription {
    pub fn new(rx: broadcast::Receiver<Arc<RoomEvent>>) -> Self {
        Self { rx, resync: None }
    }

    /// A subscription that also reports lag when `resync` changes.
    pub fn with_resync(rx: broadcast::Receiver<Arc<RoomEvent>>, mut resync: watch::Receiver<u64>) -> Self {
        resync.mark_unchanged();
        Self { rx, resync: Some(resync) }
    }

    /// The next event.
    pub async fn recv(&mut self) -> Result<Arc<RoomEvent>, BusError> {
        let lagged = async {
            let reported = match &mut self.resync {
                Some(w) => w.changed().await.is_ok(),
                None => false,
            };
            if !reported {
                // No resync signal (or its sender is gone): never lagged this way.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            _ = lagged => Err(BusError::Lagged { missed: 0 }),
            event = self.rx.recv() => event.map_err(|e| match e {
                broadcast::error::RecvError::Lagged(missed) => BusError::Lagged { missed },
                broadcast::error::RecvError::Closed => BusError::Closed,
            }),
        }
    }
}

/// Carries room events to every node with subscribers in that room.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends an event to every subscriber of the room (this node's included).
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()>;

    /// Starts receiving the room's events published from now on.
    async fn subscribe(&self, room: &str) -> StoreResult<Subscription>;
}

/// A document as stored: its latest snapshot and the ops kept around it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    /// Identifies this incarnation of the log: a document lost by the store
    /// and created again gets a new epoch, so old versions are never trusted.
    pub epoch: String,
    pub snapshot_version: u64,
    pub snapshot: String,
    /// Consecutive ops, ending at the head. Those at or before the snapshot
    /// are kept for catching clients up; the rest apply to the snapshot.
    pub ops: Vec<LogEntry>,
}

impl StoredDoc {
    pub fn head(&self) -> u64 {
        self.ops.last().map_or(self.snapshot_version, |e| e.version)
    }
}

/// What [`DocStore::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The op is in the log at `version`.
    Committed { version: u64 },
    /// (client, seq) was already committed, at `version`; nothing changed.
    Duplicate { version: u64 },
    /// The head moved on to `head`. `missed` holds the ops after the
    /// expected version (empty when the caller expected a version the log
    /// does not hold): transform past them and retry, without a second
    /// round trip to fetch them.
    Conflict { head: u64, missed: Vec<LogEntry> },
    /// `seq` is older than the client's last committed op (`last`).
    StaleSeq { last: u64 },
    /// The log is a different incarnation than the caller's.
    EpochChanged { epoch: String },
}

/// The ordered ops of text documents. Documents are addressed by room and
/// name; each room's documents travel together (one Redis hash tag).
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// The document's snapshot and kept ops; an empty document at version 0
    /// with a fresh epoch when it does not exist yet.
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc>;

    /// Appends `op` at `expected + 1` if the head is `expected` and the log
    /// is still `epoch`, unless (client, seq) is committed already, and
    /// publishes it on the room's bus as [`RoomEvent::DocOp`]. Atomic: one
    /// round trip on a remote store, and no commit goes unpublished.
    #[allow(clippy::too_many_arguments)]
    async fn append(&self, room: &str, doc: &str, epoch: &str, expected: u64, client: &str, seq: u64, op: &TextOp) -> StoreResult<Appended>;

    /// Ops after `version` up to the head; `None` when the log no longer
    /// reaches back that far (or the epoch differs).
    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>>;

    /// The (seq, version) of `client`'s last committed op, while the log
    /// still holds it.
    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>>;

    /// Records `text` as the document at `version` and drops the ops at or
    /// before `trim_to` (never past the snapshot). An older snapshot than
    /// the one kept is ignored.
    async fn snapshot(&self, room: &str, doc: &str, epoch: &str, version: u64, text: String, trim_to: u64) -> StoreResult<()>;
}

/// A shared value as stored: its state after `version` changes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue {
    pub version: u64,
    pub state: chorus_core::crdt::Value,
}

/// What [`ValueStore::put_value`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ValuePut {
    /// The state is stored as `version`.
    Written { version: u64 },
    /// The value had moved on (or was created) meanwhile: here it is, to
    /// apply the change to and try again.
    Conflict { current: Option<StoredValue> },
}

/// The shared values (CRDTs) of rooms. A change is computed by the node
/// (the CRDT logic lives in the core, not in the store) and stored with a
/// compare-and-set on the value's version, so changes to one value are
/// serialised however many nodes make them.
#[async_trait]
pub trait ValueStore: Send + Sync + 'static {
    /// Every value of a room, by name.
    async fn values(&self, room: &str) -> StoreResult<Vec<(String, StoredValue)>>;

    /// Stores `state` as version `expected + 1` if the value is still at
    /// `expected` (0: it does not exist yet), and publishes it on the
    /// room's bus as [`RoomEvent::Value`]; atomic, one round trip.
    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &chorus_core::crdt::Value) -> StoreResult<ValuePut>;
}

/// Each user's undo history of each document, saved as the server's
/// opaque JSON so undo survives reconnects and works from any node.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<String>>;
    async fn save_history(&self, room: &str, doc: &str, user: &str, saved: String) -> StoreResult<()>;
}

/// A backend: a presence store, a bus, a document store, a value store
/// and a history store, with a name for logs.
pub trait Backend: PresenceStore + Bus + DocStore + ValueStore + HistoryStore {
    /// What the server prints at start-up, e.g. "embedded in-memory store".
    fn describe(&self) -> String;
}
