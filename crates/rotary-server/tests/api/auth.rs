//! Signature v2, timestamps, key revocation and policies.

use rotary_client::{Client, Method};
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{db_value, spawn_app};

fn assert_auth_failed(r: &rotary_client::Answer, details: &str) {
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(r.error_code(), Some("200"));
    assert_eq!(r.body["error"]["message"], "Authentication Failed");
    let d = r.body["error"]["details"].as_str().unwrap();
    assert!(d.contains(details), "details {d:?} should mention {details:?}");
}

#[tokio::test]
async fn missing_wrong_and_unknown_credentials_are_rejected() {
    let app = spawn_app().await;
    let path = "/api/v1/secrets";
    let good = app.admin.sign(&Method::GET, path);
    for (drop, name) in [(0, "x-ncp-apigw-timestamp"), (1, "x-ncp-iam-access-key"), (2, "x-ncp-apigw-signature-v2")] {
        let h: Vec<(&str, String)> =
            good.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, h)| h.clone()).collect();
        let r = app.admin.raw(Method::GET, path, &h, None).await.unwrap();
        assert_auth_failed(&r, name);
    }
    // Signed for another path, or another method.
    let other = app.admin.sign(&Method::GET, "/api/v1/secrets?pageNo=2");
    assert_auth_failed(&app.admin.raw(Method::GET, path, &other, None).await.unwrap(), "signature");
    let post = app.admin.sign(&Method::POST, path);
    assert_auth_failed(&app.admin.raw(Method::GET, path, &post, None).await.unwrap(), "signature");
    // Wrong secret key, unknown access key.
    let a = app.server.first_admin.as_ref().unwrap();
    let wrong = Client::new(&app.base, &a.access_key, SecretString::from("wrong-secret-key".to_owned()));
    assert_auth_failed(&wrong.get(path).await.unwrap(), "signature");
    let unknown = Client::new(&app.base, "NOSUCHKEY0000000000", SecretString::from("x".to_owned()));
    assert_auth_failed(&unknown.get(path).await.unwrap(), "unknown access key");
    let r = app
        .admin
        .raw(
            Method::GET,
            path,
            &[("x-ncp-apigw-timestamp", "yesterday".into()), good[1].clone(), good[2].clone()],
            None,
        )
        .await
        .unwrap();
    assert_auth_failed(&r, "milliseconds");
}

#[tokio::test]
async fn timestamps_must_be_within_five_minutes() {
    let app = spawn_app().await;
    let a = app.server.first_admin.as_ref().unwrap();
    let at = |offset_s: i64| {
        Client::new(
            &app.base,
            &a.access_key,
            SecretString::from(secrecy::ExposeSecret::expose_secret(&a.secret_key).to_owned()),
        )
        .with_time_offset_ms(offset_s * 1000)
    };
    assert_eq!(at(-299).get("/api/v1/secrets").await.unwrap().status, 200);
    assert_eq!(at(299).get("/api/v1/secrets").await.unwrap().status, 200);
    let r = at(-301).get("/api/v1/secrets").await.unwrap();
    assert_auth_failed(&r, "server time");
    // The server's time is in the message, so a client can see its own skew.
    let d = r.body["error"]["details"].as_str().unwrap();
    let server_ms: i64 = d.split("server time ").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    let local = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!((server_ms - local).abs() < 60_000);
    assert_auth_failed(&at(301).get("/api/v1/secrets").await.unwrap(), "server time");
}

