//! Rooms, presence and cursors over real sockets.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chorus_client::{ConnectOptions, Event};
use chorus_protocol::{close, LeaveReason, ServerMessage};
use serde_json::json;
use support::{drain, expect, start};

#[tokio::test]
async fn join_and_leave_are_announced() {
    let s = start(|_| {}).await;
    let mut ann = s.client("ann").await;
    let joined = ann.join("team/plan", Some(json!({"page": 1}))).await.unwrap();
    assert_eq!(joined.count, 1);
    assert_eq!(joined.members[0].user.id, "ann");
    assert_eq!(joined.members[0].state, json!({"page": 1}));

    let mut bob = s.client("bob").await;
    let joined = bob.join("team/plan", None).await.unwrap();
    assert_eq!(joined.count, 2);
    let (member, count) = expect(&mut ann, "bob joining", |m| match m {
        ServerMessage::MemberJoined { member, count, .. } => Some((member.clone(), *count)),
        _ => None,
    })
    .await;
    assert_eq!((member.user.id.as_str(), member.connection.as_str(), count), ("bob", bob.connection(), 2));
    assert_eq!(member.user.name.as_deref(), Some("BOB"));
    assert!(member.user.color.starts_with('#'), "a colour is derived from the user id");

    bob.leave("team/plan").await.unwrap();
    let (conn, reason, count) = expect(&mut ann, "bob leaving", |m| match m {
        ServerMessage::MemberLeft { connection, reason, count, .. } => Some((connection.clone(), *reason, *count)),
        _ => None,
    })
    .await;
    assert_eq!((conn.as_str(), reason, count), (bob.connection(), LeaveReason::Left, 1));

    // Closing the socket is a leave too.
    let mut cid = s.client("cid").await;
    cid.join("team/plan", None).await.unwrap();
    let cid_conn = cid.connection().to_owned();
    cid.close().await;
    let (conn, reason) = expect(&mut ann, "cid closing", |m| match m {
        ServerMessage::MemberLeft { connection, reason, .. } if *connection == cid_conn => Some((connection.clone(), *reason)),
        _ => None,
    })
    .await;
    assert_eq!((conn, reason), (cid_conn, LeaveReason::Closed));
}

#[tokio::test]
async fn member_lists_agree_across_clients() {
    let s = start(|_| {}).await;
    // Watchers join at different moments, so each starts from a different
    // list and must reach the same one through events.
    let mut watchers = Vec::new();
    let mut views: Vec<BTreeSet<String>> = Vec::new();
    let mut others = Vec::new();
    for i in 0..3 {
        let mut w = s.client(&format!("watcher-{i}")).await;
        let joined = w.join("room-a", None).await.unwrap();
        views.push(joined.members.iter().map(|m| m.connection.clone()).collect());
        watchers.push(w);
        let mut c = s.client(&format!("u{i}")).await;
        c.join("room-a", None).await.unwrap();
        others.push(c);
    }
    others.remove(1).close().await;
    others[0].leave("room-a").await.unwrap();
    let mut late = s.client("late").await;
    late.join("room-a", None).await.unwrap();

    let (_, body) = s.get("/v1/rooms/room-a/members", None).await;
    let server: serde_json::Value = serde_json::from_str(&body).unwrap();
    let server_view: BTreeSet<String> =
        server["members"].as_array().unwrap().iter().map(|m| m["connection"].as_str().unwrap().to_owned()).collect();
    assert_eq!(server["count"], 5, "3 watchers, u2 and late");
    for (w, view) in watchers.iter_mut().zip(&mut views) {
        for m in drain(w, Duration::from_millis(300)).await {
            match m {
                ServerMessage::MemberJoined { member, .. } => {
                    assert!(view.insert(member.connection), "joined twice");
                }
                ServerMessage::MemberLeft { connection, .. } => {
                    assert!(view.remove(&connection), "left without having joined: {connection}");
                }
                _ => {}
            }
        }
        assert_eq!(*view, server_view);
    }
}

