//! The invariants, checked once the faults are healed.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chorus_client::{Client, Event, Joined};
use chorus_protocol::ServerMessage;
use serde_json::Value;

use crate::fleet::{Fleet, DOC, LOBBY, ROOM};
use crate::schedule::Happened;
use crate::workers::{token_counts, Results};

/// The lobby's member list as one watcher sees it, and the leaves it was
/// told of twice: a leave of a connection whose last news was a leave too.
pub struct LobbyView {
    pub members: BTreeSet<String>,
    /// Each connection's last news: true for a join.
    last: HashMap<String, bool>,
    pub twice: Vec<String>,
}

impl LobbyView {
    pub fn from_joined(joined: &Joined) -> Self {
        let members: BTreeSet<String> = joined.members.iter().map(|m| m.connection.clone()).collect();
        Self { last: members.iter().map(|c| (c.clone(), true)).collect(), members, twice: Vec::new() }
    }

    pub fn apply(&mut self, msg: &ServerMessage) {
        match msg {
            ServerMessage::Joined { room, members, .. } if room == LOBBY => {
                self.members = members.iter().map(|m| m.connection.clone()).collect();
                for c in &self.members {
                    self.last.insert(c.clone(), true);
                }
            }
            ServerMessage::MemberJoined { room, member, .. } if room == LOBBY => {
                self.members.insert(member.connection.clone());
                self.last.insert(member.connection.clone(), true);
            }
            ServerMessage::MemberLeft { room, connection, .. } if room == LOBBY => {
                self.members.remove(connection);
                if self.last.insert(connection.clone(), false) == Some(false) {
                    self.twice.push(connection.clone());
                }
            }
            _ => {}
        }
    }
}

/// A read of the HTTP API, answered once the store serves again: a Cluster
/// can still be electing or marking a master after the last fault healed,
/// and the node says so with 503 `unavailable` until it is done.
async fn get(fleet: &Fleet, node: usize, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = crate::http_get(fleet.nodes[node].addr(), path).await;
        if status == 503 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200, "GET {path} on node {node}: {body}");
        return serde_json::from_str(&body).expect("JSON");
    }
}

fn encoded(room: &str) -> String {
    room.replace('/', "%2F")
}

/// Every invariant; the first that does not hold, with what was seen.
pub async fn all(fleet: &Fleet, mut results: Results, happened: &Happened, baseline_kib: u64) -> Result<(), String> {
    let failures = check(fleet, &mut results, happened).await;
    let leftovers = cleanup(fleet, results, baseline_kib).await;
    let all: Vec<String> = failures.into_iter().chain(leftovers).collect();
    if all.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{}", all.join("\n"), fleet.logs()))
    }
}

async fn check(fleet: &Fleet, results: &mut Results, happened: &Happened) -> Vec<String> {
    let mut failures = Vec::new();
    // One text on every node.
    let texts: Vec<Value> = futures_join(fleet, &format!("/v1/rooms/{}/docs/{DOC}", encoded(ROOM))).await;
    let text = texts[0]["text"].as_str().unwrap_or_default().to_owned();
    let version = texts[0]["version"].as_u64().unwrap_or(0);
    for (i, t) in texts.iter().enumerate() {
        if t["text"] != texts[0]["text"] || t["version"] != texts[0]["version"] {
            failures.push(format!("node {i} reads version {} where node 0 reads {version}", t["version"]));
        }
    }
    // Every writer converged, and every acknowledged token is there once.
    let counts = token_counts(&text);
    let typed: usize = results.writers.iter().map(|w| w.tokens.len()).sum();
    let acked = results.writers.iter().flat_map(|w| &w.tokens).filter(|t| t.acked_at_resets.is_some()).count();
    println!("chaos: {typed} tokens typed, {acked} acknowledged, {} in the text at version {version}; {} undo presses", counts.len(), results.undoer.presses);
    for w in &mut results.writers {
        failures.extend(w.errors.iter().map(|e| format!("{}: {e}", w.name)));
        if let Err(e) = w.client.catch_up(ROOM, DOC, version).await {
            failures.push(format!("{} did not reach version {version}: {e}", w.name));
            continue;
        }
        let d = w.client.doc(ROOM, DOC).expect("open");
        if d.text().to_string() != text {
            failures.push(format!("{} diverged: it has {} code points at version {}, the server {} at {version}", w.name, d.text().len_chars(), d.version(), text.chars().count()));
        }
        let resets = d.resets;
        let missing = w.tokens.iter().filter(|t| t.acked_at_resets.is_some() && !counts.contains_key(&t.text)).count();
        println!("chaos: {}: {} tokens, {missing} acknowledged and missing, {resets} resets, {} edits lost by resets", w.name, w.tokens.len(), d.lost_edits);
        for t in &w.tokens {
            match (counts.get(&t.text).copied().unwrap_or(0), t.acked_at_resets) {
                (0, Some(at)) if resets > at => {} // lost by the store, and its client was told
                (0, Some(_)) => failures.push(format!("{} was acknowledged and is not in the text, and its client was never told", t.text)),
                (n, _) if n > 1 => failures.push(format!("{} is in the text {n} times", t.text)),
                _ => {}
            }
        }
    }
    // Undo still works: an undo and a redo, with nobody else typing, give
    // the text back.
    let u = &mut results.undoer;
    failures.extend(u.errors.iter().map(|e| format!("undoer: {e}")));
    // Its own edits still pending go first: one committed between the undo
    // and the redo would be a new step, and leave nothing to redo.
    if u.client.sync(ROOM, DOC).await.is_ok() && u.client.catch_up(ROOM, DOC, version).await.is_ok() {
        let before = u.client.doc(ROOM, DOC).unwrap().text().to_string();
        match (u.client.undo(ROOM, DOC).await, u.client.redo(ROOM, DOC).await) {
            (Ok(undone), Ok(redone)) => {
                // The answers can come before the ops they committed.
                let _ = u.client.catch_up(ROOM, DOC, redone.or(undone).unwrap_or(version)).await;
                let after = u.client.doc(ROOM, DOC).unwrap().text().to_string();
                if after != before {
                    let (b, a): (Vec<char>, Vec<char>) = (before.chars().collect(), after.chars().collect());
                    let from = b.iter().zip(&a).take_while(|(x, y)| x == y).count();
                    let around = |t: &[char]| t[from.saturating_sub(10)..(from + 20).min(t.len())].iter().collect::<String>();
                    failures.push(format!(
                        "an undo (at version {undone:?}) and a redo (at {redone:?}) after healing did not give the text back: {} code points before, {} after, first differing at {from}: {:?} became {:?}",
                        b.len(), a.len(), around(&b), around(&a)
                    ));
                }
            }
            (a, b) => failures.push(format!("undo after healing: {a:?}, redo: {b:?}")),
        }
    } else {
        failures.push("the undoer did not catch up after healing".into());
    }
    // One value on every node, counting every acknowledged increment once.
    let values: Vec<Value> = futures_join(fleet, &format!("/v1/rooms/{}/values", encoded(ROOM))).await;
    let hits = |v: &Value| v["values"].as_array().and_then(|a| a.iter().find(|x| x["name"] == "hits")).map(|x| x["value"].clone());
    for (i, v) in values.iter().enumerate() {
        if hits(v) != hits(&values[0]) {
            failures.push(format!("node {i} reads hits {:?} where node 0 reads {:?}", hits(v), hits(&values[0])));
        }
    }
    let acked: u64 = results.writers.iter().map(|w| w.increments_acked).sum();
    let unknown: u64 = results.writers.iter().map(|w| w.increments_unknown).sum();
    let stored = hits(&values[0]).and_then(|v| v.as_u64()).unwrap_or(0);
    if !happened.store_went_back && (stored < acked || stored > acked + unknown) {
        failures.push(format!("hits is {stored}, with {acked} increments acknowledged and {unknown} unanswered"));
    }
    // The lobby settles on the watchers, everywhere.
    failures.extend(lobby(fleet, results, happened).await);
    failures
}

