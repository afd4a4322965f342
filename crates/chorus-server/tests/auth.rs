//! Tokens: accepted, refused, and enforced per room and permission.

mod support;

use chorus_client::{Client, ClientError, ConnectOptions};
use chorus_protocol::{close, ErrorCode, ServerMessage};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use support::{expect, start, TestServer};

const SECRET: &str = "test-secret-0123456789";

fn token(claims: Value) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn claims(sub: &str, rooms: Value) -> Value {
    json!({"sub": sub, "name": sub.to_uppercase(), "exp": 4_102_444_800u64, "rooms": rooms})
}

async fn secured() -> TestServer {
    start(|c| c.jwt_secret = Some(SECRET.into())).await
}

async fn refused(s: &TestServer, options: ConnectOptions) -> (Option<u16>, String) {
    match Client::connect(&s.ws_url(), options).await {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::Unauthorized, "{message}");
            (Some(close::UNAUTHORIZED), message)
        }
        Err(ClientError::Closed { code, reason }) => (code, reason),
        Err(e) => panic!("unexpected failure: {e}"),
        Ok(_) => panic!("the connection was accepted"),
    }
}

#[tokio::test]
async fn a_valid_token_names_the_user() {
    let s = secured().await;
    let t = token(json!({"sub": "u-17", "name": "Ann", "avatar": "https://example.com/a.png", "color": "#123456",
        "exp": 4_102_444_800u64, "rooms": {"team-42/*": ["read", "write", "presence"]}}));
    let mut c = s.connect(ConnectOptions::token(t)).await;
    assert_eq!(c.session.user.id, "u-17");
    assert_eq!(c.session.user.name.as_deref(), Some("Ann"));
    assert_eq!(c.session.user.color, "#123456");
    let joined = c.join("team-42/plan", None).await.unwrap();
    assert_eq!(joined.members[0].user.avatar.as_deref(), Some("https://example.com/a.png"));
}

#[tokio::test]
async fn the_token_may_come_as_a_subprotocol() {
    let s = secured().await;
    let t = token(claims("sub-user", json!({"*": ["read"]})));
    let c = s.connect(ConnectOptions { token_in_subprotocol: true, ..ConnectOptions::token(t) }).await;
    assert_eq!(c.session.user.id, "sub-user");
}

#[tokio::test]
async fn missing_wrong_and_expired_tokens_are_refused() {
    let s = secured().await;
    let (code, message) = refused(&s, ConnectOptions::default()).await;
    assert_eq!(code, Some(close::UNAUTHORIZED));
    assert!(message.contains("token is required"), "{message}");

    let forged = encode(&Header::default(), &claims("x", json!({})), &EncodingKey::from_secret(b"another secret")).unwrap();
    let (code, message) = refused(&s, ConnectOptions::token(forged)).await;
    assert_eq!(code, Some(close::UNAUTHORIZED));
    assert!(message.contains("invalid"), "{message}");

    let expired = token(json!({"sub": "x", "exp": 1_000}));
    let (_, message) = refused(&s, ConnectOptions::token(expired)).await;
    assert!(message.contains("expired"), "{message}");

    let (_, message) = refused(&s, ConnectOptions::token("not-a-jwt")).await;
    assert!(message.contains("invalid"), "{message}");
}

#[tokio::test]
async fn rooms_outside_the_token_are_forbidden() {
    let s = secured().await;
    let mut c = s.connect(ConnectOptions::token(token(claims("ann", json!({"team-42/*": ["read", "presence"]}))))).await;
    c.join("team-42/a", None).await.unwrap();
    let err = c.join("team-43/a", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::Forbidden, .. }), "{err}");
    // The connection carries on.
    c.heartbeat().await.unwrap();
}

