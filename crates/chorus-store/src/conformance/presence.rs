//! Presence: who is in which room, every change announced in the same step.

use std::sync::Arc;

use chorus_core::presence::Member;
use chorus_protocol::LeaveReason;
use serde_json::json;

use super::{join_all, member, next_event};
use crate::{Backend, Joined, LiveMembers, Members, RoomEvent, RoomSummary, Stamp};

pub(super) async fn run<B, F, Fut>(make: &F)
where
    B: Backend,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = B>,
{
    join_list_and_leave(make().await).await;
    every_change_is_announced_with_the_next_stamp(make().await).await;
    a_retried_join_is_not_announced_again(make().await).await;
    an_expired_entry_comes_back_only_by_an_announced_join(make().await).await;
    an_expired_entry_takes_no_state(make().await).await;
    the_status_tells_who_is_live(make().await).await;
    a_full_room_refuses_inside_the_join(Arc::new(make().await)).await;
    two_connections_of_one_user_are_two_entries(make().await).await;
    leave_hands_the_entry_back_once(Arc::new(make().await)).await;
    expiry_follows_the_clock(make().await).await;
    one_sweep_counts_down_and_announces_each_leave(make().await).await;
    concurrent_expiry_returns_each_entry_once(Arc::new(make().await)).await;
    expiry_finds_every_entry_after_leaves_and_sweeps(make().await).await;
    joins_racing_sweeps_still_expire(Arc::new(make().await)).await;
    state_and_refresh_need_a_live_entry(make().await).await;
    rooms_are_listed_with_counts(make().await).await;
    an_emptied_room_starts_a_new_epoch(make().await).await;
}

async fn join<B: Backend>(b: &B, room: &str, m: Member, expires_at: u64, now: u64) -> Members {
    match b.join(room, m, expires_at, now, 1_000).await.unwrap() {
        Joined::Entered { members } => members,
        Joined::Full { limit } => panic!("the room is full ({limit})"),
    }
}

fn connections(members: &Members) -> Vec<&str> {
    members.members.iter().map(|m| m.connection.as_str()).collect()
}

async fn join_list_and_leave<B: Backend>(b: B) {
    let check = "join_list_and_leave";
    assert_eq!(connections(&join(&b, "r", member("c1", "ann", 1), 1_000, 0).await), ["c1"], "{check}");
    let after = join(&b, "r", member("c2", "bob", 2), 1_000, 0).await;
    assert_eq!(connections(&after), ["c1", "c2"], "{check}: the join answers with the room just after it");
    let list = b.members("r", 10).await.unwrap();
    assert_eq!(connections(&list), ["c1", "c2"], "{check}: join order");
    assert_eq!(list.members[0].user.name.as_deref(), Some("ANN"), "{check}: user info kept");
    assert_eq!(list.stamp, after.stamp, "{check}: nothing changed since the join");
    let (gone, count) = b.leave("r", "c1", LeaveReason::Left, 10).await.unwrap().expect("c1 was there");
    assert_eq!((gone.connection.as_str(), count), ("c1", 1), "{check}");
    assert_eq!(b.count("r", 10).await.unwrap(), 1, "{check}");
    assert_eq!(b.members("nowhere", 10).await.unwrap(), Members { members: vec![], stamp: None }, "{check}: unknown room is empty");
}

async fn every_change_is_announced_with_the_next_stamp<B: Backend>(b: B) {
    let check = "every_change_is_announced_with_the_next_stamp";
    let mut sub = b.subscribe("r").await.unwrap();
    let first = join(&b, "r", member("c1", "ann", 1), 1_000, 0).await.stamp.expect("a stamp");
    let ann = b.members("r", 0).await.unwrap().members.remove(0);
    assert_eq!(next_event(&mut sub, check).await, RoomEvent::MemberJoined { member: ann, count: 1, stamp: first.clone() }, "{check}");
    let stamp = |seq| Stamp { epoch: first.epoch.clone(), seq };
    join(&b, "r", member("c2", "bob", 2), 1_000, 0).await;
    assert!(matches!(next_event(&mut sub, check).await, RoomEvent::MemberJoined { count: 2, stamp: s, .. } if s == stamp(first.seq + 1)), "{check}");
    assert!(b.set_state("r", "c2", json!({"typing": true}), 0).await.unwrap());
    assert_eq!(
        next_event(&mut sub, check).await,
        RoomEvent::Presence { connection: "c2".into(), state: json!({"typing": true}), stamp: stamp(first.seq + 2) },
        "{check}"
    );
    assert!(b.refresh("r", "c2", 2_000, 0).await.unwrap());
    b.leave("r", "c1", LeaveReason::Closed, 0).await.unwrap().expect("c1 was there");
    assert_eq!(
        next_event(&mut sub, check).await,
        RoomEvent::MemberLeft { connection: "c1".into(), user: "ann".into(), reason: LeaveReason::Closed, count: 1, stamp: stamp(first.seq + 3) },
        "{check}: refreshes change nothing others see, so they are not announced"
    );
    assert_eq!(b.leave("r", "c1", LeaveReason::Closed, 0).await.unwrap(), None, "{check}");
    assert_eq!(b.members("r", 0).await.unwrap().stamp, Some(stamp(first.seq + 3)), "{check}: a leave that removed nothing is not a change");
    assert_eq!(b.status("r", &[], 0).await.unwrap().presence, Some(stamp(first.seq + 3)), "{check}: the status agrees");
}

