//! Body and query extractors whose errors are NCP error JSON that name the
//! field at fault but never echo what the client sent (it may be a secret).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

fn describe(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    let at = e.path().to_string();
    let msg = inner.to_string();
    // serde's own text for these two names only field names; every other
    // message may quote the offending value, so it is replaced.
    if inner.is_data() && (msg.starts_with("missing field") || msg.starts_with("unknown field")) {
        let field = msg.split(" at line").next().unwrap_or(&msg);
        return if at == "." { format!("request body: {field}") } else { format!("request body: {at}: {field}") };
    }
    match inner.classify() {
        serde_json::error::Category::Data => format!("request body: field {at:?} has the wrong type or value"),
        serde_json::error::Category::Eof => "request body is truncated JSON".to_owned(),
        _ => format!("request body is not valid JSON (line {}, column {})", inner.line(), inner.column()),
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| ApiError::Invalid(describe(&e)))
}

fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::Invalid("request body is larger than the 2 MiB limit".into())
    } else {
        ApiError::Invalid("request body could not be read".into())
    }
}

/// A JSON body, required.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        if bytes.is_empty() {
            return Err(ApiError::Invalid("request body is empty; a JSON object is required".into()));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be absent (empty) — then `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

/// Query parameters with NCP-style errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::Invalid(format!("query string: {}", e.body_text())))
    }
}
