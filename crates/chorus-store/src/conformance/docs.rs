//! Documents: one order, one history, and names that never meet.

use std::sync::Arc;

use chorus_core::digest::Digest;
use chorus_core::oplog::OrderedText;
use chorus_core::text::{TextDoc, TextOp};

use super::{entry, ins, join_all, next_event, without_time, Writer};
use crate::{Appended, Backend, DocHead, HistoryWrite, RoomEvent, Snapshot, StoredHistory};

pub(super) async fn run<B, F, Fut>(make: &F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    new_documents_are_empty_with_an_epoch(make().await).await;
    appends_are_compare_and_set(make().await).await;
    the_digest_is_part_of_the_compare(make().await).await;
    racing_appends_have_one_winner(Arc::new(make().await)).await;
    submissions_are_deduplicated(make().await).await;
    sequence_numbers_compare_exactly(make().await).await;
    snapshots_trim_the_log_without_holes(make().await).await;
    documents_keep_apart(make().await).await;
    names_never_reach_another_documents_records(make().await).await;
    commits_are_published(make().await).await;
    undo_commits_carry_their_history(make().await).await;
}

async fn new_documents_are_empty_with_an_epoch<B: Backend>(b: B) {
    let check = "new_documents_are_empty_with_an_epoch";
    assert_eq!(b.status("r", &["body"], 0).await.unwrap().docs, vec![None], "{check}: nothing before the first load");
    let d = b.load("r", "body").await.unwrap();
    assert_eq!((d.snapshot_version, d.snapshot.as_str(), d.ops.len(), d.head(), d.head_digest()), (0, "", 0, 0, Digest::EMPTY), "{check}");
    assert!(!d.epoch.is_empty(), "{check}: an epoch is set");
    assert_eq!(b.load("r", "body").await.unwrap().epoch, d.epoch, "{check}: loading again keeps the epoch");
    assert_eq!(b.ops_since("r", "body", &d.epoch, 0).await.unwrap(), Some(vec![]), "{check}");
    let head = DocHead { epoch: d.epoch.clone(), version: 0, digest: Digest::EMPTY };
    assert_eq!(b.status("r", &["body", "other"], 0).await.unwrap().docs, vec![Some(head), None], "{check}");
}

async fn appends_are_compare_and_set<B: Backend>(b: B) {
    let check = "appends_are_compare_and_set";
    let mut a = Writer::open(&b, "r", "d").await;
    let mut late = Writer::open(&b, "r", "d").await;
    assert!(matches!(a.append("a", 1, &ins(0, "x")).await, Appended::Committed { version: 1, at } if at > 0), "{check}: committed with its time");
    let first = entry(1, "a", 1, ins(0, "x"), Digest::EMPTY);
    match late.append("b", 1, &ins(0, "y")).await {
        Appended::Conflict { head: 1, missed } => {
            assert_eq!(missed.into_iter().map(without_time).collect::<Vec<_>>(), vec![first.clone()], "{check}: answered with the ops missed")
        }
        other => panic!("{check}: stale expectation: {other:?}"),
    }
    let y = ins(0, "y");
    let mut future = late.commit("b", 1, &y);
    future.expected = 5;
    assert_eq!(b.append("r", "d", &future).await.unwrap(), Appended::Conflict { head: 1, missed: vec![] }, "{check}: future expectation");
    assert!(matches!(a.append("b", 1, &ins(1, "y")).await, Appended::Committed { version: 2, .. }), "{check}");
    let z = ins(0, "z");
    let mut wrong = a.commit("c", 1, &z);
    wrong.epoch = "not-the-epoch";
    assert!(matches!(b.append("r", "d", &wrong).await.unwrap(), Appended::EpochChanged { epoch } if epoch == a.epoch), "{check}: epoch checked");
    assert_eq!(b.ops_since("r", "d", "not-the-epoch", 0).await.unwrap(), None, "{check}: no ops for another epoch");
    let ops = b.ops_since("r", "d", &a.epoch, 0).await.unwrap().expect("log reaches version 0");
    let second = entry(2, "b", 1, ins(1, "y"), first.digest);
    assert_eq!(ops.into_iter().map(without_time).collect::<Vec<_>>(), vec![first, second], "{check}: ops kept with their submitters and digests");
    assert_eq!(b.ops_since("r", "d", &a.epoch, 1).await.unwrap().unwrap().len(), 1, "{check}");
    assert_eq!(b.ops_since("r", "d", &a.epoch, 2).await.unwrap(), Some(vec![]), "{check}: nothing after the head");
    assert_eq!(b.ops_since("r", "d", &a.epoch, 3).await.unwrap(), None, "{check}: a version past the head is refused");
}

