//! What a room does when the store or the bus lets it down: the slow
//! answer, the lost answer, the answer after a timeout, the store that
//! forgot, an event that never came, and a repair that fails. Nothing is
//! left unannounced, nothing is applied twice, nobody is left silent, and
//! every repair is tried until it works.
//!
//! Faults are planned around real backends ([`chorus_store::faults`]) or
//! made to real Redis servers (paused, restarted, their pub/sub cut).

mod support;

use std::sync::Arc;
use std::time::Duration;

use chorus_client::ConnectOptions;
use chorus_core::text::TextOp;
use chorus_protocol::{Change, ServerMessage, ValueKind};
use chorus_redis::testing::{Persistence, Redis};
use chorus_redis::RedisStore;
use chorus_store::faults::{Call, Fault, Faulty};
use chorus_store::{MemoryStore, RoomEvent};
use support::{expect, http_post, start_on, MemberView, TestServer};

const ROOM: &str = "repair/room";

fn quick(c: &mut chorus_server::Config) {
    c.reconcile_interval_ms = 200;
}

async fn faulty_server() -> (Arc<Faulty<MemoryStore>>, TestServer) {
    let store = Arc::new(Faulty::new(MemoryStore::new()));
    let server = start_on(store.clone(), quick).await;
    (store, server)
}

/// A presence announcement lost on the way, and the first repairs refused:
/// the periodic look at the store finds the difference, and the repair is
/// tried until it works.
#[tokio::test]
async fn a_lost_announcement_is_repaired_by_reconciliation_retried_until_it_works() {
    // Two nodes on one store; node a's bus loses bob's join.
    let shared = MemoryStore::new();
    let store = Arc::new(Faulty::new(shared.clone()));
    let server = start_on(store.clone(), quick).await;
    let other = start_on(Arc::new(shared), quick).await;
    let mut watcher = server.client("watcher").await;
    let mut view = MemberView::from_joined(&watcher.join(ROOM, None).await.unwrap());
    let w = watcher.connection().to_owned();
    store.drop_events(1, |e| matches!(e, RoomEvent::MemberJoined { member, .. } if member.user.id == "bob"));
    store.plan(Call::Members, [Fault::Fail, Fault::Fail, Fault::Fail]);
    let mut bob = other.client("bob").await;
    bob.join(ROOM, None).await.unwrap();
    view.settle(&mut watcher, ROOM, &[&w, bob.connection()], Duration::from_secs(10)).await;
    assert_eq!(store.dropped(), 1, "the announcement was lost");
    assert_eq!(store.pending(), 0, "three refused repairs, then one that worked");
}

/// A subscription that lagged (its bus connection was lost) resyncs from
/// the store; refused at first, it tries again until the store answers.
async fn a_resync_after_a_lost_bus_connection_is_retried_until_it_works(redis: Redis) {
    let store = Arc::new(Faulty::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let a = start_on(store.clone(), |c| c.reconcile_interval_ms = 60_000).await;
    let b = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), |_| {}).await;
    let mut watcher = a.client("watcher").await;
    let mut view = MemberView::from_joined(&watcher.join(ROOM, None).await.unwrap());
    let w = watcher.connection().to_owned();
    // Node a will not hear of bob, and cannot read the store at first.
    store.drop_events(1, |e| matches!(e, RoomEvent::MemberJoined { member, .. } if member.user.id == "bob"));
    let mut bob = b.client("bob").await;
    bob.join(ROOM, None).await.unwrap();
    store.plan(Call::Members, [Fault::Fail, Fault::Fail]);
    store.plan(Call::Values, [Fault::Fail]);
    redis.cli_everywhere(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    view.settle(&mut watcher, ROOM, &[&w, bob.connection()], Duration::from_secs(10)).await;
    assert_eq!(store.pending(), 0);
}

