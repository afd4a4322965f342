//! Chorus on an embedded SQLite database: the durable store of one node.
//!
//! Documents (logs, snapshots, clients' last commits), shared values and
//! undo histories live in one SQLite file in WAL mode. Every change goes
//! through one writer thread that commits whatever is queued in a single
//! transaction (group commit: concurrent commits share one fsync), and
//! answers only once it is on disk (`synchronous=FULL`; `normal` survives a
//! process crash, not a power loss). Reads run on a small pool of read
//! connections on blocking threads, never on the async workers.
//!
//! Presence and the bus stay in this process's memory, exactly as in the
//! in-memory store (whose code this reuses): presence belongs to
//! connections, and a restart has none, so nothing from before a restart
//! can linger as a ghost member. Events are published by the writer thread
//! after their commit, in commit order.
//!
//! A lock file next to the database keeps a second server off it; a file
//! that is not a Chorus database, or of a layout this build does not know,
//! is refused at start and never written to.

mod backup;
mod docs;
mod schema;
mod values;
mod writer;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chorus_core::presence::{Member, Millis};
use chorus_protocol::LeaveReason;
use chorus_store::{
    Backend, Bus, Joined, Members, MemoryStore, PresenceStore, RoomEvent, RoomStatus, RoomSummary, StatusStore, StoreError, StoreResult, Subscription,
    Sweep,
};
use fs2::FileExt;
use rusqlite::Connection;
use serde_json::Value;

pub use backup::{backup, restore};
pub use writer::WriterStats;

/// How hard a commit waits for the disk before it is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Every acknowledged commit survives a power loss (fsync per group commit).
    #[default]
    Full,
    /// Every acknowledged commit survives a crash of the process, not of the machine.
    Normal,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: another Chorus server is using this database (its lock file {lock} is held)")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("{path}: not a Chorus database: {reason}; refusing to use it (it was left untouched)")]
    NotChorus { path: PathBuf, reason: String },
    #[error("{path}: a Chorus database of layout {found}, this build knows layout {known}; refusing to use it (it was left untouched)")]
    UnknownSchema { path: PathBuf, found: i64, known: i32 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
}

/// Read connections kept open between reads.
const IDLE_READERS: usize = 4;

/// The SQLite backend. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    sync: SyncMode,
    memory: MemoryStore,
    writer: Option<writer::Writer>,
    thread: Option<std::thread::JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    stats: Arc<WriterStats>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the writer, which finishes its batch, closes the database
        // and then releases the lock file.
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, whose folder must exist.
    pub fn open(path: &Path, sync: SyncMode) -> Result<Self, OpenError> {
        let lock = lock_database(path)?;
        let conn = schema::open_writer(path, sync)?;
        let checkpointer = schema::open_checkpointer(path, sync).map_err(OpenError::Sqlite)?;
        let memory = MemoryStore::new();
        let stats = Arc::new(WriterStats::default());
        let (writer, thread) = writer::Writer::start(conn, checkpointer, memory.clone(), stats.clone(), lock)
            .map_err(|source| OpenError::Io { path: path.to_owned(), source })?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                sync,
                memory,
                writer: Some(writer),
                thread: Some(thread),
                readers: Mutex::new(Vec::new()),
                stats,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Transactions and writes committed since the store was opened.
    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    fn writer(&self) -> &writer::Writer {
        self.inner.writer.as_ref().expect("the writer lives as long as the store")
    }

    /// Runs `f` on a read connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let run = move || -> StoreResult<T> {
            let idle = inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(c) => c,
                None => schema::open_reader(&inner.path).map_err(|e| StoreError::Unavailable(format!("sqlite: {e}")))?,
            };
            let out = f(&conn).map_err(|e| StoreError::Backend(format!("sqlite: {e}")));
            let mut idle = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
            out
        };
        tokio::task::spawn_blocking(run).await.map_err(|e| StoreError::Backend(format!("sqlite read: {e}")))?
    }
}

/// Takes the lock file of the database at `db`, held for as long as the
/// returned file is open; refused while another process holds it.
pub(crate) fn lock_database(db: &Path) -> Result<std::fs::File, OpenError> {
    let lock = lock_path(db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| OpenError::Io { path: lock.clone(), source })?;
    file.try_lock_exclusive().map_err(|_| OpenError::Locked { path: db.to_owned(), lock })?;
    Ok(file)
}

/// The lock file of the database at `path`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis, limit: usize) -> StoreResult<Joined> {
        self.inner.memory.join(room, member, expires_at, now, limit).await
    }
    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis, now: Millis) -> StoreResult<bool> {
        self.inner.memory.refresh(room, connection, expires_at, now).await
    }
    async fn set_state(&self, room: &str, connection: &str, state: Value, now: Millis) -> StoreResult<bool> {
        self.inner.memory.set_state(room, connection, state, now).await
    }
    async fn leave(&self, room: &str, connection: &str, reason: LeaveReason, now: Millis) -> StoreResult<Option<(Member, usize)>> {
        self.inner.memory.leave(room, connection, reason, now).await
    }
    async fn members(&self, room: &str, now: Millis) -> StoreResult<Members> {
        self.inner.memory.members(room, now).await
    }
    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize> {
        self.inner.memory.count(room, now).await
    }
    async fn expire(&self, now: Millis) -> StoreResult<Sweep> {
        self.inner.memory.expire(now).await
    }
    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>> {
        self.inner.memory.rooms(now).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}

#[async_trait]
impl Bus for SqliteStore {
    async fn publish(&self, room: &str, event: RoomEvent) -> StoreResult<()> {
        self.inner.memory.publish(room, event).await
    }
    async fn subscribe(&self, room: &str) -> StoreResult<Subscription> {
        self.inner.memory.subscribe(room).await
    }
    async fn confirm(&self, room: &str) -> StoreResult<()> {
        self.inner.memory.confirm(room).await
    }
    fn subscribed_rooms(&self) -> usize {
        self.inner.memory.subscribed_rooms()
    }
}

#[async_trait]
impl StatusStore for SqliteStore {
    async fn status(&self, room: &str, docs: &[&str], now: Millis) -> StoreResult<RoomStatus> {
        let RoomStatus { presence, members, .. } = self.inner.memory.status(room, &[], now).await?;
        let (r, names): (String, Vec<String>) = (room.to_owned(), docs.iter().map(|d| (*d).to_owned()).collect());
        let (values, value_content, docs) = self
            .read(move |conn| {
                let tx = conn.unchecked_transaction()?;
                let values = values::values_stamp(&tx, &r)?;
                let content = values::values_content(&tx, &r)?;
                let mut heads = Vec::with_capacity(names.len());
                for name in &names {
                    heads.push(docs::doc_row(&tx, &r, name)?.map(docs::head_of));
                }
                Ok((values, content, heads))
            })
            .await?;
        Ok(RoomStatus { presence, members, values, value_content, docs })
    }
}

impl Backend for SqliteStore {
    fn describe(&self) -> String {
        let sync = match self.inner.sync {
            SyncMode::Full => "synchronous=FULL: acknowledged writes survive a power loss",
            SyncMode::Normal => "synchronous=NORMAL: acknowledged writes survive a process crash, not a power loss",
        };
        format!("embedded SQLite store at {} ({sync})", self.inner.path.display())
    }
}

#[cfg(test)]
mod tests;
