//! `chorus`: the Chorus server binary.

use std::sync::Arc;

use anyhow::Context;
use chorus_server::config::LogFormat;
use chorus_server::{Config, Server};
use chorus_redis::RedisStore;
use chorus_store::{Backend, MemoryStore};
use clap::{Parser, Subcommand};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "chorus", version, about = "Chorus: a self-hosted real-time collaboration server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Config),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { command: Command::Serve(config) } = Cli::parse();
    init_logs(config.log_format);

    let backend: Arc<dyn Backend> = match &config.redis_url {
        Some(url) => Arc::new(RedisStore::connect(url).await.context("could not start: --redis (CHORUS_REDIS_URL) was given")?),
        None => Arc::new(MemoryStore::new()),
    };
    let store = backend.describe();
    let open = config.open_mode();
    let server = Server::start(config, backend).await.context("could not start the server")?;
    let addr = server.addr;

    println!("Chorus {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    println!("Open http://{addr}/ in two browser tabs to edit together (add ?room=NAME for another room).");
    println!("  WebSocket: ws://{addr}/v1/ws");
    println!("  store:     {store}");
    if open {
        let banner = "OPEN DEVELOPMENT MODE: anyone can connect without a token and do anything. \
                      Set --jwt-secret (CHORUS_JWT_SECRET) and drop --dev before exposing this server.";
        println!("  WARNING:   {banner}");
        warn!("{banner}");
    }
    info!(%addr, %store, open, "listening");

    shutdown_signal().await;
    info!("shutdown signal received");
    server.shutdown().await?;
    info!("stopped");
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("CHORUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
