//! The fault-injection campaign: three Chorus nodes on a real Redis (a
//! standalone server, and a 3-master Cluster), clients editing a document,
//! changing a value, joining and leaving, pressing undo, while a schedule
//! drawn from a seed kills nodes, kills and restarts Redis, restores an
//! older backup, cuts pub/sub connections, moves the room's Cluster slot,
//! hangs Redis past the store timeout and makes Redis refuse a node for a
//! while. Then the faults are healed and the invariants checked:
//!
//! - every acknowledged edit is in the final text exactly once, unless the
//!   store lost it and its client was told by a reset; no edit twice;
//! - every client, and every node, ends with the same text;
//! - the member lists settle on every node, and every watcher's, to exactly
//!   the connections in the room, with at most one leave per connection;
//! - the value reads the same on every node, and counts every acknowledged
//!   increment once;
//! - undo still works;
//! - once everyone is gone, no room, subscription or channel is left, and
//!   the nodes' memory is back near where it was.
//!
//! A failure prints its seed and schedule, and the command that replays
//! it (`CHORUS_CHAOS_SEED=N`, with `CHORUS_CHAOS_SECONDS` when the faults
//! went on for other than the short campaign's 25 s). The short campaign runs in the test suite; `scripts/chaos --minutes
//! N` runs new schedules for N minutes.

mod checks;
mod fleet;
mod schedule;
#[path = "../support/mod.rs"]
mod support;
mod workers;

use std::time::Duration;

use chorus_redis::testing::{Persistence, Redis};

use schedule::Schedule;

/// Node users on Redis, so one node can be refused at a time.
pub const NODE_USERS: [(&str, &str); 3] = [("node0", "pw-node0"), ("node1", "pw-node1"), ("node2", "pw-node2")];

/// Runs one schedule on a fresh Redis; panics with the seed and schedule
/// when an invariant does not hold.
async fn campaign(cluster: bool, seed: u64, faults_for: Duration) {
    let schedule = Schedule::draw(seed, faults_for, cluster);
    println!("chaos: seed {seed} on {}: {schedule}", if cluster { "a 3-master Cluster" } else { "a standalone Redis" });
    let test = if cluster { "a_short_campaign_on_a_cluster" } else { "a_short_campaign_on_redis" };
    let secs = faults_for.as_secs();
    let told = SeedOnPanic { seed, test, secs };
    let redis =
        if cluster { Redis::cluster_with_users(Persistence::AofAlways, &NODE_USERS) } else { Redis::standalone_with_users(Persistence::AofAlways, &NODE_USERS) };
    // A schedule runs for about a minute; one still going after five hangs.
    let outcome = match tokio::time::timeout(Duration::from_secs(300), run(redis, &schedule, seed)).await {
        Ok(outcome) => outcome,
        Err(_) => Err("the campaign hung: still running after five minutes".to_string()),
    };
    if let Err(failure) = outcome {
        std::mem::forget(told); // The message below names the seed.
        panic!(
            "chaos: seed {seed} failed (replay with CHORUS_CHAOS_SEED={seed} CHORUS_CHAOS_SECONDS={secs} cargo test --release -p chorus-server --test chaos {test} -- --nocapture): {failure}\nschedule: {schedule}"
        );
    }
    drop(told);
    println!("chaos: seed {seed} held");
}

/// Prints the seed and the command that replays it when a check panicked
/// on its own (an HTTP read that kept failing, say) instead of reporting a
/// failure: every failure names its seed.
struct SeedOnPanic {
    seed: u64,
    test: &'static str,
    secs: u64,
}

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let Self { seed, test, secs } = self;
            eprintln!("chaos: seed {seed} failed (replay with CHORUS_CHAOS_SEED={seed} CHORUS_CHAOS_SECONDS={secs} cargo test --release -p chorus-server --test chaos {test} -- --nocapture)");
        }
    }
}

async fn run(redis: Redis, schedule: &Schedule, seed: u64) -> Result<(), String> {
    let mut fleet = fleet::Fleet::start(redis).await;
    let work = workers::Workers::start(&fleet).await;
    let baseline = fleet.memory_kib();
    let happened = schedule.play(&mut fleet).await;
    fleet.heal().await;
    let results = work.finish().await;
    checks::all(&fleet, results, &happened, baseline).await.map_err(|failure| {
        format!("{failure}\n{}the nodes' logs: {}", cluster_report(&fleet.redis), fleet.keep_logs(seed).display())
    })
}

/// A Cluster's own view of itself when a schedule failed: whether each
/// master says the Cluster is up, and who serves which slots (a Cluster
/// still down after the faults healed explains a failure by itself).
fn cluster_report(redis: &Redis) -> String {
    let Redis::Cluster(cluster) = redis else { return String::new() };
    let mut report = String::new();
    for node in &cluster.nodes {
        let info = node.try_cli(&["CLUSTER", "INFO"]).unwrap_or_default();
        let state = info.lines().find(|l| l.starts_with("cluster_state")).unwrap_or("cluster_state:?");
        report.push_str(&format!("redis {}: {}\n", node.port, state.trim()));
    }
    if let Some(first) = cluster.nodes.first() {
        report.push_str(&format!("CLUSTER NODES (from {}):\n{}\n", first.port, first.try_cli(&["CLUSTER", "NODES"]).unwrap_or_default()));
    }
    report
}

/// GET on a node: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    support::http_get(addr, path, None).await
}

fn seed_from_env() -> Option<u64> {
    std::env::var("CHORUS_CHAOS_SEED").ok().map(|s| s.parse().expect("CHORUS_CHAOS_SEED is a number"))
}

/// How long the faults go on: `CHORUS_CHAOS_SECONDS`, or `default` (a
/// seed draws its schedule over this span, so a replay needs both).
fn faults_for(default: u64) -> Duration {
    Duration::from_secs(std::env::var("CHORUS_CHAOS_SECONDS").ok().map_or(default, |s| s.parse().expect("CHORUS_CHAOS_SECONDS is a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_campaign_on_redis() {
    campaign(false, seed_from_env().unwrap_or_else(rand::random), faults_for(25)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_campaign_on_a_cluster() {
    campaign(true, seed_from_env().unwrap_or_else(rand::random), faults_for(25)).await
}

/// `scripts/chaos --minutes N`: new schedules until N minutes have passed,
/// alternating standalone and Cluster, or only one of them when
/// `CHORUS_CHAOS_REDIS` is `standalone` or `cluster`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the long campaign: scripts/chaos --minutes N"]
async fn a_long_campaign() {
    let minutes: u64 = std::env::var("CHORUS_CHAOS_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(10);
    let only = std::env::var("CHORUS_CHAOS_REDIS").ok();
    let end = std::time::Instant::now() + Duration::from_secs(minutes * 60);
    let mut runs = 0;
    while std::time::Instant::now() < end {
        let cluster = match only.as_deref() {
            Some("cluster") => true,
            Some("standalone") => false,
            _ => runs % 2 == 1,
        };
        campaign(cluster, rand::random(), faults_for(40)).await;
        runs += 1;
    }
    println!("chaos: {runs} schedules held");
}