async fn a_retried_join_is_not_announced_again<B: Backend>(b: B) {
    let check = "a_retried_join_is_not_announced_again";
    let mut sub = b.subscribe("r").await.unwrap();
    let first = join(&b, "r", member("c1", "ann", 1), 100, 0).await;
    next_event(&mut sub, check).await;
    // The answer was lost and the node asks again, later.
    let again = join(&b, "r", member("c1", "ann", 1), 500, 50).await;
    assert_eq!((connections(&again), &again.stamp), (vec!["c1"], &first.stamp), "{check}: one member, no new change");
    assert!(b.expire(200).await.unwrap().expired.is_empty(), "{check}: the retry pushed the expiry forward");
    b.set_state("r", "c1", json!(1), 50).await.unwrap();
    assert!(matches!(next_event(&mut sub, check).await, RoomEvent::Presence { .. }), "{check}: no second member_joined came before this");
}

/// The scene of the two tests below: c1 expired at 100 and not swept, c2
/// live; the list as read at 150 (without c1), and the room's events after
/// both joins.
async fn expired_unswept<B: Backend>(b: &B, check: &str) -> (crate::Subscription, Members) {
    let mut sub = b.subscribe("r").await.unwrap();
    join(b, "r", member("c1", "ann", 1), 100, 0).await;
    join(b, "r", member("c2", "bob", 2), 1_000, 0).await;
    next_event(&mut sub, check).await;
    next_event(&mut sub, check).await;
    let read = b.members("r", 150).await.unwrap();
    (sub, read)
}

/// An entry that expired and was not swept yet is gone to every list read
/// since. A refresh must not bring it back (those lists would never learn
/// of it); a join (its node putting it back) does, and is announced.
async fn an_expired_entry_comes_back_only_by_an_announced_join<B: Backend>(b: B) {
    let check = "an_expired_entry_comes_back_only_by_an_announced_join";
    let (mut sub, read) = expired_unswept(&b, check).await;
    assert_eq!(connections(&read), ["c2"], "{check}: expired at 150, not swept");
    assert!(!b.refresh("r", "c1", 1_150, 150).await.unwrap(), "{check}: listed as gone, so not refreshed back");
    assert_eq!(b.members("r", 150).await.unwrap(), read, "{check}: nothing changed");
    let after = join(&b, "r", member("c1", "ann", 1), 1_150, 150).await;
    let s = read.stamp.expect("a stamp");
    assert_eq!(connections(&after), ["c1", "c2"], "{check}");
    match next_event(&mut sub, check).await {
        RoomEvent::MemberJoined { member, count, stamp } => {
            assert_eq!((member.connection.as_str(), count, stamp.epoch == s.epoch, stamp.seq), ("c1", 2, true, s.seq + 1), "{check}: announced with the next stamp");
        }
        other => panic!("{check}: expected c1's join, got {other:?}"),
    }
    assert_eq!(after.stamp.map(|a| a.seq), Some(s.seq + 1), "{check}: the join answers as of its own change");
    assert!(b.expire(150).await.unwrap().expired.is_empty(), "{check}: the join replaced the expired entry");
    assert!(b.refresh("r", "c1", 2_000, 150).await.unwrap(), "{check}: live again");
}

