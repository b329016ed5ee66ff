//! The built-in PostgreSQL rotator against real servers: identifiers,
//! special characters, no password in the statement log, outages,
//! concurrency, admin mode.

use std::time::{Duration, Instant};

use rotary_testkit::PgServer;
use serde_json::{Value, json};

use crate::rotation::{Rig, rig};

async fn pg_trigger(rig: &Rig, name: &str, config: Value) -> String {
    let body = json!({"name": name, "type": "postgres", "config": config});
    let r = rig.admin().post("/api/v1/triggers", &body).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"]["triggerId"].as_str().unwrap().to_owned()
}

async fn pg_secret(rig: &Rig, pg: &PgServer, name: &str, user: &str, password: &str, trigger: &str) -> String {
    pg.create_role(user, password).await;
    let value = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": user, "password": password});
    let id = rig.admin().create_secret(name, &value, &["password"]).await.unwrap();
    rig.link(&id, trigger).await;
    id
}

/// Rotates now and waits for the job to end; returns it.
async fn rotate_done(rig: &Rig, id: &str) -> Value {
    let job = rig.rotate(id).await;
    wait_done(rig, id, job["jobId"].as_str().unwrap()).await
}

async fn wait_done(rig: &Rig, id: &str, job_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let logs = rig.logs(id).await;
        if let Some(j) = logs["jobList"].as_array().unwrap().iter().find(|j| j["jobId"] == job_id)
            && ["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"].contains(&j["status"].as_str().unwrap())
        {
            return j.clone();
        }
        assert!(Instant::now() < deadline, "job {job_id} did not end: {logs:#}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn password(rig: &Rig, id: &str, stage: &str) -> String {
    rig.chain(id).await[stage]["password"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn roles_with_names_of_every_shape_rotate_and_neighbours_keep_their_password() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[]);
    let trigger = pg_trigger(&rig, "pg", json!({"mode": "self"})).await;
    pg.create_role("appuser", "Neighbour-Pw-1").await;
    let long = "n".repeat(63);
    let names = ["app-user", "AppUser", "app user", "app\"q", "select", "사용자", long.as_str()];
    for (i, name) in names.iter().enumerate() {
        let initial = format!("Initial-{i}-Pw");
        let id = pg_secret(&rig, &pg, &format!("names/{i}"), name, &initial, &trigger).await;
        let job = rotate_done(&rig, &id).await;
        assert_eq!(job["status"], "SUCCEEDED", "{name:?}: {job:#}");
        let new = password(&rig, &id, "active").await;
        assert!(pg.can_login(name, &new).await, "{name:?} logs in with the new password");
        assert!(!pg.can_login(name, &initial).await, "{name:?} no longer logs in with the old one");
    }
    assert!(pg.can_login("appuser", "Neighbour-Pw-1").await, "rotating AppUser left appuser alone");
}

#[tokio::test]
async fn passwords_with_special_characters_are_used_literally() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[]);
    // A policy that allows every punctuation character and the space.
    let trigger = pg_trigger(&rig, "pg", json!({"passwordPolicy": {"length": 32, "includeSpace": true}})).await;
    let specials = ["@", ":", "/", "?", "#", "[", "]", "%", "^", "&", "=", "+", " ", "'", "\"", "\\", ";"];
    let mut initials: Vec<String> = specials.iter().map(|c| format!("a{c}b{c}c-Pw1")).collect();
    initials.push("ab%3Ecd".into());
    for (i, initial) in initials.iter().enumerate() {
        let user = format!("special_{i}");
        let id = pg_secret(&rig, &pg, &format!("special/{i}"), &user, initial, &trigger).await;
        // The rotator logs in with the stored value exactly as written.
        let job = rotate_done(&rig, &id).await;
        assert_eq!(job["status"], "SUCCEEDED", "{initial:?}: {job:#}");
        let new = password(&rig, &id, "active").await;
        assert!(pg.can_login(&user, &new).await);
        assert!(!pg.can_login(&user, initial).await);
    }
}

