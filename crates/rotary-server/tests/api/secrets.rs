use rotary_client::{Client, Method};
use serde_json::json;

use crate::helpers::{db_value, spawn_app};

#[tokio::test]
async fn create_read_and_change_every_stage() {
    let app = spawn_app().await;
    let id = app.create("app/db", db_value("app", "pw-one"), &["cdbPassword"]).await;

    let detail = app.admin.get(&format!("/api/v1/secrets/{id}")).await.unwrap().into_data().unwrap();
    assert_eq!(detail["secretName"], "app/db");
    assert_eq!(detail["secretStatus"], "ENABLE");
    assert_eq!(detail["autoRotationYN"], "N");
    assert_eq!(detail["rotationTargets"], json!(["cdbPassword"]));

    // Absent stages are omitted, not null: the seed does chain.get("previous", "{}").
    let values = app.admin.values(&id).await.unwrap();
    let chain = values["decryptedSecretChain"].as_object().unwrap();
    assert_eq!(chain.keys().collect::<Vec<_>>(), ["active"]);
    assert!(chain["active"].is_string(), "stages are JSON strings");
    assert_eq!(values["rotationTargets"], json!(["cdbPassword"]));

    // PUT /values: new active, old active becomes previous.
    let r = app
        .admin
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": db_value("app", "pw-two").to_string()}))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let c = app.chain(&id).await;
    assert_eq!(c["active"]["cdbPassword"], "pw-two");
    assert_eq!(c["previous"]["cdbPassword"], "pw-one");

    // PUT /values/pending sets only pending.
    let r = app
        .admin
        .put(
            &format!("/api/v1/secrets/{id}/values/pending"),
            &json!({"value": db_value("app", "pw-three").to_string()}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let c = app.chain(&id).await;
    assert_eq!(c["pending"]["cdbPassword"], "pw-three");
    assert_eq!(c["active"]["cdbPassword"], "pw-two");

    // GET one stage.
    let d = app.admin.get(&format!("/api/v1/secrets/{id}/previous")).await.unwrap().into_data().unwrap();
    assert_eq!(d["stage"], "previous");
    let v: serde_json::Value = serde_json::from_str(d["value"].as_str().unwrap()).unwrap();
    assert_eq!(v["cdbPassword"], "pw-one");

    // Versions: immutable, numbered, stages pointing at them.
    let versions = app.admin.get(&format!("/api/v1/secrets/{id}/versions")).await.unwrap().into_data().unwrap();
    let list = versions["versionList"].as_array().unwrap();
    assert_eq!(list.iter().map(|v| v["version"].as_i64().unwrap()).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(list[0]["stages"], json!(["pending"]));
    assert_eq!(list[1]["stages"], json!(["active"]));
    assert_eq!(list[2]["stages"], json!(["previous"]));

    let r = app.admin.put(&format!("/api/v1/secrets/{id}/memo"), &json!({"memo": "main db"})).await.unwrap();
    assert_eq!(r.into_data().unwrap()["memo"], "main db");

    // A new active value discards a pending made from the old one.
    let r = app
        .admin
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": db_value("app", "pw-four").to_string()}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let c = app.chain(&id).await;
    assert!(c.get("pending").is_none(), "{c}");
    assert_eq!(c["previous"]["cdbPassword"], "pw-two");
}

#[tokio::test]
async fn history_is_pruned_to_the_configured_bound() {
    let app = spawn_app().await; // history_limit = 3
    let id = app.create("h", json!({"k": "v0"}), &[]).await;
    for i in 1..=8 {
        let r = app
            .admin
            .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": json!({"k": format!("v{i}")}).to_string()}))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let versions = app.admin.get(&format!("/api/v1/secrets/{id}/versions")).await.unwrap().into_data().unwrap();
    let nums: Vec<i64> =
        versions["versionList"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(nums, [9, 8, 7, 6, 5], "active and previous, plus the newest 3 others");
    let c = app.chain(&id).await;
    assert_eq!(c["active"]["k"], "v8");
    assert_eq!(c["previous"]["k"], "v7");
}

#[tokio::test]
async fn list_is_paginated() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create(&format!("s{i}"), json!({"k": "v"}), &[]).await;
    }
    let p = app.admin.get("/api/v1/secrets?pageNo=2&pageSize=2").await.unwrap().into_data().unwrap();
    assert_eq!(p["totalCount"], 5);
    assert_eq!(p["totalPageNo"], 3);
    assert_eq!(p["currentPageNo"], 2);
    let names: Vec<&str> =
        p["secretList"].as_array().unwrap().iter().map(|s| s["secretName"].as_str().unwrap()).collect();
    assert_eq!(names, ["s2", "s3"]);
    let p = app.admin.get("/api/v1/secrets?pageNo=3&pageSize=2").await.unwrap().into_data().unwrap();
    assert_eq!(p["secretList"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn disable_enable_and_deletion_lifecycle() {
    let app = spawn_app().await;
    let id = app.create("life", json!({"k": "v"}), &[]).await;
    let path = |s: &str| format!("/api/v1/secrets/{id}/{s}");

    let d = app.admin.post(&path("disable"), &json!({})).await.unwrap().into_data().unwrap();
    assert_eq!(d["secretStatus"], "DISABLE");
    let r = app.admin.get(&path("values")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")));
    app.admin.post(&path("enable"), &json!({})).await.unwrap().into_data().unwrap();
    assert_eq!(app.admin.get(&path("values")).await.unwrap().status, 200);

    // DELETE needs a deletion request first: one mistaken call loses nothing.
    let r = app.admin.delete(&format!("/api/v1/secrets/{id}")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")));

    // Request deletion without a body: the default recovery window.
    let r = app.admin.call(rotary_client::Method::POST, &path("request-deletion"), None).await.unwrap();
    let d = r.into_data().unwrap();
    assert_eq!(d["secretStatus"], "REVOKE");
    let window = d["expectedDestroyDate"].as_i64().unwrap() - d["updateDate"].as_i64().unwrap();
    assert_eq!(window, 7 * 86_400_000);
    let r = app.admin.get(&path("values")).await.unwrap();
    assert_eq!(r.status, 409, "values are unreadable while scheduled for deletion");
    assert!(r.body["error"]["message"].as_str().unwrap().contains("scheduled for deletion"));
    let r = app.admin.put(&path("memo"), &json!({"memo": "x"})).await.unwrap();
    assert_eq!(r.status, 409);

    let d = app.admin.post(&path("cancel-deletion"), &json!({})).await.unwrap().into_data().unwrap();
    assert_eq!(d["secretStatus"], "ENABLE");
    assert!(d.get("expectedDestroyDate").is_none());
    assert_eq!(app.chain(&id).await["active"]["k"], "v", "value survived the cancelled deletion");

    // A disabled secret returns to DISABLE when its deletion is cancelled.
    app.admin.post(&path("disable"), &json!({})).await.unwrap();
    app.admin.post(&path("request-deletion"), &json!({"waitingPeriod": 1})).await.unwrap().into_data().unwrap();
    let d = app.admin.post(&path("cancel-deletion"), &json!({})).await.unwrap().into_data().unwrap();
    assert_eq!(d["secretStatus"], "DISABLE");

    app.admin.post(&path("request-deletion"), &json!({})).await.unwrap().into_data().unwrap();
    let r = app.admin.delete(&format!("/api/v1/secrets/{id}")).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.admin.get(&format!("/api/v1/secrets/{id}")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn health_and_openapi_need_no_signature() {
    let app = spawn_app().await;
    let r = app.admin.raw(rotary_client::Method::GET, "/health", &[], None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"status": "ok"}));
    let doc = app.admin.raw(rotary_client::Method::GET, "/api/v1/openapi.json", &[], None).await.unwrap();
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/secrets",
        "/api/v1/secrets/{secretId}",
        "/api/v1/secrets/{secretId}/values",
        "/api/v1/secrets/{secretId}/values/{stage}",
        "/api/v1/secrets/{secretId}/{stage}",
        "/api/v1/secrets/{secretId}/request-deletion",
        "/api/v1/access-keys",
        "/api/v1/audit/verify",
        "/health",
    ] {
        assert!(paths.contains_key(p), "OpenAPI lacks {p}");
    }
    assert!(doc.body["components"]["securitySchemes"]["signature"].is_object());
}

#[tokio::test]
async fn concurrent_writes_to_one_secret_all_land_in_order() {
    let app = spawn_app().await;
    let id = app.create("busy", json!({"n": "0"}), &[]).await;
    let admin = std::sync::Arc::new(app.admin);
    let mut handles = vec![];
    for i in 1..=50 {
        let (admin, id) = (admin.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            let body = json!({"value": json!({"n": i.to_string()}).to_string()});
            admin.put(&format!("/api/v1/secrets/{id}/values"), &body).await.unwrap().status
        }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), 200);
    }
    let versions = admin.get(&format!("/api/v1/secrets/{id}/versions")).await.unwrap().into_data().unwrap();
    let newest = versions["versionList"][0]["version"].as_i64().unwrap();
    assert_eq!(newest, 51, "every write made exactly one version");
    let d = admin.get(&format!("/api/v1/secrets/{id}/active")).await.unwrap().into_data().unwrap();
    assert_eq!(d["version"], 51);
}

/// Opens a connection and writes one request signed by `client` (its own
/// signing, `Client::sign`), without reading the answer.
async fn send_raw(client: &Client, method: Method, path: &str, body: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let host = client.endpoint().trim_start_matches("http://");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in client.sign(&method, path) {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// Sends one signed request and resets the connection `wait_us` later,
/// without reading the answer: a client that gives up.
async fn abandoned_request(client: &Client, path: &str, body: &str, wait_us: u64) {
    let s = send_raw(client, Method::PUT, path, body).await;
    tokio::time::sleep(std::time::Duration::from_micros(wait_us)).await;
    // A zero linger resets at once (it is a non-zero one that blocks on drop).
    #[allow(deprecated)]
    s.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(s);
}

#[tokio::test]
async fn a_client_that_disconnects_cannot_leave_an_old_value_readable() {
    // A change the server committed must be what every later read sees, even
    // when the client that asked for it hung up while it was being written.
    let app = spawn_app().await;
    let id = app.create("abandoned", json!({"k": "v0"}), &[]).await;
    let (mut current, mut version, mut changed) = (0u64, 1i64, 0);
    for i in 1..=100u64 {
        assert_eq!(app.chain(&id).await["active"]["k"], format!("v{current}")); // cached now
        let body = json!({"value": json!({"k": format!("v{i}")}).to_string()}).to_string();
        abandoned_request(&app.admin, &format!("/api/v1/secrets/{id}/values"), &body, (i * 97) % 3000).await;
        // Wait until the change is in the versions list (uncached), or give
        // up: a reset that arrives before the server read the request loses it.
        let mut landed = false;
        for _ in 0..50 {
            let v = app.admin.get(&format!("/api/v1/secrets/{id}/versions")).await.unwrap().into_data().unwrap();
            if v["versionList"].as_array().unwrap().iter().any(|x| x["version"].as_i64() == Some(version + 1)) {
                landed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if landed {
            (current, version, changed) = (i, version + 1, changed + 1);
        }
        assert_eq!(
            app.chain(&id).await["active"]["k"],
            format!("v{current}"),
            "a read after change {i} saw the old value"
        );
    }
    assert!(changed >= 75, "only {changed} of 100 abandoned requests reached the server");
    // Each change that was carried out was audited, although nobody read the answer.
    let after = app.admin.get("/api/v1/audit?pageSize=1000").await.unwrap().into_data().unwrap();
    let puts = after["auditList"].as_array().unwrap().iter().filter(|e| e["action"] == "PutSecretValue").count();
    assert_eq!(puts, changed);
}

#[tokio::test]
async fn a_request_whose_client_closes_right_after_sending_is_carried_out_and_audited() {
    // The client sends a whole request and closes its side at once (FIN):
    // the server has the request, so it must run it and audit it.
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let id = app.create("closed-early", json!({"k": "v"}), &[]).await;
    for i in 0..40 {
        let (method, path, body) = if i % 2 == 0 {
            (Method::PUT, format!("/api/v1/secrets/{id}/memo"), json!({"memo": format!("m{i}")}).to_string())
        } else {
            (Method::GET, format!("/api/v1/secrets/{id}/values"), String::new())
        };
        let mut s = send_raw(&app.admin, method, &path, &body).await;
        s.shutdown().await.unwrap();
        drop(s);
    }
    // All 40 were received; wait for them to be recorded (20 memo changes, 20 reads).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = app.admin.get("/api/v1/audit?pageSize=1000").await.unwrap().into_data().unwrap();
        let n = |action: &str| page["auditList"].as_array().unwrap().iter().filter(|e| e["action"] == action).count();
        let (memos, reads) = (n("UpdateMemo"), n("GetSecretValue"));
        if (memos, reads) == (20, 20) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {memos} memo changes and {reads} reads were audited");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The changes ran (concurrently, on 20 connections): the memo is one of them.
    let memo = app.admin.get(&format!("/api/v1/secrets/{id}")).await.unwrap().into_data().unwrap()["memo"].clone();
    assert!((0..40).step_by(2).any(|i| memo == format!("m{i}")), "{memo}");
}