/// A state change of an entry that expired and was not swept yet is refused,
/// as a refresh is: lists read since leave the entry out, so announcing its
/// state would tell every node of a member none of those lists holds, and
/// the member's node would take it for alive. The sweep still finds the
/// entry as it was, and announces its leave with the next stamp.
async fn an_expired_entry_takes_no_state<B: Backend>(b: B) {
    let check = "an_expired_entry_takes_no_state";
    let (mut sub, read) = expired_unswept(&b, check).await;
    let s = read.stamp.clone().expect("a stamp");
    assert!(!b.set_state("r", "c1", json!({"page": 9}), 150).await.unwrap(), "{check}: expired at 150, not swept: no state");
    assert_eq!(b.members("r", 150).await.unwrap(), read, "{check}: nothing changed, not even the stamp");
    assert!(b.set_state("r", "c2", json!(2), 150).await.unwrap(), "{check}: a live entry takes its state");
    let next = |seq| Stamp { epoch: s.epoch.clone(), seq };
    assert_eq!(
        next_event(&mut sub, check).await,
        RoomEvent::Presence { connection: "c2".into(), state: json!(2), stamp: next(s.seq + 1) },
        "{check}: nothing was announced of c1's state"
    );
    let swept = b.expire(150).await.unwrap().expired;
    let gone: Vec<(&str, &serde_json::Value)> = swept.iter().map(|e| (e.member.connection.as_str(), &e.member.state)).collect();
    assert_eq!(gone, [("c1", &serde_json::Value::Null)], "{check}: the sweep finds c1 as it was");
    assert_eq!(
        next_event(&mut sub, check).await,
        RoomEvent::MemberLeft { connection: "c1".into(), user: "ann".into(), reason: LeaveReason::Expired, count: 1, stamp: next(s.seq + 2) },
        "{check}"
    );
}

/// The status says who is live, not only the stamp: as many members, and
/// the same fingerprint, as the node computes over the list it holds (the
/// one [`Backend::members`] gives), so a node whose list differs from the
/// store's at the same stamp can tell.
async fn the_status_tells_who_is_live<B: Backend>(b: B) {
    let check = "the_status_tells_who_is_live";
    assert_eq!(b.status("r", &[], 0).await.unwrap().members, LiveMembers::default(), "{check}: nobody in an unknown room");
    join(&b, "r", member("c1", "ann", 1), 100, 0).await;
    join(&b, "r", member("c2", "bob", 2), 1_000, 0).await;
    join(&b, "r", member("c:3 \u{e9}", "cid", 3), 1_000, 0).await;
    let live = |list: &Members| LiveMembers::of(list.members.iter().map(|m| m.connection.as_str()));
    for now in [50, 150] {
        let status = b.status("r", &[], now).await.unwrap();
        let list = b.members("r", now).await.unwrap();
        assert_eq!((status.members, status.presence), (live(&list), list.stamp), "{check}: at {now}");
    }
    assert_eq!(b.status("r", &[], 150).await.unwrap().members.count, 2, "{check}: expired at 150, not swept: not live");
    assert_eq!(b.status("r", &[], 50).await.unwrap().members, LiveMembers::of(["c2", "c1", "c:3 \u{e9}"]), "{check}");
    b.leave("r", "c2", LeaveReason::Left, 150).await.unwrap();
    assert_eq!(b.status("r", &[], 150).await.unwrap().members, LiveMembers::of(["c:3 \u{e9}"]), "{check}");
}

async fn a_full_room_refuses_inside_the_join<B: Backend>(b: Arc<B>) {
    let check = "a_full_room_refuses_inside_the_join";
    // Eight racing joins into a room of three: exactly three get in.
    let racers = (0..8).map(|i| {
        let b = b.clone();
        tokio::spawn(async move { matches!(b.join("r", member(&format!("c{i}"), "u", i), 1_000, 0, 3).await.unwrap(), Joined::Entered { .. }) })
    });
    let entered = join_all(racers).await.into_iter().filter(|e| *e).count();
    assert_eq!((entered, b.count("r", 0).await.unwrap()), (3, 3), "{check}");
    assert_eq!(b.join("r", member("late", "u", 9), 1_000, 0, 3).await.unwrap(), Joined::Full { limit: 3 }, "{check}");
    // Expired entries do not count.
    assert!(matches!(b.join("r", member("later", "u", 9), 2_000, 1_000, 3).await.unwrap(), Joined::Entered { .. }), "{check}");
}

async fn two_connections_of_one_user_are_two_entries<B: Backend>(b: B) {
    let check = "two_connections_of_one_user_are_two_entries";
    join(&b, "r", member("tab1", "ann", 1), 1_000, 0).await;
    join(&b, "r", member("tab2", "ann", 2), 1_000, 0).await;
    assert_eq!(b.count("r", 0).await.unwrap(), 2, "{check}");
    b.leave("r", "tab2", LeaveReason::Closed, 0).await.unwrap().expect("tab2 was there");
    assert_eq!(connections(&b.members("r", 0).await.unwrap()), ["tab1"], "{check}: closing one tab leaves the other");
}