#[tokio::test]
async fn two_hundred_rotations_with_quotes_and_backslashes_never_reach_the_statement_log() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[("log_statement", "all"), ("log_min_error_statement", "error")]);
    // Only the characters that break naive SQL quoting, plus letters and digits.
    let policy = json!({"length": 24, "includeSpace": false,
        "excludeCharacters": "!#$%&()*+,-./:;<=>?@[]^_`{|}~"});
    let trigger = pg_trigger(&rig, "pg", json!({"passwordPolicy": policy})).await;
    let id = pg_secret(&rig, &pg, "many", "many_user", "Many-Start-Pw-1", &trigger).await;
    let mut seen = vec![];
    for i in 0..200 {
        let job = rotate_done(&rig, &id).await;
        assert_eq!(job["status"], "SUCCEEDED", "rotation {i}: {job:#}");
        let new = password(&rig, &id, "active").await;
        assert!(pg.can_login("many_user", &new).await, "rotation {i}: the new password logs in");
        seen.push(new);
    }
    let quoted = seen.iter().filter(|p| p.contains(['\'', '"', '\\'])).count();
    assert!(quoted > 150, "the policy made passwords with quotes or backslashes ({quoted}/200)");

    // A forced failure: no stored password logs in any more.
    let wrong = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": "many_user", "password": "Wrong-Pw-'\\\"-1"});
    for stage in ["active", "previous"] {
        let r = rig
            .admin()
            .put(&format!("/api/v1/secrets/{id}/values/{stage}"), &json!({"value": wrong.to_string()}))
            .await;
        assert_eq!(r.unwrap().status, 200);
    }
    let job = rotate_done(&rig, &id).await;
    assert_eq!(job["status"], "FAILED");
    assert!(job["error"].as_str().unwrap().contains("neither pending, active nor previous logs in"), "{job:#}");

    let log = pg.log();
    assert!(log.matches("ALTER ROLE").count() >= 200, "statement logging is on");
    for p in seen.iter().map(String::as_str).chain(["Wrong-Pw-'\\\"-1", "Many-Start-Pw-1"]) {
        assert!(!log.contains(p), "a password reached the PostgreSQL log");
    }
    let logs = rig.logs(&id).await.to_string();
    assert!(seen.iter().all(|p| !logs.contains(p.as_str())), "a password reached the job log");
}

#[tokio::test]
async fn a_database_that_is_down_fails_the_job_and_the_retry_succeeds() {
    let rig = rig(1).await;
    let mut pg = PgServer::start(&[]);
    let trigger = pg_trigger(&rig, "pg", json!({})).await;
    let id = pg_secret(&rig, &pg, "down", "down_user", "Down-Start-Pw-1", &trigger).await;
    pg.halt();
    let job = rotate_done(&rig, &id).await;
    assert_eq!(job["status"], "FAILED");
    assert!(job["error"].as_str().unwrap().contains("could not be reached"), "{job:#}");
    let pending = password(&rig, &id, "pending").await;
    assert_eq!(password(&rig, &id, "active").await, "Down-Start-Pw-1", "active untouched");
    pg.resume();
    assert!(pg.can_login("down_user", "Down-Start-Pw-1").await, "nothing changed in the database");
    let r = rig.admin().post(&format!("/api/v1/secrets/{id}/retry-rotation"), &serde_json::json!({})).await.unwrap();
    let job = wait_done(&rig, &id, r.body["data"]["jobId"].as_str().unwrap()).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    assert_eq!(password(&rig, &id, "active").await, pending, "the retry reused the stored pending");
    assert!(pg.can_login("down_user", &pending).await);
}