#[tokio::test]
async fn read_only_users_watch_but_do_not_appear_or_act() {
    let s = secured().await;
    let mut writer = s.connect(ConnectOptions::token(token(claims("ann", json!({"r": ["read", "write", "presence"]}))))).await;
    writer.join("r", None).await.unwrap();
    let mut reader = s.connect(ConnectOptions::token(token(claims("rita", json!({"r": ["read"]}))))).await;
    let joined = reader.join("r", None).await.unwrap();
    assert_eq!(joined.count, 1, "a reader is not listed as a member");
    assert_eq!(joined.members[0].user.id, "ann");

    reader.cursor("r", json!({"x": 1})).unwrap();
    let code = expect(&mut reader, "cursor refused", |m| match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::Forbidden);
    reader.set_presence("r", json!({"typing": true})).unwrap();
    let code = expect(&mut reader, "presence refused", |m| match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::Forbidden);

    // The reader still sees what members do.
    writer.cursor("r", json!({"x": 2})).unwrap();
    let c = expect(&mut reader, "the writer's cursor", |m| match m {
        ServerMessage::Cursor { cursor, .. } => Some(cursor.cursor.clone()),
        _ => None,
    })
    .await;
    assert_eq!(c, json!({"x": 2}));
    // And the writer never heard of the reader.
    let events = support::drain(&mut writer, std::time::Duration::from_millis(200)).await;
    assert!(!events.iter().any(|m| matches!(m, ServerMessage::MemberJoined { .. } | ServerMessage::Cursor { .. })), "{events:?}");
}

#[tokio::test]
async fn development_mode_admits_anonymous_users() {
    let s = start(|c| c.dev = true).await;
    let c = s.client("ann").await;
    assert_eq!(c.session.user.id, "ann");
    let anon = s.connect(ConnectOptions::default()).await;
    assert!(anon.session.user.id.starts_with("anon-"));
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token for `sub` that expires `secs` seconds from now.
fn expiring(sub: &str, secs: u64, rooms: Value) -> String {
    token(json!({"sub": sub, "exp": now_s() + secs, "rooms": rooms}))
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires() {
    let s = secured().await;
    let mut c = s.connect(ConnectOptions::token(expiring("ann", 2, json!({"*": ["read"]})))).await;
    assert!(c.session.token_expires_at.is_some(), "welcome tells the expiry");
    let (code, reason) = c.closed().await.expect("closed at the token's exp");
    assert_eq!(code, Some(close::UNAUTHORIZED), "{reason}");
    assert!(reason.contains("token expired"), "{reason}");
}

#[tokio::test]
async fn a_refreshed_connection_goes_on_with_the_new_permissions() {
    let s = secured().await;
    let first = expiring("ann", 2, json!({"a": ["read", "presence"], "b": ["read", "presence"]}));
    let mut c = s.connect(ConnectOptions::token(first)).await;
    c.join("a", None).await.unwrap();
    c.join("b", None).await.unwrap();
    // Another user's token is refused, and changes nothing.
    let err = c.refresh_token(&expiring("bob", 600, json!({"*": ["read"]}))).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::Unauthorized, .. }), "{err:?}");
    let at = c.refresh_token(&expiring("ann", 600, json!({"a": ["read", "presence", "write"]}))).await.unwrap();
    assert!(at.is_some_and(|at| at > (now_s() + 500) * 1000), "{at:?}");
    assert_eq!(c.session.token_expires_at, at);
    let reason = c
        .wait_for(|e| match e {
            chorus_client::Event::Message(ServerMessage::Left { room, reason, .. }) if room == "b" => Some(*reason),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(reason, chorus_protocol::LeaveReason::Forbidden);
    // Past the first token's exp the connection is still open, with write in `a`.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    c.heartbeat().await.expect("still open");
    c.update_value("a", "n", chorus_protocol::ValueKind::GCounter, chorus_protocol::Change::Increment { by: 1 }).await.expect("write granted now");
    let err = c.join("b", None).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { code: ErrorCode::Forbidden, .. }), "{err:?}");
}

#[tokio::test]
async fn a_token_source_keeps_the_connection_open() {
    let s = secured().await;
    let source = chorus_client::TokenSource::new(|| async { Ok(expiring("ann", 3, json!({"*": ["read"]}))) });
    let mut c = s.connect(ConnectOptions { token_source: Some(source), ..ConnectOptions::default() }).await;
    c.join("r", None).await.unwrap();
    // Two expiries pass; the client sent fresh tokens before each.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    c.heartbeat().await.expect("still open");
}

#[tokio::test]
async fn tokens_without_exp_are_refused_unless_allowed() {
    let s = secured().await;
    let (code, message) = refused(&s, ConnectOptions::token(token(json!({"sub": "ann"})))).await;
    assert_eq!(code, Some(close::UNAUTHORIZED));
    assert!(message.contains("--allow-tokens-without-exp"), "{message}");
    let s = start(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.allow_tokens_without_exp = true;
    })
    .await;
    let c = s.connect(ConnectOptions::token(token(json!({"sub": "ann"})))).await;
    assert_eq!(c.session.token_expires_at, None);
}
