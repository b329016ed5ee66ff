//! The built-in database rotators' common flow; `postgres` and `mysql`
//! supply the driver.
//!
//! Steps, each in the job log with its duration: `start` → `pending` (the
//! stored pending if there is one, else a new value by the trigger's policy,
//! stored before the database is touched) → `apply` (if pending was left by
//! an earlier attempt, log in with it: already applied? done; else log in
//! with active, previous, or the admin credential, and set the new
//! password) → `test` (a fresh login with
//! pending) → `complete`. Any failure ends the job through the engine, which
//! retries with backoff and reuses pending; a definite refusal of the value
//! by the database discards pending so the retry makes a new one.

use std::time::Instant;

use rotary_core::domain::SecretValue;
use rotary_core::password::PasswordPolicy;
use rotary_core::service::rotation::{
    DATABASE_KEYS, HOST_KEYS, PASSWORD_KEYS, PORT_KEYS, USER_KEYS, lookup_key, system_caller,
};
use rotary_core::service::{Dispatch, RotationService};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Where and as whom to connect, read from the secret's keys.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// MySQL's account host part (`'user'@'host'`), from `userHost` (default `%`).
    pub user_host: String,
    pub password_key: String,
    /// TLS: `disable`, `prefer`, `require` or `verify-full` (with `ca_file`).
    pub sslmode: String,
    pub ca_file: Option<String>,
}

#[derive(Debug)]
pub enum ConnectError {
    /// The server said no to these credentials.
    Rejected,
    /// Could not reach or talk to the server: the outcome of anything sent is unknown.
    Unreachable(String),
}

pub enum SetError {
    /// The server definitely refused the value (not applied).
    Rejected(String),
    /// Anything else; if no answer came, the outcome is unknown.
    Failed(String),
}

/// What a database must offer the common flow.
pub trait Driver: Sync {
    type Conn: Send;
    const DEFAULT_PORT: u16;
    const DEFAULT_DATABASE: &'static str;
    fn login(
        &self,
        t: &Target,
        user: &str,
        password: &SecretString,
    ) -> impl Future<Output = Result<Self::Conn, ConnectError>> + Send;
    /// Sets `t.user`'s password to `new` over `conn`: the user's own session
    /// when `own` (self mode), else an admin's.
    fn set_password(
        &self,
        conn: Self::Conn,
        t: &Target,
        new: &SecretString,
        own: bool,
    ) -> impl Future<Output = Result<(), SetError>> + Send;
}

pub(crate) fn target<D: Driver>(
    value: &SecretValue,
    key_map: &Value,
    rotation_targets: &[String],
) -> Result<Target, String> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(value.json().expose_secret())
        .map_err(|_| "the secret value is not an object".to_owned())?;
    let need = |name: &str, defaults: &[&str]| {
        lookup_key(&map, key_map, name, defaults)
            .ok_or_else(|| format!("the secret has no {name} key (looked for {})", defaults.join(", ")))
    };
    let (_, host) = need("host", HOST_KEYS)?;
    let default_port = D::DEFAULT_PORT.to_string();
    let (_, port) = lookup_key(&map, key_map, "port", PORT_KEYS).unwrap_or(("port".into(), default_port.as_str()));
    let (_, database) =
        lookup_key(&map, key_map, "database", DATABASE_KEYS).unwrap_or(("database".into(), D::DEFAULT_DATABASE));
    let (_, user_host) = lookup_key(&map, key_map, "userHost", &["userHost"]).unwrap_or(("userHost".into(), "%"));
    let (_, user) = need("username", USER_KEYS)?;
    let (password_key, _) = need("password", PASSWORD_KEYS)?;
    if !rotation_targets.contains(&password_key) {
        return Err(format!("the password key {password_key:?} is not a rotation target of the secret"));
    }
    let port = port.parse().map_err(|_| format!("port {port:?} is not a number"))?;
    Ok(Target {
        host: host.into(),
        port,
        database: database.into(),
        user: user.into(),
        user_host: user_host.into(),
        password_key,
        sslmode: String::new(),
        ca_file: None,
    })
}

