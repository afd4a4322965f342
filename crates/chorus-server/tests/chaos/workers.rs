//! The campaign's clients, each a task with a job: writers typing unique
//! tokens (and counting a shared value up), one user pressing undo and
//! redo, one joining and leaving the lobby, and a watcher of the lobby on
//! every node. Each records what it was told, for the checks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_client::{Client, ClientError, ConnectOptions, Event};
use chorus_protocol::{Change, ErrorCode, ValueKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;

use crate::fleet::{Fleet, DOC, LOBBY, ROOM};

/// What writers type between tokens, and delete: never part of a token.
const FILLER: &str = "~";

/// A token a writer typed, and the reset count of its document when its
/// acknowledgement was known (`None`: never known to be acknowledged).
pub struct Token {
    pub text: String,
    /// The document's reset count when the token was typed.
    pub typed_at_resets: u32,
    /// The reset count the token was acknowledged under (the count when
    /// typed, if a reset in between dropped it, and said so).
    pub acked_at_resets: Option<u32>,
}

pub struct Writer {
    pub name: String,
    pub client: Client,
    pub tokens: Vec<Token>,
    /// Increments of the shared counter acknowledged, and with no answer.
    pub increments_acked: u64,
    pub increments_unknown: u64,
    pub errors: Vec<String>,
}

pub struct Undoer {
    pub client: Client,
    pub presses: u32,
    pub errors: Vec<String>,
}

pub struct Watcher {
    pub node: usize,
    pub client: Client,
    pub view: crate::checks::LobbyView,
}

pub struct Joiner {
    pub client: Client,
    pub in_lobby: bool,
}

pub struct Results {
    pub writers: Vec<Writer>,
    pub undoer: Undoer,
    pub watchers: Vec<Watcher>,
    pub joiner: Joiner,
}

pub struct Workers {
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<Writer>>,
    undoer: JoinHandle<Undoer>,
    watchers: Vec<JoinHandle<Watcher>>,
    joiner: JoinHandle<Joiner>,
}

async fn client(fleet: &Fleet, node: usize, user: &str) -> Client {
    let options = ConnectOptions { reconnect: true, timeout: Duration::from_secs(5), ..ConnectOptions::dev(user) };
    let mut last = None;
    for _ in 0..20 {
        match Client::connect(&fleet.nodes[node].ws_url(), options.clone()).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{user} could not connect to node {node}: {last:?}");
}

/// Retries a setup request through the faults of the first seconds.
macro_rules! retry {
    ($what:expr, $attempt:expr) => {{
        let mut outcome = None;
        for _ in 0..50 {
            match $attempt {
                Ok(v) => {
                    outcome = Some(v);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        outcome.unwrap_or_else(|| panic!("{} kept failing", $what))
    }};
}

/// Errors a fault explains (the store or a node was away); anything else is
/// worth reporting.
fn transient(e: &ClientError) -> bool {
    match e {
        ClientError::Server { code, .. } => matches!(code, ErrorCode::Unavailable | ErrorCode::NotJoined | ErrorCode::VersionTrimmed | ErrorCode::NotOpen),
        _ => true,
    }
}

impl Workers {
    pub async fn start(fleet: &Fleet) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for k in 0..4 {
            let mut c = client(fleet, k % 3, &format!("writer{k}")).await;
            retry!("writer join", c.join(ROOM, None).await);
            retry!("writer open", c.open_doc(ROOM, DOC).await.map(|_| ()));
            writers.push(tokio::spawn(write(c, format!("w{k}"), k as u64, stop.clone())));
        }
        let mut u = client(fleet, 1, "undoer").await;
        retry!("undoer join", u.join(ROOM, None).await);
        retry!("undoer open", u.open_doc(ROOM, DOC).await.map(|_| ()));
        let undoer = tokio::spawn(undo(u, stop.clone()));
        let mut watchers = Vec::new();
        for node in 0..3 {
            let mut w = client(fleet, node, &format!("watcher{node}")).await;
            let joined = retry!("watcher join", w.join(LOBBY, None).await);
            let view = crate::checks::LobbyView::from_joined(&joined);
            watchers.push(tokio::spawn(watch(node, w, view, stop.clone())));
        }
        let j = client(fleet, 2, "joiner").await;
        let joiner = tokio::spawn(join_and_leave(j, stop.clone()));
        Self { stop, writers, undoer, watchers, joiner }
    }

    /// Stops the jobs and gathers what they recorded.
    pub async fn finish(self) -> Results {
        self.stop.store(true, Ordering::SeqCst);
        let mut writers = Vec::new();
        for w in self.writers {
            writers.push(w.await.expect("writer task"));
        }
        let mut watchers = Vec::new();
        for w in self.watchers {
            watchers.push(w.await.expect("watcher task"));
        }
        Results { writers, undoer: self.undoer.await.expect("undo task"), watchers, joiner: self.joiner.await.expect("joiner task") }
    }
}

async fn write(mut c: Client, name: String, seed: u64, stop: Arc<AtomicBool>) -> Writer {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tokens = Vec::new();
    let (mut increments_acked, mut increments_unknown) = (0, 0);
    let mut errors = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some(d) = c.doc(ROOM, DOC) else { break };
        let text = d.text().to_string();
        let resets = d.resets;
        let at = outside_tokens(&text, &mut rng);
        let roll = rng.random_range(0..10);
        if roll < 6 {
            let token = format!("<{name}-{n}>");
            n += 1;
            if c.insert(ROOM, DOC, at, &token).is_ok() {
                tokens.push(Token { text: token, typed_at_resets: resets, acked_at_resets: None });
            }
        } else if roll < 8 {
            let _ = c.insert(ROOM, DOC, at, FILLER);
        } else if let Some(at) = text.chars().enumerate().filter(|(_, ch)| *ch == '~').map(|(i, _)| i).nth(rng.random_range(0..4)) {
            // Only filler is deleted, so every token stays whole.
            let _ = c.delete(ROOM, DOC, at, 1);
        }
        if rng.random_bool(0.15) {
            match c.update_value(ROOM, "hits", ValueKind::GCounter, Change::Increment { by: 1 }).await {
                Ok(_) => increments_acked += 1,
                Err(e) => {
                    increments_unknown += 1;
                    if !transient(&e) {
                        errors.push(format!("increment: {e}"));
                    }
                }
            }
        }
        if rng.random_bool(0.25) {
            sync(&mut c, &mut tokens, Duration::from_secs(2)).await;
        }
        c.pump(Duration::from_millis(rng.random_range(5..40))).await;
    }
    // After healing: everything typed reaches the server, or was reset,
    // within 40 s. The client gives up a wait sooner than that, and a
    // Cluster may answer CLUSTERDOWN for seconds after a master is back,
    // so the writer asks again until then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !sync(&mut c, &mut tokens, deadline.saturating_duration_since(tokio::time::Instant::now())).await {
        if tokio::time::Instant::now() >= deadline {
            errors.push(format!("{name} did not sync within 40 s after the faults were healed"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Writer { name, client: c, tokens, increments_acked, increments_unknown, errors }
}

/// Waits for every edit to be acknowledged; on success marks the tokens
/// acknowledged with the document's reset count. A token typed before a
/// reset that is not in the synced text was dropped by that reset (its
/// client was told): it counts as acknowledged before it.
async fn sync(c: &mut Client, tokens: &mut [Token], within: Duration) -> bool {
    let synced = tokio::time::timeout(within, c.sync(ROOM, DOC)).await.is_ok_and(|r| r.is_ok());
    if synced {
        let d = c.doc(ROOM, DOC).expect("open");
        let (resets, text) = (d.resets, d.text().to_string());
        for t in tokens.iter_mut().filter(|t| t.acked_at_resets.is_none()) {
            let dropped = t.typed_at_resets < resets && !text.contains(&t.text);
            t.acked_at_resets = Some(if dropped { t.typed_at_resets } else { resets });
        }
    }
    synced
}

async fn undo(mut c: Client, stop: Arc<AtomicBool>) -> Undoer {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut presses = 0;
    let mut errors = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let Some(d) = c.doc(ROOM, DOC) else { break };
        let at = outside_tokens(&d.text().to_string(), &mut rng);
        for i in 0..rng.random_range(1..4) {
            let _ = c.insert(ROOM, DOC, at + i, "u");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), c.sync(ROOM, DOC)).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..700))).await;
        if rng.random_bool(0.5) {
            let outcome = if rng.random_bool(0.6) { c.undo(ROOM, DOC).await } else { c.redo(ROOM, DOC).await };
            presses += 1;
            if let Err(e) = outcome {
                if !transient(&e) {
                    errors.push(format!("undo or redo: {e}"));
                }
            }
        }
    }
    Undoer { client: c, presses, errors }
}

async fn watch(node: usize, mut c: Client, mut view: crate::checks::LobbyView, stop: Arc<AtomicBool>) -> Watcher {
    while !stop.load(Ordering::SeqCst) {
        stay_connected(&mut c).await;
        if let Some(Event::Message(m)) = c.next_event_within(Duration::from_millis(100)).await {
            view.apply(&m);
        }
    }
    stay_connected(&mut c).await;
    Watcher { node, client: c, view }
}

/// Reconnects a client whose node went away (rejoining its rooms; the
/// `joined` replies give fresh member lists).
async fn stay_connected(c: &mut Client) {
    while !c.is_connected() {
        if c.reconnect().await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn join_and_leave(mut c: Client, stop: Arc<AtomicBool>) -> Joiner {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut in_lobby = false;
    while !stop.load(Ordering::SeqCst) {
        stay_connected(&mut c).await;
        let outcome = if in_lobby { c.leave(LOBBY).await.map(|_| false) } else { c.join(LOBBY, None).await.map(|_| true) };
        if let Ok(now) = outcome {
            in_lobby = now;
        }
        let until = tokio::time::Instant::now() + Duration::from_millis(rng.random_range(300..1_200));
        while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
            if c.next_event_within(left).await.is_none() {
                break;
            }
        }
    }
    stay_connected(&mut c).await;
    // Out of the lobby at the end, whatever the last answers said.
    for _ in 0..50 {
        match c.leave(LOBBY).await {
            Ok(()) | Err(ClientError::Server { code: ErrorCode::NotJoined, .. }) => {
                in_lobby = false;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Joiner { client: c, in_lobby }
}

/// A random position (in code points) that is not inside a token, so no
/// edit ever splits one.
fn outside_tokens(text: &str, rng: &mut ChaCha8Rng) -> usize {
    let mut inside = false;
    let mut boundaries = vec![0];
    for (i, ch) in text.chars().enumerate() {
        match ch {
            '<' => inside = true,
            '>' => inside = false,
            _ => {}
        }
        if !inside {
            boundaries.push(i + 1);
        }
    }
    boundaries[rng.random_range(0..boundaries.len())]
}

/// Counts of tokens, for the checks.
pub fn token_counts(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(end) = rest[start..].find('>') else { break };
        *counts.entry(rest[start..start + end + 1].to_owned()).or_default() += 1;
        rest = &rest[start + end + 1..];
    }
    counts
}
