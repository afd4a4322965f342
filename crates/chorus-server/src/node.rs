//! One Chorus node: its configuration, backend, room registry and the tasks
//! that run beside the connections (the presence expiry sweep).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_protocol::LeaveReason;
use chorus_store::{Backend, RoomEvent, StoreError};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::room::{Refusal, Room, RoomCommand, RoomHandle};

/// Wall-clock milliseconds since the Unix epoch: the clock of presence
/// expiry, shared by every node of a cluster.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub struct Node {
    pub config: Config,
    pub backend: Arc<dyn Backend>,
    pub auth: Authenticator,
    pub rooms: Mutex<HashMap<String, RoomHandle>>,
    pub shutdown: CancellationToken,
    pub sessions: TaskTracker,
    pub metrics: PrometheusHandle,
    /// Distinguishes this node's connection ids from other nodes'.
    id_prefix: String,
    next_id: AtomicU64,
    next_generation: AtomicU64,
}

impl Node {
    pub fn new(config: Config, backend: Arc<dyn Backend>, metrics: PrometheusHandle) -> anyhow::Result<Arc<Self>> {
        let auth = Authenticator::from_config(&config)?;
        Ok(Arc::new(Self {
            config,
            backend,
            auth,
            rooms: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            metrics,
            id_prefix: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
            next_id: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
        }))
    }

    /// A connection id unique across nodes and restarts.
    pub fn connection_id(&self) -> Arc<str> {
        Arc::from(format!("{}-{:x}", self.id_prefix, self.next_id.fetch_add(1, Ordering::Relaxed)))
    }

    /// The room's task on this node, started if it is not running.
    pub async fn room(self: &Arc<Self>, name: &str) -> Result<RoomHandle, StoreError> {
        if let Some(h) = self.rooms.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            if !h.tx.is_closed() {
                return Ok(h.clone());
            }
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let handle = Room::spawn(self.clone(), name, generation).await?;
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        // Another session may have started the room meanwhile: use theirs
        // (ours stops at once, having nobody in it).
        match rooms.get(name) {
            Some(h) if !h.tx.is_closed() => Ok(h.clone()),
            _ => {
                rooms.insert(name.to_owned(), handle.clone());
                Ok(handle)
            }
        }
    }

    /// Sends a command to the room's task (starting it if needed) and waits
    /// for its answer; retries when the task was just stopping.
    pub async fn ask_room<T>(
        self: &Arc<Self>,
        room: &str,
        make: impl Fn(tokio::sync::oneshot::Sender<Result<T, Refusal>>) -> RoomCommand,
    ) -> Result<T, Refusal> {
        for _ in 0..10 {
            let handle = self.room(room).await?;
            let (reply, done) = tokio::sync::oneshot::channel();
            if handle.tx.send(make(reply)).await.is_err() {
                continue;
            }
            match done.await {
                Ok(Err(Refusal::Retry)) | Err(_) => continue,
                Ok(outcome) => return outcome,
            }
        }
        Err(Refusal::Refused(chorus_protocol::ErrorCode::Unavailable, format!("room {room} is restarting; try again")))
    }

    /// Removes expired presence entries and announces each one's leave, once.
    /// Runs until shutdown.
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
                Ok(expired) => {
                    for e in expired {
                        info!(room = %e.room, connection = %e.member.connection, user = %e.member.user.id, "presence expired");
                        let event = RoomEvent::MemberLeft {
                            connection: e.member.connection,
                            user: e.member.user.id,
                            reason: LeaveReason::Expired,
                            count: e.count,
                        };
                        if let Err(err) = self.backend.publish(&e.room, event).await {
                            warn!(room = %e.room, "could not publish an expiry: {err}");
                        }
                    }
                }
                Err(e) => warn!("presence sweep failed: {e}"),
            }
        }
    }
}