fn password_of(value: &SecretValue, key: &str) -> Option<SecretString> {
    value.get(key)
}

async fn job_open(rotation: &RotationService, job_id: &str) -> bool {
    matches!(rotation.job_status(job_id).await.ok().flatten().as_deref(), Some("QUEUED" | "DISPATCHED" | "RUNNING"))
}

/// The alternating strategy's pending: the other account (`alternateUsername`)
/// becomes the user, the current user becomes the alternate, and the password
/// is new. Stored before anything touches the database.
async fn alternate_pending(
    rotation: &RotationService,
    caller: &rotary_core::service::Caller,
    (sid, token): (&str, &str),
    active: &SecretValue,
    key_map: &Value,
    t: &Target,
    policy: &PasswordPolicy,
) -> Result<SecretValue, String> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(active.json().expose_secret())
        .map_err(|_| "the secret value is not an object".to_owned())?;
    let (user_key, _) = lookup_key(&map, key_map, "username", USER_KEYS).ok_or("the secret has no username key")?;
    let (alt_key, alt_user) = lookup_key(&map, key_map, "alternateUsername", &["alternateUsername"])
        .ok_or("the alternating strategy needs an alternateUsername key in the secret (the second account)")?;
    let new = policy.generate().map_err(|e| e.to_string())?;
    let fills = [
        (user_key, SecretString::from(alt_user.to_owned())),
        (alt_key, SecretString::from(t.user.clone())),
        (t.password_key.clone(), new),
    ];
    let pending = rotary_core::service::rotation::with_targets(active, &fills).map_err(|e| e.to_string())?;
    rotation.action_put_pending(caller, sid, token, pending).await.map_err(|e| e.to_string())?;
    // Read back what was stored (a value is moved into the store above).
    let chain = rotation.pending_of(sid).await.map_err(|e| e.to_string())?;
    chain.ok_or_else(|| "pending was not stored".to_owned())
}

struct JobLog<'a> {
    rotation: &'a RotationService,
    job: &'a rotary_core::store::JobRow,
}

impl JobLog<'_> {
    async fn step(&self, name: &str, started: Instant, ok: bool, msg: String) {
        let msg = format!("{msg} ({} ms)", started.elapsed().as_millis());
        let _ = self.rotation.append_log(self.job, name, if ok { "OK" } else { "FAILED" }, &msg).await;
    }

    /// Ends the job as failed (the engine retries with backoff, reusing pending).
    async fn fail(&self, why: String) {
        let _ = self.rotation.function_ended(&self.job.id, &why).await;
    }
}

/// Failpoint action of crash tests: the process dies at once, as under
/// `kill -9` (no destructors, no flush). Compiled in only with `failpoints`.
#[cfg(feature = "failpoints")]
fn crash() {
    let _ = std::process::Command::new("kill").args(["-9", &std::process::id().to_string()]).status();
    std::process::abort();
}

#[cfg(not(feature = "failpoints"))]
#[allow(dead_code)]
fn crash() {}

