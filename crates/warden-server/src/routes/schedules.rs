//! `/api/v1/schedules`: cron schedules (created, changed and deleted under `orch:admin`,
//! audited `schedule.create`, `schedule.update`, `schedule.delete`), their list and
//! details, pause and resume under the `orch:operate` warrant
//! (audited `schedule.pause` / `schedule.resume`), and backfill under the `orch:backfill`
//! warrant (audited `schedule.backfill`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use warden_core::audit::{AuditDraft, Target};
use warden_core::jobs::FieldError;
use warden_core::names::{JobType, QueueName, ScheduleId};
use warden_core::reason::ReasonCode;
use warden_core::schedule::{Calendar, Cron, Run, Schedule, zone};
use warden_core::scopes::Scope;
use warden_core::time::Timestamp;
use warden_store::schedules::{NewSchedule, ScheduleChange};

use crate::AppState;
use crate::auth::{Caller, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::extract::{QueryParams, json_body};
use crate::pipeline::{self, ActionError, Operation};
use crate::routes::jobs::{parse_max_attempts, parse_priority};
use crate::routes::{Page, require_scope};

/// The body of `POST /api/v1/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    cron: String,
    #[serde(default)]
    timezone: Option<String>,
    queue: String,
    #[serde(rename = "type")]
    job_type: String,
    #[serde(default)]
    payload: serde_json::Value,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    max_attempts: Option<i64>,
}

fn parse_create(headers: &HeaderMap, body: &[u8]) -> Result<NewSchedule, ApiError> {
    let b: CreateBody = json_body(headers, body)?;
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
    let calendar = Calendar::parse(&b.cron, b.timezone.as_deref())
        .map_err(|e| {
            let field = if e.to_string().contains("time zone") {
                "timezone"
            } else {
                "cron"
            };
            err(field, e.to_string())
        })
        .ok();
    let queue = QueueName::parse(&b.queue)
        .map_err(|e| err("queue", e.message))
        .ok();
    let job_type = JobType::parse(&b.job_type)
        .map_err(|e| err("type", e.message))
        .ok();
    let priority = parse_priority(b.priority)
        .map_err(|m| err("priority", m))
        .ok();
    let max_attempts = parse_max_attempts(b.max_attempts)
        .map_err(|m| err("max_attempts", m))
        .ok();
    match (calendar, queue, job_type, priority, max_attempts) {
        (Some(calendar), Some(queue), Some(job_type), Some(priority), Some(max_attempts))
            if errors.is_empty() =>
        {
            Ok(NewSchedule {
                calendar,
                timezone: b.timezone,
                queue,
                job_type,
                payload: b.payload,
                priority,
                max_attempts,
            })
        }
        _ => Err(ApiError::fields(errors)),
    }
}

/// `POST /api/v1/schedules` — 201 with the schedule; audited `schedule.create`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let op = Operation {
        action: "schedule.create",
        scope: Scope::Admin,
        target: None,
    };
    let schedule = pipeline::run(&state, &caller, &meta, op, |draft| async {
        let new = parse_create(&headers, &body)?;
        Ok::<_, ActionError>(
            state
                .store
                .create_schedule_audited(&caller.tenant, new, draft)
                .await?,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(schedule)).into_response())
}

/// `GET /api/v1/schedules?limit=&cursor=` — newest first.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<Schedule>>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(raw.as_deref(), &["limit", "cursor"])?;
    let limit = q.limit(100, 1000)?;
    let cursor = q.parsed("cursor", |s| {
        ScheduleId::parse(s).map_err(|_| "not a cursor from this list")
    })?;
    let (items, more) = state
        .store
        .list_schedules(&caller.tenant, cursor, limit)
        .await?;
    Ok(Json(Page::new(items, more, |s| s.id.to_string())))
}

/// The body of a backfill: `[from, to)`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    from: String,
    to: String,
}

/// `POST /api/v1/schedules/{id}/backfill` — `{runs: [{fire_time, job_id, created}]}`;
/// audited `schedule.backfill` under the backfill warrant.
pub async fn backfill(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    let op = Operation {
        action: "schedule.backfill",
        scope: Scope::Backfill,
        target: Some(Target::new("schedule", raw.clone())),
    };
    let max = state.config.schedules.backfill_max_runs;
    let runs: Vec<Run> = pipeline::run(&state, &caller, &meta, op, |draft| async {
        let id = parse_id(&raw)?;
        let b: BackfillBody = json_body(&headers, &body)?;
        let mut errors = Vec::new();
        let from = Timestamp::parse_rfc3339(&b.from)
            .map_err(|e| errors.push(FieldError::new("from", e.to_string())))
            .ok();
        let to = Timestamp::parse_rfc3339(&b.to)
            .map_err(|e| errors.push(FieldError::new("to", e.to_string())))
            .ok();
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::fields(errors).into());
        };
        Ok::<_, ActionError>(
            state
                .store
                .backfill_audited(&caller.tenant, id, from, to, max, draft)
                .await?,
        )
    })
    .await?;
    if runs.iter().any(|r| r.created) {
        state.wake_workers(Some(&caller.tenant));
    }
    Ok(Json(serde_json::json!({ "runs": runs })))
}

/// `GET /api/v1/schedules/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<Schedule>> {
    require_scope(&caller, Scope::Read)?;
    let id = parse_id(&raw)?;
    state
        .store
        .get_schedule(&caller.tenant, id)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_schedule(&raw))
}

/// The body of `PATCH /api/v1/schedules/{id}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    cron: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(rename = "type", default)]
    job_type: Option<String>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
    #[serde(default)]
    priority: Option<i64>,
    #[serde(default)]
    max_attempts: Option<i64>,
}

