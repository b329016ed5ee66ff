//! The real `rotary server` binary: first start, second start, configuration,
//! and no secret in its output at the most verbose log level.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rotary_client::Client;
use secrecy::SecretString;
use serde_json::json;

struct Server {
    child: Child,
    stdout: Vec<String>,
    stderr_rx: Option<std::thread::JoinHandle<String>>,
    addr: String,
}

fn spawn(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Result<Server, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rotary"));
    cmd.arg("server")
        .args(args)
        .env_remove("RUST_LOG")
        .env("ROTARY_DATA_DIR", dir)
        .env("ROTARY_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn rotary");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_rx = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = vec![];
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => {
                if let Some(a) = l.strip_prefix("Rotary listening on ") {
                    let addr = a.to_owned();
                    lines.push(l);
                    return Ok(Server { child, stdout: lines, stderr_rx: Some(stderr_rx), addr });
                }
                lines.push(l);
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                let err = stderr_rx.join().unwrap();
                return Err(format!("server did not start ({status}): {}\n{err}", lines.join("\n")));
            }
        }
    }
}

impl Server {
    fn printed(&self, var: &str) -> Option<String> {
        self.stdout.iter().find_map(|l| l.trim().strip_prefix(&format!("{var}=")).map(str::to_owned))
    }
    fn admin(&self) -> Client {
        Client::new(
            &self.addr,
            &self.printed("ROTARY_ACCESS_KEY").expect("access key printed"),
            SecretString::from(self.printed("ROTARY_SECRET_KEY").expect("secret key printed")),
        )
    }
    fn admin_with(&self, ak: &str, sk: &str) -> Client {
        Client::new(&self.addr, ak, SecretString::from(sk.to_owned()))
    }

    /// Stops the server and returns everything it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        self.stderr_rx.take().unwrap().join().unwrap()
    }
}

#[tokio::test]
async fn first_start_creates_everything_and_second_start_prints_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = spawn(&dir, &[], &[]).unwrap();
    let secret = s.printed("ROTARY_SECRET_KEY").expect("first start prints the secret key");
    let access = s.printed("ROTARY_ACCESS_KEY").expect("first start prints the access key");
    assert_eq!(secret.len(), 40);
    assert_eq!(std::fs::metadata(dir.join("master.key")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(dir.join("rotary.db").exists());
    let admin = s.admin();
    let id = admin.create_secret("first", &json!({"k": "v"}), &[]).await.unwrap();
    s.stop();

    let s2 = spawn(&dir, &[], &[]).unwrap();
    assert!(s2.printed("ROTARY_SECRET_KEY").is_none(), "a second start prints no secret: {:?}", s2.stdout);
    let admin = Client::new(&s2.addr, &access, SecretString::from(secret.clone()));
    let v = admin.values(&id).await.unwrap();
    assert_eq!(v["decryptedSecretChain"]["active"], "{\"k\":\"v\"}", "data and keys survive a restart");
    s2.stop();

    // A wrong master key is refused with a clear message, not garbage.
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let err = spawn(&dir, &[("ROTARY_MASTER_KEY", other)], &[]).err().expect("wrong key must not start");
    assert!(err.contains("does not match"), "{err}");
}

#[tokio::test]
async fn unattended_install_takes_the_admin_key_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let env =
        [("ROTARY_ADMIN_ACCESS_KEY", "DEPLOYADMIN0001"), ("ROTARY_ADMIN_SECRET_KEY", "deploy-secret-key-0123456789")];
    let s = spawn(&tmp.path().join("d"), &env, &[]).unwrap();
    assert!(s.printed("ROTARY_SECRET_KEY").is_none());
    let c = Client::new(&s.addr, "DEPLOYADMIN0001", SecretString::from("deploy-secret-key-0123456789".to_owned()));
    assert_eq!(c.get("/api/v1/secrets").await.unwrap().status, 200);
    let out = s.stop();
    assert!(!out.contains("deploy-secret-key"));
}

