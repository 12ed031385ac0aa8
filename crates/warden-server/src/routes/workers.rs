//! The worker protocol (API.md §Workers): agent heartbeats and registry, leasing with
//! long-poll, lease heartbeats, complete, fail, and the batch finish.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use warden_core::jobs::FieldError;
use warden_core::names::{AgentId, JobId, JobType, QueueName};
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;
use warden_store::leases::{AgentView, Finish, FinishItem, LeaseRequest, LeasedJob};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::json_body;
use crate::routes::{Page, require_scope};

/// The most jobs one lease request may take.
pub const MAX_LEASE_JOBS: u32 = 1_000;
/// The longest lease.
pub const MAX_LEASE_SECS: u32 = 3_600;
/// The longest long-poll.
pub const MAX_WAIT_MS: u64 = 30_000;
/// The most items one finish batch may carry.
pub const MAX_FINISH_ITEMS: usize = 10_000;

fn names<T>(
    field: &str,
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, warden_core::names::NameError>,
    errors: &mut Vec<FieldError>,
) -> Vec<T> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, s)| {
            parse(s)
                .map_err(|e| errors.push(FieldError::new(format!("{field}[{i}]"), e.message)))
                .ok()
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    queues: Vec<String>,
    #[serde(default)]
    types: Vec<String>,
    version: Option<String>,
}

fn parse_agent(raw: &str) -> ApiResult<AgentId> {
    AgentId::parse(raw).map_err(|e| ApiError::field("agent_id", e.message))
}

