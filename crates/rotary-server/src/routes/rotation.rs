//! Rotation settings, jobs and logs (`/api/v1/secrets/{id}/…`, `/api/v1/triggers`).

use axum::Extension;
use axum::extract::{Path, State};
use rotary_core::service::{Caller, JobView};
use rotary_core::store::{JobRow, LogFilter};
use rotary_types::{
    CreateTriggerRequest, EnableAutoRotationRequest, ErrorBody, GeneratedValue, GeneratedValues, JobInfo, JobList,
    JobStepInfo, LogQuery, RotationPeriodRequest, SecretDetail, Success, TriggerInfo, TriggerLinkRequest, TriggerList,
};

use super::secrets::detail;
use super::{Ok, ok};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

pub fn job_info(job: JobRow, steps: Vec<rotary_core::store::JobStep>) -> JobInfo {
    JobInfo {
        job_id: job.id,
        secret_id: job.secret_id,
        status: job.status,
        kind: job.kind,
        attempt: job.attempt,
        trigger_id: job.trigger_id,
        create_date: job.created_at,
        run_date: job.run_at,
        start_date: job.started_at,
        deadline_date: job.deadline_at,
        finish_date: job.finished_at,
        error: job.error,
        steps: steps
            .into_iter()
            .map(|s| JobStepInfo { timestamp: s.ts, step: s.step, result: s.result, message: s.message })
            .collect(),
    }
}

#[utoipa::path(post, path = "/api/v1/triggers", tag = "rotation", request_body = CreateTriggerRequest,
    responses((status = 200, body = Success<TriggerInfo>), (status = "4XX", body = ErrorBody)))]
pub async fn create_trigger(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateTriggerRequest>,
) -> ApiResult<Ok<TriggerInfo>> {
    caller.ctx.set_action("CreateTrigger");
    let keys = req.default_params.keys().cloned().collect();
    let t = s.rotation.create_trigger(&caller, &req.name, &req.kind, &req.config, req.default_params).await?;
    Ok(ok(TriggerInfo {
        trigger_id: t.id,
        trigger_name: t.name,
        kind: t.kind,
        config: serde_json::from_str(&t.config).unwrap_or_default(),
        default_param_keys: keys,
        secret_id_list: vec![],
        register_date: t.created_at,
    }))
}

#[utoipa::path(get, path = "/api/v1/triggers", tag = "rotation",
    responses((status = 200, body = Success<TriggerList>), (status = "4XX", body = ErrorBody)))]
