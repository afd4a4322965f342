//! Groups of commits: what one [`DocStore::append_group`] call commits
//! (a prefix of the group, in order, each op as if appended alone), what it
//! tells, and that a group retried after a lost answer commits nothing twice.
//!
//! [`DocStore::append_group`]: crate::DocStore::append_group

use std::sync::Arc;

use chorus_core::digest::Digest;
use chorus_core::text::TextOp;

use super::{entry, ins, join_all, next_event, without_time, Writer};
use crate::faults::{Call, Fault, Faulty};
use crate::{Appended, Backend, DocStore, Group, GroupOp, RoomEvent, StoreError, MAX_GROUP};

pub(super) async fn run<B, F, Fut>(make: &F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    groups_commit_in_order_exactly_once(make().await).await;
    duplicates_end_a_group(make().await).await;
    refusals_commit_nothing(make().await).await;
    racing_groups_have_one_winner(Arc::new(make().await)).await;
    a_retried_group_commits_nothing_twice(make().await).await;
}

fn committed(outcome: &Appended) -> Option<u64> {
    match outcome {
        Appended::Committed { version, at } if *at > 0 => Some(*version),
        _ => None,
    }
}

async fn groups_commit_in_order_exactly_once<B: Backend>(b: B) {
    let check = "groups_commit_in_order_exactly_once";
    let mut sub = b.subscribe("r").await.unwrap();
    let mut w = Writer::open(&b, "r", "d").await;
    assert_eq!(w.append_group(&[]).await, vec![], "{check}: an empty group");
    let first = [("a", 1, ins(0, "x")), ("b", 1, ins(1, "y")), ("a", 2, ins(2, "z"))];
    let outcomes = w.append_group(&first).await;
    assert_eq!(outcomes.iter().map(committed).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)], "{check}: {outcomes:?}");
    // A second group goes on from where the first left the head.
    let outcomes = w.append_group(&[("c", 1, ins(0, ">")), ("b", 2, ins(4, "<"))]).await;
    assert_eq!(outcomes.iter().map(committed).collect::<Vec<_>>(), [Some(4), Some(5)], "{check}: {outcomes:?}");
    let mut expected = Vec::new();
    let mut previous = Digest::EMPTY;
    for (i, (client, seq, op)) in first.iter().cloned().chain([("c", 1, ins(0, ">")), ("b", 2, ins(4, "<"))]).enumerate() {
        let e = entry(i as u64 + 1, client, seq, op, previous);
        previous = e.digest;
        expected.push(e);
    }
    let stored: Vec<_> = b.ops_since("r", "d", &w.epoch, 0).await.unwrap().unwrap().into_iter().map(without_time).collect();
    assert_eq!(stored, expected, "{check}: every op once, in the group's order, with its digest");
    assert_eq!(b.load("r", "d").await.unwrap().head_digest(), previous, "{check}");
    for (client, last) in [("a", (2, 3)), ("b", (2, 5)), ("c", (1, 4))] {
        assert_eq!(b.last_committed("r", "d", client).await.unwrap(), Some(last), "{check}: {client}'s last op");
    }
    for e in &expected {
        match next_event(&mut sub, check).await {
            RoomEvent::DocOp { doc, entry } => assert_eq!((doc.as_str(), &without_time((*entry).clone())), ("d", e), "{check}: published in order"),
            other => panic!("{check}: expected an op, got {other:?}"),
        }
    }
    // A group longer than a store takes is refused whole.
    let op = ins(0, "x");
    let names: Vec<String> = (0..=MAX_GROUP).map(|i| format!("m{i}")).collect();
    let long: Vec<GroupOp<'_>> = names.iter().map(|n| GroupOp { client: n, seq: 1, op: &op, digest: Digest::EMPTY }).collect();
    let group = Group { epoch: &w.epoch, expected: w.head, expected_digest: w.digest, ops: &long };
    assert!(matches!(b.append_group("r", "d", &group).await, Err(StoreError::Backend(_))), "{check}: longer than MAX_GROUP");
    assert_eq!(b.load("r", "d").await.unwrap().head(), 5, "{check}: nothing of it appended");
}

