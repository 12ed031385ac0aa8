//! `/api/v1/queues`: list, show, and the operator actions pause, resume and limits.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::future::Future;

use warden_core::audit::{AuditDraft, Target};
use warden_core::jobs::RetryPolicy;
use warden_core::limits::{MAX_COUNT, MAX_RATE, QueueLimits};
use warden_core::names::QueueName;
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;
use warden_store::queues::QueueView;

use crate::AppState;
use crate::auth::{Caller, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::extract::{QueryParams, json_body};
use crate::pipeline::{self, ActionError, Operation};
use crate::routes::{Page, require_scope};

/// `GET /api/v1/queues`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<QueueView>>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = q.limit(100, 1000)?;
    let cursor = q.one("cursor")?;
    let (items, more) = state
        .store
        .list_queues(&caller.tenant, cursor, limit)
        .await?;
    Ok(Json(Page::new(items, more, |v| v.name.to_string())))
}

fn unknown_queue(raw: &str) -> ApiError {
    ApiError::new(
        ReasonCode::UnknownQueue,
        format!("no queue {raw} in this tenant"),
    )
}

/// `GET /api/v1/queues/{name}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<QueueView>> {
    require_scope(&caller, Scope::Read)?;
    let name = QueueName::parse(&raw).map_err(|_| unknown_queue(&raw))?;
    state
        .store
        .get_queue(&caller.tenant, &name)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_queue(&raw))
}

/// An operator action on one queue: `orch:operate` with its warrant, audited `action`
/// with the queue as target; a name that does not parse is an unknown queue. `act` gets
/// the parsed name and the entry to append in its transaction.
async fn queue_action<F, Fut>(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    raw: &str,
    action: &'static str,
    act: F,
) -> ApiResult<Json<QueueView>>
where
    F: FnOnce(QueueName, AuditDraft) -> Fut,
    Fut: Future<Output = Result<QueueView, ActionError>>,
{
    let op = Operation {
        action,
        scope: Scope::Operate,
        target: Some(Target::new("queue", raw)),
    };
    let view = pipeline::run(state, caller, meta, op, |draft| async move {
        let name = QueueName::parse(raw).map_err(|_| unknown_queue(raw))?;
        act(name, draft).await
    })
    .await?;
    Ok(Json(view))
}

async fn set_paused(
    state: AppState,
    caller: Caller,
    meta: RequestMeta,
    raw: String,
    paused: bool,
) -> ApiResult<Json<QueueView>> {
    let action = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    let (st, who) = (&state, &caller);
    queue_action(
        &state,
        &caller,
        &meta,
        &raw,
        action,
        |name, draft| async move {
            Ok(st
                .store
                .set_queue_paused_audited(&who.tenant, &name, paused, draft)
                .await?)
        },
    )
    .await
}

/// `POST /api/v1/queues/{name}/pause` — audited `queue.pause`.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Json<QueueView>> {
    set_paused(state, caller, meta, raw, true).await
}

/// `POST /api/v1/queues/{name}/resume` — audited `queue.resume`.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Json<QueueView>> {
    set_paused(state, caller, meta, raw, false).await
}

/// The body of `PUT /api/v1/queues/{name}/limits`: the whole set of limits (an absent or
/// `null` field is no limit).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    #[serde(default)]
    rate_per_sec: Option<f64>,
    #[serde(default)]
    burst: Option<u64>,
    #[serde(default)]
    max_concurrency: Option<u64>,
}

/// A rate: finite, above zero, at most [`MAX_RATE`].
pub(crate) fn parse_rate(field: &str, rate: Option<f64>) -> Result<Option<f64>, ApiError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) => Err(ApiError::field(
            field,
            format!("must be a number above 0 and at most {MAX_RATE}"),
        )),
        other => Ok(other),
    }
}

/// A count limit: 1..=[`MAX_COUNT`].
pub(crate) fn parse_count(field: &str, n: Option<u64>) -> Result<Option<u64>, ApiError> {
    match n {
        Some(n) if !(1..=MAX_COUNT).contains(&n) => Err(ApiError::field(
            field,
            format!("must be an integer from 1 to {MAX_COUNT}"),
        )),
        other => Ok(other),
    }
}

fn parse_limits(headers: &HeaderMap, body: &[u8]) -> Result<QueueLimits, ApiError> {
    let b: LimitsBody = json_body(headers, body)?;
    let limits = QueueLimits {
        rate_per_sec: parse_rate("rate_per_sec", b.rate_per_sec)?,
        burst: parse_count("burst", b.burst)?,
        max_concurrency: parse_count("max_concurrency", b.max_concurrency)?,
    };
    if limits.burst.is_some() && limits.rate_per_sec.is_none() {
        return Err(ApiError::field("burst", "a burst needs rate_per_sec"));
    }
    Ok(limits)
}

/// `PUT /api/v1/queues/{name}/limits` — audited `queue.limits` with `before` and `after`.
pub async fn limits(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<QueueView>> {
    let (st, who, hd, bd) = (&state, &caller, &headers, &body);
    queue_action(
        &state,
        &caller,
        &meta,
        &raw,
        "queue.limits",
        |name, draft| async move {
            let limits = parse_limits(hd, bd)?;
            Ok(st
                .store
                .set_queue_limits_audited(&who.tenant, &name, limits, draft)
                .await?)
        },
    )
    .await
}

/// `PUT /api/v1/queues/{name}/retry` — the queue's retry defaults, replaced whole (an
/// absent or `null` field is the built-in default); audited `queue.retry` with `before`
/// and `after`.
pub async fn retry(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<QueueView>> {
    let (st, who, hd, bd) = (&state, &caller, &headers, &body);
    queue_action(
        &state,
        &caller,
        &meta,
        &raw,
        "queue.retry",
        |name, draft| async move {
            let policy: RetryPolicy = json_body(hd, bd)?;
            policy.validate().map_err(|e| ApiError::fields(vec![e]))?;
            Ok(st
                .store
                .set_queue_retry_audited(&who.tenant, &name, policy, draft)
                .await?)
        },
    )
    .await
}
