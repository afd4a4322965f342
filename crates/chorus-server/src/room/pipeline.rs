//! Group commit: each document's submissions go to the store in groups,
//! one group in flight per document, and the room does not wait for it.
//!
//! While a document's group is in flight (one Lua script, one SQLite
//! transaction), further submissions for it queue up; when its answer comes
//! back, everything queued goes as the next group. The room keeps the store
//! call's future and its loop polls it beside the bus and the commands, so
//! cursors, presence, values and other documents move meanwhile, and the
//! store's answer wakes the room itself (a task of its own, answering with a
//! message, put two more wake-ups, often a thread's, on every group's round
//! trip). A store that never waits (the in-memory one) is answered in place
//! ([`DocStore::append_group_now`](chorus_store::DocStore::append_group_now)):
//! there is nothing to overlap.
//!
//! The replica changes only between groups: ops heard on the bus for a
//! document with a group in flight wait for its answer (the replica applies
//! the group's own ops with their acks first; the room does not hear them
//! back from a store that leaves them out of its subscription, or skips
//! them as known),
//! and anything that catches a replica up or reloads it settles the
//! document's group first. So acks carry their own versions and every
//! reader receives each op once, in version order, as before.
//!
//! The store commits a prefix of a group (see `DocStore::append_group`):
//! the ops after a conflict, a duplicate or a refusal go back to the front
//! of the queue, to be moved to the new head and sent again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_core::text::{TextDoc, TextOp};
use chorus_protocol::{ErrorCode, ServerMessage};
use chorus_store::{Appended, Group, GroupOp, StoreResult, MAX_GROUP};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

use super::documents::{reset_refusal, stale_seq};
use super::{Committed, DocSubmission, Room, Submitter, COMMIT_DEADLINE};
use crate::budget::OP_RECORD_BYTES;
use crate::document::{op_bytes, Ahead, Prepared};
use crate::refusal::Refusal;

/// Bus ops held for a document while its group is in flight; beyond this
/// the document is caught up from the store instead.
const MAX_HELD: usize = 10_000;

/// The most submissions an idle document's queue keeps room for.
const KEPT_QUEUE_CAPACITY: usize = 64;

/// A submission waiting for its group.
pub(super) struct Queued {
    pub sub: DocSubmission,
    pub client: Arc<str>,
    pub reply: Option<oneshot::Sender<Result<Committed, Refusal>>>,
    /// Past this, losing races to other nodes gets it refused as busy: set
    /// when it first goes to the store, from the clock its group reads
    /// anyway (one read of the clock per group, not one more per op).
    pub deadline: Option<Instant>,
}

/// A submission in a group in flight: moved to its place in the group.
struct Sent {
    queued: Queued,
    op: TextOp,
    digest: Digest,
}

struct InFlight {
    id: u64,
    /// The replica's head when the group was sent (it does not move until
    /// the answer is settled).
    head: u64,
    sent: Vec<Sent>,
    /// The store call, polled by the room's loop ([`Pipelines::answered`])
    /// until it answers, or awaited when the group must be settled first.
    /// (In a mutex only so that the room stays `Sync`: it is only ever
    /// reached through `&mut`, never locked.)
    commit: std::sync::Mutex<Commit>,
    /// Its answer, once the loop has seen it.
    answer: Option<StoreResult<Vec<Appended>>>,
}

type Commit = Pin<Box<dyn Future<Output = StoreResult<Vec<Appended>>> + Send>>;

#[derive(Default)]
struct Pipeline {
    queue: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    /// Ops heard on the bus while a group was in flight.
    held: Vec<Arc<LogEntry>>,
    /// Another node has the turn: the next group waits this long first.
    pause: Option<Duration>,
}

impl Pipeline {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none()
    }
}

/// The room's pipelines, one per document with something to commit.
pub(super) struct Pipelines {
    docs: HashMap<Arc<str>, Pipeline>,
    /// Documents with a queue and no group in flight.
    ready: HashSet<Arc<str>>,
    next_id: u64,
}

impl Pipelines {
    pub(super) fn new() -> Self {
        Self { docs: HashMap::new(), ready: HashSet::new(), next_id: 1 }
    }

