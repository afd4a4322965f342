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
//! - [`refusal`], [`clock`]: what every layer above uses.
//! - [`http`]: health, readiness, metrics and the backend HTTP API.
//!
//! [`Server::start`] runs a server on a listener until [`Server::shutdown`].

pub mod assets;
pub mod auth;
pub mod clock;
pub mod config;
pub mod document;
pub mod history;
pub mod http;
pub mod node;
pub mod outbox;
pub mod refusal;
pub mod room;
pub mod session;
pub mod submitter;
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

/// The process-wide metrics recorder (installed once; servers share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("chorus_fanout_seconds".into()),
                    &[0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then
            // this handle renders only what Chorus records through it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Binds `config.listen` and serves until shut down.
    pub async fn start(config: Config, backend: Arc<dyn Backend>) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        let node = Node::new(config, backend, metrics_handle())?;
        tokio::spawn(node.clone().sweep_presence());
        let app = http::router(node.clone());
        let shutdown = node.shutdown.clone();
        // Small frames go out at once: Nagle's algorithm would hold a cursor
        // update back until the previous one is acknowledged.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
            Ok(())
        });
        Ok(Server { addr, node, task })
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
