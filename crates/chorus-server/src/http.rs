//! HTTP routes: the WebSocket endpoint, health and readiness, Prometheus
//! metrics, and the API backends use to look into rooms.
//!
//! The API is guarded by a bearer token (`--api-token`). Without one it is
//! open in development mode and refuses every request otherwise, saying how
//! to enable it.

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chorus_protocol::{ErrorCode, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX};
use chorus_store::{StoreError, TextAtError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::assets;
use crate::auth::{check_doc_name, check_room_name, check_value_name};
use crate::document::parse_op;
use crate::clock::now_ms;
use crate::node::Node;
use crate::refusal::Refusal;
use crate::room::{DocSubmission, RoomCommand, Submitter};
use crate::{session, submitter};

/// Bytes of frames gathered before a write to the socket; the writer also
/// flushes at the end of every batch.
const WRITE_BATCH_BYTES: usize = 32 * 1024;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/demo/{file}", get(assets::demo))
        .route("/sdk/{file}", get(assets::sdk))
        .route("/sdk/{folder}/{file}", get(assets::sdk_folder_file))
        .route("/status", get(status))
        .route("/v1/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/rooms", get(list_rooms))
        .route("/v1/rooms/{room}/members", get(room_members))
        .route("/v1/rooms/{room}/docs", get(list_docs))
        .route("/v1/rooms/{room}/docs/{doc}", get(read_doc).delete(delete_doc))
        .route("/v1/rooms/{room}/docs/{doc}/ops", get(read_ops).post(submit_op))
        .route("/v1/rooms/{room}/values", get(read_values))
        .route("/v1/rooms/{room}/values/{name}", axum::routing::post(update_value))
        .with_state(node)
}

#[derive(Debug, Default, Deserialize)]
struct WsQuery {
    token: Option<String>,
    /// Development mode only: who an anonymous connection claims to be.
    user: Option<String>,
    name: Option<String>,
}

async fn websocket(State(node): State<Arc<Node>>, Query(q): Query<WsQuery>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let token = q.token.or_else(|| offered.iter().find_map(|p| p.strip_prefix(TOKEN_SUBPROTOCOL_PREFIX).map(str::to_owned)));
    let identity = node.auth.authenticate(token.as_deref(), q.user.as_deref(), q.name.as_deref());
    // The configured limit is enforced on whole messages by the session, which
    // can then answer with an error and a clean close; the socket layer only
    // stops frames so large that reading them would itself be the attack.
    let hard_cap = node.config.max_message_bytes.saturating_mul(4).max(1 << 20);
    let ws = ws
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        // Small buffers keep an idle connection cheap; they grow on demand.
        // Frames of one outbox batch are gathered into one write (a send
        // per frame made the kernel's TCP path most of the fan-out cost).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .protocols([SUBPROTOCOL]);
    let tracker = node.sessions.clone();
    ws.on_upgrade(move |socket| tracker.track_future(session::run(node, socket, identity)))
}

/// `GET /status`: what this server is and where to look.
async fn status(State(node): State<Arc<Node>>) -> Html<String> {
    let mode = if node.config.open_mode() { "open development mode (no token needed)" } else { "tokens required" };
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Chorus</title>\
         <h1>Chorus is running</h1><p>WebSocket endpoint: <code>/v1/ws</code> ({mode}).</p>\
         <p>Health: <a href=/healthz>/healthz</a> · Readiness: <a href=/readyz>/readyz</a> · \
         Metrics: <a href=/metrics>/metrics</a></p>"
    ))
}

async fn ready(State(node): State<Arc<Node>>) -> Response {
    if node.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match node.backend.ping().await {
        Ok(()) => "ready\n".into_response(),
        // The error's own text already says what failed; give the reason once.
        Err(StoreError::Unavailable(reason) | StoreError::Backend(reason)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {reason}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    // Read when asked: what the bus holds now.
    metrics::gauge!("chorus_bus_subscriptions").set(node.backend.subscribed_rooms() as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], node.metrics.render())
}

fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "code": code, "message": message.into() }))).into_response()
}

