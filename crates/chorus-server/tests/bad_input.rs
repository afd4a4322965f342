//! Bad input: each gets a clear error (or a documented close), changes
//! nothing, and leaves every other user and room unaffected.

mod support;

use std::time::Duration;

use chorus_client::{Client, ClientError, ConnectOptions, Event};
use chorus_protocol::{close, ErrorCode, ServerMessage};
use serde_json::json;
use support::{drain, expect, start, TestServer};

/// Two bystanders in a room; after the offender's mischief they must still
/// talk to each other and see no change from it.
struct Bystanders {
    ann: Client,
    bob: Client,
}

impl Bystanders {
    async fn new(s: &TestServer) -> Self {
        let mut ann = s.client("ann").await;
        ann.join("calm", None).await.unwrap();
        let mut bob = s.client("bob").await;
        bob.join("calm", None).await.unwrap();
        expect(&mut ann, "bob joining", |m| matches!(m, ServerMessage::MemberJoined { .. }).then_some(())).await;
        Self { ann, bob }
    }

    /// Nothing reached the bystanders, they still talk, and the room holds
    /// `members` members.
    async fn unaffected(&mut self, s: &TestServer, members: usize) {
        let events = drain(&mut self.ann, Duration::from_millis(100)).await;
        assert!(
            !events.iter().any(|m| matches!(m, ServerMessage::MemberJoined { .. } | ServerMessage::MemberLeft { .. } | ServerMessage::Error { .. })),
            "a bystander saw something: {events:?}"
        );
        self.bob.cursor("calm", json!({"still": "here"})).unwrap();
        let c = expect(&mut self.ann, "a cursor between bystanders", |m| match m {
            ServerMessage::Cursor { cursor, .. } => Some(cursor.cursor.clone()),
            _ => None,
        })
        .await;
        assert_eq!(c, json!({"still": "here"}));
        let (_, body) = s.get("/v1/rooms/calm/members", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["count"], members, "{body}");
    }
}

