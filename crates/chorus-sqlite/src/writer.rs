//! The writer thread: every change to the database, in group commits.
//!
//! Callers send their change as a task over a channel and await its answer.
//! The thread takes everything queued, runs the tasks in order inside ONE
//! transaction (each under its own savepoint, so a task that fails leaves
//! the others standing), commits once (one fsync under `synchronous=FULL`,
//! however many tasks shared it), then publishes the batch's events in
//! commit order and answers. So an answer means durable, an event is never
//! seen for a change that could still be lost, and no SQLite call ever
//! blocks an async worker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use chorus_store::{MemoryStore, RoomEvent, StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most tasks one transaction takes.
const MAX_BATCH: usize = 1_024;

/// Transactions between two checkpoints of the WAL by the checkpoint
/// thread (a W1 transaction adds 3 or 4 pages to the WAL).
const CHECKPOINT_EVERY: u32 = 128;

/// Events a task publishes once its transaction is committed.
pub(crate) type Events = Vec<(String, RoomEvent)>;

/// How many transactions (so fsyncs, under `synchronous=FULL`) and tasks
/// the writer has committed, and where its time went: what tells a slow
/// disk from slow statements from a writer that waits to be woken.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub transactions: AtomicU64,
    pub tasks: AtomicU64,
    /// Summed over tasks: from being sent to their batch starting.
    pub queued_nanos: AtomicU64,
    /// Summed over batches: running their statements (`BEGIN` to before `COMMIT`).
    pub statement_nanos: AtomicU64,
    /// Summed over batches: `COMMIT` (writing the WAL and, under FULL, its fsync).
    pub commit_nanos: AtomicU64,
    /// Checkpoints run by the checkpoint thread (each syncs the WAL and
    /// the database file), and their time.
    pub checkpoints: AtomicU64,
    pub checkpoint_nanos: AtomicU64,
}

trait Task: Send {
    /// When it was sent to the writer.
    fn sent(&self) -> Instant;
    /// Runs inside the batch's transaction; false when it failed (its
    /// changes are then rolled back to its savepoint).
    fn run(&mut self, conn: &Connection) -> bool;
    /// After the commit (or its failure): publishes and answers.
    fn finish(self: Box<Self>, committed: Result<(), String>, bus: &MemoryStore);
}

struct Pending<T, F> {
    sent: Instant,
    work: Option<F>,
    outcome: Option<Result<(T, Events), String>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Task for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Events) -> rusqlite::Result<T> + Send,
{
    fn sent(&self) -> Instant {
        self.sent
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else { return false };
        let mut events = Vec::new();
        let outcome = work(conn, &mut events).map(|t| (t, events)).map_err(|e| e.to_string());
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>, bus: &MemoryStore) {
        let answer = match (committed, self.outcome) {
            (Ok(()), Some(Ok((t, events)))) => {
                for (room, event) in events {
                    bus.publish_now(&room, event);
                }
                Ok(t)
            }
            (Err(e), Some(Ok(_))) => Err(StoreError::Backend(format!("sqlite commit failed: {e}"))),
            (_, Some(Err(e))) => Err(StoreError::Backend(format!("sqlite: {e}"))),
            (_, None) => Err(StoreError::Backend("sqlite: task not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// The sending side; the thread ends when every sender is dropped.
pub(crate) struct Writer {
    tx: mpsc::Sender<Box<dyn Task>>,
}

impl Writer {
    /// Starts the thread that owns `conn` (and `keep`, released after it),
    /// and the one that checkpoints the WAL on `checkpointer`.
    pub(crate) fn start<K: Send + 'static>(
        conn: Connection,
        checkpointer: Connection,
        bus: MemoryStore,
        stats: Arc<WriterStats>,
        keep: K,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Box<dyn Task>>();
        let (kick, kicked) = mpsc::sync_channel::<()>(1);
        let checkpoints = {
            let stats = stats.clone();
            std::thread::Builder::new().name("chorus-sqlite-checkpoint".into()).spawn(move || checkpoint_loop(&checkpointer, &kicked, &stats))?
        };
        let thread = std::thread::Builder::new().name("chorus-sqlite-writer".into()).spawn(move || {
            let mut since_kick = 0;
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(task) => batch.push(task),
                        Err(_) => break,
                    }
                }
                commit_batch(&conn, batch, &bus, &stats);
                since_kick += 1;
                if since_kick >= CHECKPOINT_EVERY {
                    // Full means a checkpoint is waiting to run already.
                    let _ = kick.try_send(());
                    since_kick = 0;
                }
            }
            // The checkpointer closes first, so the writer's connection is
            // the last: closing it checkpoints the whole WAL and removes it.
            drop(kick);
            let _ = checkpoints.join();
            drop(conn);
            drop(keep);
        })?;
        Ok((Self { tx }, thread))
    }

    /// Runs `work` in the next group commit; answers once it is committed.
    pub(crate) async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Events) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task = Box::new(Pending { sent: Instant::now(), work: Some(work), outcome: None, reply });
        self.tx.send(task).map_err(|_| StoreError::Unavailable("the sqlite writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the sqlite writer stopped before answering".into()))?
    }
}