#[tokio::test]
async fn three_concurrent_rotations_on_each_of_ten_secrets_leave_every_role_working() {
    let rig = rig(3).await;
    let pg = PgServer::start(&[]);
    let trigger = pg_trigger(&rig, "pg", json!({})).await;
    let mut ids = vec![];
    for i in 0..10 {
        ids.push(
            pg_secret(&rig, &pg, &format!("conc/{i}"), &format!("conc_{i}"), &format!("Conc-{i}-Pw"), &trigger).await,
        );
    }
    let admin = std::sync::Arc::new(rig.admin());
    let mut calls = vec![];
    for id in &ids {
        for _ in 0..3 {
            let (admin, path) = (admin.clone(), format!("/api/v1/secrets/{id}/rotation"));
            calls.push(tokio::spawn(async move { admin.post(&path, &json!({})).await.unwrap().status }));
        }
    }
    for c in calls {
        assert!([200, 409].contains(&c.await.unwrap()));
    }
    for (i, id) in ids.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logs = rig.logs(id).await;
            let open = logs["jobList"]
                .as_array()
                .unwrap()
                .iter()
                .any(|j| ["QUEUED", "DISPATCHED", "RUNNING"].contains(&j["status"].as_str().unwrap()));
            if !open {
                assert_eq!(logs["totalCount"], 1, "one job per secret");
                break;
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let active = password(&rig, id, "active").await;
        assert!(pg.can_login(&format!("conc_{i}"), &active).await, "role {i} logs in with its stored active password");
    }
}

#[tokio::test]
async fn admin_mode_changes_the_password_with_another_secrets_credential() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[]);
    let admin_pw = "Rotator-Admin-Pw-1";
    pg.create_role("rotator2", admin_pw).await;
    pg.exec("ALTER ROLE rotator2 CREATEROLE").await;
    let admin_value = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                             "username": "rotator2", "password": admin_pw});
    let admin_id = rig.admin().create_secret("pg-admin", &admin_value, &["password"]).await.unwrap();
    let trigger = pg_trigger(&rig, "pg-admin-mode", json!({"mode": "admin", "adminSecretId": admin_id})).await;
    let id = pg_secret(&rig, &pg, "managed", "managed_user", "Managed-Pw-1", &trigger).await;
    // The managed role's stored passwords are all wrong: only the admin can change it.
    let job = rotate_done(&rig, &id).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let new = password(&rig, &id, "active").await;
    assert!(pg.can_login("managed_user", &new).await);
    assert!(pg.can_login("rotator2", admin_pw).await, "the admin credential is unchanged");

    // A secret that is its own admin credential, or a second secret for the
    // same account, is refused when it is linked.
    let self_trigger = pg_trigger(&rig, "pg-admin-self", json!({"mode": "admin", "adminSecretId": admin_id})).await;
    let r = rig
        .admin()
        .put(&format!("/api/v1/secrets/{admin_id}/triggers"), &json!({"triggerId": self_trigger}))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("own admin credential"), "{:?}", r.body);
    let same_account = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                              "username": "rotator2", "password": "x"});
    let other = rig.admin().create_secret("pg-admin-copy", &same_account, &["password"]).await.unwrap();
    let r =
        rig.admin().put(&format!("/api/v1/secrets/{other}/triggers"), &json!({"triggerId": trigger})).await.unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("admin credential's own account"), "{:?}", r.body);
    let plain = pg_trigger(&rig, "pg-plain", json!({})).await;
    let twin = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                      "username": "managed_user", "password": "x"});
    let twin_id = rig.admin().create_secret("managed-twin", &twin, &["password"]).await.unwrap();
    let r =
        rig.admin().put(&format!("/api/v1/secrets/{twin_id}/triggers"), &json!({"triggerId": plain})).await.unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")), "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("already rotates this database account"));
    assert!(pg.can_login("rotator2", admin_pw).await);
}

