//! Configuration: every setting is a `chorus serve` flag and an environment
//! variable, with a default that works on a laptop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chorus_protocol::Limits;
use clap::{Args, ValueEnum};

/// `chorus serve` settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (HTTP and WebSocket).
    #[arg(long, env = "CHORUS_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    /// PEM file with the TLS certificate chain (leaf first): the server then
    /// speaks https:// and wss:// on --listen. Read again, with --tls-key,
    /// on SIGHUP (new connections get the new certificate; if the new files
    /// cannot be used, the old certificate stays and the error is logged).
    #[arg(long, env = "CHORUS_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert.
    #[arg(long, env = "CHORUS_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Redis to share with other Chorus nodes, as the store of record and the
    /// bus (`redis://HOST:PORT`, or `rediss://HOST:PORT` for TLS). A Redis
    /// Cluster is recognised by itself: give one of its nodes, or several
    /// seed URLs separated by commas. Without it, one node keeps its data in
    /// the embedded SQLite store in --data.
    #[arg(long = "redis", env = "CHORUS_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,

    /// PEM file with the CA certificate(s) that signed the certificate of a
    /// `rediss://` Redis. Without it, the public web roots are trusted.
    #[arg(long, env = "CHORUS_REDIS_CA", value_name = "FILE", requires = "redis_url")]
    pub redis_ca: Option<PathBuf>,

    /// Folder of the embedded store: its database is DIR/chorus.db, created
    /// on first start. Used unless --redis or --memory is given.
    #[arg(long = "data", env = "CHORUS_DATA", value_name = "DIR", default_value = "chorus-data")]
    pub data_dir: PathBuf,

    /// Keep everything in this process's memory instead: nothing survives a
    /// restart (tests and throwaway demos).
    #[arg(long, env = "CHORUS_MEMORY", value_parser = boolean, conflicts_with = "redis_url")]
    pub memory: bool,

    /// Durability of the embedded store: `full`, an acknowledged write
    /// survives a power loss; `normal`, it survives a crash of the process,
    /// not a power loss (fewer fsyncs).
    #[arg(long, env = "CHORUS_SQLITE_SYNC", value_enum, default_value_t = SqliteSync::Full)]
    pub sqlite_sync: SqliteSync,

    /// Open development mode: anonymous users may connect and may do
    /// anything, the HTTP API is open without --api-token, and browsers of
    /// any origin are let in. Without it a token key (--jwt-secret or
    /// --jwt-public-key) is required, or the server refuses to start.
    /// CHORUS_DEV takes true/false, 1/0, yes/no, on/off (any case).
    #[arg(long, env = "CHORUS_DEV", value_parser = boolean)]
    pub dev: bool,

    /// Origins whose browser pages may open WebSockets and call the HTTP API,
    /// exact and separated by commas (`https://app.example.com`), or `*` for
    /// any. Requests without an `Origin` header (not from a browser) and
    /// same-origin requests (the Origin's host is the Host header) are always
    /// let in. Default: any origin under --dev, none but same-origin otherwise.
    #[arg(long, env = "CHORUS_ALLOWED_ORIGINS", value_delimiter = ',', value_name = "ORIGINS")]
    pub allowed_origins: Vec<String>,

    /// Secret for HS256-signed tokens.
    #[arg(long, env = "CHORUS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with an RSA public key for RS256-signed tokens.
    #[arg(long, env = "CHORUS_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Accept tokens without an `exp` claim (they never expire, and neither
    /// do connections opened with them). Off: such tokens are refused.
    #[arg(long, env = "CHORUS_ALLOW_TOKENS_WITHOUT_EXP", value_parser = boolean)]
    pub allow_tokens_without_exp: bool,

    /// Required `aud` claim of tokens, if any.
    #[arg(long, env = "CHORUS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Bearer token for the HTTP API (/v1/rooms...). Without it the API is
    /// open in development mode and closed otherwise.
    #[arg(long, env = "CHORUS_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Presence expires after this many milliseconds without a heartbeat.
    #[arg(long, env = "CHORUS_PRESENCE_TTL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub presence_ttl_ms: u64,

    /// Largest client message, in bytes.
    #[arg(long, env = "CHORUS_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024, value_parser = positive)]
    pub max_message_bytes: usize,

    /// Messages per second a connection may send (bursts up to twice that).
    #[arg(long, env = "CHORUS_MESSAGES_PER_SECOND", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages_per_second: u32,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "CHORUS_ROOMS_PER_CONNECTION", default_value_t = 50, value_parser = positive)]
    pub rooms_per_connection: usize,

    /// Members one room may hold.
    #[arg(long, env = "CHORUS_MEMBERS_PER_ROOM", default_value_t = 1_000, value_parser = positive)]
    pub members_per_room: usize,

    /// Cursor updates per second broadcast per sender; faster updates are
    /// coalesced (latest wins, the last one always goes out).
    #[arg(long, env = "CHORUS_CURSOR_RATE", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub cursor_rate: u32,

    /// Messages waiting for one connection before it counts as a slow
    /// consumer and is disconnected (close code 4005).
    #[arg(long, env = "CHORUS_OUTBOX_CAPACITY", default_value_t = 4_096, value_parser = positive)]
    pub outbox_capacity: usize,

    /// Bytes of messages waiting for one connection (queued, or taken by its
    /// writer and not yet written to the socket) before it counts as a slow
    /// consumer and is disconnected (close code 4005). A reply that would go
    /// over it (a document's text) is not built. Default 16 MiB.
    #[arg(long, env = "CHORUS_MAX_OUTBOX_BYTES", default_value_t = 16 * 1024 * 1024, value_parser = positive)]
    pub max_outbox_bytes: usize,

    /// Largest text document, in UTF-8 bytes; an op that would grow a
    /// document past it is refused.
    #[arg(long, env = "CHORUS_MAX_DOCUMENT_BYTES", default_value_t = 8 * 1024 * 1024, value_parser = positive)]
    pub max_document_bytes: usize,

    /// Largest op, in bytes of text inserted and deleted (plus 8 per component).
    #[arg(long, env = "CHORUS_MAX_OP_BYTES", default_value_t = 32 * 1024, value_parser = positive)]
    pub max_op_bytes: usize,

    /// Documents one connection may have open at once.
    #[arg(long, env = "CHORUS_DOCUMENTS_PER_CONNECTION", default_value_t = 50, value_parser = positive)]
    pub documents_per_connection: usize,

    /// Documents one room may hold in memory; opening or writing one more is
    /// refused with `too_many_documents` while the room is loaded.
    #[arg(long, env = "CHORUS_DOCUMENTS_PER_ROOM", default_value_t = 100, value_parser = positive)]
    pub documents_per_room: usize,

    /// Rooms one node may have loaded at once; joining (or an API call on)
    /// one more is refused with `unavailable` until others unload.
    #[arg(long, env = "CHORUS_MAX_ROOMS", default_value_t = 1_000, value_parser = positive)]
    pub max_rooms: usize,

    /// Largest state of one shared value, in bytes of its stored JSON.
    #[arg(long, env = "CHORUS_MAX_VALUE_BYTES", default_value_t = 64 * 1024, value_parser = positive)]
    pub max_value_bytes: usize,

    /// Bytes all shared values of one room may take together (their stored
    /// JSON); a change that would go over it is refused with
    /// `value_too_large`. Default 4 MiB.
    #[arg(long, env = "CHORUS_MAX_ROOM_VALUE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = positive)]
    pub max_room_value_bytes: usize,

    /// Bytes of room state this node may hold in memory, all rooms together:
    /// the texts of loaded documents, the ops their logs keep (each with
    /// 192 bytes for its record), and the rooms' values (their stored JSON). Loading a room or document, an
    /// op or a value change that would go over it is refused with
    /// `node_full` until rooms unload. Default 1 GiB.
    #[arg(long, env = "CHORUS_MAX_STATE_BYTES", default_value_t = 1024 * 1024 * 1024, value_parser = positive)]
    pub max_state_bytes: usize,

    /// Shared values one room may hold.
    #[arg(long, env = "CHORUS_VALUES_PER_ROOM", default_value_t = 100, value_parser = positive)]
    pub values_per_room: usize,

    /// Ops of a document kept behind its latest snapshot, so reconnecting
    /// clients catch up with ops instead of the whole text. Older ones are
    /// trimmed; a client further behind gets a snapshot.
    #[arg(long, env = "CHORUS_DOC_LOG_WINDOW", default_value_t = 10_000)]
    pub doc_log_window: u64,

    /// Bytes of ops (their text, plus 8 per component) a document's log may
    /// hold behind its head; past it a snapshot is taken and older ops are
    /// trimmed, whatever the window. Default 4 MiB.
    #[arg(long, env = "CHORUS_MAX_DOC_LOG_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = positive)]
    pub max_doc_log_bytes: usize,

    /// Ops between two snapshots of a document.
    #[arg(long, env = "CHORUS_DOC_SNAPSHOT_EVERY", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub doc_snapshot_every: u64,

    /// How often each room compares itself with the store (presence and
    /// values stamps, document heads) and checks that its subscription to
    /// the bus still delivers. A missed event is repaired within two of
    /// these.
    #[arg(long, env = "CHORUS_RECONCILE_INTERVAL_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(50..))]
    pub reconcile_interval_ms: u64,

    /// Connections (HTTP and WebSocket) served at once. Past it, a few more
    /// are accepted to answer /healthz, /readyz and /metrics and to refuse
    /// everything else with 503 `too_many_connections`; then new ones are
    /// closed at once. Keep `ulimit -n` above it.
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = positive)]
    pub max_connections: usize,

    /// Time a connection has to send a request's headers (new, idle between
    /// requests, or trickling); then it is closed.
    #[arg(long, env = "CHORUS_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,

    /// Time a request body (HTTP API) has to arrive whole; then 408.
    #[arg(long, env = "CHORUS_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,

    /// How long shutdown waits for connections to be told and closed.
    #[arg(long, env = "CHORUS_SHUTDOWN_GRACE_MS", default_value_t = 5_000)]
    pub shutdown_grace_ms: u64,

    /// Log format.
    #[arg(long, env = "CHORUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Threads that serve connections and run rooms (1 to 1024). Default:
    /// one per core. Nodes that share a machine with each other or with
    /// Redis do better with a share of its cores each (two nodes on two
    /// cores: 1 each): more threads than cores spend the CPU switching
    /// between them.
    #[arg(long, env = "CHORUS_WORKERS", value_name = "N", value_parser = workers)]
    pub workers: Option<usize>,
}

