//! `rotary`: the one binary. `rotary server` runs the secrets manager.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rotary_server::{Config, start};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "rotary", version, about = "Self-hosted secrets manager with automatic rotation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates the data directory, master key and first admin key on first start).
    #[command(
        after_help = "Examples:\n  rotary server\n  ROTARY_LISTEN=0.0.0.0:8420 rotary server --config /etc/rotary/rotary.toml"
    )]
    Server {
        /// TOML configuration file (see rotary.example.toml); env: ROTARY_CONFIG.
        #[arg(long, env = "ROTARY_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server { config } => server(config),
    }
}

fn server(config: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref())?;
    // The database drivers log the SQL they send at debug level; for password
    // changes that holds SCRAM verifiers and password hashes, so they are
    // capped at info whatever the filter says.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log))
        .context("invalid log filter")?
        .add_directive("tokio_postgres=info".parse()?)
        .add_directive("mysql_async=info".parse()?)
        .add_directive("mysql_common=info".parse()?);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let running = start(&cfg, Arc::new(rotary_core::SystemClock)).await?;
        if running.created {
            println!("Created a new data directory at {}", running.data_dir.display());
            if cfg.master_key.is_none() {
                println!(
                    "  master key: {} (back it up: without it the data cannot be decrypted)",
                    running.data_dir.join(rotary_server::bootstrap::KEY_FILE).display()
                );
            }
        }
        if let Some(admin) = &running.first_admin {
            println!("First admin access key (shown only this once; store it safely):");
            println!("  ROTARY_ACCESS_KEY={}", admin.access_key);
            println!("  ROTARY_SECRET_KEY={}", admin.secret_key.expose_secret());
        }
        println!("Rotary listening on http://{}", running.addr);
        tracing::info!(addr = %running.addr, "listening");
        let stop = running.shutdown_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        running.wait().await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
}
