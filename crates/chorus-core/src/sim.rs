//! A deterministic simulation of one server and many clients editing a text.
//!
//! The network is what makes collaboration hard, so the simulation makes it
//! hostile: each step a seeded generator picks one thing to happen next (a
//! client edits, one message is delivered in one direction of one connection,
//! a connection drops and loses everything in flight, a client reconnects and
//! resumes). Delivery order across connections is arbitrary, which covers
//! every interleaving of delays; each connection stays in order, as a
//! WebSocket does. A reconnecting client sends its version and its
//! unacknowledged op, and the server answers with the ops it missed, treating
//! a resubmission it already ordered as an ack.
//!
//! At the end the network drains and every client must hold the server's text,
//! and the server's log replayed from the start must give the same text. The
//! same seed always gives the same run, so a failure names its seed.

use std::collections::VecDeque;
use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::{OtClient, Submission};
use crate::oplog::{Accepted, OrderedText};
use crate::text::{Component, Delete, OpBuilder, TextDoc, TextOp};

/// Characters the simulated users type: ASCII, line breaks of both kinds,
/// combining marks, astral emoji and a ZWJ sequence, CJK.
pub const TYPING_POOL: &[&str] = &[
    "a", "b", "c", " ", "\n", "\r\n", "e\u{301}", "\u{308}", "😭", "🏳️‍🌈", "漢", "𝒳", "z",
];

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub clients: usize,
    /// Local edits made across all clients before the network drains.
    pub edits: usize,
    /// Chance, per step, that a connection drops.
    pub disconnect_chance: f64,
    /// The document's text at version 0.
    pub initial: String,
}

impl SimConfig {
    pub fn new(seed: u64, clients: usize, edits: usize) -> Self {
        Self { seed, clients, edits, disconnect_chance: 0.01, initial: String::new() }
    }
}

/// What a converged run looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    pub text: String,
    pub version: u64,
    pub steps: u64,
    pub disconnects: u64,
    /// Resubmissions the server recognised as already ordered.
    pub duplicates: u64,
}

/// A run that went wrong, with the seed that reproduces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub what: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulation seed={} failed at step {}: {}", self.seed, self.step, self.what)
    }
}

impl std::error::Error for SimFailure {}

enum Up {
    Submit(Submission),
    Resume { version: u64, inflight: Option<Submission> },
}

/// A committed op as the server sends it to every subscriber; the author
/// recognises its own op as the ack.
#[derive(Clone)]
struct Down {
    version: u64,
    author: usize,
    op: TextOp,
}

struct SimClient {
    ot: OtClient,
    text: TextDoc,
    online: bool,
    up: VecDeque<Up>,
    down: VecDeque<Down>,
}

struct Sim {
    rng: ChaCha8Rng,
    seed: u64,
    step: u64,
    server: OrderedText,
    /// Whether the server has the client's current connection (after Resume).
    attached: Vec<bool>,
    clients: Vec<SimClient>,
    disconnects: u64,
    duplicates: u64,
}

/// Runs one simulation. Deterministic in `config.seed`.
pub fn simulate(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let initial = TextDoc::from(config.initial.as_str());
    let mut sim = Sim {
        rng: ChaCha8Rng::seed_from_u64(config.seed),
        seed: config.seed,
        step: 0,
        server: OrderedText::new(initial.clone(), 0),
        attached: vec![true; config.clients],
        clients: (0..config.clients)
            .map(|_| SimClient {
                ot: OtClient::new(0, 1),
                text: initial.clone(),
                online: true,
                up: VecDeque::new(),
                down: VecDeque::new(),
            })
            .collect(),
        disconnects: 0,
        duplicates: 0,
    };
    let mut edits_left = config.edits;
    while edits_left > 0 || sim.busy() {
        sim.step += 1;
        let roll: f64 = sim.rng.random();
        let c = sim.rng.random_range(0..config.clients);
        if edits_left > 0 && roll < config.disconnect_chance && sim.clients[c].online {
            sim.disconnect(c);
        } else if edits_left > 0 && roll < 0.3 {
            sim.edit(c)?;
            edits_left -= 1;
        } else if !sim.clients[c].online {
            sim.reconnect(c);
        } else if roll < 0.65 {
            sim.deliver_up(c)?;
        } else {
            sim.deliver_down(c)?;
        }
    }
    sim.verify(&config.initial)
}

