//! Shared values: compare-and-set with write tokens, every write published.

use std::sync::Arc;

use super::{join_all, next_event};
use crate::{Backend, RoomEvent, StoredHistory, StoredValue, ValuePut, ValuesContent};

pub(super) async fn run<B, F, Fut>(make: &F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    values_are_compare_and_set(make().await).await;
    a_write_retried_after_a_lost_answer_is_found(make().await).await;
    racing_value_writes_have_one_winner(Arc::new(make().await)).await;
    value_writes_are_published_with_the_rooms_stamp(make().await).await;
    the_status_tells_what_the_values_hold(make().await).await;
    histories_are_kept_per_user_and_document(make().await).await;
}

fn counter(n: i64) -> chorus_core::crdt::Value {
    use chorus_core::crdt::{Value, ValueKind, ValueOp};
    let mut v = Value::new(ValueKind::PnCounter);
    v.apply(&ValueOp::Increment { writer: "w".into(), amount: n }).unwrap();
    v
}

async fn values_are_compare_and_set<B: Backend>(b: B) {
    let check = "values_are_compare_and_set";
    let empty = b.values("r").await.unwrap();
    assert!(empty.values.is_empty() && empty.stamp.is_none(), "{check}: a room starts without values");
    assert_eq!(b.put_value("r", "votes", 0, &counter(1), "t1").await.unwrap(), ValuePut::Written { version: 1 }, "{check}");
    let current = Some(StoredValue { version: 1, state: counter(1) });
    assert_eq!(b.put_value("r", "votes", 0, &counter(5), "t2").await.unwrap(), ValuePut::Conflict { current: current.clone() }, "{check}: a stale write gets the current state");
    assert_eq!(b.put_value("r", "votes", 7, &counter(5), "t3").await.unwrap(), ValuePut::Conflict { current }, "{check}");
    assert_eq!(b.put_value("r", "votes", 1, &counter(2), "t4").await.unwrap(), ValuePut::Written { version: 2 }, "{check}");
    assert_eq!(b.put_value("r", "other", 1, &counter(2), "t5").await.unwrap(), ValuePut::Conflict { current: None }, "{check}: a value that does not exist is at 0");
    b.put_value("r", "title", 0, &counter(9), "t6").await.unwrap();
    b.put_value("s", "votes", 0, &counter(100), "t7").await.unwrap();
    let mut got = b.values("r").await.unwrap();
    got.values.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got.values,
        vec![("title".to_owned(), StoredValue { version: 1, state: counter(9) }), ("votes".to_owned(), StoredValue { version: 2, state: counter(2) })],
        "{check}: rooms keep their values apart"
    );
    let stamp = got.stamp.expect("a stamp");
    assert_eq!(stamp.seq, 3, "{check}: three writes in room r");
    assert_eq!(b.status("r", &[], 0).await.unwrap().values, Some(stamp), "{check}: the status agrees");
}

/// An increment whose answer was lost must not be applied twice when the
/// node asks again: the store recognises the write by its token.
async fn a_write_retried_after_a_lost_answer_is_found<B: Backend>(b: B) {
    let check = "a_write_retried_after_a_lost_answer_is_found";
    assert_eq!(b.put_value("r", "n", 0, &counter(1), "once").await.unwrap(), ValuePut::Written { version: 1 }, "{check}");
    assert_eq!(b.put_value("r", "n", 0, &counter(1), "once").await.unwrap(), ValuePut::Written { version: 1 }, "{check}: the retry finds its write");
    assert_eq!(b.values("r").await.unwrap().stamp.map(|s| s.seq), Some(1), "{check}: written once");
    b.put_value("r", "n", 1, &counter(2), "next").await.unwrap();
    assert!(matches!(b.put_value("r", "n", 0, &counter(1), "once").await.unwrap(), ValuePut::Conflict { .. }), "{check}: only the latest write is remembered");
}

async fn racing_value_writes_have_one_winner<B: Backend>(b: Arc<B>) {
    let check = "racing_value_writes_have_one_winner";
    let writers = (0..8).map(|i| {
        let b = b.clone();
        tokio::spawn(async move { b.put_value("r", "v", 0, &counter(i), &format!("t{i}")).await.unwrap() })
    });
    let outcomes = join_all(writers).await;
    let won = outcomes.iter().filter(|o| matches!(o, ValuePut::Written { version: 1 })).count();
    assert_eq!(won, 1, "{check}: {outcomes:?}");
}

