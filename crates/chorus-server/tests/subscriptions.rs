//! A node's subscriptions follow its rooms: a room that stops unsubscribes
//! (thousands of rooms visited once leave nothing behind, in subscriptions
//! or memory), and a subscription the server ends (a Cluster slot that
//! moved) is made again, so the room goes on hearing other nodes.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_redis::testing::{Persistence, Redis};
use chorus_redis::RedisStore;
use support::{http_get, start_on};

/// A `chorus serve` process on a free port, for its memory.
struct NodeProcess {
    child: Child,
    addr: std::net::SocketAddr,
}

impl NodeProcess {
    async fn start(redis: &Redis) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}"), "--redis", &redis.url()])
            .env("CHORUS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chorus");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "chorus did not start listening");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, addr }
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read the process status");
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS")
    }

    async fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.addr, "/metrics", None).await;
        body.lines().find_map(|l| l.strip_prefix(name).map(str::trim)).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    }

    /// Reads a document of each room, `parallel` at a time: every read
    /// starts the room and lets it stop.
    async fn visit(&self, rooms: std::ops::Range<usize>, parallel: usize) {
        let mut tasks = Vec::new();
        for lane in 0..parallel {
            let addr = self.addr;
            let rooms: Vec<usize> = rooms.clone().skip(lane).step_by(parallel).collect();
            tasks.push(tokio::spawn(async move {
                for r in rooms {
                    let (status, body) = http_get(addr, &format!("/v1/rooms/visit-{r}/docs/body"), None).await;
                    assert_eq!(status, 200, "{body}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Channels of rooms Redis delivers to someone, on every server.
fn room_channels(redis: &Redis) -> usize {
    let mut n = 0;
    for args in [["PUBSUB", "CHANNELS", "chorus:*"], ["PUBSUB", "SHARDCHANNELS", "chorus:*"]] {
        n += redis.cli_everywhere(&args).iter().map(|out| out.lines().filter(|l| !l.is_empty()).count()).sum::<usize>();
    }
    n
}

async fn rooms_visited_once_leave_nothing_behind(redis: Redis) {
    let node = NodeProcess::start(&redis).await;
    // Warm up: allocators and caches reach their working size.
    node.visit(0..300, 8).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = node.rss_kib();
    node.visit(300..3_300, 8).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node.metric("chorus_bus_subscriptions").await > 0.0 || room_channels(&redis) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} subscriptions on the node and {} room channels on Redis after the rooms stopped",
            node.metric("chorus_bus_subscriptions").await,
            room_channels(&redis)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(node.metric("chorus_rooms").await, 0.0, "every room stopped");
    let after = node.rss_kib();
    println!("RSS after 300 rooms: {baseline} KiB; after 3,300: {after} KiB");
    // 3,000 rooms left behind cost about 100 MB; a margin for the allocator.
    assert!(after < baseline + 24 * 1024, "memory grew from {baseline} KiB to {after} KiB over 3,000 rooms visited once");
}

#[tokio::test]
async fn rooms_visited_once_leave_nothing_behind_on_redis() {
    rooms_visited_once_leave_nothing_behind(Redis::standalone(Persistence::None)).await
}

#[tokio::test]
async fn rooms_visited_once_leave_nothing_behind_on_a_cluster() {
    rooms_visited_once_leave_nothing_behind(Redis::cluster(Persistence::None)).await
}

#[tokio::test]
async fn rooms_visited_once_leave_no_channel_in_the_embedded_store() {
    let store = Arc::new(chorus_store::MemoryStore::new());
    let server = start_on(store.clone(), |_| {}).await;
    for r in 0..500 {
        let (status, body) = server.get(&format!("/v1/rooms/visit-{r}/docs/body"), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while chorus_store::Bus::subscribed_rooms(&*store) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "{} channels left", chorus_store::Bus::subscribed_rooms(&*store));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ROOM: &str = "moving/room";

async fn editor(url: &str, user: &str) -> Client {
    let options = ConnectOptions { reconnect: true, timeout: Duration::from_secs(10), ..ConnectOptions::dev(user) };
    let mut c = Client::connect(url, options).await.expect("connects");
    c.join(ROOM, None).await.expect("join");
    c.open_doc(ROOM, "d").await.expect("open");
    c
}

/// The slot of a room moves to another master: the old one ends the nodes'
/// sharded subscriptions of its channel. They subscribe again by
/// themselves (the periodic reconciliation is off here, so it is not what
/// repairs them), and ops and joins go on.
#[tokio::test]
async fn a_moved_slot_does_not_end_a_rooms_subscription() {
    let mut redis = chorus_redis::testing::RedisCluster::start(3);
    let seeds = redis.urls().join(",");
    let slow_reconcile = |c: &mut chorus_server::Config| c.reconcile_interval_ms = 600_000;
    let a = start_on(Arc::new(RedisStore::connect(&seeds).await.unwrap()), slow_reconcile).await;
    let b = start_on(Arc::new(RedisStore::connect(&seeds).await.unwrap()), slow_reconcile).await;
    let mut ann = editor(&a.ws_url(), "ann").await;
    let mut bob = editor(&b.ws_url(), "bob").await;
    ann.insert(ROOM, "d", 0, "before ").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    bob.catch_up(ROOM, "d", 1).await.unwrap();
    let key = format!("chorus:{{{ROOM}}}:members");
    let from = redis.node_for(&key).port;
    let to = redis.nodes.iter().map(|n| n.port).find(|p| *p != from).unwrap();
    redis.migrate_slot(&key, to);
    for (i, writer) in [(1u64, &mut ann), (2, &mut bob)] {
        writer.insert(ROOM, "d", 0, &format!("after{i} ")).unwrap();
        writer.sync(ROOM, "d").await.unwrap_or_else(|e| panic!("a commit after the move: {e}"));
    }
    for (name, c) in [("ann", &mut ann), ("bob", &mut bob)] {
        c.catch_up(ROOM, "d", 3).await.unwrap_or_else(|e| panic!("{name} never heard the ops after the move: {e}"));
    }
    assert_eq!(ann.doc(ROOM, "d").unwrap().text().to_string(), bob.doc(ROOM, "d").unwrap().text().to_string());
    // A newcomer on node b joins the room and hears ann.
    let mut cid = editor(&b.ws_url(), "cid").await;
    ann.insert(ROOM, "d", 0, "hello cid ").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    cid.catch_up(ROOM, "d", 4).await.expect("the newcomer on node b hears node a");
}
