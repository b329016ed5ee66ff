//! Secret requests and responses (`/api/v1/secrets…`).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

fn expose<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.expose_secret())
}

fn expose_opt<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(v.expose_secret()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretValueInput {
    /// The secret as a JSON object of strings, itself encoded as a JSON string.
    #[schema(value_type = String, example = r#"{"user":"app","password":"..."}"#)]
    pub value: SecretString,
    /// Keys of the value that rotation replaces.
    #[serde(default)]
    pub rotation_targets: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSecretRequest {
    pub secret_name: String,
    pub memo: Option<String>,
    pub secret_value: SecretValueInput,
    /// `Y` or `N` (default `N`).
    #[serde(rename = "autoRotationYN")]
    pub auto_rotation_yn: Option<String>,
    /// Days, 1–730 (default 90).
    pub auto_rotation_period: Option<i64>,
    pub trigger_id: Option<String>,
    /// Only `DEFAULT` (the server's keyring) is supported.
    pub protection_key_type: Option<String>,
    pub kms_key_tag: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSecret {
    pub secret_id: String,
    pub secret_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtectionKey {
    pub key_type: String,
    pub key_id: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretDetail {
    pub secret_id: String,
    pub secret_name: String,
    /// `ENABLE | DISABLE | REVOKE | ROTATING | DESTROYED`.
    pub secret_status: String,
    pub secret_type: String,
    pub memo: String,
    pub region: String,
    pub rotation_targets: Vec<String>,
    #[serde(rename = "autoRotationYN")]
    pub auto_rotation_yn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_rotation_period: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rotation_date: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_phase: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_destroy_date: Option<i64>,
    pub protection_key: ProtectionKey,
    pub register_date: i64,
    pub update_date: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretList {
    pub total_count: i64,
    pub total_page_no: u32,
    pub current_page_no: u32,
    pub secret_list: Vec<SecretDetail>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    pub page_no: Option<u32>,
    /// Items per page, 1–1000 (default 20).
    pub page_size: Option<u32>,
}

/// The three stages, each a JSON string; an absent stage is omitted.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SecretChain {
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_opt")]
    #[schema(value_type = Option<String>)]
    pub active: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_opt")]
    #[schema(value_type = Option<String>)]
    pub pending: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "expose_opt")]
    #[schema(value_type = Option<String>)]
    pub previous: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretValues {
    pub decrypted_secret_chain: SecretChain,
    pub rotation_targets: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageValue {
    pub stage: String,
    pub version: i64,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub value: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PutValueRequest {
    /// The new value: a JSON object of strings encoded as a JSON string.
    #[schema(value_type = String)]
    pub value: SecretString,
    /// Replaces the rotation targets when given (`PUT /values` only).
    pub rotation_targets: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MemoRequest {
    pub memo: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionRequest {
    /// Recovery window in days (1–30); the server default when absent.
    pub waiting_period: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: i64,
    pub create_date: i64,
    /// Stages pointing at this version (`active`, `pending`, `previous`).
    pub stages: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub version_list: Vec<VersionInfo>,
}
