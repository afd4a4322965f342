//! The Chorus server: WebSocket sessions, room tasks, auth, the HTTP API and
//! metrics, over any [`chorus_store::Backend`].
//!
//! Layout:
//! - [`config`]: every setting, as a flag and an environment variable.
//! - [`auth`]: tokens, permissions, room names.
//! - [`node`]: one server's shared state and expiry sweep.
//! - [`session`]: one connection, from handshake to close.
//! - [`room`]: one room's task and the registry of a node's rooms:
//!   presence, cursors, documents, undo, values, and repairs.
//! - [`document`]: a room's replica of one text document: checks, transform
//!   to the head, catch-up replies, cursor anchoring.
//! - [`history`]: one user's undo history, read off the op log.
//! - [`values`]: a room's shared values on one node.
//! - [`submitter`]: submitter ids, scoped to users.
//! - [`outbox`]: a connection's bounded outgoing queue with cursor slots.
//! - [`budget`]: the node-wide budget for room state (`--max-state-bytes`).
//! - [`refusal`], [`clock`]: what every layer above uses.
//! - [`http`]: health, readiness, metrics and the backend HTTP API.
//! - [`listener`]: the accept loop: connection limit, header and body timeouts.
//! - [`origin`]: which browser pages may use the WebSocket and the API.
//! - [`tls`]: the certificate and key of `https://`/`wss://`, reloaded on SIGHUP.
//!
//! [`Server::start`] runs a server on a listener until [`Server::shutdown`].

pub mod assets;
pub mod auth;
pub mod budget;
pub mod clock;
pub mod config;
pub mod document;
pub mod history;
pub mod http;
pub mod listener;
pub mod node;
pub mod origin;
pub mod outbox;
pub mod refusal;
pub mod room;
pub mod session;
pub mod submitter;
pub mod tls;
pub mod transfer;
pub mod values;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chorus_store::Backend;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use config::Config;
pub use node::Node;

/// Every counter Chorus records, with what it counts (the `# HELP` line).
pub const COUNTERS: &[(&str, &str)] = &[
    ("chorus_messages_in_total", "Text frames received after the handshake, including oversized and rate-limited ones."),
    ("chorus_messages_out_total", "Room events (member_joined, member_left, presence, cursor, op, value) queued for connections."),
    ("chorus_ops_committed_total", "Document ops committed by this node."),
    ("chorus_commit_groups_total", "Groups of ops this node sent to the store in one call (group commit); ops committed per group is the ratio."),
    ("chorus_commit_conflicts_total", "Groups of commits the store refused because another node committed to the document first, or had the turn."),
    ("chorus_frames_written_total", "Text frames written to sockets: one server message each, or an array of them for connections that asked for batches."),
    ("chorus_messages_written_total", "Server messages written to sockets, alone or inside an array frame; messages per frame is the ratio to chorus_frames_written_total."),
    ("chorus_cursor_updates_coalesced_total", "Cursor updates replaced by a newer one before being broadcast."),
    ("chorus_sqlite_transactions_total", "Transactions the embedded SQLite store committed (one fsync each with --sqlite-sync full)."),
    (chorus_redis::ROUND_TRIPS, "Requests this node sent Redis and waited for (a script or a command each, not the commands a script runs inside Redis)."),
    ("chorus_sqlite_writes_total", "Writes (commits, snapshots, value and history writes) those transactions carried."),
    ("chorus_sqlite_queued_microseconds_total", "Summed over those writes: time from being sent to the SQLite writer thread to their transaction starting."),
    ("chorus_sqlite_statement_microseconds_total", "Summed over those transactions: time running their statements, before COMMIT."),
    ("chorus_sqlite_commit_microseconds_total", "Summed over those transactions: time in COMMIT (writing the WAL and, with --sqlite-sync full, its fsync)."),
    ("chorus_connections_refused_total", "TCP connections refused (503 or closed at once) because the server was at --max-connections."),
    ("chorus_state_refusals_total", "Requests refused with node_full because room state would go over --max-state-bytes."),
    ("chorus_slow_consumers_total", "Connections closed (4005) because their outgoing queue went over its message or byte limit."),
];

