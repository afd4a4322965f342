//! Where Chorus keeps shared state and how nodes tell each other about it.
//!
//! Traits, each with the guarantee the server is built on:
//!
//! - [`PresenceStore`] holds who is in which room, with per-entry expiry.
//!   Every change (join, leave, state, expiry) and its announcement on the
//!   bus are one atomic step, stamped with the room's presence sequence, so
//!   no change goes unannounced (a crash or a timeout between the two cannot
//!   happen) and a node that missed an announcement notices the gap.
//!   Removing an entry hands it back to exactly one caller, however many
//!   nodes try at once, so exactly one leave event is published.
//! - [`Bus`] carries room events between nodes. It is a wake-up, not the
//!   truth: delivery is at most once, and a subscriber that falls behind is
//!   told so ([`BusError::Lagged`]) and resyncs from the store. Dropping a
//!   subscription unsubscribes; [`Bus::confirm`] checks that one still
//!   delivers.
//! - [`DocStore`] holds each text document's order: a log of ops appended
//!   by compare-and-set on the head version and its [`Digest`] (so one order
//!   exists however many nodes commit at once, and a replica of another
//!   history cannot extend this one), with (client, seq) deduplication, and
//!   snapshots behind which the log is trimmed. It never holds the text at
//!   the head: nodes keep that, so a commit costs the same whatever the
//!   document's size.
//! - [`ValueStore`] and [`HistoryStore`] hold shared values and undo
//!   histories, each written by compare-and-set with a write token, so a
//!   write retried after its answer was lost is recognised, not applied twice.
//! - [`DocCatalog`] gives documents a lifecycle: a room's documents are
//!   listed, one is deleted (everything kept for it freed, in one atomic
//!   step with its announcement), or created from an export; one opened
//!   and never edited is discarded once nobody reads it, so it leaves
//!   nothing behind.
//! - [`StatusStore`] answers, in one call, where a room's presence, values
//!   and documents stand (with who is live, not only the presence stamp,
//!   and what the values hold, not only their stamp), for the periodic
//!   reconciliation that repairs any event a node missed.
//!
//! Every name a client chooses (rooms, documents, values, users) must reach
//! only its own record: a backend keeps them apart by construction (tuples,
//! hash fields, length-prefixed keys), never by hoping a separator is absent.
//!
//! [`MemoryStore`] implements everything for one process with zero setup.
//! Every backend must pass [`conformance`], the same suite, unchanged.

use std::sync::Arc;

use async_trait::async_trait;
use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, Millis};
use chorus_core::text::TextOp;
use chorus_protocol::{CursorState, LeaveReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod conformance;
pub mod faults;
mod memory;
mod subscription;

pub use memory::MemoryStore;
pub use subscription::Subscription;

/// A failure of the backend itself (not of the request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached, or did not answer in time; the request
    /// may or may not have been carried out, and may be retried later.
    #[error("{0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
    /// The request named an incarnation of a document (its epoch) that the
    /// store no longer has: the document was deleted, or discarded and
    /// created again, since. Nothing was written; asking again cannot help.
    #[error("stale: {0}")]
    Stale(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where a room's presence (or its values) stands: the number of changes
/// made in one incarnation of the stored data. A store that lost the data
/// and started again has another `epoch`, so its numbers are never mistaken
/// for the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    pub epoch: String,
    pub seq: u64,
}

/// A presence entry removed by expiry, and announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub room: String,
    pub member: Member,
    /// Live members left in the room after this one went.
    pub count: usize,
}

/// What an expiry sweep did: the entries it removed (each announced), and
/// the rooms it could not sweep this time (the next sweep tries again).
#[derive(Debug, Default)]
pub struct Sweep {
    pub expired: Vec<Expired>,
    pub failed: Vec<(String, StoreError)>,
}

/// A room and how many are in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    pub room: String,
    pub members: usize,
}

/// A room's live members, as of `stamp` (`None`: the room has no presence
/// data at all).
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    pub members: Vec<Member>,
    pub stamp: Option<Stamp>,
}

/// What [`PresenceStore::join`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    /// The connection is a member (announced, unless it already was one);
    /// `members` is the room just after, as of `stamp`.
    Entered { members: Members },
    /// The room holds `limit` live members already; nothing changed.
    Full { limit: usize },
}

