//! Rotation: triggers, schedules, jobs and the action (job) API.
//!
//! A job moves `QUEUED → DISPATCHED → RUNNING → SUCCEEDED | FAILED |
//! TIMED_OUT | CANCELLED`. At most one job per secret is open (the store's
//! unique index). The engine never decides what a password is: the rotation
//! function (or, later, a built-in rotator) does, through the action API; the
//! engine keeps every value it generated for a job, sealed, so that nothing a
//! function may already have applied is ever lost.

use std::sync::Arc;

use rand::Rng;
use rand::rngs::OsRng;
use rotary_crypto::{new_secret_id, random_alnum};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::secrets::{Chain, SecretService};
use super::{CAS_RETRIES, Caller, cas_pause, contention};
use crate::clock::Clock;
use crate::domain::{SecretStatus, SecretValue};
use crate::error::CoreError;
use crate::keyring::Keyring;
use crate::password::PasswordPolicy;
use crate::policy::Permission;
use crate::store::{Batch, JobRow, JobStep, JobValue, LogFilter, SecretRow, SecretStore, StoreError, TriggerRow};

pub const DAY_MS: i64 = 86_400_000;
pub const TRIGGER_KINDS: &[&str] = &["exec", "http", "postgres", "mysql"];

/// A caller for the server's own (built-in) rotators: full rights, audited
/// under the access key `rotary:builtin` with the job id as request id.
pub fn system_caller(job_id: &str, now: i64) -> Caller {
    let ctx = super::RequestCtx::new(format!("job:{job_id}"), None, now);
    ctx.set_access_key("rotary:builtin");
    Caller { policy: crate::policy::Policy { role: crate::policy::Role::Admin, pattern: None }, ctx }
}

#[derive(Debug, Clone)]
pub struct RotationConfig {
    /// Attempts per rotation (the first plus retries).
    pub max_attempts: i64,
    pub retry_base_ms: i64,
    pub retry_cap_ms: i64,
    /// Job timeout when the trigger sets none.
    pub default_timeout_ms: i64,
}

impl Default for RotationConfig {
    fn default() -> Self {
        Self { max_attempts: 3, retry_base_ms: 30_000, retry_cap_ms: 600_000, default_timeout_ms: 300_000 }
    }
}

/// A job handed to a runner: the token exists only here and in the runner.
pub struct Dispatch {
    pub job: JobRow,
    pub token: SecretString,
    pub trigger: TriggerRow,
    pub params: Map<String, Value>,
    pub timeout_ms: i64,
}

/// A job as the logs API shows it.
#[derive(Debug)]
pub struct JobView {
    pub job: JobRow,
    pub steps: Vec<JobStep>,
}

pub struct RotationService {
    store: Arc<dyn SecretStore>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    secrets: Arc<SecretService>,
    pub cfg: RotationConfig,
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn step(job: &JobRow, now: i64, step: &str, result: &str, message: impl Into<String>) -> JobStep {
    JobStep { job_id: job.id.clone(), ts: now, step: step.into(), result: result.into(), message: message.into() }
}

fn check_period(days: i64) -> Result<i64, CoreError> {
    if !(1..=730).contains(&days) {
        return Err(CoreError::invalid("rotationPeriod must be 1-730 days"));
    }
    Ok(days)
}

fn timeout_of(trigger: &TriggerRow, default_ms: i64) -> i64 {
    serde_json::from_str::<Value>(&trigger.config)
        .ok()
        .and_then(|c| c.get("timeoutSeconds").and_then(Value::as_i64))
        .map(|s| s * 1000)
        .unwrap_or(default_ms)
}

/// Validates a trigger's kind and config; returns the normalized config.
pub fn validate_trigger(kind: &str, config: &Value) -> Result<Value, CoreError> {
    let Value::Object(c) = config else {
        return Err(CoreError::invalid("config must be a JSON object"));
    };
    if c.get("timeoutSeconds").is_some_and(|t| !t.as_i64().is_some_and(|t| (1..=3600).contains(&t))) {
        return Err(CoreError::invalid("config.timeoutSeconds must be 1-3600"));
    }
    match kind {
        "exec" => {
            let cmd = c.get("command").and_then(Value::as_array).ok_or_else(|| {
                CoreError::invalid("config.command must be an array of strings (program and arguments)")
            })?;
            if cmd.is_empty() || !cmd.iter().all(|a| a.as_str().is_some_and(|s| !s.contains('\0'))) {
                return Err(CoreError::invalid("config.command must be a non-empty array of strings"));
            }
            if cmd[0].as_str().is_some_and(str::is_empty) {
                return Err(CoreError::invalid("config.command[0] (the program) must not be empty"));
            }
            only_keys(c, &["command", "workingDir", "timeoutSeconds"])?;
            if c.get("workingDir").is_some_and(|w| !w.is_string()) {
                return Err(CoreError::invalid("config.workingDir must be a string"));
            }
        }
        "http" => {
            let url = c.get("url").and_then(Value::as_str).unwrap_or_default();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CoreError::invalid("config.url must be an http:// or https:// URL"));
            }
            let authority = url.split("://").nth(1).unwrap_or_default().split('/').next().unwrap_or_default();
            if authority.contains('@') {
                return Err(CoreError::invalid(
                    "config.url must not hold credentials (user:password@); put them in defaultParams, which are sealed",
                ));
            }
            only_keys(c, &["url", "timeoutSeconds"])?;
        }
        "postgres" | "mysql" => {
            only_keys(
                c,
                &[
                    "mode",
                    "adminSecretId",
                    "adminKeyMap",
                    "strategy",
                    "sslmode",
                    "caFile",
                    "keyMap",
                    "passwordPolicy",
                    "timeoutSeconds",
                ],
            )?;
            let s = |k: &str| {
                c.get(k)
                    .map(|v| v.as_str().ok_or_else(|| CoreError::invalid(format!("config.{k} must be a string"))))
                    .transpose()
            };
            match s("mode")?.unwrap_or("self") {
                "self" => {}
                "admin" => {
                    if s("adminSecretId")?.is_none() {
                        return Err(CoreError::invalid("config.adminSecretId is required in admin mode"));
                    }
                }
                m => return Err(CoreError::invalid(format!("config.mode {m:?}: expected self or admin"))),
            }
            match s("strategy")?.unwrap_or("single") {
                "single" => {}
                "alternating" if s("mode")? == Some("admin") => {}
                "alternating" => {
                    return Err(CoreError::invalid(
                        "config.strategy alternating needs mode admin (the inactive account is changed by the admin credential)",
                    ));
                }
                m => return Err(CoreError::invalid(format!("config.strategy {m:?}: expected single or alternating"))),
            }
            match (kind, s("sslmode")?.unwrap_or("disable")) {
                (_, "disable") | ("postgres", "prefer" | "require") => {}
                ("postgres", "verify-full") => {
                    if s("caFile")?.is_none() {
                        return Err(CoreError::invalid(
                            "config.sslmode verify-full needs caFile (a PEM file on the server)",
                        ));
                    }
                }
                ("mysql", m) => {
                    return Err(CoreError::invalid(format!(
                        "config.sslmode {m:?}: TLS is not supported for mysql yet"
                    )));
                }
                (_, m) => {
                    return Err(CoreError::invalid(format!(
                        "config.sslmode {m:?}: expected disable, prefer, require or verify-full"
                    )));
                }
            }
            if c.get("caFile").is_some() && s("sslmode")? != Some("verify-full") {
                return Err(CoreError::invalid("config.caFile is only used with sslmode verify-full"));
            }
            for field in ["keyMap", "adminKeyMap"] {
                let fields = ["host", "port", "database", "username", "password", "userHost", "alternateUsername"];
                if let Some(k) = c
                    .get(field)
                    .and_then(Value::as_object)
                    .and_then(|m| m.keys().find(|k| !fields.contains(&k.as_str())))
                {
                    return Err(CoreError::invalid(format!(
                        "config.{field} has an unknown field {k:?} (allowed: {})",
                        fields.join(", ")
                    )));
                }
            }
            if let Some(k) = c.get("keyMap") {
                let ok = k.as_object().is_some_and(|m| m.values().all(Value::is_string));
                if !ok {
                    return Err(CoreError::invalid(
                        "config.keyMap must map field names (host, port, database, username, password, userHost) to secret keys",
                    ));
                }
            }
            if let Some(p) = c.get("passwordPolicy") {
                const FIELDS: &[&str] = &[
                    "length",
                    "excludeCharacters",
                    "excludeNumbers",
                    "excludePunctuation",
                    "excludeUppercase",
                    "excludeLowercase",
                    "includeSpace",
                    "requireEachIncludedType",
                ];
                if let Some(k) = p.as_object().and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str()))) {
                    return Err(CoreError::invalid(format!("config.passwordPolicy has an unknown field {k:?}")));
                }
                let p: PasswordPolicy = serde_json::from_value(p.clone())
                    .map_err(|_| CoreError::invalid("config.passwordPolicy has an unknown field or a wrong type"))?;
                p.validate()?;
            }
        }
        other => {
            return Err(CoreError::invalid(format!(
                "unknown trigger type {other:?}: expected one of {}",
                TRIGGER_KINDS.join(", ")
            )));
        }
    }
    Ok(config.clone())
}

