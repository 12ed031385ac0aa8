//! `/api/v1/queues`: list, show, and the operator actions pause and resume.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use warden_core::audit::Target;
use warden_core::names::QueueName;
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;
use warden_store::queues::QueueView;

use crate::AppState;
use crate::auth::{Caller, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
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
    let next_cursor = if more {
        items.last().map(|v| v.name.to_string())
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
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
    let op = Operation {
        action,
        scope: Scope::Operate,
        target: Some(Target::new("queue", raw.clone())),
    };
    let view = pipeline::run(&state, &caller, &meta, op, |draft| async {
        let name = QueueName::parse(&raw).map_err(|_| unknown_queue(&raw))?;
        Ok::<_, ActionError>(
            state
                .store
                .set_queue_paused_audited(&caller.tenant, &name, paused, draft)
                .await?,
        )
    })
    .await?;
    Ok(Json(view))
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