#[tokio::test]
async fn bad_builtin_trigger_configs_are_refused() {
    let rig = rig(1).await;
    for (config, msg) in [
        (json!({"mode": "root"}), "config.mode"),
        (json!({"mode": "admin"}), "adminSecretId"),
        (json!({"strategy": "triple"}), "config.strategy"),
        (json!({"keyMap": {"host": 5}}), "keyMap"),
        (json!({"passwordPolicy": {"length": 99}}), "length"),
        (json!({"passwordPolicy": {"lenght": 9}}), "passwordPolicy"),
    ] {
        let r = rig
            .admin()
            .post("/api/v1/triggers", &json!({"name": "bad", "type": "postgres", "config": config}))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{config}: {:?}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(msg), "{config}: {:?}", r.body);
    }
}

async fn maria_secret(
    rig: &Rig,
    db: &rotary_testkit::MariaServer,
    name: &str,
    user: &str,
    pw: &str,
    trigger: &str,
) -> String {
    db.create_user(user, pw);
    let value =
        json!({"host": "127.0.0.1", "port": db.port.to_string(), "username": user, "password": pw, "userHost": "%"});
    let id = rig.admin().create_secret(name, &value, &["password"]).await.unwrap();
    rig.link(&id, trigger).await;
    id
}

#[tokio::test]
async fn mariadb_accounts_of_every_shape_rotate_under_both_sql_modes_without_a_password_in_the_query_log() {
    let rig = rig(1).await;
    let db = rotary_testkit::MariaServer::start();
    let body =
        json!({"name": "maria", "type": "mysql", "config": {"passwordPolicy": {"length": 32, "includeSpace": true}}});
    let trigger = rig.admin().post("/api/v1/triggers", &body).await.unwrap().into_data().unwrap();
    let trigger = trigger["triggerId"].as_str().unwrap();
    db.create_user("appuser", "Neighbour-Pw-1");
    let users = ["app-user", "AppUser", "app user", "app'q", "app\\bs", "select", "사용자"];
    let mut seen = vec![];
    for (i, mode) in ["", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"].iter().enumerate() {
        db.exec(&format!("SET GLOBAL sql_mode = '{mode}'"));
        for (j, user) in users.iter().enumerate() {
            let user = format!("{user}{i}");
            let initial = format!("Start'\\\"-{i}-{j}");
            let id = maria_secret(&rig, &db, &format!("maria/{i}/{j}"), &user, &initial, trigger).await;
            let job = rotate_done(&rig, &id).await;
            assert_eq!(job["status"], "SUCCEEDED", "{user:?} with sql_mode {mode:?}: {job:#}");
            let new = password(&rig, &id, "active").await;
            assert!(db.can_login(&user, &new).await, "{user:?} logs in with the new password");
            assert!(!db.can_login(&user, &initial).await, "{user:?} no longer logs in with the old one");
            seen.push(new);
        }
    }
    assert!(db.can_login("appuser", "Neighbour-Pw-1").await, "rotating AppUser0 left appuser alone");
    let log = db.general_log();
    assert!(log.contains("SET PASSWORD"), "the query log is on");
    for p in &seen {
        assert!(!log.contains(p.as_str()), "a password reached the MariaDB query log");
    }
}