/// Who is in which room.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Adds a connection's entry and publishes [`RoomEvent::MemberJoined`],
    /// atomically, unless the room has `limit` live members. Idempotent: an
    /// entry live at `now` (a retried join) is refreshed and not announced
    /// again. One that expired and was not swept yet is replaced and
    /// announced: lists read since its expiry leave it out, so coming back
    /// in silence would hide it from every room that read one.
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis, limit: usize) -> StoreResult<Joined>;

    /// Pushes an entry's expiry forward; false when the entry is gone or
    /// expired at `now` (swept or not: for the same reason as in
    /// [`PresenceStore::join`], only an announced join brings it back).
    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis, now: Millis) -> StoreResult<bool>;

    /// Replaces an entry's application state and publishes
    /// [`RoomEvent::Presence`], atomically; false when the entry is gone or
    /// expired at `now` (swept or not, as in [`PresenceStore::refresh`]:
    /// lists read since its expiry leave it out, so its state would be
    /// announced for a member they do not hold).
    async fn set_state(&self, room: &str, connection: &str, state: Value, now: Millis) -> StoreResult<bool>;

    /// Removes an entry and publishes [`RoomEvent::MemberLeft`] with
    /// `reason`, atomically. Returns it with the live count after, to the
    /// one caller that removed it; `None` to everyone else.
    async fn leave(&self, room: &str, connection: &str, reason: LeaveReason, now: Millis) -> StoreResult<Option<(Member, usize)>>;

    /// Live entries at `now`, in join order, with the room's stamp.
    async fn members(&self, room: &str, now: Millis) -> StoreResult<Members>;

    /// Number of live entries at `now`.
    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize>;

    /// Removes every entry expired at `now`, in every room, each room's in
    /// one atomic step with their [`RoomEvent::MemberLeft`] announcements.
    /// Each expired entry is returned by exactly one call, however many run
    /// at once. A room that fails is reported in [`Sweep::failed`] and the
    /// sweep goes on with the others.
    async fn expire(&self, now: Millis) -> StoreResult<Sweep>;

    /// Rooms with live members at `now`.
    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>>;

    /// Whether the backend answers (for readiness checks).
    async fn ping(&self) -> StoreResult<()>;
}

/// An event in a room, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    MemberJoined { member: Member, count: usize, stamp: Stamp },
    MemberLeft { connection: String, user: String, reason: LeaveReason, count: usize, stamp: Stamp },
    Presence { connection: String, state: Value, stamp: Stamp },
    Cursor { cursor: CursorState },
    /// An op committed to a document of the room. Shared: the in-memory
    /// store keeps the same entry in its log (serialized as the entry).
    DocOp {
        doc: String,
        #[serde(serialize_with = "shared::serialize", deserialize_with = "shared::deserialize")]
        entry: Arc<LogEntry>,
    },
    /// A shared value's new state, as version `version`; `stamp` is the
    /// room's values sequence after the write.
    Value { name: String, version: u64, state: chorus_core::crdt::Value, stamp: Stamp },
    /// The document was deleted: the incarnation `epoch` is gone from the
    /// store, with everything kept for it.
    DocDeleted { doc: String, epoch: String },
}

/// A shared entry travels as the entry itself.
mod shared {
    use std::sync::Arc;

    use chorus_core::oplog::LogEntry;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(entry: &Arc<LogEntry>, s: S) -> Result<S::Ok, S::Error> {
        LogEntry::serialize(entry, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<LogEntry>, D::Error> {
        LogEntry::deserialize(d).map(Arc::new)
    }
}

/// Why a subscription stopped delivering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The subscriber fell behind and `missed` events were dropped (0 when
    /// the count is unknown: the bus connection was lost, or the
    /// subscription had to be made again); resync.
    #[error("subscriber fell behind; {missed} events missed")]
    Lagged { missed: u64 },
    /// The bus is gone (the backend shut down).
    #[error("bus closed")]
    Closed,
}

/// Carries room events to every node with subscribers in that room.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends an event to every subscriber of the room (this node's included).
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()>;

    /// Starts receiving the room's events published from now on. Dropping
    /// the subscription ends it (the node unsubscribes once none is left).
    async fn subscribe(&self, room: &str) -> StoreResult<Subscription>;

