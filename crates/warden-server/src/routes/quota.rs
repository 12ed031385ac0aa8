//! `/api/v1/quota`: the tenant's quota, read and (under `orch:quota`) replaced.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use warden_core::audit::Target;
use warden_core::limits::TenantQuota;
use warden_core::scopes::Scope;

use crate::AppState;
use crate::auth::{Caller, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::extract::json_body;
use crate::pipeline::{self, ActionError, Operation};
use crate::routes::queues::{parse_count, parse_rate};
use crate::routes::require_scope;

/// `GET /api/v1/quota`.
pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<TenantQuota>> {
    require_scope(&caller, Scope::Read)?;
    Ok(Json(state.store.get_quota(&caller.tenant).await?))
}

/// The body of `PUT /api/v1/quota`: the whole quota (absent or `null` is no limit).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    #[serde(default)]
    max_queued: Option<u64>,
    #[serde(default)]
    max_running: Option<u64>,
    #[serde(default)]
    enqueue_per_sec: Option<f64>,
}

fn parse_quota(headers: &HeaderMap, body: &[u8]) -> Result<TenantQuota, ApiError> {
    let b: QuotaBody = json_body(headers, body)?;
    Ok(TenantQuota {
        max_queued: parse_count("max_queued", b.max_queued)?,
        max_running: parse_count("max_running", b.max_running)?,
        enqueue_per_sec: parse_rate("enqueue_per_sec", b.enqueue_per_sec)?,
    })
}

/// `PUT /api/v1/quota` — audited `quota.update` with `before` and `after`, under the
/// `orch:quota` warrant (`quota_reason`, `quota_ticket`).
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<TenantQuota>> {
    let op = Operation {
        action: "quota.update",
        scope: Scope::Quota,
        target: Some(Target::new("quota", caller.tenant.as_str())),
    };
    let quota = pipeline::run(&state, &caller, &meta, op, |draft| async {
        let quota = parse_quota(&headers, &body)?;
        Ok::<_, ActionError>(
            state
                .store
                .set_quota_audited(&caller.tenant, quota, draft)
                .await?,
        )
    })
    .await?;
    Ok(Json(quota))
}
