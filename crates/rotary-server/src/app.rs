//! The router and the OpenAPI document, built together from the same handler
//! list (utoipa-axum) so the document cannot drift from the routes.

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::middleware::{audit, authenticate};
use crate::routes::{action, admin, rotation, secrets};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Rotary", description = "Self-hosted secrets manager with automatic rotation; NAVER Cloud Secret Manager compatible."),
    modifiers(&SignatureV2),
    security(("accessKey" = [], "timestamp" = [], "signature" = []))
)]
struct ApiDoc;

struct SignatureV2;

impl Modify for SignatureV2 {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        for (name, header) in [
            ("accessKey", "x-ncp-iam-access-key"),
            ("timestamp", "x-ncp-apigw-timestamp"),
            ("signature", "x-ncp-apigw-signature-v2"),
        ] {
            c.add_security_scheme(name, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(header))));
        }
    }
}

async fn no_route() -> ApiError {
    ApiError::NoRoute("no such API path or method".into())
}

pub fn router(state: AppState) -> Router {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(secrets::list_secrets, secrets::create_secret))
        .routes(routes!(secrets::get_secret, secrets::delete_secret))
        .routes(routes!(secrets::enable_secret))
        .routes(routes!(secrets::disable_secret))
        .routes(routes!(secrets::request_deletion))
        .routes(routes!(secrets::cancel_deletion))
        .routes(routes!(secrets::get_values, secrets::put_values))
        .routes(routes!(secrets::put_stage))
        .routes(routes!(secrets::get_stage))
        .routes(routes!(secrets::put_memo))
        .routes(routes!(secrets::list_versions))
        .routes(routes!(rotation::list_triggers, rotation::create_trigger))
        .routes(routes!(rotation::remove_trigger))
        .routes(routes!(rotation::enable_auto_rotation))
        .routes(routes!(rotation::disable_auto_rotation))
        .routes(routes!(rotation::put_rotation_period))
        .routes(routes!(rotation::put_trigger, rotation::delete_trigger))
        .routes(routes!(rotation::rotate_now))
        .routes(routes!(rotation::retry_rotation))
        .routes(routes!(rotation::cancel_rotation))
        .routes(routes!(rotation::rollback_rotation))
        .routes(routes!(rotation::logs))
        .routes(routes!(rotation::generated_values))
        .routes(routes!(action::start))
        .routes(routes!(action::generate_random_secret))
        .routes(routes!(action::post_pending, action::put_pending))
        .routes(routes!(action::complete))
        .routes(routes!(action::fail))
        .routes(routes!(admin::list_keys, admin::create_key))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::list_audit))
        .routes(routes!(admin::verify_audit))
        .split_for_parts();
    let (public, public_doc) = OpenApiRouter::new().routes(routes!(crate::routes::health)).split_for_parts();
    doc.merge(public_doc);
    let doc_json = std::sync::Arc::new(doc.to_pretty_json().unwrap_or_default());

    let api = api
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone());
    public
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc_json.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], (*doc).clone()) }
            }),
        )
        .merge(api)
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        // Outside the routes, so that requests no route matched are audited too.
        .layer(from_fn_with_state(state, audit))
}