impl RotationService {
    pub fn new(
        store: Arc<dyn SecretStore>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        secrets: Arc<SecretService>,
        cfg: RotationConfig,
    ) -> Self {
        Self { store, keyring, clock, secrets, cfg }
    }

    // ---------------------------------------------------------------- triggers

    /// Registers a rotator. Needs an unscoped admin: an `exec` trigger runs a
    /// command on the server host.
    pub async fn create_trigger(
        &self,
        caller: &Caller,
        name: &str,
        kind: &str,
        config: &Value,
        default_params: Map<String, Value>,
    ) -> Result<TriggerRow, CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        crate::domain::SecretName::parse(name)
            .map_err(|e| CoreError::invalid(e.message.replace("secretName", "name")))?;
        let config = validate_trigger(kind, config)?;
        if let Some(admin) = config.get("adminSecretId").and_then(Value::as_str) {
            self.secrets.load(caller, admin, Permission::Manage).await.map_err(|_| {
                CoreError::invalid(format!("config.adminSecretId {admin:?} is not a secret this key can manage"))
            })?;
        }
        if let Some(k) = default_params.keys().find(|k| ["secretId", "jobToken", "endpoint"].contains(&k.as_str())) {
            return Err(CoreError::invalid(format!(
                "defaultParams may not set {k:?}: the server sets it for each job"
            )));
        }
        let now = self.clock.now_ms();
        let id = format!("trg-{}", new_secret_id());
        let params = serde_json::to_vec(&default_params).map_err(|e| CoreError::internal("params", e))?;
        let config = config.to_string();
        let row = TriggerRow {
            sealed_params: self.keyring.seal_trigger_params(&id, kind, &config, &params)?,
            id,
            name: name.to_owned(),
            kind: kind.to_owned(),
            config,
            created_at: now,
            updated_at: now,
        };
        let audit = caller.ctx.draft("SUCCESS", now);
        self.store.insert_trigger(&row, &audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => CoreError::status(format!("a trigger named {name:?} already exists")),
            other => other.into(),
        })?;
        caller.ctx.mark_audited();
        Ok(row)
    }

    /// Deletes a trigger that no secret uses (unlink it from them first).
    pub async fn delete_trigger(&self, caller: &Caller, id: &str) -> Result<(), CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        let audit = caller.ctx.draft("SUCCESS", self.clock.now_ms());
        match self.store.delete_trigger(id, &audit).await {
            Ok(true) => {
                caller.ctx.mark_audited();
                Ok(())
            }
            Ok(false) => Err(CoreError::not_found(format!("no trigger with id {id:?}"))),
            Err(StoreError::Conflict(why)) => Err(CoreError::status(format!("{why}; unlink them first"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Triggers with the ids of the secrets linked to each, and the names
    /// (not values) of their default parameters.
    pub async fn list_triggers(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(TriggerRow, Vec<String>, Vec<String>)>, CoreError> {
        caller.policy.check(Permission::ReadMetadata, None)?;
        let mut out = vec![];
        for t in self.store.list_triggers().await? {
            let secrets = self.store.trigger_secrets(&t.id).await?;
            let keys = self.trigger_params(&t)?.keys().cloned().collect();
            out.push((t, secrets, keys));
        }
        Ok(out)
    }

    fn trigger_params(&self, t: &TriggerRow) -> Result<Map<String, Value>, CoreError> {
        let raw = self.keyring.open_trigger_params(&t.id, &t.kind, &t.config, &t.sealed_params)?;
        serde_json::from_slice(&raw).map_err(|e| CoreError::internal("trigger parameters are corrupt", e))
    }

    pub async fn trigger(&self, id: &str) -> Result<TriggerRow, CoreError> {
        self.store.get_trigger(id).await?.ok_or_else(|| CoreError::not_found(format!("no trigger with id {id:?}")))
    }

    // ------------------------------------------------------- rotation settings

    /// Checks that `value` may be managed by the trigger: for built-in
    /// rotators, the account must be found in the value; in admin mode the
    /// caller must be allowed to manage the admin secret (else a key scoped to
    /// `app/*` could point the admin credential at any account), the account
    /// must be on the admin secret's own server and not be its own account;
    /// and no other secret may already rotate the account (two secrets
    /// rotating one account would lock each other out).
    pub async fn check_builtin_link(
        &self,
        caller: &Caller,
        trigger_id: &str,
        value: &SecretValue,
        secret_id: Option<&str>,
    ) -> Result<(), CoreError> {
        let trigger = self.trigger(trigger_id).await?;
        if trigger.kind != "postgres" && trigger.kind != "mysql" {
            return Ok(());
        }
        let config: Value = serde_json::from_str(&trigger.config).unwrap_or(Value::Null);
        let Some(accounts) = db_accounts(&trigger.kind, &config, value, "keyMap") else {
            return Err(CoreError::invalid(format!(
                "the secret has no host or username key for a {} rotator (or set keyMap in the trigger)",
                trigger.kind
            )));
        };
        if config.get("mode").and_then(Value::as_str) == Some("admin") {
            let admin_id = config.get("adminSecretId").and_then(Value::as_str).unwrap_or_default();
            if Some(admin_id) == secret_id {
                return Err(CoreError::invalid("a secret cannot be its own admin credential; use mode self for it"));
            }
            let admin_row =
                self.secrets.load(caller, admin_id, Permission::Manage).await.map_err(|e| match e.kind {
                    crate::ErrorKind::NotFound | crate::ErrorKind::Forbidden => CoreError::forbidden(
                        "this trigger changes passwords with an admin secret that this access key may not manage",
                    ),
                    _ => e,
                })?;
            let admin = self
                .secrets
                .decrypt_chain(&admin_row)
                .await?
                .active
                .map(|(_, v)| v)
                .ok_or_else(|| CoreError::status("the admin secret has no active value"))?;
            let admin_accounts = db_accounts(&trigger.kind, &config, &admin, "adminKeyMap").unwrap_or_default();
            let (server, admin_server) =
                (accounts[0].rsplitn(3, '|').last(), admin_accounts.first().and_then(|a| a.rsplitn(3, '|').last()));
            if server != admin_server {
                return Err(CoreError::invalid(
                    "in admin mode the secret's host and port must be the admin secret's (the admin credential is only sent to its own server)",
                ));
            }
            if accounts.iter().any(|a| admin_accounts.contains(a)) {
                return Err(CoreError::invalid(
                    "the managed account is the admin credential's own account; use mode self for it",
                ));
            }
        }
        for t in self.store.list_triggers().await? {
            if t.kind != trigger.kind {
                continue;
            }
            let tconfig: Value = serde_json::from_str(&t.config).unwrap_or(Value::Null);
            for other in self.store.trigger_secrets(&t.id).await? {
                if Some(other.as_str()) == secret_id {
                    continue;
                }
                let Some(row) = self.store.get_secret(&other).await? else { continue };
                let Some((_, v)) = self.secrets.decrypt_chain(&row).await?.active else { continue };
                let theirs = db_accounts(&t.kind, &tconfig, &v, "keyMap").unwrap_or_default();
                if accounts.iter().any(|a| theirs.contains(a)) {
                    return Err(CoreError::status(format!(
                        "secret {other:?} already rotates this database account; two secrets rotating one account would lock each other out"
                    )));
                }
            }
        }
        Ok(())
    }

    /// A compare-and-swap change of a secret's settings (no new value), audited.
    async fn update_secret<F>(&self, caller: &Caller, id: &str, mut f: F) -> Result<SecretRow, CoreError>
    where
        F: FnMut(&mut SecretRow, i64) -> Result<(), CoreError> + Send,
    {
        self.secrets.update(caller, id, Permission::Manage, |row, now| f(row, now).map(|()| None)).await
    }

    /// Turns automatic rotation on: the first rotation is planned at now + period.
    pub async fn enable_auto(
        &self,
        caller: &Caller,
        id: &str,
        period: i64,
        trigger_id: &str,
    ) -> Result<SecretRow, CoreError> {
        let period = check_period(period)?;
        let row = self.secrets.load(caller, id, Permission::Manage).await?;
        if let Some((_, active)) = self.secrets.decrypt_chain(&row).await?.active {
            self.check_builtin_link(caller, trigger_id, &active, Some(id)).await?;
        }
        self.update_secret(caller, id, |row, now| {
            if row.rotation_targets.is_empty() {
                return Err(CoreError::invalid("the secret has no rotation targets; set rotationTargets first"));
            }
            row.auto_rotation = true;
            row.rotation_period_days = Some(period);
            row.trigger_id = Some(trigger_id.to_owned());
            row.schedule_base_at = Some(now);
            row.next_rotation_at = Some(now + period * DAY_MS);
            Ok(())
        })
        .await
    }

    pub async fn disable_auto(&self, caller: &Caller, id: &str) -> Result<SecretRow, CoreError> {
        self.update_secret(caller, id, |row, _| {
            row.auto_rotation = false;
            row.next_rotation_at = None;
            Ok(())
        })
        .await
    }

    /// Re-plans from the last rotation (or from when rotation was enabled);
    /// if that time is already past, from now. Never starts a rotation.
    pub async fn set_period(&self, caller: &Caller, id: &str, period: i64) -> Result<SecretRow, CoreError> {
        let period = check_period(period)?;
        self.update_secret(caller, id, |row, now| {
            row.rotation_period_days = Some(period);
            if row.auto_rotation {
                let base = row.schedule_base_at.unwrap_or(now);
                let mut next = base + period * DAY_MS;
                if next <= now {
                    next = now + period * DAY_MS;
                }
                row.next_rotation_at = Some(next);
            }
            Ok(())
        })
        .await
    }

    pub async fn set_trigger(
        &self,
        caller: &Caller,
        id: &str,
        trigger_id: Option<&str>,
    ) -> Result<SecretRow, CoreError> {
        if let Some(t) = trigger_id {
            let row = self.secrets.load(caller, id, Permission::Manage).await?;
            let chain = self.secrets.decrypt_chain(&row).await?;
            if let Some((_, active)) = chain.active {
                self.check_builtin_link(caller, t, &active, Some(id)).await?;
            } else {
                self.trigger(t).await?;
            }
        }
        self.update_secret(caller, id, |row, _| {
            if trigger_id.is_none() && row.auto_rotation {
                return Err(CoreError::status("automatic rotation is on; disable it before removing the trigger"));
            }
            row.trigger_id = trigger_id.map(str::to_owned);
            Ok(())
        })
        .await
    }

    // -------------------------------------------------------------- jobs

    fn new_job(&self, secret: &SecretRow, kind: &str, attempt: i64, run_at: i64, now: i64) -> JobRow {
        JobRow {
            id: format!("job-{}", new_secret_id()),
            secret_id: secret.id.clone(),
            token_hash: None,
            status: "QUEUED".into(),
            kind: kind.into(),
            attempt,
            trigger_id: secret.trigger_id.clone(),
            run_at,
            started_at: None,
            deadline_at: None,
            finished_at: None,
            error: None,
            pending_stored: false,
            revision: 1,
            created_at: now,
        }
    }

    async fn open_conflict(&self, secret_id: &str) -> CoreError {
        match self.store.open_job(secret_id).await {
            Ok(Some(j)) => {
                CoreError::status(format!("a rotation job is already open for this secret ({}, {})", j.id, j.status))
            }
            _ => CoreError::status("a rotation job is already open for this secret"),
        }
    }

    fn check_rotatable(row: &SecretRow) -> Result<(), CoreError> {
        if row.status != SecretStatus::Enable.as_str() && row.status != SecretStatus::Rotating.as_str() {
            return Err(CoreError::status(format!("secret is {}; only an enabled secret can be rotated", row.status)));
        }
        if row.trigger_id.is_none() {
            return Err(CoreError::status(
                "the secret has no trigger; link one with PUT /api/v1/secrets/{id}/triggers",
            ));
        }
        if row.rotation_targets.is_empty() {
            return Err(CoreError::status("the secret has no rotation targets"));
        }
        Ok(())
    }

    /// Rotate now: one queued job, or `INVALID_STATUS` if one is open.
    pub async fn rotate_now(&self, caller: &Caller, id: &str, kind: &str) -> Result<JobRow, CoreError> {
        let row = self.secrets.load(caller, id, Permission::Manage).await?;
        Self::check_rotatable(&row)?;
        let now = self.clock.now_ms();
        let job = self.new_job(&row, kind, 1, now, now);
        let steps = [step(&job, now, "queued", "OK", format!("{} rotation requested", kind.to_lowercase()))];
        let audit = caller.ctx.draft("SUCCESS", now);
        match self
            .store
            .commit(Batch { insert_job: Some(&job), steps: &steps, audit: Some(&audit), ..Default::default() })
            .await
        {
            Ok(()) => {
                caller.ctx.mark_audited();
                Ok(job)
            }
            Err(StoreError::Conflict(_)) => Err(self.open_conflict(id).await),
            Err(e) => Err(e.into()),
        }
    }

    /// Retry after a failed, timed-out or cancelled rotation.
    pub async fn retry(&self, caller: &Caller, id: &str) -> Result<JobRow, CoreError> {
        let row = self.secrets.load(caller, id, Permission::Manage).await?;
        Self::check_rotatable(&row)?;
        match self.store.last_job(id).await? {
            Some(j) if j.is_open() => return Err(self.open_conflict(id).await),
            Some(j) if j.status == "SUCCEEDED" => {
                return Err(CoreError::status("the last rotation succeeded; use POST /rotation to rotate again"));
            }
            None => return Err(CoreError::status("the secret has never been rotated; use POST /rotation")),
            _ => {}
        }
        drop(row);
        self.rotate_now(caller, id, "RETRY").await
    }

    /// Cancels the open job. Pending is kept: the function may already have
    /// applied it, and the next attempt tries it first.
    pub async fn cancel(&self, caller: &Caller, id: &str) -> Result<JobRow, CoreError> {
        self.secrets.load(caller, id, Permission::Manage).await?;
        let job = self.store.open_job(id).await?.ok_or_else(|| CoreError::status("no rotation job is open"))?;
        let job_id = job.id.clone();
        let now = self.clock.now_ms();
        let audit = caller.ctx.draft("SUCCESS", now);
        self.close_job(job, "CANCELLED", "cancelled by request", Some(&audit), false).await?;
        caller.ctx.mark_audited();
        self.store.get_job(&job_id).await?.ok_or_else(|| CoreError::not_found("the job no longer exists"))
    }

    /// active ← previous (and previous ← the active it replaces: nothing is lost).
    pub async fn rollback(&self, caller: &Caller, id: &str) -> Result<SecretRow, CoreError> {
        if self.store.open_job(id).await?.is_some() {
            return Err(self.open_conflict(id).await);
        }
        let row = self.secrets.load(caller, id, Permission::Manage).await?;
        if let Some(t) = &row.trigger_id
            && let Some(t) = self.store.get_trigger(t).await?
            && (t.kind == "postgres" || t.kind == "mysql")
        {
            // The database keeps the new password: making the old one active
            // would lock applications out. A rotation is the way back.
            return Err(CoreError::status(
                "rollback only changes stored values; with a built-in rotator the database keeps the new password, so rotate instead",
            ));
        }
        self.update_secret(caller, id, |row, _| {
            if row.status != SecretStatus::Enable.as_str() {
                return Err(CoreError::status(format!(
                    "secret is {}; only an enabled secret can be rolled back",
                    row.status
                )));
            }
            let Some(prev) = row.previous_version else {
                return Err(CoreError::status("the secret has no previous value to roll back to"));
            };
            row.previous_version = row.active_version;
            row.active_version = Some(prev);
            row.rotation_phase = Some("ROLLED_BACK".into());
            Ok(())
        })
        .await
    }

    pub async fn logs(&self, caller: &Caller, id: &str, filter: &LogFilter) -> Result<(Vec<JobView>, i64), CoreError> {
        self.secrets.load(caller, id, Permission::ReadMetadata).await?;
        let (jobs, total) = self.store.list_jobs(id, filter).await?;
        let mut out = vec![];
        for job in jobs {
            let steps = self.store.job_steps(&job.id).await?;
            out.push(JobView { job, steps });
        }
        Ok((out, total))
    }

    /// The values the server generated for a job, decrypted. Admins only;
    /// the request is audited like any value read.
    pub async fn job_generated_values(
        &self,
        caller: &Caller,
        id: &str,
        job_id: &str,
    ) -> Result<Vec<(JobValue, SecretString)>, CoreError> {
        caller.policy.check(Permission::Administer, None)?;
        let row = self.secrets.load(caller, id, Permission::ReadValue).await?;
        let job = self
            .store
            .get_job(job_id)
            .await?
            .filter(|j| j.secret_id == id)
            .ok_or_else(|| CoreError::not_found(format!("no job {job_id:?} for this secret")))?;
        let dek = self.keyring.open_data_key(&row.id, &row.wrapped_dek)?;
        let mut out = vec![];
        for v in self.store.job_values(&job.id).await? {
            let pt = rotary_crypto::open(&dek, &job_value_ctx(&job.id, v.seq), &v.ciphertext)?;
            let s = String::from_utf8(pt.to_vec()).map_err(|e| CoreError::internal("job value is not UTF-8", e))?;
            out.push((v, SecretString::from(s)));
        }
        Ok(out)
    }

    // ------------------------------------------------------------ scheduler

    /// At start-up of a single-node store: every job left dispatched or
    /// running was being run by this server's previous life, which is gone —
    /// fail it now (and retry) instead of waiting for its deadline. Pending
    /// and generated values are kept as always.
    pub async fn recover_after_restart(&self) -> Result<usize, CoreError> {
        let jobs = self.store.jobs_overdue(i64::MAX, 10_000).await?;
        let n = jobs.len();
        for job in jobs {
            self.close_job(job, "FAILED", "the server restarted while the job ran", None, true).await?;
        }
        Ok(n)
    }

    /// One scheduler pass: time out overdue jobs, queue due scheduled
    /// rotations, and dispatch at most `max_dispatch` queued jobs whose time
    /// has come (returned for the caller to run; the others stay queued for a
    /// later pass). Safe to run concurrently and on several nodes: every
    /// change is a compare-and-swap or guarded by the one-open-job index.
    pub async fn tick(&self, max_dispatch: usize) -> Result<Vec<Dispatch>, CoreError> {
        let now = self.clock.now_ms();
        for job in self.store.jobs_overdue(now, 100).await? {
            let secs = job.deadline_at.zip(job.started_at).map(|(d, s)| (d - s) / 1000).unwrap_or_default();
            let reason = format!("no complete or fail within {secs} s");
            if let Err(e) = self.close_job(job, "TIMED_OUT", &reason, None, true).await {
                tracing::warn!(error = %e, "timing out a job failed");
            }
        }
        for secret in self.store.secrets_due(now, 100).await? {
            if let Err(e) = self.queue_scheduled(secret, now).await {
                tracing::warn!(error = %e, "queueing a scheduled rotation failed");
            }
        }
        let mut out = vec![];
        if max_dispatch == 0 {
            return Ok(out);
        }
        let limit = i64::try_from(max_dispatch.min(50)).unwrap_or(50);
        for job in self.store.jobs_to_dispatch(now, limit).await? {
            match self.dispatch(job, now).await {
                Ok(Some(d)) => out.push(d),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "dispatching a job failed"),
            }
        }
        Ok(out)
    }

    async fn queue_scheduled(&self, mut secret: SecretRow, now: i64) -> Result<(), CoreError> {
        let expected = secret.revision;
        let slot = secret.next_rotation_at.unwrap_or(now);
        let period = secret.rotation_period_days.unwrap_or(90);
        // Advance the plan now, in the same transaction as the job: a restart
        // cannot queue this slot twice, and if every attempt fails the next
        // scheduled rotation still happens.
        let mut next = slot + period * DAY_MS;
        if next <= now {
            next = now + period * DAY_MS;
        }
        secret.next_rotation_at = Some(next);
        secret.revision += 1;
        let job = self.new_job(&secret, "SCHEDULED", 1, now, now);
        let steps = [step(&job, now, "queued", "OK", "scheduled rotation is due")];
        let audit = system_audit("ScheduleRotation", &secret.id, now, &job.id);
        match self
            .store
            .commit(Batch {
                secret: Some((&secret, expected)),
                insert_job: Some(&job),
                steps: &steps,
                audit: Some(&audit),
                ..Default::default()
            })
            .await
        {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn dispatch(&self, mut job: JobRow, now: i64) -> Result<Option<Dispatch>, CoreError> {
        let expected_job = job.revision;
        let Some(mut secret) = self.store.get_secret(&job.secret_id).await? else {
            self.close_job(job, "FAILED", "the secret no longer exists", None, false).await?;
            return Ok(None);
        };
        let trigger = match &job.trigger_id {
            Some(t) => self.store.get_trigger(t).await?,
            None => None,
        };
        let Some(trigger) = trigger else {
            self.close_job(job, "FAILED", "the secret's trigger no longer exists", None, false).await?;
            return Ok(None);
        };
        if secret.status != SecretStatus::Enable.as_str() && secret.status != SecretStatus::Rotating.as_str() {
            let why = format!("secret is {}", secret.status);
            self.close_job(job, "CANCELLED", &why, None, false).await?;
            return Ok(None);
        }
        let params = self.trigger_params(&trigger)?;
        let timeout_ms = timeout_of(&trigger, self.cfg.default_timeout_ms);
        let token = random_alnum(40);
        job.token_hash = Some(token_hash(&token));
        job.status = "DISPATCHED".into();
        job.started_at = Some(now);
        job.deadline_at = Some(now + timeout_ms);
        job.revision += 1;
        let expected_secret = secret.revision;
        secret.status = SecretStatus::Rotating.as_str().into();
        secret.rotation_phase = Some("IN_PROGRESS".into());
        secret.revision += 1;
        secret.updated_at = now;
        let steps = [step(
            &job,
            now,
            "dispatch",
            "OK",
            format!(
                "attempt {} via trigger {:?} ({}), timeout {} s",
                job.attempt,
                trigger.name,
                trigger.kind,
                timeout_ms / 1000
            ),
        )];
        match self
            .store
            .commit(Batch {
                secret: Some((&secret, expected_secret)),
                update_job: Some((&job, expected_job)),
                steps: &steps,
                ..Default::default()
            })
            .await
        {
            Ok(()) => Ok(Some(Dispatch { job, token: token.into(), trigger, params, timeout_ms })),
            Err(StoreError::Conflict(_)) => Ok(None), // another pass or node took it
            Err(e) => Err(e.into()),
        }
    }

    /// Closes an open job (failed, timed out, cancelled) and restores the
    /// secret's status. A value this job generated that never became pending
    /// is kept as pending when the secret has one rotation target, so the
    /// next attempt tries it before anything else (the function may have
    /// applied it and died before saying so). Schedules a retry with backoff
    /// when `retry` and attempts remain.
    async fn close_job(
        &self,
        job: JobRow,
        status: &str,
        reason: &str,
        audit: Option<&crate::audit::AuditDraft>,
        retry: bool,
    ) -> Result<(), CoreError> {
        for attempt in 0..CAS_RETRIES {
            let Some(mut job) = self.store.get_job(&job.id).await? else { return Ok(()) };
            if !job.is_open() {
                return Ok(());
            }
            let now = self.clock.now_ms();
            let expected_job = job.revision;
            let mut steps = vec![step(&job, now, status.to_ascii_lowercase().as_str(), "FAILED", reason)];
            job.status = status.into();
            job.finished_at = Some(now);
            job.error = Some(reason.into());
            job.revision += 1;
            let secret = self.store.get_secret(&job.secret_id).await?;
            let mut versions = vec![];
            let mut retry_job = None;
            let secret_update = match secret {
                Some(mut s) => {
                    let expected = s.revision;
                    if s.status == SecretStatus::Rotating.as_str() {
                        s.status = SecretStatus::Enable.as_str().into();
                    }
                    s.rotation_phase = Some(if status == "CANCELLED" { "CANCELLED" } else { "FAILED" }.into());
                    if !job.pending_stored
                        && s.pending_version.is_none()
                        && let Some(v) = self.recover_generated(&job, &mut s, now, &mut steps).await?
                    {
                        versions.push(v);
                    }
                    if retry && job.attempt < self.cfg.max_attempts && s.status == SecretStatus::Enable.as_str() {
                        let delay = self.backoff_ms(job.attempt);
                        let r = self.new_job(&s, "RETRY", job.attempt + 1, now + delay, now);
                        steps.push(step(
                            &job,
                            now,
                            "retry",
                            "INFO",
                            format!(
                                "attempt {} of {} queued in {} s ({})",
                                job.attempt + 1,
                                self.cfg.max_attempts,
                                delay / 1000,
                                r.id
                            ),
                        ));
                        retry_job = Some(r);
                    } else if retry {
                        steps.push(step(
                            &job,
                            now,
                            "give-up",
                            "FAILED",
                            format!(
                                "rotation failed after {} attempt(s); the next scheduled rotation still happens",
                                job.attempt
                            ),
                        ));
                    }
                    s.revision += 1;
                    s.updated_at = now;
                    Some((s, expected))
                }
                None => None,
            };
            let batch = Batch {
                secret: secret_update.as_ref().map(|(s, e)| (s, *e)),
                versions: &versions,
                update_job: Some((&job, expected_job)),
                insert_job: retry_job.as_ref(),
                steps: &steps,
                audit,
                ..Default::default()
            };
            match self.store.commit(batch).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => cas_pause(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(contention())
    }

    async fn recover_generated(
        &self,
        job: &JobRow,
        secret: &mut SecretRow,
        now: i64,
        steps: &mut Vec<JobStep>,
    ) -> Result<Option<crate::store::VersionRow>, CoreError> {
        let values = self.store.job_values(&job.id).await?;
        let (Some(last), [target]) = (values.last(), secret.rotation_targets.as_slice()) else {
            return Ok(None);
        };
        let dek = self.keyring.open_data_key(&secret.id, &secret.wrapped_dek)?;
        let generated = rotary_crypto::open(&dek, &job_value_ctx(&job.id, last.seq), &last.ciphertext)?;
        let generated = String::from_utf8(generated.to_vec()).map_err(|e| CoreError::internal("job value", e))?;
        let chain = self.secrets.decrypt_chain(secret).await?;
        let Some((_, active)) = chain.active else { return Ok(None) };
        let pending = with_targets(&active, &[(target.clone(), SecretString::from(generated))])?;
        let version = secret.next_version;
        secret.next_version += 1;
        secret.pending_version = Some(version);
        steps.push(step(job, now, "recover", "INFO",
            "the value generated for this job was never saved as pending; it is kept as pending so the next attempt tries it first"));
        Ok(Some(self.secrets.seal_value(&dek, secret, version, &pending, now)))
    }

    fn backoff_ms(&self, attempt: i64) -> i64 {
        let exp = self.cfg.retry_base_ms.saturating_mul(1i64 << (attempt - 1).clamp(0, 20));
        let capped = exp.min(self.cfg.retry_cap_ms);
        // ±20 % jitter so that many failed jobs do not retry in lockstep.
        let jitter = capped / 5;
        (capped + if jitter > 0 { OsRng.gen_range(-jitter..=jitter) } else { 0 }).max(0)
    }

    // ------------------------------------------------------------- action API

    /// The open job a token names, checked against the path's secret and the
    /// caller's policy.
    async fn job_for(&self, caller: &Caller, secret_id: &str, token: &str) -> Result<(JobRow, SecretRow), CoreError> {
        caller.ctx.set_secret_id(secret_id);
        let job = self
            .store
            .job_by_token_hash(&token_hash(token))
            .await?
            .filter(|j| j.secret_id == secret_id)
            .ok_or_else(|| CoreError::not_found("no job with this token for this secret"))?;
        let secret = self.secrets.load(caller, secret_id, Permission::Manage).await?;
        if !job.is_open() {
            return Err(CoreError::status(format!("the job is not open (status {})", job.status)));
        }
        Ok((job, secret))
    }

    async fn log_step(&self, job: &JobRow, name: &str, result: &str, message: &str) -> Result<(), CoreError> {
        let s = [step(job, self.clock.now_ms(), name, result, message)];
        Ok(self.store.commit(Batch { steps: &s, ..Default::default() }).await?)
    }

    /// Appends a line to a job's log (runners: function output, already redacted).
    pub async fn append_log(&self, job: &JobRow, name: &str, result: &str, message: &str) -> Result<(), CoreError> {
        self.log_step(job, name, result, message).await
    }

    pub async fn action_start(
        &self,
        caller: &Caller,
        secret_id: &str,
        token: &str,
    ) -> Result<(SecretRow, Chain), CoreError> {
        let (mut job, secret) = self.job_for(caller, secret_id, token).await?;
        let now = self.clock.now_ms();
        if job.status == "DISPATCHED" {
            let expected = job.revision;
            job.status = "RUNNING".into();
            job.revision += 1;
            let steps = [step(&job, now, "start", "OK", "the rotation function started the job")];
            let audit = caller.ctx.draft("SUCCESS", now);
            self.store
                .commit(Batch {
                    update_job: Some((&job, expected)),
                    steps: &steps,
                    audit: Some(&audit),
                    ..Default::default()
                })
                .await?;
            caller.ctx.mark_audited();
        }
        let chain = self.secrets.decrypt_chain(&secret).await?;
        Ok((secret, chain))
    }

    async fn keep_value(
        &self,
        job: &JobRow,
        secret: &SecretRow,
        source: &str,
        value: &str,
        caller: &Caller,
    ) -> Result<(), CoreError> {
        let now = self.clock.now_ms();
        let seq = self.store.job_values(&job.id).await?.len() as i64 + 1;
        let dek = self.keyring.open_data_key(&secret.id, &secret.wrapped_dek)?;
        let v = JobValue {
            job_id: job.id.clone(),
            seq,
            source: source.into(),
            ciphertext: rotary_crypto::seal(&dek, 0, &job_value_ctx(&job.id, seq), value.as_bytes()),
            created_at: now,
        };
        let steps = [step(job, now, source, "OK", format!("generated value #{seq} kept (sealed) with the job"))];
        let audit = caller.ctx.draft("SUCCESS", now);
        self.store.commit(Batch { job_values: &[v], steps: &steps, audit: Some(&audit), ..Default::default() }).await?;
        caller.ctx.mark_audited();
        Ok(())
    }

    /// A random string by the policy, kept sealed with the job before it is returned.
    pub async fn action_generate(
        &self,
        caller: &Caller,
        secret_id: &str,
        token: &str,
        policy: &PasswordPolicy,
    ) -> Result<SecretString, CoreError> {
        policy.validate()?;
        let (job, secret) = self.job_for(caller, secret_id, token).await?;
        let value = policy.generate()?;
        self.keep_value(&job, &secret, "generate-random-secret", value.expose_secret(), caller).await?;
        Ok(value)
    }

    /// `POST pending`: the stored pending if there is one (a retry reuses it),
    /// else active with every rotation target replaced by a random value.
    pub async fn action_post_pending(
        &self,
        caller: &Caller,
        secret_id: &str,
        token: &str,
        policy: &PasswordPolicy,
    ) -> Result<SecretValue, CoreError> {
        policy.validate()?;
        let (job, secret) = self.job_for(caller, secret_id, token).await?;
        let chain = self.secrets.decrypt_chain(&secret).await?;
        if let Some((_, pending)) = chain.pending {
            self.log_step(&job, "pending", "SKIPPED", "a pending value is already stored; it is reused").await?;
            return Ok(pending);
        }
        let (_, active) = chain.active.ok_or_else(|| CoreError::status("the secret has no active value"))?;
        let mut fills = vec![];
        for t in &secret.rotation_targets {
            fills.push((t.clone(), policy.generate()?));
        }
        let pending = with_targets(&active, &fills)?;
        self.store_pending(caller, job, secret, pending, Some("pending")).await
    }

    /// `PUT pending`: only rotation targets may differ from active.
    pub async fn action_put_pending(
        &self,
        caller: &Caller,
        secret_id: &str,
        token: &str,
        value: SecretValue,
    ) -> Result<(), CoreError> {
        let (job, secret) = self.job_for(caller, secret_id, token).await?;
        let chain = self.secrets.decrypt_chain(&secret).await?;
        if let Some((_, active)) = &chain.active {
            only_targets_differ(active, &value, &secret.rotation_targets)?;
            if active.json().expose_secret() == value.json().expose_secret() {
                return Err(CoreError::invalid("pending must change at least one rotation target; it equals active"));
            }
        }
        value.check_targets(&secret.rotation_targets)?;
        self.store_pending(caller, job, secret, value, None).await.map(|_| ())
    }

    async fn store_pending(
        &self,
        caller: &Caller,
        mut job: JobRow,
        mut secret: SecretRow,
        pending: SecretValue,
        keep_as: Option<&str>,
    ) -> Result<SecretValue, CoreError> {
        let now = self.clock.now_ms();
        let dek = self.keyring.open_data_key(&secret.id, &secret.wrapped_dek)?;
        let (expected_s, expected_j) = (secret.revision, job.revision);
        let version = secret.next_version;
        secret.next_version += 1;
        secret.pending_version = Some(version);
        secret.revision += 1;
        secret.updated_at = now;
        job.pending_stored = true;
        job.revision += 1;
        let v = self.secrets.seal_value(&dek, &secret, version, &pending, now);
        let mut job_values = vec![];
        if let Some(source) = keep_as {
            let seq = self.store.job_values(&job.id).await?.len() as i64 + 1;
            job_values.push(JobValue {
                job_id: job.id.clone(),
                seq,
                source: source.into(),
                ciphertext: rotary_crypto::seal(
                    &dek,
                    0,
                    &job_value_ctx(&job.id, seq),
                    pending.json().expose_secret().as_bytes(),
                ),
                created_at: now,
            });
        }
        let steps = [step(&job, now, "pending", "OK", format!("pending stored as version {version}"))];
        let audit = caller.ctx.draft("SUCCESS", now);
        self.store
            .commit(Batch {
                secret: Some((&secret, expected_s)),
                versions: &[v],
                update_job: Some((&job, expected_j)),
                steps: &steps,
                job_values: &job_values,
                audit: Some(&audit),
                ..Default::default()
            })
            .await?;
        caller.ctx.mark_audited();
        Ok(pending)
    }

    /// previous ← active ← pending, in one transaction with the job's success.
    pub async fn action_complete(&self, caller: &Caller, secret_id: &str, token: &str) -> Result<SecretRow, CoreError> {
        let (mut job, mut secret) = self.job_for(caller, secret_id, token).await?;
        let Some(pending) = secret.pending_version else {
            return Err(CoreError::status("there is no pending value to complete the rotation with"));
        };
        if Some(pending) == secret.active_version {
            return Err(CoreError::status("pending is the active version; nothing to complete"));
        }
        let now = self.clock.now_ms();
        let (expected_s, expected_j) = (secret.revision, job.revision);
        secret.previous_version = secret.active_version;
        secret.active_version = Some(pending);
        secret.pending_version = None;
        secret.status = SecretStatus::Enable.as_str().into();
        secret.rotation_phase = Some("COMPLETED".into());
        secret.last_rotation_at = Some(now);
        secret.schedule_base_at = Some(now);
        if secret.auto_rotation {
            secret.next_rotation_at = Some(now + secret.rotation_period_days.unwrap_or(90) * DAY_MS);
        }
        secret.revision += 1;
        secret.updated_at = now;
        job.status = "SUCCEEDED".into();
        job.finished_at = Some(now);
        job.revision += 1;
        let steps = [step(&job, now, "complete", "OK", format!("version {pending} is now active"))];
        // Crash tests: the process dies while completing, before the commit.
        fail::fail_point!("complete-before-commit", |_| {
            let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
            std::process::abort()
        });
        let audit = caller.ctx.draft("SUCCESS", now);
        self.store
            .commit(Batch {
                secret: Some((&secret, expected_s)),
                update_job: Some((&job, expected_j)),
                steps: &steps,
                audit: Some(&audit),
                ..Default::default()
            })
            .await?;
        caller.ctx.mark_audited();
        Ok(secret)
    }

    pub async fn action_fail(&self, caller: &Caller, secret_id: &str, token: &str) -> Result<(), CoreError> {
        let (job, _) = self.job_for(caller, secret_id, token).await?;
        let audit = caller.ctx.draft("SUCCESS", self.clock.now_ms());
        self.close_job(job, "FAILED", "the rotation function reported failure", Some(&audit), true).await?;
        caller.ctx.mark_audited();
        Ok(())
    }

    /// For built-in rotators: the database definitely refused the pending value
    /// (e.g. a password policy), so it was never applied; clear it so the
    /// retry generates a new one. The value stays in the job's kept values.
    pub async fn discard_pending(
        &self,
        caller: &Caller,
        secret_id: &str,
        token: &str,
        why: &str,
    ) -> Result<(), CoreError> {
        let (job, mut secret) = self.job_for(caller, secret_id, token).await?;
        let now = self.clock.now_ms();
        let expected = secret.revision;
        secret.pending_version = None;
        secret.revision += 1;
        secret.updated_at = now;
        let mut job = job;
        let expected_j = job.revision;
        job.pending_stored = false;
        job.revision += 1;
        let steps = [step(&job, now, "pending", "FAILED", format!("pending discarded: {why}"))];
        self.store
            .commit(Batch {
                secret: Some((&secret, expected)),
                update_job: Some((&job, expected_j)),
                steps: &steps,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// The stored pending value of a secret (built-in rotators, after storing it).
    pub async fn pending_of(&self, secret_id: &str) -> Result<Option<SecretValue>, CoreError> {
        let Some(row) = self.store.get_secret(secret_id).await? else { return Ok(None) };
        Ok(self.secrets.decrypt_chain(&row).await?.pending.map(|(_, v)| v))
    }

    /// The active value of another secret (a built-in rotator's admin
    /// credentials), for the server's own use.
    pub async fn admin_credentials(&self, secret_id: &str) -> Result<SecretValue, CoreError> {
        let row = self
            .store
            .get_secret(secret_id)
            .await?
            .ok_or_else(|| CoreError::not_found("the admin secret does not exist"))?;
        let chain = self.secrets.decrypt_chain(&row).await?;
        chain.active.map(|(_, v)| v).ok_or_else(|| CoreError::status("the admin secret has no active value"))
    }

    /// Called by a runner when the function ended: if it left the job open
    /// (exited without complete or fail), the job fails now instead of at its
    /// deadline.
    pub async fn function_ended(&self, job_id: &str, outcome: &str) -> Result<(), CoreError> {
        if let Some(job) = self.store.get_job(job_id).await?
            && job.is_open()
        {
            let why = format!("the rotation function ended ({outcome}) without completing or failing the job");
            self.close_job(job, "FAILED", &why, None, true).await?;
        }
        Ok(())
    }

    pub async fn job_status(&self, job_id: &str) -> Result<Option<String>, CoreError> {
        Ok(self.store.get_job(job_id).await?.map(|j| j.status))
    }

    /// Every value of the secret's chain and every value generated for the job:
    /// what a runner must redact from function output.
    pub async fn redactions(&self, job: &JobRow) -> Result<Vec<SecretString>, CoreError> {
        let mut out = vec![];
        if let Some(secret) = self.store.get_secret(&job.secret_id).await? {
            let chain = self.secrets.decrypt_chain(&secret).await?;
            for (_, v) in [chain.active, chain.pending, chain.previous].into_iter().flatten() {
                // Rotation targets always; other values from 3 characters on
                // (masking "u" everywhere would mangle the log and hint at it).
                for k in v.keys() {
                    if let Some(x) = v.get(k)
                        && (secret.rotation_targets.contains(k) || x.expose_secret().chars().count() >= 3)
                    {
                        out.push(x);
                    }
                }
            }
            let dek = self.keyring.open_data_key(&secret.id, &secret.wrapped_dek)?;
            for v in self.store.job_values(&job.id).await? {
                let pt = rotary_crypto::open(&dek, &job_value_ctx(&job.id, v.seq), &v.ciphertext)?;
                let text = String::from_utf8_lossy(&pt).into_owned();
                if let Ok(val) = SecretValue::from_stored(text.as_bytes()) {
                    out.extend(val.values());
                }
                out.push(SecretString::from(text));
            }
        }
        Ok(out)
    }
}

fn system_audit(action: &str, secret_id: &str, now: i64, request_id: &str) -> crate::audit::AuditDraft {
    crate::audit::AuditDraft {
        timestamp: now,
        access_key: None,
        action: action.into(),
        secret_id: Some(secret_id.into()),
        result: "SUCCESS".into(),
        client_address: None,
        request_id: request_id.into(),
    }
}

pub fn job_value_ctx(job_id: &str, seq: i64) -> Vec<u8> {
    rotary_crypto::aad(&[b"job-value", job_id.as_bytes(), &seq.to_be_bytes()])
}

/// `base` with the given keys replaced.
pub fn with_targets(base: &SecretValue, fills: &[(String, SecretString)]) -> Result<SecretValue, CoreError> {
    let mut map: Map<String, Value> =
        serde_json::from_str(base.json().expose_secret()).map_err(|e| CoreError::internal("stored value", e))?;
    for (k, v) in fills {
        map.insert(k.clone(), Value::String(v.expose_secret().to_owned()));
    }
    let text = serde_json::to_string(&map).map_err(|e| CoreError::internal("value", e))?;
    SecretValue::parse(&SecretString::from(text))
}

/// A secret key for a built-in rotator's field: the trigger's `keyMap` entry
/// if it has one, else the first of the default names present.
pub fn lookup_key<'a>(
    map: &'a Map<String, Value>,
    key_map: &Value,
    field: &str,
    defaults: &[&str],
) -> Option<(String, &'a str)> {
    if let Some(k) = key_map.get(field).and_then(Value::as_str) {
        return map.get(k).and_then(Value::as_str).map(|v| (k.to_owned(), v));
    }
    defaults.iter().find_map(|k| map.get(*k).and_then(Value::as_str).map(|v| ((*k).to_owned(), v)))
}

pub const HOST_KEYS: &[&str] = &["host", "cdbHost"];
pub const PORT_KEYS: &[&str] = &["port", "cdbPort"];
pub const DATABASE_KEYS: &[&str] = &["database", "dbname", "cdbDatabase"];
pub const USER_KEYS: &[&str] = &["username", "user", "cdbUser"];
pub const PASSWORD_KEYS: &[&str] = &["password", "cdbPassword"];

/// A host as the database server would see it: trimmed, lower-case, IPv4
/// shorthand (`127.1`, `2130706433`) and IPv4-mapped IPv6 folded, and every
/// loopback spelling (`localhost`, `127.x.y.z`, `::1`) one name. Names are not
/// resolved (no I/O here); two different names for one server are not caught.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if h == "localhost" || h.ends_with(".localhost") {
        return "loopback".into();
    }
    let ip = h.parse::<std::net::IpAddr>().ok().or_else(|| ipv4_shorthand(h).map(std::net::IpAddr::V4));
    match ip {
        Some(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => "loopback".into(),
            Some(v4) => v4.to_string(),
            None if v6.is_loopback() => "loopback".into(),
            None => v6.to_string(),
        },
        Some(std::net::IpAddr::V4(v4)) if v4.is_loopback() => "loopback".into(),
        Some(ip) => ip.to_string(),
        None => h.to_owned(),
    }
}

/// `inet_aton`'s decimal forms: `a`, `a.b`, `a.b.c`, `a.b.c.d`.
fn ipv4_shorthand(h: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<u64> = h.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|p| *p > 255) || *last >= 1u64 << (8 * (4 - head.len())) {
        return None;
    }
    let mut n: u64 = 0;
    for p in head {
        n = (n << 8) | p;
    }
    n = (n << (8 * (4 - head.len()))) | last;
    Some(std::net::Ipv4Addr::from(u32::try_from(n).ok()?))
}

/// The database accounts a built-in trigger of `kind` manages for `value`
/// (the user and, for the alternating strategy, `alternateUsername`), each
/// as `kind|server|port|user|userHost`; `None` when the value lacks the keys.
/// PostgreSQL names are cut to 63 bytes, as the server itself does.
pub fn db_accounts(kind: &str, config: &Value, value: &SecretValue, key_map_field: &str) -> Option<Vec<String>> {
    let map: Map<String, Value> = serde_json::from_str(value.json().expose_secret()).ok()?;
    let key_map = config.get(key_map_field).cloned().unwrap_or(Value::Null);
    let (_, host) = lookup_key(&map, &key_map, "host", HOST_KEYS)?;
    let default_port: u16 = if kind == "mysql" { 3306 } else { 5432 };
    let port = match lookup_key(&map, &key_map, "port", PORT_KEYS) {
        Some((_, p)) => p.trim().parse::<u16>().ok()?,
        None => default_port,
    };
    let user_host = if kind == "mysql" {
        lookup_key(&map, &key_map, "userHost", &["userHost"]).map(|(_, h)| h.to_ascii_lowercase()).unwrap_or("%".into())
    } else {
        String::new()
    };
    let server = format!("{kind}|{}|{port}", normalize_host(host));
    let name = |u: &str| {
        if kind == "postgres" && u.len() > 63 {
            let mut cut = 63;
            while !u.is_char_boundary(cut) {
                cut -= 1;
            }
            u[..cut].to_owned()
        } else {
            u.to_owned()
        }
    };
    let (_, user) = lookup_key(&map, &key_map, "username", USER_KEYS)?;
    let mut out = vec![format!("{server}|{}|{user_host}", name(user))];
    if let Some((_, alt)) = lookup_key(&map, &key_map, "alternateUsername", &["alternateUsername"]) {
        out.push(format!("{server}|{}|{user_host}", name(alt)));
    }
    Some(out)
}

fn only_keys(c: &Map<String, Value>, allowed: &[&str]) -> Result<(), CoreError> {
    match c.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            Err(CoreError::invalid(format!("config has an unknown field {k:?} (allowed: {})", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

fn only_targets_differ(active: &SecretValue, pending: &SecretValue, targets: &[String]) -> Result<(), CoreError> {
    let a: Map<String, Value> = serde_json::from_str(active.json().expose_secret()).unwrap_or_default();
    let p: Map<String, Value> = serde_json::from_str(pending.json().expose_secret()).unwrap_or_default();
    for k in a.keys().chain(p.keys()) {
        if !targets.contains(k) && a.get(k) != p.get(k) {
            return Err(CoreError::invalid(format!(
                "pending may differ from active only in rotation targets; key {k:?} differs"
            )));
        }
    }
    Ok(())
}
