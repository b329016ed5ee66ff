//! Rotation: the seed's Python function, unmodified, rotates a real
//! PostgreSQL password; schedules, retries, timeouts, recovery and the action API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rotary_client::{Client, Method};
use rotary_core::OffsetClock;
use rotary_testkit::{PgServer, seed_runner};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

const DAY: i64 = 86_400_000;

pub struct Rig {
    pub app: TestApp,
    pub clock: Arc<OffsetClock>,
    /// The rotation function's own access key (manager role).
    pub fn_key: (String, String),
}

pub async fn rig(max_attempts: i64) -> Rig {
    let clock = Arc::new(OffsetClock::default());
    let app = spawn_app_with(
        |c| {
            c.scheduler_interval_ms = 50;
            c.rotation_max_attempts = max_attempts;
            c.rotation_retry_base_secs = 0;
            c.rotation_retry_cap_secs = 0;
        },
        clock.clone(),
    )
    .await;
    let k = app.admin.post("/api/v1/access-keys", &json!({"role": "manager"})).await.unwrap().into_data().unwrap();
    let fn_key = (k["accessKey"].as_str().unwrap().to_owned(), k["secretKey"].as_str().unwrap().to_owned());
    Rig { app, clock, fn_key }
}

impl Rig {
    /// The admin client, signing with the server's (moved) clock.
    pub fn admin(&self) -> Client {
        let a = self.app.server.first_admin.as_ref().unwrap();
        Client::new(&self.app.base, &a.access_key, SecretString::from(a.secret_key.expose_secret().to_owned()))
            .with_time_offset_ms(self.clock.offset_ms())
    }

    pub async fn trigger(&self, name: &str, command: Value, extra: Value) -> String {
        let mut params = json!({"accessKey": self.fn_key.0, "secretKey": self.fn_key.1});
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        let body = json!({"name": name, "type": "exec", "config": {"command": command, "timeoutSeconds": 60}, "defaultParams": params});
        let d = self.admin().post("/api/v1/triggers", &body).await.unwrap().into_data().unwrap();
        d["triggerId"].as_str().unwrap().to_owned()
    }

    pub async fn seed_trigger(&self, name: &str, flags: &[&str], clock_offset_ms: i64) -> String {
        let mut cmd = vec![json!("python3"), json!(seed_runner().to_str().unwrap())];
        cmd.extend(flags.iter().map(|f| json!(f)));
        let extra =
            if clock_offset_ms != 0 { json!({"clockOffsetMs": clock_offset_ms.to_string()}) } else { json!({}) };
        self.trigger(name, Value::Array(cmd), extra).await
    }

    pub async fn db_secret(&self, pg: &PgServer, name: &str, user: &str, password: &str, trigger: &str) -> String {
        pg.create_role(user, password).await;
        let value = json!({"cdbHost": "127.0.0.1", "cdbPort": pg.port.to_string(), "cdbDatabase": "postgres",
                           "cdbUser": user, "cdbPassword": password});
        let id = self.admin().create_secret(name, &value, &["cdbPassword"]).await.unwrap();
        self.link(&id, trigger).await;
        id
    }

    pub async fn link(&self, id: &str, trigger: &str) {
        let r =
            self.admin().put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": trigger})).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    pub async fn chain(&self, id: &str) -> Value {
        let data = self.admin().values(id).await.unwrap();
        let mut out = serde_json::Map::new();
        for (k, v) in data["decryptedSecretChain"].as_object().unwrap() {
            out.insert(k.clone(), serde_json::from_str(v.as_str().unwrap()).unwrap());
        }
        Value::Object(out)
    }

    pub async fn logs(&self, id: &str) -> Value {
        self.admin().get(&format!("/api/v1/secrets/{id}/logs?pageSize=100")).await.unwrap().into_data().unwrap()
    }

    pub async fn rotate(&self, id: &str) -> Value {
        let r = self.admin().post(&format!("/api/v1/secrets/{id}/rotation"), &json!({})).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["data"].clone()
    }

