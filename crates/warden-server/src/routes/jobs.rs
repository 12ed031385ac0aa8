//! `/api/v1/jobs`: enqueue (single and batch), list, show, and the operator actions cancel,
//! replay and bulk replay.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use warden_core::audit::Target;
use warden_core::jobs::{
    DEFAULT_MAX_ATTEMPTS, FieldError, Job, JobState, MAX_BATCH, MAX_MAX_ATTEMPTS, NewJob,
};
use warden_core::names::{IdempotencyKey, JobId, JobType, QueueName};
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;
use warden_core::time::Timestamp;
use warden_store::jobs::{JobFilter, ReplayOutcome};

use crate::AppState;
use crate::auth::{Caller, RequestMeta};
use crate::error::{ApiError, ApiResult};
use crate::extract::{QueryParams, json_body};
use crate::pipeline::{self, ActionError, Operation};
use crate::routes::{Page, require_scope};

/// The most jobs one bulk replay may touch.
pub const MAX_BULK_REPLAY: usize = 100_000;
/// Jobs replayed per transaction in a bulk replay (each with its entry).
const BULK_CHUNK: usize = 1_000;

/// An enqueue request as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    id: Option<String>,
    queue: String,
    #[serde(rename = "type")]
    job_type: String,
    payload: serde_json::Value,
    priority: Option<i64>,
    run_at: Option<String>,
    max_attempts: Option<i64>,
    idempotency_key: Option<String>,
    depends_on: Option<Vec<String>>,
}

impl EnqueueBody {
    /// Validate into a [`NewJob`], collecting every field error under `prefix`.
    fn into_new_job(self, prefix: &str, errors: &mut Vec<FieldError>) -> Option<NewJob> {
        let mut err = |field: &str, message: String| {
            errors.push(FieldError::new(format!("{prefix}{field}"), message))
        };
        let (id, client_chosen_id) = match &self.id {
            Some(s) => match JobId::parse_new(s) {
                Ok(id) => (Some(id), true),
                Err(e) => {
                    err("id", e.message);
                    (None, true)
                }
            },
            None => (Some(JobId::new()), false),
        };
        let queue = QueueName::parse(&self.queue)
            .map_err(|e| err("queue", e.message))
            .ok();
        let job_type = JobType::parse(&self.job_type)
            .map_err(|e| err("type", e.message))
            .ok();
        let priority = parse_priority(self.priority)
            .map_err(|m| err("priority", m))
            .ok();
        let run_at = match &self.run_at {
            None => Some(None),
            Some(s) => Timestamp::parse_rfc3339(s)
                .map(Some)
                .map_err(|e| err("run_at", e.to_string()))
                .ok(),
        };
        let max_attempts = parse_max_attempts(self.max_attempts)
            .map_err(|m| err("max_attempts", m))
            .ok();
        let idempotency_key = match &self.idempotency_key {
            None => Some(None),
            Some(k) => IdempotencyKey::parse(k)
                .map(Some)
                .map_err(|e| err("idempotency_key", e.message))
                .ok(),
        };
        let mut depends_on = Vec::new();
        for (i, d) in self.depends_on.iter().flatten().enumerate() {
            match JobId::parse(d) {
                Ok(id) if !depends_on.contains(&id) => depends_on.push(id),
                Ok(_) => {}
                Err(e) => err(&format!("depends_on[{i}]"), e.message),
            }
        }
        if depends_on.len() > 100 {
            err("depends_on", "at most 100 dependencies".into());
        }
        Some(NewJob {
            id: id?,
            client_chosen_id,
            queue: queue?,
            job_type: job_type?,
            payload: self.payload,
            priority: priority?,
            run_at: run_at?,
            max_attempts: max_attempts?,
            idempotency_key: idempotency_key?,
            depends_on,
        })
    }
}

/// A job's `priority` (default 0): a 32-bit signed integer.
pub(crate) fn parse_priority(p: Option<i64>) -> Result<i32, String> {
    i32::try_from(p.unwrap_or(0)).map_err(|_| "must fit in a 32-bit signed integer".into())
}

/// A job's `max_attempts` (default [`DEFAULT_MAX_ATTEMPTS`]).
pub(crate) fn parse_max_attempts(n: Option<i64>) -> Result<u32, String> {
    match n.unwrap_or(DEFAULT_MAX_ATTEMPTS as i64) {
        n if (1..=MAX_MAX_ATTEMPTS as i64).contains(&n) => Ok(n as u32),
        _ => Err(format!("must be from 1 to {MAX_MAX_ATTEMPTS}")),
    }
}