    /// Waits for the answer of a group in flight, in any document: which
    /// group answered (its answer kept for settling). Pending while none is
    /// in flight.
    pub(super) fn answered(&mut self) -> impl Future<Output = (Arc<str>, u64)> + '_ {
        std::future::poll_fn(move |cx| {
            for (name, p) in &mut self.docs {
                let Some(f) = p.in_flight.as_mut().filter(|f| f.answer.is_none()) else { continue };
                let commit = f.commit.get_mut().unwrap_or_else(|p| p.into_inner());
                if let Poll::Ready(answer) = commit.as_mut().poll(cx) {
                    f.answer = Some(answer);
                    return Poll::Ready((name.clone(), f.id));
                }
            }
            Poll::Pending
        })
    }

    /// Nothing queued or in flight, in any document.
    pub(super) fn idle(&self) -> bool {
        self.docs.values().all(Pipeline::idle)
    }

    /// The document has a submission queued or a group in flight.
    pub(super) fn busy(&self, doc: &str) -> bool {
        self.docs.get(doc).is_some_and(|p| !p.idle())
    }

    /// Drops the document's pipeline if it is idle (its document unloads).
    pub(super) fn forget_idle(&mut self, doc: &str) {
        if self.docs.get(doc).is_some_and(Pipeline::idle) {
            self.docs.remove(doc);
        }
    }
}

impl Room {
    /// Queues a submission for the document's next group.
    pub(super) async fn enqueue(&mut self, name: Arc<str>, sub: DocSubmission, reply: Option<oneshot::Sender<Result<Committed, Refusal>>>) {
        let client: Arc<str> = match &sub.from {
            Submitter::Connection { conn, .. } => match self.docs.get(&name).and_then(|d| d.subscribers.get(conn)) {
                Some(client) => client.clone(),
                None => {
                    let refusal = Refusal::new(ErrorCode::NotOpen, format!("document {name} is not open; open it first"));
                    return self.answer_submit(&name, &sub, reply, Err(refusal));
                }
            },
            Submitter::Api { client } => client.clone(),
        };
        // A base this replica has not reached (the client saw it on another
        // node) is caught up to here, before the op is moved to the head.
        if let Err(refusal) = self.load_doc_seen(&name, sub.base).await {
            self.answer_submit(&name, &sub, reply, Err(refusal));
            self.unload_if_unread(&name);
            return;
        }
        let queued = Queued { sub, client, reply, deadline: None };
        let pipeline = self.pipelines.docs.entry(name.clone()).or_default();
        pipeline.queue.push_back(queued);
        if pipeline.in_flight.is_none() {
            self.pipelines.ready.insert(name);
        }
    }

    /// Holds a bus op for a document whose group is in flight (true), to
    /// apply once the group's answer is settled.
    pub(super) fn hold_if_in_flight(&mut self, name: &str, entry: &Arc<LogEntry>) -> bool {
        let Some(p) = self.pipelines.docs.get_mut(name).filter(|p| p.in_flight.is_some()) else { return false };
        if p.held.len() < MAX_HELD {
            p.held.push(entry.clone());
        } else {
            p.held.clear();
            self.repair.need_doc(&Arc::from(name));
        }
        true
    }

    /// Sends the next group of every document that has one ready.
    pub(super) async fn send_ready_groups(&mut self) {
        while let Some(name) = self.pipelines.ready.iter().next().cloned() {
            self.pipelines.ready.remove(&name);
            self.send_group(&name).await;
        }
    }

    /// Answers a submission: its ack (a connection's, on its outbox, with
    /// the digest at its version) or its refusal.
    fn finish(&self, name: &Arc<str>, q: Queued, outcome: Result<Committed, Refusal>) {
        if let (Ok(done), Submitter::Connection { outbox, id, .. }) = (&outcome, &q.sub.from) {
            let digest = self.docs.get(name).and_then(|d| d.text.log().digest_at(done.version));
            outbox.push(ServerMessage::ack_json(*id, &self.name, name, q.sub.seq, done.version, digest).into());
        }
        self.answer_submit(name, &q.sub, q.reply, outcome);
    }