    /// Waits for the job to reach one of `statuses` and its function to have
    /// ended (jobs are run by real processes; their output is logged on exit).
    pub async fn wait_job(&self, id: &str, job_id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let logs = self.logs(id).await;
            if let Some(j) = logs["jobList"].as_array().unwrap().iter().find(|j| j["jobId"] == job_id)
                && statuses.contains(&j["status"].as_str().unwrap())
                && step_names(j).iter().any(|s| s == "function")
            {
                return j.clone();
            }
            assert!(Instant::now() < deadline, "job {job_id} never reached {statuses:?}: {logs:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the newest job of `kind` to reach one of `statuses`.
    pub async fn wait_kind(&self, id: &str, kind: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let logs = self.logs(id).await;
            if let Some(j) = logs["jobList"].as_array().unwrap().iter().find(|j| j["kind"] == kind)
                && statuses.contains(&j["status"].as_str().unwrap())
                && step_names(j).iter().any(|s| s == "function")
            {
                return j.clone();
            }
            assert!(Instant::now() < deadline, "no {kind} job reached {statuses:?}: {logs:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn step_names(job: &Value) -> Vec<String> {
    job["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_seed_function_rotates_a_real_postgres_password_now_again_and_on_schedule() {
    let rig = rig(3).await;
    let pg = PgServer::start(&[]);
    let initial = "Initial-Pw-0001";
    let trigger = rig.seed_trigger("seed", &[], 0).await;
    let id = rig.db_secret(&pg, "db/app", "app_user", initial, &trigger).await;

    // Rotate now.
    let job = rig.rotate(&id).await;
    assert_eq!(job["status"], "QUEUED");
    let job = rig.wait_job(&id, job["jobId"].as_str().unwrap(), &["SUCCEEDED", "FAILED", "TIMED_OUT"]).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let c = rig.chain(&id).await;
    let first = c["active"]["cdbPassword"].as_str().unwrap().to_owned();
    assert_ne!(first, initial);
    assert_eq!(c["previous"]["cdbPassword"], initial);
    assert!(c.get("pending").is_none(), "pending is cleared by complete");
    assert_eq!(c["active"]["cdbUser"], "app_user", "non-target keys are kept");
    assert!(pg.can_login("app_user", &first).await, "the role logs in with the new active password");
    assert!(!pg.can_login("app_user", initial).await, "and no longer with the old one");

    // The job log shows every step and none of the passwords (the seed prints them).
    let steps = step_names(&job);
    for s in ["queued", "dispatch", "start", "generate-random-secret", "pending", "complete", "stdout", "function"] {
        assert!(steps.iter().any(|x| x == s), "step {s} missing from {steps:?}");
    }
    let out =
        job["steps"].as_array().unwrap().iter().find(|s| s["step"] == "stdout").unwrap()["message"].as_str().unwrap();
    assert!(out.contains("[STEP6 COMPLETE] complete rotation"), "{out}");
    assert!(out.contains("[REDACTED]"), "the seed printed the password and it was masked: {out}");
    let all_logs = rig.logs(&id).await.to_string();
    assert!(!all_logs.contains(&first) && !all_logs.contains(initial), "a password reached the job log");
    let d = rig.admin().get(&format!("/api/v1/secrets/{id}")).await.unwrap().into_data().unwrap();
    assert_eq!(d["secretStatus"], "ENABLE");
    assert_eq!(d["rotationPhase"], "COMPLETED");
    assert!(d["lastRotationDate"].as_i64().is_some());

    // A second rotation.
    let job = rig.rotate(&id).await;
    let job = rig.wait_job(&id, job["jobId"].as_str().unwrap(), &["SUCCEEDED", "FAILED", "TIMED_OUT"]).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let c = rig.chain(&id).await;
    let second = c["active"]["cdbPassword"].as_str().unwrap().to_owned();
    assert_eq!(c["previous"]["cdbPassword"], first.as_str());
    assert!(pg.can_login("app_user", &second).await && !pg.can_login("app_user", &first).await);

    // A scheduled rotation, driven by the clock. The function signs with its own
    // clock, moved by the same amount (clockOffsetMs) so signatures stay valid.
    let ahead = DAY + 60_000;
    let later = rig.seed_trigger("seed-later", &[], ahead).await;
    let r = rig
        .admin()
        .post(&format!("/api/v1/secrets/{id}/enable-auto-rotation"), &json!({"rotationPeriod": 1, "triggerId": later}))
        .await
        .unwrap();
    let d = r.into_data().unwrap();
    assert_eq!((d["autoRotationYN"].as_str(), d["autoRotationPeriod"].as_i64()), (Some("Y"), Some(1)));
    let planned = d["nextRotationDate"].as_i64().unwrap();
    assert!((planned - (d["updateDate"].as_i64().unwrap() + DAY)).abs() < 1000);
    rig.app.server.state.wake.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.logs(&id).await["totalCount"], 2, "nothing rotates before it is due");

    rig.clock.advance(ahead);
    rig.app.server.state.wake.notify_one();
    let job = rig.wait_kind(&id, "SCHEDULED", &["SUCCEEDED", "FAILED", "TIMED_OUT"]).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let c = rig.chain(&id).await;
    let third = c["active"]["cdbPassword"].as_str().unwrap().to_owned();
    assert_eq!(c["previous"]["cdbPassword"], second.as_str());
    assert!(pg.can_login("app_user", &third).await && !pg.can_login("app_user", &second).await);
    let d = rig.admin().get(&format!("/api/v1/secrets/{id}")).await.unwrap().into_data().unwrap();
    let last = d["lastRotationDate"].as_i64().unwrap();
    assert_eq!(d["nextRotationDate"].as_i64().unwrap(), last + DAY, "the next rotation is planned from this one");
    assert_eq!(rig.logs(&id).await["totalCount"], 3, "exactly one scheduled rotation");
}

/// The function changed the database and died before saving pending: the
/// job ends as failed, active is untouched, and the generated value — the
/// password the database now has — is recoverable from the job, and kept as
/// pending so the retry tries it first and completes.
#[tokio::test]
async fn a_function_that_hangs_after_changing_the_database_times_out_and_nothing_is_lost() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[]);
    let initial = "Initial-Pw-0002";
    let hang = rig.seed_trigger("seed-hang", &["--hang-before", "update_pending"], 0).await;
    let id = rig.db_secret(&pg, "db/hang", "hang_user", initial, &hang).await;

    let job = rig.rotate(&id).await;
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    // Wait until the function changed the password in the database.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.can_login("hang_user", initial).await {
        assert!(Instant::now() < deadline, "the function never changed the password");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its deadline passes (the clock moves past the 60 s trigger timeout).
    rig.clock.advance(61_000);
    rig.app.server.state.wake.notify_one();
    let job = rig.wait_job(&id, &job_id, &["TIMED_OUT", "FAILED", "SUCCEEDED"]).await;
    assert_eq!(job["status"], "TIMED_OUT", "{job:#}");
    assert!(job["error"].as_str().unwrap().contains("no complete or fail within 60 s"));

    let c = rig.chain(&id).await;
    assert_eq!(c["active"]["cdbPassword"], initial, "active is untouched by a failed rotation");
    let values = rig
        .admin()
        .get(&format!("/api/v1/secrets/{id}/jobs/{job_id}/generated-values"))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let list = values["valueList"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["source"], "generate-random-secret");
    let generated = list[0]["value"].as_str().unwrap().to_owned();
    assert!(pg.can_login("hang_user", &generated).await, "the recoverable value is the database's password");
    assert_eq!(c["pending"]["cdbPassword"], generated.as_str(), "and it is kept as pending for the next attempt");
    assert!(!rig.logs(&id).await.to_string().contains(&generated));
    let audit = rig.admin().get("/api/v1/audit?pageSize=5").await.unwrap().into_data().unwrap();
    assert!(audit.to_string().contains("GetJobGeneratedValues"), "reading generated values is audited");

    // A non-admin cannot read generated values.
    let reader = rig.app.key("manager", None).await.with_time_offset_ms(rig.clock.offset_ms());
    let r = reader.get(&format!("/api/v1/secrets/{id}/jobs/{job_id}/generated-values")).await.unwrap();
    assert_eq!(r.status, 403);

    // Retry with the normal function: it finds pending working and completes.
    let seed = rig.seed_trigger("seed", &[], rig.clock.offset_ms()).await;
    rig.link(&id, &seed).await;
    let r = rig.admin().post(&format!("/api/v1/secrets/{id}/retry-rotation"), &json!({})).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let job = rig.wait_job(&id, r.body["data"]["jobId"].as_str().unwrap(), &["SUCCEEDED", "FAILED", "TIMED_OUT"]).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let c = rig.chain(&id).await;
    assert_eq!(c["active"]["cdbPassword"], generated.as_str());
    assert_eq!(c["previous"]["cdbPassword"], initial);
    assert!(pg.can_login("hang_user", &generated).await);
}

#[tokio::test]
async fn a_function_killed_after_changing_the_database_fails_at_once_and_is_recovered() {
    let rig = rig(2).await;
    let pg = PgServer::start(&[]);
    let initial = "Initial-Pw-0003";
    let kill = rig.seed_trigger("seed-kill", &["--kill-before", "update_pending"], 0).await;
    let id = rig.db_secret(&pg, "db/kill", "kill_user", initial, &kill).await;
    let job = rig.rotate(&id).await;
    let job = rig.wait_job(&id, job["jobId"].as_str().unwrap(), &["FAILED", "TIMED_OUT", "SUCCEEDED"]).await;
    assert_eq!(job["status"], "FAILED");
    assert!(job["error"].as_str().unwrap().contains("killed by signal 9"), "{job:#}");
    // The automatic retry (attempt 2) runs the same dying function; it finds the
    // kept pending working, skips its own PUT pending and completes.
    let retry = rig.wait_kind(&id, "RETRY", &["SUCCEEDED", "FAILED", "TIMED_OUT"]).await;
    assert_eq!(retry["status"], "SUCCEEDED", "{retry:#}");
    assert_eq!(retry["attempt"], 2);
    let c = rig.chain(&id).await;
    let now = c["active"]["cdbPassword"].as_str().unwrap().to_owned();
    assert_ne!(now, initial);
    assert!(pg.can_login("kill_user", &now).await, "no lockout: the stored active password works");
    assert_eq!(c["previous"]["cdbPassword"], initial);
}

/// A function that records its arguments and waits, so the test can drive
/// the action API itself with the job's token.
async fn manual_job(rig: &Rig, pg: Option<&PgServer>, name: &str) -> (String, String, String) {
    let dir = rig.app.dir.path().join(format!("fn-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let args = dir.join("args.json");
    let cmd = json!(["sh", "-c", format!("cat > {}.tmp && mv {0}.tmp {0} && sleep 60", args.display())]);
    let trigger = rig.trigger(&format!("manual-{name}"), cmd, json!({})).await;
    let id = match pg {
        Some(pg) => rig.db_secret(pg, name, &format!("{name}_user"), "Start-Pw-77", &trigger).await,
        None => {
            let value = json!({"user": "u", "password": "Start-Pw-77", "host": "h"});
            let id = rig.admin().create_secret(name, &value, &["password"]).await.unwrap();
            rig.link(&id, &trigger).await;
            id
        }
    };
    rig.rotate(&id).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !args.exists() {
        assert!(Instant::now() < deadline, "function never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a: Value = serde_json::from_slice(&std::fs::read(&args).unwrap()).unwrap();
    assert_eq!(a["secretId"], id.as_str());
    assert!(a["endpoint"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    (id, a["jobToken"].as_str().unwrap().to_owned(), a["endpoint"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_action_api_is_ncps_and_tokens_are_bound_to_their_secret_and_open_job() {
    let rig = rig(1).await;
    let (id, token, _) = manual_job(&rig, None, "act").await;
    let (other, other_token, _) = manual_job(&rig, None, "act2").await;
    let f = Client::new(&rig.app.base, &rig.fn_key.0, SecretString::from(rig.fn_key.1.clone()));
    let base = format!("/action/v1/secrets/{id}/jobs/{token}");

    let start = f.post(&format!("{base}/start"), &json!({})).await.unwrap().into_data().unwrap();
    let chain = start["decryptedSecretChain"].as_object().unwrap();
    assert_eq!(chain.keys().collect::<Vec<_>>(), ["active"], "absent stages are omitted");
    assert_eq!(start["rotationTargets"], json!(["password"]));

    // generate-random-secret: randomString at the top level and in data.
    let r = f
        .post(
            &format!("{base}/generate-random-secret"),
            &json!({"length": 20, "excludeCharacters": "abc", "includeSpace": false}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let rs = r.body["randomString"].as_str().unwrap();
    assert_eq!(rs, r.body["data"]["randomString"].as_str().unwrap());
    assert_eq!(rs.chars().count(), 20);
    assert!(!rs.contains(['a', 'b', 'c', ' ']));
    let r = f.post(&format!("{base}/generate-random-secret"), &json!({"length": 40})).await.unwrap();
    assert_eq!((r.status, r.error_code()), (400, Some("INVALID_REQUEST")));

    // A token is valid only for its own secret.
    let r = f.post(&format!("/action/v1/secrets/{other}/jobs/{token}/start"), &json!({})).await.unwrap();
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = f.post(&format!("/action/v1/secrets/{id}/jobs/{other_token}/start"), &json!({})).await.unwrap();
    assert_eq!(r.status, 404);
    // SECRET-JOB-TOKEN, when sent, must match.
    let mut h = f.sign(&Method::POST, &format!("{base}/start")).to_vec();
    h.push(("SECRET-JOB-TOKEN", "wrong".into()));
    let r = f.raw(Method::POST, &format!("{base}/start"), &h, Some(b"{}".to_vec())).await.unwrap();
    assert_eq!(r.status, 400);

    // PUT pending: only rotation targets may differ from active.
    let bad = json!({"user": "someone-else", "password": "x-Pw-1", "host": "h"}).to_string();
    let r = f.put(&format!("{base}/pending"), &json!({"value": bad})).await.unwrap();
    assert_eq!((r.status, r.error_code()), (400, Some("INVALID_REQUEST")));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("\"user\""));
    // POST pending fills the targets; a second POST reuses it.
    let p1 = f.call(Method::POST, &format!("{base}/pending"), None).await.unwrap().into_data().unwrap();
    let p1: Value = serde_json::from_str(p1["pending"].as_str().unwrap()).unwrap();
    assert_ne!(p1["password"], "Start-Pw-77");
    assert_eq!(p1["user"], "u");
    let p2 = f.call(Method::POST, &format!("{base}/pending"), None).await.unwrap().into_data().unwrap();
    assert_eq!(serde_json::from_str::<Value>(p2["pending"].as_str().unwrap()).unwrap(), p1);
    // An unprivileged key cannot drive the job even with the token.
    let reader = rig.app.key("reader", None).await;
    assert_eq!(reader.post(&format!("{base}/complete"), &json!({})).await.unwrap().status, 403);

    let r = f.post(&format!("{base}/complete"), &json!({})).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let c = rig.chain(&id).await;
    assert_eq!(c["active"], p1);
    assert_eq!(c["previous"]["password"], "Start-Pw-77");
    // The job is closed: its token no longer works.
    let r = f.post(&format!("{base}/start"), &json!({})).await.unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")));

    // fail keeps pending for the next attempt.
    let ob = format!("/action/v1/secrets/{other}/jobs/{other_token}");
    f.put(
        &format!("{ob}/pending"),
        &json!({"value": json!({"user": "u", "password": "Kept-Pw-9", "host": "h"}).to_string()}),
    )
    .await
    .unwrap()
    .into_data()
    .unwrap();
    f.post(&format!("{ob}/fail"), &json!({})).await.unwrap().into_data().unwrap();
    let c = rig.chain(&other).await;
    assert_eq!(c["pending"]["password"], "Kept-Pw-9");
    assert_eq!(c["active"]["password"], "Start-Pw-77");
    let d = rig.admin().get(&format!("/api/v1/secrets/{other}")).await.unwrap().into_data().unwrap();
    assert_eq!((d["secretStatus"].as_str(), d["rotationPhase"].as_str()), (Some("ENABLE"), Some("FAILED")));

    // Rollback: active ← previous, and the replaced active becomes previous.
    let d = rig
        .admin()
        .post(&format!("/api/v1/secrets/{id}/rollback-rotation"), &json!({}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(d["rotationPhase"], "ROLLED_BACK");
    let c = rig.chain(&id).await;
    assert_eq!(c["active"]["password"], "Start-Pw-77");
    assert_eq!(c["previous"], p1);
}

#[tokio::test]
async fn fifty_concurrent_rotate_now_calls_make_one_job() {
    let rig = rig(1).await;
    let (id, _token, _) = manual_job(&rig, None, "busy").await; // one job is open and running
    let admin = Arc::new(rig.admin());
    let mut handles = vec![];
    for _ in 0..50 {
        let admin = admin.clone();
        let path = format!("/api/v1/secrets/{id}/rotation");
        handles.push(tokio::spawn(async move { admin.post(&path, &json!({})).await.unwrap() }));
    }
    for h in handles {
        let r = h.await.unwrap();
        assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")), "{:?}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("already open"));
    }
    assert_eq!(rig.logs(&id).await["totalCount"], 1);

    // And on a secret with no open job: exactly one of 50 wins.
    let (id2, token2, _) = manual_job(&rig, None, "race").await;
    let f = Client::new(&rig.app.base, &rig.fn_key.0, SecretString::from(rig.fn_key.1.clone()));
    f.post(&format!("/action/v1/secrets/{id2}/jobs/{token2}/fail"), &json!({})).await.unwrap().into_data().unwrap();
    let mut handles = vec![];
    for _ in 0..50 {
        let admin = admin.clone();
        let path = format!("/api/v1/secrets/{id2}/rotation");
        handles.push(tokio::spawn(async move { admin.post(&path, &json!({})).await.unwrap().status }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            200 => ok += 1,
            409 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(ok, 1, "exactly one rotate-now wins");
    assert_eq!(rig.logs(&id2).await["totalCount"], 2);
}

/// The project's own example function (examples/rotate_postgres.py): server-
/// generated pending stored before the change, SCRAM verifier computed by
/// the function — the statement log holds neither password.
#[tokio::test]
async fn the_example_function_rotates_without_a_password_in_the_statement_log() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[("log_statement", "all"), ("log_min_error_statement", "error")]);
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rotate_postgres.py");
    let trigger = rig.trigger("example", json!(["python3", example.to_str().unwrap()]), json!({})).await;
    pg.create_role("ex_user", "Example-Start-Pw-1").await;
    let value = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "user": "ex_user", "password": "Example-Start-Pw-1"});
    let id = rig.admin().create_secret("db/example", &value, &["password"]).await.unwrap();
    rig.link(&id, &trigger).await;
    let mut seen = vec!["Example-Start-Pw-1".to_owned()];
    for _ in 0..2 {
        let job = rig.rotate(&id).await;
        let job = rig.wait_job(&id, job["jobId"].as_str().unwrap(), &["SUCCEEDED", "FAILED", "TIMED_OUT"]).await;
        assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
        let c = rig.chain(&id).await;
        let now = c["active"]["password"].as_str().unwrap().to_owned();
        assert_eq!(c["previous"]["password"], seen.last().unwrap().as_str());
        assert!(pg.can_login("ex_user", &now).await);
        assert!(!pg.can_login("ex_user", seen.last().unwrap()).await);
        seen.push(now);
    }
    let log = pg.log();
    assert!(log.contains("ALTER ROLE"), "statement logging is on");
    for pw in &seen[1..] {
        assert!(!log.contains(pw.as_str()), "a new password reached the PostgreSQL log");
    }
}

#[tokio::test]
async fn functions_get_a_clean_environment_and_die_with_their_whole_process_group() {
    let rig = rig(1).await;
    let dir = rig.app.dir.path().join("fn-env");
    std::fs::create_dir_all(&dir).unwrap();
    // Records its environment, starts a grandchild, and waits.
    let script = format!("env > {d}/env.txt; sleep 300 & echo $! > {d}/grandchild.pid; wait", d = dir.display());
    let trigger = rig.trigger("envfn", json!(["sh", "-c", script]), json!({"apiToken": "Param-Secret-Value-9"})).await;
    let id = rig
        .admin()
        .create_secret("envsecret", &json!({"user": "u", "password": "Pw-Env-1"}), &["password"])
        .await
        .unwrap();
    rig.link(&id, &trigger).await;
    rig.rotate(&id).await;
    let pidfile = dir.join("grandchild.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pidfile.exists() || std::fs::read_to_string(&pidfile).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let env = std::fs::read_to_string(dir.join("env.txt")).unwrap();
    assert!(
        env.contains("apiToken=Param-Secret-Value-9") && env.contains("secretId="),
        "arguments are in the environment"
    );
    assert!(!env.contains("CARGO"), "the server's own environment does not reach the function:\n{env}");
    let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    let r = rig.admin().post(&format!("/api/v1/secrets/{id}/cancel-rotation"), &json!({})).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the grandchild survived the cancel");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The parameter value is masked in the job log like a secret value.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = rig.logs(&id).await;
        if step_names(&logs["jobList"][0]).iter().any(|s| s == "function") {
            assert!(!logs.to_string().contains("Param-Secret-Value-9"));
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn trigger_configs_are_checked_and_failing_urls_fail_at_once() {
    let rig = rig(1).await;
    for (kind, config, params, msg) in [
        ("exec", json!({"command": [""]}), json!({}), "must not be empty"),
        ("exec", json!({"command": ["true"], "cwd": "/"}), json!({}), "unknown field \"cwd\""),
        ("exec", json!({"command": ["true"]}), json!({"jobToken": "x"}), "jobToken"),
        ("http", json!({"url": "http://user:pw@127.0.0.1:9/"}), json!({}), "credentials"),
        ("http", json!({"url": "ftp://x"}), json!({}), "http"),
    ] {
        let body = json!({"name": "t", "type": kind, "config": config, "defaultParams": params});
        let r = rig.admin().post("/api/v1/triggers", &body).await.unwrap();
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(msg), "{body}: {:?}", r.body);
    }
    // Triggers in use cannot be deleted; unused ones can.
    let t = rig.trigger("deletable", json!(["true"]), json!({})).await;
    let id = rig.admin().create_secret("uses-trigger", &json!({"password": "Pw-Del-1"}), &["password"]).await.unwrap();
    rig.link(&id, &t).await;
    let r = rig.admin().delete(&format!("/api/v1/triggers/{t}")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")), "{:?}", r.body);
    rig.admin().delete(&format!("/api/v1/secrets/{id}/triggers")).await.unwrap().into_data().unwrap();
    assert_eq!(rig.admin().delete(&format!("/api/v1/triggers/{t}")).await.unwrap().status, 200);
    assert_eq!(rig.admin().delete(&format!("/api/v1/triggers/{t}")).await.unwrap().status, 404);

    // An http function whose URL cannot be reached fails the job now, not at its deadline.
    let port = rotary_testkit::free_port();
    let body = json!({"name": "down", "type": "http", "config": {"url": format!("http://127.0.0.1:{port}/rotate"), "timeoutSeconds": 600}});
    let t = rig.admin().post("/api/v1/triggers", &body).await.unwrap().into_data().unwrap();
    let id = rig.admin().create_secret("httpsecret", &json!({"password": "Pw-Http-1"}), &["password"]).await.unwrap();
    rig.link(&id, t["triggerId"].as_str().unwrap()).await;
    let job = rig.rotate(&id).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = rig.logs(&id).await;
        let j = logs["jobList"].as_array().unwrap().iter().find(|j| j["jobId"] == job["jobId"]).unwrap().clone();
        if j["status"] == "FAILED" {
            assert!(j["error"].as_str().unwrap().contains("could not be reached"), "{j:#}");
            break;
        }
        assert!(Instant::now() < deadline, "the job did not fail: {j:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn no_more_rotations_run_at_once_than_rotation_max_concurrent() {
    let clock = Arc::new(OffsetClock::default());
    let app = spawn_app_with(
        |c| {
            c.scheduler_interval_ms = 50;
            c.rotation_max_attempts = 1;
            c.rotation_max_concurrent = 2;
        },
        clock.clone(),
    )
    .await;
    let dir = app.dir.path().join("slots");
    std::fs::create_dir_all(&dir).unwrap();
    // Each run marks that it started, then waits until the test releases it.
    let script =
        format!("touch {d}/$secretId.started; while [ ! -e {d}/release ]; do sleep 0.05; done", d = dir.display());
    let body =
        json!({"name": "slow", "type": "exec", "config": {"command": ["sh", "-c", script], "timeoutSeconds": 60}});
    let trigger = app.admin.post("/api/v1/triggers", &body).await.unwrap().into_data().unwrap()["triggerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = vec![];
    for i in 0..5 {
        let id = app.admin.create_secret(&format!("slot-{i}"), &json!({"password": "Pw-Slot"}), &["password"]).await;
        let id = id.unwrap();
        let r = app.admin.put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": trigger})).await;
        assert_eq!(r.unwrap().status, 200);
        let r = app.admin.post(&format!("/api/v1/secrets/{id}/rotation"), &json!({})).await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(id);
    }
    let started = || ids.iter().filter(|id| dir.join(format!("{id}.started")).exists()).count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while started() < 2 {
        assert!(Instant::now() < deadline, "the first two rotations never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Many scheduler passes later, still only two run; the rest wait queued.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(started(), 2, "more rotations than rotation_max_concurrent ran at once");
    std::fs::write(dir.join("release"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while started() < ids.len() {
        assert!(Instant::now() < deadline, "queued rotations never got a free slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
