//! `rotary`: the one binary. `rotary server` runs the secrets manager; the
//! other commands are a client of its API.

mod cli;

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
    #[command(flatten)]
    global: cli::Global,
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
    /// Save an endpoint and access key as a profile (the secret key is never echoed).
    #[command(
        alias = "config",
        after_help = "Examples:\n  rotary login --endpoint http://127.0.0.1:8420 --access-key AK…   (prompts for the secret key)\n  rotary login --profile prod --endpoint https://rotary.internal --access-key AK… --secret-key-file key.txt"
    )]
    Login {
        #[arg(long, env = "ROTARY_ENDPOINT")]
        endpoint: String,
        #[arg(long, env = "ROTARY_ACCESS_KEY")]
        access_key: String,
        /// File holding the secret key (else ROTARY_SECRET_KEY, else a prompt).
        #[arg(long)]
        secret_key_file: Option<PathBuf>,
    },
    /// Secrets: create, list, show, get, put, delete, restore.
    #[command(subcommand)]
    Secret(cli::SecretCmd),
    /// Rotation settings, jobs and logs.
    #[command(subcommand)]
    Rotation(cli::more::RotationCmd),
    /// Rotation triggers (functions and built-in rotators).
    #[command(subcommand)]
    Trigger(cli::more::TriggerCmd),
    /// Access keys.
    #[command(subcommand)]
    Key(cli::more::KeyCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(cli::more::AuditCmd),
    /// Run a command with secrets as environment variables.
    #[command(
        after_help = "Examples:\n  rotary run --secret app/db -- ./server\n  rotary run --secret app/db --prefix DB_ --watch 30 -- ./worker --queue x\n\nSignals (INT, TERM, HUP, QUIT) go to the command; its exit code is rotary's."
    )]
    Run {
        /// Secret name or id (repeatable).
        #[arg(long = "secret", required = true)]
        secrets: Vec<String>,
        /// Prefix for the variable names (keys are upper-cased, other characters become _).
        #[arg(long, default_value = "")]
        prefix: String,
        /// Name a variable yourself: KEY=NAME (repeatable; overrides the prefix for that key).
        #[arg(long = "name", value_name = "KEY=NAME")]
        names: Vec<String>,
        /// Restart the command when a rotation changes an active value; checks every N seconds.
        #[arg(long, value_name = "SECONDS")]
        watch: Option<u64>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Rotate a secret now; with --wait, follow the job and fail when it fails.
    #[command(after_help = "Examples:\n  rotary rotate app/db --wait")]
    Rotate {
        secret: String,
        #[arg(long)]
        wait: bool,
    },
    /// Generate a random password locally (generate-random-secret's options).
    #[command(
        name = "gen-password",
        after_help = "Examples:\n  rotary gen-password --length 32 --exclude-characters '\"\\\\' --no-space"
    )]
    GenPassword {
        #[arg(long, default_value_t = 16)]
        length: u32,
        #[arg(long, default_value = "")]
        exclude_characters: String,
        #[arg(long)]
        exclude_numbers: bool,
        #[arg(long)]
        exclude_punctuation: bool,
        #[arg(long)]
        exclude_uppercase: bool,
        #[arg(long)]
        exclude_lowercase: bool,
        /// Leave out the space (NCP's default includes it).
        #[arg(long)]
        no_space: bool,
        /// Do not require one character of each included type.
        #[arg(long)]
        no_require_each: bool,
    },
    /// Retry a failed rotation (same as `rotation retry`).
    #[command(after_help = "Examples:\n  rotary retry app/db")]
    Retry { secret: String },
    /// Cancel the open rotation job (same as `rotation cancel`).
    #[command(after_help = "Examples:\n  rotary cancel app/db")]
    Cancel { secret: String },
    /// active ← previous (same as `rotation rollback`).
    #[command(after_help = "Examples:\n  rotary rollback app/db")]
    Rollback { secret: String },
    /// Rotation jobs of a secret (same as `rotation jobs`).
    #[command(after_help = "Examples:\n  rotary jobs app/db")]
    Jobs { secret: String },
    /// Rotation job log (same as `rotation logs`).
    #[command(after_help = "Examples:\n  rotary logs app/db --follow")]
    Logs {
        secret: String,
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        keyword: Option<String>,
    },
    /// Shell completions.
    #[command(after_help = "Examples:\n  rotary completions bash > /etc/bash_completion.d/rotary")]
    Completions { shell: clap_complete::Shell },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server { config } => server(config),
        Command::Login { endpoint, access_key, secret_key_file } => {
            cli::login(&cli.global.profile, endpoint, access_key, secret_key_file)
        }
        Command::Secret(cmd) => client_rt(cli::secret(&cli.global, cmd)),
        Command::Rotate { secret, wait } => client_rt(cli::rotate(&cli.global, &secret, wait)),
        Command::Rotation(cmd) => client_rt(cli::more::rotation(&cli.global, cmd)),
        Command::Trigger(cmd) => client_rt(cli::more::trigger(&cli.global, cmd)),
        Command::Key(cmd) => client_rt(cli::more::key(&cli.global, cmd)),
        Command::Audit(cmd) => client_rt(cli::more::audit(&cli.global, cmd)),
        Command::Run { secrets, prefix, names, watch, command } => {
            match client_rt_value(cli::more::run(&cli.global, &secrets, &prefix, &names, watch, &command)) {
                Ok(code) => return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => Err(e),
            }
        }
        Command::GenPassword {
            length,
            exclude_characters,
            exclude_numbers,
            exclude_punctuation,
            exclude_uppercase,
            exclude_lowercase,
            no_space,
            no_require_each,
        } => {
            let policy = rotary_core::password::PasswordPolicy {
                length,
                exclude_characters,
                exclude_numbers,
                exclude_punctuation,
                exclude_uppercase,
                exclude_lowercase,
                include_space: !no_space,
                require_each_included_type: !no_require_each,
            };
            policy.generate().map(|p| println!("{}", p.expose_secret())).map_err(|e| anyhow::anyhow!("{e}"))
        }
        Command::Retry { secret } => {
            client_rt(cli::more::rotation(&cli.global, cli::more::RotationCmd::Retry { secret }))
        }
        Command::Cancel { secret } => {
            client_rt(cli::more::rotation(&cli.global, cli::more::RotationCmd::Cancel { secret }))
        }
        Command::Rollback { secret } => {
            client_rt(cli::more::rotation(&cli.global, cli::more::RotationCmd::Rollback { secret }))
        }
        Command::Jobs { secret } => {
            client_rt(cli::more::rotation(&cli.global, cli::more::RotationCmd::Jobs { secret }))
        }
        Command::Logs { secret, follow, keyword } => {
            client_rt(cli::more::rotation(&cli.global, cli::more::RotationCmd::Logs { secret, follow, keyword }))
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "rotary",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain, never a secret (server messages hold none).
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}

fn client_rt(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    client_rt_value(fut)
}

fn client_rt_value<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(fut)
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command a user can run has `--help` with examples.
    #[test]
    fn every_command_has_examples() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            let subs: Vec<_> = cmd.get_subcommands().filter(|s| s.get_name() != "help").collect();
            if subs.is_empty() {
                if !cmd.get_after_help().is_some_and(|h| h.to_string().contains("Examples:")) {
                    missing.push(path);
                }
            } else {
                for s in subs {
                    walk(s, &path, missing);
                }
            }
        }
        let mut missing = vec![];
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "commands without examples: {missing:?}");
    }
}