fn parse_update(headers: &HeaderMap, body: &[u8]) -> Result<ScheduleChange, ApiError> {
    let b: UpdateBody = json_body(headers, body)?;
    let mut errors = Vec::new();
    let mut change = ScheduleChange::default();
    if let Some(cron) = &b.cron {
        match Cron::parse(cron) {
            Ok(c) => change.cron = Some(c),
            Err(e) => errors.push(FieldError::new("cron", e.to_string())),
        }
    }
    if let Some(tz) = b.timezone {
        match zone(Some(&tz)) {
            Ok(_) => change.timezone = Some(tz),
            Err(e) => errors.push(FieldError::new("timezone", e.to_string())),
        }
    }
    if let Some(q) = &b.queue {
        match QueueName::parse(q) {
            Ok(q) => change.queue = Some(q),
            Err(e) => errors.push(FieldError::new("queue", e.message)),
        }
    }
    if let Some(t) = &b.job_type {
        match JobType::parse(t) {
            Ok(t) => change.job_type = Some(t),
            Err(e) => errors.push(FieldError::new("type", e.message)),
        }
    }
    if b.priority.is_some() {
        match parse_priority(b.priority) {
            Ok(p) => change.priority = Some(p),
            Err(m) => errors.push(FieldError::new("priority", m)),
        }
    }
    if b.max_attempts.is_some() {
        match parse_max_attempts(b.max_attempts) {
            Ok(m) => change.max_attempts = Some(m),
            Err(m) => errors.push(FieldError::new("max_attempts", m)),
        }
    }
    change.payload = b.payload;
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let nothing = change.cron.is_none()
        && change.timezone.is_none()
        && change.queue.is_none()
        && change.job_type.is_none()
        && change.payload.is_none()
        && change.priority.is_none()
        && change.max_attempts.is_none();
    if nothing {
        return Err(ApiError::field(
            "body",
            "name at least one of cron, timezone, queue, type, payload, priority, max_attempts",
        ));
    }
    Ok(change)
}

/// `PATCH /api/v1/schedules/{id}` — change what a schedule runs or when (needs
/// `orch:admin`, like creating one); audited `schedule.update` with `before` and `after`.
/// Runs already produced keep what they were made with.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Schedule>> {
    let (store, tenant, headers, body) = (&state.store, &caller.tenant, &headers, &body);
    schedule_action(
        &state,
        &caller,
        &meta,
        &raw,
        "schedule.update",
        Scope::Admin,
        |id, draft| async move {
            let change = parse_update(headers, body)?;
            Ok(store
                .update_schedule_audited(tenant, id, change, draft)
                .await?)
        },
    )
    .await
}

/// `DELETE /api/v1/schedules/{id}` — 200 with the schedule as it was (needs `orch:admin`);
/// audited `schedule.delete` with its definition. The jobs it produced stay.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Json<Schedule>> {
    let (store, tenant) = (&state.store, &caller.tenant);
    schedule_action(
        &state,
        &caller,
        &meta,
        &raw,
        "schedule.delete",
        Scope::Admin,
        |id, draft| async move { Ok(store.delete_schedule_audited(tenant, id, draft).await?) },
    )
    .await
}

/// An audited action on one schedule: `action` under `scope` (and its warrant, if it has
/// one), the schedule as target; an id that does not parse is an unknown schedule. `act`
/// gets the parsed id and the entry to append in its transaction.
async fn schedule_action<F, Fut>(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    raw: &str,
    action: &'static str,
    scope: Scope,
    act: F,
) -> ApiResult<Json<Schedule>>
where
    F: FnOnce(ScheduleId, AuditDraft) -> Fut,
    Fut: Future<Output = Result<Schedule, ActionError>>,
{
    let op = Operation {
        action,
        scope,
        target: Some(Target::new("schedule", raw)),
    };
    let schedule = pipeline::run(state, caller, meta, op, |draft| async move {
        act(parse_id(raw)?, draft).await
    })
    .await?;
    Ok(Json(schedule))
}

/// A schedule id from the path: one that does not parse names no schedule of the tenant.
fn parse_id(raw: &str) -> Result<ScheduleId, ApiError> {
    ScheduleId::parse(raw).map_err(|_| unknown_schedule(raw))
}

fn unknown_schedule(raw: &str) -> ApiError {
    ApiError::new(
        ReasonCode::UnknownScheduleId,
        format!("no schedule {raw} in this tenant"),
    )
}

async fn set_paused(
    state: AppState,
    caller: Caller,
    meta: RequestMeta,
    raw: String,
    paused: bool,
) -> ApiResult<Json<Schedule>> {
    let action = if paused {
        "schedule.pause"
    } else {
        "schedule.resume"
    };
    let (store, tenant) = (&state.store, &caller.tenant);
    schedule_action(
        &state,
        &caller,
        &meta,
        &raw,
        action,
        Scope::Operate,
        |id, draft| async move {
            Ok(store
                .set_schedule_paused_audited(tenant, id, paused, draft)
                .await?)
        },
    )
    .await
}

/// `POST /api/v1/schedules/{id}/pause` — no runs until resumed; audited `schedule.pause`
/// under the `orch:operate` warrant.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Json<Schedule>> {
    set_paused(state, caller, meta, raw, true).await
}

/// `POST /api/v1/schedules/{id}/resume` — runs again from the next fire time after now
/// (backfill what was missed); audited `schedule.resume`.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Json<Schedule>> {
    set_paused(state, caller, meta, raw, false).await
}
