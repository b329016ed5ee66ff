//! The one registry of error codes and the one error body shape.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Error codes as NAVER Cloud's API gateway and Secret Manager return them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    /// Signature, access key or timestamp problems: errorCode `"200"`,
    /// message `Authentication Failed`, as NCP's gateway answers.
    AuthenticationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    InvalidStatus,
    UnprocessableEntity,
    InternalServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::AuthenticationFailed => "200",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::InvalidStatus => "INVALID_STATUS",
            Self::UnprocessableEntity => "UNPROCESSABLE_ENTITY",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::AuthenticationFailed | Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::InvalidStatus => 409,
            Self::UnprocessableEntity => 422,
            Self::InternalServerError => 500,
        }
    }
}

/// `{"error":{"errorCode","message","details"}}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub error_code: String,
    pub message: String,
    pub details: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>, details: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                error_code: code.as_str().to_owned(),
                message: message.into(),
                details: details.into(),
            },
        }
    }
}
