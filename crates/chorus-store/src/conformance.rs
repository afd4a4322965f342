//! The conformance suite every backend must pass, unchanged.
//!
//! A backend's tests call [`run_all`] with a function that makes a fresh,
//! empty backend. Each check names itself in its panic message. The checks
//! state the guarantees the server relies on: atomic removal (one leave per
//! entry, however many callers race), expiry by the given clock, isolation
//! between rooms, in-order bus delivery to every subscriber, and for
//! documents: one order by compare-and-set (exactly one of racing appends
//! at a version wins), (client, seq) deduplication, epochs, and trimming
//! behind snapshots that never leaves a silent hole; for values: one
//! compare-and-set on the version, and every write published.

use std::sync::Arc;

use chorus_core::presence::{Member, UserInfo};
use chorus_protocol::{CursorState, LeaveReason};
use serde_json::json;

use chorus_core::oplog::LogEntry;
use chorus_core::text::TextOp;

use crate::{Appended, Backend, BusError, RoomEvent, RoomSummary, StoredValue, ValuePut};

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

/// Runs every check against fresh backends from `make`.
pub async fn run_all<B, F, Fut>(make: F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    join_list_and_leave(make().await).await;
    two_connections_of_one_user_are_two_entries(make().await).await;
    leave_hands_the_entry_back_once(Arc::new(make().await)).await;
    expiry_follows_the_clock(make().await).await;
    concurrent_expiry_returns_each_entry_once(Arc::new(make().await)).await;
    expiry_finds_every_entry_after_leaves_and_sweeps(make().await).await;
    joins_racing_sweeps_still_expire(Arc::new(make().await)).await;
    state_and_refresh_need_a_live_entry(make().await).await;
    rooms_are_listed_with_counts(make().await).await;
    bus_delivers_in_order_to_every_subscriber(make().await).await;
    bus_keeps_rooms_apart(make().await).await;
    dropped_subscriptions_receive_nothing(make().await).await;
    bus_reports_lag(make().await).await;
    new_documents_are_empty_with_an_epoch(make().await).await;
    appends_are_compare_and_set(make().await).await;
    racing_appends_have_one_winner(Arc::new(make().await)).await;
    submissions_are_deduplicated(make().await).await;
    snapshots_trim_the_log_without_holes(make().await).await;
    documents_keep_apart(make().await).await;
    commits_are_published(make().await).await;
    values_are_compare_and_set(make().await).await;
    racing_value_writes_have_one_winner(Arc::new(make().await)).await;
    value_writes_are_published(make().await).await;
    histories_are_kept_per_user_and_document(make().await).await;
}

async fn histories_are_kept_per_user_and_document<B: Backend>(b: B) {
    let check = "histories_are_kept_per_user_and_document";
    assert_eq!(b.load_history("r", "d", "ann").await.unwrap(), None, "{check}");
    b.save_history("r", "d", "ann", "one".into()).await.unwrap();
    b.save_history("r", "d", "ann", "two".into()).await.unwrap();
    b.save_history("r", "d", "bob", "bob's".into()).await.unwrap();
    b.save_history("r", "e", "ann", "other doc".into()).await.unwrap();
    b.save_history("s", "d", "ann", "other room".into()).await.unwrap();
    assert_eq!(b.load_history("r", "d", "ann").await.unwrap().as_deref(), Some("two"), "{check}: the latest save");
    assert_eq!(b.load_history("r", "d", "bob").await.unwrap().as_deref(), Some("bob's"), "{check}");
    assert_eq!(b.load_history("r", "e", "ann").await.unwrap().as_deref(), Some("other doc"), "{check}");
    assert_eq!(b.load_history("s", "d", "ann").await.unwrap().as_deref(), Some("other room"), "{check}");
}

fn counter(n: i64) -> chorus_core::crdt::Value {
    use chorus_core::crdt::{Value, ValueKind, ValueOp};
    let mut v = Value::new(ValueKind::PnCounter);
    v.apply(&ValueOp::Increment { writer: "w".into(), amount: n }).unwrap();
    v
}