    /// [`subscribe`](Self::subscribe), without the ops of this node's own
    /// [`DocStore::append_group`] calls: a room applies those from the
    /// call's answer, and hearing each one back again cost it a wake-up per
    /// op. Everything else, other nodes' ops included, comes as from
    /// `subscribe`, in the same order. A backend that cannot tell its own
    /// groups from others' delivers them all (the default); so may one on a
    /// single node, where nothing else commits.
    async fn subscribe_without_own_groups(&self, room: &str) -> StoreResult<Subscription> {
        self.subscribe(room).await
    }

    /// Checks that this node's subscription to `room` still delivers (an
    /// event sent now comes back). When it does not, the bus subscribes
    /// again by itself and the room's subscriptions report
    /// [`BusError::Lagged`]; the error says what was wrong.
    async fn confirm(&self, room: &str) -> StoreResult<()>;

    /// Rooms this node is subscribed to (for metrics and tests).
    fn subscribed_rooms(&self) -> usize;
}

/// A document as stored: its latest snapshot and the ops kept around it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    /// Identifies this incarnation of the log: a document lost by the store
    /// and created again gets a new epoch, so old versions are never trusted.
    pub epoch: String,
    pub snapshot_version: u64,
    pub snapshot: String,
    /// The digest at the version before the first kept op (the snapshot's
    /// when no op is kept).
    pub oldest_digest: Digest,
    /// Consecutive ops, ending at the head. Those at or before the snapshot
    /// are kept for catching clients up; the rest apply to the snapshot.
    pub ops: Vec<LogEntry>,
}

impl StoredDoc {
    pub fn head(&self) -> u64 {
        self.ops.last().map_or(self.snapshot_version, |e| e.version)
    }

    pub fn head_digest(&self) -> Digest {
        self.ops.last().map_or(self.oldest_digest, |e| e.digest)
    }

    /// The text at `version`: the snapshot with the kept ops after it, up
    /// to `version`. Ops only run forward, so versions before the snapshot
    /// are out of reach even while their ops are kept.
    pub fn text_at(&self, version: u64) -> Result<String, TextAtError> {
        if version < self.snapshot_version {
            return Err(TextAtError::NotKept { earliest: self.snapshot_version, head: self.head() });
        }
        if version > self.head() {
            return Err(TextAtError::Ahead { head: self.head() });
        }
        let mut text = chorus_core::text::TextDoc::from(self.snapshot.as_str());
        for e in self.ops.iter().filter(|e| e.version > self.snapshot_version && e.version <= version) {
            text.apply(&e.op).map_err(|err| TextAtError::Damaged(format!("op {} does not apply: {err}", e.version)))?;
        }
        Ok(text.rope().to_string())
    }
}

/// Why [`StoredDoc::text_at`] has no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextAtError {
    /// The version is older than the snapshot the store keeps.
    #[error("versions before {earliest} are no longer kept (the head is {head})")]
    NotKept { earliest: u64, head: u64 },
    /// The version is past the head.
    #[error("the document is at version {head}")]
    Ahead { head: u64 },
    /// The stored ops do not apply to the snapshot.
    #[error("the stored document is damaged: {0}")]
    Damaged(String),
}

/// Where a document's log stands in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocHead {
    pub epoch: String,
    pub version: u64,
    pub digest: Digest,
}

/// An undo history to write together with the undo (or redo) op it
/// commits, if the stored history is still at `expected_rev`.
#[derive(Debug, Clone, Copy)]
pub struct HistoryWrite<'a> {
    pub user: &'a str,
    pub expected_rev: u64,
    /// Names this write: a retry of it is recognised.
    pub token: &'a str,
    pub saved: &'a str,
}

/// One op to append (see [`DocStore::append`]).
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    pub epoch: &'a str,
    /// The head the op was transformed to, and its digest.
    pub expected: u64,
    pub expected_digest: Digest,
    pub client: &'a str,
    pub seq: u64,
    pub op: &'a TextOp,
    /// The digest the log has once the op is appended at `expected + 1`.
    pub digest: Digest,
    /// For an undo or redo: the user's history after it, written with it.
    pub history: Option<HistoryWrite<'a>>,
}

/// What [`DocStore::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The op is in the log at `version`, committed at `at` (ms).
    Committed { version: u64, at: u64 },
    /// (client, seq) was already committed, at `version`; nothing changed.
    /// For a commit with a history: this very write (its token) landed
    /// before, at `version`.
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
    /// The head is at the expected version but with another digest: the
    /// caller's replica and the store hold different histories.
    Diverged,
    /// The user's stored history is no longer at the expected revision.
    HistoryMoved,
}