    /// Moves what is queued for `name` to the head, as one group, and sends
    /// it to the store from a task of its own.
    async fn send_group(&mut self, name: &Arc<str>) {
        let Some(p) = self.pipelines.docs.get_mut(name) else { return };
        if p.in_flight.is_some() {
            return;
        }
        let mut queue = std::mem::take(&mut p.queue);
        let pause = p.pause.take();
        // Loaded by `enqueue`, or again after a reload.
        if let Err(refusal) = self.load_doc(name).await {
            for q in queue {
                self.finish(name, q, Err(refusal.clone()));
            }
            return self.after_group(name);
        }
        let limits = self.doc_limits();
        let mut sent: Vec<Sent> = Vec::new();
        let mut pending: Vec<TextOp> = Vec::new();
        let doc = &self.docs[name];
        let (head, head_digest) = (doc.version(), doc.head_digest());
        // The text after the ops moved so far, made only once a second op
        // needs it: most groups hold one op, and a copy of the text changed
        // by one op copies the rope's nodes on its path, to be freed again.
        let mut after: Option<TextDoc> = None;
        let mut digest = head_digest;
        let now = Instant::now();
        while sent.len() < MAX_GROUP {
            // The ops moved so far, copied for the transform of a second op
            // only: most groups hold one.
            if pending.len() < sent.len() {
                pending.extend(sent[pending.len()..].iter().map(|s| s.op.clone()));
            }
            let Some(q) = queue.front() else { break };
            // A client's later op waits for the next group when this one
            // holds its op of that seq or after (a resubmission, answered
            // from the replica once the group is in).
            if sent.iter().any(|s| s.queued.client == q.client && s.queued.sub.seq >= q.sub.seq) {
                break;
            }
            let mut q = queue.pop_front().expect("looked at above");
            if now >= *q.deadline.get_or_insert(now + COMMIT_DEADLINE) {
                self.finish(name, q, Err(Refusal::new(ErrorCode::Unavailable, format!("document {name} is too busy to commit; retry"))));
                continue;
            }
            let doc = &self.docs[name];
            if !pending.is_empty() && after.is_none() {
                let mut text = doc.text.text().clone();
                // Each op passed its check against the text before it, so
                // this cannot fail; if it did, the group ends here.
                if let Err(e) = pending.iter().try_for_each(|op| text.apply(op)) {
                    warn!(room = %self.name, doc = %name, "an op of the group does not apply after its check ({e}); sending the group without the rest");
                    queue.push_front(q);
                    break;
                }
                after = Some(text);
            }
            let base = q.sub.base.unwrap_or(head);
            let text = after.as_ref().unwrap_or(doc.text.text());
            match doc.prepare_after(&q.client, q.sub.seq, base, &q.sub.op, limits, Ahead { ops: &pending, text }) {
                Err(refusal) => self.finish(name, q, Err(refusal)),
                Ok(Prepared::Duplicate(version)) => self.finish(name, q, Ok(Committed { version, duplicate: true })),
                Ok(Prepared::Trimmed { oldest }) => {
                    let outcome = self.trimmed(name, &q, base, oldest).await;
                    self.finish(name, q, outcome);
                }
                Ok(Prepared::Fresh(op)) => {
                    // Counted twice, as its text joins the document and the
                    // log, and its record in the log.
                    let growth = 2 * op_bytes(&op) + OP_RECORD_BYTES;
                    let seq = q.sub.seq;
                    if let Err(refusal) = self.rooms.budget.admit(growth, || format!("op {seq} on document {name} cannot be committed")) {
                        self.finish(name, q, Err(refusal));
                        continue;
                    }
                    if let Some(Err(e)) = after.as_mut().map(|text| text.apply(&op)) {
                        self.finish(name, q, Err(Refusal::new(ErrorCode::InvalidOp, e.to_string())));
                        continue;
                    }
                    digest = digest.next(head + 1 + sent.len() as u64, &q.client, q.sub.seq, &op);
                    sent.push(Sent { queued: q, op, digest });
                }
            }
        }
        // Freed before the group is applied: while this copy shares the
        // rope's nodes, each of the group's ops applied to the replica would
        // copy the nodes on its path first.
        drop(after);
        let p = self.pipelines.docs.get_mut(name).expect("only the group's answer removes it");
        // What did not fit (or waits for its client's op) stays in front.
        // Nothing came in meanwhile (most groups): the queue goes back
        // whole, its buffer with it, instead of a new one for every op (a
        // burst's buffer is not kept for the document's life).
        if p.queue.is_empty() {
            queue.shrink_to(KEPT_QUEUE_CAPACITY);
            p.queue = queue;
        } else {
            while let Some(q) = queue.pop_back() {
                p.queue.push_front(q);
            }
        }
        if sent.is_empty() {
            return self.after_group(name);
        }
        crate::hot_metrics().commit_groups.increment(1);
        // A store that never waits (the one in memory) commits the group
        // here, from the ops where they are: no copies, no future. Nothing
        // else ran meanwhile, so no bus op was held.
        if pause.is_none() {
            let answer = {
                let group_ops: Vec<GroupOp<'_>> =
                    sent.iter().map(|s| GroupOp { client: &s.queued.client, seq: s.queued.sub.seq, op: &s.op, digest: s.digest }).collect();
                let group = Group { epoch: &self.docs[name].epoch, expected: head, expected_digest: head_digest, ops: &group_ops };
                self.rooms.backend.append_group_now(&self.name, name, &group)
            };
            if let Some(outcome) = answer {
                self.settle(name, head, sent, outcome).await;
                return self.after_group(name);
            }
        }
        let epoch = self.docs[name].epoch.clone();
        let ops: Vec<(Arc<str>, u64, TextOp, Digest)> = sent.iter().map(|s| (s.queued.client.clone(), s.queued.sub.seq, s.op.clone(), s.digest)).collect();
        let id = self.pipelines.next_id;
        self.pipelines.next_id += 1;
        let (store, room, doc) = (self.rooms.backend.clone(), self.name.clone(), name.clone());
        let mut commit: Commit = Box::pin(async move {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            let group_ops: Vec<GroupOp<'_>> = ops.iter().map(|(client, seq, op, digest)| GroupOp { client, seq: *seq, op, digest: *digest }).collect();
            let group = Group { epoch: &epoch, expected: head, expected_digest: head_digest, ops: &group_ops };
            store.append_group(&room, &doc, &group).await
        });
        // A store that answers at once all the same (one in memory behind
        // another layer, or after a pause) is settled here, with nothing to
        // overlap. Any other goes in flight; the loop's next poll of it
        // registers the room's waker.
        let answered = commit.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        if let Poll::Ready(outcome) = answered {
            self.settle(name, head, sent, outcome).await;
            return self.after_group(name);
        }
        let p = self.pipelines.docs.get_mut(name).expect("present above");
        p.in_flight = Some(InFlight { id, head, sent, commit: std::sync::Mutex::new(commit), answer: None });
    }