async fn values_are_compare_and_set<B: Backend>(b: B) {
    let check = "values_are_compare_and_set";
    assert!(b.values("r").await.unwrap().is_empty(), "{check}: a room starts without values");
    assert_eq!(b.put_value("r", "votes", 0, &counter(1)).await.unwrap(), ValuePut::Written { version: 1 }, "{check}");
    let stale = b.put_value("r", "votes", 0, &counter(5)).await.unwrap();
    assert_eq!(stale, ValuePut::Conflict { current: Some(StoredValue { version: 1, state: counter(1) }) }, "{check}: a stale write gets the current state");
    assert_eq!(b.put_value("r", "votes", 7, &counter(5)).await.unwrap(), ValuePut::Conflict { current: Some(StoredValue { version: 1, state: counter(1) }) }, "{check}");
    assert_eq!(b.put_value("r", "votes", 1, &counter(2)).await.unwrap(), ValuePut::Written { version: 2 }, "{check}");
    assert_eq!(b.put_value("r", "other", 1, &counter(2)).await.unwrap(), ValuePut::Conflict { current: None }, "{check}: a value that does not exist is at 0");
    b.put_value("r", "title", 0, &counter(9)).await.unwrap();
    b.put_value("s", "votes", 0, &counter(100)).await.unwrap();
    let mut got = b.values("r").await.unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![("title".to_owned(), StoredValue { version: 1, state: counter(9) }), ("votes".to_owned(), StoredValue { version: 2, state: counter(2) })],
        "{check}: rooms keep their values apart"
    );
}

async fn racing_value_writes_have_one_winner<B: Backend>(b: Arc<B>) {
    let check = "racing_value_writes_have_one_winner";
    let writers = (0..8).map(|i| {
        let b = b.clone();
        tokio::spawn(async move { b.put_value("r", "v", 0, &counter(i)).await.unwrap() })
    });
    let outcomes = join_all(writers).await;
    let won = outcomes.iter().filter(|o| matches!(o, ValuePut::Written { version: 1 })).count();
    assert_eq!(won, 1, "{check}: {outcomes:?}");
}

async fn value_writes_are_published<B: Backend>(b: B) {
    let check = "value_writes_are_published";
    let mut sub = b.subscribe("r").await.unwrap();
    b.put_value("r", "v", 0, &counter(3)).await.unwrap();
    b.put_value("r", "v", 0, &counter(4)).await.unwrap(); // refused: not published
    b.put_value("r", "v", 1, &counter(5)).await.unwrap();
    for (version, n) in [(1, 3), (2, 5)] {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await.expect("published").unwrap();
        assert_eq!(*event, RoomEvent::Value { name: "v".into(), version, state: counter(n) }, "{check}");
    }
}

async fn commits_are_published<B: Backend>(b: B) {
    let check = "commits_are_published";
    let e = b.load("r", "d").await.unwrap().epoch;
    let mut sub = b.subscribe("r").await.unwrap();
    b.append("r", "d", &e, 0, "a", 1, &ins(0, "x")).await.unwrap();
    b.append("r", "d", &e, 0, "b", 1, &ins(0, "y")).await.unwrap(); // conflict: not published
    b.append("r", "d", &e, 1, "a", 1, &ins(0, "x")).await.unwrap(); // duplicate: not published
    b.append("r", "d", &e, 1, "b", 1, &ins(1, "y")).await.unwrap();
    for (version, client, op) in [(1, "a", ins(0, "x")), (2, "b", ins(1, "y"))] {
        match &*sub.recv().await.unwrap() {
            RoomEvent::DocOp { doc, entry } => {
                assert_eq!((doc.as_str(), entry.version, entry.client.as_str(), &entry.op), ("d", version, client, &op), "{check}");
            }
            other => panic!("{check}: expected the op at version {version}, got {other:?}"),
        }
    }
    b.publish("r", cursor_event("c1", 1)).await.unwrap();
    assert_eq!(*sub.recv().await.unwrap(), cursor_event("c1", 1), "{check}: nothing else was published");
}

async fn new_documents_are_empty_with_an_epoch<B: Backend>(b: B) {
    let check = "new_documents_are_empty_with_an_epoch";
    let d = b.load("r", "body").await.unwrap();
    assert_eq!((d.snapshot_version, d.snapshot.as_str(), d.ops.len(), d.head()), (0, "", 0, 0), "{check}");
    assert!(!d.epoch.is_empty(), "{check}: an epoch is set");
    assert_eq!(b.load("r", "body").await.unwrap().epoch, d.epoch, "{check}: loading again keeps the epoch");
    assert_eq!(b.ops_since("r", "body", &d.epoch, 0).await.unwrap(), Some(vec![]), "{check}");
}