/// The most ops a [`Group`] holds; a longer one is refused.
pub const MAX_GROUP: usize = 256;

/// One op of a [`Group`].
#[derive(Debug, Clone, Copy)]
pub struct GroupOp<'a> {
    pub client: &'a str,
    pub seq: u64,
    /// Transformed to follow the ops before it in the group.
    pub op: &'a TextOp,
    /// The digest the log has once this op is appended.
    pub digest: Digest,
}

/// Ops of one document to append in one atomic step (see
/// [`DocStore::append_group`]): the first at `expected + 1`, each of the
/// others right after the one before it.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    pub epoch: &'a str,
    /// The head the first op was transformed to, and its digest.
    pub expected: u64,
    pub expected_digest: Digest,
    pub ops: &'a [GroupOp<'a>],
}

impl<'a> Group<'a> {
    /// Refuses a group longer than [`MAX_GROUP`].
    pub fn check_size(&self) -> StoreResult<()> {
        if self.ops.len() > MAX_GROUP {
            return Err(StoreError::Backend(format!("a group of {} ops is more than the {MAX_GROUP} one append takes", self.ops.len())));
        }
        Ok(())
    }

    /// The group's ops as the single commits they stand for: each expects
    /// the head the ones before it leave.
    pub fn commits(&self) -> impl Iterator<Item = Commit<'a>> + 'a {
        let (epoch, mut expected, mut expected_digest) = (self.epoch, self.expected, self.expected_digest);
        self.ops.iter().map(move |o| {
            let c = Commit { epoch, expected, expected_digest, client: o.client, seq: o.seq, op: o.op, digest: o.digest, history: None };
            expected += 1;
            expected_digest = o.digest;
            c
        })
    }
}

/// A snapshot to record (see [`DocStore::snapshot`]).
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub epoch: &'a str,
    pub version: u64,
    pub text: String,
    /// Ops at or before this are dropped (never past the snapshot).
    pub trim_to: u64,
    /// The digest at `trim_to` (where the kept log then starts).
    pub trim_digest: Digest,
}

/// The ordered ops of text documents. Documents are addressed by room and
/// name; each room's documents travel together (one Redis hash tag).
#[async_trait]
pub trait DocStore: Send + Sync + 'static {
    /// The document's snapshot and kept ops; created empty at version 0
    /// with a fresh epoch when it does not exist (see [`DocCatalog`]).
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc>;

    /// Appends an op at `expected + 1` if the head is `expected` with
    /// `expected_digest` and the log is still `epoch`, unless (client, seq)
    /// is committed already, and publishes it on the room's bus as
    /// [`RoomEvent::DocOp`]. With a history, also writes it if the user's
    /// stored history is still at its expected revision. Atomic: one round
    /// trip on a remote store, and no commit goes unpublished.
    async fn append(&self, room: &str, doc: &str, commit: &Commit<'_>) -> StoreResult<Appended>;

    /// Appends a group of ops in one atomic step (one round trip, one
    /// transaction): as if each were [`append`](Self::append)ed in turn,
    /// expecting the head the ones before it leave, stopping at the first
    /// that is not [`Appended::Committed`]. The answer holds one outcome per
    /// op looked at, in order: the committed ops, then at most one other
    /// outcome (a conflict, a duplicate, a stale seq, another epoch, a
    /// divergence), after which no op of the group was looked at or
    /// appended. So what a group commits is always a prefix of it, each op
    /// published on the bus and deduplicated by (client, seq) as alone.
    /// An empty group is answered with no outcome and changes nothing; one
    /// of more than [`MAX_GROUP`] ops is refused ([`StoreError::Backend`]).
    async fn append_group(&self, room: &str, doc: &str, group: &Group<'_>) -> StoreResult<Vec<Appended>>;

    /// [`append_group`](Self::append_group), answered now on the caller's
    /// thread by a store that never waits (the one in memory); `None`, the
    /// default, from a store that may wait (over a network, on a writer
    /// thread): the caller then awaits `append_group`. A room commits on
    /// every op: this spares it the owned copy of the group and the boxed
    /// future that a call which may wait needs.
    fn append_group_now(&self, room: &str, doc: &str, group: &Group<'_>) -> Option<StoreResult<Vec<Appended>>> {
        let _ = (room, doc, group);
        None
    }

    /// Ops after `version` up to the head; `None` when the log no longer
    /// reaches back that far, does not reach `version` yet, or is another
    /// epoch. A document that does not exist is the empty text at version 0
    /// in every epoch: none after 0.
    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>>;

    /// The (seq, version) of `client`'s last committed op, while the log
    /// still holds it.
    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>>;

    /// Records the text at `version` and drops the ops at or before
    /// `trim_to` (never past the snapshot). An older snapshot than the one
    /// kept is ignored.
    async fn snapshot(&self, room: &str, doc: &str, snapshot: Snapshot<'_>) -> StoreResult<()>;
}

/// A stored document, as [`DocCatalog::list_docs`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocSummary {
    pub name: String,
    pub epoch: String,
    /// The head version.
    pub version: u64,
    /// When the head was committed (ms since the Unix epoch).
    pub changed_at: u64,
}

/// The incarnation [`DocCatalog::delete_doc`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedDoc {
    pub epoch: String,
    pub version: u64,
}

