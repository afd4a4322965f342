//! The command connection, and its repair when it stops repairing itself.
//!
//! Both kinds of connection reconnect by themselves, and a Cluster
//! connection also follows slots that move. Each can still end up in a
//! state it does not leave by itself:
//!
//! - A standalone connection manager reconnects after I/O errors, but one
//!   whose reconnection failed for another reason (the server refused the
//!   credentials, or was loading its data when asked to authenticate)
//!   keeps answering with that failure for good.
//! - A Cluster connection that finds no connection for a call answers
//!   "connection to node in cluster not found" (`ClusterConnectionNotFound`)
//!   and goes back to its seed nodes once; if that fails (a master killed
//!   or hung, this node refused, at that moment) it does not try the seeds
//!   again, and its later repairs of the slot table ask only the nodes it
//!   still holds connections to, which may be none. A node of a long
//!   fault-injection campaign answered so for more than 30 s after every
//!   fault had healed.
//!
//! So a call that fails that way has the connection replaced: at once for
//! a standalone manager (which connects on its first command), and for a
//! Cluster by a task that builds a new connection from the seeds, trying
//! again with backoff until one connects, and logs each attempt. Calls go
//! on using the old connection meanwhile (it may well heal by itself). A
//! Cluster connection is rebuilt at most once per [`REBUILD_GAP`], however
//! many calls fail while a master stays down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use crate::CONNECT_TIMEOUT;

/// The first wait between two attempts at a new Cluster connection, and
/// the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The shortest time between two rebuilds of the Cluster connection.
const REBUILD_GAP: Duration = Duration::from_secs(1);

/// A connection to send one call on (cheap to clone: a handle).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Where command connections come from.
// One per store, so the size of its larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Commands {
    Single { manager: RwLock<ConnectionManager>, client: redis::Client, config: ConnectionManagerConfig },
    Cluster(Arc<ClusterCommands>),
}

pub(crate) struct ClusterCommands {
    conn: RwLock<ClusterConnection>,
    client: ClusterClient,
    /// Whether a task is building a new connection.
    rebuilding: AtomicBool,
}

impl Commands {
    pub(crate) fn single(manager: ConnectionManager, client: redis::Client, config: ConnectionManagerConfig) -> Self {
        Commands::Single { manager: RwLock::new(manager), client, config }
    }

    pub(crate) fn cluster(conn: ClusterConnection, client: ClusterClient) -> Self {
        Commands::Cluster(Arc::new(ClusterCommands { conn: RwLock::new(conn), client, rebuilding: AtomicBool::new(false) }))
    }

    pub(crate) fn conn(&self) -> Conn {
        match self {
            Commands::Single { manager, .. } => Conn::Single(read(manager).clone()),
            Commands::Cluster(c) => Conn::Cluster(read(&c.conn).clone()),
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Commands::Cluster(_))
    }

    /// After a call failed with `e` (not a timeout, not the server's own
    /// answer): replaces the connection if `e` says it may be stuck.
    pub(crate) fn renew_after(&self, e: &redis::RedisError) {
        match self {
            Commands::Single { manager, client, config } => match ConnectionManager::new_lazy_with_config(client.clone(), config.clone()) {
                Ok(fresh) => *write(manager) = fresh,
                Err(e) => tracing::warn!("could not make a new Redis connection: {e}"),
            },
            Commands::Cluster(c) if e.kind() == redis::ErrorKind::ClusterConnectionNotFound => {
                if !c.rebuilding.swap(true, Ordering::AcqRel) {
                    tracing::warn!("the Redis Cluster connection reaches no node for some calls ({e}); building a new one from the seeds");
                    tokio::spawn(rebuild(Arc::downgrade(c)));
                }
            }
            Commands::Cluster(_) => {}
        }
    }
}

/// Builds a new Cluster connection, trying again with backoff until one
/// connects and answers (the Cluster knows its slots again), and puts it in
/// place of the old one.
async fn rebuild(commands: Weak<ClusterCommands>) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1u64.. {
        // The store is gone: nobody needs a connection any more.
        let Some(c) = commands.upgrade() else { return };
        let client = c.client.clone();
        drop(c);
        let outcome = match tokio::time::timeout(CONNECT_TIMEOUT * 3, client.get_async_connection()).await {
            Ok(Ok(mut conn)) => redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| conn).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        match outcome {
            Ok(conn) => {
                let Some(c) = commands.upgrade() else { return };
                *write(&c.conn) = conn;
                tracing::warn!("a new Redis Cluster connection is in place (attempt {attempt})");
                break;
            }
            Err(e) => {
                tracing::warn!("a new Redis Cluster connection failed (attempt {attempt}): {e}; trying again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    tokio::time::sleep(REBUILD_GAP).await;
    if let Some(c) = commands.upgrade() {
        c.rebuilding.store(false, Ordering::Release);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a redis::Pipeline, offset: usize, count: usize) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
