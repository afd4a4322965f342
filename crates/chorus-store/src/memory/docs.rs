//! Document logs in memory, one per (room, document), with the commits of
//! undo histories written in the same lock hold as their ops. A log is
//! created by its first op, and a deletion drops it with the document's
//! histories in one hold of both locks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;

use super::values::History;
use super::{lock, MemoryStore};
use crate::{
    random_id, Appended, Commit, DeletedDoc, DocCatalog, DocHead, DocStore, DocSummary, Group, ImportedDoc, RoomEvent, Snapshot, StoreResult, StoredDoc,
};

/// One document's log in memory.
pub(super) struct StoredLog {
    epoch: String,
    snapshot_version: u64,
    snapshot: String,
    /// Version before the first kept op, and the digest there.
    oldest: u64,
    oldest_digest: Digest,
    /// Shared with the bus event that published each one: an op is built
    /// once, not once for the log and once for its subscribers.
    ops: VecDeque<Arc<LogEntry>>,
    /// Each client's last committed (seq, version), while that op is kept.
    clients: HashMap<String, (u64, u64)>,
    /// When the head was committed (ms).
    changed_at: u64,
}

impl StoredLog {
    fn new(epoch: String) -> Self {
        Self {
            epoch,
            snapshot_version: 0,
            snapshot: String::new(),
            oldest: 0,
            oldest_digest: Digest::EMPTY,
            ops: VecDeque::new(),
            clients: HashMap::new(),
            changed_at: 0,
        }
    }

    fn head(&self) -> u64 {
        self.oldest + self.ops.len() as u64
    }

    pub(super) fn epoch(&self) -> &str {
        &self.epoch
    }

    fn head_digest(&self) -> Digest {
        self.ops.back().map_or(self.oldest_digest, |e| e.digest)
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Every room's document logs, by room and then by document: both levels
/// are looked up with the caller's own names, so finding a log (for every
/// op committed) makes no strings.
pub(super) type DocLogs = HashMap<String, HashMap<String, StoredLog>>;

fn find<'a>(docs: &'a DocLogs, room: &str, doc: &str) -> Option<&'a StoredLog> {
    docs.get(room)?.get(doc)
}

fn find_mut<'a>(docs: &'a mut DocLogs, room: &str, doc: &str) -> Option<&'a mut StoredLog> {
    docs.get_mut(room)?.get_mut(doc)
}

/// Removes a log, and its room's map with its last one.
fn remove(docs: &mut DocLogs, room: &str, doc: &str) -> Option<StoredLog> {
    let logs = docs.get_mut(room)?;
    let removed = logs.remove(doc);
    if logs.is_empty() {
        docs.remove(room);
    }
    removed
}

fn insert(docs: &mut DocLogs, room: &str, doc: &str, log: StoredLog) {
    docs.entry(room.to_owned()).or_default().insert(doc.to_owned(), log);
}