/// A replica of another history (the store lost ops, and others were
/// committed at the same versions) must not extend this one.
async fn the_digest_is_part_of_the_compare<B: Backend>(b: B) {
    let check = "the_digest_is_part_of_the_compare";
    let mut a = Writer::open(&b, "r", "d").await;
    a.append("a", 1, &ins(0, "x")).await;
    let y = ins(0, "y");
    let mut stranger = a.commit("b", 1, &y);
    stranger.expected_digest = Digest::EMPTY.next(1, "a", 1, &ins(0, "other"));
    assert_eq!(b.append("r", "d", &stranger).await.unwrap(), Appended::Diverged, "{check}");
    assert_eq!(b.load("r", "d").await.unwrap().head(), 1, "{check}: nothing appended");
    let head = b.status("r", &["d"], 0).await.unwrap().docs.remove(0).expect("exists");
    assert_eq!((head.version, head.digest), (1, a.digest), "{check}: the status reports the head's digest");
}

async fn racing_appends_have_one_winner<B: Backend>(b: Arc<B>) {
    let check = "racing_appends_have_one_winner";
    let d = b.load("r", "d").await.unwrap();
    let racers = (0..8).map(|i| {
        let (b, e) = (b.clone(), d.epoch.clone());
        tokio::spawn(async move {
            let client = format!("c{i}");
            let op = ins(0, "x");
            let commit = crate::Commit {
                epoch: &e,
                expected: 0,
                expected_digest: Digest::EMPTY,
                client: &client,
                seq: 1,
                op: &op,
                digest: Digest::EMPTY.next(1, &client, 1, &op),
                history: None,
            };
            b.append("r", "d", &commit).await.unwrap()
        })
    });
    let outcomes = join_all(racers).await;
    let won = outcomes.iter().filter(|o| matches!(o, Appended::Committed { version: 1, .. })).count();
    let lost = outcomes.iter().filter(|o| matches!(o, Appended::Conflict { head: 1, missed } if missed.len() == 1)).count();
    assert_eq!((won, lost), (1, 7), "{check}: {outcomes:?}");
}

async fn submissions_are_deduplicated<B: Backend>(b: B) {
    let check = "submissions_are_deduplicated";
    let mut w = Writer::open(&b, "r", "d").await;
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), None, "{check}");
    w.append("a", 7, &ins(0, "x")).await;
    w.append("b", 1, &ins(0, "y")).await;
    // A resubmission is recognised whatever head it expects.
    let x = ins(0, "x");
    let mut stale = w.commit("a", 7, &x);
    stale.expected = 1;
    assert_eq!(b.append("r", "d", &stale).await.unwrap(), Appended::Duplicate { version: 1 }, "{check}");
    assert_eq!(w.append("a", 7, &ins(0, "x")).await, Appended::Duplicate { version: 1 }, "{check}");
    assert_eq!(w.append("a", 6, &ins(0, "x")).await, Appended::StaleSeq { last: 7 }, "{check}");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), Some((7, 1)), "{check}");
    assert_eq!(b.ops_since("r", "d", &w.epoch, 0).await.unwrap().unwrap().len(), 2, "{check}: nothing applied twice");
    assert!(matches!(w.append("a", 8, &ins(0, "z")).await, Appended::Committed { version: 3, .. }), "{check}");
}

