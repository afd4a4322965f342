//! Real editing traces replayed through the text type and through the
//! client/server OT machinery; each must end with the text its recording says.

use std::io::Read;
use std::path::PathBuf;

use chorus_core::client::{OtClient, Submission};
use chorus_core::oplog::{Accepted, OrderedText};
use chorus_core::text::{TextDoc, TextOp};
use chorus_core::trace::Trace;

fn load(name: &str) -> Trace {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/traces").join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut json).expect("trace is gzipped JSON");
    Trace::from_json(&json).expect("trace parses")
}

#[test]
fn automerge_paper_replays_patch_by_patch() {
    let trace = load("automerge-paper.json.gz");
    let ops = trace.patch_ops();
    assert_eq!(ops.len(), 259_778);
    let mut doc = TextDoc::from(trace.start_content.as_str());
    for (i, op) in ops.iter().enumerate() {
        doc.apply(op).unwrap_or_else(|e| panic!("patch {i} ({op}): {e}"));
    }
    assert_eq!(doc.len_chars(), 104_852);
    assert!(doc.to_string() == trace.end_content, "replayed text differs from endContent");
}

#[test]
fn clownschool_as_a_sequence_of_merged_states_is_not_sequential() {
    // Guard for the concurrent replay below: replaying the concurrent trace
    // naively, as if sequential, must not reach the end text (or the
    // concurrent test would prove nothing about transformation).
    let trace = load("clownschool.json.gz");
    let mut doc = TextDoc::new();
    let mut failed = false;
    for t in &trace.txns {
        if doc.apply(&t.to_op()).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed || doc.to_string() != trace.end_content);
}

/// One agent of the concurrent trace, as a Chorus client.
struct Agent {
    ot: OtClient,
    text: TextDoc,
    /// Log entries delivered to this client so far.
    received: usize,
    /// For each agent, how many of its transactions this client has seen.
    seen: Vec<usize>,
    /// Transactions this agent has made.
    made: usize,
    /// A submission sent but not yet delivered to the server, with the count
    /// of this agent's transactions it carries up to.
    sending: Option<(Submission, usize)>,
}

/// The server's op log, with what each entry carries: its author and that
/// author's transaction count up to and including it.
struct Server {
    doc: OrderedText,
    entries: Vec<(usize, usize, TextOp)>,
    committed: Vec<usize>,
}