/// Every gauge Chorus records, with what it measures.
pub const GAUGES: &[(&str, &str)] = &[
    ("chorus_connections", "Open WebSocket connections, including ones still in the handshake."),
    ("chorus_rooms", "Rooms loaded on this node."),
    ("chorus_tcp_connections", "TCP connections counted against --max-connections (HTTP and WebSocket)."),
    ("chorus_state_bytes", "Bytes of room state held in memory (document texts, kept ops, values), counted against --max-state-bytes."),
];

/// The errors counter, by code; every code starts at zero.
pub const ERRORS: (&str, &str) = ("chorus_errors_total", "Errors sent to clients, by code; rate_limited counts every dropped message.");

/// The fan-out histogram and its buckets (seconds).
pub const FANOUT: (&str, &str) = ("chorus_fanout_seconds", "Time to deliver one room event to this node's connections.");
const FANOUT_BUCKETS: &[f64] = &[0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1];

/// The submit histogram and its buckets (seconds): the server's own share
/// of an op's ack latency, so a client that sees slow acks can tell the
/// server's time from its network's and its own.
pub const SUBMIT: (&str, &str) =
    ("chorus_submit_seconds", "Time from an op's arrival at this node to its answer (ack or refusal): queueing, transform and the store's commit.");
const SUBMIT_BUCKETS: &[f64] = &[0.000_1, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The embedded store's disk, one observation per transaction and per
/// checkpoint: the summed counters give the mean, and a single fsync that
/// stalls for 100 ms (what holds every ack queued behind it) shows only here.
pub const SQLITE_COMMIT: (&str, &str) = (
    "chorus_sqlite_commit_seconds",
    "Time in COMMIT of each transaction of the embedded SQLite store (writing the WAL and, with --sqlite-sync full, its fsync).",
);
pub const SQLITE_CHECKPOINT: (&str, &str) =
    ("chorus_sqlite_checkpoint_seconds", "Time of each checkpoint of the embedded SQLite store's WAL (two fsyncs whatever the sync mode).");
const DISK_BUCKETS: &[f64] = &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// The error codes of docs/protocol.md (section 9), each a series of
/// `chorus_errors_total` from the start.
pub const ERROR_CODES: &[&str] = &[
    "bad_json", "bad_message", "unknown_type", "binary_frame", "hello_required", "unsupported_protocol", "unauthorized",
    "forbidden", "invalid_room", "not_joined", "already_joined", "too_many_rooms", "room_full", "rate_limited",
    "message_too_large", "unavailable", "internal", "invalid_document", "not_open", "too_many_documents", "invalid_op",
    "future_version", "version_trimmed", "stale_seq", "op_too_large", "document_too_large", "invalid_value", "wrong_kind",
    "value_overflow", "value_too_large", "too_many_values", "node_full",
];

/// The process-wide metrics recorder (installed once; servers share it).
/// Every series is described and registered at zero when it is installed,
/// so the first scrape of a fresh server already lists them all, each with
/// its `# HELP` line, and a dashboard never sees a series appear mid-way.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(FANOUT.0.into()), FANOUT_BUCKETS)
                .expect("bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(SUBMIT.0.into()), SUBMIT_BUCKETS)
                .expect("bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(SQLITE_COMMIT.0.into()), DISK_BUCKETS)
                .expect("bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(SQLITE_CHECKPOINT.0.into()), DISK_BUCKETS)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then
            // this handle renders only what Chorus records through it.
            let _ = metrics::set_global_recorder(recorder);
            register_metrics();
            handle
        })
        .clone()
}

fn register_metrics() {
    for &(name, help) in COUNTERS {
        metrics::describe_counter!(name, help);
        metrics::counter!(name).increment(0);
    }
    for &(name, help) in GAUGES {
        metrics::describe_gauge!(name, help);
        metrics::gauge!(name).increment(0.0);
    }
    metrics::describe_counter!(ERRORS.0, ERRORS.1);
    for &code in ERROR_CODES {
        metrics::counter!(ERRORS.0, "code" => code).increment(0);
    }
    for (name, help) in [FANOUT, SUBMIT, SQLITE_COMMIT, SQLITE_CHECKPOINT] {
        metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
        // Registering the histogram gives it its buckets and a zero count.
        let _ = metrics::histogram!(name);
    }
}

/// Handles of the series recorded on every message, op or cursor, looked up
/// once. A `metrics::counter!("name")` finds its series in the recorder's
/// registry (a hash of the key and a read lock) on every call, and the
/// commit path records several per op; a handle is an atomic add. Taken
/// after Chorus's recorder is installed ([`metrics_handle`], as every node
/// does first), so they never point at the no-op recorder.
pub(crate) struct HotMetrics {
    pub messages_in: metrics::Counter,
    pub messages_out: metrics::Counter,
    pub ops_committed: metrics::Counter,
    pub commit_groups: metrics::Counter,
    pub cursors_coalesced: metrics::Counter,
    pub state_bytes: metrics::Gauge,
    pub fanout_seconds: metrics::Histogram,
    pub submit_seconds: metrics::Histogram,
}

pub(crate) fn hot_metrics() -> &'static HotMetrics {
    static HOT: OnceLock<HotMetrics> = OnceLock::new();
    HOT.get_or_init(|| {
        let _ = metrics_handle();
        HotMetrics {
            messages_in: metrics::counter!("chorus_messages_in_total"),
            messages_out: metrics::counter!("chorus_messages_out_total"),
            ops_committed: metrics::counter!("chorus_ops_committed_total"),
            commit_groups: metrics::counter!("chorus_commit_groups_total"),
            cursors_coalesced: metrics::counter!("chorus_cursor_updates_coalesced_total"),
            state_bytes: metrics::gauge!("chorus_state_bytes"),
            fanout_seconds: metrics::histogram!(FANOUT.0),
            submit_seconds: metrics::histogram!(SUBMIT.0),
        }
    })
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    /// The certificate in use, with `--tls-cert`.
    pub tls: Option<Arc<tls::Tls>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Binds `config.listen` and serves until shut down.
    pub async fn start(config: Config, backend: Arc<dyn Backend>) -> anyhow::Result<Server> {
        // Before anything listens: a certificate that cannot be used stops
        // the start instead of failing every handshake.
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = tls::Tls::load(cert, key).map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?;
                tls.reload_on_sighup().map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP (TLS reloads): {e}"))?;
                Some(tls)
            }
            (None, None) => {
                tls::ignore_sighup().map_err(|e| anyhow::anyhow!("cannot listen for SIGHUP: {e}"))?;
                None
            }
            _ => anyhow::bail!("--tls-cert and --tls-key go together: give both, or neither"),
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        let node = Node::new(config, backend, metrics_handle())?;
        tokio::spawn(node.clone().sweep_presence());
        let app = http::router(node.clone()).layer(axum::middleware::from_fn_with_state(node.clone(), origin::check));
        let (limits, shutdown) = (node.config.listener_limits(), node.shutdown.clone());
        let served_tls = tls.clone();
        let task = tokio::spawn(async move {
            crate::listener::serve(listener, app, limits, served_tls, shutdown).await;
            Ok(())
        });
        Ok(Server { addr, node, tls, task })
    }

    /// Tells every connection to reconnect elsewhere, closes them, and stops.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        info!("shutting down: telling {} connections to reconnect", self.node.sessions.len());
        self.node.shutdown.cancel();
        self.node.sessions.close();
        let grace = Duration::from_millis(self.node.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.node.sessions.wait()).await.is_err() {
            warn!("{} connections still open after {grace:?}; stopping anyway", self.node.sessions.len());
        }
        match tokio::time::timeout(grace, self.task).await {
            Ok(joined) => joined?,
            Err(_) => Ok(()),
        }
    }
}
