//! Encryption at rest: no plaintext in the database file or its WAL, and
//! ciphertexts bound to their secret and version.

use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};

use crate::helpers::{TestApp, db_value, spawn_app};

async fn db(app: &TestApp) -> SqliteConnection {
    SqliteConnectOptions::new().filename(app.db_path()).connect().await.expect("open db")
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn no_plaintext_value_or_secret_key_in_the_database_files() {
    let app = spawn_app().await;
    let values = ["PlainPw-Alpha-4471", "PlainPw-Bravo-9902", "PlainPw-Charlie-1234"];
    let id = app.create("Visible-Secret-Name-77", db_value("u", values[0]), &["cdbPassword"]).await;
    app.admin
        .put(&format!("/api/v1/secrets/{id}/values"), &json!({"value": db_value("u", values[1]).to_string()}))
        .await
        .unwrap();
    app.admin
        .put(&format!("/api/v1/secrets/{id}/values/pending"), &json!({"value": db_value("u", values[2]).to_string()}))
        .await
        .unwrap();
    let key = app.admin.post("/api/v1/access-keys", &json!({"role": "reader"})).await.unwrap().into_data().unwrap();
    let mut needles: Vec<String> = values.iter().map(|s| s.to_string()).collect();
    needles.push(key["secretKey"].as_str().unwrap().to_owned());
    needles.push(secrecy::ExposeSecret::expose_secret(&app.server.first_admin.as_ref().unwrap().secret_key).to_owned());

    let dir = app.db_path().parent().unwrap().to_owned();
    let mut all = Vec::new();
    for f in ["rotary.db", "rotary.db-wal", "rotary.db-shm"] {
        let Ok(bytes) = std::fs::read(dir.join(f)) else { continue };
        for n in &needles {
            assert!(!contains(&bytes, n), "{f} holds a plaintext secret");
        }
        all.extend_from_slice(&bytes);
    }
    // The search works: what is stored in the clear (names) is found.
    assert!(contains(&all, "Visible-Secret-Name-77"), "sanity: the secret name should be in the files");
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_secret_or_altered_does_not_decrypt() {
    let app = spawn_app().await;
    let a = app.create("a", json!({"k": "Value-Of-A-5521"}), &[]).await;
    let b = app.create("b", json!({"k": "Value-Of-B-8830"}), &[]).await;
    let mut c = db(&app).await;
    let ct_a: Vec<u8> =
        sqlx::query_scalar("SELECT ciphertext FROM secret_versions WHERE secret_id = ? AND version = 1")
            .bind(&a)
            .fetch_one(&mut c)
            .await
            .unwrap();
    // Versions are immutable (an UPDATE trigger refuses), so replace the row.
    sqlx::query("DELETE FROM secret_versions WHERE secret_id = ? AND version = 1")
        .bind(&b)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO secret_versions (secret_id, version, ciphertext, created_at) VALUES (?, 1, ?, 0)")
        .bind(&b)
        .bind(&ct_a)
        .execute(&mut c)
        .await
        .unwrap();
    let r = app.admin.get(&format!("/api/v1/secrets/{b}/values")).await.unwrap();
    assert_eq!((r.status, r.error_code()), (500, Some("INTERNAL_SERVER_ERROR")));
    assert!(!r.body.to_string().contains("Value-Of-A"), "{}", r.body);

    // One flipped bit in a's ciphertext.
    let mut flipped = ct_a.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    sqlx::query("DELETE FROM secret_versions WHERE secret_id = ? AND version = 1")
        .bind(&a)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO secret_versions (secret_id, version, ciphertext, created_at) VALUES (?, 1, ?, 0)")
        .bind(&a)
        .bind(&flipped)
        .execute(&mut c)
        .await
        .unwrap();
    let r = app.admin.get(&format!("/api/v1/secrets/{a}/values")).await.unwrap();
    assert_eq!(r.status, 500);
    // Restoring the original bytes restores the value: it was the alteration that failed.
    sqlx::query("DELETE FROM secret_versions WHERE secret_id = ? AND version = 1")
        .bind(&a)
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query("INSERT INTO secret_versions (secret_id, version, ciphertext, created_at) VALUES (?, 1, ?, 0)")
        .bind(&a)
        .bind(&ct_a)
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(app.chain(&a).await["active"]["k"], "Value-Of-A-5521");
}
