use std::sync::Arc;

use rotary_client::Client;
use rotary_core::SystemClock;
use rotary_server::{Config, Running};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

pub struct TestApp {
    pub server: Running,
    pub admin: Client,
    pub base: String,
    pub dir: tempfile::TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Arc::new(SystemClock)).await
}

/// A server with a changed configuration and the given clock.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config), clock: Arc<dyn rotary_core::Clock>) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        history_limit: 3,
        ..Config::default()
    };
    change(&mut cfg);
    let server = rotary_server::start(&cfg, clock).await.expect("server starts");
    let base = format!("http://{}", server.addr);
    let admin = {
        let a = server.first_admin.as_ref().expect("a new data dir makes an admin key");
        Client::new(&base, &a.access_key, SecretString::from(a.secret_key.expose_secret().to_owned()))
    };
    TestApp { server, admin, base, dir }
}

impl TestApp {
    pub fn db_path(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("rotary.db")
    }

    /// A client with a new key of `role`, optionally limited to `pattern`.
    pub async fn key(&self, role: &str, pattern: Option<&str>) -> Client {
        let data = self
            .admin
            .post("/api/v1/access-keys", &json!({"role": role, "secretPattern": pattern}))
            .await
            .unwrap()
            .into_data()
            .expect("key created");
        Client::new(
            &self.base,
            data["accessKey"].as_str().unwrap(),
            SecretString::from(data["secretKey"].as_str().unwrap().to_owned()),
        )
    }

    pub async fn create(&self, name: &str, value: Value, targets: &[&str]) -> String {
        self.admin.create_secret(name, &value, targets).await.expect("secret created")
    }

    /// The parsed stages of a secret's chain (stage → JSON object).
    pub async fn chain(&self, id: &str) -> Value {
        let data = self.admin.values(id).await.expect("values");
        let mut out = serde_json::Map::new();
        for (k, v) in data["decryptedSecretChain"].as_object().unwrap() {
            out.insert(k.clone(), serde_json::from_str(v.as_str().expect("stages are JSON strings")).unwrap());
        }
        Value::Object(out)
    }

    /// Everything observable about stored secrets, to prove a failed request changed nothing.
    pub async fn snapshot(&self) -> Value {
        let list = self.admin.get("/api/v1/secrets?pageSize=1000").await.unwrap().into_data().unwrap();
        let mut out = vec![];
        for s in list["secretList"].as_array().unwrap() {
            let id = s["secretId"].as_str().unwrap();
            let values = self.admin.get(&format!("/api/v1/secrets/{id}/values")).await.unwrap().body;
            let versions = self.admin.get(&format!("/api/v1/secrets/{id}/versions")).await.unwrap().body;
            out.push(json!({"detail": s, "values": values, "versions": versions}));
        }
        Value::Array(out)
    }
}

pub fn db_value(user: &str, password: &str) -> Value {
    json!({"cdbHost": "127.0.0.1", "cdbPort": "5432", "cdbUser": user, "cdbDatabase": "app", "cdbPassword": password})
}
