//! The core's error: a kind the edge maps to a wire code, and a message that is
//! safe to show a client (it never holds a secret value).

use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Forbidden,
    NotFound,
    InvalidStatus,
    Unprocessable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    pub kind: ErrorKind,
    /// Client-safe text: says what was wrong, never a value.
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn status(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidStatus, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn internal(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self { kind: ErrorKind::Internal, message: message.into(), source: Some(Box::new(source)) }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Self::status(what),
            other => Self::internal("storage failure", other),
        }
    }
}

impl From<rotary_crypto::CryptoError> for CoreError {
    fn from(e: rotary_crypto::CryptoError) -> Self {
        Self::internal("stored data could not be decrypted", e)
    }
}
