//! The one place where errors become NCP error JSON. What the client sees and
//! what the log records are separate; neither holds a secret value.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rotary_core::service::AuthFailure;
use rotary_core::{CoreError, ErrorKind};
use rotary_types::{ErrorBody, ErrorCode};

#[derive(Debug)]
pub enum ApiError {
    Core(CoreError),
    Auth(AuthFailure),
    /// A malformed request (body, query, path); the message is client-safe.
    Invalid(String),
    /// A request for a path or method the API does not have.
    NoRoute(String),
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self::Core(e)
    }
}

impl From<AuthFailure> for ApiError {
    fn from(e: AuthFailure) -> Self {
        Self::Auth(e)
    }
}

/// Put on every error response so the audit layer can record the code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodeTag(pub ErrorCode);

pub fn error_response(code: ErrorCode, message: impl Into<String>, details: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(ErrorBody::new(code, message, details))).into_response();
    resp.extensions_mut().insert(ErrorCodeTag(code));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Core(e) => {
                let code = match e.kind {
                    ErrorKind::InvalidRequest => ErrorCode::InvalidRequest,
                    ErrorKind::Forbidden => ErrorCode::Forbidden,
                    ErrorKind::NotFound => ErrorCode::NotFound,
                    ErrorKind::InvalidStatus => ErrorCode::InvalidStatus,
                    ErrorKind::Unprocessable => ErrorCode::UnprocessableEntity,
                    ErrorKind::Internal => ErrorCode::InternalServerError,
                };
                if code == ErrorCode::InternalServerError {
                    // Sources are store/crypto errors: no values by construction.
                    tracing::error!(error = %e, source = ?e.source, "internal error");
                    return error_response(code, "Internal server error", "see the server log for this request id");
                }
                error_response(code, e.message, "")
            }
            ApiError::Auth(f) => {
                if f == AuthFailure::Internal {
                    tracing::error!("authentication could not be checked");
                }
                error_response(ErrorCode::AuthenticationFailed, "Authentication Failed", f.to_string())
            }
            ApiError::Invalid(m) => error_response(ErrorCode::InvalidRequest, m, ""),
            ApiError::NoRoute(m) => error_response(ErrorCode::NotFound, m, ""),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