/// Alternating users: each rotation changes the inactive account and then
/// makes it active, so the credential applications hold (now previous) keeps
/// working until the rotation after next.
#[tokio::test]
async fn the_alternating_strategy_never_invalidates_the_credential_in_use() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[]);
    pg.create_role("alt_admin", "Alt-Admin-Pw-1").await;
    pg.exec("ALTER ROLE alt_admin CREATEROLE").await;
    let admin = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": "alt_admin", "password": "Alt-Admin-Pw-1"});
    let admin_id = rig.admin().create_secret("alt-admin", &admin, &["password"]).await.unwrap();
    let trigger =
        pg_trigger(&rig, "alt", json!({"mode": "admin", "adminSecretId": admin_id, "strategy": "alternating"})).await;
    pg.create_role("app_a", "A-Start-Pw").await;
    pg.create_role("app_b", "B-Start-Pw").await;
    let value = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": "app_a", "password": "A-Start-Pw", "alternateUsername": "app_b"});
    let id =
        rig.admin().create_secret("alt-app", &value, &["password", "username", "alternateUsername"]).await.unwrap();
    rig.link(&id, &trigger).await;

    let mut held = ("app_a".to_owned(), "A-Start-Pw".to_owned());
    for round in 0..4 {
        let job = rotate_done(&rig, &id).await;
        assert_eq!(job["status"], "SUCCEEDED", "round {round}: {job:#}");
        let c = rig.chain(&id).await;
        let active = (
            c["active"]["username"].as_str().unwrap().to_owned(),
            c["active"]["password"].as_str().unwrap().to_owned(),
        );
        assert_ne!(active.0, held.0, "round {round}: the other account became active");
        assert_eq!(c["active"]["alternateUsername"], held.0.as_str());
        assert!(pg.can_login(&active.0, &active.1).await, "round {round}: the new active logs in");
        assert!(pg.can_login(&held.0, &held.1).await, "round {round}: the credential in use still works");
        assert_eq!(
            (c["previous"]["username"].as_str().unwrap(), c["previous"]["password"].as_str().unwrap()),
            (held.0.as_str(), held.1.as_str())
        );
        held = active;
    }
    let r = rig
        .admin()
        .post(
            "/api/v1/triggers",
            &json!({"name": "alt-self", "type": "postgres", "config": {"strategy": "alternating"}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "alternating needs admin mode");
}

#[tokio::test]
async fn tls_modes_encrypt_verify_the_server_and_report_tls_failures_as_such() {
    let rig = rig(1).await;
    let pg = PgServer::start_tls(&[("log_connections", "on")]);
    let ca = pg.ca_file();
    for (i, (mode, ca_file)) in
        [("require", None), ("prefer", None), ("verify-full", Some(ca.clone()))].into_iter().enumerate()
    {
        let mut config = json!({"sslmode": mode});
        if let Some(ca) = ca_file {
            config["caFile"] = json!(ca.to_str().unwrap());
        }
        let trigger = pg_trigger(&rig, &format!("tls-{i}"), config).await;
        let user = format!("tls_user_{i}");
        let id = pg_secret(&rig, &pg, &format!("tls/{i}"), &user, &format!("Tls-Start-{i}"), &trigger).await;
        let job = rotate_done(&rig, &id).await;
        assert_eq!(job["status"], "SUCCEEDED", "{mode}: {job:#}");
        assert!(pg.can_login(&user, &password(&rig, &id, "active").await).await);
        let authorized: Vec<String> = pg
            .log()
            .lines()
            .filter(|l| l.contains("connection authorized") && l.contains(&format!("user={user}")))
            .map(str::to_owned)
            .collect();
        assert!(
            authorized.iter().any(|l| l.contains("SSL enabled")),
            "{mode}: the rotator's connections use TLS: {authorized:?}"
        );
    }

    // A server certificate that the configured CA did not sign: a TLS
    // failure, reported as such (not as a wrong password), and nothing changed.
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _, _) = rotary_testkit::make_certs(other.path(), "some-other-ca");
    let trigger =
        pg_trigger(&rig, "tls-wrong", json!({"sslmode": "verify-full", "caFile": wrong_ca.to_str().unwrap()})).await;
    let id = pg_secret(&rig, &pg, "tls/wrong", "tls_wrong", "Tls-Wrong-Start", &trigger).await;
    let job = rotate_done(&rig, &id).await;
    assert_eq!(job["status"], "FAILED");
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("TLS failure") && !error.contains("logs in"), "{job:#}");
    assert!(pg.can_login("tls_wrong", "Tls-Wrong-Start").await, "nothing changed");

    let r = rig
        .admin()
        .post(
            "/api/v1/triggers",
            &json!({"name": "tls-noca", "type": "postgres", "config": {"sslmode": "verify-full"}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

/// A definite refusal of the new value by the database (here MariaDB's
/// password-validation plugin, which refuses hashed passwords) discards
/// pending, so the next attempt generates a new value; nothing was applied.
#[tokio::test]
async fn a_value_the_database_refuses_is_discarded_not_retried() {
    let rig = rig(2).await;
    let db = rotary_testkit::MariaServer::start();
    let body = json!({"name": "maria", "type": "mysql", "config": {}});
    let trigger = rig.admin().post("/api/v1/triggers", &body).await.unwrap().into_data().unwrap();
    let id = maria_secret(
        &rig,
        &db,
        "refused",
        "refused_user",
        "Refused-Start-Pw-1",
        trigger["triggerId"].as_str().unwrap(),
    )
    .await;
    db.exec("INSTALL SONAME 'simple_password_check'");
    let first = rotate_done(&rig, &id).await;
    assert_eq!(first["status"], "FAILED");
    assert!(first["error"].as_str().unwrap().contains("refused the new password"), "{first:#}");
    let steps = first["steps"].to_string();
    assert!(steps.contains("pending discarded"), "{steps}");
    // The retry made a new value (it was refused too).
    let deadline = Instant::now() + Duration::from_secs(30);
    let retry = loop {
        let logs = rig.logs(&id).await;
        if let Some(j) = logs["jobList"].as_array().unwrap().iter().find(|j| j["kind"] == "RETRY")
            && ["FAILED", "SUCCEEDED"].contains(&j["status"].as_str().unwrap())
        {
            break j.clone();
        }
        assert!(Instant::now() < deadline, "{logs:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(retry["status"], "FAILED");
    assert!(rig.chain(&id).await.get("pending").is_none(), "no refused value is kept as pending");
    assert!(db.can_login("refused_user", "Refused-Start-Pw-1").await, "nothing was applied");
    assert_eq!(password(&rig, &id, "active").await, "Refused-Start-Pw-1");
}

/// QA findings: the admin credential never goes to another host, a scoped key
/// cannot use an admin secret it may not manage, and aliases of one account
/// are recognised as one.
#[tokio::test]
async fn admin_credentials_stay_on_their_server_and_accounts_cannot_be_claimed_twice() {
    let rig = rig(1).await;
    let pg = PgServer::start(&[]);
    pg.create_role("guard_admin", "Guard-Admin-Pw-1").await;
    pg.exec("ALTER ROLE guard_admin CREATEROLE").await;
    let admin = json!({"host": "127.0.0.1", "port": pg.port.to_string(), "database": "postgres",
                       "username": "guard_admin", "password": "Guard-Admin-Pw-1"});
    let admin_id = rig.admin().create_secret("ops/pg-admin", &admin, &["password"]).await.unwrap();
    let trigger = pg_trigger(&rig, "guarded", json!({"mode": "admin", "adminSecretId": admin_id})).await;
    let value = |host: &str, port: String, user: &str| json!({"host": host, "port": port, "database": "postgres", "username": user, "password": "x-Pw-1"});

    // A manager scoped to app/* may not point the ops admin credential at anything.
    let scoped = rig.app.key("manager", Some("app/*")).await;
    let id = scoped
        .create_secret("app/hijack", &value("127.0.0.1", pg.port.to_string(), "postgres"), &["password"])
        .await
        .unwrap();
    let r = scoped.put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": trigger})).await.unwrap();
    assert_eq!((r.status, r.error_code()), (403, Some("FORBIDDEN")), "{:?}", r.body);

    // Another host: the admin credential would be sent there. Refused.
    let other = rig
        .admin()
        .create_secret("elsewhere", &value("10.9.9.9", pg.port.to_string(), "someone"), &["password"])
        .await
        .unwrap();
    let r =
        rig.admin().put(&format!("/api/v1/secrets/{other}/triggers"), &json!({"triggerId": trigger})).await.unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("admin secret's"), "{:?}", r.body);

    // One account under several spellings of host, port and name.
    let plain = pg_trigger(&rig, "plain", json!({})).await;
    let first = pg_secret(&rig, &pg, "victim", "victim_user", "Victim-Pw-1", &plain).await;
    let long = "v".repeat(63);
    pg.create_role(&long, "Long-Pw-1").await;
    let long_id = rig
        .admin()
        .create_secret("long", &value("127.0.0.1", pg.port.to_string(), &long), &["password"])
        .await
        .unwrap();
    rig.link(&long_id, &plain).await;
    let port = pg.port.to_string();
    for (host, port, user) in [
        ("localhost", port.clone(), "victim_user"),
        ("127.1", port.clone(), "victim_user"),
        ("::ffff:127.0.0.1", port.clone(), "victim_user"),
        (" 127.0.0.1 ", format!("0{port}"), "victim_user"),
        ("127.0.0.1", port.clone(), &format!("{long}X")),
    ] {
        let id = rig
            .admin()
            .create_secret(
                &format!("alias-{}", rotary_crypto::random_alnum(6)),
                &value(host, port.clone(), user),
                &["password"],
            )
            .await
            .unwrap();
        let r = rig.admin().put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": plain})).await.unwrap();
        assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")), "{host} {port} {user}: {:?}", r.body);
    }
    // An alternate account that another secret rotates is a conflict too.
    let mut alt = value("127.0.0.1", port.clone(), "alt_x");
    alt["alternateUsername"] = json!("victim_user");
    let id =
        rig.admin().create_secret("alt-claim", &alt, &["password", "username", "alternateUsername"]).await.unwrap();
    let r = rig.admin().put(&format!("/api/v1/secrets/{id}/triggers"), &json!({"triggerId": plain})).await.unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);
    // So is a new value that moves a linked secret onto another secret's account.
    let r = rig
        .admin()
        .put(
            &format!("/api/v1/secrets/{long_id}/values"),
            &json!({"value": value("127.1", port.clone(), "victim_user").to_string()}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);

    // Rollback would make active a password the database no longer has.
    let job = rotate_done(&rig, &first).await;
    assert_eq!(job["status"], "SUCCEEDED");
    let r = rig.admin().post(&format!("/api/v1/secrets/{first}/rollback-rotation"), &json!({})).await.unwrap();
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(pg.can_login("victim_user", &password(&rig, &first, "active").await).await);
}

#[tokio::test]
async fn mariadb_admin_mode_needs_only_the_create_user_privilege() {
    let rig = rig(1).await;
    let db = rotary_testkit::MariaServer::start();
    db.create_user("maria_admin", "Maria-Admin-Pw-1");
    db.exec("GRANT CREATE USER ON *.* TO 'maria_admin'@'%'");
    let admin = json!({"host": "127.0.0.1", "port": db.port.to_string(), "username": "maria_admin", "password": "Maria-Admin-Pw-1"});
    let admin_id = rig.admin().create_secret("maria-admin", &admin, &["password"]).await.unwrap();
    let body =
        json!({"name": "maria-admin-mode", "type": "mysql", "config": {"mode": "admin", "adminSecretId": admin_id}});
    let trigger = rig.admin().post("/api/v1/triggers", &body).await.unwrap().into_data().unwrap();
    let id = maria_secret(
        &rig,
        &db,
        "maria-managed",
        "managed'one",
        "Managed-Start-Pw-1",
        trigger["triggerId"].as_str().unwrap(),
    )
    .await;
    // The stored password is wrong: only the admin can change it.
    let wrong = json!({"host": "127.0.0.1", "port": db.port.to_string(), "username": "managed'one", "password": "Wrong-1", "userHost": "%"});
    rig.admin()
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": wrong.to_string()}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let job = rotate_done(&rig, &id).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let new = password(&rig, &id, "active").await;
    assert!(db.can_login("managed'one", &new).await);
    assert!(db.can_login("maria_admin", "Maria-Admin-Pw-1").await);
    assert!(!db.general_log().contains(new.as_str()));
}