async fn value_writes_are_published_with_the_rooms_stamp<B: Backend>(b: B) {
    let check = "value_writes_are_published_with_the_rooms_stamp";
    let mut sub = b.subscribe("r").await.unwrap();
    b.put_value("r", "v", 0, &counter(3), "a").await.unwrap();
    b.put_value("r", "v", 0, &counter(4), "b").await.unwrap(); // refused: not published
    b.put_value("r", "w", 0, &counter(5), "c").await.unwrap();
    let mut epoch = None;
    for (name, version, n, seq) in [("v", 1, 3, 1), ("w", 1, 5, 2)] {
        match next_event(&mut sub, check).await {
            RoomEvent::Value { name: got, version: v, state, stamp } => {
                assert_eq!((got.as_str(), v, state, stamp.seq), (name, version, counter(n), seq), "{check}");
                assert_eq!(epoch.get_or_insert(stamp.epoch.clone()), &stamp.epoch, "{check}: one epoch");
            }
            other => panic!("{check}: expected a value, got {other:?}"),
        }
    }
}

/// The status says what the values hold, not only their stamp: as many
/// values, and the same fingerprint, as a node computes over the values it
/// holds (the ones [`Backend::values`] gives), so a node whose values differ
/// from the store's at the same stamp can tell.
async fn the_status_tells_what_the_values_hold<B: Backend>(b: B) {
    let check = "the_status_tells_what_the_values_hold";
    let content = |room: &'static str| {
        let b = &b;
        async move {
            let (status, stored) = (b.status(room, &[], 0).await.unwrap(), b.values(room).await.unwrap());
            assert_eq!(status.values, stored.stamp, "{check}: {room}");
            let held = ValuesContent::of(stored.values.iter().map(|(n, v)| (n.as_str(), v)));
            assert_eq!(status.value_content, held, "{check}: {room}: as a node holding the stored values computes it");
            held
        }
    };
    assert_eq!(content("r").await, ValuesContent::default(), "{check}: no values in an unknown room");
    b.put_value("r", "votes", 0, &counter(1), "t1").await.unwrap();
    b.put_value("r", "a:b \u{e9}", 0, &counter(-3), "t2").await.unwrap();
    let two = content("r").await;
    assert_eq!(two.count, 2, "{check}");
    b.put_value("r", "votes", 1, &counter(2), "t3").await.unwrap();
    assert_ne!(content("r").await, two, "{check}: a write changes it");
    // The same names and versions in another room, one state different.
    b.put_value("s", "votes", 0, &counter(1), "t4").await.unwrap();
    b.put_value("s", "a:b \u{e9}", 0, &counter(-4), "t5").await.unwrap();
    let other = content("s").await;
    assert_eq!(other.count, 2, "{check}");
    assert_ne!(other, two, "{check}: another state at the same version");
}

async fn histories_are_kept_per_user_and_document<B: Backend>(b: B) {
    let check = "histories_are_kept_per_user_and_document";
    assert_eq!(b.load_history("r", "d", "ann").await.unwrap(), None, "{check}");
    let (d, e, s) = (b.load("r", "d").await.unwrap().epoch, b.load("r", "e").await.unwrap().epoch, b.load("s", "d").await.unwrap().epoch);
    assert!(b.save_history("r", "d", &d, "ann", 0, "1", "one").await.unwrap());
    assert!(b.save_history("r", "d", &d, "ann", 1, "2", "two").await.unwrap());
    assert!(b.save_history("r", "d", &d, "bob", 0, "3", "bob's").await.unwrap());
    assert!(b.save_history("r", "e", &e, "ann", 0, "4", "other doc").await.unwrap());
    assert!(b.save_history("s", "d", &s, "ann", 0, "5", "other room").await.unwrap());
    for (room, doc, user, rev, saved) in [("r", "d", "ann", 2, "two"), ("r", "d", "bob", 1, "bob's"), ("r", "e", "ann", 1, "other doc"), ("s", "d", "ann", 1, "other room")] {
        let got = b.load_history(room, doc, user).await.unwrap();
        assert_eq!(got, Some(StoredHistory { rev, saved: saved.into() }), "{check}: {room} {doc} {user}");
    }
}