/// `--workers`: a thread at least, and not so many that the process cannot
/// start them (a typo such as 10000 would otherwise end in a panic of the
/// runtime).
fn workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=MAX_WORKERS) => Ok(n),
        Ok(_) => Err(format!("the number of worker threads must be from 1 to {MAX_WORKERS}")),
        Err(_) => Err(format!("'{s}' is not a number of worker threads (1 to {MAX_WORKERS}; default: one per core)")),
    }
}

/// The most `--workers` takes.
const MAX_WORKERS: usize = 1024;

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A boolean setting: the usual spellings, in any case, and an error that
/// lists them (clap's own parser for flags takes only `true` and `false`).
/// Every boolean setting uses it, so `CHORUS_DEV=1` works as people expect.
pub fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "false" | "0" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err(format!("'{s}' is not a boolean; use true/false, 1/0, yes/no or on/off")),
    }
}

/// `--sqlite-sync`: how hard the embedded store waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSync {
    Full,
    Normal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Defaults for a server on `listen` (tests and embedding).
    pub fn for_address(listen: SocketAddr) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Wrap::parse_from(["chorus"]).config;
        config.listen = listen;
        config
    }

    pub fn presence_ttl(&self) -> Duration {
        Duration::from_millis(self.presence_ttl_ms)
    }

    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.reconcile_interval_ms)
    }

    /// How often clients should send a heartbeat: a third of the TTL, so two
    /// may be lost before presence expires.
    pub fn heartbeat_interval(&self) -> Duration {
        self.presence_ttl() / 3
    }

    /// What the accept loop enforces.
    pub fn listener_limits(&self) -> crate::listener::Limits {
        crate::listener::Limits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            messages_per_second: self.messages_per_second,
            rooms_per_connection: self.rooms_per_connection,
            members_per_room: self.members_per_room,
            cursor_updates_per_second: self.cursor_rate,
            max_op_bytes: self.max_op_bytes,
            max_document_bytes: self.max_document_bytes,
            documents_per_connection: self.documents_per_connection,
            max_value_bytes: self.max_value_bytes,
            values_per_room: self.values_per_room,
        }
    }

    /// Whether anonymous connections are accepted: only under --dev.
    pub fn open_mode(&self) -> bool {
        self.dev
    }

    /// Whether a token key is configured.
    pub fn has_token_key(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some()
    }

    /// Refuses settings a server must not start with: outside development
    /// mode, a server without a token key would let nobody in (or, as it
    /// once did, everybody); it says what to set instead.
    pub fn check(&self) -> Result<(), String> {
        if !self.dev && !self.has_token_key() {
            return Err("no token key is configured: set --jwt-secret (CHORUS_JWT_SECRET) or --jwt-public-key \
                        (CHORUS_JWT_PUBLIC_KEY) so clients need signed tokens, or pass --dev (CHORUS_DEV=1) for an \
                        open development server that must not be exposed"
                .into());
        }
        if let Some(o) = self.allowed_origins.iter().find(|o| o.as_str() != "*" && crate::origin::normalize(o).is_none()) {
            return Err(format!("--allowed-origins: {o:?} is not an origin (scheme://host[:port], or * for any)"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_take_the_usual_spellings() {
        for yes in ["true", "TRUE", "1", "yes", "Y", "on", " On "] {
            assert_eq!(boolean(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "n", "off", ""] {
            assert_eq!(boolean(no), Ok(false), "{no}");
        }
        let err = boolean("maybe").unwrap_err();
        assert!(err.contains("true/false, 1/0, yes/no or on/off"), "{err}");
    }

    #[test]
    fn workers_are_from_one_to_the_maximum() {
        assert_eq!(workers("1"), Ok(1));
        assert_eq!(workers(" 4 "), Ok(4));
        assert_eq!(workers("1024"), Ok(MAX_WORKERS));
        for bad in ["0", "1025", "-1", "two", ""] {
            let err = workers(bad).unwrap_err();
            assert!(err.contains("worker threads") && err.contains("1 to 1024"), "{bad}: {err}");
        }
        assert_eq!(Config::for_address("127.0.0.1:0".parse().unwrap()).workers, None, "the runtime's default: one per core");
    }

    #[test]
    fn a_server_needs_a_key_or_dev() {
        let mut c = Config::for_address("127.0.0.1:0".parse().unwrap());
        let err = c.check().unwrap_err();
        assert!(err.contains("--jwt-secret") && err.contains("--dev"), "{err}");
        assert!(!err.contains("drop --dev"), "{err}");
        c.dev = true;
        assert!(c.check().is_ok() && c.open_mode());
        c.dev = false;
        c.jwt_secret = Some("s".into());
        assert!(c.check().is_ok() && !c.open_mode());
        c.allowed_origins = vec!["not an origin".into()];
        assert!(c.check().unwrap_err().contains("--allowed-origins"));
    }
}