// A ready response to return from the handler, built on the rare error path.
#[allow(clippy::result_large_err)]
fn authorize_api(node: &Node, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &node.config.api_token else {
        return if node.config.open_mode() {
            Ok(())
        } else {
            Err(api_error(StatusCode::FORBIDDEN, "forbidden", "the HTTP API is disabled: start the server with --api-token (CHORUS_API_TOKEN)"))
        };
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(api_error(StatusCode::UNAUTHORIZED, "unauthorized", "the API token is wrong")),
        None => Err(api_error(StatusCode::UNAUTHORIZED, "unauthorized", "send the API token as Authorization: Bearer <token>")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list_rooms(State(node): State<Arc<Node>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize_api(&node, &headers) {
        return r;
    }
    match node.backend.rooms(now_ms()).await {
        Ok(rooms) => Json(json!({ "rooms": rooms })).into_response(),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    }
}

/// `GET /v1/rooms/{room}/members`; a room name with `/` is sent encoded (`%2F`).
async fn room_members(State(node): State<Arc<Node>>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize_api(&node, &headers) {
        return r;
    }
    if let Err(m) = check_room_name(&room) {
        return api_error(StatusCode::BAD_REQUEST, "invalid_room", m);
    }
    match node.backend.members(&room, now_ms()).await {
        Ok(members) => Json(json!({ "room": room, "count": members.members.len(), "members": members.members })).into_response(),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    }
}

fn refusal_response(r: Refusal) -> Response {
    match r {
        Refusal::Retry => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the room is restarting; try again"),
        Refusal::Refused(code, message) => {
            let status = match code {
                ErrorCode::VersionTrimmed => StatusCode::GONE,
                ErrorCode::OpTooLarge | ErrorCode::DocumentTooLarge | ErrorCode::ValueTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::WrongKind | ErrorCode::ValueOverflow => StatusCode::CONFLICT,
                ErrorCode::FutureVersion | ErrorCode::StaleSeq => StatusCode::CONFLICT,
                ErrorCode::Unavailable | ErrorCode::NodeFull => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            api_error(status, code.as_str(), message)
        }
    }
}

/// Checks the API token and the room and document names.
#[allow(clippy::result_large_err)]
fn check_doc_request(node: &Node, headers: &HeaderMap, room: &str, doc: &str) -> Result<(), Response> {
    authorize_api(node, headers)?;
    check_room_name(room).map_err(|m| api_error(StatusCode::BAD_REQUEST, "invalid_room", m))?;
    check_doc_name(doc).map_err(|m| api_error(StatusCode::BAD_REQUEST, "invalid_document", m))
}

#[derive(Debug, Default, Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

/// `GET /v1/rooms/{room}/docs/{doc}`: the text at the head, with its
/// version; with `?version=N`, the text at version N.
async fn read_doc(
    State(node): State<Arc<Node>>,
    Path((room, doc)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_doc_request(&node, &headers, &room, &doc) {
        return r;
    }
    if let Some(version) = q.version {
        return read_doc_at(&node, &room, &doc, version).await;
    }
    let name: Arc<str> = Arc::from(doc.as_str());
    match node.rooms.ask(&room, |reply| RoomCommand::ReadDoc { doc: name.clone(), since: None, reply }).await {
        Ok(read) => Json(json!({ "room": room, "doc": doc, "epoch": read.epoch, "version": read.version, "text": read.text })).into_response(),
        Err(r) => refusal_response(r),
    }
}

/// The text at a past version, from the store's snapshot and log (the
/// replicas hold only the head).
async fn read_doc_at(node: &Node, room: &str, doc: &str, version: u64) -> Response {
    let stored = match node.backend.load(room, doc).await {
        Ok(stored) => stored,
        Err(e) => return api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    };
    if stored.head() == 0 {
        // Loading made it: leave nothing behind for a document nobody edited.
        if let Err(e) = node.backend.discard_if_empty(room, doc, &stored.epoch).await {
            tracing::warn!(%room, %doc, "could not discard an unedited document: {e}");
        }
        return api_error(StatusCode::NOT_FOUND, "unknown_document", format!("room {room} has no document {doc}"));
    }
    match stored.text_at(version) {
        Ok(text) => Json(json!({ "room": room, "doc": doc, "epoch": stored.epoch, "version": version, "text": text })).into_response(),
        Err(e @ TextAtError::NotKept { .. }) => api_error(StatusCode::GONE, ErrorCode::VersionTrimmed.as_str(), format!("version {version} of {doc} is no longer kept: {e}")),
        Err(e @ TextAtError::Ahead { .. }) => api_error(StatusCode::CONFLICT, ErrorCode::FutureVersion.as_str(), format!("version {version} of {doc} does not exist yet: {e}")),
        Err(e @ TextAtError::Damaged(_)) => api_error(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal.as_str(), e.to_string()),
    }
}

/// `GET /v1/rooms/{room}/docs`: the room's documents with their versions,
/// sizes (bytes of UTF-8 text at the head) and last change times.
async fn list_docs(State(node): State<Arc<Node>>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize_api(&node, &headers) {
        return r;
    }
    if let Err(m) = check_room_name(&room) {
        return api_error(StatusCode::BAD_REQUEST, "invalid_room", m);
    }
    let listed = match node.backend.list_docs(&room).await {
        Ok(listed) => listed,
        Err(e) => return api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    };
    let mut docs = Vec::with_capacity(listed.len());
    for d in listed {
        // The store keeps no text at the head; the room's replica has it.
        let name: Arc<str> = Arc::from(d.name.as_str());
        let read = match node.rooms.ask(&room, |reply| RoomCommand::ReadDoc { doc: name.clone(), since: None, reply }).await {
            Ok(read) => read,
            Err(r) => return refusal_response(r),
        };
        if read.version == 0 {
            continue; // Deleted since it was listed.
        }
        let bytes = read.text.as_ref().map_or(0, String::len);
        docs.push(json!({ "doc": d.name, "epoch": read.epoch, "version": read.version, "bytes": bytes, "changed_at": d.changed_at }));
    }
    Json(json!({ "room": room, "docs": docs })).into_response()
}

/// `DELETE /v1/rooms/{room}/docs/{doc}`: deletes the document and all that
/// is kept for it; its readers, on every node, get a `reset` (`deleted`).
async fn delete_doc(State(node): State<Arc<Node>>, Path((room, doc)): Path<(String, String)>, headers: HeaderMap) -> Response {
    if let Err(r) = check_doc_request(&node, &headers, &room, &doc) {
        return r;
    }
    // A document nobody edited (open somewhere at version 0) is not one yet.
    match node.backend.status(&room, &[doc.as_str()], crate::clock::now_ms()).await {
        Ok(status) if status.docs.first().is_some_and(|h| h.as_ref().is_some_and(|h| h.version > 0)) => {}
        Ok(_) => return api_error(StatusCode::NOT_FOUND, "unknown_document", format!("room {room} has no document {doc}")),
        Err(e) => return api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    }
    match node.backend.delete_doc(&room, &doc).await {
        Ok(Some(deleted)) => {
            tracing::info!(%room, %doc, epoch = %deleted.epoch, version = deleted.version, "document deleted through the API");
            Json(json!({ "room": room, "doc": doc, "deleted": true, "epoch": deleted.epoch, "version": deleted.version })).into_response()
        }
        Ok(None) => api_error(StatusCode::NOT_FOUND, "unknown_document", format!("room {room} has no document {doc}")),
        Err(e) => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct SinceQuery {
    #[serde(default)]
    since: u64,
}

/// `GET /v1/rooms/{room}/docs/{doc}/ops?since=N`: the ops after version N.
async fn read_ops(
    State(node): State<Arc<Node>>,
    Path((room, doc)): Path<(String, String)>,
    Query(q): Query<SinceQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_doc_request(&node, &headers, &room, &doc) {
        return r;
    }
    let name: Arc<str> = Arc::from(doc.as_str());
    match node.rooms.ask(&room, |reply| RoomCommand::ReadDoc { doc: name.clone(), since: Some(q.since), reply }).await {
        Ok(read) => Json(json!({ "room": room, "doc": doc, "epoch": read.epoch, "version": read.version, "ops": read.ops })).into_response(),
        Err(r) => refusal_response(r),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    op: Value,
    /// Version the op was made at; the head when absent.
    base: Option<u64>,
    /// With `seq`, makes retries of this request idempotent.
    client: Option<String>,
    seq: Option<u64>,
}

/// `POST /v1/rooms/{room}/docs/{doc}/ops`: commits an op from a backend; it
/// reaches every connected reader like any other op.
async fn submit_op(State(node): State<Arc<Node>>, Path((room, doc)): Path<(String, String)>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = check_doc_request(&node, &headers, &room, &doc) {
        return r;
    }
    let body: SubmitBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_message", format!("invalid request body: {e}")),
    };
    let op = match parse_op(body.op) {
        Ok(op) => op,
        Err(m) => return api_error(StatusCode::BAD_REQUEST, "invalid_op", m),
    };
    // Without a client id and sequence number the request is its own
    // submitter, used once.
    let (client, seq) = match (body.client, body.seq) {
        (Some(c), Some(s)) if !c.is_empty() && c.len() <= 128 => (submitter::api(&c), s),
        (None, None) => (submitter::api(&chorus_store::random_id()), 1),
        _ => return api_error(StatusCode::BAD_REQUEST, "bad_message", "give both client (1 to 128 bytes) and seq, or neither"),
    };
    let name: Arc<str> = Arc::from(doc.as_str());
    let client: Arc<str> = Arc::from(client);
    let outcome = node
        .rooms.ask(&room, |reply| RoomCommand::Submit {
            doc: name.clone(),
            submission: DocSubmission { from: Submitter::Api { client: client.clone() }, seq, base: body.base, op: op.clone(), received: tokio::time::Instant::now() },
            reply: Some(reply),
        })
        .await;
    match outcome {
        Ok(c) => Json(json!({ "room": room, "doc": doc, "version": c.version, "duplicate": c.duplicate })).into_response(),
        Err(r) => refusal_response(r),
    }
}

/// `GET /v1/rooms/{room}/values`: every shared value of the room.
async fn read_values(State(node): State<Arc<Node>>, Path(room): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize_api(&node, &headers) {
        return r;
    }
    if let Err(m) = check_room_name(&room) {
        return api_error(StatusCode::BAD_REQUEST, "invalid_room", m);
    }
    match node.rooms.ask(&room, |reply| RoomCommand::ReadValues { reply }).await {
        Ok(values) => Json(json!({ "room": room, "values": values })).into_response(),
        Err(r) => refusal_response(r),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    kind: chorus_protocol::ValueKind,
    change: chorus_protocol::Change,
    /// Whose counter entry an increment raises; "api" when absent.
    writer: Option<String>,
}

/// `POST /v1/rooms/{room}/values/{name}`: changes a value from a backend;
/// connected clients see it like any other change.
async fn update_value(State(node): State<Arc<Node>>, Path((room, name)): Path<(String, String)>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorize_api(&node, &headers) {
        return r;
    }
    if let Err(m) = check_room_name(&room) {
        return api_error(StatusCode::BAD_REQUEST, "invalid_room", m);
    }
    if let Err(m) = check_value_name(&name) {
        return api_error(StatusCode::BAD_REQUEST, "invalid_value", m);
    }
    let body: ValueBody = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_message", format!("invalid request body: {e}")),
    };
    let writer = body.writer.unwrap_or_else(|| "api".into());
    let outcome = node
        .rooms.ask(&room, |reply| RoomCommand::UpdateValue { name: name.clone(), kind: body.kind, change: body.change.clone(), writer: writer.clone(), reply })
        .await;
    match outcome {
        Ok(version) => Json(json!({ "room": room, "name": name, "version": version })).into_response(),
        Err(r) => refusal_response(r),
    }
}
