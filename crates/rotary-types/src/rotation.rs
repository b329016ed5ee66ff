//! Rotation: triggers, settings, jobs and the action API.

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTriggerRequest {
    pub name: String,
    /// `exec` or `http`.
    #[serde(rename = "type")]
    pub kind: String,
    /// exec: `{"command": [argv…], "workingDir"?, "timeoutSeconds"?}`;
    /// http: `{"url", "timeoutSeconds"?}`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Merged into the function's arguments (e.g. `accessKey`, `secretKey`); stored sealed.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub default_params: Map<String, Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    pub trigger_id: String,
    pub trigger_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// Names of the default parameters; their values are never shown.
    pub default_param_keys: Vec<String>,
    pub secret_id_list: Vec<String>,
    pub register_date: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerList {
    pub trigger_list: Vec<TriggerInfo>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnableAutoRotationRequest {
    pub rotation_period: i64,
    pub trigger_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationPeriodRequest {
    pub rotation_period: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerLinkRequest {
    pub trigger_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStepInfo {
    pub timestamp: i64,
    pub step: String,
    pub result: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    pub job_id: String,
    pub secret_id: String,
    /// `QUEUED`, `DISPATCHED`, `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `CANCELLED`.
    pub status: String,
    /// `MANUAL`, `SCHEDULED`, `RETRY`.
    pub kind: String,
    pub attempt: i64,
    pub trigger_id: Option<String>,
    pub create_date: i64,
    pub run_date: i64,
    pub start_date: Option<i64>,
    pub deadline_date: Option<i64>,
    pub finish_date: Option<i64>,
    pub error: Option<String>,
    pub steps: Vec<JobStepInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobList {
    pub total_count: i64,
    pub total_page_no: u32,
    pub current_page_no: u32,
    pub job_list: Vec<JobInfo>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Jobs whose status, error or any step contains this text.
    pub keyword: Option<String>,
    pub page_no: Option<u32>,
    pub page_size: Option<u32>,
    /// Jobs created at or after (ms since the epoch).
    pub timestamp_from: Option<i64>,
    /// Jobs created at or before (ms since the epoch).
    pub timestamp_to: Option<i64>,
}

fn expose<S: Serializer>(v: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secrecy::ExposeSecret::expose_secret(v))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RandomString {
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub random_string: SecretString,
}

/// NCP's generate-random-secret answer: the value in `data` and, as the seed
/// function reads it, at the top level too.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RandomStringAnswer {
    pub code: &'static str,
    pub data: RandomString,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub random_string: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingValue {
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub pending: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedValue {
    pub seq: i64,
    pub source: String,
    pub create_date: i64,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    pub value: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedValues {
    pub job_id: String,
    pub value_list: Vec<GeneratedValue>,
}