enum Apply {
    AlreadyApplied,
    Changed(&'static str),
    /// A definite refusal of the value: it was not applied.
    Rejected(String),
    Failed(String),
}

pub async fn run<D: Driver>(driver: &D, rotation: &RotationService, d: Dispatch, now_ms: i64) {
    let caller = system_caller(&d.job.id, now_ms);
    let (sid, token) = (d.job.secret_id.clone(), d.token.expose_secret().to_owned());
    let config: Value = serde_json::from_str(&d.trigger.config).unwrap_or(Value::Null);
    let log = JobLog { rotation, job: &d.job };
    let step = |name: &'static str, started: Instant, ok: bool, msg: String| log.step(name, started, ok, msg);
    let fail = |why: String| log.fail(why);

    // start
    let t0 = Instant::now();
    let (row, chain) = match rotation.action_start(&caller, &sid, &token).await {
        Ok(x) => x,
        Err(e) => return fail(format!("start failed: {e}")).await,
    };
    let Some((_, active)) = chain.active else { return fail("the secret has no active value".into()).await };
    let key_map = config.get("keyMap").cloned().unwrap_or(Value::Null);
    let tls = |mut t: Target| {
        t.sslmode = config.get("sslmode").and_then(Value::as_str).unwrap_or("disable").to_owned();
        t.ca_file = config.get("caFile").and_then(Value::as_str).map(str::to_owned);
        t
    };
    let t = match target::<D>(&active, &key_map, &row.rotation_targets) {
        Ok(t) => tls(t),
        Err(e) => return fail(e).await,
    };
    step("connect-info", t0, true, format!("role {:?} on {}:{} database {:?}", t.user, t.host, t.port, t.database))
        .await;

    // pending: stored before anything touches the database
    let t1 = Instant::now();
    let policy: PasswordPolicy = config
        .get("passwordPolicy")
        .and_then(|p| serde_json::from_value(p.clone()).ok())
        .unwrap_or(PasswordPolicy { length: 32, include_space: false, ..Default::default() });
    let alternating = config.get("strategy").and_then(Value::as_str) == Some("alternating");
    // A pending left by an earlier attempt may already be in the database; a
    // value made now cannot be, so there is no point logging in with it.
    let reused = chain.pending.is_some();
    let stored = if alternating {
        match chain.pending {
            Some((_, p)) => Ok(p),
            None => alternate_pending(rotation, &caller, (&sid, &token), &active, &key_map, &t, &policy).await,
        }
    } else {
        rotation.action_post_pending(&caller, &sid, &token, &policy).await.map_err(|e| e.to_string())
    };
    let pending = match stored {
        Ok(p) => p,
        Err(e) => return fail(format!("pending could not be stored: {e}")).await,
    };
    // Alternating: the account to change is the inactive one, which pending names.
    let t = if alternating {
        match target::<D>(&pending, &key_map, &row.rotation_targets) {
            Ok(p) => tls(p),
            Err(e) => return fail(e).await,
        }
    } else {
        t
    };
    let Some(new_pw) = password_of(&pending, &t.password_key) else {
        return fail("pending has no password".into()).await;
    };
    step("pending-ready", t1, true, "pending is stored".into()).await;
    fail::fail_point!("rotator-after-pending", |_| crash());

    // A job closed meanwhile (timed out, cancelled) must not touch the database.
    if !job_open(rotation, &d.job.id).await {
        return step("apply", t1, false, "not applied: the job was closed".into()).await;
    }

    // apply
    let t2 = Instant::now();
    let previous = chain.previous.as_ref().map(|(_, v)| v);
    let applied = if reused { Some(driver.login(&t, &t.user, &new_pw).await) } else { None };
    let outcome = match applied {
        Some(Ok(_)) => Apply::AlreadyApplied,
        Some(Err(ConnectError::Unreachable(why))) => Apply::Failed(why),
        Some(Err(ConnectError::Rejected)) | None => {
            apply(driver, rotation, &config, &t, &new_pw, &active, previous).await
        }
    };
    match outcome {
        Apply::AlreadyApplied => step("apply", t2, true, "pending already logs in; nothing to change".into()).await,
        Apply::Changed(via) => step("apply", t2, true, format!("password changed, logged in with {via}")).await,
        Apply::Rejected(why) => {
            step("apply", t2, false, format!("the database refused the new password: {why}")).await;
            let _ = rotation.discard_pending(&caller, &sid, &token, "the database refused it").await;
            return fail(format!("the database refused the new password: {why}")).await;
        }
        Apply::Failed(why) => {
            step("apply", t2, false, why.clone()).await;
            return fail(why).await;
        }
    }

    fail::fail_point!("rotator-after-apply", |_| crash());

    // test
    let t3 = Instant::now();
    match driver.login(&t, &t.user, &new_pw).await {
        Ok(c) => {
            drop(c);
            step("test", t3, true, "a new connection logs in with pending".into()).await;
        }
        Err(e) => {
            let why = format!("the new password does not log in: {e:?}");
            step("test", t3, false, why.clone()).await;
            return fail(why).await;
        }
    }

    fail::fail_point!("rotator-before-complete", |_| crash());
    if !job_open(rotation, &d.job.id).await {
        return step("complete", t3, false, "not completed: the job was closed".into()).await;
    }

    // complete
    if let Err(e) = rotation.action_complete(&caller, &sid, &token).await {
        fail(format!("complete failed: {e}")).await;
    }
}

async fn apply<D: Driver>(
    driver: &D,
    rotation: &RotationService,
    config: &Value,
    t: &Target,
    new_pw: &SecretString,
    active: &SecretValue,
    previous: Option<&SecretValue>,
) -> Apply {
    let admin_mode = config.get("mode").and_then(Value::as_str) == Some("admin");
    let (client, via) = if admin_mode {
        let Some(admin_id) = config.get("adminSecretId").and_then(Value::as_str) else {
            return Apply::Failed("admin mode without adminSecretId".into());
        };
        let admin = match rotation.admin_credentials(admin_id).await {
            Ok(a) => a,
            Err(e) => return Apply::Failed(format!("admin credentials: {e}")),
        };
        let key_map = config.get("adminKeyMap").cloned().unwrap_or(Value::Null);
        let at = match target::<D>(&admin, &key_map, &[admin_key(&admin)]) {
            Ok(at) => at,
            Err(e) => return Apply::Failed(format!("admin secret: {e}")),
        };
        if at.user == t.user {
            return Apply::Failed("the admin credential is the managed role itself; use mode self".into());
        }
        let Some(pw) = password_of(&admin, &at.password_key) else {
            return Apply::Failed("admin secret has no password".into());
        };
        // The admin credential goes to the admin secret's own server, never
        // to a host the managed secret names; the two must be the same server.
        if rotary_core::service::rotation::normalize_host(&at.host)
            != rotary_core::service::rotation::normalize_host(&t.host)
            || at.port != t.port
        {
            return Apply::Failed("the secret's host and port are not the admin secret's".into());
        }
        let at = Target { database: t.database.clone(), sslmode: t.sslmode.clone(), ca_file: t.ca_file.clone(), ..at };
        match driver.login(&at, &at.user, &pw).await {
            Ok(c) => (c, "the admin credential"),
            Err(e) => return Apply::Failed(format!("the admin credential does not log in: {e:?}")),
        }
    } else {
        let mut found = None;
        for (label, value) in [("active", Some(active)), ("previous", previous)] {
            let Some(pw) = value.and_then(|v| password_of(v, &t.password_key)) else { continue };
            match driver.login(t, &t.user, &pw).await {
                Ok(c) => {
                    found = Some((c, label));
                    break;
                }
                Err(ConnectError::Rejected) => {}
                Err(ConnectError::Unreachable(why)) => return Apply::Failed(why),
            }
        }
        match found {
            Some(f) => f,
            None => return Apply::Failed("neither pending, active nor previous logs in".into()),
        }
    };
    match driver.set_password(client, t, new_pw, !admin_mode).await {
        Ok(()) => Apply::Changed(via),
        Err(SetError::Rejected(why)) => Apply::Rejected(why),
        Err(SetError::Failed(why)) => Apply::Failed(why),
    }
}

/// The admin secret's password key, whatever its name.
fn admin_key(admin: &SecretValue) -> String {
    ["password", "cdbPassword"].iter().find(|k| admin.keys().iter().any(|x| x == *k)).unwrap_or(&"password").to_string()
}