impl MemoryStore {
    /// One append, under the documents' lock (held by the caller). A
    /// missing document (discarded while a replica of it was open) is
    /// created again by an op at version 0, in the epoch its writer loaded,
    /// once the op commits. One past 0 was made on a replica of a deleted
    /// incarnation: never recreate it.
    /// `at` is the commit time (read once for a whole group).
    fn append_to(&self, docs: &mut DocLogs, room: &str, doc: &str, c: &Commit<'_>, at: u64) -> Appended {
        let mut created = None;
        let log = match find_mut(docs, room, doc) {
            Some(log) => log,
            None if c.expected != 0 => return Appended::EpochChanged { epoch: random_id() },
            None => created.insert(StoredLog::new(c.epoch.to_owned())),
        };
        if log.epoch != c.epoch {
            return Appended::EpochChanged { epoch: log.epoch.clone() };
        }
        // Lock order: documents, then histories; taken only by a commit
        // that moves an undo history (most carry none).
        let mut histories = c.history.map(|_| lock(&self.inner.histories));
        let history_key = c.history.map(|h| (room.to_owned(), doc.to_owned(), h.user.to_owned()));
        if let (Some(h), Some(k), Some(histories)) = (c.history, &history_key, &histories) {
            let stored = histories.get(k);
            if stored.map_or(0, |s| s.rev) != h.expected_rev {
                return match stored {
                    Some(s) if s.token == h.token => Appended::Duplicate { version: s.op_version },
                    _ => Appended::HistoryMoved,
                };
            }
        }
        match log.clients.get(c.client) {
            Some(&(last, version)) if last == c.seq => return Appended::Duplicate { version },
            Some(&(last, _)) if last > c.seq => return Appended::StaleSeq { last },
            _ => {}
        }
        if log.head() != c.expected {
            let missed = match c.expected.checked_sub(log.oldest) {
                Some(skip) if c.expected < log.head() => log.ops.iter().skip(skip as usize).map(|e| LogEntry::clone(e)).collect(),
                _ => Vec::new(),
            };
            return Appended::Conflict { head: log.head(), missed };
        }
        if log.head_digest() != c.expected_digest {
            return Appended::Diverged;
        }
        let version = c.expected + 1;
        let entry = Arc::new(LogEntry { version, client: c.client.to_owned(), seq: c.seq, op: c.op.clone(), at, digest: c.digest });
        log.ops.push_back(entry.clone());
        // A client's later ops update its record in place.
        match log.clients.get_mut(c.client) {
            Some(last) => *last = (c.seq, version),
            None => {
                log.clients.insert(c.client.to_owned(), (c.seq, version));
            }
        }
        log.changed_at = at;
        if let (Some(h), Some(k), Some(histories)) = (c.history, history_key, histories.as_mut()) {
            histories.insert(k, History { rev: h.expected_rev + 1, token: h.token.to_owned(), saved: h.saved.to_owned(), op_version: version });
        }
        if let Some(new) = created {
            insert(docs, room, doc, new);
        }
        // Published under the document's lock, so in commit order.
        self.broadcast(room, RoomEvent::DocOp { doc: doc.to_owned(), entry });
        Appended::Committed { version, at }
    }

    /// A group of appends in one hold of the documents' lock.
    fn append_group_locked(&self, room: &str, doc: &str, group: &Group<'_>) -> StoreResult<Vec<Appended>> {
        group.check_size()?;
        let mut docs = lock(&self.inner.docs);
        let at = now_ms();
        let mut outcomes = Vec::with_capacity(group.ops.len());
        for c in group.commits() {
            let outcome = self.append_to(&mut docs, room, doc, &c, at);
            let committed = matches!(outcome, Appended::Committed { .. });
            outcomes.push(outcome);
            if !committed {
                break;
            }
        }
        Ok(outcomes)
    }

    pub(super) fn doc_head(&self, room: &str, doc: &str) -> Option<DocHead> {
        find(&lock(&self.inner.docs), room, doc)
            .map(|log| DocHead { epoch: log.epoch.clone(), version: log.head(), digest: log.head_digest() })
    }

    /// How many documents and undo histories this store holds, in every
    /// room (for tests that check what is left behind).
    pub fn held_docs(&self) -> (usize, usize) {
        (lock(&self.inner.docs).values().map(HashMap::len).sum(), lock(&self.inner.histories).len())
    }
}

#[async_trait]
impl DocStore for MemoryStore {
    async fn load(&self, room: &str, doc: &str) -> StoreResult<StoredDoc> {
        let mut docs = lock(&self.inner.docs);
        let log = docs.entry(room.to_owned()).or_default().entry(doc.to_owned()).or_insert_with(|| StoredLog::new(random_id()));
        Ok(StoredDoc {
            epoch: log.epoch.clone(),
            snapshot_version: log.snapshot_version,
            snapshot: log.snapshot.clone(),
            oldest_digest: log.oldest_digest,
            ops: log.ops.iter().map(|e| LogEntry::clone(e)).collect(),
        })
    }

    async fn append(&self, room: &str, doc: &str, c: &Commit<'_>) -> StoreResult<Appended> {
        let mut docs = lock(&self.inner.docs);
        Ok(self.append_to(&mut docs, room, doc, c, now_ms()))
    }

    async fn append_group(&self, room: &str, doc: &str, group: &Group<'_>) -> StoreResult<Vec<Appended>> {
        self.append_group_locked(room, doc, group)
    }

