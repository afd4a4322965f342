//! The conformance suite every backend must pass, unchanged.
//!
//! A backend's tests call [`run_all`] with a function that makes a fresh,
//! empty backend. Each check names itself in its panic message. The checks
//! state the guarantees the server relies on:
//!
//! - presence: atomic removal (one leave per entry, however many callers
//!   race), expiry by the given clock, every change announced with the
//!   room's stamp in the same step, sequential counts within one sweep, the
//!   member limit inside the atomic join, idempotent joins;
//! - the bus: in-order delivery to every subscriber, rooms kept apart, lag
//!   reported, and subscriptions that end when dropped;
//! - documents: one order by compare-and-set on version and digest (exactly
//!   one of racing appends at a version wins), (client, seq) deduplication
//!   compared exactly over all of u64, epochs, trimming behind snapshots
//!   that never leaves a silent hole, names that can never reach another
//!   document's records, and undo histories committed with their ops;
//! - the lifecycle of documents: untouched documents discarded, lists of a
//!   room's documents, deletions that free everything, are announced
//!   and fence off replicas of the deleted incarnation, and imports;
//! - groups of commits: one atomic step that commits a prefix of the
//!   group, in order, each op deduplicated (inside the group and against
//!   earlier ones) and published, and never twice when retried;
//! - values and histories: compare-and-set with write tokens, every value
//!   write published with the room's stamp;
//! - status: one look at where a room stands.

mod bus;
mod docs;
mod lifecycle;
mod groups;
mod presence;
mod values;

use chorus_core::digest::Digest;
use chorus_core::oplog::LogEntry;
use chorus_core::presence::{Member, UserInfo};
use chorus_core::text::TextOp;
use chorus_protocol::CursorState;
use serde_json::json;

use crate::{Appended, Backend, Commit, Group, GroupOp, RoomEvent, Subscription};

/// Runs every check against fresh backends from `make`.
pub async fn run_all<B, F, Fut>(make: F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    presence::run(&make).await;
    bus::run(&make).await;
    docs::run(&make).await;
    lifecycle::run(&make).await;
    groups::run(&make).await;
    values::run(&make).await;
}

fn ins(at: usize, text: &str) -> TextOp {
    TextOp::insert(at, text)
}

fn member(connection: &str, user: &str, joined_at: u64) -> Member {
    Member {
        connection: connection.into(),
        user: UserInfo::new(user, Some(user.to_uppercase()), None, None),
        state: serde_json::Value::Null,
        joined_at,
    }
}

fn cursor_event(connection: &str, x: u64) -> RoomEvent {
    RoomEvent::Cursor {
        cursor: CursorState { connection: connection.into(), user: "u".into(), cursor: json!({ "x": x }), doc: None, version: None },
    }
}

/// A document's commits as a client of the suite makes them: it keeps the
/// head and its digest, as a node's replica would.
struct Writer<'a, B: Backend> {
    b: &'a B,
    room: &'a str,
    doc: &'a str,
    epoch: String,
    head: u64,
    digest: Digest,
}

impl<'a, B: Backend> Writer<'a, B> {
    async fn open(b: &'a B, room: &'a str, doc: &'a str) -> Self {
        let d = b.load(room, doc).await.unwrap();
        Self { b, room, doc, epoch: d.epoch.clone(), head: d.head(), digest: d.head_digest() }
    }

    /// The commit of `op` by (client, seq) at the writer's head.
    fn commit<'c>(&'c self, client: &'c str, seq: u64, op: &'c TextOp) -> Commit<'c> {
        Commit {
            epoch: &self.epoch,
            expected: self.head,
            expected_digest: self.digest,
            client,
            seq,
            op,
            digest: self.digest.next(self.head + 1, client, seq, op),
            history: None,
        }
    }

    /// The ops of a group at the writer's head, each digest following the
    /// one before it.
    fn group_ops<'c>(&self, ops: &'c [(&'c str, u64, TextOp)]) -> Vec<GroupOp<'c>> {
        let (mut version, mut digest) = (self.head, self.digest);
        ops.iter()
            .map(|(client, seq, op)| {
                version += 1;
                digest = digest.next(version, client, *seq, op);
                GroupOp { client, seq: *seq, op, digest }
            })
            .collect()
    }

    /// Appends `ops` as one group at the writer's head; the writer moves
    /// past the ones committed.
    async fn append_group(&mut self, ops: &[(&str, u64, TextOp)]) -> Vec<Appended> {
        let group_ops = self.group_ops(ops);
        let outcomes = {
            let group = Group { epoch: &self.epoch, expected: self.head, expected_digest: self.digest, ops: &group_ops };
            self.b.append_group(self.room, self.doc, &group).await.unwrap()
        };
        for (outcome, op) in outcomes.iter().zip(&group_ops) {
            if let Appended::Committed { version, .. } = outcome {
                self.head = *version;
                self.digest = op.digest;
            }
        }
        outcomes
    }

    /// Appends at the writer's head; on a commit, the writer moves on.
    async fn append(&mut self, client: &str, seq: u64, op: &TextOp) -> Appended {
        let c = self.commit(client, seq, op);
        let digest = c.digest;
        let outcome = self.b.append(self.room, self.doc, &c).await.unwrap();
        if let Appended::Committed { version, .. } = outcome {
            self.head = version;
            self.digest = digest;
        }
        outcome
    }
}

/// The entry a committed op became, as the suite expects to read it back.
fn entry(version: u64, client: &str, seq: u64, op: TextOp, previous: Digest) -> LogEntry {
    LogEntry::new(version, client, seq, op, 0, previous)
}

/// The same entry, ignoring the commit time the store gave it.
fn without_time(mut e: LogEntry) -> LogEntry {
    e.at = 0;
    e
}

/// The next event, within five seconds.
async fn next_event(sub: &mut Subscription, check: &str) -> RoomEvent {
    match tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await {
        Ok(Ok(event)) => (*event).clone(),
        Ok(Err(e)) => panic!("{check}: the subscription failed: {e}"),
        Err(_) => panic!("{check}: no event within 5 s"),
    }
}

/// Awaits tasks after starting them all (the iterator may spawn lazily).
async fn join_all<T: Send + 'static>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let tasks: Vec<_> = tasks.collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task panicked"));
    }
    out
}
