//! Operating a server: health, readiness, metrics, the HTTP API, shutdown.

mod support;

use chorus_client::Event;
use chorus_protocol::{close, ServerMessage};
use support::start;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = start(|_| {}).await;
    assert_eq!(s.get("/healthz", None).await, (200, "ok\n".into()));
    assert_eq!(s.get("/readyz", None).await.0, 200);
    let mut c = s.client("ann").await;
    c.join("r", None).await.unwrap();
    c.send_raw("{oops").unwrap();
    c.heartbeat().await.unwrap();
    let (status, body) = s.get("/metrics", None).await;
    assert_eq!(status, 200);
    for name in ["chorus_connections", "chorus_rooms", "chorus_messages_in_total", "chorus_errors_total{code=\"bad_json\"}", "chorus_fanout_seconds"] {
        assert!(body.contains(name), "metrics lack {name}:\n{body}");
    }
    // An acknowledged op is timed from its arrival to its ack.
    let before = submits_timed(&body);
    c.open_doc("r", "d").await.unwrap();
    c.insert("r", "d", 0, "hi").unwrap();
    c.sync("r", "d").await.unwrap();
    let after = submits_timed(&s.get("/metrics", None).await.1);
    assert!(after > before, "chorus_submit_seconds_count went from {before} to {after}");
}

/// `chorus_submit_seconds_count` in a scrape (the recorder is shared by the
/// tests of this binary, so only its growth says anything).
fn submits_timed(body: &str) -> u64 {
    body.lines().find_map(|l| l.strip_prefix("chorus_submit_seconds_count ")).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no chorus_submit_seconds_count:\n{body}"))
}

#[tokio::test]
async fn the_api_needs_its_token() {
    let s = start(|c| {
        c.api_token = Some("api-secret".into());
        c.dev = true;
    })
    .await;
    let mut c = s.client("ann").await;
    c.join("team-42/plan", None).await.unwrap();
    assert_eq!(s.get("/v1/rooms", None).await.0, 401);
    assert_eq!(s.get("/v1/rooms", Some("wrong")).await.0, 401);
    let (status, body) = s.get("/v1/rooms", Some("api-secret")).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rooms"], serde_json::json!([{"room": "team-42/plan", "members": 1}]));
    let (status, body) = s.get("/v1/rooms/team-42%2Fplan/members", Some("api-secret")).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["members"][0]["user"]["id"], "ann");
    assert_eq!(s.get("/v1/rooms/bad%20room/members", Some("api-secret")).await.0, 400);
}

#[tokio::test]
async fn without_an_api_token_the_api_is_closed_unless_in_development_mode() {
    let s = start(|c| c.jwt_secret = Some("s".into())).await;
    let (status, body) = s.get("/v1/rooms", None).await;
    assert_eq!(status, 403);
    assert!(body.contains("--api-token"), "{body}");
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect_elsewhere() {
    let mut s = start(|_| {}).await;
    let mut c = s.client("ann").await;
    c.join("r", None).await.unwrap();
    let waiter = tokio::spawn(async move {
        let mut told = false;
        loop {
            match c.next_event().await.unwrap() {
                Event::Message(ServerMessage::Shutdown { reconnect_after_ms, .. }) => {
                    assert!(reconnect_after_ms > 0);
                    told = true;
                }
                Event::Message(_) => {}
                Event::Closed { code, .. } => return (told, code),
            }
        }
    });
    s.shutdown().await;
    let (told, code) = waiter.await.unwrap();
    assert!(told, "clients get a shutdown message before the close");
    assert_eq!(code, Some(close::SERVICE_RESTART));
}
