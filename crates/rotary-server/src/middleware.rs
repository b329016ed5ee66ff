//! Request pipeline for `/api/v1`: request id and audit (outer), then
//! signature v2 authentication (inner).
//!
//! Audit rule: every request gets exactly one audit record. Mutations write it
//! in their own store transaction (see `rotary_core::store`); everything else
//! — reads, rejected requests — is written here after the handler ran, and if
//! that write fails the client gets a 500 instead of the response (so a value
//! is never handed out unaudited).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rotary_core::service::{Caller, RequestCtx, SignedRequest};
use rotary_types::ErrorCode;

use crate::error::{ApiError, ErrorCodeTag, error_response};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Always made by the server (never taken from the client), so that audit
/// request ids are unique.
fn request_id() -> String {
    rotary_crypto::random_alnum(20)
}

/// Paths answered without authentication and without an audit record.
const UNAUDITED: [&str; 2] = ["/health", "/api/v1/openapi.json"];

pub async fn audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if UNAUDITED.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    audited(state, req, next).await
}

/// Wraps the whole router (see `serve` in lib.rs): every request runs to its
/// end in a task of its own, started when hyper hands the request over (not
/// when hyper first polls it), so a client that disconnects cannot cut it
/// short and a request the server received always gets its audit record,
/// whether or not anyone is still there for the answer.
#[derive(Clone)]
pub struct RunToEnd<S>(pub S);

impl<S> tower::Service<Request> for RunToEnd<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Readiness is checked by `oneshot` in the task, on a clone.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        use tower::ServiceExt;
        let task = tokio::spawn(self.0.clone().oneshot(req));
        Box::pin(async move {
            Ok(match task.await {
                Ok(Ok(resp)) => resp,
                Ok(Err(never)) => match never {},
                Err(e) => {
                    tracing::error!(error = %e, "request task failed");
                    error_response(ErrorCode::InternalServerError, "Internal server error", "the request failed")
                }
            })
        })
    }
}

async fn audited(state: AppState, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let ctx = RequestCtx::new(request_id(), client, state.clock.now_ms());
    let method = req.method().clone();
    let path = loggable_path(req.uri().path());
    if let Some(k) = header(req.headers(), "x-ncp-iam-access-key") {
        // Recorded even when authentication fails or no route matched: who
        // tried is the point.
        ctx.set_access_key(&k.chars().take(128).collect::<String>());
    }
    req.extensions_mut().insert(ctx.clone());

    let mut resp = next.run(req).await;

    let status = resp.status();
    let result = match resp.extensions().get::<ErrorCodeTag>() {
        Some(t) => t.0.as_str(),
        None if status.is_success() => "SUCCESS",
        None => "ERROR",
    };
    if ctx.action().is_none() {
        // Rejected before a handler named the action (authentication, routing).
        let fallback: &'static str =
            if status == axum::http::StatusCode::UNAUTHORIZED { "Authenticate" } else { "Request" };
        ctx.set_action(fallback);
    }
    if !ctx.audited() {
        let draft = ctx.draft(result, state.clock.now_ms());
        if let Err(e) = state.store.append_audit(&draft).await {
            tracing::error!(request_id = %ctx.request_id, error = %e, "audit write failed; request refused");
            resp = error_response(
                ErrorCode::InternalServerError,
                "Internal server error",
                "the audit record could not be written, so the request was refused",
            );
        }
    }
    tracing::info!(
        request_id = %ctx.request_id,
        method = %method,
        path = %path,
        action = ctx.action().unwrap_or("-"),
        status = resp.status().as_u16(),
        result,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// The request path for the log, with job tokens (credentials) masked.
fn loggable_path(path: &str) -> String {
    match path.find("/jobs/") {
        Some(i) if path.starts_with("/action/") => {
            let rest = &path[i + 6..];
            let tail = rest.find('/').map(|j| &rest[j..]).unwrap_or("");
            format!("{}/jobs/[token]{tail}", &path[..i])
        }
        _ => path.to_owned(),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(ctx) = req.extensions().get::<Arc<RequestCtx>>().cloned() else {
        return ApiError::Invalid("request context missing".into()).into_response();
    };
    let h = req.headers();
    let path_with_query = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    // The claimed key is already in the audit context (`audited`).
    let claimed = header(h, "x-ncp-iam-access-key");
    let signed = SignedRequest {
        method: req.method().as_str(),
        path_with_query: &path_with_query,
        timestamp: header(h, "x-ncp-apigw-timestamp"),
        access_key: claimed,
        signature: header(h, "x-ncp-apigw-signature-v2"),
    };
    match state.access.authenticate(&signed).await {
        Ok((_key, policy)) => {
            req.extensions_mut().insert(Caller { policy, ctx });
            next.run(req).await
        }
        Err(f) => ApiError::Auth(f).into_response(),
    }
}
