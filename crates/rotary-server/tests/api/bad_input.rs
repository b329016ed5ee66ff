//! Bad input gets the NCP error JSON with the right code, a message that says
//! what was wrong (and never echoes a value), and changes nothing.

use rotary_client::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_value, spawn_app};

/// Method, path and raw body of one request.
type Req = (Method, String, Option<Vec<u8>>);

const SENTINEL: &str = "Sentinel-Pw-7x9q";

async fn expect_error(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    code: &str,
    status: u16,
    msg: &str,
) {
    let headers = app.admin.sign(&method, path);
    let r = app.admin.raw(method, path, &headers.map(|(k, v)| (k, v)), body).await.unwrap();
    assert_eq!(r.status, status, "{path}: {:?}", r.body);
    assert_eq!(r.error_code(), Some(code), "{path}: {:?}", r.body);
    let m = r.body["error"]["message"].as_str().unwrap();
    assert!(m.contains(msg), "{path}: message {m:?} should mention {msg:?}");
    assert!(!r.body.to_string().contains(SENTINEL), "{path}: error body echoes a value: {}", r.body);
}

fn create_body(name: &str, value: &str, targets: Value) -> Vec<u8> {
    json!({"secretName": name, "secretValue": {"value": value, "rotationTargets": targets}}).to_string().into_bytes()
}

#[tokio::test]
async fn each_bad_input_is_rejected_and_loses_nothing() {
    let app = spawn_app().await;
    let id = app.create("keep", db_value("app", SENTINEL), &["cdbPassword"]).await;
    let before = app.snapshot().await;
    let post = |b| (Method::POST, "/api/v1/secrets".to_string(), Some(b));
    let pw = format!(r#"{{"password":"{SENTINEL}","port":5432}}"#);
    let cases: Vec<(Req, &str, u16, &str)> = vec![
        (post(b"{\"secretName\": ".to_vec()), "INVALID_REQUEST", 400, "JSON"),
        (
            post(format!("{{\"secretName\":\"x\",\"secretValue\":\"{SENTINEL}\"}}").into_bytes()),
            "INVALID_REQUEST",
            400,
            "secretValue",
        ),
        (post(b"{\"secretValue\":{\"value\":\"{}\"}}".to_vec()), "INVALID_REQUEST", 400, "secretName"),
        (
            post(create_body("n1", &format!("[\"{SENTINEL}\"]"), json!([]))),
            "INVALID_REQUEST",
            400,
            "JSON object of strings",
        ),
        (post(create_body("n1", &pw, json!([]))), "INVALID_REQUEST", 400, "\"port\" must be a string"),
        (
            post(create_body("n1", &format!("{{\"password\":\"{SENTINEL}\""), json!([]))),
            "INVALID_REQUEST",
            400,
            "not valid JSON",
        ),
        (
            post(create_body("n1", &json!({"k": "x".repeat(10_001)}).to_string(), json!([]))),
            "INVALID_REQUEST",
            400,
            "10000",
        ),
        (
            post(create_body(
                "n1",
                &Value::Object((0..101).map(|i| (format!("k{i}"), json!("v"))).collect()).to_string(),
                json!([]),
            )),
            "INVALID_REQUEST",
            400,
            "1-100 keys",
        ),
        (
            post(create_body("n1", &json!({"password": SENTINEL}).to_string(), json!(["pass"]))),
            "INVALID_REQUEST",
            400,
            "not a key",
        ),
        (
            post(create_body("bad name", &json!({"password": SENTINEL}).to_string(), json!([]))),
            "INVALID_REQUEST",
            400,
            "secretName",
        ),
        (
            post(create_body("", &json!({"password": SENTINEL}).to_string(), json!([]))),
            "INVALID_REQUEST",
            400,
            "secretName",
        ),
        (
            post(create_body("keep", &json!({"password": SENTINEL}).to_string(), json!([]))),
            "INVALID_STATUS",
            409,
            "already exists",
        ),
        ((Method::GET, "/api/v1/secrets/nonexistent".into(), None), "NOT_FOUND", 404, "no secret"),
        ((Method::GET, "/api/v1/secrets/nonexistent/values".into(), None), "NOT_FOUND", 404, "no secret"),
        ((Method::GET, format!("/api/v1/secrets/{id}/bogus"), None), "INVALID_REQUEST", 400, "unknown stage"),
        (
            (
                Method::PUT,
                format!("/api/v1/secrets/{id}/values/bogus"),
                Some(json!({"value": json!({"cdbPassword": SENTINEL}).to_string()}).to_string().into_bytes()),
            ),
            "INVALID_REQUEST",
            400,
            "unknown stage",
        ),
        (
            (
                Method::PUT,
                format!("/api/v1/secrets/{id}/values"),
                Some(json!({"value": json!({"other": SENTINEL}).to_string()}).to_string().into_bytes()),
            ),
            "INVALID_REQUEST",
            400,
            "cdbPassword",
        ),
        (
            (Method::PUT, format!("/api/v1/secrets/{id}/values"), Some(b"not json".to_vec())),
            "INVALID_REQUEST",
            400,
            "JSON",
        ),
        ((Method::PUT, format!("/api/v1/secrets/{id}/values"), None), "INVALID_REQUEST", 400, "empty"),
        (
            (
                Method::PUT,
                format!("/api/v1/secrets/{id}/memo"),
                Some(json!({"memo": "m".repeat(1001)}).to_string().into_bytes()),
            ),
            "INVALID_REQUEST",
            400,
            "memo",
        ),
        ((Method::GET, "/api/v1/secrets?pageSize=0".into(), None), "INVALID_REQUEST", 400, "pageSize"),
        ((Method::GET, "/api/v1/secrets?pageNo=abc".into(), None), "INVALID_REQUEST", 400, "query"),
        (
            (
                Method::POST,
                format!("/api/v1/secrets/{id}/request-deletion"),
                Some(json!({"waitingPeriod": 99}).to_string().into_bytes()),
            ),
            "INVALID_REQUEST",
            400,
            "waitingPeriod",
        ),
        ((Method::POST, format!("/api/v1/secrets/{id}/cancel-deletion"), None), "INVALID_STATUS", 409, "not scheduled"),
        ((Method::GET, "/api/v1/nothing-here".into(), None), "NOT_FOUND", 404, "no such"),
        ((Method::PATCH, "/api/v1/secrets".into(), None), "NOT_FOUND", 404, "no such"),
    ];
    for ((method, path, body), code, status, msg) in cases {
        expect_error(&app, method, &path, body, code, status, msg).await;
    }
    assert_eq!(app.snapshot().await, before, "a rejected request changed stored data");
}