pub async fn list_triggers(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Ok<TriggerList>> {
    caller.ctx.set_action("ListTriggers");
    let rows = s.rotation.list_triggers(&caller).await?;
    Ok(ok(TriggerList {
        trigger_list: rows
            .into_iter()
            .map(|(t, secrets, keys)| TriggerInfo {
                trigger_id: t.id,
                trigger_name: t.name,
                kind: t.kind,
                config: serde_json::from_str(&t.config).unwrap_or_default(),
                default_param_keys: keys,
                secret_id_list: secrets,
                register_date: t.created_at,
            })
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/triggers/{triggerId}", tag = "rotation",
    params(("triggerId" = String, Path)),
    responses((status = 200, description = "deleted"), (status = "4XX", body = ErrorBody)))]
pub async fn remove_trigger(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<Option<()>>> {
    caller.ctx.set_action("DeleteTrigger");
    s.rotation.delete_trigger(&caller, &id).await?;
    Ok(ok(None))
}

#[utoipa::path(post, path = "/api/v1/secrets/{secretId}/enable-auto-rotation", tag = "rotation",
    params(("secretId" = String, Path)), request_body = EnableAutoRotationRequest,
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn enable_auto_rotation(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<EnableAutoRotationRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("EnableAutoRotation");
    Ok(ok(detail(&s.rotation.enable_auto(&caller, &id, req.rotation_period, &req.trigger_id).await?)))
}

#[utoipa::path(post, path = "/api/v1/secrets/{secretId}/disable-auto-rotation", tag = "rotation",
    params(("secretId" = String, Path)),
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn disable_auto_rotation(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("DisableAutoRotation");
    Ok(ok(detail(&s.rotation.disable_auto(&caller, &id).await?)))
}

#[utoipa::path(put, path = "/api/v1/secrets/{secretId}/rotation-period", tag = "rotation",
    params(("secretId" = String, Path)), request_body = RotationPeriodRequest,
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn put_rotation_period(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotationPeriodRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("UpdateRotationPeriod");
    Ok(ok(detail(&s.rotation.set_period(&caller, &id, req.rotation_period).await?)))
}

#[utoipa::path(put, path = "/api/v1/secrets/{secretId}/triggers", tag = "rotation",
    params(("secretId" = String, Path)), request_body = TriggerLinkRequest,
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn put_trigger(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<TriggerLinkRequest>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("LinkTrigger");
    Ok(ok(detail(&s.rotation.set_trigger(&caller, &id, Some(&req.trigger_id)).await?)))
}

#[utoipa::path(delete, path = "/api/v1/secrets/{secretId}/triggers", tag = "rotation",
    params(("secretId" = String, Path)),
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn delete_trigger(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("UnlinkTrigger");
    Ok(ok(detail(&s.rotation.set_trigger(&caller, &id, None).await?)))
}

macro_rules! job_action {
    ($fn:ident, $path:literal, $action:literal, |$s:ident, $c:ident, $id:ident| $call:expr) => {
        #[utoipa::path(post, path = $path, tag = "rotation", params(("secretId" = String, Path)),
                            responses((status = 200, body = Success<JobInfo>), (status = "4XX", body = ErrorBody)))]
        pub async fn $fn(
            State($s): State<AppState>,
            Extension($c): Extension<Caller>,
            Path($id): Path<String>,
        ) -> ApiResult<Ok<JobInfo>> {
            $c.ctx.set_action($action);
            let job = $call.await?;
            $s.wake.notify_one();
            Ok(ok(job_info(job, vec![])))
        }
    };
}

job_action!(rotate_now, "/api/v1/secrets/{secretId}/rotation", "RotateSecret", |s, c, id| s
    .rotation
    .rotate_now(&c, &id, "MANUAL"));
job_action!(retry_rotation, "/api/v1/secrets/{secretId}/retry-rotation", "RetryRotation", |s, c, id| s
    .rotation
    .retry(&c, &id));
job_action!(cancel_rotation, "/api/v1/secrets/{secretId}/cancel-rotation", "CancelRotation", |s, c, id| s
    .rotation
    .cancel(&c, &id));

#[utoipa::path(post, path = "/api/v1/secrets/{secretId}/rollback-rotation", tag = "rotation",
    params(("secretId" = String, Path)),
    responses((status = 200, body = Success<SecretDetail>), (status = "4XX", body = ErrorBody)))]
pub async fn rollback_rotation(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Ok<SecretDetail>> {
    caller.ctx.set_action("RollbackRotation");
    Ok(ok(detail(&s.rotation.rollback(&caller, &id).await?)))
}

#[utoipa::path(get, path = "/api/v1/secrets/{secretId}/logs", tag = "rotation",
    params(("secretId" = String, Path), LogQuery),
    responses((status = 200, body = Success<JobList>), (status = "4XX", body = ErrorBody)))]
pub async fn logs(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Ok<JobList>> {
    caller.ctx.set_action("GetRotationLogs");
    let (page_no, page_size) = (q.page_no.unwrap_or(1), q.page_size.unwrap_or(20));
    if page_no == 0 || !(1..=1000).contains(&page_size) {
        return Err(crate::error::ApiError::Invalid("pageNo starts at 1 and pageSize must be 1-1000".into()));
    }
    let filter = LogFilter {
        keyword: q.keyword.filter(|k| !k.is_empty()),
        from: q.timestamp_from,
        to: q.timestamp_to,
        offset: i64::from(page_no - 1) * i64::from(page_size),
        limit: i64::from(page_size),
    };
    let (jobs, total) = s.rotation.logs(&caller, &id, &filter).await?;
    Ok(ok(JobList {
        total_count: total,
        total_page_no: u32::try_from((total + i64::from(page_size) - 1) / i64::from(page_size)).unwrap_or(u32::MAX),
        current_page_no: page_no,
        job_list: jobs.into_iter().map(|JobView { job, steps }| job_info(job, steps)).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/secrets/{secretId}/jobs/{jobId}/generated-values", tag = "rotation",
    params(("secretId" = String, Path), ("jobId" = String, Path)),
    responses((status = 200, body = Success<GeneratedValues>, description = "admins only; audited"),
        (status = "4XX", body = ErrorBody)))]
pub async fn generated_values(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, job_id)): Path<(String, String)>,
) -> ApiResult<Ok<GeneratedValues>> {
    caller.ctx.set_action("GetJobGeneratedValues");
    let values = s.rotation.job_generated_values(&caller, &id, &job_id).await?;
    Ok(ok(GeneratedValues {
        job_id,
        value_list: values
            .into_iter()
            .map(|(v, value)| GeneratedValue { seq: v.seq, source: v.source, create_date: v.created_at, value })
            .collect(),
    }))
}
