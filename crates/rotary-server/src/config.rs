//! Server configuration: defaults, then a TOML file, then `ROTARY_*`
//! environment variables. Every option is documented in
//! `rotary.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

/// Options that may also come from the environment as `ROTARY_<NAME>`.
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "listen",
    "log",
    "history_limit",
    "recovery_window_days",
    "public_url",
    "scheduler_interval_ms",
    "rotation_max_attempts",
    "rotation_retry_base_secs",
    "rotation_retry_cap_secs",
    "rotation_timeout_secs",
    "rotation_max_concurrent",
];

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory for the database and the master key file; created if missing.
    pub data_dir: PathBuf,
    /// `host:port` to listen on; port 0 picks a free port.
    pub listen: String,
    /// Log filter (`error`…`trace`, or `tracing` directives); `RUST_LOG` wins.
    pub log: String,
    /// Versions kept per secret beyond those a stage points at.
    pub history_limit: i64,
    /// Default days a secret stays recoverable after a deletion request (1–30).
    pub recovery_window_days: i64,
    /// Base64 of the 32-byte master key, from `ROTARY_MASTER_KEY` only (never
    /// the file: secrets do not belong in config files). When absent, the key
    /// file in the data directory is used.
    #[serde(skip)]
    pub master_key: Option<SecretString>,
    /// First admin key of a new data directory (unattended installs), from
    /// `ROTARY_ADMIN_ACCESS_KEY` / `ROTARY_ADMIN_SECRET_KEY` only. Ignored once
    /// the data directory is initialized.
    #[serde(skip)]
    pub admin_access_key: Option<String>,
    #[serde(skip)]
    pub admin_secret_key: Option<SecretString>,
    /// Base URL rotation functions use to call back (`endpoint`); default
    /// `http://<listen address>`.
    pub public_url: Option<String>,
    /// How often the scheduler looks for due rotations and overdue jobs.
    pub scheduler_interval_ms: u64,
    /// Attempts per rotation, the first included (1–10).
    pub rotation_max_attempts: i64,
    /// First retry delay; doubles per attempt, with ±20 % jitter, up to the cap.
    pub rotation_retry_base_secs: i64,
    pub rotation_retry_cap_secs: i64,
    /// Job timeout when the trigger sets no `timeoutSeconds`.
    pub rotation_timeout_secs: i64,
    /// Rotations run at once by this server (built-in rotators and
    /// functions); due jobs beyond it wait queued for a free slot.
    pub rotation_max_concurrent: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("rotary-data"),
            listen: "127.0.0.1:8420".into(),
            log: "info".into(),
            history_limit: 10,
            recovery_window_days: 7,
            master_key: None,
            admin_access_key: None,
            admin_secret_key: None,
            public_url: None,
            scheduler_interval_ms: 5_000,
            rotation_max_attempts: 3,
            rotation_retry_base_secs: 30,
            rotation_retry_cap_secs: 600,
            rotation_timeout_secs: 300,
            rotation_max_concurrent: 16,
        }
    }
}

impl Config {
    /// Loads defaults ← `file` (if given) ← environment.
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::new();
        if let Some(f) = file {
            if !f.exists() {
                anyhow::bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(Env::prefixed("ROTARY_").only(ENV_KEYS));
        let mut cfg: Config = fig.extract().context("invalid configuration")?;
        // Read as raw strings, outside figment: it would parse `0123…` as a
        // number and quote the value in its error message.
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        cfg.master_key = var("ROTARY_MASTER_KEY").map(SecretString::from);
        cfg.admin_access_key = var("ROTARY_ADMIN_ACCESS_KEY");
        cfg.admin_secret_key = var("ROTARY_ADMIN_SECRET_KEY").map(SecretString::from);
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        check_log_filter(&self.log)?;
        match (&self.admin_access_key, &self.admin_secret_key) {
            (Some(a), Some(s)) => {
                if a.len() < 8 || a.len() > 128 || !a.chars().all(|c| c.is_ascii_alphanumeric()) {
                    anyhow::bail!("ROTARY_ADMIN_ACCESS_KEY must be 8-128 letters and digits");
                }
                if secrecy::ExposeSecret::expose_secret(s).chars().count() < 16 {
                    anyhow::bail!("ROTARY_ADMIN_SECRET_KEY must be at least 16 characters");
                }
            }
            (None, None) => {}
            _ => anyhow::bail!("set both ROTARY_ADMIN_ACCESS_KEY and ROTARY_ADMIN_SECRET_KEY, or neither"),
        }
        if !(0..=1000).contains(&self.history_limit) {
            anyhow::bail!("history_limit must be 0-1000");
        }
        if !(1..=30).contains(&self.recovery_window_days) {
            anyhow::bail!("recovery_window_days must be 1-30");
        }
        if !(1..=10).contains(&self.rotation_max_attempts) {
            anyhow::bail!("rotation_max_attempts must be 1-10");
        }
        if self.rotation_retry_base_secs < 0 || self.rotation_retry_cap_secs < self.rotation_retry_base_secs {
            anyhow::bail!("rotation_retry_base_secs must be >= 0 and <= rotation_retry_cap_secs");
        }
        if !(1..=86_400).contains(&self.rotation_timeout_secs) {
            anyhow::bail!("rotation_timeout_secs must be 1-86400");
        }
        if !(10..=3_600_000).contains(&self.scheduler_interval_ms) {
            anyhow::bail!("scheduler_interval_ms must be 10-3600000");
        }
        if !(1..=1000).contains(&self.rotation_max_concurrent) {
            anyhow::bail!("rotation_max_concurrent must be 1-1000");
        }
        Ok(())
    }

    pub fn rotation_config(&self) -> rotary_core::service::RotationConfig {
        rotary_core::service::RotationConfig {
            max_attempts: self.rotation_max_attempts,
            retry_base_ms: self.rotation_retry_base_secs * 1000,
            retry_cap_ms: self.rotation_retry_cap_secs * 1000,
            default_timeout_ms: self.rotation_timeout_secs * 1000,
        }
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().with_context(|| {
            format!("listen must be host:port with an IP host, e.g. 127.0.0.1:8420 (got {:?})", self.listen)
        })
    }
}

/// A level, or `tracing` directives (`info,rotary_server=debug`). A bare word
/// that is not a level would silently become a target filter that matches
/// nothing and turn logging off, so it is refused.
fn check_log_filter(log: &str) -> anyhow::Result<()> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    for part in log.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit('=').next().unwrap_or(part).to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            anyhow::bail!(
                "log {log:?}: {part:?} is not a level (off, error, warn, info, debug, trace) or target=level"
            );
        }
    }
    Ok(())
}
