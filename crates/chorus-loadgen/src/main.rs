//! `chorus-loadgen`: drives a Chorus server with real clients over real
//! sockets and reports what it measured.
//!
//! Each workload can start its own server (`--spawn PATH`, a fresh process per
//! run, so its peak memory belongs to that run alone) or target a running one
//! (`--url`, with `--server-pid` to read its memory). Everything stays on this
//! machine; every run is bounded in time.
//!
//! - `cursor-storm` (W2): C clients in one room each move their cursor at a
//!   fixed rate; reports sent/s, delivered/s against expected (every other
//!   member gets every update), delivery latency p50/p99, and the server's
//!   peak memory.
//! - `idle`: N connections joined to R rooms, doing nothing but heartbeats;
//!   reports the server's memory per connection.
//! - `edit-storm` (W1): C clients in one document, each inserting one
//!   character at a random position with one op in flight; reports
//!   committed ops/s, submit-to-ack latency (p50, p99, max) and
//!   submit-to-seen-by-another-client latency, and checks that everyone
//!   converged on the server's text. Runs on an empty document and on one of
//!   `--doc-bytes`, without or with undo histories (`--undo off,on`: both).
//! - `trace`: one client replays the automerge-paper trace op by op (each
//!   op waits for its ack) over the socket; reports the time it took.
//! - `ping`: heartbeat round trips on one connection, the floor under every
//!   request/reply latency above.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chorus_client::{Client, ConnectOptions};
use chorus_core::client::OtClient;
use chorus_core::text::{TextDoc, TextOp};
use chorus_protocol::ServerMessage;
use chorus_redis::ROUND_TRIPS;

/// Groups the store refused because another node committed first (see the
/// server's metrics).
const CONFLICTS: &str = "chorus_commit_conflicts_total";
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;

#[derive(Parser)]
#[command(name = "chorus-loadgen", about = "Load generator for Chorus")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// W2: cursor storm in one room.
    CursorStorm(StormArgs),
    /// Idle connections spread over rooms: memory per connection.
    Idle(IdleArgs),
    /// W1: edit storm in one document.
    EditStorm(EditArgs),
    /// The automerge-paper trace, op by op, over the socket.
    Trace(TraceArgs),
    /// Heartbeat round trips on one connection: the floor under every
    /// request/reply latency (socket, framing, the server's session task).
    Ping(TraceArgs),
    /// Opening a large document with a long log, from the store: the
    /// document is written, the server restarted on its data, and a new
    /// client's open timed (on `memory`, which keeps nothing across a
    /// restart, the open is timed without one).
    OpenDoc(OpenArgs),
}

#[derive(Args)]
struct OpenArgs {
    #[command(flatten)]
    target: Target,
    /// Size of the document, in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    bytes: usize,
    /// Ops it is written in.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// Opens timed (each after a restart).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[derive(Args)]
struct EditArgs {
    #[command(flatten)]
    target: Target,
    /// Client counts to run, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    clients: Vec<usize>,
    /// Document sizes to start from, in bytes (0: empty), one run each.
    #[arg(long, value_delimiter = ',', default_value = "0,1000000")]
    doc_bytes: Vec<usize>,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Undo histories: `off` (the default), `on` (every editor opens the
    /// document with its undo history kept, as clients that offer undo do;
    /// `--undo` alone), or `off,on` to run both, one after the other, in
    /// adjacent rows.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off", num_args = 0..=1, default_missing_value = "on")]
    undo: Vec<Histories>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum Histories {
    Off,
    On,
}

#[derive(Args)]
struct TraceArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Clone)]
struct Target {
    /// Start this `chorus` binary for each run (recommended: target/release/chorus).
    #[arg(long, conflicts_with = "url")]
    spawn: Option<PathBuf>,
    /// WebSocket URL of a running server, e.g. ws://127.0.0.1:8787/v1/ws.
    #[arg(long)]
    url: Option<String>,
    /// Process id of that running server, to read its memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// With --spawn: start this many nodes sharing one Redis (a fresh
    /// `redis-server` on a free port per run); clients go to the nodes in turn.
    #[arg(long, default_value_t = 1, requires = "spawn")]
    nodes: usize,
    /// With --nodes: share a Redis Cluster of 3 masters instead of one
    /// standalone Redis.
    #[arg(long, requires = "nodes")]
    cluster: bool,
    /// With --spawn: start each node with `--workers N`, its worker
    /// threads (default: the server's own, one per core). Nodes that share
    /// the machine are best given a share of its cores each.
    #[arg(long, value_name = "N", requires = "spawn")]
    workers: Option<usize>,
    /// With --spawn and one node: the stores to run on, one run each
    /// (`memory`; `sqlite`, the default store, with synchronous=FULL;
    /// `sqlite-normal`), each in a fresh data folder. The edit storm runs
    /// every one of them back to back for each setting; other workloads use
    /// the first.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "memory")]
    store: Vec<StoreKind>,
}

impl Target {
    /// Says, under a workload's title, what runs the server when it is not
    /// one node with its defaults.
    fn describe(&self) {
        if self.nodes > 1 {
            let redis = if self.cluster { "a Redis Cluster of 3 masters" } else { "one Redis" };
            println!("{} nodes sharing {redis}; clients spread over them", self.nodes);
        }
        if let Some(workers) = self.workers {
            println!("every node runs {workers} worker thread{} (--workers {workers})", if workers == 1 { "" } else { "s" });
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum StoreKind {
    Memory,
    Sqlite,
    SqliteNormal,
}

impl StoreKind {
    fn label(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Sqlite => "SQLite FULL",
            StoreKind::SqliteNormal => "SQLite NORMAL",
        }
    }
}

#[derive(Args)]
struct StormArgs {
    #[command(flatten)]
    target: Target,
    /// Client counts to run, one run each.
    #[arg(long, value_delimiter = ',', default_value = "8,32,64")]
    clients: Vec<usize>,
    /// Cursor moves per second per client.
    #[arg(long, default_value_t = 20)]
    hz: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Text cursors inside a document (tagged with its version, anchored
    /// by the server through the ops since) instead of free x/y cursors.
    #[arg(long)]
    in_doc: bool,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value_t = 5_000)]
    connections: usize,
    #[arg(long, default_value_t = 100)]
    rooms: usize,
}

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn micros() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// A server to talk to: nodes this run started (sharing a Redis or a Redis
/// Cluster when there are several), or one given.
struct Server {
    urls: Vec<String>,
    pids: Vec<u32>,
    children: Vec<Child>,
    redis: Option<chorus_redis::testing::Redis>,
    /// The data folder of a node on the embedded SQLite store.
    data: Option<TempDir>,
}

/// A temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("chorus-loadgen-{}-{}", std::process::id(), micros()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    async fn start(target: &Target) -> anyhow::Result<Server> {
        Self::start_on(target, target.store.first().copied().unwrap_or(StoreKind::Memory), None).await
    }

