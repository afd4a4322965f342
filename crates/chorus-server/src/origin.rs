//! Which browser pages may talk to this server: the `Origin` check on
//! WebSocket upgrades and HTTP API calls (every path under `/v1/`).
//!
//! A browser sends `Origin` with cross-site requests and WebSocket upgrades,
//! and a page cannot forge it; without the check, any web page a user
//! visits could open a WebSocket to Chorus with the user's cookies or reach
//! an API on an internal network. The rule:
//!
//! - no `Origin` header: not a browser (a backend, the Rust client): let in;
//! - same origin (the Origin's `host[:port]` is the `Host` header): let in,
//!   so the server's own pages (the demo) always work;
//! - an origin listed in `--allowed-origins`, exactly, or `*` listed: let in;
//! - with no list, any origin under `--dev`, and no other in production.
//!
//! Everything else gets HTTP 403 with code `forbidden_origin` before any
//! upgrade or API work happens.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::config::Config;
use crate::node::Node;

/// An origin in its comparable form: `scheme://host[:port]`, lower case,
/// without a default port. `None` when `s` is not an origin.
pub fn normalize(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let (scheme, rest) = s.split_once("://")?;
    if scheme.is_empty() || rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let default = match scheme {
        "http" | "ws" => Some(":80"),
        "https" | "wss" => Some(":443"),
        _ => None,
    };
    let host = default.and_then(|d| rest.strip_suffix(d)).unwrap_or(rest);
    Some(format!("{scheme}://{host}"))
}

/// Whether a request with these headers may go on.
pub fn allowed(config: &Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(normalize) else {
        // `null` (a sandboxed frame, a file://) or garbage: only `*` admits it.
        return config.allowed_origins.iter().any(|o| o == "*") || (config.dev && config.allowed_origins.is_empty());
    };
    if same_origin(&origin, headers) {
        return true;
    }
    if config.allowed_origins.is_empty() {
        return config.dev;
    }
    config.allowed_origins.iter().any(|o| o == "*" || normalize(o).as_deref() == Some(origin.as_str()))
}

fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let (scheme, _) = origin.split_once("://").unwrap_or(("", ""));
    normalize(&format!("{scheme}://{host}")).as_deref() == Some(origin)
}

/// Middleware: refuses `/v1/` requests from origins that are not allowed.
pub async fn check(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/v1/") && !allowed(&node.config, request.headers()) {
        let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("?").to_owned();
        tracing::info!(%origin, path = request.uri().path(), "request from an origin that is not allowed");
        let message = format!("pages from {origin} may not use this server: add the origin to --allowed-origins (CHORUS_ALLOWED_ORIGINS)");
        return (StatusCode::FORBIDDEN, Json(json!({ "code": "forbidden_origin", "message": message }))).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dev: bool, origins: &[&str]) -> Config {
        let mut c = Config::for_address("127.0.0.1:0".parse().unwrap());
        c.dev = dev;
        c.allowed_origins = origins.iter().map(|s| s.to_string()).collect();
        c
    }

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, host.parse().unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o.parse().unwrap());
        }
        h
    }

    #[test]
    fn origins_normalize() {
        assert_eq!(normalize("HTTPS://App.Example.com:443").as_deref(), Some("https://app.example.com"));
        assert_eq!(normalize("http://localhost:8080").as_deref(), Some("http://localhost:8080"));
        assert_eq!(normalize("https://a.com/path"), None);
        assert_eq!(normalize("null"), None);
        assert_eq!(normalize("a.com"), None);
    }

    #[test]
    fn production_admits_same_origin_and_non_browsers_only() {
        let c = config(false, &[]);
        assert!(allowed(&c, &headers(None, "chorus.example.com")));
        assert!(allowed(&c, &headers(Some("https://chorus.example.com"), "chorus.example.com")));
        assert!(allowed(&c, &headers(Some("http://127.0.0.1:8787"), "127.0.0.1:8787")));
        assert!(!allowed(&c, &headers(Some("https://evil.example"), "chorus.example.com")));
        assert!(!allowed(&c, &headers(Some("null"), "chorus.example.com")));
        assert!(!allowed(&c, &headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8787")));
    }

    #[test]
    fn listed_origins_are_exact() {
        let c = config(false, &["https://app.example.com"]);
        assert!(allowed(&c, &headers(Some("https://app.example.com"), "chorus.example.com")));
        assert!(!allowed(&c, &headers(Some("http://app.example.com"), "chorus.example.com")));
        assert!(!allowed(&c, &headers(Some("https://app.example.com.evil.example"), "chorus.example.com")));
        let any = config(false, &["*"]);
        assert!(allowed(&any, &headers(Some("https://anything.example"), "chorus.example.com")));
        assert!(allowed(&any, &headers(Some("null"), "chorus.example.com")));
    }

    #[test]
    fn dev_admits_any_origin_unless_a_list_is_given() {
        assert!(allowed(&config(true, &[]), &headers(Some("https://evil.example"), "localhost:8787")));
        assert!(!allowed(&config(true, &["https://app.example.com"]), &headers(Some("https://evil.example"), "localhost:8787")));
    }
}
