//! Crash safety of the built-in rotator: the server process is killed with
//! SIGKILL at each step of a rotation (failpoints, compiled into test builds
//! only), restarted, and must finish the rotation without ever leaving the
//! database with a password the store lacks.
//!
//! The server runs in a child process: this test binary started again with
//! `ROTARY_CRASH_CHILD` set, running only `child_server_entry_point`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rotary_client::Client;
use rotary_core::SystemClock;
use rotary_server::Config;
use rotary_testkit::{PgServer, free_port};
use secrecy::SecretString;
use serde_json::{Value, json};

const AK: &str = "CRASHADMIN000001";
const SK: &str = "crash-admin-secret-key-0001";

/// Not a test: the child process's server. Without `ROTARY_CRASH_CHILD` it
/// returns at once; with it, it serves until killed.
#[tokio::test]
async fn child_server_entry_point() {
    let Ok(spec) = std::env::var("ROTARY_CRASH_CHILD") else { return };
    let (dir, port) = spec.split_once('|').unwrap();
    let _failpoints = fail::FailScenario::setup();
    let mut cfg = Config {
        data_dir: dir.into(),
        listen: format!("127.0.0.1:{port}"),
        scheduler_interval_ms: 50,
        rotation_max_attempts: 5,
        rotation_retry_base_secs: 0,
        rotation_retry_cap_secs: 0,
        ..Config::default()
    };
    cfg.admin_access_key = Some(AK.into());
    cfg.admin_secret_key = Some(SecretString::from(SK.to_owned()));
    let running = rotary_server::start(&cfg, Arc::new(SystemClock)).await.unwrap();
    println!("CHILD READY");
    running.wait().await.unwrap();
}

fn spawn_child(dir: &std::path::Path, port: u16, failpoints: Option<&str>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "crash::child_server_entry_point", "--nocapture", "--test-threads=1"])
        .env("ROTARY_CRASH_CHILD", format!("{}|{port}", dir.display()))
        .env_remove("FAILPOINTS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(f) = failpoints {
        cmd.env("FAILPOINTS", f);
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let ready = out.lines().any(|l| l.is_ok_and(|l| l.contains("CHILD READY")));
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child server did not start");
    }
    child
}

async fn candidates(c: &Client, id: &str) -> Vec<String> {
    let mut out = vec![];
    let v = c.values(id).await.unwrap();
    for (_, s) in v["decryptedSecretChain"].as_object().unwrap() {
        let val: Value = serde_json::from_str(s.as_str().unwrap()).unwrap();
        out.push(val["password"].as_str().unwrap().to_owned());
    }
    let logs = c.get(&format!("/api/v1/secrets/{id}/logs?pageSize=100")).await.unwrap().into_data().unwrap();
    for j in logs["jobList"].as_array().unwrap() {
        let path = format!("/api/v1/secrets/{id}/jobs/{}/generated-values", j["jobId"].as_str().unwrap());
        let g = c.get(&path).await.unwrap().into_data().unwrap();
        for v in g["valueList"].as_array().unwrap() {
            let text = v["value"].as_str().unwrap();
            match serde_json::from_str::<Value>(text) {
                Ok(val) => out.push(val["password"].as_str().unwrap_or_default().to_owned()),
                Err(_) => out.push(text.to_owned()),
            }
        }
    }
    out
}

async fn crash_at(point: &str, user: &str) {
    let pg = PgServer::start(&[]);
    let initial = format!("Crash-{user}-Start-Pw");
    pg.create_role(user, &initial).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let c = Client::new(&base, AK, SecretString::from(SK.to_owned()));

    let mut child = spawn_child(dir.path(), port, Some(&format!("{point}=return")));
    let t = c
        .post("/api/v1/triggers", &json!({"name": "pg", "type": "postgres", "config": {"timeoutSeconds": 2}}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let value = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": user, "password": initial});
    let id = c.create_secret("crash", &value, &["password"]).await.unwrap();
    c.put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": t["triggerId"]}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    c.post(&format!("/api/v1/secrets/{id}/rotation"), &json!({})).await.unwrap().into_data().unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not reach failpoint {point}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "killed at {point}");

    // Restarted: the database's password is one the store holds.
    let mut child = spawn_child(dir.path(), port, None);
    let c = Client::new(&base, AK, SecretString::from(SK.to_owned())); // no pooled connection to the dead one
    let stored = candidates(&c, &id).await;
    let mut works = false;
    for p in &stored {
        works |= pg.can_login(user, p).await;
    }
    assert!(works, "after a crash at {point} the database holds a password the store lacks");

    // The rotation finishes (the orphaned job times out, the retry completes).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = c.get(&format!("/api/v1/secrets/{id}/logs")).await.unwrap().into_data().unwrap();
        if logs["jobList"].as_array().unwrap().iter().any(|j| j["status"] == "SUCCEEDED") {
            break;
        }
        assert!(Instant::now() < deadline, "no successful rotation after a crash at {point}: {logs:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v = c.values(&id).await.unwrap();
    let active: Value = serde_json::from_str(v["decryptedSecretChain"]["active"].as_str().unwrap()).unwrap();
    let active = active["password"].as_str().unwrap();
    assert_ne!(active, initial);
    assert!(pg.can_login(user, active).await, "after a crash at {point} the role logs in with active");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn killed_after_pending_is_stored() {
    crash_at("rotator-after-pending", "crash_a").await;
}

#[tokio::test]
async fn killed_after_the_password_changed() {
    crash_at("rotator-after-apply", "crash_b").await;
}

#[tokio::test]
async fn killed_after_the_test_login() {
    crash_at("rotator-before-complete", "crash_c").await;
}

#[tokio::test]
async fn killed_during_complete() {
    crash_at("complete-before-commit", "crash_d").await;
}
