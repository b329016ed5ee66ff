//! `/api/v1/secrets…`

use axum::Extension;
use axum::extract::{Path, State};
use rotary_core::domain::{SecretValue, Stage};
use rotary_core::service::{Caller, NewSecret};
use rotary_core::store::SecretRow;
use rotary_types::{
    CreateSecretRequest, CreatedSecret, DeletionRequest, ErrorBody, MemoRequest, PageQuery, ProtectionKey,
    PutValueRequest, SecretChain, SecretDetail, SecretList, SecretValues, StageValue, Success, VersionInfo,
    VersionList,
};

use super::{Ok, ok};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::state::AppState;

/// A new active value of a secret linked to a built-in rotator must still be
/// an account that this secret may rotate (not one another secret rotates).
async fn check_linked(s: &AppState, caller: &Caller, id: &str, value: &SecretValue) -> Result<(), ApiError> {
    let row = s.secrets.get(caller, id).await?;
    if let Some(t) = &row.trigger_id {
        s.rotation.check_builtin_link(caller, t, value, Some(id)).await?;
    }
    Ok(())
}

pub fn detail(row: &SecretRow) -> SecretDetail {
    SecretDetail {
        secret_id: row.id.clone(),
        secret_name: row.name.clone(),
        secret_status: row.status.clone(),
        secret_type: "BASIC".into(),
        memo: row.memo.clone(),
        region: "LOCAL".into(),
        rotation_targets: row.rotation_targets.clone(),
        auto_rotation_yn: if row.auto_rotation { "Y" } else { "N" }.into(),
        auto_rotation_period: row.auto_rotation.then_some(row.rotation_period_days).flatten(),
        next_rotation_date: row.next_rotation_at,
        last_rotation_date: row.last_rotation_at,
        rotation_phase: row.rotation_phase.clone(),
        trigger_id: row.trigger_id.clone(),
        expected_destroy_date: row.expected_destroy_at,
        protection_key: ProtectionKey { key_type: "DEFAULT".into(), key_id: 0 },
        register_date: row.created_at,
        update_date: row.updated_at,
    }
}

#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets", params(PageQuery),
    responses((status = 200, body = Success<SecretList>), (status = "4XX", body = ErrorBody)))]
pub async fn list_secrets(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Ok<SecretList>> {
    caller.ctx.set_action("ListSecrets");
    let page_no = q.page_no.unwrap_or(1);
    let page_size = q.page_size.unwrap_or(20);
    let (rows, total) = s.secrets.list(&caller, page_no, page_size).await?;
    let total_pages = u32::try_from((total + i64::from(page_size) - 1) / i64::from(page_size)).unwrap_or(u32::MAX);
    Ok(ok(SecretList {
        total_count: total,
        total_page_no: total_pages,
        current_page_no: page_no,
        secret_list: rows.iter().map(detail).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/secrets", tag = "secrets", request_body = CreateSecretRequest,
    responses((status = 200, body = Success<CreatedSecret>), (status = "4XX", body = ErrorBody)))]
pub async fn create_secret(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateSecretRequest>,
) -> ApiResult<Ok<CreatedSecret>> {
    caller.ctx.set_action("CreateSecret");
    let auto = match req.auto_rotation_yn.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("N") => false,
        Some("Y") => true,
        Some(_) => return Err(ApiError::Invalid("autoRotationYN must be Y or N".into())),
    };
    if req.auto_rotation_period.is_some_and(|p| !(1..=730).contains(&p)) {
        return Err(ApiError::Invalid("autoRotationPeriod must be 1-730 days".into()));
    }
    if req.protection_key_type.as_deref().is_some_and(|t| t != "DEFAULT") {
        return Err(ApiError::Invalid("protectionKeyType must be DEFAULT (the server keyring)".into()));
    }
    let rotation = if auto {
        let Some(trigger) = req.trigger_id.as_deref() else {
            return Err(ApiError::Invalid("autoRotationYN Y needs a triggerId".into()));
        };
        s.rotation.trigger(trigger).await?;
        Some((req.auto_rotation_period.unwrap_or(90), trigger.to_owned()))
    } else {
        if req.trigger_id.is_some() {
            return Err(ApiError::Invalid(
                "triggerId is only accepted with autoRotationYN Y; link a trigger later with PUT /triggers".into(),
            ));
        }
        None
    };
    let value = SecretValue::parse(&req.secret_value.value)?;
    if let Some((_, trigger)) = &rotation {
        s.rotation.check_builtin_link(&caller, trigger, &value, None).await?;
    }
    let row = s
        .secrets
        .create(
            &caller,
            NewSecret {
                name: req.secret_name,
                memo: req.memo,
                value,
                rotation_targets: req.secret_value.rotation_targets,
                auto_rotation: rotation,
            },
        )
        .await?;
    Ok(ok(CreatedSecret { secret_id: row.id, secret_name: row.name }))
}

#[utoipa::path(get, path = "/api/v1/secrets/{secretId}", tag = "secrets",
    params(("secretId" = String, Path)),
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn get_secret(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("GetSecretDetail");
    Ok(ok(detail(&s.secrets.get(&caller, &id).await?)))
}

#[utoipa::path(delete, path = "/api/v1/secrets/{secretId}", tag = "secrets",
    params(("secretId" = String, Path)),
    responses((status = 200, description = "deleted for good"), (status = "4XX", body = ErrorBody)))]
