//! Access keys and audit records.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateAccessKeyRequest {
    /// `metadata`, `reader`, `manager` or `admin`.
    pub role: String,
    /// Glob over secret names (`app/*`); absent means every secret.
    pub secret_pattern: Option<String>,
    pub description: Option<String>,
}

/// Answer to key creation: the only time the secret key is shown.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyCreated {
    pub access_key: String,
    pub secret_key: String,
    pub role: String,
    pub secret_pattern: Option<String>,
}

impl std::fmt::Debug for AccessKeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyCreated")
            .field("access_key", &self.access_key)
            .field("secret_key", &"[REDACTED]")
            .field("role", &self.role)
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyInfo {
    pub access_key: String,
    pub role: String,
    pub secret_pattern: Option<String>,
    pub description: Option<String>,
    /// `ACTIVE` or `REVOKED`.
    pub status: String,
    pub create_date: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoke_date: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeyList {
    pub access_key_list: Vec<AccessKeyInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub access_key: Option<String>,
    pub action: String,
    pub secret_id: Option<String>,
    /// `SUCCESS` or the error code.
    pub result: String,
    pub client_address: Option<String>,
    pub request_id: String,
    /// Hex SHA-256 over the previous hash and this record.
    pub hash: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    pub total_count: i64,
    pub current_page_no: u32,
    pub total_page_no: u32,
    pub audit_list: Vec<AuditEntry>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    /// True when every record's hash matches and no record is missing.
    pub valid: bool,
    pub checked_records: i64,
    /// The first record whose hash or sequence does not match, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_invalid_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
