//! The action (job) API `/action/v1/secrets/{secretId}/jobs/{jobToken}/…`,
//! exactly as NCP's, so rotation functions written for it run unchanged.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use rotary_core::domain::SecretValue;
use rotary_core::password::PasswordPolicy;
use rotary_core::service::Caller;
use rotary_types::{
    ErrorBody, PendingValue, PutValueRequest, RandomString, RandomStringAnswer, SecretChain, SecretValues, Success,
};

use super::{Ok, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, OptionalJson};
use crate::state::AppState;

/// The optional `SECRET-JOB-TOKEN` header must equal the path's token.
fn check_header(headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    match headers.get("secret-job-token").map(|v| v.to_str().unwrap_or_default()) {
        Some(h) if h != token => {
            Err(ApiError::Invalid("SECRET-JOB-TOKEN does not match the job token in the path".into()))
        }
        _ => Result::Ok(()),
    }
}

#[utoipa::path(post, path = "/action/v1/secrets/{secretId}/jobs/{jobToken}/start", tag = "action",
    params(("secretId" = String, Path), ("jobToken" = String, Path)),
    responses((status = 200, body = Success<SecretValues>), (status = "4XX", body = ErrorBody)))]
pub async fn start(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
) -> ApiResult<Ok<SecretValues>> {
    caller.ctx.set_action("ActionStart");
    check_header(&headers, &token)?;
    let (row, chain) = s.rotation.action_start(&caller, &id, &token).await?;
    let text = |v: Option<(i64, SecretValue)>| v.map(|(_, v)| v.json().clone());
    Result::Ok(ok(SecretValues {
        decrypted_secret_chain: SecretChain {
            active: text(chain.active),
            pending: text(chain.pending),
            previous: text(chain.previous),
        },
        rotation_targets: row.rotation_targets,
    }))
}

#[utoipa::path(post, path = "/action/v1/secrets/{secretId}/jobs/{jobToken}/generate-random-secret", tag = "action",
    params(("secretId" = String, Path), ("jobToken" = String, Path)), request_body(content = Option<Object>),
    responses((status = 200, body = RandomStringAnswer), (status = "4XX", body = ErrorBody)))]
pub async fn generate_random_secret(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
    OptionalJson(policy): OptionalJson<PasswordPolicy>,
) -> ApiResult<Json<RandomStringAnswer>> {
    caller.ctx.set_action("ActionGenerateRandomSecret");
    check_header(&headers, &token)?;
    let value = s.rotation.action_generate(&caller, &id, &token, &policy).await?;
    Result::Ok(Json(RandomStringAnswer {
        code: "SUCCESS",
        data: RandomString { random_string: value.clone() },
        random_string: value,
    }))
}

#[utoipa::path(post, path = "/action/v1/secrets/{secretId}/jobs/{jobToken}/pending", tag = "action",
    params(("secretId" = String, Path), ("jobToken" = String, Path)),
    responses((status = 200, body = Success<PendingValue>), (status = "4XX", body = ErrorBody)))]
pub async fn post_pending(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
) -> ApiResult<Ok<PendingValue>> {
    caller.ctx.set_action("ActionPostPending");
    check_header(&headers, &token)?;
    let policy = rotary_core::password::PasswordPolicy::default();
    let pending = s.rotation.action_post_pending(&caller, &id, &token, &policy).await?;
    Result::Ok(ok(PendingValue { pending: pending.json().clone() }))
}

#[utoipa::path(put, path = "/action/v1/secrets/{secretId}/jobs/{jobToken}/pending", tag = "action",
    params(("secretId" = String, Path), ("jobToken" = String, Path)), request_body = PutValueRequest,
    responses((status = 200, description = "pending stored"), (status = "4XX", body = ErrorBody)))]
pub async fn put_pending(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
    ApiJson(req): ApiJson<PutValueRequest>,
) -> ApiResult<Ok<Option<()>>> {
    caller.ctx.set_action("ActionPutPending");
    check_header(&headers, &token)?;
    let value = SecretValue::parse(&req.value)?;
    s.rotation.action_put_pending(&caller, &id, &token, value).await?;
    Result::Ok(ok(None))
}

#[utoipa::path(post, path = "/action/v1/secrets/{secretId}/jobs/{jobToken}/complete", tag = "action",
    params(("secretId" = String, Path), ("jobToken" = String, Path)),
    responses((status = 200, description = "rotation completed"), (status = "4XX", body = ErrorBody)))]
pub async fn complete(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
) -> ApiResult<Ok<Option<()>>> {
    caller.ctx.set_action("ActionComplete");
    check_header(&headers, &token)?;
    s.rotation.action_complete(&caller, &id, &token).await?;
    Result::Ok(ok(None))
}

#[utoipa::path(post, path = "/action/v1/secrets/{secretId}/jobs/{jobToken}/fail", tag = "action",
    params(("secretId" = String, Path), ("jobToken" = String, Path)),
    responses((status = 200, description = "job failed; pending kept"), (status = "4XX", body = ErrorBody)))]
pub async fn fail(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, token)): Path<(String, String)>,
) -> ApiResult<Ok<Option<()>>> {
    caller.ctx.set_action("ActionFail");
    check_header(&headers, &token)?;
    s.rotation.action_fail(&caller, &id, &token).await?;
    s.wake.notify_one();
    Result::Ok(ok(None))
}
