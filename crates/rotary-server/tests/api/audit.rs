//! Every request is audited, never with a value; the chain detects tampering;
//! when the audit write fails, the request fails.

use rotary_client::Method;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use crate::helpers::{TestApp, db_value, spawn_app};

const SENTINEL: &str = "Audit-Sentinel-Pw-31";

async fn db(app: &TestApp) -> SqliteConnection {
    SqliteConnectOptions::new().filename(app.db_path()).connect().await.expect("open db")
}

async fn verify(app: &TestApp) -> serde_json::Value {
    app.admin.get("/api/v1/audit/verify").await.unwrap().into_data().unwrap()
}

#[tokio::test]
async fn every_request_is_recorded_without_values() {
    let app = spawn_app().await;
    let id = app.create("a", db_value("u", SENTINEL), &["cdbPassword"]).await;
    let read = app.admin.get(&format!("/api/v1/secrets/{id}/values")).await.unwrap();
    let bad = app.admin.post("/api/v1/secrets", &json!({"secretName": "b"})).await.unwrap();
    let unauth = app.admin.raw(Method::GET, "/api/v1/secrets", &[], None).await.unwrap();
    assert_eq!(unauth.status, 401);

    let page = app.admin.get("/api/v1/audit?pageSize=100").await.unwrap().into_data().unwrap();
    let list = page["auditList"].as_array().unwrap();
    assert!(!page.to_string().contains(SENTINEL));
    let by_req =
        |rid: &Option<String>| list.iter().find(|e| e["requestId"].as_str() == rid.as_deref()).cloned().unwrap();

    let e = by_req(&read.request_id);
    assert_eq!(e["action"], "GetSecretValue");
    assert_eq!(e["secretId"], id.as_str());
    assert_eq!(e["result"], "SUCCESS");
    assert_eq!(e["clientAddress"], "127.0.0.1");
    assert_eq!(e["accessKey"], app.server.first_admin.as_ref().unwrap().access_key.as_str());
    assert!(e["timestamp"].as_i64().unwrap() > 0);
    assert_eq!(by_req(&bad.request_id)["result"], "INVALID_REQUEST");
    let u = by_req(&unauth.request_id);
    assert_eq!((u["action"].as_str(), u["result"].as_str()), (Some("Authenticate"), Some("200")));
    let create = list.iter().find(|e| e["action"] == "CreateSecret").unwrap();
    assert_eq!(create["secretId"], id.as_str());
    let v = verify(&app).await;
    assert_eq!(v["valid"], true, "{v}");
}

#[tokio::test]
async fn verify_detects_edited_deleted_and_truncated_records() {
    let app = spawn_app().await;
    for i in 0..4 {
        app.create(&format!("s{i}"), json!({"k": "v"}), &[]).await;
    }
    assert_eq!(verify(&app).await["valid"], true);
    let mut c = db(&app).await;

    sqlx::query("UPDATE audit SET action = 'Nothing' WHERE seq = 2").execute(&mut c).await.unwrap();
    let v = verify(&app).await;
    assert_eq!((v["valid"].as_bool(), v["firstInvalidSeq"].as_i64()), (Some(false), Some(2)), "{v}");
    sqlx::query("UPDATE audit SET action = 'CreateSecret' WHERE seq = 2").execute(&mut c).await.unwrap();
    assert_eq!(verify(&app).await["valid"], true, "restoring the record restores the chain");

    sqlx::query("DELETE FROM audit WHERE seq = 3").execute(&mut c).await.unwrap();
    let v = verify(&app).await;
    assert_eq!((v["valid"].as_bool(), v["firstInvalidSeq"].as_i64()), (Some(false), Some(3)), "{v}");
}

#[tokio::test]
async fn a_truncated_tail_is_detected() {
    let app = spawn_app().await;
    app.create("s", json!({"k": "v"}), &[]).await;
    verify(&app).await;
    let mut c = db(&app).await;
    let max: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit").fetch_one(&mut c).await.unwrap();
    sqlx::query("DELETE FROM audit WHERE seq = ?").bind(max).execute(&mut c).await.unwrap();
    // Stop the verify request's own record from re-growing the chain past the
    // deleted one: check with a direct look at the answer instead.
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
}

#[tokio::test]
async fn a_failed_audit_write_fails_the_request_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.create("a", db_value("u", SENTINEL), &["cdbPassword"]).await;
    let mut c = db(&app).await;
    sqlx::query("CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit disabled'); END")
        .execute(&mut c)
        .await
        .unwrap();

    let r = app.admin.get(&format!("/api/v1/secrets/{id}/values")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (500, Some("INTERNAL_SERVER_ERROR")));
    assert!(!r.body.to_string().contains(SENTINEL), "an unaudited read must not hand out the value");

    let r = app
        .admin
        .post("/api/v1/secrets", &json!({"secretName": "b", "secretValue": {"value": "{\"k\":\"v\"}"}}))
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    let r = app
        .admin
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": db_value("u", "new").to_string()}))
        .await
        .unwrap();
    assert_eq!(r.status, 500);

    sqlx::query("DROP TRIGGER no_audit").execute(&mut c).await.unwrap();
    let list = app.admin.get("/api/v1/secrets").await.unwrap().into_data().unwrap();
    assert_eq!(list["totalCount"], 1, "the unaudited create did not happen");
    assert_eq!(app.chain(&id).await["active"]["cdbPassword"], SENTINEL, "the unaudited update did not happen");
    let _ = c.close().await;
}