fn require_enqueue_scope(caller: &Caller) -> ApiResult<()> {
    if caller.scopes.contains(Scope::Work) || caller.scopes.contains(Scope::Operate) {
        Ok(())
    } else {
        Err(ApiError::new(
            ReasonCode::ForbiddenScope,
            "enqueueing requires orch:work or orch:operate",
        ))
    }
}

/// `POST /api/v1/jobs`.
pub async fn enqueue(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    require_enqueue_scope(&caller)?;
    let req: EnqueueBody = json_body(&headers, &body)?;
    // Without `max_attempts`, the queue's default (when it has one) applies.
    let defaulted = [req.max_attempts.is_none()];
    let mut errors = Vec::new();
    let job = req.into_new_job("", &mut errors);
    let Some(job) = job.filter(|_| errors.is_empty()) else {
        return Err(ApiError::fields(errors));
    };
    let mut done = state
        .store
        .enqueue_defaulted(&caller.tenant, vec![job], &defaulted)
        .await?;
    let e = done.remove(0);
    if e.created {
        state.wake_workers_for(&caller.tenant, [(&e.job.queue, &e.job.job_type)]);
    }
    let status = if e.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(e.job)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    jobs: Vec<EnqueueBody>,
}

/// `POST /api/v1/jobs/batch`: up to 10,000 jobs, all or nothing.
pub async fn enqueue_batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    require_enqueue_scope(&caller)?;
    let req: BatchBody = json_body(&headers, &body)?;
    if req.jobs.is_empty() || req.jobs.len() > MAX_BATCH {
        return Err(ApiError::field(
            "jobs",
            format!("must hold 1 to {MAX_BATCH} jobs"),
        ));
    }
    let defaulted: Vec<bool> = req.jobs.iter().map(|j| j.max_attempts.is_none()).collect();
    let mut errors = Vec::new();
    let jobs: Vec<Option<NewJob>> = req
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, j)| j.into_new_job(&format!("jobs[{i}]."), &mut errors))
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let jobs: Vec<NewJob> = jobs.into_iter().map(|j| j.expect("no errors")).collect();
    let done = state
        .store
        .enqueue_defaulted(&caller.tenant, jobs, &defaulted)
        .await?;
    /// The batch's answer, serialized straight from the ids (a `serde_json::Value` would
    /// hold a `String` per job first).
    #[derive(serde::Serialize)]
    struct Created {
        ids: Vec<JobId>,
    }
    let ids: Vec<JobId> = done.iter().map(|e| e.job.id).collect();
    state.wake_workers_for(
        &caller.tenant,
        done.iter()
            .filter(|e| e.created)
            .map(|e| (&e.job.queue, &e.job.job_type)),
    );
    drop(done);
    Ok((StatusCode::CREATED, Json(Created { ids })).into_response())
}

fn job_filter(q: &QueryParams) -> ApiResult<JobFilter> {
    Ok(JobFilter {
        queue: q.parsed("queue", |s| QueueName::parse(s).map_err(|e| e.message))?,
        state: q.parsed("state", |s| JobState::parse(s).ok_or("unknown state"))?,
        job_type: q.parsed("type", |s| JobType::parse(s).map_err(|e| e.message))?,
        since: None,
        until: None,
    })
}

/// `GET /api/v1/jobs`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Page<Job>>> {
    require_scope(&caller, Scope::Read)?;
    let q = QueryParams::parse(
        raw.as_deref(),
        &["queue", "state", "type", "limit", "cursor"],
    )?;
    let filter = job_filter(&q)?;
    let limit = q.limit(100, 1000)?;
    let cursor = q.parsed("cursor", |s| {
        JobId::parse(s).map_err(|_| "not a cursor from this list")
    })?;
    let (items, more) = state
        .store
        .list_jobs(&caller.tenant, &filter, cursor, limit)
        .await?;
    Ok(Json(Page::new(items, more, |j| j.id.to_string())))
}

fn unknown_job(raw: &str) -> ApiError {
    ApiError::new(
        ReasonCode::UnknownJobId,
        format!("no job {raw} in this tenant"),
    )
}

/// `GET /api/v1/jobs/{id}`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> ApiResult<Json<Job>> {
    require_scope(&caller, Scope::Read)?;
    let id = JobId::parse(&raw).map_err(|_| unknown_job(&raw))?;
    state
        .store
        .get_job(&caller.tenant, id)
        .await?
        .map(Json)
        .ok_or_else(|| unknown_job(&raw))
}

