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
//! - documents: per document a hash (epoch, head and its digest, oldest
//!   kept version and its digest, snapshot version), a list of ops, a hash
//!   of each client's last (seq, version), the snapshot text, and the
//!   users' undo histories. A commit compares the head and its digest,
//!   appends, bumps the head and publishes in one script, with O(1) work
//!   whatever the document's size; a group of commits is one script and
//!   one message on the bus. A document's name joins a per-room set
//!   of documents (the list) when it is created; a deletion, or the discard
//!   of a document nobody edited, removes every key of it in one script.
//! - values: per room hashes of versions, states and write tokens, and the
//!   room's values stamp; a change is one compare-and-set script that also
//!   publishes the new state.
//! - the bus: pub/sub per room (sharded pub/sub on a Cluster, so a room's
//!   events travel only through the shard that holds its keys), a wake-up
//!   and not the truth (see [`bus`]).
//!
//! Every script either changes nothing when repeated (a leave, a snapshot)
//! or recognises its own repetition (a join finds its entry, an append its
//! (client, seq), a value or history write its token): the Cluster client
//! retries a command whose connection dropped, and a node retries a call
//! whose answer it never got, so a script may run twice.
//!
//! Names clients choose never meet: rooms cannot hold braces, and a
//! document's keys carry its name with its length (`d:4:body:log`), so no
//! name reaches another's keys whatever separators it contains. A store
//! written with the earlier layout (`doc:NAME:…`) is refused at start-up.
//!
//! A Cluster is recognised by itself: give one node's URL or several seed
//! URLs separated by commas. Nothing else changes between the two, because
//! no script touches more than one room.
//!
//! [`testing`] starts real `redis-server` processes and Clusters for tests.

mod bus;
#[cfg(test)]
mod cluster_faults;
mod commands;
mod docs;
mod history;
mod layout;
mod presence;
mod scripts;
mod status;
pub mod testing;
mod values;

use std::time::Duration;

use chorus_store::{Backend, StoreError, StoreResult};
use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClientBuilder;

use commands::{Commands, Conn};
use scripts::Scripts;

/// Commands that get no answer within this fail with "unavailable" instead
/// of hanging the room that sent them.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Prefix of every key and channel.
const PREFIX: &str = "chorus";

/// The counter of requests this node sent Redis and waited for (a script
/// or a command each; commands a script runs inside Redis are not counted):
/// the Redis round trips per committed op are its ratio to the ops.
pub const ROUND_TRIPS: &str = "chorus_redis_round_trips_total";

/// A backend on one Redis server or on a Redis Cluster.
pub struct RedisStore {
    commands: Commands,
    bus: bus::RedisBus,
    scripts: Scripts,
    /// [`ROUND_TRIPS`], looked up once (on the first request: a server
    /// installs its metrics recorder before its rooms send any) instead of
    /// by name on every request.
    round_trips: std::sync::OnceLock<metrics::Counter>,
    /// The URL without its password, for logs.
    shown: String,
}

/// Why a Redis backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Redis at {url} holds Chorus data in an older layout ({found}); this Chorus keeps documents under other keys and will not read or overwrite it. Export what you need with the Chorus that wrote it, or give this Chorus an empty Redis (or another database number)")]
    OldLayout { url: String, found: String },
}

impl RedisStore {
    /// Connects to Redis and checks that it answers. `urls` is one URL
    /// (`redis://`, or `rediss://` for TLS) or several separated by commas;
    /// several URLs, or one URL of a node with cluster mode on, mean a
    /// Redis Cluster.
    pub async fn connect(urls: &str) -> Result<Self, ConnectError> {
        Self::connect_with(urls, None).await
    }