    fn append_group_now(&self, room: &str, doc: &str, group: &Group<'_>) -> Option<StoreResult<Vec<Appended>>> {
        Some(self.append_group_locked(room, doc, group))
    }

    async fn ops_since(&self, room: &str, doc: &str, epoch: &str, version: u64) -> StoreResult<Option<Vec<LogEntry>>> {
        let docs = lock(&self.inner.docs);
        let Some(log) = find(&docs, room, doc) else { return Ok((version == 0).then(Vec::new)) };
        if log.epoch != epoch || version < log.oldest || version > log.head() {
            return Ok(None);
        }
        Ok(Some(log.ops.iter().skip((version - log.oldest) as usize).map(|e| LogEntry::clone(e)).collect()))
    }

    async fn last_committed(&self, room: &str, doc: &str, client: &str) -> StoreResult<Option<(u64, u64)>> {
        Ok(find(&lock(&self.inner.docs), room, doc).and_then(|log| log.clients.get(client).copied()))
    }

    async fn snapshot(&self, room: &str, doc: &str, s: Snapshot<'_>) -> StoreResult<()> {
        let mut docs = lock(&self.inner.docs);
        let Some(log) = find_mut(&mut docs, room, doc) else { return Ok(()) };
        if log.epoch != s.epoch || s.version <= log.snapshot_version || s.version > log.head() {
            return Ok(());
        }
        log.snapshot_version = s.version;
        log.snapshot = s.text;
        let trim_to = s.trim_to.min(s.version);
        while log.oldest < trim_to {
            if let Some(e) = log.ops.pop_front() {
                log.oldest_digest = e.digest;
            }
            log.oldest += 1;
        }
        // A client whose last op is gone from the log can only come back
        // from before the trim point, and so gets a snapshot anyway.
        let oldest = log.oldest;
        log.clients.retain(|_, (_, v)| *v > oldest);
        Ok(())
    }
}

#[async_trait]
impl DocCatalog for MemoryStore {
    async fn list_docs(&self, room: &str) -> StoreResult<Vec<DocSummary>> {
        let docs = lock(&self.inner.docs);
        let mut out: Vec<DocSummary> = docs
            .get(room)
            .into_iter()
            .flatten()
            .filter(|(_, log)| log.head() > 0)
            .map(|(name, log)| DocSummary { name: name.clone(), epoch: log.epoch.clone(), version: log.head(), changed_at: log.changed_at })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn discard_if_empty(&self, room: &str, doc: &str, epoch: &str) -> StoreResult<bool> {
        let mut docs = lock(&self.inner.docs);
        if find(&docs, room, doc).is_some_and(|log| log.epoch != epoch || log.head() > 0) {
            return Ok(false);
        }
        let found = remove(&mut docs, room, doc).is_some();
        lock(&self.inner.histories).retain(|(r, d, _), _| !(r == room && d == doc));
        Ok(found)
    }

    async fn delete_doc(&self, room: &str, doc: &str) -> StoreResult<Option<DeletedDoc>> {
        let mut docs = lock(&self.inner.docs);
        let Some(log) = remove(&mut docs, room, doc) else { return Ok(None) };
        // Lock order: documents, then histories.
        lock(&self.inner.histories).retain(|(r, d, _), _| !(r == room && d == doc));
        self.broadcast(room, RoomEvent::DocDeleted { doc: doc.to_owned(), epoch: log.epoch.clone() });
        Ok(Some(DeletedDoc { epoch: log.epoch.clone(), version: log.head() }))
    }

    async fn import_doc(&self, room: &str, doc: &str, d: &ImportedDoc<'_>) -> StoreResult<bool> {
        let mut docs = lock(&self.inner.docs);
        if find(&docs, room, doc).is_some_and(|log| log.head() > 0) {
            return Ok(false);
        }
        let mut log = StoredLog::new(d.epoch.to_owned());
        log.snapshot_version = d.version;
        log.snapshot = d.text.to_owned();
        log.oldest = d.version;
        log.oldest_digest = d.digest;
        log.changed_at = d.changed_at;
        insert(&mut docs, room, doc, log);
        Ok(true)
    }
}