#[tokio::test]
async fn two_tabs_of_one_user_are_two_presences() {
    let s = start(|_| {}).await;
    let mut watcher = s.client("watcher").await;
    watcher.join("doc", None).await.unwrap();
    let mut tab1 = s.client("ann").await;
    tab1.join("doc", None).await.unwrap();
    let mut tab2 = s.client("ann").await;
    let joined = tab2.join("doc", None).await.unwrap();
    assert_eq!(joined.count, 3);
    assert_eq!(joined.members.iter().filter(|m| m.user.id == "ann").count(), 2);

    let tab2_conn = tab2.connection().to_owned();
    tab2.close().await;
    let left = expect(&mut watcher, "tab 2 leaving", |m| match m {
        ServerMessage::MemberLeft { connection, user, count, .. } => Some((connection.clone(), user.clone(), *count)),
        _ => None,
    })
    .await;
    assert_eq!(left, (tab2_conn, "ann".into(), 2));
    let (_, body) = s.get("/v1/rooms/doc/members", None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let conns: Vec<&str> = v["members"].as_array().unwrap().iter().map(|m| m["connection"].as_str().unwrap()).collect();
    assert!(conns.contains(&tab1.connection()), "closing one tab leaves the other: {conns:?}");
    assert_eq!(conns.len(), 2);
}

#[tokio::test]
async fn a_silent_connection_expires_with_exactly_one_leave() {
    let ttl = 600;
    let s = start(|c| c.presence_ttl_ms = ttl).await;
    let mut alive = s.client("alive").await; // heartbeats every ttl/3
    alive.join("room", None).await.unwrap();
    let mut silent = s.connect(ConnectOptions { heartbeats: false, ..ConnectOptions::dev("silent") }).await;
    silent.join("room", None).await.unwrap();
    let silent_conn = silent.connection().to_owned();

    // Three TTLs: plenty for expiry, and time for any duplicate to show up.
    let events = drain(&mut alive, Duration::from_millis(3 * ttl)).await;
    let leaves: Vec<_> = events
        .iter()
        .filter_map(|m| match m {
            ServerMessage::MemberLeft { connection, reason, count, .. } => Some((connection.clone(), *reason, *count)),
            _ => None,
        })
        .collect();
    assert_eq!(leaves, vec![(silent_conn, LeaveReason::Expired, 1)], "exactly one leave, for the silent one");
    let (code, _) = silent.closed().await.unwrap();
    assert_eq!(code, Some(close::HEARTBEAT_TIMEOUT));
    // The heartbeating client is still a member.
    let (_, body) = s.get("/v1/rooms/room/members", None).await;
    assert!(body.contains(alive.connection()), "{body}");
}

#[tokio::test]
async fn presence_state_updates_fan_out() {
    let s = start(|_| {}).await;
    let mut ann = s.client("ann").await;
    ann.join("r", None).await.unwrap();
    let mut bob = s.client("bob").await;
    bob.join("r", None).await.unwrap();
    bob.set_presence("r", json!({"typing": true})).unwrap();
    let (conn, state) = expect(&mut ann, "bob's presence", |m| match m {
        ServerMessage::Presence { connection, state, .. } => Some((connection.clone(), state.clone())),
        _ => None,
    })
    .await;
    assert_eq!((conn.as_str(), state), (bob.connection(), json!({"typing": true})));
    // Joiners see the state in the member list.
    let mut cid = s.client("cid").await;
    let joined = cid.join("r", None).await.unwrap();
    let bob_entry = joined.members.iter().find(|m| m.user.id == "bob").unwrap();
    assert_eq!(bob_entry.state, json!({"typing": true}));
}

#[tokio::test]
async fn cursors_fan_out_and_joiners_get_them() {
    let s = start(|_| {}).await;
    let mut ann = s.client("ann").await;
    ann.join("r", None).await.unwrap();
    let mut bob = s.client("bob").await;
    bob.join("r", None).await.unwrap();
    bob.cursor("r", json!({"x": 10, "y": 20})).unwrap();
    let c = expect(&mut ann, "bob's cursor", |m| match m {
        ServerMessage::Cursor { cursor, .. } => Some(cursor.clone()),
        _ => None,
    })
    .await;
    assert_eq!((c.connection.as_str(), c.user.as_str(), c.cursor.clone()), (bob.connection(), "bob", json!({"x": 10, "y": 20})));
    let mut cid = s.client("cid").await;
    let joined = cid.join("r", None).await.unwrap();
    assert_eq!(joined.cursors.len(), 1);
    assert_eq!(joined.cursors[0].cursor, json!({"x": 10, "y": 20}));
    // A member leaving takes its cursor along.
    let bob_conn = bob.connection().to_owned();
    bob.close().await;
    expect(&mut cid, "bob leaving", |m| matches!(m, ServerMessage::MemberLeft { connection, .. } if *connection == bob_conn).then_some(())).await;
    let mut dan = s.client("dan").await;
    assert!(dan.join("r", None).await.unwrap().cursors.is_empty());
}

#[tokio::test]
async fn cursor_bursts_are_coalesced_and_the_last_value_arrives() {
    let rate = 10; // updates per second per sender
    let s = start(|c| c.cursor_rate = rate).await;
    let mut ann = s.client("ann").await;
    ann.join("r", None).await.unwrap();
    let mut bob = s.client("bob").await;
    bob.join("r", None).await.unwrap();

    // A quiet room: a single update goes out at once, not after an interval.
    let sent = Instant::now();
    bob.cursor("r", json!({"i": -1})).unwrap();
    expect(&mut ann, "the first cursor", |m| matches!(m, ServerMessage::Cursor { .. }).then_some(())).await;
    assert!(sent.elapsed() < Duration::from_millis(900), "a lone update waited {:?}", sent.elapsed());

    // A 60 Hz mouse for one second: 60 updates.
    let start = Instant::now();
    for i in 0..60 {
        bob.cursor("r", json!({"i": i})).unwrap();
        tokio::time::sleep(Duration::from_millis(16)).await;
    }
    let mut received = Vec::new();
    let deadline = Duration::from_millis(1_500);
    while let Some(Event::Message(m)) = ann.next_event_within(deadline).await {
        if let ServerMessage::Cursor { cursor, .. } = m {
            let i = cursor.cursor["i"].as_i64().unwrap();
            received.push(i);
            if i == 59 {
                break;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(received.last(), Some(&59), "the last value is never lost: {received:?}");
    let bound = (elapsed * f64::from(rate)).ceil() as usize + 2;
    assert!(received.len() <= bound, "{} broadcasts in {elapsed:.2}s exceed {rate}/s: {received:?}", received.len());
    assert!(received.len() >= 5, "coalescing should still deliver a stream of updates: {received:?}");
    assert!(received.windows(2).all(|w| w[0] < w[1]), "updates arrive in order: {received:?}");
}

#[tokio::test]
async fn leaving_a_room_keeps_the_others() {
    let s = start(|_| {}).await;
    let mut ann = s.client("ann").await;
    ann.join("a", None).await.unwrap();
    ann.join("b", None).await.unwrap();
    let mut bob = s.client("bob").await;
    bob.join("b", None).await.unwrap();
    ann.leave("a").await.unwrap();
    ann.cursor("b", json!({"x": 1})).unwrap();
    let c = expect(&mut bob, "ann's cursor in b", |m| match m {
        ServerMessage::Cursor { room, cursor } => Some((room.clone(), cursor.cursor.clone())),
        _ => None,
    })
    .await;
    assert_eq!(c, ("b".into(), json!({"x": 1})));
}