#[tokio::test]
async fn revoked_keys_stop_working() {
    let app = spawn_app().await;
    let reader = app.key("reader", None).await;
    assert_eq!(reader.get("/api/v1/secrets").await.unwrap().status, 200);
    let keys = app.admin.get("/api/v1/access-keys").await.unwrap().into_data().unwrap();
    let list = keys["accessKeyList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|k| k.get("secretKey").is_none()), "secret keys are never listed");
    let ak = list.iter().find(|k| k["role"] == "reader").unwrap()["accessKey"].as_str().unwrap().to_owned();
    assert_eq!(app.admin.delete(&format!("/api/v1/access-keys/{ak}")).await.unwrap().status, 200);
    assert_auth_failed(&reader.get("/api/v1/secrets").await.unwrap(), "revoked");
    let r = app.admin.delete(&format!("/api/v1/access-keys/{ak}")).await.unwrap();
    assert_eq!(r.error_code(), Some("INVALID_STATUS"));
}

#[tokio::test]
async fn roles_and_patterns_limit_what_a_key_may_do() {
    let app = spawn_app().await;
    let app_id = app.create("app/db", db_value("u", "p1"), &["cdbPassword"]).await;
    let other_id = app.create("other/db", db_value("u", "p2"), &["cdbPassword"]).await;
    let forbidden = |r: rotary_client::Answer| {
        assert_eq!((r.status, r.error_code()), (403, Some("FORBIDDEN")), "{:?}", r.body);
    };

    let meta = app.key("metadata", None).await;
    assert_eq!(meta.get(&format!("/api/v1/secrets/{app_id}")).await.unwrap().status, 200);
    forbidden(meta.get(&format!("/api/v1/secrets/{app_id}/values")).await.unwrap());
    forbidden(meta.get(&format!("/api/v1/secrets/{app_id}/active")).await.unwrap());

    let reader = app.key("reader", Some("app/*")).await;
    assert_eq!(reader.get(&format!("/api/v1/secrets/{app_id}/values")).await.unwrap().status, 200);
    // Outside its pattern a secret does not exist for the key (no probing by id).
    let r = reader.get(&format!("/api/v1/secrets/{other_id}/values")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (404, Some("NOT_FOUND")));
    let r = reader.get(&format!("/api/v1/secrets/{other_id}")).await.unwrap();
    assert_eq!(r.status, 404);
    forbidden(reader.put(&format!("/api/v1/secrets/{app_id}/memo"), &json!({"memo": "x"})).await.unwrap());
    let listed = reader.get("/api/v1/secrets").await.unwrap().into_data().unwrap();
    assert_eq!(listed["totalCount"], 1, "a scoped key lists only its secrets");

    let manager = app.key("manager", Some("app/*")).await;
    assert!(manager.create_secret("app/new", &json!({"k": "v"}), &[]).await.is_ok());
    let r = manager
        .post("/api/v1/secrets", &json!({"secretName": "other/new", "secretValue": {"value": "{\"k\":\"v\"}"}}))
        .await
        .unwrap();
    forbidden(r);
    forbidden(manager.post("/api/v1/access-keys", &json!({"role": "admin"})).await.unwrap());
    forbidden(manager.get("/api/v1/audit").await.unwrap());

    let scoped_admin = app.key("admin", Some("app/*")).await;
    forbidden(scoped_admin.post("/api/v1/access-keys", &json!({"role": "admin"})).await.unwrap());

    let r = app.admin.post("/api/v1/access-keys", &json!({"role": "superuser"})).await.unwrap();
    assert_eq!(r.error_code(), Some("INVALID_REQUEST"));
    let r =
        app.admin.post("/api/v1/access-keys", &json!({"role": "reader", "secretPattern": "app/[x]"})).await.unwrap();
    assert_eq!(r.error_code(), Some("INVALID_REQUEST"));
}

#[tokio::test]
async fn the_last_unscoped_admin_key_cannot_be_revoked() {
    let app = spawn_app().await;
    let me = app.server.first_admin.as_ref().unwrap().access_key.clone();
    let r = app.admin.delete(&format!("/api/v1/access-keys/{me}")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (409, Some("INVALID_STATUS")));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("last active admin key"));
    // With a second admin key, the first can go.
    let second = app.key("admin", None).await;
    assert_eq!(second.delete(&format!("/api/v1/access-keys/{me}")).await.unwrap().status, 200);
    assert_auth_failed(&app.admin.get("/api/v1/secrets").await.unwrap(), "revoked");
}

#[tokio::test]
async fn a_role_raised_by_editing_the_database_disables_the_key() {
    use sqlx::{ConnectOptions, sqlite::SqliteConnectOptions};
    let app = spawn_app().await;
    let k = app
        .admin
        .post("/api/v1/access-keys", &serde_json::json!({"role": "reader", "secretPattern": "app/*"}))
        .await
        .unwrap()
        .into_data()
        .unwrap();
    let (ak, sk) = (k["accessKey"].as_str().unwrap().to_owned(), k["secretKey"].as_str().unwrap().to_owned());
    let reader = rotary_client::Client::new(&app.base, &ak, secrecy::SecretString::from(sk.clone()));
    assert_eq!(reader.get("/api/v1/secrets").await.unwrap().status, 200);
    let mut c = SqliteConnectOptions::new().filename(app.db_path()).connect().await.unwrap();
    sqlx::query("UPDATE access_keys SET role = 'admin', secret_pattern = NULL WHERE role = 'reader'")
        .execute(&mut c)
        .await
        .unwrap();
    drop(c);
    // The running server may still hold the row it read before the edit: the
    // key must not have become an admin either way.
    let r = reader.get("/api/v1/access-keys").await.unwrap();
    assert!(matches!(r.status, 401 | 403), "the edited key must not become an admin: {:?}", r.body);
    // After a restart the edited row is read from the file, and its seal
    // (bound to the role and pattern) no longer opens.
    let data_dir = app.server.data_dir.clone();
    app.server.stop().await.unwrap();
    let cfg = rotary_server::Config { data_dir, listen: "127.0.0.1:0".into(), ..rotary_server::Config::default() };
    let again = rotary_server::start(&cfg, std::sync::Arc::new(rotary_core::SystemClock)).await.unwrap();
    let reader = rotary_client::Client::new(&format!("http://{}", again.addr), &ak, secrecy::SecretString::from(sk));
    let r = reader.get("/api/v1/access-keys").await.unwrap();
    assert_eq!(r.status, 401, "the edited key must not become an admin: {:?}", r.body);
    let r = reader.get("/api/v1/secrets").await.unwrap();
    assert_eq!(r.status, 401, "the edited key is disabled, not merely kept at its old role: {:?}", r.body);
    again.stop().await.unwrap();
}
