//! The Rust client against the server's limits, on real servers over real
//! sockets: a 200 KB paste goes out in ops that fit and arrives whole; an
//! edit past the document limit is refused at once; an op the server refuses
//! as `op_too_large` is dropped and the document reloaded, so `sync` returns
//! instead of timing out; a frame the server closes the connection for is
//! not resent after reconnecting; and submissions the rate limiter dropped
//! are resent, so an op-by-op replay gets to its end.

mod support;

use std::time::Duration;

use chorus_client::{Client, ClientError, ConnectOptions, Event};
use chorus_protocol::{ErrorCode, ServerMessage};
use support::start;

/// `bytes` of text mixing ASCII, accents, emoji, quotes, backslashes and line
/// breaks (multi-byte UTF-8 and JSON escapes).
fn paste(bytes: usize) -> String {
    let pieces = ["Lorem ipsum dolor sit amet, ", "naïve café ", "😀🎉👩‍💻 ", "\"quoted\" \\ back\\slash ", "\n", "e\u{301} ", "\t"];
    let mut s = String::new();
    for piece in pieces.iter().cycle() {
        if s.len() >= bytes {
            break;
        }
        s.push_str(piece);
    }
    s
}

/// The errors the client surfaced so far (draining its events for `wait`).
async fn errors(client: &mut Client, wait: Duration) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    while let Some(e) = client.next_event_within(wait).await {
        if let Event::Message(ServerMessage::Error { code, .. }) = e {
            codes.push(code);
        }
    }
    codes
}

#[tokio::test]
async fn a_200_kb_paste_arrives_whole() {
    let s = start(|_| {}).await;
    let mut ann = s.client("ann").await;
    let mut bob = s.client("bob").await;
    for c in [&mut ann, &mut bob] {
        c.join("r", None).await.unwrap();
        c.open_doc("r", "d").await.unwrap();
    }
    let text = paste(200 * 1024);
    let connection = ann.connection().to_owned();
    ann.insert("r", "d", 0, "before|after").unwrap();
    ann.insert("r", "d", 7, &text).unwrap();
    ann.sync("r", "d").await.expect("the paste is acknowledged");
    let expected = format!("before|{text}after");
    assert_eq!(ann.doc("r", "d").unwrap().text().to_string(), expected);
    let (server, version) = s.doc_text("r", "d").await;
    assert_eq!(server, expected, "the server has the whole paste");
    assert!(version as usize > text.len() / 32_768, "sent in pieces: {version} versions");
    assert_eq!(ann.connection(), connection, "never reconnected");
    bob.catch_up("r", "d", version).await.unwrap();
    assert_eq!(bob.doc("r", "d").unwrap().text().to_string(), expected);
    assert_eq!(s.replay_log("r", "d").await, expected);
    assert!(errors(&mut ann, Duration::from_millis(100)).await.is_empty());
}

#[tokio::test]
async fn an_edit_past_the_document_limit_is_refused_here_and_not_sent() {
    let s = start(|c| c.max_document_bytes = 50_000).await;
    let mut ann = s.client("ann").await;
    ann.join("r", None).await.unwrap();
    ann.open_doc("r", "d").await.unwrap();
    ann.insert("r", "d", 0, "kept").unwrap();
    ann.sync("r", "d").await.unwrap();
    let refused = ann.insert("r", "d", 4, &paste(60_000)).unwrap_err();
    assert!(matches!(refused, ClientError::Refused { code: ErrorCode::DocumentTooLarge, .. }), "{refused:?}");
    let doc = ann.doc("r", "d").unwrap();
    assert_eq!(doc.text().to_string(), "kept", "nothing was applied");
    assert!(doc.is_synchronized(), "nothing waits to be sent");
    assert_eq!(s.doc_text("r", "d").await, ("kept".into(), 1));
    // What fits still goes through, in pieces.
    ann.insert("r", "d", 4, &paste(40_000)).unwrap();
    ann.sync("r", "d").await.unwrap();
    assert_eq!(s.doc_text("r", "d").await.0, ann.doc("r", "d").unwrap().text().to_string());
}