async fn leave_hands_the_entry_back_once<B: Backend>(b: Arc<B>) {
    let check = "leave_hands_the_entry_back_once";
    join(&*b, "r", member("c1", "ann", 1), 1_000, 0).await;
    let mut sub = b.subscribe("r").await.unwrap();
    let racers = (0..8).map(|_| {
        let b = b.clone();
        tokio::spawn(async move { b.leave("r", "c1", LeaveReason::Closed, 0).await.unwrap().is_some() })
    });
    let winners = join_all(racers).await.into_iter().filter(|won| *won).count();
    assert_eq!(winners, 1, "{check}: exactly one of eight racing leaves removes the entry");
    assert!(matches!(next_event(&mut sub, check).await, RoomEvent::MemberLeft { .. }), "{check}");
    b.publish("r", super::cursor_event("x", 1)).await.unwrap();
    assert!(matches!(next_event(&mut sub, check).await, RoomEvent::Cursor { .. }), "{check}: one leave announced, not eight");
}

async fn expiry_follows_the_clock<B: Backend>(b: B) {
    let check = "expiry_follows_the_clock";
    join(&b, "r", member("old", "ann", 1), 100, 0).await;
    join(&b, "r", member("new", "bob", 2), 500, 0).await;
    join(&b, "s", member("other", "cid", 3), 100, 0).await;
    assert!(b.expire(99).await.unwrap().expired.is_empty(), "{check}: nothing expires early");
    assert_eq!(b.count("r", 100).await.unwrap(), 1, "{check}: expired entries are not counted");
    let mut gone = b.expire(100).await.unwrap().expired;
    gone.sort_by(|a, b| a.room.cmp(&b.room));
    let got: Vec<(&str, &str, usize)> = gone.iter().map(|e| (e.room.as_str(), e.member.connection.as_str(), e.count)).collect();
    assert_eq!(got, [("r", "old", 1), ("s", "other", 0)], "{check}");
    assert!(b.expire(100).await.unwrap().expired.is_empty(), "{check}: an entry expires once");
    assert_eq!(b.leave("r", "old", LeaveReason::Closed, 100).await.unwrap(), None, "{check}: an expired entry cannot leave again");
}

async fn one_sweep_counts_down_and_announces_each_leave<B: Backend>(b: B) {
    let check = "one_sweep_counts_down_and_announces_each_leave";
    for (i, c) in ["a", "b", "c"].iter().enumerate() {
        join(&b, "r", member(c, "u", i as u64), 100, 0).await;
    }
    join(&b, "r", member("stays", "u", 9), 1_000, 0).await;
    let mut sub = b.subscribe("r").await.unwrap();
    let swept = b.expire(100).await.unwrap();
    let mut counts: Vec<usize> = swept.expired.iter().map(|e| e.count).collect();
    counts.sort();
    assert_eq!(counts, [1, 2, 3], "{check}: each leave counts those left after it");
    let mut announced = Vec::new();
    for _ in 0..3 {
        match next_event(&mut sub, check).await {
            RoomEvent::MemberLeft { connection, reason: LeaveReason::Expired, count, stamp, .. } => announced.push((connection, count, stamp.seq)),
            other => panic!("{check}: expected an expiry, got {other:?}"),
        }
    }
    assert_eq!(announced.iter().map(|a| a.1).collect::<Vec<_>>(), [2, 1, 0].map(|n| n + 1), "{check}: announced in order, counting down");
    assert!(announced.windows(2).all(|w| w[1].2 == w[0].2 + 1), "{check}: consecutive stamps {announced:?}");
}