    /// [`RedisStore::connect`], checking a `rediss://` server's certificate
    /// against the CA certificates in `ca_pem` (PEM) instead of the public
    /// web roots: a Redis with a certificate of a private CA.
    pub async fn connect_with(urls: &str, ca_pem: Option<Vec<u8>>) -> Result<Self, ConnectError> {
        let seeds: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
        let shown = seeds.iter().map(|u| redact(u)).collect::<Vec<_>>().join(",");
        let invalid = |reason: String| ConnectError::InvalidUrl { url: shown.clone(), reason };
        let unreachable = |e: redis::RedisError| ConnectError::Unreachable { url: shown.clone(), reason: e.to_string() };
        let timed_out = || ConnectError::Unreachable { url: shown.clone(), reason: "timed out".into() };
        let [first, ..] = seeds.as_slice() else { return Err(invalid("no URL given".into())) };
        // TLS to Redis asks rustls for the process's provider: ring, the
        // one built in (a provider installed already by the embedder stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = ca_pem.map(|ca| redis::TlsCertificates { client_tls: None, root_cert: Some(ca) });
        let client = match &certs {
            Some(certs) => redis::Client::build_with_tls(*first, certs.clone()),
            None => redis::Client::open(*first),
        }
        .map_err(|e| invalid(e.to_string()))?;
        if seeds.len() == 1 {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            let mut conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, client.get_connection_manager_with_config(config.clone()))
                .await
                .map_err(|_| timed_out())?
                .map_err(unreachable)?;
            let info: String = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await.map_err(unreachable)?;
            if !info.contains("cluster_enabled:1") {
                layout::check(&mut Conn::Single(conn.clone()), std::slice::from_ref(&client), &shown).await?;
                let bus = bus::RedisBus::start_single(client.clone()).await.map_err(unreachable)?;
                let commands = Commands::single(conn, client, config);
                return Ok(Self { commands, bus, scripts: Scripts::new(), round_trips: Default::default(), shown });
            }
        }
        let cluster = |push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>| {
            let builder = ClusterClientBuilder::new(seeds.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(2)
                .min_retry_wait(50)
                .max_retry_wait(500);
            let builder = match &certs {
                Some(certs) => builder.certs(certs.clone()),
                None => builder,
            };
            match push {
                Some(push) => builder.use_protocol(redis::ProtocolVersion::RESP3).push_sender(push),
                None => builder,
            }
            .build()
        };
        let commands = cluster(None).map_err(|e| invalid(e.to_string()))?;
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT * 2, commands.get_async_connection())
            .await
            .map_err(|_| timed_out())?
            .map_err(unreachable)?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(unreachable)?;
        let masters = layout::masters(&mut conn, client.get_connection_info()).await.map_err(unreachable)?;
        layout::check(&mut Conn::Cluster(conn.clone()), &masters, &shown).await?;
        let (push, pushes) = tokio::sync::mpsc::unbounded_channel();
        let subscriber = cluster(Some(push)).map_err(|e| invalid(e.to_string()))?;
        let subscriber = tokio::time::timeout(CONNECT_TIMEOUT * 2, subscriber.get_async_connection())
            .await
            .map_err(|_| timed_out())?
            .map_err(unreachable)?;
        let bus = bus::RedisBus::start_cluster(subscriber, pushes);
        Ok(Self { commands: Commands::cluster(conn, commands), bus, scripts: Scripts::new(), round_trips: Default::default(), shown })
    }

    fn conn(&self) -> Conn {
        self.commands.conn()
    }

    /// Runs a script, by hash or, where its server does not know it yet,
    /// with its text (see [`scripts`]); see [`RedisStore::retrying`].
    async fn invoke<T: redis::FromRedisValue>(&self, invocation: &scripts::Invocation<'_>) -> StoreResult<T> {
        self.retrying(|| async move {
            let mut conn = self.conn();
            match invocation.by_hash().query_async(&mut conn).await {
                Err(e) if scripts::unknown_script(&e) => invocation.by_text().query_async(&mut conn).await,
                outcome => outcome,
            }
        })
        .await
    }

    /// Runs a command; see [`RedisStore::retrying`].
    async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> StoreResult<T> {
        let cmd = &*cmd;
        self.retrying(|| async move { cmd.query_async(&mut self.conn()).await }).await
    }

    /// Runs a call, once more when the connection was found dropped (the
    /// first command after Redis restarted, say: the connection reconnects
    /// for the next one). Every script and command here is safe to repeat
    /// (see the module docs); a call that timed out is not repeated, since
    /// it may still be running.
    async fn retrying<T, F, Fut>(&self, call: F) -> StoreResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let round_trips = self.round_trips.get_or_init(|| metrics::counter!(ROUND_TRIPS));
        round_trips.increment(1);
        match call().await {
            Err(e) if (e.is_connection_dropped() || e.is_connection_refusal() || e.is_io_error()) && !e.is_timeout() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                round_trips.increment(1);
                call().await.map_err(store_error)
            }
            Err(e) if !e.is_timeout() && matches!(store_error(e.clone()), StoreError::Unavailable(_)) => {
                // Possibly the connection's own failure, which it would
                // keep answering with: a new one replaces it.
                self.commands.renew_after(&e);
                Err(store_error(e))
            }
            outcome => outcome.map_err(store_error),
        }
    }

    /// PUBLISH, or SPUBLISH on a Cluster (which a script may call only
    /// for a channel in its keys' slot, as every room channel is).
    fn publish_command(&self) -> &'static str {
        if self.commands.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