/// Replays a concurrent trace: every agent is an OT client with one op in
/// flight; every transaction is made when its client has seen exactly the
/// transactions its parents describe (so its positions mean what they meant to
/// the person typing) and is submitted at the version that client holds.
/// Messages travel only when a later transaction needs them, so concurrency in
/// the trace becomes concurrency on the wire.
fn replay_concurrent(trace: &Trace, limit: usize) -> Result<String, String> {
    let agents = trace.num_agents.unwrap_or(1);
    // For each transaction, how many of each agent's transactions it follows.
    let mut before: Vec<Vec<usize>> = Vec::with_capacity(trace.txns.len());
    let mut after: Vec<Vec<usize>> = Vec::with_capacity(trace.txns.len());
    for t in &trace.txns {
        let mut vv = vec![0; agents];
        for &p in &t.parents {
            for (a, n) in after[p].iter().enumerate() {
                vv[a] = vv[a].max(*n);
            }
        }
        let mut inc = vv.clone();
        inc[t.agent] += 1;
        before.push(vv);
        after.push(inc);
    }

    let mut server = Server { doc: OrderedText::default(), entries: Vec::new(), committed: vec![0; agents] };
    let mut clients: Vec<Agent> = (0..agents)
        .map(|_| Agent {
            ot: OtClient::new(0, 1),
            text: TextDoc::new(),
            received: 0,
            seen: vec![0; agents],
            made: 0,
            sending: None,
        })
        .collect();

    for (i, t) in trace.txns.iter().enumerate().take(limit) {
        let a = t.agent;
        if before[i][a] != clients[a].made {
            return Err(format!("txn {i}: agent {a} is not sequential"));
        }
        // Everything this transaction saw must be ordered by the server...
        for b in (0..agents).filter(|&b| b != a) {
            while server.committed[b] < before[i][b] {
                flush(&mut server, &mut clients, b).map_err(|e| format!("txn {i}: {e}"))?;
            }
        }
        // ...and delivered to its author, and nothing more.
        while (0..agents).any(|b| b != a && clients[a].seen[b] < before[i][b]) {
            deliver_next(&server, &mut clients, a).map_err(|e| format!("txn {i}: {e}"))?;
        }
        if let Some(b) = (0..agents).find(|&b| b != a && clients[a].seen[b] != before[i][b]) {
            return Err(format!(
                "txn {i} by agent {a} saw {} of agent {b}'s edits, but its client had already received {}: \
                 the trace's history cannot be had through one server order",
                before[i][b], clients[a].seen[b]
            ));
        }
        let c = &mut clients[a];
        let op = t.to_op();
        c.text.apply(&op).map_err(|e| format!("txn {i} does not apply at its parents' state: {e}"))?;
        c.made += 1;
        c.seen[a] += 1;
        if let Some(sub) = c.ot.local(op) {
            c.sending = Some((sub, c.made));
        }
        // Sent ops reach the server at once, and acks that need no unseen
        // op before them reach their client at once: the smallest op units.
        loop {
            let mut moved = false;
            for b in 0..agents {
                if clients[b].sending.is_some() {
                    flush(&mut server, &mut clients, b)?;
                    moved = true;
                }
                while server.entries.get(clients[b].received).is_some_and(|e| e.0 == b) {
                    deliver_next(&server, &mut clients, b)?;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }
    // Drain: everything to the server, everything to everyone.
    loop {
        let mut progressed = false;
        for b in 0..agents {
            if clients[b].sending.is_some() || !clients[b].ot.is_synchronized() {
                flush(&mut server, &mut clients, b)?;
                progressed = true;
            }
        }
        for b in 0..agents {
            while clients[b].received < server.entries.len() {
                deliver_next(&server, &mut clients, b)?;
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    let text = server.doc.text().to_string();
    for (b, c) in clients.iter().enumerate() {
        if c.text.to_string() != text {
            return Err(format!("agent {b} ended with a different text than the server"));
        }
    }
    Ok(text)
}

/// Moves agent `b`'s edits one step closer to the server: delivers the op it
/// has sent, or brings it the ack it waits for so that it sends its buffer.
fn flush(server: &mut Server, clients: &mut [Agent], b: usize) -> Result<(), String> {
    if let Some((sub, upto)) = clients[b].sending.take() {
        let accepted = server
            .doc
            .submit(&b.to_string(), sub.seq, sub.base, &sub.op)
            .map_err(|e| format!("server refused agent {b}'s op: {e}"))?;
        let Accepted::Committed { op, .. } = accepted else {
            return Err("a submission was taken for a duplicate".into());
        };
        server.entries.push((b, upto, op));
        server.committed[b] = upto;
        return Ok(());
    }
    if clients[b].ot.is_synchronized() {
        return Err(format!("agent {b} has nothing left to send"));
    }
    while clients[b].sending.is_none() && !clients[b].ot.is_synchronized() {
        deliver_next(server, clients, b)?;
    }
    Ok(())
}

/// Delivers the next log entry to client `c`: its own op as an ack, anyone
/// else's as a remote op.
fn deliver_next(server: &Server, clients: &mut [Agent], c: usize) -> Result<(), String> {
    let client = &mut clients[c];
    let Some((author, upto, op)) = server.entries.get(client.received) else {
        return Err(format!("agent {c} needs an op the server has not ordered"));
    };
    client.received += 1;
    let version = client.received as u64;
    if *author == c {
        if let Some(sub) = client.ot.ack(version).map_err(|e| format!("agent {c}: {e}"))? {
            client.sending = Some((sub, client.made));
        }
    } else {
        let op = client.ot.remote(version, op).map_err(|e| format!("agent {c}: {e}"))?;
        client.text.apply(&op).map_err(|e| format!("agent {c} cannot apply a remote op: {e}"))?;
        client.seen[*author] = *upto;
    }
    Ok(())
}

/// How far the concurrent trace goes through one-op-in-flight clients and one
/// server order before its recorded history stops being one that such a
/// system can produce (see docs/traces.md).
const CLOWNSCHOOL_REPLAYABLE: usize = 115;

#[test]
fn clownschool_prefix_replays_through_clients_and_one_server() {
    let trace = load("clownschool.json.gz");
    assert_eq!(trace.txns.len(), 23_136);
    let text = replay_concurrent(&trace, CLOWNSCHOOL_REPLAYABLE).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.len() > 50, "the prefix wrote {text:?}");
}

#[test]
fn clownschool_beyond_the_prefix_needs_finer_grained_delivery() {
    // Pins the finding documented in docs/traces.md, so a change to the client
    // or the replay that lifts the limit shows up here.
    let trace = load("clownschool.json.gz");
    let err = replay_concurrent(&trace, trace.txns.len()).unwrap_err();
    assert!(err.starts_with("txn 116 by agent 2"), "{err}");
    assert!(err.contains("cannot be had through one server order"), "{err}");
}

// A small concurrent history with a merge, to test the replay itself: two
// agents type concurrently from "ab", then agent 0 merges both.
#[test]
fn replay_handles_a_hand_made_merge() {
    let trace = Trace::from_json(
        r#"{"kind":"concurrent","numAgents":2,"endContent":"aXbY!","txns":[
            {"parents":[],"agent":0,"patches":[[0,0,"ab"]]},
            {"parents":[0],"agent":0,"patches":[[1,0,"X"]]},
            {"parents":[0],"agent":1,"patches":[[2,0,"Y"]]},
            {"parents":[1,2],"agent":0,"patches":[[4,0,"!"]]}]}"#,
    )
    .unwrap();
    assert_eq!(replay_concurrent(&trace, usize::MAX).unwrap(), "aXbY!");
}