async fn expiry_finds_every_entry_after_leaves_and_sweeps<B: Backend>(b: B) {
    let check = "expiry_finds_every_entry_after_leaves_and_sweeps";
    join(&b, "r", member("a", "ann", 1), 100, 0).await;
    join(&b, "r", member("b", "bob", 2), 500, 0).await;
    assert_eq!(b.expire(100).await.unwrap().expired.len(), 1, "{check}");
    assert_eq!(b.expire(500).await.unwrap().expired.len(), 1, "{check}: the later entry is still found after the first sweep");
    join(&b, "r", member("c", "cid", 3), 600, 0).await;
    b.leave("r", "c", LeaveReason::Left, 550).await.unwrap();
    assert!(b.expire(700).await.unwrap().expired.is_empty(), "{check}: a left entry does not expire");
    join(&b, "r", member("d", "dan", 4), 900, 700).await;
    let gone = b.expire(900).await.unwrap().expired;
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
                join(&*b, "r", member(&format!("j{j}-{i}"), "u", i), 100 + i, 0).await;
            }
            Vec::new()
        })
    });
    let sweepers = (0..3).map(|_| {
        let b = b.clone();
        tokio::spawn(async move {
            let mut gone = Vec::new();
            for _ in 0..40 {
                gone.extend(b.expire(1_000).await.unwrap().expired.into_iter().map(|e| e.member.connection));
            }
            gone
        })
    });
    let mut all: Vec<String> = join_all(joiners.chain(sweepers)).await.into_iter().flatten().collect();
    all.extend(b.expire(1_000).await.unwrap().expired.into_iter().map(|e| e.member.connection));
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (100, 100), "{check}: 100 entries, each expired exactly once");
    assert_eq!(b.count("r", 0).await.unwrap(), 0, "{check}");
}

async fn concurrent_expiry_returns_each_entry_once<B: Backend>(b: Arc<B>) {
    let check = "concurrent_expiry_returns_each_entry_once";
    for i in 0..50 {
        join(&*b, &format!("room-{}", i % 5), member(&format!("c{i}"), "u", i), 100, 0).await;
    }
    let sweepers = (0..6).map(|_| {
        let b = b.clone();
        tokio::spawn(async move { b.expire(1_000).await.unwrap().expired })
    });
    let mut all: Vec<String> = join_all(sweepers).await.into_iter().flatten().map(|e| e.member.connection).collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!((before, all.len()), (50, 50), "{check}: 50 entries, each returned by exactly one sweep");
}

async fn state_and_refresh_need_a_live_entry<B: Backend>(b: B) {
    let check = "state_and_refresh_need_a_live_entry";
    join(&b, "r", member("c1", "ann", 1), 100, 0).await;
    assert!(b.set_state("r", "c1", json!({"page": 3}), 0).await.unwrap(), "{check}");
    assert_eq!(b.members("r", 0).await.unwrap().members[0].state, json!({"page": 3}), "{check}");
    assert!(b.refresh("r", "c1", 300, 0).await.unwrap(), "{check}");
    assert!(b.expire(200).await.unwrap().expired.is_empty(), "{check}: refresh postponed expiry");
    assert_eq!(b.expire(300).await.unwrap().expired.len(), 1, "{check}");
    assert!(!b.refresh("r", "c1", 900, 300).await.unwrap(), "{check}: no refresh after expiry");
    assert!(!b.set_state("r", "c1", json!(1), 300).await.unwrap(), "{check}: no state after expiry");
    assert!(!b.set_state("r", "nobody", json!(1), 300).await.unwrap(), "{check}");
}

async fn rooms_are_listed_with_counts<B: Backend>(b: B) {
    let check = "rooms_are_listed_with_counts";
    join(&b, "b-room", member("c1", "ann", 1), 1_000, 0).await;
    join(&b, "a-room", member("c2", "bob", 1), 1_000, 0).await;
    join(&b, "a-room", member("c3", "cid", 1), 1_000, 0).await;
    let expected = vec![RoomSummary { room: "a-room".into(), members: 2 }, RoomSummary { room: "b-room".into(), members: 1 }];
    assert_eq!(b.rooms(0).await.unwrap(), expected, "{check}");
    b.leave("b-room", "c1", LeaveReason::Left, 0).await.unwrap();
    assert_eq!(b.rooms(0).await.unwrap().len(), 1, "{check}: empty rooms are not listed");
    b.ping().await.expect("ping");
}

async fn an_emptied_room_starts_a_new_epoch<B: Backend>(b: B) {
    let check = "an_emptied_room_starts_a_new_epoch";
    let before = join(&b, "r", member("a", "ann", 1), 1_000, 0).await.stamp.expect("a stamp");
    b.leave("r", "a", LeaveReason::Left, 0).await.unwrap();
    assert_eq!(b.members("r", 0).await.unwrap().stamp, None, "{check}: nothing is kept of an empty room");
    let after = join(&b, "r", member("b", "bob", 2), 1_000, 0).await.stamp.expect("a stamp");
    assert_ne!(after.epoch, before.epoch, "{check}");
}