impl Sim {
    fn fail(&self, what: impl Into<String>) -> SimFailure {
        SimFailure { seed: self.seed, step: self.step, what: what.into() }
    }

    fn busy(&self) -> bool {
        self.clients
            .iter()
            .any(|c| !c.online || !c.up.is_empty() || !c.down.is_empty() || !c.ot.is_synchronized())
    }

    fn edit(&mut self, c: usize) -> Result<(), SimFailure> {
        let op = random_op(&mut self.rng, &self.clients[c].text);
        let client = &mut self.clients[c];
        client
            .text
            .apply(&op)
            .map_err(|e| SimFailure { seed: self.seed, step: self.step, what: format!("client {c} edit {op}: {e}") })?;
        if let Some(sub) = client.ot.local(op) {
            if client.online {
                client.up.push_back(Up::Submit(sub));
            }
        }
        Ok(())
    }

    fn disconnect(&mut self, c: usize) {
        let client = &mut self.clients[c];
        client.online = false;
        client.up.clear();
        client.down.clear();
        self.attached[c] = false;
        self.disconnects += 1;
    }

    fn reconnect(&mut self, c: usize) {
        let client = &mut self.clients[c];
        client.online = true;
        let resume = Up::Resume { version: client.ot.version(), inflight: client.ot.inflight().cloned() };
        client.up.push_back(resume);
    }

    fn broadcast(&mut self, d: Down) {
        for (i, client) in self.clients.iter_mut().enumerate() {
            if self.attached[i] {
                client.down.push_back(d.clone());
            }
        }
    }

    fn commit(&mut self, c: usize, sub: &Submission) -> Result<(), SimFailure> {
        let outcome = self
            .server
            .submit(&c.to_string(), sub.seq, sub.base, &sub.op)
            .map_err(|e| self.fail(format!("server refused client {c}'s op {}: {e}", sub.op)))?;
        match outcome {
            Accepted::Committed { version, op } => self.broadcast(Down { version, author: c, op }),
            // Only a resumed connection resubmits, and its catch-up already
            // carried the original as the ack.
            Accepted::Duplicate { .. } => self.duplicates += 1,
        }
        Ok(())
    }

    fn deliver_up(&mut self, c: usize) -> Result<(), SimFailure> {
        let Some(msg) = self.clients[c].up.pop_front() else { return Ok(()) };
        match msg {
            Up::Submit(sub) => self.commit(c, &sub),
            Up::Resume { version, inflight } => {
                let missed: Vec<Down> = self
                    .server
                    .log()
                    .since(version)
                    .ok_or_else(|| self.fail(format!("client {c} resumed from unknown version {version}")))?
                    .map(|e| Down { version: e.version, author: e.client.parse().unwrap_or(usize::MAX), op: e.op.clone() })
                    .collect();
                self.clients[c].down.extend(missed);
                self.attached[c] = true;
                match inflight {
                    Some(sub) => self.commit(c, &sub),
                    None => Ok(()),
                }
            }
        }
    }

    fn deliver_down(&mut self, c: usize) -> Result<(), SimFailure> {
        let Some(d) = self.clients[c].down.pop_front() else { return Ok(()) };
        let (seed, step) = (self.seed, self.step);
        let fail = |what: String| SimFailure { seed, step, what };
        let client = &mut self.clients[c];
        if d.author == c {
            let next = client.ot.ack(d.version).map_err(|e| fail(format!("client {c} ack: {e}")))?;
            if let Some(sub) = next {
                client.up.push_back(Up::Submit(sub));
            }
        } else {
            let op = client.ot.remote(d.version, &d.op).map_err(|e| fail(format!("client {c} remote: {e}")))?;
            client
                .text
                .apply(&op)
                .map_err(|e| fail(format!("client {c} could not apply transformed op {op}: {e}")))?;
        }
        Ok(())
    }