async fn lobby(fleet: &Fleet, results: &mut Results, happened: &Happened) -> Vec<String> {
    let mut failures = Vec::new();
    if results.joiner.in_lobby {
        failures.push("the joiner could not leave the lobby after healing".into());
    }
    let expected: BTreeSet<String> = results.watchers.iter().map(|w| w.client.connection().to_owned()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut pending = Vec::new();
        for node in 0..fleet.nodes.len() {
            let v = get(fleet, node, &format!("/v1/rooms/{}/members", encoded(LOBBY))).await;
            let listed: BTreeSet<String> = v["members"].as_array().into_iter().flatten().filter_map(|m| m["connection"].as_str().map(str::to_owned)).collect();
            if listed != expected {
                pending.push(format!("node {node} lists {listed:?}"));
            }
        }
        for w in &mut results.watchers {
            while let Some(Event::Message(m)) = w.client.next_event_within(Duration::from_millis(20)).await {
                w.view.apply(&m);
            }
            if w.view.members != expected {
                pending.push(format!("the watcher on node {} sees {:?}", w.node, w.view.members));
            }
        }
        if pending.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            failures.push(format!("the lobby did not settle on {expected:?}: {}", pending.join("; ")));
            break;
        }
    }
    if !happened.store_went_back {
        for w in &results.watchers {
            for conn in &w.view.twice {
                failures.push(format!("the watcher on node {} was told twice in a row that {conn} left", w.node));
            }
        }
    }
    failures
}

/// Everyone leaves: no room, subscription or channel may stay, and the
/// nodes' memory comes back near where it started.
async fn cleanup(fleet: &Fleet, results: Results, baseline_kib: u64) -> Vec<String> {
    let mut clients: Vec<Client> = results.writers.into_iter().map(|w| w.client).collect();
    clients.push(results.undoer.client);
    clients.push(results.joiner.client);
    clients.extend(results.watchers.into_iter().map(|w| w.client));
    for c in clients {
        c.close().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut left = Vec::new();
        for (i, node) in fleet.nodes.iter().enumerate() {
            let (_, body) = crate::http_get(node.addr(), "/metrics").await;
            for name in ["chorus_rooms ", "chorus_bus_subscriptions "] {
                let n: f64 = body.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
                if n != 0.0 {
                    left.push(format!("node {i}: {name}{n}"));
                }
            }
        }
        let channels: usize = [["PUBSUB", "CHANNELS", "chorus:*"], ["PUBSUB", "SHARDCHANNELS", "chorus:*"]]
            .iter()
            .map(|args| fleet.redis.cli_everywhere(args).iter().map(|o| o.lines().filter(|l| !l.is_empty()).count()).sum::<usize>())
            .sum();
        if channels > 0 {
            left.push(format!("{channels} room channels on Redis"));
        }
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return vec![format!("after everyone left: {}", left.join(", "))];
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = fleet.memory_kib();
    println!("chaos: the nodes' memory: {baseline_kib} KiB at the start, {now} KiB after everyone left");
    if now > baseline_kib + 60 * 1024 {
        return vec![format!("the nodes' memory grew from {baseline_kib} KiB to {now} KiB")];
    }
    Vec::new()
}

async fn futures_join(fleet: &Fleet, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for node in 0..fleet.nodes.len() {
        out.push(get(fleet, node, path).await);
    }
    out
}
