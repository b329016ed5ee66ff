//! Access keys (`/api/v1/access-keys`) and audit (`/api/v1/audit`).

use axum::Extension;
use axum::extract::{Path, State};
use rotary_core::audit::AuditRow;
use rotary_core::service::Caller;
use rotary_core::store::AccessKeyRow;
use rotary_types::{
    AccessKeyCreated, AccessKeyInfo, AccessKeyList, AuditEntry, AuditList, AuditVerification, CreateAccessKeyRequest,
    ErrorBody, PageQuery, Success,
};
use secrecy::ExposeSecret;

use super::{Ok, ok};
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

fn info(r: AccessKeyRow) -> AccessKeyInfo {
    AccessKeyInfo {
        status: if r.revoked_at.is_some() { "REVOKED" } else { "ACTIVE" }.into(),
        access_key: r.access_key,
        role: r.role,
        secret_pattern: r.secret_pattern,
        description: r.description,
        create_date: r.created_at,
        revoke_date: r.revoked_at,
    }
}

#[utoipa::path(post, path = "/api/v1/access-keys", tag = "access-keys", request_body = CreateAccessKeyRequest,
    responses((status = 200, body = Success<AccessKeyCreated>, description = "the secret key is shown only here"),
        (status = "4XX", body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateAccessKeyRequest>,
) -> ApiResult<Ok<AccessKeyCreated>> {
    caller.ctx.set_action("CreateAccessKey");
    let (row, secret) = s.access.create(&caller, &req.role, req.secret_pattern.as_deref(), req.description).await?;
    Ok(ok(AccessKeyCreated {
        access_key: row.access_key,
        secret_key: secret.expose_secret().to_owned(),
        role: row.role,
        secret_pattern: row.secret_pattern,
    }))
}

#[utoipa::path(get, path = "/api/v1/access-keys", tag = "access-keys",
    responses((status = 200, body = Success<AccessKeyList>), (status = "4XX", body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Ok<AccessKeyList>> {
    caller.ctx.set_action("ListAccessKeys");
    let rows = s.access.list(&caller).await?;
    Ok(ok(AccessKeyList { access_key_list: rows.into_iter().map(info).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/access-keys/{accessKey}", tag = "access-keys",
    params(("accessKey" = String, Path)),
    responses((status = 200, description = "revoked"), (status = "4XX", body = ErrorBody)))]
pub async fn revoke_key(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> ApiResult<Ok<Option<()>>> {
    caller.ctx.set_action("RevokeAccessKey");
    s.access.revoke(&caller, &key).await?;
    Ok(ok(None))
}

fn entry(r: AuditRow) -> AuditEntry {
    AuditEntry {
        seq: r.seq,
        timestamp: r.draft.timestamp,
        access_key: r.draft.access_key,
        action: r.draft.action,
        secret_id: r.draft.secret_id,
        result: r.draft.result,
        client_address: r.draft.client_address,
        request_id: r.draft.request_id,
        hash: hex(&r.hash),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(PageQuery),
    responses((status = 200, body = Success<AuditList>), (status = "4XX", body = ErrorBody)))]
pub async fn list_audit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Ok<AuditList>> {
    caller.ctx.set_action("ListAudit");
    let (page_no, page_size) = (q.page_no.unwrap_or(1), q.page_size.unwrap_or(50));
    let (rows, total) = s.audit_log.list(&caller, page_no, page_size).await?;
    Ok(ok(AuditList {
        total_count: total,
        current_page_no: page_no,
        total_page_no: u32::try_from((total + i64::from(page_size) - 1) / i64::from(page_size)).unwrap_or(u32::MAX),
        audit_list: rows.into_iter().map(entry).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Success<AuditVerification>), (status = "4XX", body = ErrorBody)))]
pub async fn verify_audit(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Ok<AuditVerification>> {
    caller.ctx.set_action("VerifyAudit");
    let v = s.audit_log.verify(&caller).await?;
    Ok(ok(AuditVerification {
        valid: v.valid,
        checked_records: v.checked,
        first_invalid_seq: v.first_invalid,
        reason: v.reason,
    }))
}