    fn verify(self, initial: &str) -> Result<SimReport, SimFailure> {
        let server_text = self.server.text().to_string();
        for (i, c) in self.clients.iter().enumerate() {
            let text = c.text.to_string();
            if text != server_text {
                return Err(self.fail(format!("client {i} has {text:?} but the server has {server_text:?}")));
            }
        }
        let mut replay = TextDoc::from(initial);
        for e in self.server.log().since(0).expect("log is never trimmed in a simulation") {
            replay.apply(&e.op).map_err(|err| self.fail(format!("replay of version {}: {err}", e.version)))?;
        }
        if replay.to_string() != server_text {
            return Err(self.fail("replaying the server's log gives a different text"));
        }
        Ok(SimReport {
            text: server_text,
            version: self.server.version(),
            steps: self.step,
            disconnects: self.disconnects,
            duplicates: self.duplicates,
        })
    }
}

/// A random valid op against `doc`: mostly the single inserts and deletes
/// people make, sometimes a replacement or an op of several components.
pub fn random_op(rng: &mut impl Rng, doc: &TextDoc) -> TextOp {
    let len = doc.len_chars();
    let kind = rng.random_range(0..10);
    if len == 0 || kind < 5 {
        return TextOp::insert(rng.random_range(0..=len), random_text(rng));
    }
    let mut b = OpBuilder::new();
    let mut pos = 0;
    let parts = if kind < 8 { 1 } else { rng.random_range(2..=4) };
    for _ in 0..parts {
        if pos >= len {
            break;
        }
        let skip = rng.random_range(0..=(len - pos) / 2);
        b.retain(skip);
        pos += skip;
        let del = rng.random_range(0..=(len - pos).min(5));
        if del > 0 {
            let d = if rng.random_bool(0.5) {
                Delete::Text(doc.slice(pos, pos + del).expect("range is inside the document"))
            } else {
                Delete::Len(del)
            };
            b.push(Component::Delete(d));
            pos += del;
        }
        if kind >= 7 && rng.random_bool(0.6) {
            b.insert(random_text(rng));
        }
    }
    b.finish()
}

/// One to four characters from [`TYPING_POOL`].
pub fn random_text(rng: &mut impl Rng) -> String {
    (0..rng.random_range(1..=4)).map(|_| TYPING_POOL[rng.random_range(0..TYPING_POOL.len())]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: &SimConfig) -> SimReport {
        match simulate(config) {
            Ok(report) => report,
            Err(failure) => panic!("{failure}"),
        }
    }

    #[test]
    fn clients_converge_through_drops_and_reorderings() {
        let base = std::env::var("CHORUS_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED);
        let mut duplicates = 0;
        let mut disconnects = 0;
        for seed in base..base + 40 {
            println!("simulation seed={seed}");
            let mut config = SimConfig::new(seed, 1 + (seed % 6) as usize, 300);
            config.disconnect_chance = 0.02;
            config.initial = "start 😭 text\r\n".into();
            let report = run(&config);
            assert!(report.version > 0);
            duplicates += report.duplicates;
            disconnects += report.disconnects;
        }
        // The runs must actually exercise lost acks and reconnects.
        assert!(disconnects > 100, "only {disconnects} disconnects");
        assert!(duplicates > 0, "no resubmission was ever recognised as a duplicate");
    }

    #[test]
    fn same_seed_same_run() {
        let config = SimConfig::new(7, 4, 200);
        assert_eq!(run(&config), run(&config));
    }

    #[test]
    #[ignore = "long-running: cargo test -p chorus-core -- --ignored"]
    fn clients_converge_long_run() {
        let base: u64 = std::env::var("CHORUS_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
        for seed in base..base + 2_000 {
            println!("simulation seed={seed}");
            let mut config = SimConfig::new(seed, 2 + (seed % 9) as usize, 2_000);
            config.disconnect_chance = 0.01 + (seed % 5) as f64 * 0.01;
            run(&config);
        }
    }
}
