//! Per-user undo and redo over real sockets: undo takes back only the
//! user's own edits, whatever others typed since, every client converges,
//! and the history survives a reconnect.

mod support;

use std::time::Duration;

use chorus_client::{Client, ConnectOptions};
use chorus_protocol::{ErrorCode, ServerMessage, UndoAction};
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::{expect, start, TestServer};

const ROOM: &str = "team/undo";

async fn editor(server: &TestServer, user: &str) -> Client {
    let mut c = server.connect(ConnectOptions { reconnect: true, ..ConnectOptions::dev(user) }).await;
    c.join(ROOM, None).await.expect("join");
    c.open_doc(ROOM, "d").await.expect("open");
    c
}

fn text(c: &Client) -> String {
    c.doc(ROOM, "d").unwrap().text().to_string()
}

/// Every client reaches the server's head and text.
async fn converge(server: &TestServer, clients: &mut [&mut Client]) -> String {
    let (head_text, version) = server.doc_text(ROOM, "d").await;
    for (i, c) in clients.iter_mut().enumerate() {
        c.sync(ROOM, "d").await.unwrap();
        c.catch_up(ROOM, "d", version).await.unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(text(c), head_text, "client {i}");
    }
    head_text
}

#[tokio::test]
async fn undo_takes_back_only_the_users_own_text() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann").await;
    let mut bob = editor(&server, "bob").await;
    ann.insert(ROOM, "d", 0, "hello").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    bob.catch_up(ROOM, "d", 1).await.unwrap();
    bob.insert(ROOM, "d", 5, " world").unwrap();
    bob.sync(ROOM, "d").await.unwrap();
    let undone = ann.undo(ROOM, "d").await.unwrap().expect("ann has something to undo");
    assert_eq!(undone, 3);
    assert_eq!(converge(&server, &mut [&mut ann, &mut bob]).await, " world");
    assert_eq!(ann.undo(ROOM, "d").await.unwrap(), None, "nothing more to undo");
    assert_eq!(ann.redo(ROOM, "d").await.unwrap(), Some(4));
    assert_eq!(converge(&server, &mut [&mut ann, &mut bob]).await, "hello world");
    assert_eq!(ann.redo(ROOM, "d").await.unwrap(), None, "nothing more to redo");
    // Bob's history is his own.
    assert!(bob.undo(ROOM, "d").await.unwrap().is_some());
    assert_eq!(converge(&server, &mut [&mut ann, &mut bob]).await, "hello");
}

#[tokio::test]
async fn a_new_edit_clears_redo_and_deleted_text_comes_back() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann").await;
    let mut bob = editor(&server, "bob").await;
    ann.insert(ROOM, "d", 0, "one two three").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await; // past the capture window: a step of its own
    ann.delete(ROOM, "d", 3, 4).unwrap(); // " two"
    ann.sync(ROOM, "d").await.unwrap();
    bob.catch_up(ROOM, "d", 2).await.unwrap();
    bob.insert(ROOM, "d", 0, ">> ").unwrap();
    bob.sync(ROOM, "d").await.unwrap();
    ann.undo(ROOM, "d").await.unwrap().expect("the delete");
    assert_eq!(converge(&server, &mut [&mut ann, &mut bob]).await, ">> one two three");
    ann.insert(ROOM, "d", 3, "!").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    assert_eq!(ann.redo(ROOM, "d").await.unwrap(), None, "a new edit clears redo");
}

#[tokio::test]
async fn undo_and_redo_of_three_users_converge_on_every_client() {
    let server = start(|_| {}).await;
    let mut users = [editor(&server, "ann").await, editor(&server, "bob").await, editor(&server, "cid").await];
    for round in 0..4 {
        for (i, c) in users.iter_mut().enumerate() {
            let at = c.doc(ROOM, "d").unwrap().text().len_chars();
            c.insert(ROOM, "d", at, &format!("[{i}.{round}]")).unwrap();
            c.pump(Duration::from_millis(5)).await;
        }
        let i = round % 3;
        users[i].sync(ROOM, "d").await.unwrap();
        users[i].undo(ROOM, "d").await.unwrap();
        if round % 2 == 1 {
            users[(i + 1) % 3].sync(ROOM, "d").await.unwrap();
            users[(i + 1) % 3].undo(ROOM, "d").await.unwrap();
            users[i].redo(ROOM, "d").await.unwrap();
        }
    }
    let [a, b, c] = &mut users;
    let final_text = converge(&server, &mut [a, b, c]).await;
    assert!(final_text.contains('['), "{final_text}");
    // Everyone undoes everything: nothing is left but what was never typed.
    for u in users.iter_mut() {
        while u.undo(ROOM, "d").await.unwrap().is_some() {}
    }
    let [a, b, c] = &mut users;
    assert_eq!(converge(&server, &mut [a, b, c]).await, "");
}

/// Others only insert at the very start and delete their own characters,
/// so they never edit inside the undoing user's text; undoing all of that
/// user's steps must then leave exactly the others' text, and redoing them
/// all must bring the text back.
#[tokio::test]
async fn undoing_all_of_one_users_steps_leaves_exactly_what_the_others_wrote() {
    undo_everything("undoing_all_of_one_users_steps_leaves_exactly_what_the_others_wrote", |_| {}).await;
}

