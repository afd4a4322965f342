//! A Cluster whose masters crash, hang, lose their scripts or refuse this
//! node for a while, met by the store: every room works again within a
//! bounded time once the Cluster serves again, and a room on a healthy
//! master works meanwhile wherever the Cluster lets it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_store::{Bus, DocStore, PresenceStore, StoreError, StoreResult};

use crate::testing::{Persistence, RedisCluster};
use crate::{room_key, RedisStore};

/// How long every room may take to work again once the Cluster is whole.
const RECOVERY: Duration = Duration::from_secs(10);

/// One room whose keys live on each master: (the master's port, the room).
fn a_room_on_each_master(cluster: &mut RedisCluster) -> Vec<(u16, String)> {
    let mut rooms: Vec<(u16, String)> = Vec::new();
    for i in 0.. {
        let room = format!("room{i}");
        let port = cluster.node_for(&room_key(&room, "members")).port;
        if !rooms.iter().any(|(p, _)| *p == port) {
            rooms.push((port, room));
        }
        if rooms.len() == cluster.nodes.len() {
            break;
        }
    }
    rooms
}

/// A script, a command and a subscription of the room.
async fn use_room(store: &RedisStore, room: &str) -> StoreResult<()> {
    store.load(room, "body").await?;
    store.ping().await?;
    let subscribed = tokio::time::timeout(Duration::from_secs(5), store.subscribe(room)).await;
    subscribed.map_err(|_| StoreError::Unavailable("the subscription hung".into()))?.map(drop)
}

/// Waits until every room works; how long that took, or the room that
/// still fails after `within` with its last error.
async fn every_room_works(store: &RedisStore, rooms: &[(u16, String)], within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    for (port, room) in rooms {
        while let Err(e) = use_room(store, room).await {
            if start.elapsed() > within {
                return Err(format!("room {room} on master {port} still fails {within:?} after the Cluster serves again: {e}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(start.elapsed())
}

/// Uses every room, on and on, while a fault goes on: the connections meet
/// the fault as a busy node's would.
fn keep_using(store: Arc<RedisStore>, rooms: Vec<(u16, String)>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for (_, room) in &rooms {
                let _ = use_room(&store, room).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// A Cluster of three masters that know the user `node`, a store logged in
/// as it, and a room on each master that works.
async fn start() -> (RedisCluster, Arc<RedisStore>, Vec<(u16, String)>) {
    let mut cluster = RedisCluster::start_with_users(3, Persistence::AofAlways, &[("node", "pw")]);
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url_as("node", "pw")).collect();
    let store = Arc::new(RedisStore::connect(&urls.join(",")).await.expect("connects"));
    let rooms = a_room_on_each_master(&mut cluster);
    every_room_works(&store, &rooms, Duration::from_secs(5)).await.expect("every master answers at first");
    (cluster, store, rooms)
}

/// Waits (off the runtime's workers) until every master serves.
fn until_serving(cluster: &RedisCluster) {
    tokio::task::block_in_place(|| cluster.wait_until_serving());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_works_again_after_a_master_crashed_and_came_back() {
    let (mut cluster, store, rooms) = start().await;
    let busy = keep_using(store.clone(), rooms.clone());
    for (port, _) in rooms.iter().take(2) {
        let master = cluster.nodes.iter_mut().find(|n| n.port == *port).unwrap();
        master.kill();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        cluster.nodes.iter_mut().find(|n| n.port == *port).unwrap().restart();
        until_serving(&cluster);
        every_room_works(&store, &rooms, RECOVERY).await.unwrap_or_else(|e| panic!("after master {port} crashed: {e}"));
    }
    busy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_works_again_after_a_master_hung() {
    let (cluster, store, rooms) = start().await;
    let busy = keep_using(store.clone(), rooms.clone());
    for (port, _) in rooms.iter().take(2) {
        let master = cluster.nodes.iter().find(|n| n.port == *port).unwrap();
        master.pause();
        tokio::time::sleep(Duration::from_millis(4_000)).await;
        master.resume();
        until_serving(&cluster);
        every_room_works(&store, &rooms, RECOVERY).await.unwrap_or_else(|e| panic!("after master {port} hung: {e}"));
    }
    busy.abort();
}

/// Every master refuses this node and cuts its connections (pub/sub too),
/// so the Cluster connection reaches no node at all for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_room_works_again_after_every_master_refused_the_node() {
    let (cluster, store, rooms) = start().await;
    let busy = keep_using(store.clone(), rooms.clone());
    for _ in 0..2 {
        for n in &cluster.nodes {
            n.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            n.refuse_user("node");
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        for n in &cluster.nodes {
            n.admit_user("node");
        }
        every_room_works(&store, &rooms, RECOVERY).await.unwrap_or_else(|e| panic!("after every master refused the node: {e}"));
    }
    busy.abort();
}

/// A master that lost its scripts (it restarted, say) runs them again
/// while another master hangs: a script goes only to its room's master,
/// never to every master as a SCRIPT LOAD would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_on_a_healthy_master_runs_its_scripts_while_another_master_hangs() {
    let mut cluster = RedisCluster::start(3);
    let store = RedisStore::connect(&cluster.urls().join(",")).await.expect("connects");
    let rooms = a_room_on_each_master(&mut cluster);
    every_room_works(&store, &rooms, Duration::from_secs(5)).await.expect("every master answers at first");
    let ((hung, _), (healthy, room)) = (rooms[0].clone(), rooms[1].clone());
    let healthy = cluster.nodes.iter().find(|n| n.port == healthy).unwrap();
    assert_eq!(healthy.cli(&["SCRIPT", "FLUSH"]), "OK");
    let hung = cluster.nodes.iter().find(|n| n.port == hung).unwrap();
    hung.pause();
    let started = Instant::now();
    let loaded = store.load(&room, "body").await;
    let took = started.elapsed();
    hung.resume();
    loaded.expect("a room on a healthy master runs its script while another master hangs");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}
