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

use chorus_store::{MemoryStore, RoomEvent, StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// The most tasks one transaction takes.
const MAX_BATCH: usize = 1_024;

/// Events a task publishes once its transaction is committed.
pub(crate) type Events = Vec<(String, RoomEvent)>;

/// How many transactions (so fsyncs, under `synchronous=FULL`) and tasks
/// the writer has committed.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub transactions: AtomicU64,
    pub tasks: AtomicU64,
}

trait Task: Send {
    /// Runs inside the batch's transaction; false when it failed (its
    /// changes are then rolled back to its savepoint).
    fn run(&mut self, conn: &Connection) -> bool;
    /// After the commit (or its failure): publishes and answers.
    fn finish(self: Box<Self>, committed: Result<(), String>, bus: &MemoryStore);
}

struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<Result<(T, Events), String>>,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Task for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &mut Events) -> rusqlite::Result<T> + Send,
{
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
    /// Starts the thread that owns `conn` (and `keep`, released after it).
    pub(crate) fn start<K: Send + 'static>(
        conn: Connection,
        bus: MemoryStore,
        stats: Arc<WriterStats>,
        keep: K,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Box<dyn Task>>();
        let thread = std::thread::Builder::new().name("chorus-sqlite-writer".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(task) => batch.push(task),
                        Err(_) => break,
                    }
                }
                commit_batch(&conn, batch, &bus, &stats);
            }
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
        let task = Box::new(Pending { work: Some(work), outcome: None, reply });
        self.tx.send(task).map_err(|_| StoreError::Unavailable("the sqlite writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the sqlite writer stopped before answering".into()))?
    }
}

fn commit_batch(conn: &Connection, mut batch: Vec<Box<dyn Task>>, bus: &MemoryStore, stats: &WriterStats) {
    let committed = (|| -> Result<(), String> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
        for task in &mut batch {
            conn.execute_batch("SAVEPOINT task").map_err(|e| e.to_string())?;
            let undo = if task.run(conn) { "RELEASE task" } else { "ROLLBACK TO task; RELEASE task" };
            conn.execute_batch(undo).map_err(|e| e.to_string())?;
        }
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())
    })();
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
