//! The built-in PostgreSQL rotator.
//!
//! Steps, each in the job log with its duration: `start` → `pending` (the
//! stored pending if there is one, else a new value by the trigger's policy,
//! stored before the database is touched) → `apply` (log in with pending:
//! already applied? done; else with active, previous, or the admin
//! credential, and set the new password) → `test` (a fresh login with
//! pending) → `complete`.
//!
//! The new password is sent as a SCRAM-SHA-256 verifier computed here, so the
//! plaintext never reaches the server, its statement log or its replicas.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rotary_core::domain::SecretValue;
use rotary_core::password::PasswordPolicy;
use rotary_core::service::rotation::system_caller;
use rotary_core::service::{Dispatch, RotationService};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;

/// PostgreSQL's default SCRAM iteration count.
const SCRAM_ITERATIONS: u32 = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (RFC 5802, 7677), as
/// PostgreSQL stores it; `ALTER ROLE … PASSWORD '<verifier>'` takes it as is.
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let hmac = |key: &[u8], msg: &[u8]| {
        // invariant: HMAC accepts keys of any length
        let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
        m.update(msg);
        m.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    salted.iter_mut().for_each(|b| *b = 0);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// A quoted identifier: any name, including `"`, spaces, keywords, non-ASCII.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Where and as whom to connect, read from the secret's keys.
struct Target {
    host: String,
    port: u16,
    database: String,
    user: String,
    password_key: String,
}

fn field<'a>(
    map: &'a serde_json::Map<String, Value>,
    key_map: &Value,
    name: &str,
    defaults: &[&str],
) -> Option<(String, &'a str)> {
    if let Some(k) = key_map.get(name).and_then(Value::as_str) {
        return map.get(k).and_then(Value::as_str).map(|v| (k.to_owned(), v));
    }
    defaults.iter().find_map(|k| map.get(*k).and_then(Value::as_str).map(|v| ((*k).to_owned(), v)))
}

fn target(value: &SecretValue, key_map: &Value, rotation_targets: &[String]) -> Result<Target, String> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(value.json().expose_secret())
        .map_err(|_| "the secret value is not an object".to_owned())?;
    let need = |name: &str, defaults: &[&str]| {
        field(&map, key_map, name, defaults)
            .ok_or_else(|| format!("the secret has no {name} key (looked for {})", defaults.join(", ")))
    };
    let (_, host) = need("host", &["host", "cdbHost"])?;
    let (_, port) = field(&map, key_map, "port", &["port", "cdbPort"]).unwrap_or(("port".into(), "5432"));
    let (_, database) = field(&map, key_map, "database", &["database", "dbname", "cdbDatabase"])
        .unwrap_or(("database".into(), "postgres"));
    let (_, user) = need("username", &["username", "user", "cdbUser"])?;
    let (password_key, _) = need("password", &["password", "cdbPassword"])?;
    if !rotation_targets.contains(&password_key) {
        return Err(format!("the password key {password_key:?} is not a rotation target of the secret"));
    }
    let port = port.parse().map_err(|_| format!("port {port:?} is not a number"))?;
    Ok(Target { host: host.into(), port, database: database.into(), user: user.into(), password_key })
}

fn password_of(value: &SecretValue, key: &str) -> Option<SecretString> {
    value.get(key)
}

#[derive(Debug)]
enum ConnectError {
    /// The server said no to these credentials.
    Rejected,
    /// Could not reach or talk to the server: the outcome of anything sent is unknown.
    Unreachable(String),
}

async fn connect(t: &Target, user: &str, password: &SecretString) -> Result<tokio_postgres::Client, ConnectError> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&t.host)
        .port(t.port)
        .dbname(&t.database)
        .user(user)
        .password(password.expose_secret())
        .connect_timeout(CONNECT_TIMEOUT)
        .application_name("rotary");
    match cfg.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
        Err(e) => match e.code() {
            Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                Err(ConnectError::Rejected)
            }
            // Never the error text of the driver: keep to the kind of failure.
            Some(c) => {
                Err(ConnectError::Unreachable(format!("the server refused the connection (SQLSTATE {})", c.code())))
            }
            None => Err(ConnectError::Unreachable("the server could not be reached".into())),
        },
    }
}