fn job_op(action: &'static str, raw: &str) -> Operation {
    Operation {
        action,
        scope: Scope::Operate,
        target: Some(Target::new("job", raw)),
    }
}

/// `POST /api/v1/jobs/{id}/cancel` — audited `job.cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Json<Job>> {
    let job = pipeline::run(
        &state,
        &caller,
        &meta,
        job_op("job.cancel", &raw),
        |draft| async {
            let id = JobId::parse(&raw).map_err(|_| unknown_job(&raw))?;
            Ok::<_, ActionError>(
                state
                    .store
                    .cancel_job_audited(&caller.tenant, id, draft)
                    .await?,
            )
        },
    )
    .await?;
    Ok(Json(job))
}

/// `POST /api/v1/jobs/{id}/replay` — audited `job.replay`; answers 201 with the new job.
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let job = pipeline::run(
        &state,
        &caller,
        &meta,
        job_op("job.replay", &raw),
        |draft| async {
            let id = JobId::parse(&raw).map_err(|_| unknown_job(&raw))?;
            Ok::<_, ActionError>(
                state
                    .store
                    .replay_job_audited(&caller.tenant, id, draft)
                    .await?,
            )
        },
    )
    .await?;
    state.wake_workers(Some(&caller.tenant));
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkReplayBody {
    ids: Option<Vec<String>>,
    filter: Option<BulkFilter>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkFilter {
    queue: Option<String>,
    state: Option<String>,
    #[serde(rename = "type")]
    job_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl BulkFilter {
    fn parse(self) -> ApiResult<JobFilter> {
        let mut errors = Vec::new();
        let mut f = JobFilter::default();
        if let Some(q) = self.queue {
            f.queue = QueueName::parse(&q)
                .map_err(|e| errors.push(FieldError::new("filter.queue", e.message)))
                .ok();
        }
        if let Some(s) = self.state {
            f.state = JobState::parse(&s).or_else(|| {
                errors.push(FieldError::new("filter.state", "unknown state"));
                None
            });
        }
        if let Some(t) = self.job_type {
            f.job_type = JobType::parse(&t)
                .map_err(|e| errors.push(FieldError::new("filter.type", e.message)))
                .ok();
        }
        for (name, value, slot) in [
            ("filter.since", self.since, &mut f.since),
            ("filter.until", self.until, &mut f.until),
        ] {
            if let Some(v) = value {
                *slot = Timestamp::parse_rfc3339(&v)
                    .map_err(|e| errors.push(FieldError::new(name, e.to_string())))
                    .ok();
            }
        }
        if errors.is_empty() {
            Ok(f)
        } else {
            Err(ApiError::fields(errors))
        }
    }
}

#[derive(Debug, Serialize)]
struct Replayed {
    id: JobId,
    new_id: JobId,
}

#[derive(Debug, Serialize)]
struct Skipped {
    id: String,
    code: ReasonCode,
}

/// `POST /api/v1/jobs/replay` — bulk replay of up to 100,000 jobs by ids or by a filter
/// evaluated once, when the request arrives. Each replay commits with its own entry (in
/// chunks of 1,000), then one `job.bulk_replay` summary entry records the counts and the
/// skipped ids. A dry run answers `{count, ids}` and changes nothing.
pub async fn bulk_replay(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let bulk_id = uuid::Uuid::now_v7().to_string();
    let op = Operation {
        action: "job.bulk_replay",
        scope: Scope::Operate,
        target: Some(Target::new("bulk", bulk_id.clone())),
    };
    // Dry runs pass the scope and warrant checks too (refusals are audited), but a dry run
    // that succeeds changes nothing and writes no entry.
    let authorized = pipeline::authorize(&state, &caller, &meta, op).await?;
    let (ids, unparsed, dry_run) = match select_bulk(&state, &caller, &headers, &body).await {
        Ok(selection) => selection,
        Err(e) => return Err(authorized.reject(e).await),
    };
    if dry_run {
        return Ok(Json(serde_json::json!({"count": ids.len(), "ids": ids})).into_response());
    }
    let _bulk = state.bulk_action();
    authorized
        .execute(|summary| async {
            let mut template = summary.clone();
            template.action = "job.replay".into();
            let mut replayed = Vec::new();
            let mut skipped = unparsed;
            for outcome in replay_in_chunks(&state, &caller.tenant, &ids, &template, &bulk_id).await? {
                match outcome {
                    ReplayOutcome::Replayed { id, new_id } => replayed.push(Replayed { id, new_id }),
                    ReplayOutcome::Skipped { id, code } => skipped.push(Skipped { id: id.to_string(), code }),
                }
            }
            state.metrics.add("warden_audit_entries_total", vec![("action", "job.replay".into()), ("outcome", "allowed".into())], replayed.len() as u64);
            let mut summary = summary;
            summary.metadata = serde_json::json!({
                "bulk_id": bulk_id,
                "requested": replayed.len() + skipped.len(),
                "replayed": replayed.len(),
                "skipped": skipped.iter().map(|s| serde_json::json!({"id": s.id, "code": s.code.as_str()})).collect::<Vec<_>>(),
            });
            state.store.append_audit(summary).await?;
            state.wake_workers(Some(&caller.tenant));
            Ok::<_, ActionError>(Json(serde_json::json!({"bulk_id": bulk_id, "replayed": replayed, "skipped": skipped})).into_response())
        })
        .await
}

/// Chunks of a bulk replay in flight at once: while one commits, the next reads its jobs
/// and (on PostgreSQL, where the log lock comes last) inserts its new jobs.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Replay `ids` in chunks of [`BULK_CHUNK`], each in its own transaction with its entries,
/// [`CHUNKS_IN_FLIGHT`] at a time; outcomes come back in the order of `ids`. On an error
/// the chunks still running are aborted (their transactions roll back).
async fn replay_in_chunks(
    state: &AppState,
    tenant: &warden_core::names::TenantId,
    ids: &[JobId],
    template: &warden_core::audit::AuditDraft,
    bulk_id: &str,
) -> Result<Vec<ReplayOutcome>, warden_store::StoreError> {
    type Chunk = tokio::task::JoinHandle<Result<Vec<ReplayOutcome>, warden_store::StoreError>>;
    async fn next(
        running: &mut std::collections::VecDeque<Chunk>,
    ) -> Result<Vec<ReplayOutcome>, warden_store::StoreError> {
        let head = running.pop_front().expect("a chunk is running");
        // A chunk that panicked takes the request down the same way an inline one would.
        let result = head
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        if result.is_err() {
            running.drain(..).for_each(|h| h.abort());
        }
        result
    }
    let mut outcomes = Vec::with_capacity(ids.len());
    let mut running: std::collections::VecDeque<Chunk> = std::collections::VecDeque::new();
    for chunk in ids.chunks(BULK_CHUNK) {
        if running.len() == CHUNKS_IN_FLIGHT {
            outcomes.extend(next(&mut running).await?);
        }
        let (store, tenant, template, bulk_id, chunk) = (
            state.store.clone(),
            tenant.clone(),
            template.clone(),
            bulk_id.to_owned(),
            chunk.to_vec(),
        );
        running.push_back(tokio::spawn(async move {
            let read = store.prepare_replay(&tenant, &chunk).await?;
            store
                .replay_chunk_audited(&tenant, read, &template, &bulk_id)
                .await
        }));
    }
    while !running.is_empty() {
        outcomes.extend(next(&mut running).await?);
    }
    Ok(outcomes)
}

/// Validate a bulk replay request into the ids it covers (a filter is evaluated once,
/// now), the ids that did not parse, and whether it is a dry run.
async fn select_bulk(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<(Vec<JobId>, Vec<Skipped>, bool)> {
    let req: BulkReplayBody = json_body(headers, body)?;
    let (ids, skipped) = match (req.ids, req.filter) {
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > MAX_BULK_REPLAY {
                return Err(ApiError::field(
                    "ids",
                    format!("must hold 1 to {MAX_BULK_REPLAY} ids"),
                ));
            }
            let mut parsed = Vec::with_capacity(ids.len());
            let mut skipped = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for raw in ids {
                match JobId::parse(&raw) {
                    Ok(id) if seen.insert(id) => parsed.push(id),
                    Ok(_) => {}
                    Err(_) => skipped.push(Skipped {
                        id: raw,
                        code: ReasonCode::UnknownJobId,
                    }),
                }
            }
            (parsed, skipped)
        }
        (None, Some(filter)) => {
            let filter = filter.parse()?;
            // The snapshot: jobs arriving later (including the replays this request
            // creates) are never touched.
            let ids = state
                .store
                .snapshot_job_ids(&caller.tenant, &filter, MAX_BULK_REPLAY as u32 + 1)
                .await?;
            if ids.len() > MAX_BULK_REPLAY {
                return Err(ApiError::field(
                    "filter",
                    format!("matches more than {MAX_BULK_REPLAY} jobs; narrow it"),
                ));
            }
            (ids, Vec::new())
        }
        _ => return Err(ApiError::field("body", "give exactly one of ids or filter")),
    };
    Ok((ids, skipped, req.dry_run))
}
