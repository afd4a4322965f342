//! `chorus serve` on its embedded store, SIGKILLed in the middle of an edit
//! storm (several writers on real WebSockets, W1-like: random inserts, some
//! waiting for their acks, some not) and restarted on the same data folder,
//! round after round. After each restart every client reconnects with the
//! version it had and: the document has the same epoch (no reset), every
//! edit typed (acknowledged or still in flight) is in it exactly once, the
//! log replays to the text without a gap, and everyone converges.
//!
//! Seeded: the seed is printed; `CHORUS_CRASH_SEED=N` replays a run and
//! `CHORUS_CRASH_ROUNDS=N` lengthens it (20 rounds by default).

mod process;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use process::Chorus;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::TestServer;

const ROOM: &str = "crash";
const WRITERS: usize = 4;

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

struct Writer {
    client: Client,
    typed: Vec<String>,
}

async fn writer(url: &str, w: usize) -> Writer {
    let options = ConnectOptions { dev_user: Some(format!("w{w}")), timeout: Duration::from_secs(20), ..ConnectOptions::default() };
    let mut client = Client::connect(url, options).await.expect("connects");
    client.join(ROOM, None).await.expect("joins");
    client.open_doc(ROOM, "d").await.expect("opens");
    Writer { client, typed: Vec::new() }
}

/// Types until the connection drops: random inserts, half of them waited for.
async fn storm(mut w: Writer, id: usize, round: u64, seed: u64) -> Writer {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for n in 0.. {
        let token = format!("<{round}.{id}.{n}>");
        let len = w.client.doc(ROOM, "d").expect("open").text().len_chars();
        // Between tokens only, so one never splits another.
        let at = if rng.random_bool(0.5) { 0 } else { len };
        w.client.insert(ROOM, "d", at, &token).expect("a local edit applies");
        w.typed.push(token);
        if rng.random_bool(0.5) {
            if w.client.sync(ROOM, "d").await.is_err() {
                break;
            }
        } else {
            w.client.pump(Duration::from_millis(1)).await;
        }
        if !w.client.is_connected() {
            break;
        }
    }
    w
}

/// How many times each token is in the text: in one pass, so that long
/// runs (a text of every round's tokens, checked every round) stay linear.
/// Tokens are typed between tokens only, so the text is tokens end to end.
fn token_counts(text: &str) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for part in text.split_inclusive('>') {
        let token = part.rfind('<').map_or(part, |start| &part[start..]);
        *counts.entry(token).or_default() += 1;
    }
    counts
}

async fn crash_loop(sync: &str) {
    let seed = setting("CHORUS_CRASH_SEED").unwrap_or_else(rand::random);
    let rounds = setting("CHORUS_CRASH_ROUNDS").unwrap_or(20);
    println!("crash loop, --sqlite-sync {sync}: seed {seed}, {rounds} rounds (replay: CHORUS_CRASH_SEED={seed} CHORUS_CRASH_ROUNDS={rounds})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--sqlite-sync", sync];
    let mut server = Chorus::start(&data, &args).await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        writers.push(writer(&server.url(), w).await);
    }
    let epoch = writers[0].client.doc(ROOM, "d").unwrap().epoch().to_owned();
    let mut committed = 0;
    for round in 0..rounds {
        let tasks: Vec<_> = writers.into_iter().enumerate().map(|(id, w)| tokio::spawn(storm(w, id, round, rng.random()))).collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
        server.kill();
        writers = Vec::new();
        for t in tasks {
            writers.push(t.await.expect("a writer panicked"));
        }
        server = Chorus::start(&data, &args).await;
        let http = TestServer { server: None, addr: server.addr() };
        for w in &mut writers {
            w.client.set_url(&server.url());
            w.client.reconnect().await.unwrap_or_else(|e| panic!("seed {seed} round {round}: reconnect failed: {e}"));
            w.client.sync(ROOM, "d").await.unwrap_or_else(|e| panic!("seed {seed} round {round}: sync failed: {e}"));
        }
        let (text, version) = http.doc_text(ROOM, "d").await;
        assert!(version >= committed, "seed {seed} round {round}: the document went back from {committed} to {version}");
        committed = version;
        for (id, w) in writers.iter_mut().enumerate() {
            w.client.catch_up(ROOM, "d", version).await.unwrap();
            let d = w.client.doc(ROOM, "d").unwrap();
            assert_eq!(d.epoch(), epoch, "seed {seed} round {round}: writer {id} was reset to another log");
            assert_eq!((d.version(), d.text().to_string()), (version, text.clone()), "seed {seed} round {round}: writer {id} converged");
        }
        let counts = token_counts(&text);
        for token in writers.iter().flat_map(|w| &w.typed) {
            assert_eq!(counts.get(token.as_str()).copied().unwrap_or(0), 1, "seed {seed} round {round}: {token} exactly once");
        }
        // The log keeps 10,000 ops behind its snapshot (the default window).
        if version < 10_000 {
            assert_eq!(http.replay_log(ROOM, "d").await, text, "seed {seed} round {round}: the log replays to the text");
        }
    }
    let typed: usize = writers.iter().map(|w| w.typed.len()).sum();
    println!("crash loop, --sqlite-sync {sync}: {rounds} kills, {typed} edits, version {committed}, all there exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_storm_with_full_sync_loses_no_acknowledged_edit() {
    crash_loop("full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_storm_with_normal_sync_loses_no_acknowledged_edit() {
    crash_loop("normal").await;
}
