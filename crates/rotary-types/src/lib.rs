//! Wire types of the Rotary HTTP API: the NCP-compatible envelope, error codes
//! and request/response bodies.
//!
//! Field names are NAVER Cloud Secret Manager's (camelCase) so that clients
//! written for that service parse our answers unchanged. Values of secrets are
//! carried as `SecretString` so that `Debug` never prints them; they are
//! exposed only when serialized onto the wire.

mod access;
mod error;
mod rotation;
mod secrets;

pub use access::*;
pub use error::*;
pub use rotation::*;
pub use secrets::*;

use serde::Serialize;
use utoipa::ToSchema;

/// The success envelope: `{"code":"SUCCESS","data":...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success<T> {
    /// Always `SUCCESS`.
    pub code: &'static str,
    pub data: T,
}

impl<T> Success<T> {
    pub fn new(data: T) -> Self {
        Self { code: "SUCCESS", data }
    }
}

/// `GET /health` answer: status only, no details.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Health {
    /// `ok` when the server can serve requests.
    pub status: String,
}
