//! `chorus`: the Chorus server binary.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::Context;
use chorus_server::config::{LogFormat, SqliteSync};
use chorus_server::{Config, Server};
use chorus_redis::RedisStore;
use chorus_sqlite::{SqliteStore, SyncMode};
use chorus_store::{Backend, MemoryStore};
use clap::{Parser, Subcommand};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "chorus",
    version,
    about = "Chorus: a self-hosted real-time collaboration server",
    arg_required_else_help = true,
    after_help = "Every setting belongs to `chorus serve`: `chorus serve --help` lists them all \
                  (each is also a CHORUS_* environment variable).\n\n\
                  Examples:\n  \
                  chorus serve --dev                        try it: open mode, the demo at http://127.0.0.1:8787/, data kept in ./chorus-data\n  \
                  chorus serve --dev --memory               the same, keeping nothing across restarts\n  \
                  chorus serve --jwt-secret \"$SECRET\"       production: signed tokens required\n  \
                  chorus serve ... --tls-cert cert.pem --tls-key key.pem   https:// and wss:// (reloaded on SIGHUP)\n  \
                  chorus serve --redis redis://HOST:6379 ...  one of many nodes sharing a Redis\n  \
                  chorus backup chorus-backup.db            a consistent copy of ./chorus-data while the server runs\n  \
                  chorus export --room team/plan > plan.jsonl    a room's documents and values as JSON lines\n  \
                  chorus import --redis redis://HOST:6379 plan.jsonl    ... into another store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of `serve`'s settings costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server (see `chorus serve --help` for every setting).
    Serve(Config),
    /// Copy the embedded store's database to FILE: a consistent copy, taken
    /// while the server runs (it keeps serving).
    Backup {
        /// Where to write the copy (a new file; never overwritten).
        file: std::path::PathBuf,
        /// The data folder of the server (as given to `chorus serve --data`).
        #[arg(long = "data", env = "CHORUS_DATA", value_name = "DIR", default_value = "chorus-data")]
        data_dir: std::path::PathBuf,
    },
    /// Write a room's documents (text at the head, with its version) and
    /// shared values as JSON lines, to FILE or stdout. From the embedded
    /// store the server must be stopped (its database is locked while it
    /// runs); from Redis it may run.
    Export {
        /// The room to export.
        #[arg(long)]
        room: String,
        /// Where to write (stdout when absent); an existing file is not overwritten.
        #[arg(long = "out", value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read an export made by `chorus export` into a store. A room that
    /// already has one of its documents or values is refused, with nothing
    /// changed, unless --replace is given.
    Import {
        /// The export to read ("-" for stdin).
        file: std::path::PathBuf,
        /// Import into this room instead of the one the export names.
        #[arg(long)]
        room: Option<String>,
        /// Replace documents and values the room has already.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a backup made by `chorus backup` in place of the embedded store's
    /// database. The server must be stopped (this refuses otherwise).
    Restore {
        /// The backup to restore.
        file: std::path::PathBuf,
        /// The data folder of the server (as given to `chorus serve --data`).
        #[arg(long = "data", env = "CHORUS_DATA", value_name = "DIR", default_value = "chorus-data")]
        data_dir: std::path::PathBuf,
    },
}

/// Which store `export` and `import` use: the same flags as `chorus serve`.
#[derive(clap::Args)]
struct StoreArgs {
    /// Redis (one server, or Cluster seeds separated by commas).
    #[arg(long = "redis", env = "CHORUS_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// The data folder of the embedded store (as given to `chorus serve --data`).
    #[arg(long = "data", env = "CHORUS_DATA", value_name = "DIR", default_value = "chorus-data")]
    data_dir: std::path::PathBuf,
    /// The in-memory store (holds nothing: for trying the commands out).
    #[arg(long, conflicts_with = "redis_url")]
    memory: bool,
}

impl StoreArgs {
    /// The store; an embedded one is created when `create` (to import into).
    async fn open(&self, create: bool) -> anyhow::Result<Arc<dyn Backend>> {
        Ok(match &self.redis_url {
            Some(url) => Arc::new(RedisStore::connect(url).await.context("cannot connect to --redis")?),
            None if self.memory => Arc::new(MemoryStore::new()),
            None => {
                let path = self.data_dir.join("chorus.db");
                if create {
                    std::fs::create_dir_all(&self.data_dir).with_context(|| format!("cannot create the data folder {}", self.data_dir.display()))?;
                }
                anyhow::ensure!(create || path.exists(), "there is no database at {} (--data DIR)", path.display());
                Arc::new(SqliteStore::open(&path, SyncMode::Full).context("the embedded store cannot be opened (a server running on it holds it: stop it first)")?)
            }
        })
    }
}

/// Parses the command line; a setting given without `serve` (`chorus --dev`)
/// is answered with the command that was meant.
fn parse_cli() -> Cli {
    let args: Vec<String> = std::env::args().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let rest = &args[1.min(args.len())..];
            let meant_serve = e.kind() == clap::error::ErrorKind::UnknownArgument
                && rest.first().is_some_and(|a| a.starts_with('-'))
                && Cli::try_parse_from(args.iter().take(1).map(String::as_str).chain(["serve"]).chain(rest.iter().map(String::as_str))).is_ok();
            if meant_serve {
                let _ = e.print();
                eprintln!("\n  tip: settings belong to the serve command: run `chorus serve {}`", rest.join(" "));
                std::process::exit(2);
            }
            e.exit()
        }
    }
}