/// An op already committed (by an earlier group, or earlier in its own)
/// is answered as a duplicate with its version, and ends the group: the ops
/// after it were transformed against it, so they are not looked at.
async fn duplicates_end_a_group<B: Backend>(b: B) {
    let check = "duplicates_end_a_group";
    let mut sub = b.subscribe("r").await.unwrap();
    let mut w = Writer::open(&b, "r", "d").await;
    assert_eq!(w.append_group(&[("a", 1, ins(0, "x"))]).await.iter().map(committed).collect::<Vec<_>>(), [Some(1)], "{check}");
    // (a, 1) from an earlier group in the middle of this one.
    let outcomes = w.append_group(&[("b", 1, ins(0, "y")), ("a", 1, ins(0, "x")), ("c", 1, ins(0, "z"))]).await;
    assert_eq!(outcomes.len(), 2, "{check}: nothing looked at after the duplicate: {outcomes:?}");
    assert_eq!((committed(&outcomes[0]), &outcomes[1]), (Some(2), &Appended::Duplicate { version: 1 }), "{check}");
    assert_eq!(b.last_committed("r", "d", "c").await.unwrap(), None, "{check}: the op after it is not committed");
    // The same (client, seq) twice in one group.
    let outcomes = w.append_group(&[("c", 1, ins(0, "z")), ("c", 1, ins(0, "z")), ("d", 1, ins(0, "w"))]).await;
    assert_eq!(outcomes, vec![outcomes[0].clone(), Appended::Duplicate { version: 3 }], "{check}");
    assert_eq!(committed(&outcomes[0]), Some(3), "{check}");
    // A sequence number going back inside a group.
    let outcomes = w.append_group(&[("d", 5, ins(0, "w")), ("d", 4, ins(0, "v")), ("e", 1, ins(0, "u"))]).await;
    assert_eq!(outcomes.len(), 2, "{check}: {outcomes:?}");
    assert_eq!((committed(&outcomes[0]), &outcomes[1]), (Some(4), &Appended::StaleSeq { last: 5 }), "{check}");
    let versions: Vec<(String, u64)> = b.ops_since("r", "d", &w.epoch, 0).await.unwrap().unwrap().into_iter().map(|e| (e.client, e.seq)).collect();
    let expected = [("a", 1), ("b", 1), ("c", 1), ("d", 5)].map(|(c, s)| (c.to_owned(), s));
    assert_eq!(versions, expected, "{check}: each op once, nothing after a duplicate");
    for version in 1..=4 {
        match next_event(&mut sub, check).await {
            RoomEvent::DocOp { entry, .. } => assert_eq!(entry.version, version, "{check}: published once, in order"),
            other => panic!("{check}: expected an op, got {other:?}"),
        }
    }
    b.publish("r", super::cursor_event("c1", 1)).await.unwrap();
    assert_eq!(next_event(&mut sub, check).await, super::cursor_event("c1", 1), "{check}: nothing else was published");
}

/// A group the store refuses at its first op changes nothing.
async fn refusals_commit_nothing<B: Backend>(b: B) {
    let check = "refusals_commit_nothing";
    let mut w = Writer::open(&b, "r", "d").await;
    let mut late = Writer::open(&b, "r", "d").await;
    w.append_group(&[("a", 1, ins(0, "x")), ("a", 2, ins(1, "y"))]).await;
    let outcomes = late.append_group(&[("b", 1, ins(0, "q")), ("b", 2, ins(0, "r"))]).await;
    match outcomes.as_slice() {
        [Appended::Conflict { head: 2, missed }] => assert_eq!(missed.len(), 2, "{check}: answered with the ops missed"),
        other => panic!("{check}: a stale group: {other:?}"),
    }
    let ops = [("b", 1, ins(0, "q"))];
    let group_ops = w.group_ops(&ops);
    let wrong_epoch = Group { epoch: "another", expected: w.head, expected_digest: w.digest, ops: &group_ops };
    assert_eq!(b.append_group("r", "d", &wrong_epoch).await.unwrap(), vec![Appended::EpochChanged { epoch: w.epoch.clone() }], "{check}");
    let stranger = Group { epoch: &w.epoch, expected: w.head, expected_digest: Digest::EMPTY, ops: &group_ops };
    assert_eq!(b.append_group("r", "d", &stranger).await.unwrap(), vec![Appended::Diverged], "{check}");
    assert_eq!(b.load("r", "d").await.unwrap().head(), 2, "{check}: nothing appended");
    assert_eq!(b.last_committed("r", "d", "b").await.unwrap(), None, "{check}");
}