async fn appends_are_compare_and_set<B: Backend>(b: B) {
    let check = "appends_are_compare_and_set";
    let e = b.load("r", "d").await.unwrap().epoch;
    assert_eq!(b.append("r", "d", &e, 0, "a", 1, &ins(0, "x")).await.unwrap(), Appended::Committed { version: 1 }, "{check}");
    let first = LogEntry { version: 1, client: "a".into(), seq: 1, op: ins(0, "x") };
    assert_eq!(
        b.append("r", "d", &e, 0, "b", 1, &ins(0, "y")).await.unwrap(),
        Appended::Conflict { head: 1, missed: vec![first] },
        "{check}: stale expectation, answered with the ops missed"
    );
    assert_eq!(b.append("r", "d", &e, 5, "b", 1, &ins(0, "y")).await.unwrap(), Appended::Conflict { head: 1, missed: vec![] }, "{check}: future expectation");
    assert_eq!(b.append("r", "d", &e, 1, "b", 1, &ins(1, "y")).await.unwrap(), Appended::Committed { version: 2 }, "{check}");
    let wrong = "not-the-epoch";
    assert!(matches!(b.append("r", "d", wrong, 2, "c", 1, &ins(0, "z")).await.unwrap(), Appended::EpochChanged { epoch } if epoch == e), "{check}: epoch checked");
    assert_eq!(b.ops_since("r", "d", wrong, 0).await.unwrap(), None, "{check}: no ops for another epoch");
    let ops = b.ops_since("r", "d", &e, 0).await.unwrap().expect("log reaches version 0");
    let got: Vec<(u64, &str, u64, &TextOp)> = ops.iter().map(|o| (o.version, o.client.as_str(), o.seq, &o.op)).collect();
    assert_eq!(got, vec![(1, "a", 1, &ins(0, "x")), (2, "b", 1, &ins(1, "y"))], "{check}: ops kept with their submitters");
    assert_eq!(b.ops_since("r", "d", &e, 1).await.unwrap().unwrap().len(), 1, "{check}");
    assert_eq!(b.ops_since("r", "d", &e, 2).await.unwrap(), Some(vec![]), "{check}: nothing after the head");
    assert_eq!(b.ops_since("r", "d", &e, 3).await.unwrap(), None, "{check}: a version past the head is refused");
}

async fn racing_appends_have_one_winner<B: Backend>(b: Arc<B>) {
    let check = "racing_appends_have_one_winner";
    let e = b.load("r", "d").await.unwrap().epoch;
    let racers = (0..8).map(|i| {
        let (b, e) = (b.clone(), e.clone());
        tokio::spawn(async move { b.append("r", "d", &e, 0, &format!("c{i}"), 1, &ins(0, "x")).await.unwrap() })
    });
    let outcomes = join_all(racers).await;
    let won = outcomes.iter().filter(|o| **o == Appended::Committed { version: 1 }).count();
    let lost = outcomes.iter().filter(|o| matches!(o, Appended::Conflict { head: 1, missed } if missed.len() == 1)).count();
    assert_eq!((won, lost), (1, 7), "{check}: {outcomes:?}");
}

async fn submissions_are_deduplicated<B: Backend>(b: B) {
    let check = "submissions_are_deduplicated";
    let e = b.load("r", "d").await.unwrap().epoch;
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), None, "{check}");
    b.append("r", "d", &e, 0, "a", 7, &ins(0, "x")).await.unwrap();
    b.append("r", "d", &e, 1, "b", 1, &ins(0, "y")).await.unwrap();
    // A resubmission is recognised whatever head it expects.
    assert_eq!(b.append("r", "d", &e, 1, "a", 7, &ins(0, "x")).await.unwrap(), Appended::Duplicate { version: 1 }, "{check}");
    assert_eq!(b.append("r", "d", &e, 2, "a", 7, &ins(0, "x")).await.unwrap(), Appended::Duplicate { version: 1 }, "{check}");
    assert_eq!(b.append("r", "d", &e, 2, "a", 6, &ins(0, "x")).await.unwrap(), Appended::StaleSeq { last: 7 }, "{check}");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), Some((7, 1)), "{check}");
    assert_eq!(b.ops_since("r", "d", &e, 0).await.unwrap().unwrap().len(), 2, "{check}: nothing applied twice");
    assert_eq!(b.append("r", "d", &e, 2, "a", 8, &ins(0, "z")).await.unwrap(), Appended::Committed { version: 3 }, "{check}");
}