/// A document to create from an export (see [`DocCatalog::import_doc`]):
/// its text at `version`, whose digest is `digest`, in incarnation `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedDoc<'a> {
    pub epoch: &'a str,
    pub version: u64,
    pub digest: Digest,
    pub text: &'a str,
    pub changed_at: u64,
}

/// The lifecycle of documents. Loading a document that does not exist
/// creates it, empty at version 0 with a fresh epoch, so every node that
/// opens it meanwhile shares that epoch; once nobody reads a document that
/// was never edited, a node discards it ([`DocCatalog::discard_if_empty`]),
/// so opening one and never editing it leaves nothing behind. An append at
/// version 0 to a document that is not there (discarded while a replica of
/// it was open elsewhere) creates it again in the writer's epoch; one past
/// version 0 never does: it was made on a replica of a deleted incarnation.
#[async_trait]
pub trait DocCatalog: Send + Sync + 'static {
    /// The room's documents with at least one op (or imported), by name.
    async fn list_docs(&self, room: &str) -> StoreResult<Vec<DocSummary>>;

    /// Removes the document if it is still incarnation `epoch` with nothing
    /// committed (opened, never edited), with any undo histories of it;
    /// when there is no document, the histories saved for it meanwhile.
    /// True when a document was removed.
    async fn discard_if_empty(&self, room: &str, doc: &str, epoch: &str) -> StoreResult<bool>;

    /// Removes the document and everything kept for it (log, snapshot,
    /// clients' last commits, users' undo histories) and publishes
    /// [`RoomEvent::DocDeleted`], atomically. A node still holding a
    /// replica of it can neither extend nor recreate it: its appends are
    /// answered [`Appended::EpochChanged`]. `None` when it did not exist.
    async fn delete_doc(&self, room: &str, doc: &str) -> StoreResult<Option<DeletedDoc>>;

    /// Creates the document from an export: `text` as its snapshot at
    /// `version`, with an empty log, in place of one nobody edited (a
    /// reader may have it open: its node finds the new epoch and reloads).
    /// False (and nothing changed) when the document has an op.
    async fn import_doc(&self, room: &str, doc: &str, imported: &ImportedDoc<'_>) -> StoreResult<bool>;
}

/// A shared value as stored: its state after `version` changes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredValue {
    pub version: u64,
    pub state: chorus_core::crdt::Value,
}

/// Every value of a room, as of `stamp` (`None`: the room has no values).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomValuesStored {
    pub values: Vec<(String, StoredValue)>,
    pub stamp: Option<Stamp>,
}

/// What [`ValueStore::put_value`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ValuePut {
    /// The state is stored as `version` (by this call, or by an earlier
    /// call with the same token whose answer was lost).
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
    /// Every value of a room, by name, with the room's values stamp.
    async fn values(&self, room: &str) -> StoreResult<RoomValuesStored>;

    /// Stores `state` as version `expected + 1` if the value is still at
    /// `expected` (0: it does not exist yet), and publishes it on the
    /// room's bus as [`RoomEvent::Value`]; atomic, one round trip. `token`
    /// names this write: repeating the call after a lost answer finds it.
    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &chorus_core::crdt::Value, token: &str) -> StoreResult<ValuePut>;
}

