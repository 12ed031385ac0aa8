//! Operations: health, readiness, metrics, the OpenAPI document, unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use warden_core::reason::ReasonCode;

use crate::AppState;
use crate::error::ApiError;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and its migrations are applied.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.store.ready().await {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "not ready"})),
        )
            .into_response()
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    // Queue depths are read now; a failed read keeps the last one (and is logged).
    match state.store.live_depths().await {
        Ok(d) => state.metrics.set_depths(&d),
        Err(e) => tracing::warn!(error = %e, "could not read queue depths for /metrics"),
    }
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::openapi::document(&state.config.public_url))
}

/// Anything no route matches.
pub async fn unknown_route() -> ApiError {
    ApiError::new(ReasonCode::UnknownRoute, "no such route")
}