impl Backend for RedisStore {
    fn describe(&self) -> String {
        if self.commands.is_cluster() {
            format!("Redis Cluster at {}", self.shown)
        } else {
            format!("Redis at {}", self.shown)
        }
    }
}

/// The URL with any password replaced, for logs and messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Keys of one room, all under its hash tag. Room names cannot hold braces
/// (the server checks), so the tag is the whole name.
fn room_key(room: &str, what: &str) -> String {
    format!("{PREFIX}:{{{room}}}:{what}")
}

/// Keys of one document: its name with its length, so that no name, whatever
/// separators it holds, reaches the keys of another (`x:log` is
/// `d:5:x:log:…`, never `x`'s log).
fn doc_key(room: &str, doc: &str, what: &str) -> String {
    format!("{PREFIX}:{{{room}}}:d:{}:{doc}:{what}", doc.len())
}

fn channel(room: &str) -> String {
    room_key(room, "events")
}

/// A Redis failure as the server sees it: unreachable (retry later) or not.
/// A server still loading its data, or a Cluster between two states (a
/// master down, slots moving), is unreachable for the moment too.
fn store_error(e: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let passing = e.is_cluster_error()
        || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown | ServerErrorKind::ReadOnly));
    if passing || e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_unrecoverable_error() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// A script's reply as text (numbers come back as integers or strings).
fn text(reply: &redis::Value) -> StoreResult<String> {
    match reply {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|e| decode_error("text", e)),
        redis::Value::SimpleString(s) => Ok(s.clone()),
        redis::Value::Int(n) => Ok(n.to_string()),
        redis::Value::Double(d) => Ok(d.to_string()),
        other => Err(decode_error("reply", format!("{other:?}"))),
    }
}

fn number(reply: &redis::Value) -> StoreResult<u64> {
    text(reply)?.parse().map_err(|e| decode_error("number", e))
}

