//! The `Origin` check end to end: raw HTTP requests as a browser sends
//! them, to a WebSocket upgrade and to the HTTP API, against servers in
//! production mode (a token key) and in development mode.

mod support;

use std::net::SocketAddr;

use support::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `GET path` with `Origin: origin` (if any) as a WebSocket upgrade or
/// a plain request, and returns the status and the response head and body.
async fn request(addr: SocketAddr, path: &str, origin: Option<&str>, upgrade: bool) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let upgrade = if upgrade {
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    } else {
        "Connection: close\r\n"
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{origin}{upgrade}\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    // Read the head (and what body comes with it); an upgraded socket stays open.
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, text)
}

#[tokio::test]
async fn production_refuses_other_origins_and_admits_its_own_and_non_browsers() {
    let s = start(|c| {
        c.jwt_secret = Some("s3cret".into());
        c.api_token = Some("api".into());
    })
    .await;
    let (status, text) = request(s.addr, "/v1/ws", Some("https://evil.example"), true).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("forbidden_origin") && text.contains("--allowed-origins"), "{text}");
    let (status, text) = request(s.addr, "/v1/rooms", Some("https://evil.example"), false).await;
    assert_eq!(status, 403, "{text}");
    // Same origin, and no Origin at all (a backend), reach the endpoint: the
    // upgrade happens (the token is checked after it, in the protocol).
    let own = format!("http://{}", s.addr);
    assert_eq!(request(s.addr, "/v1/ws", Some(&own), true).await.0, 101);
    assert_eq!(request(s.addr, "/v1/ws", None, true).await.0, 101);
    // Pages outside /v1/ are not guarded: health checks carry no Origin anyway.
    assert_eq!(request(s.addr, "/healthz", Some("https://evil.example"), false).await.0, 200);
}

#[tokio::test]
async fn listed_origins_are_admitted_exactly() {
    let s = start(|c| {
        c.jwt_secret = Some("s3cret".into());
        c.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    assert_eq!(request(s.addr, "/v1/ws", Some("https://app.example.com"), true).await.0, 101);
    assert_eq!(request(s.addr, "/v1/ws", Some("https://app.example.com.evil.example"), true).await.0, 403);
    assert_eq!(request(s.addr, "/v1/ws", Some("http://app.example.com"), true).await.0, 403);
}

#[tokio::test]
async fn development_mode_admits_any_origin() {
    let s = start(|c| c.dev = true).await;
    assert_eq!(request(s.addr, "/v1/ws", Some("https://anywhere.example"), true).await.0, 101);
    assert_eq!(request(s.addr, "/v1/rooms", Some("https://anywhere.example"), false).await.0, 200);
}