#[tokio::test]
async fn toml_configuration_is_read_and_typos_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("rotary.toml");
    std::fs::write(&cfg, "history_limit = 2\nrecovery_window_days = 3\nlog = \"debug\"\n").unwrap();
    let s = spawn(&tmp.path().join("d"), &[], &["--config", cfg.to_str().unwrap()]).unwrap();
    let admin = s.admin();
    let id = admin.create_secret("c", &json!({"k": "v"}), &[]).await.unwrap();
    let d =
        admin.post(&format!("/api/v1/secrets/{id}/request-deletion"), &json!({})).await.unwrap().into_data().unwrap();
    assert_eq!(d["expectedDestroyDate"].as_i64().unwrap() - d["updateDate"].as_i64().unwrap(), 3 * 86_400_000);
    s.stop();

    std::fs::write(&cfg, "histroy_limit = 2\n").unwrap();
    let err = spawn(&tmp.path().join("d2"), &[], &["--config", cfg.to_str().unwrap()]).err().unwrap();
    assert!(err.contains("histroy_limit"), "{err}");
    let err = spawn(&tmp.path().join("d3"), &[("ROTARY_LISTEN", "nowhere")], &[]).err().unwrap();
    assert!(err.contains("host:port"), "{err}");
}

#[tokio::test]
async fn trace_logging_never_prints_a_value_or_secret_key() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spawn(&tmp.path().join("d"), &[("RUST_LOG", "trace")], &[]).unwrap();
    let admin = s.admin();
    let admin_secret = s.printed("ROTARY_SECRET_KEY").unwrap();
    let values = ["LogLeak-Pw-Active-88123", "LogLeak-Pw-Put-55120", "LogLeak-Pw-Bad-77001"];
    let id = admin.create_secret("leak", &json!({"password": values[0]}), &["password"]).await.unwrap();
    admin.values(&id).await.unwrap();
    admin.get(&format!("/api/v1/secrets/{id}/active")).await.unwrap();
    admin
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": json!({"password": values[1]}).to_string()}))
        .await
        .unwrap();
    // Rejected inputs that carry a value.
    admin.post("/api/v1/secrets", &json!({"secretName": "x", "secretValue": values[2]})).await.unwrap();
    admin
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": format!("{{\"password\": \"{}\"", values[2])}))
        .await
        .unwrap();
    let key = admin.post("/api/v1/access-keys", &json!({"role": "reader"})).await.unwrap().into_data().unwrap();
    let new_secret = key["secretKey"].as_str().unwrap().to_owned();
    let stdout = s.stdout.join("\n");
    let stderr = s.stop();
    assert!(stderr.contains("TRACE") || stderr.contains("DEBUG"), "the test must really run at a verbose level");
    assert!(stderr.contains("GetSecretValue"), "request logging is on");
    for v in values.iter().map(|v| v.to_string()).chain([new_secret, admin_secret.clone()]) {
        assert!(!stderr.contains(&v), "the log holds a secret");
    }
    assert_eq!(stdout.matches(&admin_secret).count(), 1, "the first admin key is printed exactly once, on stdout");
}

#[tokio::test]
async fn bad_admin_settings_create_nothing_and_numeric_secrets_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let err = spawn(&dir, &[("ROTARY_ADMIN_ACCESS_KEY", "ONLYACCESSKEY01")], &[]).err().unwrap();
    assert!(err.contains("set both"), "{err}");
    assert!(!dir.join("rotary.db").exists(), "a refused start creates no database");

    // Digits-only keys are strings, and their values never appear in errors.
    let env = [("ROTARY_ADMIN_ACCESS_KEY", "12345678"), ("ROTARY_ADMIN_SECRET_KEY", "0827461930571826")];
    let s = spawn(&dir, &env, &[]).unwrap();
    let c = Client::new(&s.addr, "12345678", SecretString::from("0827461930571826".to_owned()));
    assert_eq!(c.get("/api/v1/secrets").await.unwrap().status, 200);

    // One server per data directory.
    let err = spawn(&dir, &[], &[]).err().expect("a second server on the same directory must not start");
    assert!(err.contains("already using"), "{err}");
    s.stop();

    let err = spawn(&tmp.path().join("e"), &[("ROTARY_LOG", "inf")], &[]).err().unwrap();
    assert!(err.contains("not a level"), "{err}");
}