async fn error_code(c: &mut Client) -> (ErrorCode, String) {
    expect(c, "an error", |m| match m {
        ServerMessage::Error { code, message, .. } => Some((*code, message.clone())),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn malformed_messages_get_errors_and_the_connection_carries_on() {
    let s = start(|_| {}).await;
    let mut by = Bystanders::new(&s).await;
    let mut bad = s.client("mallory").await;
    bad.join("calm", None).await.unwrap();
    expect(&mut by.ann, "mallory joining", |m| matches!(m, ServerMessage::MemberJoined { .. }).then_some(())).await;
    let cases = [
        ("{not json", ErrorCode::BadJson, "not valid JSON"),
        ("[1,2,3]", ErrorCode::BadMessage, "invalid message"),
        (r#"{"type":"teleport","room":"calm"}"#, ErrorCode::UnknownType, "teleport"),
        (r#"{"type":"join"}"#, ErrorCode::BadMessage, "room"),
        (r#"{"type":"join","room":42}"#, ErrorCode::BadMessage, "invalid type"),
        (r#"{"type":"cursor","room":"calm","cursor":"left"}"#, ErrorCode::BadMessage, "object or null"),
        (r#"{"type":"cursor","room":"elsewhere","cursor":{}}"#, ErrorCode::NotJoined, "elsewhere"),
        (r#"{"type":"join","room":"bad room!"}"#, ErrorCode::InvalidRoom, "not allowed"),
        (r#"{"type":"join","room":""}"#, ErrorCode::InvalidRoom, "1 to 128"),
        (r#"{"type":"join","room":"calm"}"#, ErrorCode::AlreadyJoined, "already"),
        (r#"{"type":"leave","room":"never"}"#, ErrorCode::NotJoined, "never"),
        (r#"{"type":"hello","protocol":1}"#, ErrorCode::BadMessage, "already"),
    ];
    for (frame, code, needle) in cases {
        bad.send_raw(frame).unwrap();
        let (got, message) = error_code(&mut bad).await;
        assert_eq!(got, code, "{frame}: {message}");
        assert!(message.contains(needle), "{frame}: {message:?} should mention {needle:?}");
    }
    bad.send_binary(vec![1, 2, 3]).unwrap();
    assert_eq!(error_code(&mut bad).await.0, ErrorCode::BinaryFrame);
    // Still connected and still a member.
    bad.heartbeat().await.unwrap();
    by.unaffected(&s, 3).await;
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let s = start(|c| c.max_message_bytes = 1_024).await;
    let mut by = Bystanders::new(&s).await;
    let mut bad = s.client("mallory").await;
    bad.send_raw(format!(r#"{{"type":"join","room":"{}"}}"#, "x".repeat(5_000))).unwrap();
    let (code, _) = bad.closed().await.unwrap();
    assert_eq!(code, Some(close::MESSAGE_TOO_BIG));
    by.unaffected(&s, 2).await;
}

#[tokio::test]
async fn invalid_utf8_closes_the_connection() {
    let s = start(|_| {}).await;
    let mut by = Bystanders::new(&s).await;
    let mut bad = s.client("mallory").await;
    bad.join("calm", None).await.unwrap();
    expect(&mut by.ann, "mallory joining", |m| matches!(m, ServerMessage::MemberJoined { .. }).then_some(())).await;
    bad.send_invalid_utf8(vec![b'{', 0xff, 0xfe, b'}']).unwrap();
    let (code, _) = bad.closed().await.unwrap();
    assert_eq!(code, Some(1007));
    // Mallory's leave is the only trace.
    let left = expect(&mut by.ann, "mallory leaving", |m| matches!(m, ServerMessage::MemberLeft { .. }).then_some(())).await;
    assert_eq!(left, ());
    by.unaffected(&s, 2).await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed() {
    let s = start(|c| c.messages_per_second = 20).await;
    let mut by = Bystanders::new(&s).await;
    let mut bad = s.client("mallory").await;
    for i in 0..500 {
        if bad.send_raw(format!(r#"{{"type":"heartbeat","id":{i}}}"#)).is_err() {
            break;
        }
    }
    let mut limited = false;
    let code = loop {
        match bad.next_event().await.unwrap() {
            Event::Message(ServerMessage::Error { code: ErrorCode::RateLimited, .. }) => limited = true,
            Event::Message(_) => {}
            Event::Closed { code, .. } => break code,
        }
    };
    assert!(limited, "the flood was told it is rate limited before being closed");
    assert_eq!(code, Some(close::FLOOD));
    by.unaffected(&s, 2).await;
}

#[tokio::test]
async fn handshake_violations_close_with_4002() {
    let s = start(|_| {}).await;
    let wrong_version = Client::connect(&s.ws_url(), ConnectOptions { protocol: 99, ..ConnectOptions::dev("x") }).await;
    match wrong_version {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::UnsupportedProtocol);
            assert!(message.contains("99"), "{message}");
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    // No hello first: a raw socket that starts with a join.
    let (mut ws, _) = tokio_tungstenite::connect_async(s.ws_url()).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(r#"{"type":"join","room":"r"}"#.into())).await.unwrap();
    let mut saw_error = false;
    while let Some(Ok(frame)) = ws.next().await {
        match frame {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                saw_error |= t.contains("hello_required");
            }
            tokio_tungstenite::tungstenite::Message::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), close::PROTOCOL);
                break;
            }
            _ => {}
        }
    }
    assert!(saw_error);
}

#[tokio::test]
async fn a_clients_close_is_answered_and_the_socket_ends() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = start(|_| {}).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?user=leaver", s.ws_url())).await.unwrap();
    ws.send(Message::Text(r#"{"type":"hello","protocol":1}"#.into())).await.unwrap();
    ws.send(Message::Close(None)).await.unwrap();
    // Well within the 2 s grace after which a writer is cut off anyway.
    let ended = tokio::time::timeout(Duration::from_millis(1_000), async {
        let mut answered = false;
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Message::Close(_)) => answered = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        answered
    })
    .await;
    assert_eq!(ended, Ok(true), "the server answers the close and ends the socket at once");
}

#[tokio::test]
async fn room_limits_are_enforced() {
    let s = start(|c| {
        c.rooms_per_connection = 2;
        c.members_per_room = 2;
    })
    .await;
    let mut ann = s.client("ann").await;
    ann.join("a", None).await.unwrap();
    ann.join("b", None).await.unwrap();
    let err = ann.join("c", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::TooManyRooms, .. }), "{err}");
    let mut bob = s.client("bob").await;
    bob.join("a", None).await.unwrap();
    let mut cid = s.client("cid").await;
    let err = cid.join("a", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::RoomFull, .. }), "{err}");
    // Nothing changed for the members.
    let (_, body) = s.get("/v1/rooms/a/members", None).await;
    assert!(body.contains("\"count\":2"), "{body}");
    cid.join("b", None).await.unwrap();
}