async fn snapshots_trim_the_log_without_holes<B: Backend>(b: B) {
    let check = "snapshots_trim_the_log_without_holes";
    let e = b.load("r", "d").await.unwrap().epoch;
    let mut text = String::new();
    for v in 0..10u64 {
        b.append("r", "d", &e, v, "a", v + 1, &ins(0, &v.to_string())).await.unwrap();
        text.insert_str(0, &v.to_string());
    }
    // Text at version 8 is "76543210"; keep ops after version 5.
    b.snapshot("r", "d", &e, 8, "76543210".into(), 5).await.unwrap();
    let d = b.load("r", "d").await.unwrap();
    assert_eq!((d.snapshot_version, d.snapshot.as_str(), d.head()), (8, "76543210", 10), "{check}");
    assert_eq!(d.ops.iter().map(|o| o.version).collect::<Vec<_>>(), vec![6, 7, 8, 9, 10], "{check}: ops after the trim point kept");
    assert_eq!(b.ops_since("r", "d", &e, 4).await.unwrap(), None, "{check}: trimmed versions are refused, not partly answered");
    assert_eq!(b.ops_since("r", "d", &e, 5).await.unwrap().unwrap().len(), 5, "{check}");
    assert_eq!(b.last_committed("r", "d", "a").await.unwrap(), Some((10, 10)), "{check}");
    // An older snapshot arriving late changes nothing.
    b.snapshot("r", "d", &e, 7, "stale".into(), 7).await.unwrap();
    let again = b.load("r", "d").await.unwrap();
    assert_eq!((again.snapshot_version, again.snapshot.as_str(), again.ops.len()), (8, "76543210", 5), "{check}: late snapshot ignored");
    // Trimming never passes the snapshot.
    b.snapshot("r", "d", &e, 9, "876543210".into(), 100).await.unwrap();
    let d = b.load("r", "d").await.unwrap();
    assert_eq!(d.ops.iter().map(|o| o.version).collect::<Vec<_>>(), vec![10], "{check}: ops after the snapshot are never trimmed");
    assert_eq!(b.append("r", "d", &e, 10, "b", 1, &ins(0, "!")).await.unwrap(), Appended::Committed { version: 11 }, "{check}");
}

async fn documents_keep_apart<B: Backend>(b: B) {
    let check = "documents_keep_apart";
    let e1 = b.load("r", "one").await.unwrap().epoch;
    let e2 = b.load("r", "two").await.unwrap().epoch;
    let e3 = b.load("s", "one").await.unwrap().epoch;
    b.append("r", "one", &e1, 0, "a", 1, &ins(0, "x")).await.unwrap();
    assert_eq!(b.append("r", "two", &e2, 0, "a", 1, &ins(0, "y")).await.unwrap(), Appended::Committed { version: 1 }, "{check}: same client, other document");
    assert_eq!(b.load("s", "one").await.unwrap().head(), 0, "{check}: same name, other room");
    assert_eq!(b.append("s", "one", &e3, 0, "a", 1, &ins(0, "z")).await.unwrap(), Appended::Committed { version: 1 }, "{check}");
}

async fn join_list_and_leave<B: Backend>(b: B) {
    let check = "join_list_and_leave";
    assert_eq!(b.join("r", member("c1", "ann", 1), 1_000, 0).await.unwrap(), 1, "{check}");
    assert_eq!(b.join("r", member("c2", "bob", 2), 1_000, 0).await.unwrap(), 2, "{check}");
    let list = b.members("r", 10).await.unwrap();
    assert_eq!(list.iter().map(|m| m.connection.as_str()).collect::<Vec<_>>(), ["c1", "c2"], "{check}: join order");
    assert_eq!(list[0].user.name.as_deref(), Some("ANN"), "{check}: user info kept");
    let (gone, count) = b.leave("r", "c1", 10).await.unwrap().expect("c1 was there");
    assert_eq!((gone.connection.as_str(), count), ("c1", 1), "{check}");
    assert_eq!(b.count("r", 10).await.unwrap(), 1, "{check}");
    assert_eq!(b.members("nowhere", 10).await.unwrap(), vec![], "{check}: unknown room is empty");
}

async fn two_connections_of_one_user_are_two_entries<B: Backend>(b: B) {
    let check = "two_connections_of_one_user_are_two_entries";
    b.join("r", member("tab1", "ann", 1), 1_000, 0).await.unwrap();
    b.join("r", member("tab2", "ann", 2), 1_000, 0).await.unwrap();
    assert_eq!(b.count("r", 0).await.unwrap(), 2, "{check}");
    b.leave("r", "tab2", 0).await.unwrap().expect("tab2 was there");
    let left = b.members("r", 0).await.unwrap();
    assert_eq!(left.len(), 1, "{check}");
    assert_eq!(left[0].connection, "tab1", "{check}: closing one tab leaves the other");
}

