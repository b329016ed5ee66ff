//! A small client for the Rotary API that signs every request with NCP
//! signature v2. Used by the integration tests now and by the CLI later.

use std::time::{SystemTime, UNIX_EPOCH};

pub use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to the Rotary server failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("the server answered {status} with a body that is not JSON")]
    NotJson { status: u16 },
    #[error("{code}: {message}")]
    Api { status: u16, code: String, message: String, details: String },
}

/// A raw answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub request_id: Option<String>,
}

impl Answer {
    /// `data` of a success, or the NCP error as [`ClientError::Api`].
    pub fn into_data(self) -> Result<Value, ClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self.body.get("data").cloned().unwrap_or(Value::Null));
        }
        let e = &self.body["error"];
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        Err(ClientError::Api {
            status: self.status,
            code: s("errorCode"),
            message: s("message"),
            details: s("details"),
        })
    }

    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["errorCode"].as_str()
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    access_key: String,
    secret_key: SecretString,
    /// Added to the local clock when signing (tests of clock skew).
    time_offset_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Client {
    pub fn new(endpoint: &str, access_key: &str, secret_key: SecretString) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            access_key: access_key.to_owned(),
            secret_key,
            time_offset_ms: 0,
        }
    }

    pub fn with_time_offset_ms(mut self, ms: i64) -> Self {
        self.time_offset_ms = ms;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The three signature headers for `method path_with_query` now.
    pub fn sign(&self, method: &Method, path_with_query: &str) -> [(&'static str, String); 3] {
        let ts = (now_ms() + self.time_offset_ms).to_string();
        let sig = rotary_crypto::sign_v2(
            self.secret_key.expose_secret().as_bytes(),
            method.as_str(),
            path_with_query,
            &ts,
            &self.access_key,
        );
        [
            ("x-ncp-apigw-timestamp", ts),
            ("x-ncp-iam-access-key", self.access_key.clone()),
            ("x-ncp-apigw-signature-v2", sig),
        ]
    }

    /// A signed request with an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path_with_query: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let headers = self.sign(&method, path_with_query);
        let mut req = self.http.request(method, format!("{}{}", self.endpoint, path_with_query));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::answer(req.send().await?).await
    }

    /// A request with exactly the given headers and raw body (for tests of
    /// malformed and unsigned requests).
    pub async fn raw(
        &self,
        method: Method,
        path_with_query: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let mut req = self.http.request(method, format!("{}{}", self.endpoint, path_with_query));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        Self::answer(req.send().await?).await
    }

    async fn answer(resp: reqwest::Response) -> Result<Answer, ClientError> {
        let status = resp.status().as_u16();
        let request_id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson { status })?
        };
        Ok(Answer { status, body, request_id })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a secret from a JSON object value; returns its id.
    pub async fn create_secret(&self, name: &str, value: &Value, targets: &[&str]) -> Result<String, ClientError> {
        let body = serde_json::json!({
            "secretName": name,
            "secretValue": {"value": value.to_string(), "rotationTargets": targets},
        });
        let data = self.post("/api/v1/secrets", &body).await?.into_data()?;
        Ok(data["secretId"].as_str().unwrap_or_default().to_owned())
    }

    /// The decrypted chain: each present stage parsed from its JSON string.
    pub async fn values(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/api/v1/secrets/{id}/values")).await?.into_data()
    }
}