    /// A submission whose base is older than the replica's log: a
    /// resubmission the store still knows, or refused.
    async fn trimmed(&self, name: &Arc<str>, q: &Queued, base: u64, oldest: u64) -> Result<Committed, Refusal> {
        match self.store().last_committed(&self.name, name, &q.client).await? {
            Some((seq, version)) if seq == q.sub.seq => Ok(Committed { version, duplicate: true }),
            Some((last, _)) if last > q.sub.seq => Err(stale_seq(q.sub.seq, last)),
            _ => Err(Refusal::new(
                ErrorCode::VersionTrimmed,
                format!("base version {base} is older than the log reaches (from version {oldest}); open the document again"),
            )),
        }
    }

    /// The answer of group `id` of `name` came back (or was settled already).
    pub(super) async fn group_done(&mut self, name: &Arc<str>, id: u64) {
        let Some(p) = self.pipelines.docs.get_mut(name) else { return };
        if p.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.settle_in_flight(name).await;
        }
    }

    /// Waits for the document's group in flight, if any, and settles its
    /// answer: before anything else changes the replica. (A boxed future:
    /// settling may catch up or reload, which settle first, then finding
    /// nothing in flight.)
    pub(super) fn settle_in_flight<'a>(&'a mut self, name: &'a Arc<str>) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Some(f) = self.pipelines.docs.get_mut(name).and_then(|p| p.in_flight.take()) else { return };
            let outcome = match f.answer {
                Some(answer) => answer,
                None => f.commit.into_inner().unwrap_or_else(|p| p.into_inner()).await,
            };
            self.settle(name, f.head, f.sent, outcome).await;
            let held = self.pipelines.docs.get_mut(name).map(|p| std::mem::take(&mut p.held)).unwrap_or_default();
            for entry in &held {
                self.remote_op(name, entry).await;
            }
            self.after_group(name);
        })
    }

    /// After a group: the next one is ready, or the document may unload.
    /// An idle pipeline stays while its document is loaded (its queue's
    /// buffer too): made and dropped again for every op, it cost a map
    /// entry, a queue buffer and their frees per op.
    fn after_group(&mut self, name: &Arc<str>) {
        match self.pipelines.docs.get(name) {
            Some(p) if p.in_flight.is_some() => {}
            Some(p) if !p.queue.is_empty() => {
                self.pipelines.ready.insert(name.clone());
            }
            Some(_) => {
                self.unload_if_unread(name);
                if !self.docs.contains_key(name) {
                    self.pipelines.docs.remove(name);
                }
            }
            None => {}
        }
    }

    /// Applies and acknowledges what the store committed of a group, in
    /// version order; puts the ops it did not look at back in front of the
    /// queue.
    async fn settle(&mut self, name: &Arc<str>, head: u64, sent: Vec<Sent>, outcome: StoreResult<Vec<Appended>>) {
        let outcomes = match outcome {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // The store may have committed the group all the same (an
                // answer lost, or late after its timeout), and the room may
                // not hear its ops back on the bus: the replica is caught
                // up from the store, retried until it works.
                self.repair.need_doc(name);
                let refusal = Refusal::from(e);
                for s in sent {
                    self.finish(name, s.queued, Err(refusal.clone()));
                }
                return;
            }
        };
        let mut sent = sent.into_iter();
        let mut again: Vec<Queued> = Vec::new();
        for outcome in outcomes {
            let Some(s) = sent.next() else {
                warn!(room = %self.name, doc = %name, "the store answered more ops than the group held");
                break;
            };
            match outcome {
                Appended::Committed { version, at } => {
                    let entry = LogEntry { version, client: s.queued.client.to_string(), seq: s.queued.sub.seq, op: s.op, at, digest: s.digest };
                    let origin = match &s.queued.sub.from {
                        Submitter::Connection { conn, .. } => Some(conn.clone()),
                        Submitter::Api { .. } => None,
                    };
                    // The store published it to the other nodes with the commit.
                    self.apply(name, entry, origin.as_deref());
                    crate::hot_metrics().ops_committed.increment(1);
                    self.finish(name, s.queued, Ok(Committed { version, duplicate: false }));
                }
                Appended::Duplicate { version } => {
                    // Committed by an attempt whose answer was lost (a
                    // timeout, a failover): this replica may not have it yet.
                    let caught_up = if self.docs.get(name).is_some_and(|d| version > d.version()) { self.catch_up(name).await } else { Ok(()) };
                    self.finish(name, s.queued, caught_up.map(|()| Committed { version, duplicate: true }));
                }
                Appended::StaleSeq { last } => {
                    let seq = s.queued.sub.seq;
                    self.finish(name, s.queued, Err(stale_seq(seq, last)));
                }
                Appended::Conflict { head: store_head, missed } => {
                    metrics::counter!("chorus_commit_conflicts_total").increment(1);
                    // Another node committed first; the store sent what it
                    // committed, so the retry costs one round trip.
                    let complete = missed.first().is_some_and(|e| e.version == head + 1) && missed.last().is_some_and(|e| e.version == store_head);
                    let mut refusal = None;
                    if complete {
                        for entry in missed {
                            if !self.apply(name, entry, None) {
                                break;
                            }
                        }
                    } else if store_head == head {
                        // Another node has the turn after losing a race:
                        // let it commit first.
                        if let Some(p) = self.pipelines.docs.get_mut(name) {
                            p.pause = Some(Duration::from_millis(1));
                        }
                    } else if store_head < head {
                        // The store went back: it lost ops this replica has.
                        refusal = Some(self.reload(name).await.err().unwrap_or_else(|| reset_refusal(name)));
                    } else if let Err(e) = self.catch_up(name).await {
                        refusal = Some(e);
                    }
                    match refusal {
                        Some(refusal) => {
                            for s in std::iter::once(s).chain(sent.by_ref()) {
                                self.finish(name, s.queued, Err(refusal.clone()));
                            }
                        }
                        None => again.push(s.queued),
                    }
                }
                Appended::EpochChanged { .. } | Appended::Diverged => {
                    let refusal = self.reload(name).await.err().unwrap_or_else(|| reset_refusal(name));
                    for s in std::iter::once(s).chain(sent.by_ref()) {
                        self.finish(name, s.queued, Err(refusal.clone()));
                    }
                }
                Appended::HistoryMoved => {
                    self.finish(name, s.queued, Err(Refusal::new(ErrorCode::Internal, "the store answered a plain commit as an undo".to_owned())));
                }
            }
        }
        again.extend(sent.map(|s| s.queued));
        if let Some(p) = self.pipelines.docs.get_mut(name) {
            while let Some(q) = again.pop() {
                p.queue.push_front(q);
            }
        } else if !again.is_empty() {
            let p = self.pipelines.docs.entry(name.clone()).or_default();
            p.queue.extend(again);
        }
    }
}