/// Sequence numbers are u64s; a backend that compares them as doubles takes
/// 2^53 + 1 for 2^53 and drops an op as a duplicate.
async fn sequence_numbers_compare_exactly<B: Backend>(b: B) {
    let check = "sequence_numbers_compare_exactly";
    let mut w = Writer::open(&b, "r", "d").await;
    let big = 1u64 << 53;
    assert!(matches!(w.append("a", big, &ins(0, "x")).await, Appended::Committed { version: 1, .. }), "{check}");
    assert!(matches!(w.append("a", big + 1, &ins(0, "y")).await, Appended::Committed { version: 2, .. }), "{check}: 2^53 + 1 is not 2^53");
    assert_eq!(w.append("a", big, &ins(0, "z")).await, Appended::StaleSeq { last: big + 1 }, "{check}");
    assert!(matches!(w.append("a", u64::MAX - 1, &ins(0, "z")).await, Appended::Committed { version: 3, .. }), "{check}");
    assert!(matches!(w.append("a", u64::MAX, &ins(0, "z")).await, Appended::Committed { version: 4, .. }), "{check}");
    assert_eq!(w.append("a", u64::MAX - 1, &ins(0, "z")).await, Appended::StaleSeq { last: u64::MAX }, "{check}");
    // Numbers of different lengths: 10 after 9.
    assert!(matches!(w.append("b", 9, &ins(0, "q")).await, Appended::Committed { .. }), "{check}");
    assert!(matches!(w.append("b", 10, &ins(0, "q")).await, Appended::Committed { .. }), "{check}: 10 is after 9");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), Some((u64::MAX, 4)), "{check}");
    let seqs: Vec<u64> = b.ops_since("r", "d", &w.epoch, 0).await.unwrap().unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [big, big + 1, u64::MAX - 1, u64::MAX, 9, 10], "{check}: read back exactly");
}

async fn snapshots_trim_the_log_without_holes<B: Backend>(b: B) {
    let check = "snapshots_trim_the_log_without_holes";
    let mut w = Writer::open(&b, "r", "d").await;
    let mut digests = vec![Digest::EMPTY];
    for v in 0..10u64 {
        w.append("a", v + 1, &ins(0, &v.to_string())).await;
        digests.push(w.digest);
    }
    let snap = |version: u64, text: &str, trim_to: u64| Snapshot { epoch: &w.epoch, version, text: text.into(), trim_to, trim_digest: digests[trim_to.min(version) as usize] };
    // Text at version 8 is "76543210"; keep ops after version 5.
    b.snapshot("r", "d", snap(8, "76543210", 5)).await.unwrap();
    let d = b.load("r", "d").await.unwrap();
    assert_eq!((d.snapshot_version, d.snapshot.as_str(), d.head()), (8, "76543210", 10), "{check}");
    assert_eq!(d.ops.iter().map(|o| o.version).collect::<Vec<_>>(), vec![6, 7, 8, 9, 10], "{check}: ops after the trim point kept");
    assert_eq!(d.oldest_digest, digests[5], "{check}: the digest where the kept log starts");
    let restored = OrderedText::restore(TextDoc::from(d.snapshot.as_str()), d.snapshot_version, d.oldest_digest, d.ops.clone()).expect("restores");
    assert_eq!((restored.text().to_string(), restored.log().head_digest()), ("9876543210".to_string(), w.digest), "{check}");
    assert_eq!(b.ops_since("r", "d", &w.epoch, 4).await.unwrap(), None, "{check}: trimmed versions are refused, not partly answered");
    assert_eq!(b.ops_since("r", "d", &w.epoch, 5).await.unwrap().unwrap().len(), 5, "{check}");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), Some((10, 10)), "{check}");
    // An older snapshot arriving late changes nothing.
    b.snapshot("r", "d", snap(7, "stale", 7)).await.unwrap();
    let again = b.load("r", "d").await.unwrap();
    assert_eq!((again.snapshot_version, again.snapshot.as_str(), again.ops.len()), (8, "76543210", 5), "{check}: late snapshot ignored");
    // Trimming never passes the snapshot.
    b.snapshot("r", "d", snap(9, "876543210", 100)).await.unwrap();
    let d = b.load("r", "d").await.unwrap();
    assert_eq!(d.ops.iter().map(|o| o.version).collect::<Vec<_>>(), vec![10], "{check}: ops after the snapshot are never trimmed");
    assert_eq!(d.oldest_digest, digests[9], "{check}");
    assert!(matches!(w.append("b", 1, &ins(0, "!")).await, Appended::Committed { version: 11, .. }), "{check}");
}