/// A stamp from a script's reply: an epoch (nil when the record does not
/// exist) and a sequence number.
fn stamp(epoch: &redis::Value, seq: &redis::Value) -> StoreResult<Option<chorus_store::Stamp>> {
    match epoch {
        redis::Value::Nil => Ok(None),
        epoch => Ok(Some(chorus_store::Stamp { epoch: text(epoch)?, seq: number(seq)? })),
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
        assert_eq!(doc_key("team/plan", "body", "log"), "chorus:{team/plan}:d:4:body:log");
        assert_eq!(channel("r"), "chorus:{r}:events");
    }

    #[test]
    fn no_document_name_reaches_another_documents_keys() {
        let names = ["x", "x:log", "x:meta", "log", "4:x", "d:1:x", "x:log:log", "1:x:log"];
        let kinds = ["meta", "log", "snapshot", "clients", "history", "history-rev"];
        let mut keys = std::collections::HashSet::new();
        for name in names {
            for kind in kinds {
                assert!(keys.insert(doc_key("r", name, kind)), "{name} {kind} collides");
            }
        }
        for room_level in ["docs", "members", "states", "expiry", "presence", "values:version", "values:state", "values:token", "values:meta", "events"] {
            assert!(!keys.contains(&room_key("r", room_level)), "{room_level}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_at_connect() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = RedisStore::connect(&format!("redis://127.0.0.1:{port}")).await.err().expect("nothing listens there");
        assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
        assert!(matches!(RedisStore::connect("http://nope").await.err(), Some(ConnectError::InvalidUrl { .. })));
        let tls = RedisStore::connect(&format!("rediss://:pw@127.0.0.1:{port}")).await.err().expect("nothing listens there");
        assert!(matches!(tls, ConnectError::Unreachable { .. }), "{tls}");
        assert!(!tls.to_string().contains("pw"), "{tls}");
    }

    /// Redis refused this node's user for a while (an ACL change, a
    /// password rotation, the server loading its data at reconnection): once
    /// it admits the user again, the node works again, whatever failure its
    /// reconnection met meanwhile.
    #[tokio::test]
    async fn a_node_refused_for_a_while_works_again_once_admitted() {
        let server = testing::RedisServer::start_with_users(testing::Persistence::None, &[("node", "pw")]);
        let store = RedisStore::connect(&server.url_as("node", "pw")).await.expect("connects");
        chorus_store::PresenceStore::ping(&store).await.expect("answers");
        server.refuse_user("node");
        for _ in 0..3 {
            assert!(chorus_store::PresenceStore::ping(&store).await.is_err(), "refused");
        }
        server.admit_user("node");
        let mut answered = false;
        for _ in 0..50 {
            if chorus_store::PresenceStore::ping(&store).await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(answered, "the node never recovered after Redis admitted it again");
    }

    /// Keys of the room `r`, sorted.
    fn room_keys(server: &testing::RedisServer) -> Vec<String> {
        let mut keys: Vec<String> = server.cli(&["KEYS", "chorus:{r}:*"]).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn an_untouched_document_and_a_deleted_one_leave_no_key() {
        use chorus_core::digest::Digest;
        use chorus_core::text::TextOp;
        use chorus_store::{Appended, Commit, DocCatalog, DocStore, HistoryStore, HistoryWrite, Snapshot};
        let server = testing::RedisServer::start();
        let b = RedisStore::connect(&server.url()).await.expect("connects");
        let d = b.load("r", "d").await.unwrap();
        b.ops_since("r", "d", &d.epoch, 0).await.unwrap();
        b.last_committed("r", "d", "a").await.unwrap();
        b.snapshot("r", "d", Snapshot { epoch: &d.epoch, version: 0, text: String::new(), trim_to: 0, trim_digest: Digest::EMPTY }).await.unwrap();
        assert!(b.save_history("r", "d", &d.epoch, "ann", 0, "t0", "h").await.unwrap());
        assert!(b.discard_if_empty("r", "d", &d.epoch).await.unwrap());
        assert_eq!(room_keys(&server), Vec::<String>::new(), "a document opened and never edited leaves no key once discarded");
        let d = b.load("r", "d").await.unwrap();

        let (mut head, mut digest) = (0, Digest::EMPTY);
        for seq in 1..=4u64 {
            let op = TextOp::insert(0, "x");
            let next = digest.next(head + 1, "a", seq, &op);
            let c = Commit { epoch: &d.epoch, expected: head, expected_digest: digest, client: "a", seq, op: &op, digest: next, history: None };
            assert!(matches!(b.append("r", "d", &c).await.unwrap(), Appended::Committed { .. }));
            (head, digest) = (seq, next);
        }
        let op = TextOp::insert(0, "u");
        let next = digest.next(5, "h:ann", 1, &op);
        let history = Some(HistoryWrite { user: "ann", expected_rev: 0, token: "t", saved: "h" });
        let c = Commit { epoch: &d.epoch, expected: 4, expected_digest: digest, client: "h:ann", seq: 1, op: &op, digest: next, history };
        assert!(matches!(b.append("r", "d", &c).await.unwrap(), Appended::Committed { version: 5, .. }));
        b.snapshot("r", "d", Snapshot { epoch: &d.epoch, version: 3, text: "xxx".into(), trim_to: 2, trim_digest: Digest::EMPTY }).await.unwrap();
        assert!(b.save_history("r", "d", &d.epoch, "bob", 0, "t2", "h2").await.unwrap());
        let kinds = ["clients", "history", "history-rev", "log", "meta", "snapshot"];
        let mut expected: Vec<String> = kinds.iter().map(|k| doc_key("r", "d", k)).collect();
        expected.push(room_key("r", "docs"));
        expected.sort();
        assert_eq!(room_keys(&server), expected);
        assert!(b.delete_doc("r", "d").await.unwrap().is_some());
        assert_eq!(room_keys(&server), Vec::<String>::new(), "a deleted document leaves no key");
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

    #[tokio::test]
    async fn redis_store_on_a_cluster_passes_the_conformance_suite() {
        let cluster = testing::RedisCluster::start(3);
        let seeds = cluster.urls().join(",");
        chorus_store::conformance::run_all(|| async {
            cluster.flush_all();
            let store = RedisStore::connect(&seeds).await.expect("connects");
            assert!(store.describe().starts_with("Redis Cluster at"), "{}", store.describe());
            store
        })
        .await;
    }

    #[tokio::test]
    async fn one_node_of_a_cluster_is_enough_to_find_the_rest() {
        let cluster = testing::RedisCluster::start(3);
        let store = RedisStore::connect(&cluster.urls()[1]).await.expect("connects");
        assert!(store.describe().starts_with("Redis Cluster at"), "{}", store.describe());
        // Rooms whose keys live on different masters all work.
        for room in ["a", "b", "c", "d", "e", "f"] {
            chorus_store::PresenceStore::ping(&store).await.unwrap();
            let stored = chorus_store::DocStore::load(&store, room, "body").await.expect("loads on any shard");
            assert_eq!(stored.snapshot_version, 0);
        }
    }
}