/// A user's undo history of a document as stored: the server's opaque
/// JSON, and the revision it is at (every write makes the next one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHistory {
    pub rev: u64,
    pub saved: String,
}

/// Each user's undo history of each document, so undo survives reconnects
/// and works from any node, as one history per user.
#[async_trait]
pub trait HistoryStore: Send + Sync + 'static {
    async fn load_history(&self, room: &str, doc: &str, user: &str) -> StoreResult<Option<StoredHistory>>;

    /// Writes `saved` as revision `expected_rev + 1` if the stored history
    /// is at `expected_rev` (0: none stored). True when written, by this
    /// call or by an earlier one with the same `token`. The history is of
    /// incarnation `epoch` of the document: when the document is not there
    /// (deleted) or is another incarnation, nothing is written and the
    /// answer is [`StoreError::Stale`], so a replica that missed a deletion
    /// never leaves a history behind for a document that is gone.
    // The write's fields as in an undo's [`HistoryWrite`], with the
    // incarnation it is of.
    #[allow(clippy::too_many_arguments)]
    async fn save_history(&self, room: &str, doc: &str, epoch: &str, user: &str, expected_rev: u64, token: &str, saved: &str) -> StoreResult<bool>;
}

/// Where a room stands in the store: its presence and values stamps, who
/// is live in it, what its values hold, and the heads of the documents
/// asked about (`None`: the document does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStatus {
    pub presence: Option<Stamp>,
    pub members: LiveMembers,
    pub values: Option<Stamp>,
    pub value_content: ValuesContent,
    pub docs: Vec<Option<DocHead>>,
}

/// Who a room's live members are, in a few bytes: how many, and a
/// fingerprint of their connection ids. Stamps count changes, they do not
/// name them: a store that went back (an older copy restored) and moved on
/// by as many changes, or a change made without its announcement, leaves a
/// node's list and the store's apart at the same stamp. Comparing these
/// tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LiveMembers {
    pub count: usize,
    /// The XOR of [`connection_hash`] over the members: the same whatever
    /// their order, so a store computes it as it walks them.
    pub fingerprint: u32,
}

impl LiveMembers {
    pub fn of<'a>(connections: impl IntoIterator<Item = &'a str>) -> Self {
        connections.into_iter().fold(Self::default(), |acc, conn| Self { count: acc.count + 1, fingerprint: acc.fingerprint ^ connection_hash(conn) })
    }
}

/// A connection id's part of [`LiveMembers::fingerprint`]: the first 32
/// bits of its SHA-1, which a Redis script computes too (`redis.sha1hex`).
/// It guards against accidents, not an adversary: connection ids are the
/// server's.
pub fn connection_hash(connection: &str) -> u32 {
    first_32_bits(sha1_smol::Sha1::from(connection.as_bytes()))
}

/// The first 32 bits of a SHA-1, as a Redis script reads them
/// (`tonumber(string.sub(redis.sha1hex(s), 1, 8), 16)`): the one form every
/// fingerprint here takes, so that a node and a script agree.
fn first_32_bits(sha: sha1_smol::Sha1) -> u32 {
    let digest = sha.digest().bytes();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// What a room's values hold, in a few bytes: how many, and a fingerprint
/// of their names, versions and states. As for members, the values stamp
/// counts writes without naming them: a store that went back and moved on
/// by as many writes (another state written as the same version), leaves a
/// node's values and the store's apart at the same stamp. Comparing these
/// tells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ValuesContent {
    pub count: usize,
    /// The XOR of [`value_hash`] over the values: the same whatever their
    /// order, so a store computes it as it walks them.
    pub fingerprint: u32,
}

impl ValuesContent {
    /// The content of values as a node holds them, each state in its stored
    /// form (`serde_json::to_string`, which every backend stores and which
    /// reads back to the same state, floats included: the workspace's
    /// serde_json parses them exactly).
    pub fn of<'a>(values: impl IntoIterator<Item = (&'a str, &'a StoredValue)>) -> Self {
        values.into_iter().fold(Self::default(), |acc, (name, v)| {
            let json = serde_json::to_string(&v.state).unwrap_or_default();
            acc.with(name, v.version, &json)
        })
    }

    /// Adds one value, its state as stored (JSON).
    pub fn with(self, name: &str, version: u64, json: &str) -> Self {
        Self { count: self.count + 1, fingerprint: self.fingerprint ^ value_hash(name, version, json) }
    }
}