async fn leave_hands_the_entry_back_once<B: Backend>(b: Arc<B>) {
    let check = "leave_hands_the_entry_back_once";
    b.join("r", member("c1", "ann", 1), 1_000, 0).await.unwrap();
    let racers = (0..8).map(|_| {
        let b = b.clone();
        tokio::spawn(async move { b.leave("r", "c1", 0).await.unwrap().is_some() })
    });
    let winners = join_all(racers).await.into_iter().filter(|won| *won).count();
    assert_eq!(winners, 1, "{check}: exactly one of eight racing leaves removes the entry");
}

async fn expiry_follows_the_clock<B: Backend>(b: B) {
    let check = "expiry_follows_the_clock";
    b.join("r", member("old", "ann", 1), 100, 0).await.unwrap();
    b.join("r", member("new", "bob", 2), 500, 0).await.unwrap();
    b.join("s", member("other", "cid", 3), 100, 0).await.unwrap();
    assert!(b.expire(99).await.unwrap().is_empty(), "{check}: nothing expires early");
    assert_eq!(b.count("r", 100).await.unwrap(), 1, "{check}: expired entries are not counted");
    let mut gone = b.expire(100).await.unwrap();
    gone.sort_by(|a, b| a.room.cmp(&b.room));
    let got: Vec<(&str, &str, usize)> = gone.iter().map(|e| (e.room.as_str(), e.member.connection.as_str(), e.count)).collect();
    assert_eq!(got, [("r", "old", 1), ("s", "other", 0)], "{check}");
    assert!(b.expire(100).await.unwrap().is_empty(), "{check}: an entry expires once");
    assert_eq!(b.leave("r", "old", 100).await.unwrap(), None, "{check}: an expired entry cannot leave again");
}

async fn expiry_finds_every_entry_after_leaves_and_sweeps<B: Backend>(b: B) {
    let check = "expiry_finds_every_entry_after_leaves_and_sweeps";
    b.join("r", member("a", "ann", 1), 100, 0).await.unwrap();
    b.join("r", member("b", "bob", 2), 500, 0).await.unwrap();
    assert_eq!(b.expire(100).await.unwrap().len(), 1, "{check}");
    assert_eq!(b.expire(500).await.unwrap().len(), 1, "{check}: the later entry is still found after the first sweep");
    b.join("r", member("c", "cid", 3), 600, 0).await.unwrap();
    b.leave("r", "c", 550).await.unwrap();
    assert!(b.expire(700).await.unwrap().is_empty(), "{check}: a left entry does not expire");
    b.join("r", member("d", "dan", 4), 900, 700).await.unwrap();
    let gone = b.expire(900).await.unwrap();
    assert_eq!(gone.iter().map(|e| e.member.connection.as_str()).collect::<Vec<_>>(), ["d"], "{check}: a room emptied by a leave is swept again after a join");
}

/// Joins land while sweeps empty the same room; every entry still expires
/// exactly once in the end.
async fn joins_racing_sweeps_still_expire<B: Backend>(b: Arc<B>) {
    let check = "joins_racing_sweeps_still_expire";
    let joiners = (0..4).map(|j| {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 0..25u64 {
                b.join("r", member(&format!("j{j}-{i}"), "u", i), 100 + i, 0).await.unwrap();
            }
            Vec::new()
        })
    });
    let sweepers = (0..3).map(|_| {
        let b = b.clone();
        tokio::spawn(async move {
            let mut gone = Vec::new();
            for _ in 0..40 {
                gone.extend(b.expire(1_000).await.unwrap().into_iter().map(|e| e.member.connection));
            }
            gone
        })
    });
    let mut all: Vec<String> = join_all(joiners.chain(sweepers)).await.into_iter().flatten().collect();
    all.extend(b.expire(1_000).await.unwrap().into_iter().map(|e| e.member.connection));
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (100, 100), "{check}: 100 entries, each expired exactly once");
    assert_eq!(b.count("r", 0).await.unwrap(), 0, "{check}");
}

async fn concurrent_expiry_returns_each_entry_once<B: Backend>(b: Arc<B>) {
    let check = "concurrent_expiry_returns_each_entry_once";
    for i in 0..50 {
        b.join(&format!("room-{}", i % 5), member(&format!("c{i}"), "u", i), 100, 0).await.unwrap();
    }
    let sweepers = (0..6).map(|_| {
        let b = b.clone();
        tokio::spawn(async move { b.expire(1_000).await.unwrap() })
    });
    let mut all: Vec<String> = join_all(sweepers).await.into_iter().flatten().map(|e| e.member.connection).collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (50, 50), "{check}: 50 entries, each returned by exactly one sweep");
}

