//! What the campaign runs on: a real Redis and three `chorus serve`
//! processes, each logging in as its own Redis user, and the faults done to
//! them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus_redis::testing::Redis;

use crate::NODE_USERS;

pub const ROOM: &str = "chaos/room";
pub const LOBBY: &str = "chaos/lobby";
pub const DOC: &str = "text";

/// The presence TTL of the campaign's nodes: short, so the connections of
/// killed nodes go quickly.
pub const TTL_MS: u64 = 2_000;

pub struct Node {
    pub port: u16,
    user: (&'static str, &'static str),
    child: Option<Child>,
    log: PathBuf,
}

impl Node {
    pub fn addr(&self) -> SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    fn launch(&mut self, redis: &Redis) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the node's log");
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--redis", &redis.url_as(self.user.0, self.user.1)])
            .args(["--presence-ttl-ms", &TTL_MS.to_string(), "--reconcile-interval-ms", "500", "--messages-per-second", "1000"])
            .env("CHORUS_LOG", "warn,chorus_server::room=info,chorus_server::session=info,chorus_server::outbox=info")
            .env("CHORUS_LOG_FORMAT", "text")
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chorus");
        self.child = Some(child);
    }

    /// Starts the node and waits until it listens. A node that cannot
    /// reach its store at start exits; it is started again, as a process
    /// supervisor would, until it comes up.
    async fn start(&mut self, redis: &Redis) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        self.launch(redis);
        while tokio::net::TcpStream::connect(self.addr()).await.is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                assert!(std::time::Instant::now() < deadline, "node on {} kept exiting at start ({status}): {}", self.port, self.log_tail());
                println!("chaos: node on {} exited at start ({status}); starting it again", self.port);
                tokio::time::sleep(Duration::from_millis(250)).await;
                self.launch(redis);
                continue;
            }
            assert!(std::time::Instant::now() < deadline, "node on {} did not start listening", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    fn rss_kib(&self) -> u64 {
        let Some(child) = &self.child else { return 0 };
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
    }

    /// The last lines of the node's log, for a failure report.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub struct Fleet {
    pub redis: Redis,
    pub nodes: Vec<Node>,
    /// Nodes Redis refuses at the moment.
    refused: Vec<usize>,
    /// The port of the Redis server paused, if one is.
    paused: Option<u16>,
    backup: Option<PathBuf>,
}

/// Any key of the room: its server is the one faults aim at.
pub fn room_key() -> String {
    format!("chorus:{{{ROOM}}}:members")
}

impl Fleet {
    pub async fn start(redis: Redis) -> Self {
        let mut nodes = Vec::new();
        for (i, user) in NODE_USERS.into_iter().enumerate() {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log = std::env::temp_dir().join(format!("chorus-chaos-{}-{port}-node{i}.log", std::process::id()));
            let mut node = Node { port, user, child: None, log };
            node.start(&redis).await;
            nodes.push(node);
        }
        Self { redis, nodes, refused: Vec::new(), paused: None, backup: None }
    }

    pub async fn restart_node(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i].start(&self.redis).await;
    }

    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// SIGKILL of the server holding the room, and a restart on its files.
    pub fn restart_redis(&mut self) {
        self.redis.server_for(&room_key()).restart();
        self.redis.wait_until_serving();
    }

    pub fn take_backup(&mut self) {
        self.backup = Some(self.redis.server_for(&room_key()).save_rdb());
    }

    /// Restores the backup taken last (the store goes back in time).
    pub fn restore_backup(&mut self) -> bool {
        let Some(backup) = self.backup.clone() else { return false };
        self.redis.server_for(&room_key()).restore_rdb(&backup);
        self.redis.wait_until_serving();
        true
    }

    pub fn kill_pubsub(&self) {
        self.redis.cli_everywhere(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    }

    /// Moves the room's slot to another master (Cluster only).
    pub fn migrate_slot(&mut self) -> bool {
        let Redis::Cluster(c) = &mut self.redis else { return false };
        let from = c.node_for(&room_key()).port;
        let to = c.nodes.iter().map(|n| n.port).find(|p| *p != from).expect("another master");
        c.migrate_slot(&room_key(), to);
        true
    }

    pub fn pause_redis(&mut self) {
        let server = self.redis.server_for(&room_key());
        server.pause();
        self.paused = Some(server.port);
    }

    /// Resumes the server paused, found by its port: asking the Cluster
    /// which master serves the room would ask the paused one.
    pub fn resume_redis(&mut self) {
        if let Some(port) = self.paused.take() {
            self.redis.servers().into_iter().find(|s| s.port == port).expect("the paused server").resume();
        }
    }

    pub fn refuse_node(&mut self, i: usize) {
        for s in self.redis.servers() {
            s.refuse_user(NODE_USERS[i].0);
        }
        self.refused.push(i);
    }

    pub fn admit_nodes(&mut self) {
        for i in self.refused.drain(..) {
            for s in self.redis.servers() {
                s.admit_user(NODE_USERS[i].0);
            }
        }
    }

    /// Undoes every fault still in force: Redis resumed and admitting
    /// everyone, every node running.
    pub async fn heal(&mut self) {
        self.resume_redis();
        self.admit_nodes();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].is_up() {
                self.restart_node(i).await;
            }
        }
    }

    /// Resident memory of the nodes together, in KiB.
    pub fn memory_kib(&self) -> u64 {
        self.nodes.iter().map(Node::rss_kib).sum()
    }

    /// Copies the nodes' logs where they outlive the campaign (a failed
    /// one): `target/chaos-logs/<seed>/node<i>.log`.
    pub fn keep_logs(&self, seed: u64) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/chaos-logs").join(seed.to_string());
        let _ = std::fs::create_dir_all(&dir);
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = std::fs::copy(&n.log, dir.join(format!("node{i}.log")));
        }
        dir
    }

    /// The nodes' recent logs, for a failure report.
    pub fn logs(&self) -> String {
        self.nodes.iter().enumerate().map(|(i, n)| format!("--- node {i} (port {}):\n{}", n.port, n.log_tail())).collect::<Vec<_>>().join("\n")
    }
}