pub async fn delete_secret(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<Option<()>>> {
    caller.ctx.set_action("DeleteSecret");
    s.secrets.delete(&caller, &id).await?;
    Ok(ok(None))
}

macro_rules! lifecycle {
    ($fn:ident, $path:literal, $action:literal, |$s:ident, $c:ident, $id:ident| $call:expr) => {
        #[utoipa::path(post, path = $path, tag = "secrets", params(("secretId" = String, Path)),
                    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
        pub async fn $fn(
            State($s): State<AppState>,
            Extension($c): Extension<Caller>,
            Path($id): Path<String>,
        ) -> ApiResult<Ok<SecretDetail>> {
            $c.ctx.set_action($action);
            Ok(ok(detail(&$call.await?)))
        }
    };
}

lifecycle!(enable_secret, "/api/v1/secrets/{secretId}/enable", "EnableSecret", |s, c, id| s
    .secrets
    .set_enabled(&c, &id, true));
lifecycle!(disable_secret, "/api/v1/secrets/{secretId}/disable", "DisableSecret", |s, c, id| s
    .secrets
    .set_enabled(&c, &id, false));
lifecycle!(cancel_deletion, "/api/v1/secrets/{secretId}/cancel-deletion", "CancelDeletion", |s, c, id| s
    .secrets
    .cancel_deletion(&c, &id));

#[utoipa::path(post, path = "/api/v1/secrets/{secretId}/request-deletion", tag = "secrets",
    params(("secretId" = String, Path)), request_body(content = Option<DeletionRequest>),
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn request_deletion(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    OptionalJson(req): OptionalJson<DeletionRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("RequestDeletion");
    Ok(ok(detail(&s.secrets.request_deletion(&caller, &id, req.waiting_period).await?)))
}

#[utoipa::path(get, path = "/api/v1/secrets/{secretId}/values", tag = "values",
    params(("secretId" = String, Path)),
    responses((status = 200, body = Success<SecretValues>), (status = "4XX", body = ErrorBody)))]
pub async fn get_values(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<SecretValues>> {
    caller.ctx.set_action("GetSecretValue");
    let (row, chain) = s.secrets.values(&caller, &id).await?;
    let text = |v: Option<(i64, SecretValue)>| v.map(|(_, v)| v.json().clone());
    Ok(ok(SecretValues {
        decrypted_secret_chain: SecretChain {
            active: text(chain.active),
            pending: text(chain.pending),
            previous: text(chain.previous),
        },
        rotation_targets: row.rotation_targets,
    }))
}

#[utoipa::path(get, path = "/api/v1/secrets/{secretId}/{stage}", tag = "values",
    params(("secretId" = String, Path), ("stage" = String, Path, description = "active, pending or previous")),
    responses((status = 200, body = Success<StageValue>), (status = "4XX", body = ErrorBody)))]
pub async fn get_stage(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, stage)): Path<(String, String)>,
) -> ApiResult<Ok<StageValue>> {
    caller.ctx.set_action("GetSecretStageValue");
    caller.ctx.set_secret_id(&id);
    let stage = Stage::parse(&stage)?;
    let (version, value) = s.secrets.stage_value(&caller, &id, stage).await?;
    Ok(ok(StageValue { stage: stage.as_str().into(), version, value: value.json().clone() }))
}

#[utoipa::path(put, path = "/api/v1/secrets/{secretId}/values", tag = "values",
    params(("secretId" = String, Path)), request_body = PutValueRequest,
    responses((status = 200, body = Success<SecretDetail>, description = "the value is now active; the old active is previous"),
        (status = "4XX", body = ErrorBody)))]
pub async fn put_values(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PutValueRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("PutSecretValue");
    caller.ctx.set_secret_id(&id);
    let value = SecretValue::parse(&req.value)?;
    check_linked(&s, &caller, &id, &value).await?;
    Ok(ok(detail(&s.secrets.put_active(&caller, &id, value, req.rotation_targets).await?)))
}

#[utoipa::path(put, path = "/api/v1/secrets/{secretId}/values/{stage}", tag = "values",
    params(("secretId" = String, Path), ("stage" = String, Path, description = "active, pending or previous")),
    request_body = PutValueRequest,
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn put_stage(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, stage)): Path<(String, String)>,
    ApiJson(req): ApiJson<PutValueRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("PutSecretStageValue");
    caller.ctx.set_secret_id(&id);
    let stage = Stage::parse(&stage)?;
    if req.rotation_targets.is_some() {
        return Err(ApiError::Invalid("rotationTargets can only be changed with PUT /values".into()));
    }
    let value = SecretValue::parse(&req.value)?;
    if stage == Stage::Active {
        check_linked(&s, &caller, &id, &value).await?;
    }
    Ok(ok(detail(&s.secrets.put_stage(&caller, &id, stage, value).await?)))
}

#[utoipa::path(put, path = "/api/v1/secrets/{secretId}/memo", tag = "secrets",
    params(("secretId" = String, Path)), request_body = MemoRequest,
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn put_memo(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<MemoRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("UpdateMemo");
    Ok(ok(detail(&s.secrets.set_memo(&caller, &id, req.memo).await?)))
}

#[utoipa::path(get, path = "/api/v1/secrets/{secretId}/versions", tag = "secrets",
    params(("secretId" = String, Path)),
    responses((status = 200, body = Success<VersionList>), (status = "4XX", body = ErrorBody)))]
pub async fn list_versions(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<VersionList>> {
    caller.ctx.set_action("ListSecretVersions");
    let versions = s.secrets.versions(&caller, &id).await?;
    Ok(ok(VersionList {
        version_list: versions
            .into_iter()
            .map(|v| VersionInfo {
                version: v.version,
                create_date: v.created_at,
                stages: v.stages.iter().map(|s| s.as_str().to_owned()).collect(),
            })
            .collect(),
    }))
}