async fn state_and_refresh_need_a_live_entry<B: Backend>(b: B) {
    let check = "state_and_refresh_need_a_live_entry";
    b.join("r", member("c1", "ann", 1), 100, 0).await.unwrap();
    assert!(b.set_state("r", "c1", json!({"page": 3})).await.unwrap(), "{check}");
    assert_eq!(b.members("r", 0).await.unwrap()[0].state, json!({"page": 3}), "{check}");
    assert!(b.refresh("r", "c1", 300).await.unwrap(), "{check}");
    assert!(b.expire(200).await.unwrap().is_empty(), "{check}: refresh postponed expiry");
    assert_eq!(b.expire(300).await.unwrap().len(), 1, "{check}");
    assert!(!b.refresh("r", "c1", 900).await.unwrap(), "{check}: no refresh after expiry");
    assert!(!b.set_state("r", "c1", json!(1)).await.unwrap(), "{check}: no state after expiry");
    assert!(!b.set_state("r", "nobody", json!(1)).await.unwrap(), "{check}");
}

async fn rooms_are_listed_with_counts<B: Backend>(b: B) {
    let check = "rooms_are_listed_with_counts";
    b.join("b-room", member("c1", "ann", 1), 1_000, 0).await.unwrap();
    b.join("a-room", member("c2", "bob", 1), 1_000, 0).await.unwrap();
    b.join("a-room", member("c3", "cid", 1), 1_000, 0).await.unwrap();
    let expected = vec![
        RoomSummary { room: "a-room".into(), members: 2 },
        RoomSummary { room: "b-room".into(), members: 1 },
    ];
    assert_eq!(b.rooms(0).await.unwrap(), expected, "{check}");
    b.leave("b-room", "c1", 0).await.unwrap();
    assert_eq!(b.rooms(0).await.unwrap().len(), 1, "{check}: empty rooms are not listed");
    b.ping().await.expect("ping");
}

async fn bus_delivers_in_order_to_every_subscriber<B: Backend>(b: B) {
    let check = "bus_delivers_in_order_to_every_subscriber";
    let mut s1 = b.subscribe("r").await.unwrap();
    let mut s2 = b.subscribe("r").await.unwrap();
    for x in 0..100 {
        b.publish("r", cursor_event("c1", x)).await.unwrap();
    }
    for s in [&mut s1, &mut s2] {
        for x in 0..100 {
            assert_eq!(*s.recv().await.unwrap(), cursor_event("c1", x), "{check}");
        }
    }
    let left = RoomEvent::MemberLeft { connection: "c1".into(), user: "ann".into(), reason: LeaveReason::Expired, count: 0 };
    b.publish("r", left.clone()).await.unwrap();
    assert_eq!(*s1.recv().await.unwrap(), left, "{check}: events keep their fields");
}

async fn bus_keeps_rooms_apart<B: Backend>(b: B) {
    let check = "bus_keeps_rooms_apart";
    let mut r = b.subscribe("r").await.unwrap();
    b.publish("other", cursor_event("c9", 9)).await.unwrap();
    b.publish("r", cursor_event("c1", 1)).await.unwrap();
    assert_eq!(*r.recv().await.unwrap(), cursor_event("c1", 1), "{check}");
}

async fn dropped_subscriptions_receive_nothing<B: Backend>(b: B) {
    let check = "dropped_subscriptions_receive_nothing";
    let s = b.subscribe("r").await.unwrap();
    drop(s);
    b.publish("r", cursor_event("c1", 1)).await.expect(check);
    let mut late = b.subscribe("r").await.unwrap();
    b.publish("r", cursor_event("c1", 2)).await.unwrap();
    assert_eq!(*late.recv().await.unwrap(), cursor_event("c1", 2), "{check}: a new subscriber sees only what follows");
}

async fn bus_reports_lag<B: Backend>(b: B) {
    let check = "bus_reports_lag";
    let mut s = b.subscribe("r").await.unwrap();
    for x in 0..20_000 {
        b.publish("r", cursor_event("c1", x)).await.unwrap();
    }
    match s.recv().await {
        Err(BusError::Lagged { missed }) => assert!(missed > 0, "{check}"),
        other => panic!("{check}: a subscriber 20,000 events behind must be told it lagged, got {other:?}"),
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