async fn documents_keep_apart<B: Backend>(b: B) {
    let check = "documents_keep_apart";
    let mut r_one = Writer::open(&b, "r", "one").await;
    let mut r_two = Writer::open(&b, "r", "two").await;
    let mut s_one = Writer::open(&b, "s", "one").await;
    r_one.append("a", 1, &ins(0, "x")).await;
    assert!(matches!(r_two.append("a", 1, &ins(0, "y")).await, Appended::Committed { version: 1, .. }), "{check}: same client, other document");
    assert_eq!(b.load("s", "one").await.unwrap().head(), 0, "{check}: same name, other room");
    assert!(matches!(s_one.append("a", 1, &ins(0, "z")).await, Appended::Committed { version: 1, .. }), "{check}");
}

/// Document names may hold the separators a backend uses in its keys; a
/// name must still reach only its own document (a reader could otherwise
/// break or overwrite a writer's document by opening a crafted name).
async fn names_never_reach_another_documents_records<B: Backend>(b: B) {
    let check = "names_never_reach_another_documents_records";
    let names = ["x", "x:log", "x:snapshot", "x:clients", "x:history", "log", "x:log:log", "doc:x", "body", "body:snapshot", "d:1:x", "1:x"];
    let mut writers = Vec::new();
    for name in names {
        writers.push(Writer::open(&b, "r", name).await);
    }
    for (i, w) in writers.iter_mut().enumerate() {
        for k in 0..=i {
            let outcome = w.append("a", k as u64 + 1, &ins(0, &format!("{}.", w.doc))).await;
            assert!(matches!(outcome, Appended::Committed { .. }), "{check}: {} op {k}: {outcome:?}", w.doc);
        }
        let text = format!("{}.", w.doc).repeat(i + 1);
        // Trim all but the last op, whose submitter stays known.
        let trim_to = i as u64;
        let ops = b.ops_since("r", w.doc, &w.epoch, 0).await.unwrap().unwrap();
        let trim_digest = if trim_to == 0 { Digest::EMPTY } else { ops[i - 1].digest };
        b.snapshot("r", w.doc, Snapshot { epoch: &w.epoch, version: w.head, text, trim_to, trim_digest }).await.unwrap();
        b.save_history("r", w.doc, &w.epoch, "ann", 0, "t", &format!("history of {}", w.doc)).await.unwrap();
    }
    for (i, w) in writers.iter().enumerate() {
        let d = b.load("r", w.doc).await.unwrap();
        assert_eq!((d.epoch.as_str(), d.head(), d.snapshot.clone()), (w.epoch.as_str(), i as u64 + 1, format!("{}.", w.doc).repeat(i + 1)), "{check}: {}", w.doc);
        assert!(d.ops.iter().all(|e| e.op == ins(0, &format!("{}.", w.doc))), "{check}: {} holds only its own ops", w.doc);
        assert_eq!(b.last_committed("r", w.doc, "a").await.unwrap(), Some((i as u64 + 1, i as u64 + 1)), "{check}: {}", w.doc);
        let history = b.load_history("r", w.doc, "ann").await.unwrap();
        assert_eq!(history, Some(StoredHistory { rev: 1, saved: format!("history of {}", w.doc) }), "{check}: {}", w.doc);
    }
}