#[tokio::test]
async fn trace_logging_never_prints_a_password_during_builtin_rotations() {
    let pg = rotary_testkit::PgServer::start(&[]);
    pg.create_role("trace_user", "Trace-Initial-Pw-1").await;
    let tmp = tempfile::tempdir().unwrap();
    let s =
        spawn(&tmp.path().join("d"), &[("RUST_LOG", "trace"), ("ROTARY_SCHEDULER_INTERVAL_MS", "50")], &[]).unwrap();
    let admin = s.admin();
    let t = admin
        .post("/api/v1/triggers", &json!({"name": "pg", "type": "postgres", "config": {}}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let value = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": "trace_user", "password": "Trace-Initial-Pw-1"});
    let id = admin.create_secret("trace", &value, &["password"]).await.unwrap();
    admin
        .put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": t["triggerId"]}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let mut passwords = vec!["Trace-Initial-Pw-1".to_owned()];
    for _ in 0..2 {
        let job = admin.post(&format!("/api/v1/secrets/{id}/rotation"), &json!({})).await.unwrap().into_data().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let logs = admin.get(&format!("/api/v1/secrets/{id}/logs")).await.unwrap().into_data().unwrap();
            let j = logs["jobList"].as_array().unwrap().iter().find(|j| j["jobId"] == job["jobId"]).unwrap().clone();
            if j["status"] == "SUCCEEDED" {
                break;
            }
            assert!(!["FAILED", "TIMED_OUT"].contains(&j["status"].as_str().unwrap()), "{j:#}");
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let v = admin.values(&id).await.unwrap();
        let active: serde_json::Value =
            serde_json::from_str(v["decryptedSecretChain"]["active"].as_str().unwrap()).unwrap();
        passwords.push(active["password"].as_str().unwrap().to_owned());
    }
    assert!(pg.can_login("trace_user", passwords.last().unwrap()).await);
    let stderr = s.stop();
    assert!(stderr.contains("TRACE") || stderr.contains("DEBUG"), "verbose logging is on");
    assert!(!stderr.contains("SCRAM-SHA-256$"), "not even the password verifiers the driver sent");
    for p in &passwords {
        assert!(!stderr.contains(p.as_str()), "a password reached the server's trace output");
    }
}

/// Runs the `rotary` client binary with a private config dir.
fn cli(cfg_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(args)
        .env("ROTARY_CONFIG_DIR", cfg_dir)
        .env_remove("ROTARY_ENDPOINT")
        .env_remove("ROTARY_ACCESS_KEY")
        .env_remove("ROTARY_SECRET_KEY")
        .output()
        .expect("rotary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_logs_in_manages_secrets_renders_formats_and_reports_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let env =
        [("ROTARY_ADMIN_ACCESS_KEY", "CLIADMIN00000001"), ("ROTARY_ADMIN_SECRET_KEY", "cli-admin-secret-key-0001")];
    let s = spawn(&tmp.path().join("d"), &env, &[]).unwrap();
    let cfg = tmp.path().join("cfg");
    let keyfile = tmp.path().join("key.txt");
    std::fs::write(&keyfile, "cli-admin-secret-key-0001\n").unwrap();
    let (ok, out, err) = cli(
        &cfg,
        &[
            "login",
            "--endpoint",
            &s.addr,
            "--access-key",
            "CLIADMIN00000001",
            "--secret-key-file",
            keyfile.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("saved profile"));
    assert_eq!(std::fs::metadata(cfg.join("default.secret")).unwrap().permissions().mode() & 0o777, 0o600);

    let pw = "p@ss:w/rd?#[]%^&=+ '\"\\;ab%3Ecd";
    let pw_arg = format!("password={pw}");
    let (ok, _, err) = cli(
        &cfg,
        &[
            "secret",
            "create",
            "app/db",
            "host=db.example",
            "port=5432",
            "user=app",
            "database=main",
            &pw_arg,
            "--rotate",
            "password",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = cli(&cfg, &["secret", "list", "--json"]);
    assert!(ok && out.contains("\"secretName\": \"app/db\""), "{out}");
    let (ok, out, _) = cli(&cfg, &["secret", "list"]);
    assert!(ok && out.starts_with("NAME") && out.contains("app/db"), "{out}");
    let (ok, out, _) = cli(&cfg, &["secret", "get", "app/db", "--field", "password"]);
    assert!(ok);
    assert_eq!(out.trim_end_matches('\n'), pw);
    let (ok, out, _) = cli(&cfg, &["secret", "show", "app/db"]);
    assert!(ok && out.contains("********") && !out.contains("ab%3Ecd"), "show masks values: {out}");

    // URL: every special character survives a round trip.
    let (ok, out, err) = cli(&cfg, &["secret", "get", "app/db", "--format", "url"]);
    assert!(ok, "{err}");
    let url = out.trim();
    assert!(url.starts_with("postgresql://app:") && url.ends_with("@db.example:5432/main"), "{url}");
    let encoded = url.trim_start_matches("postgresql://app:").split('@').next().unwrap();
    let decoded = String::from_utf8(
        encoded
            .split('%')
            .enumerate()
            .flat_map(|(i, part)| {
                if i == 0 {
                    part.as_bytes().to_vec()
                } else {
                    let mut v = vec![u8::from_str_radix(&part[..2], 16).unwrap()];
                    v.extend_from_slice(&part.as_bytes()[2..]);
                    v
                }
            })
            .collect(),
    )
    .unwrap();
    assert_eq!(decoded, pw);

    // env: shell-safe export lines.
    let (ok, out, _) = cli(&cfg, &["secret", "get", "app/db", "--format", "env", "--prefix", "DB_"]);
    assert!(ok);
    let sh = Command::new("sh").arg("-c").arg(format!("{out}\nprintf '%s' \"$DB_PASSWORD\"")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&sh.stdout), pw);
    let (ok, out, _) = cli(&cfg, &["secret", "get", "app/db", "--format", "dotenv"]);
    assert!(ok && out.contains("HOST=\"db.example\""), "{out}");

    // put, previous, delete/restore.
    let (ok, _, err) = cli(
        &cfg,
        &["secret", "put", "app/db", "host=db.example", "port=5432", "user=app", "database=main", "password=second-Pw"],
    );
    assert!(ok, "{err}");
    let (_, out, _) = cli(&cfg, &["secret", "get", "app/db", "--stage", "previous", "--field", "password"]);
    assert_eq!(out.trim_end_matches('\n'), pw);
    assert!(cli(&cfg, &["secret", "delete", "app/db"]).0);
    let (ok, _, err) = cli(&cfg, &["secret", "get", "app/db"]);
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    assert!(
        err.contains("INVALID_STATUS") && err.contains("scheduled for deletion") && !err.contains("second-Pw"),
        "{err}"
    );
    assert!(cli(&cfg, &["secret", "restore", "app/db"]).0);
    assert!(cli(&cfg, &["secret", "get", "app/db"]).0);

    // A failing rotation exits non-zero; so does a secret that cannot rotate.
    let (ok, _, err) = cli(&cfg, &["rotate", "app/db", "--wait"]);
    assert!(!ok && err.contains("no trigger"), "{err}");
    let admin = s.admin_with("CLIADMIN00000001", "cli-admin-secret-key-0001");
    let t = admin
        .post("/api/v1/triggers", &json!({"name": "fails", "type": "exec", "config": {"command": ["false"]}}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let (_, list, _) = cli(&cfg, &["secret", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = list[0]["secretId"].as_str().unwrap();
    admin
        .put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": t["triggerId"]}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let (ok, out, err) = cli(&cfg, &["rotate", "app/db", "--wait"]);
    assert!(!ok, "{out}");
    assert!(err.contains("rotation failed"), "{err}");
    assert!(out.contains("dispatch"), "steps are shown as they happen: {out}");

    let (ok, out, _) = cli(&cfg, &["gen-password", "--length", "20", "--no-space"]);
    assert!(ok && out.trim_end().chars().count() == 20 && !out.trim_end().contains(' '));
    let (ok, out, _) = cli(&cfg, &["completions", "bash"]);
    assert!(ok && out.contains("rotary"));
    let (ok, _, err) = cli(&cfg, &["secret", "create", "app/oops", "Bare-Value-Not-Echoed"]);
    assert!(!ok && err.contains("argument 1 is not KEY=VALUE") && !err.contains("Bare-Value"), "{err}");
    let (ok, _, err) = cli(&cfg, &["secret", "get", "nope"]);
    assert!(!ok && err.contains("no secret named"), "{err}");
    let (ok, _, err) = cli(&tmp.path().join("empty"), &["secret", "list"]);
    assert!(!ok && err.contains("rotary login"), "{err}");
    s.stop();
}

#[tokio::test]
async fn the_cli_covers_rotation_triggers_keys_audit_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("ROTARY_ADMIN_ACCESS_KEY", "CLIADMIN00000002"),
        ("ROTARY_ADMIN_SECRET_KEY", "cli-admin-secret-key-0002"),
        ("ROTARY_ROTATION_MAX_ATTEMPTS", "1"),
    ];
    let s = spawn(&tmp.path().join("d"), &env, &[]).unwrap();
    let cfg = tmp.path().join("cfg");
    let keyfile = tmp.path().join("key.txt");
    std::fs::write(&keyfile, "cli-admin-secret-key-0002").unwrap();
    let run = |args: &[&str]| cli(&cfg, args);
    assert!(
        run(&[
            "login",
            "--endpoint",
            &s.addr,
            "--access-key",
            "CLIADMIN00000002",
            "--secret-key-file",
            keyfile.to_str().unwrap()
        ])
        .0
    );
    assert!(run(&["secret", "create", "app/x", "user=u", "password=First-Pw-1", "--rotate", "password"]).0);

    // Secret odds and ends.
    assert!(run(&["secret", "memo", "app/x", "the x service"]).0);
    assert!(run(&["secret", "disable", "app/x"]).0);
    assert!(!run(&["secret", "get", "app/x"]).0, "a disabled secret's value is unreadable");
    assert!(run(&["secret", "enable", "app/x"]).0);
    assert!(run(&["secret", "put", "app/x", "user=u", "password=Second-Pw-2"]).0);
    let (ok, out, _) = run(&["secret", "history", "app/x"]);
    assert!(ok && out.contains("active") && out.contains("previous"), "{out}");

    // Triggers and rotation settings.
    let (ok, _, err) = run(&["trigger", "create", "noop", "--type", "exec", "--config", "{\"command\":[\"false\"]}"]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(&["trigger", "list"]);
    assert!(ok && out.contains("noop"), "{out}");
    let (ok, out, err) = run(&["rotation", "enable", "app/x", "--period", "30", "--trigger", "noop"]);
    assert!(ok && out.contains("rotation enabled"), "{out}{err}");
    assert!(run(&["rotation", "period", "app/x", "7"]).0);
    let (ok, out, _) = run(&["secret", "show", "app/x", "--json"]);
    assert!(ok && out.contains("\"autoRotationPeriod\": 7"), "{out}");
    let (ok, _, _) = run(&["rotate", "app/x", "--wait"]);
    assert!(!ok, "the noop function fails the job");
    let (ok, out, _) = run(&["rotation", "jobs", "app/x"]);
    assert!(ok && out.contains("FAILED"), "{out}");
    let (ok, out, _) = run(&["rotation", "logs", "app/x"]);
    assert!(ok && out.contains("dispatch"), "{out}");
    let (ok, _, err) = run(&["trigger", "delete", "noop"]);
    assert!(!ok && err.contains("unlink"), "{err}");
    assert!(run(&["rotation", "disable", "app/x"]).0);
    let (ok, _, err) = run(&["rotation", "rollback", "app/x"]);
    assert!(ok, "{err} {:?}", run(&["rotation", "jobs", "app/x"]));
    let (_, out, _) = run(&["secret", "get", "app/x", "--field", "password"]);
    assert_eq!(out.trim(), "First-Pw-1", "rollback made previous active");

    // Top-level cancel and retry, with a function that takes its time.
    assert!(run(&["trigger", "create", "slow", "--type", "exec", "--config", "{\"command\":[\"sleep\",\"30\"]}"]).0);
    assert!(run(&["rotation", "enable", "app/x", "--period", "30", "--trigger", "slow"]).0);
    assert!(run(&["rotate", "app/x"]).0);
    let (ok, out, err) = run(&["cancel", "app/x"]);
    assert!(ok && out.contains("cancelled"), "{out}{err}");
    let (ok, out, err) = run(&["retry", "app/x"]);
    assert!(ok && out.contains("retry queued"), "{out}{err}");
    assert!(run(&["cancel", "app/x"]).0);
    let (ok, out, _) = run(&["jobs", "app/x"]);
    assert!(ok && out.matches("CANCELLED").count() == 2, "{out}");
    assert!(run(&["logs", "app/x"]).0);
    assert!(run(&["rotation", "disable", "app/x"]).0);

    // Values from a file and from stdin.
    let f = tmp.path().join("v.json");
    std::fs::write(&f, "{\"token\":\"From-File-1\"}").unwrap();
    assert!(run(&["secret", "create", "app/file", "--from-file", f.to_str().unwrap()]).0);
    assert_eq!(run(&["secret", "get", "app/file", "--field", "token"]).1.trim(), "From-File-1");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(["secret", "create", "app/stdin"])
        .env("ROTARY_CONFIG_DIR", &cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"{\"token\":\"From-Stdin-1\"}").unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(run(&["secret", "get", "app/stdin", "--field", "token"]).1.trim(), "From-Stdin-1");

    // Keys and audit.
    let (ok, out, _) = run(&["key", "create", "--role", "reader", "--secrets", "app/*"]);
    assert!(ok && out.contains("secret key:"), "{out}");
    let ak = out.lines().next().unwrap().trim_start_matches("access key: ").trim().to_owned();
    let (ok, out, _) = run(&["key", "list"]);
    assert!(ok && out.contains(&ak) && out.contains("app/*"), "{out}");
    assert!(run(&["key", "revoke", &ak]).0);
    let (ok, out, _) = run(&["audit", "list", "--limit", "5"]);
    assert!(ok && out.contains("RevokeAccessKey"), "{out}");
    let (ok, out, _) = run(&["audit", "verify"]);
    assert!(ok && out.contains("valid"), "{out}");

    // run: the environment and the exit code.
    let (ok, _, err) = run(&[
        "run",
        "--secret",
        "app/x",
        "--prefix",
        "X_",
        "--",
        "sh",
        "-c",
        "test \"$X_PASSWORD\" = First-Pw-1 && exit 7",
    ]);
    assert!(!ok);
    let code = Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(["run", "--secret", "app/x", "--", "sh", "-c", "test \"$PASSWORD\" = First-Pw-1 && exit 7"])
        .env("ROTARY_CONFIG_DIR", &cfg)
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(7), "{err}");

    let code = Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args([
            "run",
            "--secret",
            "app/x",
            "--name",
            "password=PGPASSWORD",
            "--",
            "sh",
            "-c",
            "test \"$PGPASSWORD\" = First-Pw-1",
        ])
        .env("ROTARY_CONFIG_DIR", &cfg)
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(0), "--name maps a key to a variable");

    // logs --follow keeps printing.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(["logs", "app/x", "--follow"])
        .env("ROTARY_CONFIG_DIR", &cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let first = BufReader::new(follow.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    assert!(first.contains("job-"), "{first}");
    assert!(follow.try_wait().unwrap().is_none(), "--follow keeps running");
    let _ = follow.kill();
    let _ = follow.wait();

    // run: signals pass through, and --watch restarts on a new value.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rotary"))
        .args(["run", "--secret", "app/x", "--watch", "1", "--", "sh", "-c"])
        .arg("trap 'exit 42' TERM; echo \"start $PASSWORD\"; while true; do sleep 0.1; done")
        .env("ROTARY_CONFIG_DIR", &cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "start First-Pw-1");
    let admin = s.admin_with("CLIADMIN00000002", "cli-admin-secret-key-0002");
    let (_, list, _) = run(&["secret", "list", "--json"]);
    let id = serde_json::from_str::<serde_json::Value>(&list).unwrap()[0]["secretId"].as_str().unwrap().to_owned();
    admin
        .put(
            &format!("/api/v1/secrets/{id}/values"),
            &json!({"value": json!({"user": "u", "password": "Third-Pw-3"}).to_string()}),
        )
        .await
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "start Third-Pw-3", "--watch restarted the command with the new value");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert_eq!(child.wait().unwrap().code(), Some(42), "SIGTERM reached the command and its exit code came back");
    s.stop();
}

/// `rotary login` prompts on the terminal for the secret key and does not echo it.
#[test]
fn login_prompts_for_the_secret_key_without_echo() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cfg");
    let script = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], ["rotary", "login", "--endpoint", "http://127.0.0.1:1", "--access-key", "AKPROMPT"])
out = b""
deadline = time.time() + 20
while b"secret key:" not in out and time.time() < deadline:
    out += os.read(fd, 1000)
# Type only once the prompt has turned echo off, as a person would.
import termios
while termios.tcgetattr(fd)[3] & termios.ECHO and time.time() < deadline:
    time.sleep(0.01)
os.write(fd, b"Typed-Secret-Key-123\n")
try:
    while True:
        d = os.read(fd, 1000)
        if not d:
            break
        out += d
except OSError:
    pass
os.waitpid(pid, 0)
sys.stdout.write(out.decode())
"#;
    let out = Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_rotary")])
        .env("ROTARY_CONFIG_DIR", &cfg)
        .env_remove("ROTARY_SECRET_KEY")
        .env_remove("ROTARY_ENDPOINT")
        .env_remove("ROTARY_ACCESS_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("secret key:") && text.contains("saved profile"), "{text}");
    assert!(!text.contains("Typed-Secret-Key-123"), "the secret key was echoed: {text}");
    assert_eq!(std::fs::read_to_string(cfg.join("default.secret")).unwrap().trim(), "Typed-Secret-Key-123");
    assert_eq!(std::fs::metadata(cfg.join("default.secret")).unwrap().permissions().mode() & 0o777, 0o600);
}
