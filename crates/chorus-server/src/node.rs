//! One Chorus node: its configuration, backend, rooms and the tasks that
//! run beside the connections (the presence expiry sweep).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chorus_store::Backend;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::clock::now_ms;
use crate::config::Config;
use crate::room::Registry;

pub struct Node {
    pub config: Arc<Config>,
    pub backend: Arc<dyn Backend>,
    pub auth: Authenticator,
    pub rooms: Arc<Registry>,
    pub shutdown: CancellationToken,
    pub sessions: TaskTracker,
    pub metrics: PrometheusHandle,
    /// Distinguishes this node's connection ids from every other node's,
    /// past and present: 64 random bits, so that among thousands of nodes
    /// and restarts two never share one (presence entries are keyed by
    /// connection id; a shared prefix would let one node's leave remove
    /// another's member).
    id_prefix: String,
    next_id: AtomicU64,
}

impl Node {
    pub fn new(config: Config, backend: Arc<dyn Backend>, metrics: PrometheusHandle) -> anyhow::Result<Arc<Self>> {
        config.check().map_err(anyhow::Error::msg)?;
        let auth = Authenticator::from_config(&config)?;
        let config = Arc::new(config);
        Ok(Arc::new(Self {
            rooms: Registry::new(config.clone(), backend.clone()),
            config,
            backend,
            auth,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            metrics,
            id_prefix: chorus_store::random_id(),
            next_id: AtomicU64::new(1),
        }))
    }

    /// A connection id unique across nodes and restarts.
    pub fn connection_id(&self) -> Arc<str> {
        Arc::from(format!("{}-{:x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed)))
    }

    /// Removes expired presence entries (the store announces each leave,
    /// once, as it removes it). Runs until shutdown.
    pub async fn sweep_presence(self: Arc<Self>) {
        let every = Duration::from_millis((self.config.presence_ttl_ms / 4).clamp(25, 1_000));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            match self.backend.expire(now_ms()).await {
                Ok(sweep) => {
                    for e in sweep.expired {
                        info!(room = %e.room, connection = %e.member.connection, user = %e.member.user.id, "presence expired");
                    }
                    for (room, e) in sweep.failed {
                        warn!(%room, "presence sweep of the room failed (the next sweep tries again): {e}");
                    }
                }
                Err(e) => warn!("presence sweep failed: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_of_two_nodes_never_share_a_prefix() {
        let make = || Node::new(Config { dev: true, ..Config::for_address("127.0.0.1:0".parse().unwrap()) }, Arc::new(chorus_store::MemoryStore::new()), crate::metrics_handle()).unwrap();
        // Among 20,000 nodes a 24-bit prefix repeats almost surely (the
        // birthday bound); a 64-bit one about once in 10^11 runs.
        let prefixes: std::collections::HashSet<String> = (0..20_000).map(|_| make().id_prefix.clone()).collect();
        assert_eq!(prefixes.len(), 20_000);
        let node = make();
        let id = node.connection_id();
        let (prefix, _) = id.split_once('-').unwrap();
        assert_eq!(prefix.len(), 16, "64 bits: {id}");
    }
}