fn main() -> anyhow::Result<()> {
    let command = parse_cli().command;
    // The runtime is built here rather than by `#[tokio::main]` because its
    // size is a setting of `serve` (--workers); unset, tokio's default is
    // one worker per core.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // Named for `top -H` and `perf` (the blocking pool's threads, for
    // SQLite and file reads, carry the same name).
    runtime.enable_all().thread_name("chorus-worker");
    if let Command::Serve(Config { workers: Some(n), .. }) = &command {
        runtime.worker_threads(*n);
    }
    let runtime = runtime.build().context("cannot start the runtime")?;
    runtime.block_on(run(command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    let config = match command {
        Command::Serve(config) => config,
        Command::Backup { file, data_dir } => {
            let db = data_dir.join("chorus.db");
            chorus_sqlite::backup(&db, &file).context("the backup failed")?;
            println!("backed up {} to {}", db.display(), file.display());
            return Ok(());
        }
        Command::Export { room, out, store } => {
            chorus_server::auth::check_room_name(&room).map_err(|m| anyhow::anyhow!("--room: {m}"))?;
            let backend = store.open(false).await?;
            let moved = match &out {
                Some(path) => {
                    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).with_context(|| format!("cannot create {}", path.display()))?;
                    let mut writer = std::io::BufWriter::new(file);
                    let moved = chorus_server::transfer::export(&*backend, &room, &mut writer).await.context("the export failed")?;
                    writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    moved
                }
                None => chorus_server::transfer::export(&*backend, &room, std::io::stdout().lock()).await.context("the export failed")?,
            };
            eprintln!("exported {} documents and {} values of room {room} from {}", moved.docs, moved.values, backend.describe());
            return Ok(());
        }
        Command::Import { file, room, replace, store } => {
            let (named, lines) = if file.as_os_str() == "-" {
                chorus_server::transfer::read(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
                chorus_server::transfer::read(std::io::BufReader::new(f))
            }
            .with_context(|| format!("{} is not an export", file.display()))?;
            let room = room.unwrap_or(named);
            chorus_server::auth::check_room_name(&room).map_err(|m| anyhow::anyhow!("room: {m}"))?;
            let backend = store.open(true).await?;
            let moved = chorus_server::transfer::import(&*backend, &room, &lines, replace).await.context("the import failed")?;
            eprintln!("imported {} documents and {} values into room {room} of {}", moved.docs, moved.values, backend.describe());
            return Ok(());
        }
        Command::Restore { file, data_dir } => {
            std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
            let db = data_dir.join("chorus.db");
            chorus_sqlite::restore(&file, &db).context("the restore failed")?;
            println!("restored {} from {}", db.display(), file.display());
            return Ok(());
        }
    };
    init_logs(config.log_format);
    // Before connecting to anything: a server that would run open by
    // accident does not start.
    if let Err(e) = config.check() {
        eprintln!("chorus: cannot start: {e}");
        std::process::exit(2);
    }

    let backend: Arc<dyn Backend> = match &config.redis_url {
        Some(url) => {
            let ca = match &config.redis_ca {
                Some(path) => Some(std::fs::read(path).with_context(|| format!("could not start: cannot read --redis-ca {}", path.display()))?),
                None => None,
            };
            Arc::new(RedisStore::connect_with(url, ca).await.context("could not start: --redis (CHORUS_REDIS_URL) was given")?)
        }
        None if config.memory => Arc::new(MemoryStore::new()),
        None => Arc::new(open_embedded(&config.data_dir, config.sqlite_sync)?),
    };
    let store = backend.describe();
    let open = config.open_mode();
    let server = Server::start(config, backend).await.context("could not start the server")?;
    let addr = server.addr;

    // Logged before the lines on stdout, which scripts and tests wait for as
    // the sign that the server is ready: its logs then already say so.
    // Open mode is only ever asked for (--dev): the advice names it.
    let banner = "OPEN DEVELOPMENT MODE (--dev): anyone can connect without a token and do anything, \
                  from any web page. Set --jwt-secret (CHORUS_JWT_SECRET) and drop --dev before exposing this server.";
    if open {
        warn!("{banner}");
    }
    let (http, ws) = if server.tls.is_some() { ("https", "wss") } else { ("http", "ws") };
    // Read back from the runtime, so what is reported is what runs.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    info!(%addr, %store, open, tls = server.tls.is_some(), workers, "listening");
    println!("Chorus {} listening on {http}://{addr}", env!("CARGO_PKG_VERSION"));
    println!("Open {http}://{addr}/ in two browser tabs to edit together (add ?room=NAME for another room).");
    println!("  WebSocket: {ws}://{addr}/v1/ws");
    println!("  store:     {store}");
    println!("  workers:   {workers}");
    if open {
        println!("  WARNING:   {banner}");
    }
    shutdown_signal().await;
    info!("shutdown signal received");
    server.shutdown().await?;
    info!("stopped");
    Ok(())
}

/// Opens (creating on first start) the embedded store in `dir`.
fn open_embedded(dir: &std::path::Path, sync: SqliteSync) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(dir).with_context(|| format!("could not start: cannot create the data folder {} (--data, CHORUS_DATA)", dir.display()))?;
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let path = dir.join("chorus.db");
    let created = !path.exists();
    let sync = match sync {
        SqliteSync::Full => SyncMode::Full,
        SqliteSync::Normal => SyncMode::Normal,
    };
    let store = SqliteStore::open(&path, sync).context("could not start: the embedded store cannot be opened (--data DIR for another folder, --memory to keep nothing)")?;
    if created {
        info!(path = %path.display(), "created a new database");
    } else {
        info!(path = %path.display(), "opened the database");
    }
    Ok(store)
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("CHORUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: a file or a pipe (a log
    // collector, `| less`) would get the escape codes as text. NO_COLOR
    // turns them off everywhere.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
