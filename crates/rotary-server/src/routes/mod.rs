//! HTTP handlers: extract → one core call → map the result. No SQL here.

pub mod action;
pub mod admin;
pub mod rotation;
pub mod secrets;

use axum::Json;
use rotary_types::{Health, Success};

pub type Ok<T> = Json<Success<T>>;

pub fn ok<T>(data: T) -> Ok<T> {
    Json(Success::new(data))
}

/// Liveness for load balancers and scripts: status only, no details, no auth.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}