/// The same while the log is trimmed every few ops: histories keep what
/// they need whatever the log still holds.
#[tokio::test]
async fn undoing_all_of_one_users_steps_works_across_log_trims() {
    undo_everything("undoing_all_of_one_users_steps_works_across_log_trims", |c| {
        c.doc_snapshot_every = 7;
        c.doc_log_window = 2;
    })
    .await;
}

async fn undo_everything(name: &str, configure: impl FnOnce(&mut chorus_server::Config)) {
    let seed: u64 = std::env::var("CHORUS_UNDO_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("{name}: seed={seed} (CHORUS_UNDO_SEED replays it)");
    let server = start(|c| {
        c.messages_per_second = 10_000;
        configure(c);
    })
    .await;
    let mut tasks = Vec::new();
    for (i, alphabet) in [("undoer", ['u', '😀']), ("other1", ['a', 'é']), ("other2", ['b', 'c'])].into_iter().enumerate() {
        let (user, letters) = alphabet;
        let mut c = editor(&server, user).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            for _ in 0..25 {
                let mine: Vec<usize> = text(&c).chars().enumerate().filter(|(_, ch)| letters.contains(ch)).map(|(p, _)| p).collect();
                let len = text(&c).chars().count();
                if mine.is_empty() || rng.random_bool(0.7) {
                    let ch = letters[rng.random_range(0..2)].to_string();
                    // The undoer types at the end, the others at the start.
                    let at = if i == 0 { len } else { 0 };
                    c.insert(ROOM, "d", at, &ch).unwrap();
                } else {
                    c.delete(ROOM, "d", mine[rng.random_range(0..mine.len())], 1).unwrap();
                }
                // Pauses long enough, now and then, to start a new undo step.
                let pause = if rng.random_bool(0.15) { 550 } else { rng.random_range(0..20) };
                c.pump(Duration::from_millis(pause)).await;
            }
            c.sync(ROOM, "d").await.unwrap();
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let [u, o1, o2] = &mut clients[..] else { unreachable!() };
    let before = converge(&server, &mut [u, o1, o2]).await;
    let others: String = before.chars().filter(|ch| !['u', '😀'].contains(ch)).collect();
    // The undoer reconnects: the history is saved when the connection
    // leaves and loaded when it opens the document again.
    u.disconnect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    u.reconnect().await.unwrap();
    u.sync(ROOM, "d").await.unwrap();
    let mut steps = 0;
    while u.undo(ROOM, "d").await.unwrap().is_some() {
        steps += 1;
        assert!(steps < 100, "seed {seed}: undo never ran out");
    }
    assert!(steps >= 1, "seed {seed}");
    assert_eq!(converge(&server, &mut [u, o1, o2]).await, others, "seed {seed}: {steps} undos of the undoer's steps");
    for _ in 0..steps {
        assert!(u.redo(ROOM, "d").await.unwrap().is_some(), "seed {seed}");
    }
    assert_eq!(converge(&server, &mut [u, o1, o2]).await, before, "seed {seed}: redoing everything brings the text back");
}

#[tokio::test]
async fn the_history_survives_a_reconnect() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann").await;
    let mut bob = editor(&server, "bob").await;
    ann.insert(ROOM, "d", 0, "draft").unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    // Ann's connection drops; her history is saved when it leaves.
    ann.disconnect();
    bob.catch_up(ROOM, "d", 1).await.unwrap();
    bob.insert(ROOM, "d", 5, "!").unwrap();
    bob.sync(ROOM, "d").await.unwrap();
    ann.reconnect().await.unwrap();
    ann.sync(ROOM, "d").await.unwrap();
    assert!(ann.undo(ROOM, "d").await.unwrap().is_some(), "the history came back");
    assert_eq!(converge(&server, &mut [&mut ann, &mut bob]).await, "!");
}

async fn error(c: &mut Client) -> ErrorCode {
    expect(c, "an error", |m| match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn undo_with_nothing_to_undo_is_a_typed_no_op_and_bad_requests_are_refused() {
    let server = start(|_| {}).await;
    let mut ann = editor(&server, "ann").await;
    ann.send_raw(json!({"type": "undo", "id": 1, "room": ROOM, "doc": "d"}).to_string()).unwrap();
    let reply = expect(&mut ann, "undo_result", |m| match m {
        ServerMessage::UndoResult { id: Some(1), action, done, version, .. } => Some((*action, *done, *version)),
        _ => None,
    })
    .await;
    assert_eq!(reply, (UndoAction::Undo, false, None));
    assert_eq!(server.doc_text(ROOM, "d").await, (String::new(), 0), "nothing changed");
    ann.send_raw(json!({"type": "redo", "id": 2, "room": ROOM, "doc": "closed"}).to_string()).unwrap();
    assert_eq!(error(&mut ann).await, ErrorCode::NotOpen);
    ann.send_raw(json!({"type": "undo", "id": 3, "room": "elsewhere", "doc": "d"}).to_string()).unwrap();
    assert_eq!(error(&mut ann).await, ErrorCode::NotJoined);
    ann.send_raw(json!({"type": "undo", "id": 4, "room": ROOM}).to_string()).unwrap();
    assert_eq!(error(&mut ann).await, ErrorCode::BadMessage);
}
