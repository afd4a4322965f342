//! Connections before and around the upgrade, over raw TCP sockets: idle,
//! trickling and stalled connections are closed by the timeouts (configured
//! small here), and the connection limit refuses cleanly with 503 while
//! `/healthz` still answers.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{http_get, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any timeout configured here: only a server that never
/// closes the connection reaches it.
const GUARD: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(GUARD, stream.read_to_end(&mut got)).await;
    assert!(outcome.is_ok(), "the server left the connection open: {}", String::from_utf8_lossy(&got));
    String::from_utf8_lossy(&got).to_string()
}

async fn timeouts_server() -> support::TestServer {
    start(|c| {
        c.header_timeout_ms = 300;
        c.body_timeout_ms = 300;
    })
    .await
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let s = timeouts_server().await;
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    assert_eq!(read_to_close(&mut idle).await, "", "closed without a word");
}

#[tokio::test]
async fn a_connection_idle_after_a_request_is_closed() {
    let s = timeouts_server().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes()).await.unwrap();
    let answer = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let s = timeouts_server().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await.unwrap();
    let trickle = async {
        // One byte at a time, never finishing the headers.
        while c.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut probe = [0u8; 64];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), c.read(&mut probe)).await {
                return;
            }
        }
    };
    assert!(tokio::time::timeout(GUARD, trickle).await.is_ok(), "a trickling client kept its connection");
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let s = timeouts_server().await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/rooms/r/values/v HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\":",
        s.addr
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
}

async fn upgrade(addr: SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.unwrap();
    read_to_close(&mut c).await
}

#[tokio::test]
async fn at_the_connection_limit_upgrades_get_503_and_health_checks_still_answer() {
    let s = start(|c| c.max_connections = 3).await;
    let mut clients = Vec::new();
    for user in ["ann", "bob", "cid"] {
        clients.push(s.client(user).await);
    }
    let refused = upgrade(s.addr).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    assert_eq!(http_get(s.addr, "/healthz", None).await, (200, "ok\n".into()));
    let (status, metrics) = http_get(s.addr, "/metrics", None).await;
    assert_eq!(status, 200);
    let refusals = metrics.lines().find(|l| l.starts_with("chorus_connections_refused_total ")).expect("the metric");
    assert_ne!(refusals, "chorus_connections_refused_total 0");
    // The API is refused too, and a place freed is taken again.
    assert_eq!(http_get(s.addr, "/v1/rooms", None).await.0, 503);
    drop(clients.pop());
    let deadline = tokio::time::Instant::now() + GUARD;
    while http_get(s.addr, "/v1/rooms", None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the freed place was never given again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
