//! The router: one file per resource under `routes/`, assembled here. [`ROUTES`] lists
//! every implemented route; the OpenAPI document is built from it and a test checks that
//! each one is served.

pub mod audit;
pub mod jobs;
pub mod ledger;
pub mod oauth;
pub mod ops;
pub mod queues;
pub mod quota;
pub mod schedules;
pub mod workers;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use serde::Serialize;
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

/// A page of a list: `{items, next_cursor}`.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items`; when `more` follow, the cursor is `key` of the last item.
    pub fn new(items: Vec<T>, more: bool, key: impl Fn(&T) -> String) -> Self {
        let next_cursor = if more { items.last().map(key) } else { None };
        Self { items, next_cursor }
    }
}

/// Refuse unless the caller holds `scope` (read routes; operator routes use the pipeline).
pub fn require_scope(caller: &Caller, scope: Scope) -> ApiResult<()> {
    if caller.scopes.contains(scope) {
        Ok(())
    } else {
        Err(ApiError::new(
            ReasonCode::ForbiddenScope,
            format!("this route requires the scope {scope}"),
        ))
    }
}

/// Every implemented route: (method, path, scope or "none", summary).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/oauth/token",
        "none",
        "Issue a token (client credentials grant, RFC 6749 §4.4)",
    ),
    (
        "get",
        "/.well-known/jwks.json",
        "none",
        "The token signing keys (JWKS)",
    ),
    (
        "get",
        "/.well-known/openid-configuration",
        "none",
        "The issuer's discovery document",
    ),
    (
        "post",
        "/api/v1/jobs",
        "orch:work|orch:operate",
        "Enqueue a job",
    ),
    (
        "get",
        "/api/v1/jobs",
        "orch:read",
        "List jobs, newest first",
    ),
    (
        "post",
        "/api/v1/jobs/batch",
        "orch:work|orch:operate",
        "Enqueue up to 10,000 jobs atomically",
    ),
    (
        "post",
        "/api/v1/jobs/replay",
        "orch:operate",
        "Bulk replay by ids or filter (audited)",
    ),
    (
        "get",
        "/api/v1/jobs/{id}",
        "orch:read",
        "A job with its timeline",
    ),
    (
        "post",
        "/api/v1/jobs/{id}/cancel",
        "orch:operate",
        "Cancel a job (audited job.cancel)",
    ),
    (
        "post",
        "/api/v1/jobs/{id}/replay",
        "orch:operate",
        "Replay a finished job as a new one (audited job.replay)",
    ),
    (
        "get",
        "/api/v1/queues",
        "orch:read",
        "List queues with depth by state",
    ),
    (
        "get",
        "/api/v1/queues/{name}",
        "orch:read",
        "A queue with its depth by state",
    ),
    (
        "post",
        "/api/v1/queues/{name}/pause",
        "orch:operate",
        "Pause leasing from a queue (audited queue.pause)",
    ),
    (
        "post",
        "/api/v1/queues/{name}/resume",
        "orch:operate",
        "Resume a paused queue (audited queue.resume)",
    ),
    (
        "put",
        "/api/v1/queues/{name}/limits",
        "orch:operate",
        "Replace a queue's rate and concurrency limits (audited queue.limits)",
    ),
    (
        "put",
        "/api/v1/queues/{name}/retry",
        "orch:operate",
        "Replace a queue's retry defaults: attempts and backoff (audited queue.retry)",
    ),
    ("get", "/api/v1/quota", "orch:read", "The tenant's quota"),
    (
        "put",
        "/api/v1/quota",
        "orch:quota",
        "Replace the tenant's quota (audited quota.update)",
    ),
    (
        "post",
        "/api/v1/schedules",
        "orch:admin",
        "Create a cron schedule (audited schedule.create)",
    ),
    (
        "get",
        "/api/v1/schedules",
        "orch:read",
        "List schedules, newest first",
    ),
    ("get", "/api/v1/schedules/{id}", "orch:read", "One schedule"),
    (
        "patch",
        "/api/v1/schedules/{id}",
        "orch:admin",
        "Change a schedule's cron, zone, queue, type, payload, priority or attempts (audited schedule.update)",
    ),
    (
        "delete",
        "/api/v1/schedules/{id}",
        "orch:admin",
        "Delete a schedule; the jobs it produced stay (audited schedule.delete)",
    ),
    (
        "post",
        "/api/v1/schedules/{id}/backfill",
        "orch:backfill",
        "Produce the runs of a past range, idempotently (audited schedule.backfill)",
    ),
    (
        "post",
        "/api/v1/schedules/{id}/pause",
        "orch:operate",
        "Pause a schedule: no runs until resumed (audited schedule.pause)",
    ),
    (
        "post",
        "/api/v1/schedules/{id}/resume",
        "orch:operate",
        "Resume a schedule from its next fire time (audited schedule.resume)",
    ),
    (
        "get",
        "/api/v1/audit",
        "orch:read",
        "List audit entries, newest first",
    ),
    (
        "get",
        "/api/v1/audit/stats",
        "orch:read",
        "Audit counts by action, outcome and actor",
    ),
    (
        "get",
        "/api/v1/audit/checkpoint",
        "orch:read",
        "The newest signed checkpoint of the caller's log (text/plain, a C2SP signed note)",
    ),
    (
        "get",
        "/api/v1/audit/keys",
        "none",
        "The checkpoint verifier keys, one per line (note verifier key form)",
    ),
    (
        "get",
        "/api/v1/audit/proof/inclusion",
        "orch:read",
        "RFC 9162 inclusion proof of one entry",
    ),
    (
        "get",
        "/api/v1/audit/proof/consistency",
        "orch:read",
        "RFC 9162 consistency proof between two tree sizes",
    ),
    (
        "get",
        "/api/v1/audit/export",
        "orch:read",
        "The log, streamed as NDJSON (verifiable offline), CSV or JSON",
    ),
    (
        "get",
        "/api/v1/audit/retention",
        "orch:read",
        "Retention period, archive watermark and the last run of the caller's log",
    ),
    (
        "get",
        "/api/v1/audit/stream",
        "orch:read",
        "New entries as Server-Sent Events; Last-Event-ID (a seq) resumes",
    ),
    (
        "get",
        "/api/v1/audit/{id}",
        "orch:read",
        "One audit entry with its seq and leaf hash",
    ),
    (
        "get",
        "/audit/operator",
        "orch:read",
        "Deprecated alias of GET /api/v1/audit",
    ),
    (
        "get",
        "/audit/operator/stats",
        "orch:read",
        "Deprecated alias of GET /api/v1/audit/stats",
    ),
    ("get", "/api/v1/openapi.json", "none", "This document"),
    ("get", "/healthz", "none", "The process is up"),
    (
        "get",
        "/readyz",
        "none",
        "The store is reachable and migrated",
    ),
    ("get", "/metrics", "none", "Prometheus metrics"),
];