#[tokio::test]
async fn a_forged_head_or_an_emptied_log_is_detected() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.create(&format!("s{i}"), json!({"k": "v"}), &[]).await;
    }
    let mut c = db(&app).await;
    // Cut the tail and point the head marker at the new last record, keeping
    // the old MAC (the key to make a new one is not in the database).
    let max: i64 = sqlx::query_scalar("SELECT MAX(seq) FROM audit").fetch_one(&mut c).await.unwrap();
    let hash: Vec<u8> =
        sqlx::query_scalar("SELECT hash FROM audit WHERE seq = ?").bind(max - 2).fetch_one(&mut c).await.unwrap();
    let marker: Vec<u8> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'audit_head'").fetch_one(&mut c).await.unwrap();
    let mut forged = (max - 2).to_be_bytes().to_vec();
    forged.extend_from_slice(&hash);
    forged.extend_from_slice(&marker[40..]);
    sqlx::query("DELETE FROM audit WHERE seq > ?").bind(max - 2).execute(&mut c).await.unwrap();
    sqlx::query("UPDATE meta SET value = ? WHERE key = 'audit_head'").bind(&forged).execute(&mut c).await.unwrap();
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains("head marker was altered"), "{v}");

    sqlx::query("DELETE FROM audit").execute(&mut c).await.unwrap();
    sqlx::query("DELETE FROM meta WHERE key = 'audit_head'").execute(&mut c).await.unwrap();
    let v = verify(&app).await;
    assert_eq!(v["valid"], false, "an emptied log is not a valid log: {v}");
}

#[tokio::test]
async fn concurrent_reads_and_changes_keep_one_unbroken_chain_with_a_record_each() {
    // Reads are audited in batches and changes in their own transactions;
    // interleaved, every request still gets exactly one record, in one chain.
    let app = spawn_app().await;
    let id = app.create("mixed", db_value("u", SENTINEL), &["cdbPassword"]).await;
    let before =
        app.admin.get("/api/v1/audit?pageSize=1").await.unwrap().into_data().unwrap()["totalCount"].as_i64().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let c = app.admin.clone();
        let id = id.clone();
        tasks.spawn(async move {
            let r = if i % 10 == 0 {
                c.put(&format!("/api/v1/secrets/{id}/memo"), &json!({"memo": format!("m{i}")})).await
            } else if i % 10 == 5 {
                c.get("/api/v1/secrets/no-such-secret").await
            } else {
                c.get(&format!("/api/v1/secrets/{id}/values")).await
            };
            r.unwrap().status
        });
    }
    let mut statuses = vec![];
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 180, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 20);
    let page = app.admin.get("/api/v1/audit?pageSize=1").await.unwrap().into_data().unwrap();
    // 200 requests, plus the page request itself.
    assert_eq!(page["totalCount"].as_i64().unwrap(), before + 201);
    let v = verify(&app).await;
    assert_eq!(v["valid"], true, "{v}");
    let mut c = db(&app).await;
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM audit ORDER BY seq").fetch_all(&mut c).await.unwrap();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers have no gaps");
}

#[tokio::test]
async fn odd_text_in_a_batched_record_is_stored_exactly() {
    // Rejected requests are audited in batches written as one SQL script:
    // what a client sends must arrive as data, quotes and all.
    let app = spawn_app().await;
    let claimed = "x'); DELETE FROM audit; -- \"q\\";
    let r = app
        .admin
        .raw(
            Method::GET,
            "/api/v1/secrets",
            &[
                ("x-ncp-iam-access-key", claimed.to_owned()),
                ("x-ncp-apigw-timestamp", "1".to_owned()),
                ("x-ncp-apigw-signature-v2", "x".to_owned()),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let page = app.admin.get("/api/v1/audit?pageSize=5").await.unwrap().into_data().unwrap();
    let e = page["auditList"].as_array().unwrap().iter().find(|e| e["requestId"] == r.request_id.as_deref().unwrap());
    assert_eq!(e.unwrap()["accessKey"], claimed, "{page}");
    assert_eq!(verify(&app).await["valid"], true);
}

#[tokio::test]
async fn requests_no_route_matches_are_audited_and_health_is_not() {
    let app = spawn_app().await;
    let count = || async {
        app.admin.get("/api/v1/audit?pageSize=1").await.unwrap().into_data().unwrap()["totalCount"].as_i64().unwrap()
    };
    let before = count().await;
    let nope = app.admin.get("/api/v1/nope").await.unwrap();
    let double = app.admin.get("/api/v1//secrets").await.unwrap();
    assert_eq!((nope.status, double.status), (404, 404));
    assert!(nope.request_id.is_some() && double.request_id.is_some(), "every audited answer carries its request id");
    for p in ["/health", "/api/v1/openapi.json"] {
        assert_eq!(app.admin.raw(Method::GET, p, &[], None).await.unwrap().status, 200);
    }
    // The two 404s and the first count request; not /health, not the document.
    assert_eq!(count().await, before + 3);
    let page = app.admin.get("/api/v1/audit?pageSize=10").await.unwrap().into_data().unwrap();
    let list = page["auditList"].as_array().unwrap();
    for r in [&nope, &double] {
        let e = list.iter().find(|e| e["requestId"].as_str() == r.request_id.as_deref()).unwrap();
        assert_eq!(e["result"], "NOT_FOUND", "{e}");
        let me = &app.server.first_admin.as_ref().unwrap().access_key;
        assert_eq!(e["accessKey"].as_str(), Some(me.as_str()), "who asked is recorded: {e}");
    }
    assert_eq!(verify(&app).await["valid"], true);
}