/// Runs one job with the built-in PostgreSQL rotator. Never panics; every
/// failure ends the job through the engine (which retries with backoff).
pub async fn run(rotation: &RotationService, d: Dispatch, now_ms: i64) {
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
    let t = match target(&active, &key_map, &row.rotation_targets) {
        Ok(t) => t,
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
    let pending = match rotation.action_post_pending(&caller, &sid, &token, &policy).await {
        Ok(p) => p,
        Err(e) => return fail(format!("pending could not be stored: {e}")).await,
    };
    let Some(new_pw) = password_of(&pending, &t.password_key) else {
        return fail("pending has no password".into()).await;
    };
    step("pending-ready", t1, true, "pending is stored".into()).await;
    fail::fail_point!("pg-after-pending", |_| crash());

    // apply
    let t2 = Instant::now();
    let outcome = apply(rotation, &config, &t, &new_pw, &active, chain.previous.as_ref().map(|(_, v)| v)).await;
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

    fail::fail_point!("pg-after-apply", |_| crash());

    // test
    let t3 = Instant::now();
    match connect(&t, &t.user, &new_pw).await {
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

    fail::fail_point!("pg-before-complete", |_| crash());

    // complete
    if let Err(e) = rotation.action_complete(&caller, &sid, &token).await {
        fail(format!("complete failed: {e}")).await;
    }
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

async fn apply(
    rotation: &RotationService,
    config: &Value,
    t: &Target,
    new_pw: &SecretString,
    active: &SecretValue,
    previous: Option<&SecretValue>,
) -> Apply {
    match connect(t, &t.user, new_pw).await {
        Ok(_) => return Apply::AlreadyApplied,
        Err(ConnectError::Rejected) => {}
        Err(ConnectError::Unreachable(why)) => return Apply::Failed(why),
    }
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
        let at = match target(&admin, &key_map, &[admin_key(&admin)]) {
            Ok(at) => at,
            Err(e) => return Apply::Failed(format!("admin secret: {e}")),
        };
        if at.user == t.user {
            return Apply::Failed("the admin credential is the managed role itself; use mode self".into());
        }
        let Some(pw) = password_of(&admin, &at.password_key) else {
            return Apply::Failed("admin secret has no password".into());
        };
        let at = Target { host: t.host.clone(), port: t.port, database: t.database.clone(), ..at };
        match connect(&at, &at.user, &pw).await {
            Ok(c) => (c, "the admin credential"),
            Err(e) => return Apply::Failed(format!("the admin credential does not log in: {e:?}")),
        }
    } else {
        let mut found = None;
        for (label, value) in [("active", Some(active)), ("previous", previous)] {
            let Some(pw) = value.and_then(|v| password_of(v, &t.password_key)) else { continue };
            match connect(t, &t.user, &pw).await {
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
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let verifier = scram_verifier(new_pw.expose_secret(), &salt, SCRAM_ITERATIONS);
    // The verifier is base64 and punctuation `$:` only: safe inside '…'.
    let sql = format!("ALTER ROLE {} PASSWORD '{verifier}'", quote_ident(&t.user));
    match client.batch_execute(&sql).await {
        Ok(()) => Apply::Changed(via),
        Err(e) => match e.code() {
            // The server answered: a definite refusal, nothing was changed.
            Some(c) if c.code().starts_with("22") || c.code().starts_with("28") => {
                Apply::Rejected(format!("SQLSTATE {}", c.code()))
            }
            Some(c) => Apply::Failed(format!("ALTER ROLE failed (SQLSTATE {})", c.code())),
            // No answer: the change may or may not have happened; pending is kept.
            None => Apply::Failed("the connection was lost during ALTER ROLE (outcome unknown; pending kept)".into()),
        },
    }
}

/// The admin secret's password key, whatever its name.
fn admin_key(admin: &SecretValue) -> String {
    ["password", "cdbPassword"].iter().find(|k| admin.keys().iter().any(|x| x == *k)).unwrap_or(&"password").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example password and salt ("pencil", W22ZaJ0SNY7soEsUEjb6gQ==,
    /// 4096 iterations); the expected verifier was computed independently with
    /// Python's hashlib/hmac. The integration tests log in with verifiers made
    /// here, which PostgreSQL only accepts if they are right.
    #[test]
    fn verifier_format() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = scram_verifier("pencil", &salt, 4096);
        assert!(v.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"), "{v}");
        assert_eq!(v, include_str!("scram_kat.txt").trim());
    }

    #[test]
    fn identifiers() {
        assert_eq!(quote_ident("app\"q"), "\"app\"\"q\"");
        assert_eq!(quote_ident("select"), "\"select\"");
    }
}