/// Groups racing at one version: exactly one commits, whole; the others are
/// told what it committed.
async fn racing_groups_have_one_winner<B: Backend>(b: Arc<B>) {
    let check = "racing_groups_have_one_winner";
    let d = b.load("r", "d").await.unwrap();
    let racers = (0..6).map(|i| {
        let (b, epoch) = (b.clone(), d.epoch.clone());
        tokio::spawn(async move {
            let client = format!("c{i}");
            let ops = [ins(0, "x"), ins(1, "y"), ins(2, "z")];
            let mut digest = Digest::EMPTY;
            let group_ops: Vec<GroupOp<'_>> = ops
                .iter()
                .enumerate()
                .map(|(k, op)| {
                    digest = digest.next(k as u64 + 1, &client, k as u64 + 1, op);
                    GroupOp { client: &client, seq: k as u64 + 1, op, digest }
                })
                .collect();
            let group = Group { epoch: &epoch, expected: 0, expected_digest: Digest::EMPTY, ops: &group_ops };
            b.append_group("r", "d", &group).await.unwrap()
        })
    });
    let outcomes = join_all(racers).await;
    let won = outcomes.iter().filter(|o| o.iter().map(committed).collect::<Vec<_>>() == [Some(1), Some(2), Some(3)]).count();
    let lost = outcomes.iter().filter(|o| matches!(o.as_slice(), [Appended::Conflict { head: 3, missed }] if missed.len() == 3)).count();
    assert_eq!((won, lost), (1, 5), "{check}: {outcomes:?}");
    let stored = b.ops_since("r", "d", &d.epoch, 0).await.unwrap().unwrap();
    assert!(stored.iter().all(|e| e.client == stored[0].client), "{check}: one group's ops, not a mix: {stored:?}");
}

/// A group whose answer was lost (it was carried out) and which is sent
/// again: the retry finds its first op committed and commits nothing.
async fn a_retried_group_commits_nothing_twice<B: Backend>(b: B) {
    let check = "a_retried_group_commits_nothing_twice";
    let f = Faulty::new(b);
    let mut w = Writer::open(&f, "r", "d").await;
    w.append_group(&[("z", 1, ins(0, "!"))]).await;
    let ops: [(&str, u64, TextOp); 3] = [("a", 1, ins(0, "x")), ("b", 1, ins(0, "y")), ("c", 1, ins(0, "z"))];
    let group_ops = w.group_ops(&ops);
    let group = Group { epoch: &w.epoch, expected: w.head, expected_digest: w.digest, ops: &group_ops };
    f.plan(Call::Append, [Fault::LoseAnswer]);
    assert!(f.append_group("r", "d", &group).await.is_err(), "{check}: the answer is lost");
    assert_eq!(f.append_group("r", "d", &group).await.unwrap(), vec![Appended::Duplicate { version: 2 }], "{check}: the retry");
    // A caller that fetched what it missed and sent the rest again.
    let rest = Group { epoch: &w.epoch, expected: 2, expected_digest: group_ops[0].digest, ops: &group_ops[1..] };
    assert_eq!(f.append_group("r", "d", &rest).await.unwrap(), vec![Appended::Duplicate { version: 3 }], "{check}");
    let stored: Vec<(String, u64)> = f.ops_since("r", "d", &w.epoch, 0).await.unwrap().unwrap().into_iter().map(|e| (e.client, e.seq)).collect();
    let expected = [("z", 1), ("a", 1), ("b", 1), ("c", 1)].map(|(c, s)| (c.to_owned(), s));
    assert_eq!(stored, expected, "{check}: committed once");
    assert_eq!(f.last_committed("r", "d", "c").await.unwrap(), Some((1, 4)), "{check}");
}