async fn commits_are_published<B: Backend>(b: B) {
    let check = "commits_are_published";
    let mut w = Writer::open(&b, "r", "d").await;
    let mut late = Writer::open(&b, "r", "d").await;
    let mut sub = b.subscribe("r").await.unwrap();
    w.append("a", 1, &ins(0, "x")).await;
    late.append("b", 1, &ins(0, "y")).await; // conflict: not published
    w.append("a", 1, &ins(0, "x")).await; // duplicate: not published
    w.append("b", 1, &ins(1, "y")).await;
    let first = entry(1, "a", 1, ins(0, "x"), Digest::EMPTY);
    let second = entry(2, "b", 1, ins(1, "y"), first.digest);
    for expected in [first, second] {
        match next_event(&mut sub, check).await {
            RoomEvent::DocOp { doc, entry } => {
                assert!(entry.at > 0, "{check}: published with its commit time");
                assert_eq!((doc.as_str(), without_time((*entry).clone())), ("d", expected), "{check}");
            }
            other => panic!("{check}: expected an op, got {other:?}"),
        }
    }
    b.publish("r", super::cursor_event("c1", 1)).await.unwrap();
    assert_eq!(next_event(&mut sub, check).await, super::cursor_event("c1", 1), "{check}: nothing else was published");
}

/// An undo's op and the history it leaves are one write, and only if the
/// history is the one the undo was computed from; a retry of the write
/// after a lost answer is recognised by its token.
async fn undo_commits_carry_their_history<B: Backend>(b: B) {
    let check = "undo_commits_carry_their_history";
    let mut w = Writer::open(&b, "r", "d").await;
    w.append("u3:ann:tab", 1, &ins(0, "hello")).await;
    assert!(b.save_history("r", "d", &w.epoch, "ann", 0, "create", "h0").await.unwrap(), "{check}: created at revision 1");
    assert!(!b.save_history("r", "d", &w.epoch, "ann", 0, "other", "h0'").await.unwrap(), "{check}: a second creation loses");
    assert!(b.save_history("r", "d", &w.epoch, "ann", 0, "create", "h0").await.unwrap(), "{check}: the same write, retried, is found");
    let undo: TextOp = serde_json::from_str(r#"[{"d":"hello"}]"#).unwrap();
    let write = |rev, token| HistoryWrite { user: "ann", expected_rev: rev, token, saved: "after undo" };
    let mut moved = w.commit("h3:ann", 2, &undo);
    moved.history = Some(write(5, "first"));
    assert_eq!(b.append("r", "d", &moved).await.unwrap(), Appended::HistoryMoved, "{check}");
    assert_eq!(b.load("r", "d").await.unwrap().head(), 1, "{check}: no op without its history");
    let mut undo_commit = w.commit("h3:ann", 2, &undo);
    undo_commit.history = Some(write(1, "first"));
    assert!(matches!(b.append("r", "d", &undo_commit).await.unwrap(), Appended::Committed { version: 2, .. }), "{check}");
    assert_eq!(b.load_history("r", "d", "ann").await.unwrap(), Some(StoredHistory { rev: 2, saved: "after undo".into() }), "{check}");
    // The same write again (its answer was lost): recognised.
    assert_eq!(b.append("r", "d", &undo_commit).await.unwrap(), Appended::Duplicate { version: 2 }, "{check}");
    // Another node's undo computed from revision 1 lost the race.
    let mut racer = w.commit("h3:ann", 2, &undo);
    racer.history = Some(write(1, "second"));
    assert_eq!(b.append("r", "d", &racer).await.unwrap(), Appended::HistoryMoved, "{check}");
    assert!(!b.save_history("r", "d", &w.epoch, "ann", 1, "stale", "x").await.unwrap(), "{check}: plain saves are compare-and-set too");
    assert!(b.save_history("r", "d", &w.epoch, "ann", 2, "later", "brought forward").await.unwrap(), "{check}");
    assert_eq!(b.load_history("r", "d", "bob").await.unwrap(), None, "{check}: histories are per user");
}