/// `POST /api/v1/agents/{agent_id}/heartbeat`.
pub async fn agent_heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<AgentView>> {
    require_scope(&caller, Scope::Work)?;
    let body: HeartbeatBody = json_body(&headers, &body)?;
    let agent = parse_agent(&raw)?;
    let mut errors = Vec::new();
    let queues = names("queues", &body.queues, QueueName::parse, &mut errors);
    let types = names("types", &body.types, JobType::parse, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    Ok(Json(
        state
            .store
            .heartbeat_agent(
                &caller.tenant,
                &agent,
                &queues,
                &types,
                body.version.as_deref(),
            )
            .await?,
    ))
}

/// `GET /api/v1/agents`.
pub async fn agents(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Page<AgentView>>> {
    require_scope(&caller, Scope::Read)?;
    Ok(Json(Page {
        items: state.store.list_agents(&caller.tenant).await?,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseBody {
    agent_id: String,
    queues: Vec<String>,
    types: Option<Vec<String>>,
    max_jobs: u32,
    lease_seconds: u32,
    #[serde(default)]
    wait_ms: u64,
}

/// `POST /api/v1/leases` — claim up to `max_jobs`; with `wait_ms`, wait for work (woken at
/// once by an enqueue, not by polling).
pub async fn lease(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    require_scope(&caller, Scope::Work)?;
    let body: LeaseBody = json_body(&headers, &body)?;
    let mut errors = Vec::new();
    let agent_id = AgentId::parse(&body.agent_id)
        .map_err(|e| errors.push(FieldError::new("agent_id", e.message)))
        .ok();
    let queues = names("queues", &body.queues, QueueName::parse, &mut errors);
    if body.queues.is_empty() || body.queues.len() > 100 {
        errors.push(FieldError::new("queues", "name 1 to 100 queues"));
    }
    let types = body
        .types
        .as_ref()
        .map(|t| names("types", t, JobType::parse, &mut errors));
    if !(1..=MAX_LEASE_JOBS).contains(&body.max_jobs) {
        errors.push(FieldError::new(
            "max_jobs",
            format!("must be from 1 to {MAX_LEASE_JOBS}"),
        ));
    }
    if !(1..=MAX_LEASE_SECS).contains(&body.lease_seconds) {
        errors.push(FieldError::new(
            "lease_seconds",
            format!("must be from 1 to {MAX_LEASE_SECS}"),
        ));
    }
    if body.wait_ms > MAX_WAIT_MS {
        errors.push(FieldError::new(
            "wait_ms",
            format!("must be at most {MAX_WAIT_MS}"),
        ));
    }
    let Some(agent_id) = agent_id.filter(|_| errors.is_empty()) else {
        return Err(ApiError::fields(errors));
    };
    let req = LeaseRequest {
        agent_id,
        queues,
        types,
        max_jobs: body.max_jobs,
        lease_secs: body.lease_seconds,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(body.wait_ms);
    let mut shutdown = state.shutdown.subscribe();
    // Registered before the first look, so a job enqueued between a look and the sleep
    // still wakes this long-poll (the wake waits as a permit).
    let waiter = (body.wait_ms > 0).then(|| {
        state
            .waiters
            .register(&caller.tenant, &req.queues, req.types.as_deref())
    });
    let mut first = true;
    loop {
        let for_us = waiter.as_ref().is_some_and(|w| w.looking());
        // A request that will not wait, and the first round of one whose agent's row is
        // due a refresh, go straight to the lease (which refreshes it), as does a wake for
        // a job we can take. Any other look — a worker's next long-poll right after its
        // last jobs, mostly — is a read first: on SQLite it keeps the one writer free
        // when there is nothing to lease.
        let straight = for_us
            || (first
                && (waiter.is_none() || state.store.lease_registers_agent(&caller.tenant, &req)));
        let worth_a_try = straight || state.store.has_ready_jobs(&caller.tenant, &req).await?;
        first = false;
        let jobs: Vec<LeasedJob> = if worth_a_try {
            state.store.lease_jobs(&caller.tenant, &req).await?
        } else {
            Vec::new()
        };
        state.metrics.count_leased(&caller.tenant, &jobs);
        let Some(w) = waiter.as_ref().filter(|_| {
            jobs.is_empty() && tokio::time::Instant::now() < deadline && !*shutdown.borrow()
        }) else {
            return Ok(Json(serde_json::json!({ "jobs": jobs })));
        };
        tokio::select! {
            _ = w.woken() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // On shutdown open long-polls answer at once, with no jobs.
            _ = shutdown.changed() => return Ok(Json(serde_json::json!({ "jobs": [] }))),
        }
    }
}

fn job_id(raw: &str) -> ApiResult<JobId> {
    JobId::parse(raw).map_err(|_| {
        ApiError::new(
            ReasonCode::UnknownJobId,
            format!("no job {raw} in this tenant"),
        )
    })
}

fn refused(code: ReasonCode, id: &str) -> ApiError {
    match code {
        ReasonCode::UnknownJobId => ApiError::new(code, format!("no job {id} in this tenant")),
        _ => ApiError::new(code, "this worker does not hold the job's current lease"),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseRef {
    lease_id: String,
}

/// `POST /api/v1/jobs/{id}/heartbeat` — extend the lease.
pub async fn job_heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    require_scope(&caller, Scope::Work)?;
    let body: LeaseRef = json_body(&headers, &body)?;
    let id = job_id(&raw)?;
    match state
        .store
        .heartbeat_lease(&caller.tenant, id, &body.lease_id)
        .await?
    {
        Ok(expires) => Ok(Json(
            serde_json::json!({"id": id, "lease_id": body.lease_id, "lease_expires_at": expires}),
        )),
        Err(code) => Err(refused(code, &raw)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    lease_id: String,
    result: Option<serde_json::Value>,
    artifact_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    lease_id: String,
    error: String,
    retryable: bool,
}

async fn finish_one(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    lease_id: String,
    finish: Finish,
) -> ApiResult<Json<serde_json::Value>> {
    let id = job_id(raw)?;
    let outcome = state
        .store
        .finish_jobs(
            &caller.tenant,
            &[FinishItem {
                id,
                lease_id,
                finish,
            }],
        )
        .await?;
    state.metrics.count_finished(&caller.tenant, &outcome);
    match &outcome[0] {
        Ok(f) => {
            if f.frees {
                state.wake_workers(Some(&caller.tenant));
            }
            let job = state
                .store
                .get_job(&caller.tenant, id)
                .await?
                .ok_or_else(|| refused(ReasonCode::UnknownJobId, raw))?;
            Ok(Json(serde_json::to_value(job).expect("jobs serialize")))
        }
        Err(code) => Err(refused(*code, raw)),
    }
}

fn with_artifact(
    result: Option<serde_json::Value>,
    artifact_hash: Option<String>,
) -> ApiResult<Option<serde_json::Value>> {
    let Some(hash) = artifact_hash else {
        return Ok(result);
    };
    let valid = hash
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid {
        return Err(ApiError::field(
            "artifact_hash",
            "must match ^sha256:[A-Fa-f0-9]{64}$",
        ));
    }
    Ok(Some(
        serde_json::json!({"result": result, "artifact_hash": hash}),
    ))
}

/// `POST /api/v1/jobs/{id}/complete`.
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    require_scope(&caller, Scope::Work)?;
    let body: CompleteBody = json_body(&headers, &body)?;
    let result = with_artifact(body.result, body.artifact_hash)?;
    finish_one(
        &state,
        &caller,
        &raw,
        body.lease_id,
        Finish::Complete { result },
    )
    .await
}

/// `POST /api/v1/jobs/{id}/fail`.
pub async fn fail(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    require_scope(&caller, Scope::Work)?;
    let body: FailBody = json_body(&headers, &body)?;
    if body.error.len() > 16 * 1024 {
        return Err(ApiError::field("error", "at most 16 KiB"));
    }
    finish_one(
        &state,
        &caller,
        &raw,
        body.lease_id,
        Finish::Fail {
            error: body.error,
            retryable: body.retryable,
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishBatch {
    items: Vec<FinishBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishBody {
    id: String,
    lease_id: String,
    outcome: String,
    result: Option<serde_json::Value>,
    artifact_hash: Option<String>,
    error: Option<String>,
    retryable: Option<bool>,
}

/// `POST /api/v1/jobs/finish` — many completions and failures in one transaction; each
/// item answers `{id, ok, code?}` in request order.
pub async fn finish(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    require_scope(&caller, Scope::Work)?;
    let body: FinishBatch = json_body(&headers, &body)?;
    if body.items.is_empty() || body.items.len() > MAX_FINISH_ITEMS {
        return Err(ApiError::field(
            "items",
            format!("must hold 1 to {MAX_FINISH_ITEMS} items"),
        ));
    }
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(body.items.len());
    let mut unparsed = Vec::new();
    for (i, it) in body.items.into_iter().enumerate() {
        let finish = match it.outcome.as_str() {
            "complete" => match with_artifact(it.result, it.artifact_hash) {
                Ok(result) => Finish::Complete { result },
                Err(e) => {
                    errors.push(FieldError::new(
                        format!("items[{i}].artifact_hash"),
                        e.detail,
                    ));
                    continue;
                }
            },
            "fail" => Finish::Fail {
                error: it.error.unwrap_or_default(),
                retryable: it.retryable.unwrap_or(true),
            },
            _ => {
                errors.push(FieldError::new(
                    format!("items[{i}].outcome"),
                    "must be complete or fail",
                ));
                continue;
            }
        };
        match JobId::parse(&it.id) {
            Ok(id) => items.push((
                i,
                FinishItem {
                    id,
                    lease_id: it.lease_id,
                    finish,
                },
            )),
            Err(_) => unparsed.push((i, it.id)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let settled: Vec<FinishItem> = items.iter().map(|(_, f)| f.clone()).collect();
    let outcomes = state.store.finish_jobs(&caller.tenant, &settled).await?;
    state.metrics.count_finished(&caller.tenant, &outcomes);
    // Only a finish that may have let other jobs be leased wakes the long-polls: each
    // woken one reads before it sleeps again (`Finished::frees`).
    if outcomes.iter().flatten().any(|f| f.frees) {
        state.wake_workers(Some(&caller.tenant));
    }
    let total = items.len() + unparsed.len();
    let mut answers: Vec<serde_json::Value> = vec![serde_json::Value::Null; total];
    for ((i, item), outcome) in items.iter().zip(outcomes) {
        answers[*i] = match outcome {
            Ok(_) => serde_json::json!({"id": item.id, "ok": true}),
            Err(code) => serde_json::json!({"id": item.id, "ok": false, "code": code}),
        };
    }
    for (i, raw) in unparsed {
        answers[i] = serde_json::json!({"id": raw, "ok": false, "code": ReasonCode::UnknownJobId});
    }
    Ok(Json(serde_json::json!({ "items": answers })))
}