/// Runs one of the statements every batch runs (`BEGIN`, `COMMIT`, the
/// savepoints), from the connection's cache: parsed once, not per batch.
fn exec(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(|e| e.to_string())
}

fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Task>>, bus: &MemoryStore, stats: &WriterStats) {
    let start = Instant::now();
    let queued: u64 = batch.iter().map(|t| start.saturating_duration_since(t.sent()).as_nanos() as u64).sum();
    let mut statements = start;
    let committed = (|| -> Result<(), String> {
        exec(conn, "BEGIN IMMEDIATE")?;
        if let [task] = batch.as_mut_slice() {
            // Alone in its batch, a task that fails rolls the transaction
            // back: no savepoint needed.
            if !task.run(conn) {
                statements = Instant::now();
                // (Unless SQLite rolled it back already, as some errors do.)
                return if conn.is_autocommit() { Ok(()) } else { exec(conn, "ROLLBACK") };
            }
        } else {
            for task in &mut batch {
                exec(conn, "SAVEPOINT task")?;
                if !task.run(conn) {
                    exec(conn, "ROLLBACK TO task")?;
                }
                exec(conn, "RELEASE task")?;
            }
        }
        statements = Instant::now();
        exec(conn, "COMMIT")
    })();
    let end = Instant::now();
    let (statement, commit) = (statements.saturating_duration_since(start).as_nanos() as u64, end.saturating_duration_since(statements).as_nanos() as u64);
    stats.queued_nanos.fetch_add(queued, Ordering::Relaxed);
    stats.statement_nanos.fetch_add(statement, Ordering::Relaxed);
    stats.commit_nanos.fetch_add(commit, Ordering::Relaxed);
    metrics::counter!("chorus_sqlite_queued_microseconds_total").increment(queued / 1_000);
    metrics::counter!("chorus_sqlite_statement_microseconds_total").increment(statement / 1_000);
    metrics::counter!("chorus_sqlite_commit_microseconds_total").increment(commit / 1_000);
    metrics::histogram!("chorus_sqlite_commit_seconds").record(commit as f64 / 1e9);
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = &committed {
        tracing::error!(error = %e, tasks = batch.len(), "sqlite: a group commit failed; its writes were refused");
    } else {
        stats.transactions.fetch_add(1, Ordering::Relaxed);
        stats.tasks.fetch_add(batch.len() as u64, Ordering::Relaxed);
        metrics::counter!("chorus_sqlite_transactions_total").increment(1);
        metrics::counter!("chorus_sqlite_writes_total").increment(batch.len() as u64);
    }
    for task in batch {
        task.finish(committed.clone(), bus);
    }
}

/// Copies the WAL's committed pages into the database file, each time the
/// writer asks: a PASSIVE checkpoint, which never blocks the writer, who
/// goes on appending to the WAL meanwhile. A checkpoint syncs the WAL and
/// then the database file, two fsyncs whatever the sync mode; run by the
/// writer after one of its commits (SQLite's automatic checkpoint), they
/// would hold up every commit queued behind it.
fn checkpoint_loop(conn: &Connection, kicked: &mpsc::Receiver<()>, stats: &WriterStats) {
    while kicked.recv().is_ok() {
        let start = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => {
                let took = start.elapsed();
                stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                stats.checkpoint_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                metrics::histogram!("chorus_sqlite_checkpoint_seconds").record(took.as_secs_f64());
            }
            Err(e) => tracing::warn!(error = %e, "sqlite: a WAL checkpoint failed; the next one takes its pages"),
        }
    }
}