/// The application's routes over `state`. Public so tests can drive it.
pub fn router(state: AppState) -> Router {
    let bulk_limit = DefaultBodyLimit::max(state.config.http.bulk_body_limit_bytes);
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(oauth::openid_configuration),
        )
        .route("/api/v1/jobs", post(jobs::enqueue).get(jobs::list))
        .route(
            "/api/v1/jobs/batch",
            post(jobs::enqueue_batch).layer(bulk_limit),
        )
        .route(
            "/api/v1/jobs/replay",
            post(jobs::bulk_replay).layer(bulk_limit),
        )
        .route("/api/v1/jobs/{id}", get(jobs::show))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/replay", post(jobs::replay))
        .route(
            "/api/v1/jobs/finish",
            post(workers::finish).layer(bulk_limit),
        )
        .route("/api/v1/jobs/{id}/heartbeat", post(workers::job_heartbeat))
        .route("/api/v1/jobs/{id}/complete", post(workers::complete))
        .route("/api/v1/jobs/{id}/fail", post(workers::fail))
        .route("/api/v1/leases", post(workers::lease))
        .route(
            "/api/v1/agents/{agent_id}/heartbeat",
            post(workers::agent_heartbeat),
        )
        .route("/api/v1/agents", get(workers::agents))
        .route("/api/v1/queues", get(queues::list))
        .route("/api/v1/queues/{name}", get(queues::show))
        .route("/api/v1/queues/{name}/pause", post(queues::pause))
        .route("/api/v1/queues/{name}/resume", post(queues::resume))
        .route("/api/v1/queues/{name}/limits", put(queues::limits))
        .route("/api/v1/queues/{name}/retry", put(queues::retry))
        .route("/api/v1/quota", get(quota::show).put(quota::update))
        .route(
            "/api/v1/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route(
            "/api/v1/schedules/{id}",
            get(schedules::show)
                .patch(schedules::update)
                .delete(schedules::delete),
        )
        .route("/api/v1/schedules/{id}/backfill", post(schedules::backfill))
        .route("/api/v1/schedules/{id}/pause", post(schedules::pause))
        .route("/api/v1/schedules/{id}/resume", post(schedules::resume))
        .route("/api/v1/audit", get(audit::list).fallback(audit::immutable))
        .route(
            "/api/v1/audit/stats",
            get(audit::stats).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/checkpoint",
            get(ledger::checkpoint).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/keys",
            get(ledger::keys).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/proof/inclusion",
            get(ledger::inclusion).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/proof/consistency",
            get(ledger::consistency).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/export",
            get(ledger::export).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/retention",
            get(ledger::retention).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/stream",
            get(ledger::stream).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/{id}",
            get(audit::show).fallback(audit::immutable),
        )
        .route(
            "/api/v1/audit/{id}/{*rest}",
            get(ops::unknown_route).fallback(audit::immutable),
        )
        .route("/audit/operator", get(audit::legacy_list))
        .route("/audit/operator/stats", get(audit::legacy_stats))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::unknown_route)
        .layer(DefaultBodyLimit::max(state.config.http.body_limit_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::middleware,
        ))
        .layer(axum::middleware::from_fn(crate::request_id::middleware))
        .with_state(state)
}
