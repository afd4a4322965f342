//! Real Redis servers for tests: standalone servers and Clusters of real
//! `redis-server` processes, each on free ports of 127.0.0.1 with its own
//! data folder, so a test may kill, restart or cut one off without touching
//! anything else (and never the server on 6379).
//!
//! Servers are stopped and their folders removed when dropped. The binaries
//! are `redis-server` and `redis-cli` from `PATH`, or the paths in
//! `CHORUS_REDIS_SERVER` and `CHORUS_REDIS_CLI`; `scripts/test` installs
//! them from Debian's packages when they are missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How a server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// Memory only: a restart loses everything.
    #[default]
    None,
    /// Append-only file, fsync once a second.
    AofEverySec,
    /// Append-only file, fsync on every write.
    AofAlways,
}

fn server_binary() -> String {
    std::env::var("CHORUS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

fn cli_binary() -> String {
    std::env::var("CHORUS_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// A port nobody listens on now, whose Cluster bus port (+10 000) is free too.
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind an ephemeral port").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn fresh_dir(port: u16) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!("chorus-redis-{}-{port}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The files of a server that speaks only TLS: its certificate and key,
/// and the CA that signed it (which clients are told to trust).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// One `redis-server` process.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    tls: Option<TlsFiles>,
}

impl RedisServer {
    /// A standalone server without persistence.
    pub fn start() -> Self {
        Self::start_with(Persistence::None)
    }

    /// A standalone server keeping its data as `persistence` says.
    pub fn start_with(persistence: Persistence) -> Self {
        Self::spawn(persistence.args())
    }

    /// A standalone server with ACL users (name, password) allowed
    /// everything, besides the default user, so a test can refuse one
    /// client for a while ([`RedisServer::refuse_user`]).
    pub fn start_with_users(persistence: Persistence, users: &[(&str, &str)]) -> Self {
        let mut args = persistence.args();
        args.extend(user_args(users));
        Self::spawn(args)
    }

    /// A standalone server without persistence that speaks only TLS on its
    /// port (`rediss://`), with the certificate in `tls`; clients are not
    /// asked for certificates.
    pub fn start_tls(tls: TlsFiles) -> Self {
        Self::spawn_on(Vec::new(), Some(tls))
    }

    fn spawn(extra: Vec<String>) -> Self {
        Self::spawn_on(extra, None)
    }

    fn spawn_on(extra: Vec<String>, tls: Option<TlsFiles>) -> Self {
        let port = free_port();
        let dir = fresh_dir(port);
        let listen: Vec<String> = match &tls {
            None => vec!["--port".into(), port.to_string()],
            Some(tls) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        };
        let mut args = listen;
        args.extend([
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
            "--logfile".into(),
            dir.join("redis.log").display().to_string(),
        ]);
        args.extend(extra);
        let mut server = RedisServer { port, dir, args, child: None, tls };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let child = Command::new(server_binary())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e}; install Redis (`apt-get install redis-server`, which scripts/test does) or set CHORUS_REDIS_SERVER",
                    server_binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while self.try_cli(&["PING"]).as_deref() != Some("PONG") {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server on port {} exited at start ({status}); its log: {}", self.port, self.log());
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer within {START_TIMEOUT:?}; its log: {}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The URL for an ACL user.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Turns an ACL user off and drops its connections: the server refuses
    /// it until [`RedisServer::admit_user`].
    pub fn refuse_user(&self, user: &str) {
        assert_eq!(self.cli(&["ACL", "SETUSER", user, "off"]), "OK");
        self.cli(&["CLIENT", "KILL", "USER", user]);
    }

    pub fn admit_user(&self, user: &str) {
        assert_eq!(self.cli(&["ACL", "SETUSER", user, "on"]), "OK");
    }

    /// Runs a command through `redis-cli`; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        self.run_cli(args).unwrap_or_else(|failure| panic!("redis-cli -p {} {args:?} failed: {failure}", self.port))
    }

    /// Runs a command through `redis-cli`; its output, or `None` when it
    /// failed.
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        self.run_cli(args).ok()
    }

    /// The output of a command, or what went wrong (an error reply, or
    /// redis-cli's own complaint).
    fn run_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cli = Command::new(cli_binary());
        cli.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(tls) = &self.tls {
            cli.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let out = cli
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli did not run: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !text.starts_with("Could not connect") && !text.starts_with("ERR") {
            Ok(text)
        } else {
            Err(format!("{text} {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same data folder
    /// (an append-only file is read back).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Saves the data as it is now (SAVE) and keeps a copy of the file, as
    /// a backup would.
    pub fn save_rdb(&self) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        assert_eq!(self.cli(&["SAVE"]), "OK");
        let copy = self.dir.join(format!("backup-{}.rdb", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::copy(self.dir.join("dump.rdb"), &copy).unwrap_or_else(|e| panic!("copy the RDB of port {}: {e}", self.port));
        copy
    }

    /// Restores a backup from [`RedisServer::save_rdb`]: the server is
    /// killed, its files replaced by the backup, and started again, so it
    /// holds the older data (what an operator restoring a backup, or a
    /// failover to a replica that was behind, does to its clients). An
    /// append-only server loads the backup with AOF off, then turns AOF on
    /// again (Redis ignores an RDB file while AOF is on).
    pub fn restore_rdb(&mut self, backup: &std::path::Path) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.dir.join("appendonlydir"));
        std::fs::copy(backup, self.dir.join("dump.rdb")).unwrap_or_else(|e| panic!("restore {}: {e}", backup.display()));
        let aof = self.args.windows(2).any(|w| w[0] == "--appendonly" && w[1] == "yes");
        let saved_args = self.args.clone();
        if aof {
            for w in 0..self.args.len().saturating_sub(1) {
                if self.args[w] == "--appendonly" {
                    self.args[w + 1] = "no".into();
                }
            }
        }
        self.launch();
        self.args = saved_args;
        if aof {
            assert_eq!(self.cli(&["CONFIG", "SET", "appendonly", "yes"]), "OK");
            let deadline = Instant::now() + START_TIMEOUT;
            while !self.cli(&["INFO", "persistence"]).contains("aof_rewrite_in_progress:0") || !self.cli(&["INFO", "persistence"]).contains("aof_enabled:1") {
                assert!(Instant::now() < deadline, "AOF did not come back on port {}", self.port);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The keys matching `pattern` with their serialized values (DUMP): what
    /// [`RedisServer::restore_keys`] puts back.
    pub fn dump_keys(&self, pattern: &str) -> Vec<(String, Vec<u8>)> {
        let mut conn = redis::Client::open(self.url()).and_then(|c| c.get_connection()).expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).expect("KEYS");
        keys.into_iter()
            .map(|k| {
                let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query(&mut conn).expect("DUMP");
                (k, dump)
            })
            .collect()
    }

    /// Replaces the keys matching `pattern` with a dump of earlier: the data
    /// goes back in time while the server and its connections stay up (a
    /// replica that was behind taking over looks the same to clients).
    pub fn restore_keys(&self, pattern: &str, dump: &[(String, Vec<u8>)]) {
        let mut conn = redis::Client::open(self.url()).and_then(|c| c.get_connection()).expect("connect");
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).expect("KEYS");
        for k in keys {
            let _: i64 = redis::cmd("DEL").arg(&k).query(&mut conn).expect("DEL");
        }
        for (k, v) in dump {
            let _: () = redis::cmd("RESTORE").arg(k).arg(0).arg(v.as_slice()).arg("REPLACE").query(&mut conn).expect("RESTORE");
        }
    }

    /// Stops the process (SIGSTOP) without closing its connections: a
    /// server that hangs, as under a long fork or a stalled disk.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `--user NAME on >PASSWORD ~* &* +@all` for each user.
fn user_args(users: &[(&str, &str)]) -> Vec<String> {
    users.iter().flat_map(|(name, password)| ["--user".to_owned(), (*name).to_owned(), "on".into(), format!(">{password}"), "~*".into(), "&*".into(), "+@all".into()]).collect()
}

impl Persistence {
    fn args(self) -> Vec<String> {
        let mut args = vec!["--save".to_owned(), String::new()];
        match self {
            Persistence::None => args.extend(["--appendonly".into(), "no".into()]),
            Persistence::AofEverySec => args.extend(["--appendonly".into(), "yes".into(), "--appendfsync".into(), "everysec".into()]),
            Persistence::AofAlways => args.extend(["--appendonly".into(), "yes".into(), "--appendfsync".into(), "always".into()]),
        }
        args
    }
}

/// A Redis Cluster of masters without replicas, slots spread evenly.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_with(masters, Persistence::None)
    }

    /// A Cluster whose masters keep their data as `persistence` says (a
    /// restarted master rejoins with its slots and its append-only file).
    pub fn start_with(masters: usize, persistence: Persistence) -> Self {
        Self::start_with_users(masters, persistence, &[])
    }

    /// A Cluster whose masters also know these ACL users (see
    /// [`RedisServer::start_with_users`]).
    pub fn start_with_users(masters: usize, persistence: Persistence, users: &[(&str, &str)]) -> Self {
        Self::start_on(masters, persistence, users, None)
    }

    /// A Cluster whose masters speak only TLS, to clients and to each other
    /// (`--tls-cluster`, `--tls-replication`), with the certificate in `tls`.
    pub fn start_tls(masters: usize, tls: TlsFiles) -> Self {
        Self::start_on(masters, Persistence::None, &[], Some(tls))
    }

    fn start_on(masters: usize, persistence: Persistence, users: &[(&str, &str)], tls: Option<TlsFiles>) -> Self {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                let mut args: Vec<String> =
                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"].map(String::from).to_vec();
                args.extend(persistence.args());
                args.extend(user_args(users));
                if tls.is_some() {
                    args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
                }
                RedisServer::spawn_on(args, tls.clone())
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut create = Command::new(cli_binary());
        if let Some(tls) = &tls {
            create.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        let out = create
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli_binary()));
        assert!(out.status.success(), "redis-cli --cluster create failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let cluster = RedisCluster { nodes };
        cluster.wait_until_serving();
        cluster
    }

    /// Waits until every master reports `cluster_state:ok` (after a start,
    /// or after a master restarted).
    pub fn wait_until_serving(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.nodes.iter().all(|n| n.try_cli(&["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok"))) {
            assert!(Instant::now() < deadline, "the cluster did not reach cluster_state:ok within {START_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Empties every master (FLUSHALL reaches only the node it is sent to).
    pub fn flush_all(&self) {
        for node in &self.nodes {
            assert_eq!(node.cli(&["FLUSHALL"]), "OK");
        }
    }

    /// The id of the node on `port` (its own view).
    fn node_id(&self, port: u16) -> String {
        let node = self.nodes.iter().find(|n| n.port == port).expect("a node of this cluster");
        node.cli(&["CLUSTER", "MYID"])
    }

    /// Moves the slot of `key` with its keys to the master on `to` (another
    /// master), as a resharding does: the old owner then ends its sharded
    /// subscriptions of channels in that slot.
    pub fn migrate_slot(&mut self, key: &str, to: u16) {
        self.wait_until_serving();
        let slot = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]);
        let from = self.node_for(key).port;
        assert_ne!(from, to, "the slot is on {to} already");
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let node = |port: u16| self.nodes.iter().find(|n| n.port == port).expect("a node of this cluster");
        assert_eq!(node(to).cli(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]), "OK");
        assert_eq!(node(from).cli(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]), "OK");
        loop {
            let keys = node(from).cli(&["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1"];
            let to_port = to.to_string();
            args.push(&to_port);
            args.extend(["", "0", "5000", "KEYS"]);
            args.extend(keys);
            // A master just back from a pause may still be marked failed
            // by the others for a moment: MIGRATE is tried until it works.
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                match node(from).run_cli(&args) {
                    Ok(out) if out == "OK" || out == "NOKEY" => break,
                    outcome => assert!(Instant::now() < deadline, "MIGRATE of slot {slot} to {to} kept failing: {outcome:?}"),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        for n in &self.nodes {
            assert_eq!(n.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]), "OK");
        }
        self.wait_until_serving();
    }

    /// The master serving `key`'s slot.
    pub fn node_for(&mut self, key: &str) -> &mut RedisServer {
        let slot: u16 = self.nodes[0].cli(&["CLUSTER", "KEYSLOT", key]).parse().expect("a slot number");
        let table = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        let port = table
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let serves = fields.get(8..)?.iter().any(|range| {
                    let (from, to) = range.split_once('-').unwrap_or((range, range));
                    matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(from), Ok(to)) if (from..=to).contains(&slot))
                });
                let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse::<u16>().ok()?;
                serves.then_some(port)
            })
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {table}"));
        self.nodes.iter_mut().find(|n| n.port == port).expect("a node of this cluster")
    }
}

/// A standalone server or a Cluster, for tests that must hold on both.
pub enum Redis {
    Standalone(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    pub fn standalone(persistence: Persistence) -> Self {
        Redis::Standalone(RedisServer::start_with(persistence))
    }

    /// Three masters.
    pub fn cluster(persistence: Persistence) -> Self {
        Redis::Cluster(RedisCluster::start_with(3, persistence))
    }

    pub fn standalone_with_users(persistence: Persistence, users: &[(&str, &str)]) -> Self {
        Redis::Standalone(RedisServer::start_with_users(persistence, users))
    }

    pub fn cluster_with_users(persistence: Persistence, users: &[(&str, &str)]) -> Self {
        Redis::Cluster(RedisCluster::start_with_users(3, persistence, users))
    }

    /// What to give `--redis`: the URL, or every seed separated by commas.
    pub fn url(&self) -> String {
        match self {
            Redis::Standalone(s) => s.url(),
            Redis::Cluster(c) => c.urls().join(","),
        }
    }

    /// [`Redis::url`] for an ACL user.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        self.servers().iter().map(|s| s.url_as(user, password)).collect::<Vec<_>>().join(",")
    }

    /// Every server: the one, or the Cluster's masters.
    pub fn servers(&self) -> Vec<&RedisServer> {
        match self {
            Redis::Standalone(s) => vec![s],
            Redis::Cluster(c) => c.nodes.iter().collect(),
        }
    }

    /// After a server restarted: waits until it (or the Cluster) serves.
    pub fn wait_until_serving(&self) {
        if let Redis::Cluster(c) = self {
            c.wait_until_serving();
        }
    }

    /// Runs a command on every server; their outputs.
    pub fn cli_everywhere(&self, args: &[&str]) -> Vec<String> {
        match self {
            Redis::Standalone(s) => vec![s.cli(args)],
            Redis::Cluster(c) => c.nodes.iter().map(|n| n.cli(args)).collect(),
        }
    }

    /// The server holding `key`.
    pub fn server_for(&mut self, key: &str) -> &mut RedisServer {
        match self {
            Redis::Standalone(s) => s,
            Redis::Cluster(c) => c.node_for(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standalone_server_starts_on_its_own_port_and_forgets_on_restart() {
        let mut s = RedisServer::start();
        assert_ne!(s.port, 6379);
        assert_eq!(s.cli(&["SET", "k", "v"]), "OK");
        assert_eq!(s.cli(&["GET", "k"]), "v");
        s.restart();
        assert_eq!(s.cli(&["EXISTS", "k"]), "0", "no persistence: a restart loses the data");
    }

    #[test]
    fn an_append_only_server_keeps_what_it_acknowledged_across_a_kill() {
        let mut s = RedisServer::start_with(Persistence::AofAlways);
        assert_eq!(s.cli(&["SET", "k", "v"]), "OK");
        s.kill();
        assert!(!s.is_running());
        s.restart();
        assert_eq!(s.cli(&["GET", "k"]), "v");
    }

    #[test]
    fn a_cluster_of_three_masters_serves_every_slot() {
        let c = RedisCluster::start(3);
        assert_eq!(c.urls().len(), 3);
        let info = c.nodes[0].cli(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
        // Keys of one hash tag live in one slot.
        assert_eq!(c.nodes[0].cli(&["CLUSTER", "KEYSLOT", "chorus:{team/plan}:members"]), c.nodes[0].cli(&["CLUSTER", "KEYSLOT", "chorus:{team/plan}:doc:body"]));
    }

    #[test]
    fn a_restarted_cluster_master_keeps_its_keys_and_its_slots() {
        let mut c = RedisCluster::start_with(3, Persistence::AofAlways);
        let owner = c.node_for("chorus:{r}:k");
        assert_eq!(owner.cli(&["SET", "chorus:{r}:k", "v"]), "OK");
        let port = owner.port;
        owner.restart();
        c.wait_until_serving();
        let owner = c.node_for("chorus:{r}:k");
        assert_eq!(owner.port, port);
        assert_eq!(owner.cli(&["GET", "chorus:{r}:k"]), "v");
    }

    #[test]
    fn a_restored_backup_holds_the_older_data_and_keeps_its_persistence() {
        let mut s = RedisServer::start_with(Persistence::AofAlways);
        s.cli(&["SET", "k", "old"]);
        let backup = s.save_rdb();
        s.cli(&["SET", "k", "new"]);
        s.cli(&["SET", "other", "x"]);
        s.restore_rdb(&backup);
        assert_eq!((s.cli(&["GET", "k"]), s.cli(&["EXISTS", "other"])), ("old".into(), "0".into()));
        s.cli(&["SET", "after", "y"]);
        s.restart();
        assert_eq!(s.cli(&["GET", "after"]), "y", "AOF is on again after the restore");
    }

    #[test]
    fn a_refused_user_is_refused_until_admitted() {
        let s = RedisServer::start_with_users(Persistence::None, &[("node1", "pw1")]);
        let url = s.url_as("node1", "pw1");
        let ping = |url: &str| redis::Client::open(url).and_then(|c| c.get_connection()).and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        assert_eq!(ping(&url).unwrap(), "PONG");
        s.refuse_user("node1");
        assert!(ping(&url).is_err());
        assert_eq!(ping(&s.url()).unwrap(), "PONG", "others are not refused");
        s.admit_user("node1");
        assert_eq!(ping(&url).unwrap(), "PONG");
    }

    #[test]
    fn a_slot_moves_with_its_keys() {
        let mut c = RedisCluster::start(3);
        let key = "chorus:{moving}:k";
        c.node_for(key).cli(&["SET", key, "v"]);
        let from = c.node_for(key).port;
        let to = c.nodes.iter().map(|n| n.port).find(|p| *p != from).unwrap();
        c.migrate_slot(key, to);
        assert_eq!(c.node_for(key).port, to);
        assert_eq!(c.node_for(key).cli(&["GET", key]), "v");
    }
}