    /// Starts the target's nodes on `store`; with `data`, in that folder
    /// (a restart on the same database).
    async fn start_on(target: &Target, store: StoreKind, data: Option<TempDir>) -> anyhow::Result<Server> {
        if let Some(url) = &target.url {
            return Ok(Server { urls: vec![url.clone()], pids: target.server_pid.into_iter().collect(), children: vec![], redis: None, data: None });
        }
        let Some(bin) = &target.spawn else { bail!("give --spawn PATH_TO_CHORUS or --url URL") };
        use chorus_redis::testing::{Persistence, Redis};
        let redis = (target.nodes > 1).then(|| if target.cluster { Redis::cluster(Persistence::None) } else { Redis::standalone(Persistence::None) });
        let data = match (store, &redis, data) {
            (StoreKind::Memory, _, _) | (_, Some(_), _) => None,
            (_, None, Some(data)) => Some(data),
            (_, None, None) => Some(TempDir::new()?),
        };
        let mut server = Server { urls: vec![], pids: vec![], children: vec![], redis, data };
        for _ in 0..target.nodes.max(1) {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let mut cmd = Command::new(bin);
            cmd.args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")]);
            if let Some(workers) = target.workers {
                cmd.args(["--workers", &workers.to_string()]);
            }
            match (&server.redis, &server.data) {
                (Some(redis), _) => drop(cmd.args(["--redis", &redis.url()])),
                (None, Some(data)) => {
                    let sync = if store == StoreKind::SqliteNormal { "normal" } else { "full" };
                    cmd.arg("--data").arg(&data.0).args(["--sqlite-sync", sync]);
                }
                (None, None) => drop(cmd.arg("--memory")),
            }
            let child = cmd
                .env("CHORUS_LOG", "warn")
                .env("CHORUS_MEMBERS_PER_ROOM", "100000")
                .env("CHORUS_MESSAGES_PER_SECOND", "1000000")
                .stdout(Stdio::null())
                .spawn()
                .with_context(|| format!("start {}", bin.display()))?;
            server.pids.push(child.id());
            server.children.push(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                if Instant::now() > deadline {
                    bail!("the server did not start listening on port {port}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            server.urls.push(format!("ws://127.0.0.1:{port}/v1/ws"));
        }
        Ok(server)
    }

    /// Stops the nodes (SIGKILL) and hands back the data folder.
    fn stop(mut self) -> Option<TempDir> {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.data.take()
    }

    /// A counter summed over the nodes' /metrics (0 when absent).
    async fn counter(&self, name: &str) -> Option<f64> {
        let mut total = 0.0;
        for url in &self.urls {
            total += Self::node_counter(url, name).await?;
        }
        Some(total)
    }

    /// Counters summed over the nodes' /metrics, in the order asked.
    async fn counters(&self, names: &[&str]) -> Option<Vec<f64>> {
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            values.push(self.counter(name).await?);
        }
        Some(values)
    }

    /// A counter from one node's /metrics (0 when absent).
    async fn node_counter(url: &str, name: &str) -> Option<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = url.strip_prefix("ws://")?.split('/').next()?.to_owned();
        let mut stream = tokio::net::TcpStream::connect(&host).await.ok()?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await.ok()?;
        let value = body.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' ')).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
        Some(value.unwrap_or(0.0))
    }

    /// The node the `i`th client connects to.
    fn url(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    /// CPU time used so far by the nodes (user + system), in seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        let mut total = 0.0;
        for pid in &self.pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which is in parentheses.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            total += ticks as f64 / 100.0;
        }
        (!self.pids.is_empty()).then_some(total)
    }

    /// CPU time used so far by the nodes, in nanoseconds: every thread's
    /// time on a CPU, as the scheduler counts it (`/proc/PID/task/*/schedstat`),
    /// which is exact where `/proc/PID/stat` counts 10 ms ticks.
    fn cpu_nanos(&self) -> Option<u64> {
        let mut total = 0;
        for pid in &self.pids {
            for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
                let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("schedstat")) else { continue };
                total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
            }
        }
        (!self.pids.is_empty()).then_some(total)
    }

    /// CPU time the nodes use from now until they are idle again (no more
    /// than a millisecond in 100 ms), in milliseconds, the quiet 100 ms not
    /// counted; `None` when it cannot be read or they are still busy after
    /// 30 s.
    async fn cpu_ms_until_idle(&self, from: u64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = from;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.cpu_nanos()?;
            if now - last < 1_000_000 {
                return Some((last - from) as f64 / 1e6);
            }
            last = now;
        }
        None
    }

    /// (current, peak) resident memory of the nodes together, in KiB.
    ///
    /// Most of a small node's figure is its executable, not its heap: the
    /// pages of code, constants and relocations it has touched (at W2's 8
    /// clients, about 9 of a node's 10 MB; its heap under 1 MB). That part
    /// grows with the binary, and it depends on how the binary's file sits
    /// in the page cache: the same binary copied with `cp` showed about
    /// 1 MB more than when written in 4 KiB blocks, as the kernel maps a
    /// file's cached pages around each fault in runs. Compare binaries
    /// written the same way (both just built, or both copied alike), and
    /// read `RssAnon` in `/proc/PID/status` for the heap's share.
    fn memory_kib(&self) -> Option<(u64, u64)> {
        let mut total = (0, 0);
        for pid in &self.pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| -> Option<u64> {
                status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
            };
            total = (total.0 + field("VmRSS:")?, total.1 + field("VmHWM:")?);
        }
        (!self.pids.is_empty()).then_some(total)
    }

    /// Commands Redis has run so far: (scripts run, which are the round
    /// trips of commits; every command, those run inside scripts included),
    /// from `INFO commandstats`, less the INFO calls themselves.
    fn redis_calls(&self) -> Option<(u64, u64)> {
        let stats = self.redis.as_ref()?.cli_everywhere(&["INFO", "commandstats"]);
        let calls = |l: &str| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok();
        let counted: Vec<(&str, u64)> = stats
            .iter()
            .flat_map(|s| s.lines())
            .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
            .filter_map(|l| Some((l, calls(l)?)))
            .collect();
        let scripts = counted.iter().filter(|(l, _)| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:")).map(|(_, n)| n).sum();
        Some((scripts, counted.iter().map(|(_, n)| n).sum()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// One thread: the generator's clients then hand messages between their own
// tasks without waking another thread, which on a 2-core machine would cost
// more than the server's work per message; the other core is the server's.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    epoch();
    match Cli::parse().workload {
        Workload::CursorStorm(args) => cursor_storm(args).await,
        Workload::Idle(args) => idle(args).await,
        Workload::EditStorm(args) => edit_storm(args).await,
        Workload::Trace(args) => trace(args).await,
        Workload::Ping(args) => ping(args).await,
        Workload::OpenDoc(args) => open_doc(args).await,
    }
}

/// What a run may take beyond its measured seconds: seeding the document,
/// connecting, the convergence check and the disconnect measure.
const RUN_ALLOWANCE: Duration = Duration::from_secs(120);

/// Runs one measured run, failing it if it goes on well past its length:
/// a server that stops answering somewhere no per-frame timeout covers
/// must end the benchmark with an error, not hang it (and whatever waits
/// on it) for good. The spawned servers are killed as the error unwinds.
async fn bounded<T>(seconds: u64, what: &str, run: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let limit = Duration::from_secs(seconds) + RUN_ALLOWANCE;
    match tokio::time::timeout(limit, run).await {
        Ok(result) => result,
        Err(_) => bail!("the {what} did not finish within {} s ({seconds} s measured + {} s allowance): the server stopped answering", limit.as_secs(), RUN_ALLOWANCE.as_secs()),
    }
}

async fn cursor_storm(args: StormArgs) -> anyhow::Result<()> {
    let kind = if args.in_doc { "text cursors in a document" } else { "x/y cursors" };
    println!("W2 cursor storm: 1 room, {kind}, {} Hz per client, {} s per run", args.hz, args.seconds);
    args.target.describe();
    println!("| clients | sent/s | delivered/s | expected/s | delivered | p50 ms | p99 ms | max ms | server CPU | server peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &c in &args.clients {
        let server = Server::start(&args.target).await?;
        let cpu_before = server.cpu_seconds();
        let r = bounded(args.seconds, "W2 run", storm_run(&server, c, args.hz, Duration::from_secs(args.seconds), args.in_doc)).await?;
        let cpu = match (cpu_before, server.cpu_seconds()) {
            (Some(a), Some(b)) => format!("{:.0} %", 100.0 * (b - a) / r.wall.as_secs_f64()),
            _ => "-".into(),
        };
        let peak = server.memory_kib().map_or("-".into(), |(_, hwm)| format!("{:.1}", hwm as f64 / 1024.0));
        let secs = args.seconds as f64;
        println!(
            "| {c} | {:.0} | {:.0} | {:.0} | {:.2} % | {:.2} | {:.2} | {:.2} | {cpu} | {peak} |",
            r.sent as f64 / secs,
            r.delivered as f64 / secs,
            r.expected as f64 / secs,
            100.0 * r.delivered as f64 / r.expected.max(1) as f64,
            r.latency.value_at_quantile(0.5) as f64 / 1000.0,
            r.latency.value_at_quantile(0.99) as f64 / 1000.0,
            r.latency.max() as f64 / 1000.0,
        );
    }
    Ok(())
}

struct StormResult {
    /// Wall time of the whole run, joins to last delivery.
    wall: Duration,
    sent: u64,
    delivered: u64,
    expected: u64,
    latency: Histogram<u64>,
}

/// One storm client: a bare WebSocket speaking the protocol, reading only
/// what the measurement needs, so the generator spends its CPU on the
/// traffic and not on decoding it (the server is what is being measured).
async fn storm_client(url: &str, user: &str, room: &str, doc: Option<&str>) -> anyhow::Result<Socket> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(format!("{url}?user={user}"), Some(socket_config()), true).await?;
    ws.send(Message::Text(r#"{"type":"hello","protocol":1}"#.into())).await?;
    ws.send(Message::Text(format!(r#"{{"type":"join","id":1,"room":"{room}"}}"#).into())).await?;
    if let Some(doc) = doc {
        ws.send(Message::Text(format!(r#"{{"type":"open_doc","id":2,"room":"{room}","doc":"{doc}"}}"#).into())).await?;
    }
    let ready = if doc.is_some() { r#""type":"opened""# } else { r#""type":"joined""# };
    while let Some(frame) = ws.next().await {
        if let Message::Text(t) = frame? {
            if t.contains(ready) {
                return Ok(ws);
            }
            if t.contains(r#""type":"error""#) {
                bail!("join refused: {t}");
            }
        }
    }
    bail!("connection closed during join")
}

/// The send time a cursor message carries in its `"t":` field.
fn cursor_sent_at(text: &str) -> Option<u64> {
    if !text.starts_with(r#"{"type":"cursor""#) {
        return None;
    }
    let at = text.find(r#""t":"#)? + 4;
    let digits: &str = &text[at..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Ops in the W2 document before the storm, so that cursors tagged with
/// slightly older versions are moved through a few of them.
const W2_DOC_OPS: u64 = 10;

async fn storm_run(server: &Server, clients: usize, hz: u32, duration: Duration, in_doc: bool) -> anyhow::Result<StormResult> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let began = Instant::now();
    let room = format!("storm-{}", micros());
    let doc = in_doc.then_some("w2");
    if let Some(doc) = doc {
        let options = ConnectOptions { timeout: Duration::from_secs(30), ..ConnectOptions::dev("seeder") };
        let mut seed = Client::connect(server.url(0), options).await?;
        seed.join(&room, None).await?;
        seed.open_doc(&room, doc).await?;
        for _ in 0..W2_DOC_OPS {
            seed.insert(&room, doc, 0, "several words of text ")?;
            seed.sync(&room, doc).await?;
        }
        seed.close().await;
    }
    let mut joined = Vec::new();
    for i in 0..clients {
        joined.push(storm_client(server.url(i), &format!("load-{i}"), &room, doc).await?);
    }
    // Let the join announcements settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let start = micros();
    let end = start + duration.as_micros() as u64;
    let mut tasks = Vec::new();
    for (i, ws) in joined.into_iter().enumerate() {
        let (sent, delivered, hist, room) = (sent.clone(), delivered.clone(), hist.clone(), room.clone());
        let (mut tx, mut rx) = ws.split();
        // Receiver: record the latency of every cursor sent during the run.
        let receiver = tokio::spawn({
            let hist = hist.clone();
            async move {
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds are valid");
                loop {
                    let wait = Duration::from_micros((end + 2_000_000).saturating_sub(micros()));
                    match tokio::time::timeout(wait, rx.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            if let Some(at) = cursor_sent_at(&t) {
                                if at < end {
                                    delivered.fetch_add(1, Ordering::Relaxed);
                                    local.saturating_record(micros().saturating_sub(at).max(1));
                                }
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        _ => break,
                    }
                }
                hist.lock().expect("no panics while holding it").add(&local).expect("same bounds");
            }
        });
        // Sender: a fixed schedule, staggered across clients as real users are.
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1) / hz * (i as u32) / (clients as u32)).await;
            let mut tick = tokio::time::interval(Duration::from_secs(1) / hz);
            loop {
                tick.tick().await;
                let now = micros();
                if now >= end {
                    break;
                }
                let msg = match doc {
                    // A caret somewhere in the text, seen at the head or a
                    // version or two before it.
                    Some(doc) => format!(
                        r#"{{"type":"cursor","room":"{room}","doc":"{doc}","version":{},"cursor":{{"anchor":{},"head":{},"t":{now}}}}}"#,
                        W2_DOC_OPS - (i as u64 % 3),
                        now % 100,
                        now % 100 + i as u64 % 7,
                    ),
                    None => format!(r#"{{"type":"cursor","room":"{room}","cursor":{{"x":{i},"y":{},"t":{now}}}}}"#, now % 1000),
                };
                if tx.send(Message::Text(msg.into())).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = receiver.await;
            let _ = tx.close().await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    let sent = sent.load(Ordering::Relaxed);
    let latency = Arc::try_unwrap(hist).map_err(|_| anyhow::anyhow!("histogram still shared"))?.into_inner()?;
    Ok(StormResult { wall: began.elapsed(), sent, delivered: delivered.load(Ordering::Relaxed), expected: sent * (clients as u64 - 1), latency })
}

async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let server = Server::start(&args.target).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (base, _) = server.memory_kib().context("need the server's pid (--spawn, or --server-pid)")?;
    let urls = Arc::new(server.urls.clone());
    let mut clients = Vec::with_capacity(args.connections);
    let started = Instant::now();
    // Connect in waves so the accept queue is never the bottleneck.
    for wave in (0..args.connections).collect::<Vec<_>>().chunks(250) {
        let mut tasks = Vec::new();
        for &i in wave {
            let (urls, room) = (urls.clone(), format!("idle-{}", i % args.rooms));
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&urls[i % urls.len()], ConnectOptions::dev(&format!("idle-{i}"))).await?;
                c.join(&room, None).await?;
                anyhow::Ok(c)
            }));
        }
        for t in tasks {
            clients.push(t.await??);
        }
    }
    let connect_time = started.elapsed();
    // Let join announcements drain, then read the server's memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss, hwm) = server.memory_kib().context("read server memory")?;
    let per_conn = (rss.saturating_sub(base)) as f64 * 1024.0 / args.connections as f64;
    println!("idle: {} connections in {} rooms (connected and joined in {:.1} s)", args.connections, args.rooms, connect_time.as_secs_f64());
    println!("server RSS: {:.1} MiB before, {:.1} MiB after (peak {:.1} MiB)", base as f64 / 1024.0, rss as f64 / 1024.0, hwm as f64 / 1024.0);
    println!("memory per connection: {:.1} KB", per_conn / 1000.0);
    for c in clients {
        c.abort();
    }
    Ok(())
}

const DOC_ROOM: &str = "load/docs";

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds are valid")
}

fn ms(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        let micros = if q >= 1.0 { h.max() } else { h.value_at_quantile(q) };
        format!("{:.2}", micros as f64 / 1000.0)
    }
}

/// A client in the document room with `doc` open.
async fn doc_client(url: &str, user: &str, doc: &str) -> anyhow::Result<Client> {
    let options = ConnectOptions { timeout: Duration::from_secs(30), ..ConnectOptions::dev(user) };
    let mut c = Client::connect(url, options).await?;
    c.join(DOC_ROOM, None).await?;
    c.open_doc(DOC_ROOM, doc).await?;
    Ok(c)
}

async fn open_doc(args: OpenArgs) -> anyhow::Result<()> {
    println!("Open a document of {} bytes written in {} ops, after a restart of the server on its data", args.bytes, args.ops);
    println!("| store | ops in the log | open ms (each) | open ms (median) |");
    println!("|---|---|---|---|");
    for &store in &args.target.store {
        let mut server = Server::start_on(&args.target, store, None).await?;
        let doc = format!("open-{}", micros());
        // Writers in parallel, each op waited for (one op each, not composed).
        let writers = 8;
        let chunk = "x".repeat(args.bytes / args.ops);
        let mut tasks = Vec::new();
        for w in 0..writers {
            let mut c = doc_client(server.url(0), &format!("writer-{w}"), &doc).await?;
            let (doc, chunk, n) = (doc.clone(), chunk.clone(), args.ops / writers + usize::from(w < args.ops % writers));
            tasks.push(tokio::spawn(async move {
                for _ in 0..n {
                    c.insert(DOC_ROOM, &doc, 0, &chunk)?;
                    c.sync(DOC_ROOM, &doc).await?;
                }
                c.close().await;
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let mut times = Vec::new();
        let mut logged = 0;
        for _ in 0..args.repeat {
            if store != StoreKind::Memory {
                let data = server.stop();
                server = Server::start_on(&args.target, store, data).await?;
            }
            let options = ConnectOptions { timeout: Duration::from_secs(30), ..ConnectOptions::dev("opener") };
            let mut c = Client::connect(server.url(0), options).await?;
            c.join(DOC_ROOM, None).await?;
            let t0 = Instant::now();
            let d = c.open_doc(DOC_ROOM, &doc).await?;
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            logged = d.version();
            anyhow::ensure!(d.text().len_chars() == chunk.len() * args.ops, "the document has {} chars", d.text().len_chars());
            c.close().await;
        }
        let each: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        times.sort_by(f64::total_cmp);
        println!("| {} | {logged} | {} | {:.1} |", store.label(), each.join(", "), times[times.len() / 2]);
    }
    Ok(())
}

async fn edit_storm(args: EditArgs) -> anyhow::Result<()> {
    let history = match args.undo.as_slice() {
        [Histories::On] => ", undo histories kept",
        [Histories::Off] => "",
        _ => "; `histories`: whether every editor keeps an undo history",
    };
    println!("W1 edit storm: 1 document, one 1-character insert in flight per client{history}, {} s per run", args.seconds);
    args.target.describe();
    println!("| store | start size | clients | histories | committed ops/s | ack p50 ms | ack p99 ms | ack max ms | seen p50 ms | seen p99 ms | converged | server CPU | disconnect CPU ms | Redis round trips/op | Redis scripts/op | Redis commands/op | commit conflicts/op | SQLite transactions/op | SQLite µs/transaction: statements + COMMIT | SQLite queued µs/write |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &args.doc_bytes {
        for &c in &args.clients {
          for &store in &args.target.store {
           for &undo in &args.undo {
            let server = Server::start_on(&args.target, store, None).await?;
            let r = bounded(args.seconds, "W1 run", edit_run(&server, c, size, Duration::from_secs(args.seconds), undo == Histories::On)).await?;
            println!(
                "| {} | {} | {c} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                if args.target.nodes > 1 { "Redis" } else { store.label() },
                if size == 0 { "empty".to_string() } else { format!("{:.1} MB", size as f64 / 1e6) },
                if undo == Histories::On { "yes" } else { "no" },
                r.ops as f64 / args.seconds as f64,
                ms(&r.ack, 0.5),
                ms(&r.ack, 0.99),
                ms(&r.ack, 1.0),
                ms(&r.seen, 0.5),
                ms(&r.seen, 0.99),
                if r.converged { "yes" } else { "NO" },
                r.cpu,
                r.disconnect_ms.map_or("-".into(), |ms| format!("{ms:.0}")),
                r.redis_per_op.as_ref().map_or("-".into(), |w| format!("{:.2}", w.round_trips)),
                r.redis_per_op.as_ref().map_or("-".into(), |w| format!("{:.2}", w.scripts)),
                r.redis_per_op.as_ref().map_or("-".into(), |w| format!("{:.2}", w.commands)),
                r.redis_per_op.as_ref().map_or("-".into(), |w| format!("{:.3}", w.conflicts)),
                r.sqlite.as_ref().map_or("-".into(), |w| format!("{:.3}", w.transactions_per_op)),
                r.sqlite.as_ref().map_or("-".into(), |w| format!("{:.0} + {:.0}", w.statement_us, w.commit_us)),
                r.sqlite.as_ref().map_or("-".into(), |w| format!("{:.0}", w.queued_us)),
            );
            if !r.converged {
                bail!("clients diverged");
            }
           }
          }
        }
    }
    Ok(())
}

/// Redis work per committed op, all nodes together.
struct RedisWork {
    /// Requests the nodes sent Redis and waited for (their own count).
    round_trips: f64,
    /// Scripts Redis ran.
    scripts: f64,
    /// Commands Redis ran, those inside scripts included.
    commands: f64,
    /// Groups the store refused because the other node committed first.
    conflicts: f64,
}

/// The SQLite writer's work during a run (see the server's metrics).
struct SqliteWork {
    /// Transactions (each one fsync under synchronous=FULL) per committed op.
    transactions_per_op: f64,
    /// Per transaction: running its statements, and its COMMIT (the WAL
    /// written and, under FULL, fsynced).
    statement_us: f64,
    commit_us: f64,
    /// Per write: from being sent to the writer thread to its transaction starting.
    queued_us: f64,
}

/// The SQLite writer's counters, in order: transactions, writes, queued,
/// statement and commit microseconds.
const SQLITE_COUNTERS: [&str; 5] = [
    "chorus_sqlite_transactions_total",
    "chorus_sqlite_writes_total",
    "chorus_sqlite_queued_microseconds_total",
    "chorus_sqlite_statement_microseconds_total",
    "chorus_sqlite_commit_microseconds_total",
];

struct EditResult {
    ops: u64,
    /// Redis work per committed op during the run, with Redis.
    redis_per_op: Option<RedisWork>,
    /// The SQLite writer's work during the run, on the SQLite store.
    sqlite: Option<SqliteWork>,
    ack: Histogram<u64>,
    seen: Histogram<u64>,
    converged: bool,
    cpu: String,
    /// Server CPU from closing every connection to the server going idle
    /// (the editors' histories released and saved, the room unloaded).
    disconnect_ms: Option<f64>,
}

async fn edit_run(server: &Server, clients: usize, size: usize, duration: Duration, undo: bool) -> anyhow::Result<EditResult> {
    let doc = format!("w1-{}", micros());
    if size > 0 {
        // Fill the document in ops under the default op size limit.
        let mut seed = doc_client(server.url(0), "seeder", &doc).await?;
        let line = "Chorus load generator filler text, one line of it after another.\n";
        let mut written = 0;
        while written < size {
            let chunk: String = line.repeat((30_000 / line.len()).min((size - written).div_ceil(line.len())));
            written += chunk.len();
            seed.insert(DOC_ROOM, &doc, 0, &chunk)?;
            seed.sync(DOC_ROOM, &doc).await?;
        }
        seed.close().await;
    }
    let mut joined = Vec::new();
    for i in 0..clients {
        joined.push(EditClient::open(server.url(i), i, &doc, undo).await?);
    }
    // Client 1 times client 0's ops, under the id the server gave them.
    if let [first, second, ..] = joined.as_mut_slice() {
        second.watch = Some(first.client.clone());
    }
    // Submit times of client 0's ops, by seq, to time when client 1 sees them.
    let submitted: Arc<Mutex<std::collections::HashMap<u64, u64>>> = Arc::default();
    let seen = Arc::new(Mutex::new(new_histogram()));
    let cpu_before = server.cpu_seconds();
    let calls_before = server.redis_calls();
    let trips_before = if server.redis.is_some() { server.counter(ROUND_TRIPS).await } else { None };
    let conflicts_before = if server.redis.is_some() { server.counter(CONFLICTS).await } else { None };
    let sqlite = server.data.is_some();
    let sqlite_before = if sqlite { server.counters(&SQLITE_COUNTERS).await } else { None };
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::new();
    for mut c in joined {
        let (submitted, seen) = (submitted.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut ack = new_histogram();
            let mut ops = 0u64;
            while Instant::now() < end {
                let at = rand::random_range(0..=c.text.len_chars());
                let t0 = micros();
                let seq = c.edit(TextOp::insert(at, char::from(b'a' + (c.index % 26) as u8).to_string())).await?;
                if c.index == 0 {
                    submitted.lock().expect("not poisoned").insert(seq, t0);
                }
                c.read_until(|c| c.ot.is_synchronized(), &submitted, &seen).await?;
                ack.saturating_record(micros().saturating_sub(t0).max(1));
                ops += 1;
            }
            anyhow::Ok((c, ack, ops))
        }));
    }
    let mut ack = new_histogram();
    let mut finished = Vec::new();
    let mut committed = 0;
    for t in tasks {
        let (c, h, n) = t.await??;
        ack.add(&h)?;
        committed += n;
        finished.push(c);
    }
    let wall = started.elapsed();
    let cpu = match (cpu_before, server.cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.0} %", 100.0 * (b - a) / wall.as_secs_f64()),
        _ => "-".into(),
    };
    let trips = match trips_before {
        Some(before) => server.counter(ROUND_TRIPS).await.map(|after| after - before),
        None => None,
    };
    let conflicts = match conflicts_before {
        Some(before) => server.counter(CONFLICTS).await.map(|after| after - before),
        None => None,
    };
    let redis_per_op = match (calls_before, server.redis_calls(), trips, conflicts) {
        (Some(a), Some(b), Some(trips), Some(conflicts)) if committed > 0 => {
            let per_op = |n: f64| n / committed as f64;
            Some(RedisWork {
                round_trips: per_op(trips),
                scripts: per_op((b.0 - a.0) as f64),
                commands: per_op((b.1 - a.1) as f64),
                conflicts: per_op(conflicts),
            })
        }
        _ => None,
    };
    let sqlite = match (sqlite_before, server.counters(&SQLITE_COUNTERS).await) {
        (Some(a), Some(b)) if committed > 0 => {
            let d: Vec<f64> = a.iter().zip(&b).map(|(a, b)| b - a).collect();
            let (transactions, writes) = (d[0].max(1.0), d[1].max(1.0));
            Some(SqliteWork {
                transactions_per_op: d[0] / committed as f64,
                statement_us: d[3] / transactions,
                commit_us: d[4] / transactions,
                queued_us: d[2] / writes,
            })
        }
        _ => None,
    };
    // Convergence: a newcomer's text is the server's; everyone else must
    // reach the same version and the same text.
    let check = doc_client(server.url(0), "checker", &doc).await?;
    let truth = check.doc(DOC_ROOM, &doc).expect("open");
    let (text, version) = (truth.text().to_string(), truth.version());
    let mut converged = true;
    for c in &mut finished {
        c.read_until(|c| c.ot.version() >= version, &submitted, &seen).await?;
        converged &= c.ot.version() == version && c.text.to_string() == text;
    }
    let seen = std::mem::replace(&mut *seen.lock().expect("not poisoned"), new_histogram());
    // Everyone leaves at once, as at the end of a session: what the server
    // spends on it (releasing and saving histories, unloading the room).
    let before_close = server.cpu_nanos();
    for c in &mut finished {
        c.close().await;
    }
    check.close().await;
    let disconnect_ms = match before_close {
        Some(from) => server.cpu_ms_until_idle(from).await,
        None => None,
    };
    Ok(EditResult { ops: committed, redis_per_op, sqlite, ack, seen, converged, cpu, disconnect_ms })
}

/// The fields of a server frame a W1 editor reads, borrowed from the
/// frame where they can be: like the W2 clients, the generator decodes only
/// what the measurement needs (not every frame into a `ServerMessage`, whose
/// tagged and flattened form buffers every field first), so its CPU, which
/// shares the machine with the server, goes to the traffic.
#[derive(serde::Deserialize)]
struct EditFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    seq: u64,
    #[serde(default, borrow)]
    client: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    op: Option<TextOp>,
    #[serde(default)]
    message: Option<String>,
}

/// A W1 editor's `submit`, serialized from where its parts are.
#[derive(serde::Serialize)]
struct SubmitFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    doc: &'a str,
    seq: u64,
    base: u64,
    op: &'a TextOp,
}

/// The generator's bare sockets read into a 4 KiB buffer, as the server's
/// do: tungstenite zero-fills its whole read buffer (128 KiB by default)
/// before every read, the single-threaded generator's largest cost in a
/// profile of W1 (memset, ahead of decoding the frames read).
fn socket_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 * 1024)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A W1 editor: a bare WebSocket and the core's OT client in one task, so
/// the generator spends no task hops of its own on the measured path.
struct EditClient {
    index: usize,
    ws: Socket,
    doc: String,
    text: TextDoc,
    ot: OtClient,
    /// The submitter id the server gave this client's ops (`opened.client`).
    client: String,
    /// The submitter whose ops this client times when it sees them.
    watch: Option<String>,
}

impl EditClient {
    async fn open(url: &str, index: usize, doc: &str, undo: bool) -> anyhow::Result<EditClient> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(format!("{url}?user=editor-{index}"), Some(socket_config()), true).await?;
        for msg in [
            serde_json::json!({"type": "hello", "protocol": 1}),
            serde_json::json!({"type": "join", "room": DOC_ROOM}),
            serde_json::json!({"type": "open_doc", "id": 1, "room": DOC_ROOM, "doc": doc, "client": format!("w1-{index}"), "undo": undo}),
        ] {
            ws.send(Message::Text(msg.to_string().into())).await?;
        }
        while let Some(frame) = ws.next().await {
            if let Message::Text(t) = frame? {
                match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Opened { version, text: Some(text), client, .. }) => {
                        let client = client.unwrap_or_else(|| format!("w1-{index}"));
                        let (text, ot) = (TextDoc::from(text.as_str()), OtClient::new(version, 1));
                        return Ok(EditClient { index, ws, doc: doc.to_owned(), text, ot, client, watch: None });
                    }
                    Ok(ServerMessage::Error { message, .. }) => bail!("open refused: {message}"),
                    _ => {}
                }
            }
        }
        bail!("connection closed while opening the document")
    }

    /// Closes the connection (a close frame, then the socket), as a tab
    /// that is closed does.
    async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Applies a local edit and submits it (one op in flight: the caller
    /// waits for the ack before the next). Returns its seq.
    async fn edit(&mut self, op: TextOp) -> anyhow::Result<u64> {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.text.apply(&op)?;
        let sub = self.ot.local(op).context("one op in flight at a time")?;
        let msg = SubmitFrame { kind: "submit", room: DOC_ROOM, doc: &self.doc, seq: sub.seq, base: sub.base, op: &sub.op };
        self.ws.send(Message::Text(serde_json::to_string(&msg)?.into())).await?;
        Ok(sub.seq)
    }

    /// Reads the server's messages, applying ops and acks, until `done`.
    async fn read_until(
        &mut self,
        done: impl Fn(&EditClient) -> bool,
        submitted: &Mutex<std::collections::HashMap<u64, u64>>,
        seen: &Mutex<Histogram<u64>>,
    ) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        while !done(self) {
            let frame = tokio::time::timeout(Duration::from_secs(30), self.ws.next()).await.context("no message within 30 s")?;
            let Some(Message::Text(t)) = frame.transpose()? else { continue };
            let frame: EditFrame<'_> = serde_json::from_str(&t)?;
            match (frame.kind, frame.op) {
                ("ack", _) => {
                    self.ot.ack(frame.version)?;
                }
                ("op", Some(op)) => {
                    let apply = self.ot.remote(frame.version, &op)?;
                    self.text.apply(&apply)?;
                    if self.watch.is_some() && self.watch.as_deref() == frame.client.as_deref() {
                        if let Some(at) = submitted.lock().expect("not poisoned").remove(&frame.seq) {
                            seen.lock().expect("not poisoned").saturating_record(micros().saturating_sub(at).max(1));
                        }
                    }
                }
                ("op", None) => bail!("an op frame without an op: {t}"),
                ("error", _) => bail!("server error: {}", frame.message.unwrap_or_default()),
                _ => {}
            }
        }
        Ok(())
    }
}

async fn trace(args: TraceArgs) -> anyhow::Result<()> {
    let trace = chorus_bench::load_trace("automerge-paper.json.gz");
    let ops = trace.patch_ops();
    let server = Server::start(&args.target).await?;
    let doc = format!("paper-{}", micros());
    let mut c = doc_client(server.url(0), "typist", &doc).await?;
    let mut ack = new_histogram();
    let started = Instant::now();
    for op in &ops {
        let t0 = micros();
        c.edit(DOC_ROOM, &doc, op.clone())?;
        c.sync(DOC_ROOM, &doc).await?;
        ack.saturating_record(micros().saturating_sub(t0).max(1));
    }
    let took = started.elapsed();
    let check = doc_client(server.url(0), "checker", &doc).await?;
    let text = check.doc(DOC_ROOM, &doc).expect("open").text().to_string();
    let matches = text == trace.end_content;
    println!(
        "automerge-paper over the socket: {} ops one at a time in {:.2} s ({:.0} ops/s), ack p50 {} ms p99 {} ms; server text matches endContent: {}",
        ops.len(),
        took.as_secs_f64(),
        ops.len() as f64 / took.as_secs_f64(),
        ms(&ack, 0.5),
        ms(&ack, 0.99),
        if matches { "yes" } else { "NO" }
    );
    if !matches {
        bail!("the server's text differs from the trace's end content");
    }
    Ok(())
}

async fn ping(args: TraceArgs) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start(&args.target).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(format!("{}?user=x", server.url(0)), None, true).await?;
    ws.send(Message::Text(r#"{"type":"hello","protocol":1}"#.into())).await?;
    ws.next().await;
    let t = Instant::now();
    let n = 50_000;
    let mut h = new_histogram();
    for i in 0..n {
        let t0 = micros();
        ws.send(Message::Text(format!(r#"{{"type":"heartbeat","id":{i}}}"#).into())).await?;
        ws.next().await.context("connection closed")??;
        h.saturating_record(micros().saturating_sub(t0).max(1));
    }
    println!(
        "heartbeat round trips: {n} in {:.2} s, p50 {} ms, p99 {} ms",
        t.elapsed().as_secs_f64(),
        ms(&h, 0.5),
        ms(&h, 0.99)
    );
    Ok(())
}