/// A value's part of [`ValuesContent::fingerprint`]: the first 32 bits of
/// the SHA-1 of `LEN:NAME:VERSION:JSON` (LEN the name's length in bytes,
/// VERSION in decimal), which a Redis script computes too.
pub fn value_hash(name: &str, version: u64, json: &str) -> u32 {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(format!("{}:{name}:{version}:", name.len()).as_bytes());
    sha.update(json.as_bytes());
    first_32_bits(sha)
}

#[async_trait]
pub trait StatusStore: Send + Sync + 'static {
    /// One consistent look at a room (one round trip on a remote store),
    /// its members as live at `now`.
    async fn status(&self, room: &str, docs: &[&str], now: Millis) -> StoreResult<RoomStatus>;
}

/// A backend: everything above, with a name for logs.
pub trait Backend: PresenceStore + Bus + DocStore + DocCatalog + ValueStore + HistoryStore + StatusStore {
    /// What the server prints at start-up, e.g. "embedded in-memory store".
    fn describe(&self) -> String;
}

/// A fresh random id (epochs, tokens, node ids): 64 bits as 16 hex digits.
pub fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_members_name_who_not_only_how_many() {
        assert_eq!(LiveMembers::of([]), LiveMembers::default());
        assert_eq!(LiveMembers::of(["a", "b", "c"]), LiveMembers::of(["c", "a", "b"]), "order does not matter");
        assert_eq!(LiveMembers::of(["a", "b"]).count, LiveMembers::of(["a", "c"]).count);
        assert_ne!(LiveMembers::of(["a", "b"]), LiveMembers::of(["a", "c"]), "the same count, other members");
        // What Redis computes with tonumber(string.sub(redis.sha1hex(conn), 1, 8), 16).
        assert_eq!(connection_hash("abc"), 0xa999_3e36, "sha1(abc) = a9993e36...");
    }

    fn register(value: serde_json::Value) -> StoredValue {
        use chorus_core::crdt::{Hlc, Value, ValueKind, ValueOp};
        let mut state = Value::new(ValueKind::Register);
        state.apply(&ValueOp::Set { value, stamp: Hlc::new(1, 0, "w") }).unwrap();
        StoredValue { version: 1, state }
    }

    #[test]
    fn values_content_names_states_not_only_versions() {
        let (a, b) = (register(serde_json::json!("a")), register(serde_json::json!("b")));
        assert_eq!(ValuesContent::of([]), ValuesContent::default());
        assert_eq!(ValuesContent::of([("x", &a), ("y", &b)]), ValuesContent::of([("y", &b), ("x", &a)]), "order does not matter");
        assert_ne!(ValuesContent::of([("x", &a)]), ValuesContent::of([("x", &b)]), "the same version, another state");
        assert_ne!(ValuesContent::of([("x", &a)]), ValuesContent::of([("y", &a)]));
        assert_ne!(ValuesContent::of([("x", &a)]), ValuesContent::of([("x", &StoredValue { version: 2, ..a.clone() })]));
        // What Redis computes with tonumber(string.sub(redis.sha1hex('1:x:7:{}'), 1, 8), 16).
        assert_eq!(value_hash("x", 7, "{}"), u32::from_str_radix(&sha1_smol::Sha1::from("1:x:7:{}").digest().to_string()[..8], 16).unwrap());
    }

    /// A node that heard a state as JSON (from a remote store or its bus)
    /// fingerprints it as the node that wrote it: the state reads back
    /// exactly, floats included, or nodes would find each other's values
    /// apart for ever (and show their clients floats a last bit apart).
    #[test]
    fn a_state_fingerprints_the_same_after_a_round_trip_through_json() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let f = f64::from_bits(seed);
            let f = if f.is_finite() { f } else { i as f64 / 7.0 };
            let written = register(serde_json::json!({ "f": f, "g": 0.1 + 0.2 }));
            let json = serde_json::to_string(&written.state).unwrap();
            let read = StoredValue { version: 1, state: serde_json::from_str(&json).unwrap() };
            assert_eq!(ValuesContent::of([("v", &read)]), ValuesContent::of([("v", &written)]), "{json}");
        }
    }
}