#[tokio::test]
async fn a_resync_after_a_lost_bus_connection_is_retried_on_redis() {
    a_resync_after_a_lost_bus_connection_is_retried_until_it_works(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn a_resync_after_a_lost_bus_connection_is_retried_on_a_cluster() {
    a_resync_after_a_lost_bus_connection_is_retried_until_it_works(Redis::cluster(Persistence::None)).await
}

/// A leave whose script runs after the node stopped waiting for it (Redis
/// hung for longer than the timeout) is still announced, once.
async fn a_leave_answered_after_its_timeout_is_announced(redis: Redis) {
    let a = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), |_| {}).await;
    let b = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), |_| {}).await;
    let mut watcher = b.client("watcher").await;
    let mut view = MemberView::from_joined(&watcher.join(ROOM, None).await.unwrap());
    let w = watcher.connection().to_owned();
    let mut ann = a.client("ann").await;
    ann.join(ROOM, None).await.unwrap();
    let ann_conn = ann.connection().to_owned();
    view.settle(&mut watcher, ROOM, &[&w, &ann_conn], Duration::from_secs(5)).await;
    let key = format!("chorus:{{{ROOM}}}:members");
    let mut redis = redis;
    redis.server_for(&key).pause();
    let leaving = tokio::spawn(async move {
        let _ = ann.leave(ROOM).await; // times out, or is answered late
        ann
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.server_for(&key).resume();
    let _ann = leaving.await.unwrap();
    view.settle(&mut watcher, ROOM, &[&w], Duration::from_secs(10)).await;
    // No second leave follows later (from expiry, say).
    support::drain(&mut watcher, Duration::from_millis(500)).await.iter().for_each(|m| view.apply(ROOM, m));
    assert_eq!(view.leaves.get(&ann_conn), Some(&1), "one leave: {:?}", view.leaves);
}

#[tokio::test]
async fn a_leave_after_its_timeout_is_announced_on_redis() {
    a_leave_answered_after_its_timeout_is_announced(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn a_leave_after_its_timeout_is_announced_on_a_cluster() {
    a_leave_answered_after_its_timeout_is_announced(Redis::cluster(Persistence::None)).await
}

/// Two nodes whose presence refreshes all fail, so entries expire only when
/// a test says so: `near` and `bob` joined on node b, then bob's entry made
/// expired in the store (not swept: sweeps are far off), then `far` joined
/// on node a, which read a list without bob.
struct UnsweptExpiry {
    nodes: (TestServer, TestServer),
    near: chorus_client::Client,
    near_view: MemberView,
    bob: chorus_client::Client,
    far: chorus_client::Client,
    far_view: MemberView,
    /// The connections of near, bob and far.
    ids: (String, String, String),
    redis: Redis,
}

async fn unswept_expiry(mut redis: Redis) -> UnsweptExpiry {
    let tune = |c: &mut chorus_server::Config| {
        quick(c);
        c.presence_ttl_ms = 30_000;
    };
    let node = || async {
        let store = Arc::new(Faulty::new(RedisStore::connect(&redis.url()).await.unwrap()));
        store.plan(Call::Expire, std::iter::repeat_n(Fault::Fail, 100_000));
        start_on(store, tune).await
    };
    let (a, b) = (node().await, node().await);
    let mut near = b.client("near").await;
    let mut near_view = MemberView::from_joined(&near.join(ROOM, None).await.unwrap());
    let mut bob = b.client("bob").await;
    bob.join(ROOM, None).await.unwrap();
    let (n, bo) = (near.connection().to_owned(), bob.connection().to_owned());
    near_view.settle(&mut near, ROOM, &[&n, &bo], Duration::from_secs(5)).await;
    let key = format!("chorus:{{{ROOM}}}:expiry");
    redis.server_for(&key).cli(&["ZADD", &key, "XX", "1", &bo]);
    // Node a loads the room now: bob is not in its list.
    let mut far = a.client("far").await;
    let far_view = MemberView::from_joined(&far.join(ROOM, None).await.unwrap());
    let f = far.connection().to_owned();
    UnsweptExpiry { nodes: (a, b), near, near_view, bob, far, far_view, ids: (n, bo, f), redis }
}

/// A member's entry expired in the store (its refreshes were held up, as
/// by a hung Redis) and nobody swept it yet, though its connection is alive.
/// A room that reads the list meanwhile leaves it out: a watcher joining on
/// another node gets a snapshot without it, and its own node, reading the
/// list at the next join, tells its watcher it left and puts it back. The
/// entry is still in the store then, so putting it back must be announced
/// as a join like any other, or neither watcher ever sees the member again
/// while the store lists it. Sweeps are held off, so the put-back meets
/// the unswept entry every time.
async fn a_member_put_back_before_the_sweep_is_announced(redis: Redis) {
    let UnsweptExpiry { nodes: (_a, b), mut near, mut near_view, bob: _bob, mut far, mut far_view, ids: (n, bo, f), redis: _redis } = unswept_expiry(redis).await;
    // Node b reads the list with carol's join, and puts bob back.
    let mut carol = b.client("carol").await;
    carol.join(ROOM, None).await.unwrap();
    let c = carol.connection().to_owned();
    let everyone = [n.as_str(), bo.as_str(), f.as_str(), c.as_str()];
    far_view.settle(&mut far, ROOM, &everyone, Duration::from_secs(5)).await;
    near_view.settle(&mut near, ROOM, &everyone, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_member_put_back_before_the_sweep_is_announced_on_redis() {
    a_member_put_back_before_the_sweep_is_announced(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn a_member_put_back_before_the_sweep_is_announced_on_a_cluster() {
    a_member_put_back_before_the_sweep_is_announced(Redis::cluster(Persistence::None)).await
}

/// As above, but the expired member speaks first: its connection, alive,
/// changes its presence state before anything put it back. Lists read since
/// the expiry leave the member out, so the store refuses the change (as it
/// refuses a late refresh) rather than announce the state of a member those
/// lists do not hold; the member's node puts it back with the new state in
/// an announced join. Every watcher lists it again, with that state, and
/// the member is not told its change failed.
async fn a_state_change_after_an_unswept_expiry_puts_the_member_back(redis: Redis) {
    let UnsweptExpiry { nodes: _nodes, mut near, mut near_view, mut bob, mut far, mut far_view, ids: (n, bo, f), redis: _redis } = unswept_expiry(redis).await;
    let state = serde_json::json!({"page": 9});
    bob.set_presence(ROOM, state.clone()).unwrap();
    far_view.settle_state(&mut far, ROOM, &bo, &state, Duration::from_secs(5)).await;
    near_view.settle_state(&mut near, ROOM, &bo, &state, Duration::from_secs(5)).await;
    far_view.settle(&mut far, ROOM, &[&n, &bo, &f], Duration::from_secs(5)).await;
    near_view.settle(&mut near, ROOM, &[&n, &bo, &f], Duration::from_secs(5)).await;
    let told = support::drain(&mut bob, Duration::from_millis(300)).await;
    assert!(!told.iter().any(|m| matches!(m, ServerMessage::Error { .. } | ServerMessage::Left { .. })), "bob was told: {told:?}");
    assert_eq!(near_view.leaves.get(&bo), None, "nobody was told bob left");
}

#[tokio::test]
async fn a_state_change_after_an_unswept_expiry_puts_the_member_back_on_redis() {
    a_state_change_after_an_unswept_expiry_puts_the_member_back(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn a_state_change_after_an_unswept_expiry_puts_the_member_back_on_a_cluster() {
    a_state_change_after_an_unswept_expiry_puts_the_member_back(Redis::cluster(Persistence::None)).await
}

/// Two nodes on `redis` that look at the store every second, so that a
/// difference found on two looks in a row is repaired within seconds.
async fn two_nodes_reconciling_every_second(redis: &Redis) -> (TestServer, TestServer) {
    let tune = |c: &mut chorus_server::Config| c.reconcile_interval_ms = 1_000;
    let a = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), tune).await;
    let b = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), tune).await;
    (a, b)
}

/// The store went back (an older copy of the room's presence restored, as
/// when a replica that was behind takes over) and moved on by as many
/// changes before any node looked: the stamps agree again, the members do
/// not. Both nodes list bob, whom the store lost, and not carol, whose join
/// they took for the one they had heard with the same number (bob's). The
/// reconciliation compares who is live, not only the stamps: the nodes
/// resync, bob's node puts him back, and every list settles on who is
/// there. (A look between the restore and carol's join would notice the
/// store going back; the join follows within milliseconds.)
async fn members_that_differ_at_the_same_stamp_are_reconciled(mut redis: Redis) {
    let (a, b) = two_nodes_reconciling_every_second(&redis).await;
    let mut watcher = a.client("watcher").await;
    let mut view = MemberView::from_joined(&watcher.join(ROOM, None).await.unwrap());
    let w = watcher.connection().to_owned();
    let pattern = format!("chorus:{{{ROOM}}}:*");
    let server = redis.server_for(&pattern);
    let earlier = server.dump_keys(&pattern);
    let mut bob = b.client("bob").await;
    bob.join(ROOM, None).await.unwrap();
    let bo = bob.connection().to_owned();
    view.settle(&mut watcher, ROOM, &[&w, &bo], Duration::from_secs(5)).await;
    server.restore_keys(&pattern, &earlier);
    let mut carol = b.client("carol").await;
    carol.join(ROOM, None).await.unwrap();
    let c = carol.connection().to_owned();
    let mut everyone = vec![w.clone(), bo.clone(), c.clone()];
    everyone.sort();
    let expected: Vec<&str> = everyone.iter().map(String::as_str).collect();
    view.settle(&mut watcher, ROOM, &expected, Duration::from_secs(15)).await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut listed: Vec<String> = chorus_store::PresenceStore::members(&store, ROOM, now_ms()).await.unwrap().members.into_iter().map(|m| m.connection).collect();
        listed.sort();
        if listed == everyone {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the store lists {listed:?}, not {everyone:?}");
        bob.heartbeat().await.ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn members_that_differ_at_the_same_stamp_are_reconciled_on_redis() {
    members_that_differ_at_the_same_stamp_are_reconciled(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn members_that_differ_at_the_same_stamp_are_reconciled_on_a_cluster() {
    members_that_differ_at_the_same_stamp_are_reconciled(Redis::cluster(Persistence::None)).await
}

/// The same for values: the store went back (an older copy of the room's
/// values restored) and the next write made the same version again, with
/// another state. The stamps agree again, the values do not: every node
/// had "two" as version 2, and the store has "three". The reconciliation
/// compares what the values hold at the same stamp: node a reloads them,
/// and every client (the writer's too, whose node saw the store go back)
/// is told "three", though at a version it has seen (by a `joined`).
async fn values_that_differ_at_the_same_stamp_are_reconciled(mut redis: Redis) {
    let (a, b) = two_nodes_reconciling_every_second(&redis).await;
    let mut watcher = a.client("watcher").await;
    watcher.join(ROOM, None).await.unwrap();
    let mut writer = b.client("writer").await;
    writer.join(ROOM, None).await.unwrap();
    let set = |s: &str| Change::Set { value: serde_json::json!(s) };
    let pattern = format!("chorus:{{{ROOM}}}:values:*");
    let server = redis.server_for(&pattern);
    writer.update_value(ROOM, "title", ValueKind::Register, set("one")).await.unwrap();
    let earlier = server.dump_keys(&pattern);
    assert_eq!(writer.update_value(ROOM, "title", ValueKind::Register, set("two")).await.unwrap(), 2);
    wait_for_value(&mut watcher, "title", "two", Duration::from_secs(5)).await;
    server.restore_keys(&pattern, &earlier);
    assert_eq!(writer.update_value(ROOM, "title", ValueKind::Register, set("three")).await.unwrap(), 2, "version 2 again");
    wait_for_value(&mut writer, "title", "three", Duration::from_secs(10)).await;
    wait_for_value(&mut watcher, "title", "three", Duration::from_secs(10)).await;
}

/// Waits until the client was told that value `name` holds `expected`.
async fn wait_for_value(c: &mut chorus_client::Client, name: &str, expected: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while c.value(ROOM, name).is_none_or(|v| v.value != serde_json::json!(expected)) {
        assert!(tokio::time::Instant::now() < deadline, "{} was never told {name} = {expected:?}; it holds {:?}", c.connection(), c.value(ROOM, name));
        c.pump(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn values_that_differ_at_the_same_stamp_are_reconciled_on_redis() {
    values_that_differ_at_the_same_stamp_are_reconciled(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn values_that_differ_at_the_same_stamp_are_reconciled_on_a_cluster() {
    values_that_differ_at_the_same_stamp_are_reconciled(Redis::cluster(Persistence::None)).await
}

/// A join the store carried out (and announced) but whose answer was lost:
/// the connection is told to retry, and its entry is taken back, so nobody
/// lists a member for the TTL that never got in.
#[tokio::test]
async fn a_join_whose_answer_was_lost_leaves_no_ghost() {
    let (store, server) = faulty_server().await;
    let mut watcher = server.client("watcher").await;
    let mut view = MemberView::from_joined(&watcher.join(ROOM, None).await.unwrap());
    let w = watcher.connection().to_owned();
    store.plan(Call::Join, [Fault::LoseAnswer]);
    let mut ghost = server.client("ghost").await;
    assert!(ghost.join(ROOM, None).await.is_err(), "told the join failed");
    let ghost_conn = ghost.connection().to_owned();
    view.wait_for_leave(&mut watcher, ROOM, &ghost_conn, Duration::from_secs(5)).await;
    view.settle(&mut watcher, ROOM, &[&w], Duration::from_secs(5)).await;
    assert_eq!(view.leaves.get(&ghost_conn), Some(&1), "it was seen joining, so it is seen leaving, once");
    // Joining again works.
    ghost.join(ROOM, None).await.unwrap();
    view.settle(&mut watcher, ROOM, &[&w, &ghost_conn], Duration::from_secs(5)).await;
}

/// A join whose answer was lost is taken back in the background, and the
/// first leave doing it loses its answer too, so it is tried again: the
/// connection's next join, answered, must not be taken back with it.
#[tokio::test]
async fn a_join_retried_while_a_lost_one_is_taken_back_stays() {
    let (store, server) = faulty_server().await;
    let mut watcher = server.client("watcher").await;
    let mut view = MemberView::from_joined(&watcher.join(ROOM, None).await.unwrap());
    let w = watcher.connection().to_owned();
    store.plan(Call::Join, [Fault::LoseAnswer]);
    store.plan(Call::Leave, [Fault::LoseAnswer]);
    let mut ann = server.client("ann").await;
    assert!(ann.join(ROOM, None).await.is_err(), "told the join failed");
    let ann_conn = ann.connection().to_owned();
    // As a client does: join again at once, until let in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while let Err(e) = ann.join(ROOM, None).await {
        assert!(tokio::time::Instant::now() < deadline, "never let in again: {e}");
        refused += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.pending(), 0, "the lost join and the lost leave both happened");
    // Told it joined, it stays joined, on its own connection and in everyone's list.
    let told = support::drain(&mut ann, Duration::from_secs(1)).await;
    assert!(!told.iter().any(|m| matches!(m, ServerMessage::Left { .. })), "ann was put out after joining (refused {refused} times first): {told:?}");
    view.settle(&mut watcher, ROOM, &[&w, &ann_conn], Duration::from_secs(5)).await;
    let members = chorus_store::PresenceStore::members(store.inner(), ROOM, now_ms()).await.unwrap();
    assert!(members.members.iter().any(|m| m.connection == ann_conn), "ann's entry is in the store: {:?}", members.members);
}

/// Value changes whose answers were lost are asked about again with their
/// token, and count once.
#[tokio::test]
async fn a_value_change_whose_answer_was_lost_counts_once() {
    let (store, server) = faulty_server().await;
    let mut c = server.client("ann").await;
    c.join(ROOM, None).await.unwrap();
    store.plan(Call::PutValue, [Fault::LoseAnswer, Fault::LoseAnswer]);
    for _ in 0..3 {
        c.update_value(ROOM, "n", ValueKind::GCounter, Change::Increment { by: 1 }).await.expect("acknowledged");
    }
    assert_eq!(store.pending(), 0);
    let stored = chorus_store::ValueStore::values(store.inner(), ROOM).await.unwrap();
    assert_eq!(stored.values.len(), 1);
    let (_, value) = &stored.values[0];
    assert_eq!((value.version, value.state.view().unwrap()), (3, serde_json::json!(3)), "three changes, three increments");
}

/// An op committed whose answer was lost: the client resubmits it and it
/// is acknowledged, not applied twice.
#[tokio::test]
async fn an_op_whose_answer_was_lost_is_committed_once() {
    let (store, server) = faulty_server().await;
    let options = ConnectOptions { reconnect: true, ..ConnectOptions::dev("ann") };
    let mut c = server.connect(options).await;
    c.join(ROOM, None).await.unwrap();
    c.open_doc(ROOM, "d").await.unwrap();
    store.plan(Call::Append, [Fault::LoseAnswer]);
    c.insert(ROOM, "d", 0, "once").unwrap();
    c.sync(ROOM, "d").await.expect("acknowledged after the resubmission");
    assert_eq!(server.doc_text(ROOM, "d").await, ("once".to_string(), 1));
}

/// A group committed on Redis whose answer was lost (or came after its
/// timeout): a node does not hear its own groups back on the bus, so it
/// fetches what the store committed, and its readers receive the op once,
/// without waiting for the periodic reconciliation or for another op.
async fn a_group_whose_answer_was_lost_reaches_the_nodes_readers(redis: Redis) {
    let store = Arc::new(Faulty::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let server = start_on(store.clone(), |c| c.reconcile_interval_ms = 600_000).await;
    let mut bob = server.connect(ConnectOptions { doc_events: true, ..ConnectOptions::dev("bob") }).await;
    bob.join(ROOM, None).await.unwrap();
    bob.open_doc(ROOM, "d").await.unwrap();
    store.plan(Call::Append, [Fault::LoseAnswer]);
    let path = format!("/v1/rooms/{}/docs/d/ops", ROOM.replace('/', "%2F"));
    let (status, body) = http_post(server.addr, &path, None, r#"{"op": ["lost"], "client": "importer", "seq": 1}"#).await;
    assert_eq!(status, 503, "the answer was lost: {body}");
    let seen = expect(&mut bob, "the op whose answer was lost", |m| match m {
        ServerMessage::Op { entry, .. } => Some(entry.clone()),
        _ => None,
    })
    .await;
    assert_eq!((seen.version, seen.op), (1, TextOp::insert(0, "lost")));
    // The next op follows it, and nothing came twice.
    let (status, body) = http_post(server.addr, &path, None, r#"{"op": [4, "!"], "client": "importer", "seq": 2}"#).await;
    assert_eq!(status, 200, "{body}");
    let next = expect(&mut bob, "the next op", |m| match m {
        ServerMessage::Op { entry, .. } => Some(entry.version),
        _ => None,
    })
    .await;
    assert_eq!(next, 2);
    assert_eq!(bob.doc(ROOM, "d").unwrap().text().to_string(), "lost!");
    assert_eq!(store.pending(), 0);
}

#[tokio::test]
async fn a_group_whose_answer_was_lost_reaches_the_nodes_readers_on_redis() {
    a_group_whose_answer_was_lost_reaches_the_nodes_readers(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn a_group_whose_answer_was_lost_reaches_the_nodes_readers_on_a_cluster() {
    a_group_whose_answer_was_lost_reaches_the_nodes_readers(Redis::cluster(Persistence::None)).await
}

/// A store that answers slowly for one room holds up only that room.
#[tokio::test]
async fn a_slow_store_answer_holds_up_only_its_room() {
    let (store, server) = faulty_server().await;
    let mut slow = server.client("ann").await;
    slow.join("slow/room", None).await.unwrap();
    slow.open_doc("slow/room", "d").await.unwrap();
    let mut quick_client = server.client("bob").await;
    quick_client.join("quick/room", None).await.unwrap();
    quick_client.open_doc("quick/room", "d").await.unwrap();
    store.plan(Call::Append, [Fault::Delay(Duration::from_secs(2))]);
    slow.insert("slow/room", "d", 0, "late").unwrap();
    // The delayed append is under way; another room commits meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    quick_client.insert("quick/room", "d", 0, "on time").unwrap();
    quick_client.sync("quick/room", "d").await.unwrap();
    assert!(!slow.doc("slow/room", "d").unwrap().is_synchronized(), "the other room's op is still waiting for its store answer");
    slow.sync("slow/room", "d").await.expect("the slow answer comes");
}

/// Redis restarted without persistence: it forgot every member. The nodes
/// put their connections back, and every list settles on who is there.
async fn the_store_that_forgot_is_told_again(mut redis: Redis) {
    let a = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), quick).await;
    let b = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), quick).await;
    let mut ann = a.client("ann").await;
    ann.join(ROOM, None).await.unwrap();
    let mut bob = b.client("bob").await;
    let mut view = MemberView::from_joined(&bob.join(ROOM, None).await.unwrap());
    let everyone = [ann.connection().to_owned(), bob.connection().to_owned()];
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    view.settle(&mut bob, ROOM, &everyone, Duration::from_secs(5)).await;
    redis.server_for(&format!("chorus:{{{ROOM}}}:members")).restart();
    if let Redis::Cluster(c) = &redis {
        c.wait_until_serving();
    }
    // Heartbeats keep both connections alive meanwhile.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = a.get(&format!("/v1/rooms/{}/members", ROOM.replace('/', "%2F")), None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if v["count"] == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the store never got its members back: {body}");
        ann.heartbeat().await.ok();
        bob.heartbeat().await.ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    view.settle(&mut bob, ROOM, &everyone, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_store_that_forgot_is_told_again_on_redis() {
    the_store_that_forgot_is_told_again(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn the_store_that_forgot_is_told_again_on_a_cluster() {
    the_store_that_forgot_is_told_again(Redis::cluster(Persistence::None)).await
}

/// A replica that must be reloaded while the store refuses: its readers are
/// told once the reload succeeds, never left on the old history in silence.
async fn readers_of_a_replica_reloaded_late_are_told(mut redis: Redis) {
    let store = Arc::new(Faulty::new(RedisStore::connect(&redis.url()).await.unwrap()));
    let a = start_on(store.clone(), quick).await;
    let b = start_on(Arc::new(RedisStore::connect(&redis.url()).await.unwrap()), quick).await;
    let options = |user: &str| ConnectOptions { reconnect: true, ..ConnectOptions::dev(user) };
    let mut reader = a.connect(options("reader")).await;
    reader.join(ROOM, None).await.unwrap();
    reader.open_doc(ROOM, "d").await.unwrap();
    let mut writer = b.connect(options("writer")).await;
    writer.join(ROOM, None).await.unwrap();
    writer.open_doc(ROOM, "d").await.unwrap();
    writer.insert(ROOM, "d", 0, "kept ").unwrap();
    writer.sync(ROOM, "d").await.unwrap();
    let pattern = format!("chorus:{{{ROOM}}}:*");
    let server = redis.server_for(&pattern);
    let earlier = server.dump_keys(&pattern);
    writer.insert(ROOM, "d", 0, "lost ").unwrap();
    writer.sync(ROOM, "d").await.unwrap();
    reader.catch_up(ROOM, "d", 2).await.unwrap();
    server.restore_keys(&pattern, &earlier);
    store.plan(Call::Load, [Fault::Fail, Fault::Fail, Fault::Fail]);
    writer.insert(ROOM, "d", 0, "new ").unwrap();
    let _ = writer.sync(ROOM, "d").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        reader.pump(Duration::from_millis(50)).await;
        writer.pump(Duration::from_millis(50)).await;
        let (text, version) = b.doc_text(ROOM, "d").await;
        let r = reader.doc(ROOM, "d").unwrap();
        if r.text().to_string() == text && r.version() == version && !text.contains("lost") {
            assert!(r.resets >= 1, "the reader was told its history was replaced");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reader is left on {:?}; the store has {text:?}", r.text().to_string());
    }
    assert_eq!(store.pending(), 0, "the reload was retried past the refusals");
}

#[tokio::test]
async fn readers_of_a_replica_reloaded_late_are_told_on_redis() {
    readers_of_a_replica_reloaded_late_are_told(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn readers_of_a_replica_reloaded_late_are_told_on_a_cluster() {
    readers_of_a_replica_reloaded_late_are_told(Redis::cluster(Persistence::None)).await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
