//! First start and every start: data directory, master key, store, keyring,
//! first admin key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rotary_core::keyring::audit_chain;
use rotary_core::service::{AccessKeys, AuditLog, RotationService, SecretService};
use rotary_core::{Clock, Keyring, SecretStore};
use rotary_crypto::Key;
use rotary_store::{SqliteOptions, SqliteStore};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::state::AppState;

pub const DB_FILE: &str = "rotary.db";
pub const KEY_FILE: &str = "master.key";
const INITIALIZED: &str = "initialized";

/// The first admin key, returned only when this start created the data directory
/// and generated the key (not when it came from the environment).
pub struct FirstAdmin {
    pub access_key: String,
    pub secret_key: SecretString,
}

pub struct Booted {
    /// Held for the server's lifetime: one server per data directory.
    pub lock: std::fs::File,
    pub state: AppState,
    pub created: bool,
    pub first_admin: Option<FirstAdmin>,
    pub data_dir: PathBuf,
}

fn decode_key(b64: &str) -> anyhow::Result<Key> {
    let raw = Zeroizing::new(STANDARD.decode(b64.trim()).context("master key is not valid base64")?);
    Key::from_slice(&raw).map_err(|_| anyhow::anyhow!("master key must be 32 bytes (base64 of 32 bytes)"))
}

fn load_or_create_master(cfg: &Config, dir: &Path, new_dir: bool) -> anyhow::Result<Key> {
    if let Some(k) = &cfg.master_key {
        return decode_key(k.expose_secret()).context("ROTARY_MASTER_KEY");
    }
    let path = dir.join(KEY_FILE);
    if path.exists() {
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!("{} is readable by others (mode {:o}); run chmod 600 on it", path.display(), mode);
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?,
        );
        return decode_key(&text).with_context(|| format!("in {}", path.display()));
    }
    if !new_dir {
        bail!(
            "the data directory {} has a database but no {} and ROTARY_MASTER_KEY is not set; without the master key the data cannot be decrypted",
            dir.display(),
            KEY_FILE
        );
    }
    let key = Key::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let text = Zeroizing::new(STANDARD.encode(key.expose_bytes()));
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(key)
}

pub async fn boot(cfg: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Booted> {
    let dir = cfg.data_dir.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create data directory {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("failed to set permissions on {}", dir.display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("rotary.lock"))
        .with_context(|| format!("failed to open the lock file in {}", dir.display()))?;
    if lock.try_lock().is_err() {
        bail!("another Rotary server is already using the data directory {}", dir.display());
    }
    let db = dir.join(DB_FILE);
    let master = load_or_create_master(cfg, &dir, !db.exists())?;
    let chain = Arc::new(audit_chain(&master));
    let opts = SqliteOptions { history_limit: cfg.history_limit, ..Default::default() };
    let store: Arc<dyn SecretStore> = Arc::new(
        SqliteStore::open(&db, chain.clone(), opts)
            .await
            .with_context(|| format!("failed to open {}", db.display()))?,
    );
    // The directory is 0700 already; the files are tightened too in case the
    // directory's mode is later loosened by hand.
    for f in [DB_FILE, "rotary.db-wal", "rotary.db-shm"] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("failed to set permissions on {}", p.display()))?;
        }
    }
    let keyring =
        Arc::new(Keyring::load_or_init(&*store, &master, clock.now_ms()).await.map_err(|e| anyhow::anyhow!("{e}"))?);
    drop(master);
    let access = Arc::new(AccessKeys::new(store.clone(), keyring.clone(), clock.clone()));
    // A data directory is new until its first start finished: a first start
    // that failed half-way is completed by the next one.
    let created = store.get_meta(INITIALIZED).await?.is_none();
    let mut first_admin = None;
    if created {
        let (ak, sk, generated) = match (&cfg.admin_access_key, &cfg.admin_secret_key) {
            (Some(a), Some(s)) => (a.clone(), s.clone(), false),
            _ => (rotary_crypto::new_access_key_id(), rotary_crypto::new_secret_key(), true),
        };
        match access.bootstrap_admin(&ak, &sk).await {
            Ok(()) => {}
            // The same key from the environment, written by a start that failed later.
            Err(e) if e.kind == rotary_core::ErrorKind::InvalidStatus && !generated => {}
            Err(e) => bail!("{e}"),
        }
        store
            .append_audit(&rotary_core::audit::AuditDraft {
                timestamp: clock.now_ms(),
                access_key: Some(ak.clone()),
                action: "InitDataDirectory".into(),
                secret_id: None,
                result: "SUCCESS".into(),
                client_address: None,
                request_id: "bootstrap".into(),
            })
            .await?;
        store.put_meta_if_absent(INITIALIZED, b"1").await?;
        if generated {
            first_admin = Some(FirstAdmin { access_key: ak, secret_key: sk });
        }
    }
    let mut secrets = SecretService::new(store.clone(), keyring.clone(), clock.clone());
    secrets.default_recovery_days = cfg.recovery_window_days;
    let secrets = Arc::new(secrets);
    let rotation = Arc::new(RotationService::new(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        secrets.clone(),
        cfg.rotation_config(),
    ));
    let state = AppState {
        secrets,
        rotation,
        wake: Arc::new(tokio::sync::Notify::new()),
        access,
        audit_log: Arc::new(AuditLog::new(store.clone(), chain)),
        store,
        clock,
    };
    Ok(Booted { lock, state, created, first_admin, data_dir: dir })
}
