//! Chorus on Redis: the store of record and the bus between nodes.
//!
//! [`RedisStore`] implements the traits of `chorus-store` and is held to its
//! conformance suite, like the embedded store. Every key of a room carries
//! the room as its hash tag (`chorus:{room}:…`), so a room's keys share one
//! Cluster slot and each operation is one atomic Lua script (the scripts are
//! the `.lua` files beside this module):
//!
//! - presence: a hash of members, a hash of their states and a sorted set of
//!   expiry times per room; removal (leave or expiry) hands an entry back to
//!   exactly one caller. An index of rooms by earliest expiry lets a sweep
//!   visit only the rooms with something to expire.
//! - documents: per document a hash (epoch, head, oldest kept version,
//!   snapshot version), a list of ops, a hash of each client's last
//!   (seq, version), and the snapshot text. A commit compares the head,
//!   appends, bumps the head and publishes in one script, with O(1) work
//!   whatever the document's size.
//! - the bus: pub/sub per room, a wake-up and not the truth (see [`bus`]).
//!
//! [`testing`] starts real `redis-server` processes and Clusters for tests.

mod bus;
mod docs;
mod presence;
pub mod testing;

use std::time::Duration;

use chorus_store::{Backend, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Commands that get no answer within this fail with "unavailable" instead
/// of hanging the room that sent them.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Prefix of every key and channel.
const PREFIX: &str = "chorus";

/// A backend on one Redis server.
pub struct RedisStore {
    conn: ConnectionManager,
    bus: bus::RedisBus,
    scripts: Scripts,
    /// The URL without its password, for logs.
    shown: String,
}

/// The Lua scripts, loaded once (sent by hash, the text only when Redis
/// does not know it yet).
struct Scripts {
    presence_join: redis::Script,
    presence_refresh: redis::Script,
    presence_state: redis::Script,
    presence_leave: redis::Script,
    presence_expire: redis::Script,
    presence_members: redis::Script,
    doc_load: redis::Script,
    doc_append: redis::Script,
    doc_since: redis::Script,
    doc_snapshot: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            presence_join: redis::Script::new(include_str!("lua/presence_join.lua")),
            presence_refresh: redis::Script::new(include_str!("lua/presence_refresh.lua")),
            presence_state: redis::Script::new(include_str!("lua/presence_state.lua")),
            presence_leave: redis::Script::new(include_str!("lua/presence_leave.lua")),
            presence_expire: redis::Script::new(include_str!("lua/presence_expire.lua")),
            presence_members: redis::Script::new(include_str!("lua/presence_members.lua")),
            doc_load: redis::Script::new(include_str!("lua/doc_load.lua")),
            doc_append: redis::Script::new(include_str!("lua/doc_append.lua")),
            doc_since: redis::Script::new(include_str!("lua/doc_since.lua")),
            doc_snapshot: redis::Script::new(include_str!("lua/doc_snapshot.lua")),
        }
    }
}

/// Why a Redis backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://`, or `rediss://` for TLS)
    /// and checks that it answers.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| ConnectError::InvalidUrl { url: shown.clone(), reason: e.to_string() })?;
        let unreachable = |e: redis::RedisError| ConnectError::Unreachable { url: shown.clone(), reason: e.to_string() };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| ConnectError::Unreachable { url: shown.clone(), reason: "timed out".into() })?
            .map_err(unreachable)?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(unreachable)?;
        let bus = bus::RedisBus::start(client).await.map_err(unreachable)?;
        Ok(Self { conn, bus, scripts: Scripts::new(), shown })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

impl Backend for RedisStore {
    fn describe(&self) -> String {
        format!("Redis at {}", self.shown)
    }
}

/// The URL with any password replaced, for logs and messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Keys of one room, all under its hash tag.
fn room_key(room: &str, what: &str) -> String {
    format!("{PREFIX}:{{{room}}}:{what}")
}

fn doc_key(room: &str, doc: &str, what: &str) -> String {
    if what.is_empty() {
        format!("{PREFIX}:{{{room}}}:doc:{doc}")
    } else {
        format!("{PREFIX}:{{{room}}}:doc:{doc}:{what}")
    }
}

fn channel(room: &str) -> String {
    room_key(room, "events")
}

/// A Redis failure as the server sees it: unreachable (retry later) or not.
fn store_error(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

fn decode_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored {what} does not decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:s3cret@cache:6379/0"), "redis://***@cache:6379/0");
        assert_eq!(redact("rediss://user:pw@h"), "rediss://***@h");
        assert_eq!(redact("redis://127.0.0.1:7000"), "redis://127.0.0.1:7000");
    }

    #[test]
    fn every_key_of_a_room_carries_its_hash_tag() {
        assert_eq!(room_key("team/plan", "members"), "chorus:{team/plan}:members");
        assert_eq!(doc_key("team/plan", "body", "log"), "chorus:{team/plan}:doc:body:log");
        assert_eq!(doc_key("team/plan", "body", ""), "chorus:{team/plan}:doc:body");
        assert_eq!(channel("r"), "chorus:{r}:events");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_at_connect() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}")).await.err().expect("nothing listens there");
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
        assert!(matches!(RedisStore::connect("http://nope").await.err(), Some(ConnectError::InvalidUrl { .. })));
    }

    #[tokio::test]
    async fn redis_store_passes_the_conformance_suite() {
        let server = testing::RedisServer::start();
        let url = server.url();
        // Each check gets an empty database.
        chorus_store::conformance::run_all(|| async {
            server.cli(&["FLUSHALL"]);
            RedisStore::connect(&url).await.expect("connects")
        })
        .await;
    }
}
