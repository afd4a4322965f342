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

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chorus_client::{Client, ConnectOptions};
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

/// A server to talk to: one this run started, or one given.
struct Server {
    url: String,
    pid: Option<u32>,
    child: Option<Child>,
}

impl Server {
    async fn start(target: &Target) -> anyhow::Result<Server> {
        if let Some(url) = &target.url {
            return Ok(Server { url: url.clone(), pid: target.server_pid, child: None });
        }
        let Some(bin) = &target.spawn else { bail!("give --spawn PATH_TO_CHORUS or --url URL") };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .env("CHORUS_LOG", "warn")
            .env("CHORUS_MEMBERS_PER_ROOM", "100000")
            .env("CHORUS_MESSAGES_PER_SECOND", "1000")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                bail!("the server did not start listening on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Server { url: format!("ws://127.0.0.1:{port}/v1/ws"), pid: Some(pid), child: Some(child) })
    }

    /// CPU time used so far (user + system), in seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }

    /// (current, peak) resident memory in KiB.
    fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let field = |name: &str| {
            status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    epoch();
    match Cli::parse().workload {
        Workload::CursorStorm(args) => cursor_storm(args).await,
        Workload::Idle(args) => idle(args).await,
    }
}

async fn cursor_storm(args: StormArgs) -> anyhow::Result<()> {
    println!("W2 cursor storm: 1 room, {} Hz per client, {} s per run", args.hz, args.seconds);
    println!("| clients | sent/s | delivered/s | expected/s | delivered | p50 ms | p99 ms | max ms | server CPU | server peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &c in &args.clients {
        let server = Server::start(&args.target).await?;
        let cpu_before = server.cpu_seconds();
        let r = storm_run(&server.url, c, args.hz, Duration::from_secs(args.seconds)).await?;
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
async fn storm_client(url: &str, user: &str, room: &str) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(format!("{url}?user={user}"), None, true).await?;
    ws.send(Message::Text(r#"{"type":"hello","protocol":1}"#.into())).await?;
    ws.send(Message::Text(format!(r#"{{"type":"join","id":1,"room":"{room}"}}"#).into())).await?;
    while let Some(frame) = ws.next().await {
        if let Message::Text(t) = frame? {
            if t.contains(r#""type":"joined""#) {
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

async fn storm_run(url: &str, clients: usize, hz: u32, duration: Duration) -> anyhow::Result<StormResult> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let began = Instant::now();
    let room = format!("storm-{}", micros());
    let mut joined = Vec::new();
    for i in 0..clients {
        joined.push(storm_client(url, &format!("load-{i}"), &room).await?);
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
                let msg = format!(r#"{{"type":"cursor","room":"{room}","cursor":{{"x":{i},"y":{},"t":{now}}}}}"#, now % 1000);
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
    let url = Arc::new(server.url.clone());
    let mut clients = Vec::with_capacity(args.connections);
    let started = Instant::now();
    // Connect in waves so the accept queue is never the bottleneck.
    for wave in (0..args.connections).collect::<Vec<_>>().chunks(250) {
        let mut tasks = Vec::new();
        for &i in wave {
            let (url, room) = (url.clone(), format!("idle-{}", i % args.rooms));
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&url, ConnectOptions::dev(&format!("idle-{i}"))).await?;
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