#[tokio::test]
async fn an_op_refused_as_too_large_is_dropped_and_the_document_reloaded() {
    let s = start(|_| {}).await;
    let mut ann = s.client("ann").await;
    ann.join("r", None).await.unwrap();
    // Pretend the server allows large ops: the next edit goes out whole, and
    // the server refuses it.
    ann.session.limits.max_op_bytes = usize::MAX;
    ann.open_doc("r", "d").await.unwrap();
    ann.insert("r", "d", 0, "safe").unwrap();
    ann.sync("r", "d").await.unwrap();
    ann.insert("r", "d", 4, &"x".repeat(40_000)).unwrap();
    ann.sync("r", "d").await.expect("sync returns: the refused op is dropped");
    let doc = ann.doc("r", "d").unwrap();
    assert_eq!(doc.text().to_string(), "safe", "the refused edit is gone from the local text");
    assert_eq!((doc.resets, doc.lost_edits), (1, 1));
    assert_eq!(s.doc_text("r", "d").await, ("safe".into(), 1));
    assert_eq!(errors(&mut ann, Duration::from_millis(300)).await, vec![ErrorCode::OpTooLarge], "refused once, never resent");
    // The document carries on.
    ann.insert("r", "d", 4, "!").unwrap();
    ann.sync("r", "d").await.unwrap();
    assert_eq!(s.doc_text("r", "d").await, ("safe!".into(), 2));
}

#[tokio::test]
async fn a_frame_over_the_message_limit_is_not_resent_after_reconnecting() {
    let s = start(|_| {}).await;
    let mut ann = s.connect(ConnectOptions { reconnect: true, ..ConnectOptions::dev("ann") }).await;
    ann.join("r", None).await.unwrap();
    // Pretend the server allows huge frames and ops: the frame is over the
    // real limit and the server closes the connection (1009).
    ann.session.limits.max_op_bytes = usize::MAX;
    ann.session.limits.max_message_bytes = usize::MAX;
    ann.open_doc("r", "d").await.unwrap();
    ann.insert("r", "d", 0, "safe").unwrap();
    ann.sync("r", "d").await.unwrap();
    let first = ann.connection().to_owned();
    ann.insert("r", "d", 4, &"y".repeat(70 * 1024)).unwrap();
    ann.sync("r", "d").await.expect("sync returns after one reconnect");
    let second = ann.connection().to_owned();
    assert_ne!(first, second, "the server closed the connection once");
    let doc = ann.doc("r", "d").unwrap();
    assert_eq!(doc.text().to_string(), "safe");
    assert_eq!((doc.resets, doc.lost_edits), (1, 1));
    // No loop: the connection stays, nothing more is sent.
    ann.pump(Duration::from_millis(500)).await;
    assert!(ann.is_connected());
    assert_eq!(ann.connection(), second);
    assert_eq!(s.doc_text("r", "d").await, ("safe".into(), 1));
}

#[tokio::test]
async fn submissions_the_rate_limiter_dropped_are_resent_so_a_replay_finishes() {
    // 20 messages a second, bursts of 40: 90 ops, each awaited, run into it.
    let s = start(|c| c.messages_per_second = 20).await;
    let mut ann = s.client("ann").await;
    ann.join("r", None).await.unwrap();
    ann.open_doc("r", "d").await.unwrap();
    let mut expected = String::new();
    let mut limited = 0;
    for i in 0..90u8 {
        let piece = char::from(b'a' + i % 26);
        let at = expected.chars().count();
        ann.insert("r", "d", at, &piece.to_string()).unwrap();
        expected.push(piece);
        ann.sync("r", "d").await.unwrap_or_else(|e| panic!("op {i} was never acknowledged: {e}"));
        limited += errors(&mut ann, Duration::ZERO).await.iter().filter(|c| **c == ErrorCode::RateLimited).count();
    }
    assert!(limited > 0, "the rate limiter dropped some submissions");
    assert_eq!(s.doc_text("r", "d").await, (expected, 90));
}
