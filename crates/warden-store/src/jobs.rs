//! Jobs: enqueue (single or batch, idempotency keys, dependencies), listing, the timeline,
//! and the audited operator actions cancel and replay.

use std::collections::{HashMap, HashSet, VecDeque};

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use warden_core::audit::{AuditDraft, EncodedDraft, Target};
use warden_core::events::{QueueChange, QueueEvent, TransitionEvent};
use warden_core::jobs::{
    Job, JobEvent, JobState, NewJob, TimelineEntry, check_batch_dependencies,
    external_dependencies, transition,
};
use warden_core::names::{JobId, JobType, QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;

use crate::sql::{Insert, ROWS_PER_STATEMENT, list_placeholders};
use crate::{Backend, KnownQueues, Rejection, Store, StoreError, StoreResult, audit, outbox, row};

/// Filters of `GET /api/v1/jobs` and of bulk replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<QueueName>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this type.
    pub job_type: Option<JobType>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
}

/// What an enqueue did for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// The job (new, or the existing one for a reused idempotency key).
    pub job: Job,
    /// Whether it was created now.
    pub created: bool,
}

/// What a replay within a bulk chunk did for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// Replayed as `new_id`.
    Replayed {
        /// The old job.
        id: JobId,
        /// The new job.
        new_id: JobId,
    },
    /// Skipped, with the reason code.
    Skipped {
        /// The job.
        id: JobId,
        /// Why.
        code: ReasonCode,
    },
}

/// How many times an enqueue runs before a unique violation is answered `DUPLICATE_JOB_ID`.
const ENQUEUE_ATTEMPTS: u32 = 3;

/// Every column of a job row but its tenant. `first_state` is not part of [`Job`]: it says
/// whether the first timeline entry is kept in the row ([`kept_in_row`], read by
/// [`Store::get_job`]).
pub(crate) const JOB_COLUMNS: &str = "id, queue, job_type, payload, priority, state, attempt, max_attempts, run_at, created_at, updated_at, depends_on, idempotency_key, replay_of, reason_code, last_error, result, first_state";

/// `jobs` with its tenant and [`JOB_COLUMNS`], for an [`Insert`]; [`JOB_TYPES`] in order.
const JOBS_INTO: &str = "jobs (tenant, id, queue, job_type, payload, priority, state, attempt, max_attempts, run_at, created_at, updated_at, depends_on, idempotency_key, replay_of, reason_code, last_error, result, first_state)";
const JOB_TYPES: [&str; 19] = [
    "text", "text", "text", "text", "text", "bigint", "text", "bigint", "bigint", "bigint",
    "bigint", "bigint", "text", "text", "text", "text", "text", "text", "text",
];

pub(crate) fn decode_job(r: &AnyRow) -> StoreResult<Job> {
    const T: &str = "jobs";
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s);
    Ok(Job {
        id: row::parse(T, &row::text(r, "id")?, JobId::parse)?,
        queue: row::parse(T, &row::text(r, "queue")?, QueueName::parse)?,
        job_type: row::parse(T, &row::text(r, "job_type")?, JobType::parse)?,
        payload: row::parse(T, &row::text(r, "payload")?, json)?,
        priority: row::int(r, "priority")? as i32,
        state: row::parse(T, &row::text(r, "state")?, |s| {
            JobState::parse(s).ok_or("unknown state")
        })?,
        attempt: row::int(r, "attempt")? as u32,
        max_attempts: row::int(r, "max_attempts")? as u32,
        run_at: Timestamp::from_micros(row::int(r, "run_at")?),
        created_at: Timestamp::from_micros(row::int(r, "created_at")?),
        updated_at: Timestamp::from_micros(row::int(r, "updated_at")?),
        depends_on: row::parse(T, &row::text(r, "depends_on")?, |s| {
            serde_json::from_str::<Vec<JobId>>(s)
        })?,
        idempotency_key: row::opt_text(r, "idempotency_key")?,
        replay_of: row::opt_text(r, "replay_of")?
            .map(|s| row::parse(T, &s, JobId::parse))
            .transpose()?,
        reason_code: row::opt_text(r, "reason_code")?
            .map(|s| row::parse(T, &s, |s| ReasonCode::parse(s).ok_or("unknown code")))
            .transpose()?,
        last_error: row::opt_text(r, "last_error")?,
        result: row::opt_text(r, "result")?
            .map(|s| row::parse(T, &s, json))
            .transpose()?,
        timeline: None,
    })
}

/// A new job's state: canceled (`UPSTREAM_FAILED`) when a dependency failed, pending
/// while one has not succeeded or its `run_at` is ahead, else available.
fn initial_state(
    job: &NewJob,
    dependencies: &[JobState],
    now: Timestamp,
) -> (JobState, Option<ReasonCode>) {
    let failed = dependencies
        .iter()
        .any(|s| matches!(s, JobState::DeadLetter | JobState::Canceled));
    let waiting = dependencies.iter().any(|s| *s != JobState::Succeeded);
    let future = job.run_at.is_some_and(|t| t > now);
    if failed {
        (JobState::Canceled, Some(ReasonCode::UpstreamFailed))
    } else if waiting || future {
        (JobState::Pending, None)
    } else {
        (JobState::Available, None)
    }
}

/// The row of a new job in `state`, enqueued at `now`.
fn new_job(
    j: &NewJob,
    (state, reason_code): (JobState, Option<ReasonCode>),
    now: Timestamp,
) -> Job {
    Job {
        id: j.id,
        queue: j.queue.clone(),
        job_type: j.job_type.clone(),
        payload: j.payload.clone(),
        priority: j.priority,
        state,
        attempt: 0,
        max_attempts: j.max_attempts,
        run_at: j.run_at.unwrap_or(now),
        created_at: now,
        updated_at: now,
        depends_on: j.depends_on.clone(),
        idempotency_key: j.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
        replay_of: None,
        reason_code,
        last_error: None,
        result: None,
        timeline: None,
    }
}

/// The texts a `jobs` row needs made (id, payload, dependencies, `replay_of`, result),
/// made once per job and bound borrowed by [`jobs_insert`].
type JobTexts = [Option<String>; 5];

fn job_texts(jobs: &[Job]) -> Vec<JobTexts> {
    jobs.iter()
        .map(|j| {
            [
                Some(j.id.to_string()),
                Some(j.payload.to_string()),
                Some(serde_json::to_string(&j.depends_on).expect("ids serialize")),
                j.replay_of.map(|r| r.to_string()),
                j.result.as_ref().map(|r| r.to_string()),
            ]
        })
        .collect()
}

/// The `jobs` rows of `jobs` (at most [`ROWS_PER_STATEMENT`]), with `texts` from
/// [`job_texts`] and each job's first timeline entry from [`first_entries`] (in its
/// `first_state` when [`kept_in_row`]).
fn jobs_insert<'a>(
    tenant: &'a TenantId,
    jobs: &'a [Job],
    texts: &'a [JobTexts],
    firsts: &[(JobId, TimelineEntry)],
) -> Insert<'a> {
    let mut insert = Insert::new(JOBS_INTO, &JOB_TYPES).with_capacity(jobs.len());
    for ((j, [id, payload, deps, replay_of, result]), (_, first)) in
        jobs.iter().zip(texts).zip(firsts)
    {
        insert.row([
            tenant.as_str().into(),
            id.as_deref().into(),
            j.queue.as_str().into(),
            j.job_type.as_str().into(),
            payload.as_deref().into(),
            i64::from(j.priority).into(),
            j.state.as_str().into(),
            i64::from(j.attempt).into(),
            i64::from(j.max_attempts).into(),
            j.run_at.as_micros().into(),
            j.created_at.as_micros().into(),
            j.updated_at.as_micros().into(),
            deps.as_deref().into(),
            j.idempotency_key.as_deref().into(),
            replay_of.as_deref().into(),
            j.reason_code.map(|c| c.as_str()).into(),
            j.last_error.as_deref().into(),
            result.as_deref().into(),
            kept_in_row(first).then(|| first.state.as_str()).into(),
        ]);
    }
    insert
}

/// Whether a new job's first timeline entry is kept in its row (`first_state`, with
/// `created_at` as its time) instead of a `job_events` row: when it names no actor, agent,
/// reason code or error and the attempt is 0 — every plain enqueue. A batch enqueue then
/// writes one row per job, not two (decision 0015).
pub(crate) fn kept_in_row(first: &TimelineEntry) -> bool {
    first.attempt == 0
        && first.agent_id.is_none()
        && first.actor.is_none()
        && first.reason_code.is_none()
        && first.error.is_none()
}

/// Each new job's first timeline entry; `actor` on each.
fn first_entries(jobs: &[Job], actor: Option<&str>) -> Vec<(JobId, TimelineEntry)> {
    jobs.iter()
        .map(|j| {
            (
                j.id,
                TimelineEntry {
                    at: j.created_at,
                    state: j.state,
                    attempt: j.attempt,
                    agent_id: None,
                    actor: actor.map(str::to_owned),
                    reason_code: j.reason_code,
                    error: None,
                },
            )
        })
        .collect()
}

/// Insert jobs (with their dependency edges and first timeline entry) in the caller's
/// transaction. Each chunk of up to [`ROWS_PER_STATEMENT`] jobs goes to the database in one
/// call together with the first entries not [`kept_in_row`] and the outbox row of all of
/// them (see [`insert_events_after`]): a single enqueue is one call between `BEGIN` and
/// `COMMIT`.
async fn insert_jobs(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    jobs: &[Job],
    actor: Option<&str>,
) -> StoreResult<()> {
    for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
        let texts = job_texts(chunk);
        let entries = first_entries(chunk, actor);
        let insert = jobs_insert(tenant, chunk, &texts, &entries);
        let mut counts = DepthDeltas::for_conn(conn);
        for j in chunk {
            counts.add(j.queue.as_str(), j.state, 1);
        }
        let counts = counts.insert(tenant);
        let births = Births(true);
        insert_events_after(
            conn,
            tenant,
            &entries,
            births,
            Some(&insert),
            counts.as_ref(),
        )
        .await?;
    }
    let edges: Vec<(String, String)> = jobs
        .iter()
        .flat_map(|j| {
            j.depends_on
                .iter()
                .map(move |d| (j.id.to_string(), d.to_string()))
        })
        .collect();
    let mut insert = Insert::new(
        "job_deps (tenant, job_id, depends_on)",
        &["text", "text", "text"],
    );
    for (job, dep) in &edges {
        insert.row([tenant.as_str().into(), job.into(), dep.into()]);
    }
    insert.execute(conn).await?;
    Ok(())
}

/// Changes to SQLite's queue-depth counters that its triggers leave to the store, sent in
/// the same call as the statements that make them: new jobs (a row trigger on inserts
/// cost 1.2 µs per job, 8 % of a batch enqueue; decision 0012) and moves into and out of
/// `running` (migration 0021: the row trigger's two upserts per leased or finished job
/// were 7.7 % of the store's path). [`insert_jobs`] is the one path by which jobs enter
/// SQLite's `jobs`; the claim, the finish, the lease-expiry sweep and the cancel are the
/// only statements that move a job into or out of `running`. Always empty on PostgreSQL,
/// whose statement triggers count every change.
#[derive(Debug, Default)]
pub(crate) struct DepthDeltas<'a> {
    sqlite: bool,
    by_queue_state: std::collections::BTreeMap<(&'a str, &'static str), i64>,
}

impl<'a> DepthDeltas<'a> {
    /// Deltas for the backend of `conn` (none are kept on PostgreSQL).
    pub(crate) fn for_conn(conn: &AnyConnection) -> Self {
        Self {
            sqlite: conn.backend_name() == "SQLite",
            by_queue_state: Default::default(),
        }
    }

    /// `n` more jobs in (`queue`, `state`).
    pub(crate) fn add(&mut self, queue: &'a str, state: JobState, n: i64) {
        if self.sqlite {
            *self
                .by_queue_state
                .entry((queue, state.as_str()))
                .or_default() += n;
        }
    }

    /// One job of `queue` moved from `from` to `to`.
    pub(crate) fn moved(&mut self, queue: &'a str, from: JobState, to: JobState) {
        self.add(queue, from, -1);
        self.add(queue, to, 1);
    }

    /// The upsert that applies them; `None` when there is nothing to apply.
    pub(crate) fn insert(&self, tenant: &'a TenantId) -> Option<Insert<'a>> {
        let changed: Vec<_> = self
            .by_queue_state
            .iter()
            .filter(|(_, n)| **n != 0)
            .collect();
        if changed.is_empty() {
            return None;
        }
        let mut insert = Insert::new(
            "jobs_depth (tenant, queue, state, n)",
            &["text", "text", "text", "bigint"],
        )
        .suffix("ON CONFLICT (tenant, queue, state) DO UPDATE SET n = jobs_depth.n + excluded.n")
        .with_capacity(changed.len());
        for ((queue, state), n) in changed {
            insert.row([
                tenant.as_str().into(),
                (*queue).into(),
                (*state).into(),
                (*n).into(),
            ]);
        }
        Some(insert)
    }
}

/// Write timeline entries, and their transition events to the outbox, in statements of
/// up to [`ROWS_PER_STATEMENT`] entries (one outbox row each), with `depth` (the
/// transitions' [`DepthDeltas`]) in the last call.
pub(crate) async fn insert_events(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    events: &[(JobId, TimelineEntry)],
    depth: &DepthDeltas<'_>,
) -> StoreResult<()> {
    let depth = depth.insert(tenant);
    let chunks = events.len().div_ceil(ROWS_PER_STATEMENT);
    for (i, chunk) in events.chunks(ROWS_PER_STATEMENT).enumerate() {
        let after = if i + 1 == chunks {
            depth.as_ref()
        } else {
            None
        };
        insert_events_after(conn, tenant, chunk, Births(false), None, after).await?;
    }
    debug_assert!(
        !events.is_empty() || depth.is_none(),
        "every counted move has its timeline entry"
    );
    Ok(())
}

/// The job ids of timeline entries as text, for [`events_insert`] to borrow.
fn entry_ids(chunk: &[(JobId, TimelineEntry)]) -> Vec<String> {
    chunk.iter().map(|(id, _)| id.to_string()).collect()
}

/// Whether timeline entries are new jobs' first ones, of which those [`kept_in_row`] get
/// no `job_events` row.
#[derive(Debug, Clone, Copy)]
struct Births(bool);

/// The `job_events` rows of up to [`ROWS_PER_STATEMENT`] timeline entries (`ids` from
/// [`entry_ids`]; without the births kept in their job's row), and the outbox payload of
/// the transition events of all of them.
fn events_insert<'a>(
    tenant: &'a TenantId,
    chunk: &'a [(JobId, TimelineEntry)],
    births: Births,
    ids: &'a [String],
) -> (Insert<'a>, String) {
    let mut insert = Insert::new(
        "job_events (tenant, job_id, at, state, attempt, agent_id, actor, reason_code, error)",
        &[
            "text", "text", "bigint", "text", "bigint", "text", "text", "text", "text",
        ],
    )
    .with_capacity(chunk.len());
    for ((_, e), id) in chunk.iter().zip(ids) {
        if births.0 && kept_in_row(e) {
            continue;
        }
        insert.row([
            tenant.as_str().into(),
            id.into(),
            e.at.as_micros().into(),
            e.state.as_str().into(),
            i64::from(e.attempt).into(),
            e.agent_id.as_deref().into(),
            e.actor.as_deref().into(),
            e.reason_code.map(|c| c.as_str()).into(),
            e.error.as_deref().into(),
        ]);
    }
    let published: Vec<TransitionEvent> = chunk
        .iter()
        .map(|(id, e)| TransitionEvent {
            timestamp: e.at,
            job_id: *id,
            state: e.state,
            attempt: e.attempt,
            reason_code: e.reason_code,
        })
        .collect();
    (insert, outbox::payload(&published))
}

/// Write up to [`ROWS_PER_STATEMENT`] timeline entries and their outbox row — after
/// `before` (an insert of at most as many rows) when given, and on SQLite followed by
/// `after` (the upsert of [`DepthDeltas`]) — in one call to the database:
/// on PostgreSQL one statement (the inserts as data-modifying CTEs of the outbox insert),
/// on SQLite the statements in one text (sqlx runs each SQLite call on its worker thread,
/// a hand-off there and back of 25–100 µs here; a multi-statement text binds its
/// anonymous parameters in order across its statements). Every timeline entry is a
/// transition: each goes on the event stream, committed with it.
async fn insert_events_after(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    chunk: &[(JobId, TimelineEntry)],
    births: Births,
    before: Option<&Insert<'_>>,
    after: Option<&Insert<'_>>,
) -> StoreResult<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let ids = entry_ids(chunk);
    let (insert, payload) = events_insert(tenant, chunk, births, &ids);
    let at = chunk[0].1.at.as_micros();
    if conn.backend_name() != "SQLite" {
        debug_assert!(after.is_none(), "`after` is for SQLite's calls only");
        // Parameters: `before`'s (one per column), the entries' (one per column), then
        // the outbox row's two.
        let first = before.map_or(1, |b| b.columns() + 1);
        let mut ctes = Vec::new();
        if let Some(b) = before {
            ctes.push(format!("b AS ({})", b.pg_sql(1)));
        }
        let mut next = first;
        if !insert.is_empty() {
            ctes.push(format!("e AS ({})", insert.pg_sql(first)));
            next += insert.columns();
        }
        let mut sql = String::new();
        if !ctes.is_empty() {
            sql = format!("WITH {} ", ctes.join(", "));
        }
        sql.push_str(&format!(
            "INSERT INTO outbox (created_at, topic, payload) VALUES (${next}, 'job', ${})",
            next + 1
        ));
        let before_arrays = before.map(Insert::pg_arrays).unwrap_or_default();
        let arrays = insert.pg_arrays();
        let mut q = sqlx::query(&sql);
        if let Some(b) = before {
            q = b.bind_pg(q, &before_arrays);
        }
        if !insert.is_empty() {
            q = insert.bind_pg(q, &arrays);
        }
        q.bind(at)
            .bind(payload.as_str())
            .execute(&mut *conn)
            .await?;
    } else {
        let mut sql = String::new();
        if let Some(b) = before {
            sql.push_str(&b.sqlite_sql());
            sql.push_str("; ");
        }
        if !insert.is_empty() {
            sql.push_str(&insert.sqlite_sql());
            sql.push_str("; ");
        }
        sql.push_str(outbox::INSERT_SQLITE);
        if let Some(a) = after {
            sql.push_str("; ");
            sql.push_str(&a.sqlite_sql());
        }
        let mut q = sqlx::query(&sql);
        if let Some(b) = before {
            q = b.bind_sqlite(q);
        }
        if !insert.is_empty() {
            q = insert.bind_sqlite(q);
        }
        let mut q = q.bind(at).bind("job").bind(payload.as_str());
        if let Some(a) = after {
            q = a.bind_sqlite(q);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Create the queues (and their tenant) that do not exist yet. Queues and tenants are
/// never deleted, so a queue seen to exist once is remembered ([`KnownQueues`]) and an
/// enqueue into known queues spends no statement on them.
async fn ensure_queues(
    known: &KnownQueues,
    conn: &mut AnyConnection,
    tenant: &TenantId,
    queues: &[&QueueName],
    now: Timestamp,
) -> StoreResult<()> {
    let mut seen: Vec<&QueueName> = queues.to_vec();
    seen.sort();
    seen.dedup();
    if known.all_known(tenant, &seen) {
        return Ok(());
    }
    // Queues reference their tenant, which need not have a row yet (a tenant comes into
    // being with its first client or its first job, whichever is first).
    sqlx::query(
        "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(now.as_micros())
    .execute(&mut *conn)
    .await?;
    let mut insert = Insert::new(
        "queues (tenant, name, paused, created_at, updated_at)",
        &["text", "text", "boolean", "bigint", "bigint"],
    )
    .suffix("ON CONFLICT (tenant, name) DO NOTHING RETURNING name");
    for name in &seen {
        insert.row([
            tenant.as_str().into(),
            name.as_str().into(),
            false.into(),
            now.as_micros().into(),
            now.as_micros().into(),
        ]);
    }
    let created = insert.fetch_all(conn).await?;
    let created: Vec<QueueName> = created
        .iter()
        .map(|r| row::parse("queues", &row::text(r, "name")?, QueueName::parse))
        .collect::<StoreResult<_>>()?;
    // Those not created here existed before this transaction began: committed, so safe
    // to remember. Those created here are remembered by a later enqueue, once committed.
    known.learn(
        tenant,
        seen.iter().filter(|q| !created.contains(q)).copied(),
    );
    let created: Vec<QueueEvent> = created
        .iter()
        .map(|name| QueueEvent::new(name, QueueChange::Created, now))
        .collect();
    outbox::enqueue_events(conn, "queue", &created, now).await?;
    Ok(())
}

/// Fetch jobs by id in the caller's transaction (or pool), keyed by id.
pub(crate) async fn fetch_by_ids(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    ids: &[JobId],
    lock: &str,
) -> StoreResult<HashMap<JobId, Job>> {
    let mut out = HashMap::with_capacity(ids.len());
    fetch_from(conn, "jobs", tenant, ids, lock, &mut out).await?;
    // Finished jobs moved out of the hot table. Their rows never change, so they need no
    // lock; the hot table is read first, so a job moved meanwhile is found in one or the
    // other (the move deletes and inserts in one transaction).
    let missing: Vec<JobId> = ids
        .iter()
        .filter(|id| !out.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        fetch_from(conn, "jobs_done", tenant, &missing, "", &mut out).await?;
    }
    Ok(out)
}

async fn fetch_from(
    conn: &mut AnyConnection,
    table: &str,
    tenant: &TenantId,
    ids: &[JobId],
    lock: &str,
    out: &mut HashMap<JobId, Job>,
) -> StoreResult<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = crate::sql::select_by_ids(conn, table, JOB_COLUMNS, chunk.len(), lock);
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let job = decode_job(&r)?;
            out.insert(job.id, job);
        }
    }
    Ok(())
}

/// Mark pending dependents of `failed` (transitively) as canceled with `UPSTREAM_FAILED`.
pub(crate) async fn cascade_upstream_failure(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    failed: JobId,
    now: Timestamp,
    lock: &str,
) -> StoreResult<u64> {
    let mut queue = VecDeque::from([failed]);
    let mut canceled = 0;
    while let Some(id) = queue.pop_front() {
        let rows = sqlx::query("SELECT job_id FROM job_deps WHERE tenant = $1 AND depends_on = $2")
            .bind(tenant.as_str())
            .bind(id.to_string())
            .fetch_all(&mut *conn)
            .await?;
        let dependents: Vec<JobId> = rows
            .iter()
            .map(|r| row::parse("job_deps", &row::text(r, "job_id")?, JobId::parse))
            .collect::<StoreResult<_>>()?;
        let jobs = fetch_by_ids(conn, tenant, &dependents, lock).await?;
        for dep in dependents {
            let Some(job) = jobs.get(&dep) else { continue };
            let Ok(t) = transition(
                job.state,
                job.attempt,
                job.max_attempts,
                JobEvent::UpstreamFailed,
            ) else {
                continue;
            };
            sqlx::query("UPDATE jobs SET state = $1, reason_code = $2, updated_at = $3 WHERE tenant = $4 AND id = $5")
                .bind(t.to.as_str())
                .bind(t.reason_code.map(|c| c.as_str()))
                .bind(now.as_micros())
                .bind(tenant.as_str())
                .bind(dep.to_string())
                .execute(&mut *conn)
                .await?;
            let event = TimelineEntry {
                at: now,
                state: t.to,
                attempt: t.attempt,
                agent_id: None,
                actor: None,
                reason_code: t.reason_code,
                error: None,
            };
            // Pending → canceled: the row trigger counts it.
            insert_events(conn, tenant, &[(dep, event)], &DepthDeltas::default()).await?;
            canceled += 1;
            queue.push_back(dep);
        }
    }
    Ok(canceled)
}

/// A fresh job replaying `old`: same queue, type, payload, priority and attempts budget,
/// runnable now, linked by `replay_of`. Dependencies were settled for the old run and are
/// not carried over; the idempotency key stays with the old job.
fn replay_of(old: &Job, now: Timestamp) -> Job {
    Job {
        id: JobId::new(),
        queue: old.queue.clone(),
        job_type: old.job_type.clone(),
        payload: old.payload.clone(),
        priority: old.priority,
        state: JobState::Available,
        attempt: 0,
        max_attempts: old.max_attempts,
        run_at: now,
        created_at: now,
        updated_at: now,
        depends_on: Vec::new(),
        idempotency_key: None,
        replay_of: Some(old.id),
        reason_code: None,
        last_error: None,
        result: None,
        timeline: None,
    }
}

fn with_metadata(mut draft: AuditDraft, pairs: &[(&str, serde_json::Value)]) -> AuditDraft {
    if !draft.metadata.is_object() {
        draft.metadata = serde_json::json!({});
    }
    let map = draft.metadata.as_object_mut().expect("object");
    for (k, v) in pairs {
        map.insert((*k).to_owned(), v.clone());
    }
    draft
}

fn rejected_unknown(id: JobId) -> StoreError {
    StoreError::rejected(
        ReasonCode::UnknownJobId,
        format!("no job {id} in this tenant"),
    )
}

impl Store {
    /// Enqueue jobs atomically: all are created, or none. Reused idempotency keys with the
    /// same queue, type and payload return the existing job; with different ones the whole
    /// request is refused with `IDEMPOTENCY_CONFLICT`.
    pub async fn enqueue(
        &self,
        tenant: &TenantId,
        jobs: Vec<NewJob>,
    ) -> StoreResult<Vec<Enqueued>> {
        self.enqueue_defaulted(tenant, jobs, &[]).await
    }

    /// [`Store::enqueue`], where each job `i` with `defaulted[i]` (its `max_attempts` was
    /// not given) takes its queue's `default_max_attempts` when the queue has one, and
    /// keeps its own otherwise. The default is read in the enqueue's own statement when
    /// that is one statement (PostgreSQL, [`Store::enqueue_in_one_statement`]), else
    /// just before the enqueue.
    pub async fn enqueue_defaulted(
        &self,
        tenant: &TenantId,
        mut jobs: Vec<NewJob>,
        defaulted: &[bool],
    ) -> StoreResult<Vec<Enqueued>> {
        check_batch_dependencies(&jobs)
            .map_err(|e| StoreError::Rejected(Rejection::field(e.field, e.message)))?;
        let mut keys = HashSet::new();
        for (i, j) in jobs.iter().enumerate() {
            let Some(k) = &j.idempotency_key else {
                continue;
            };
            if !keys.insert(k.as_str()) {
                return Err(StoreError::Rejected(Rejection::field(
                    format!("jobs[{i}].idempotency_key"),
                    "used twice in one batch",
                )));
            }
        }
        drop(keys);
        if let Some(out) = self
            .enqueue_in_one_statement(tenant, &jobs, defaulted)
            .await?
        {
            return Ok(out);
        }
        if defaulted.iter().any(|d| *d) {
            self.apply_queue_defaults(tenant, &mut jobs, defaulted)
                .await?;
        }
        // Each key once (checked above).
        let key_list: Vec<&str> = jobs
            .iter()
            .filter_map(|j| j.idempotency_key.as_ref().map(|k| k.as_str()))
            .collect();
        let mut attempt = 1;
        loop {
            match self.enqueue_once(tenant, &jobs, &key_list).await {
                // A concurrent enqueue committed a job with one of our idempotency keys (or
                // ids) after we looked, or PostgreSQL broke a lock cycle: run it again, now
                // seeing the winner's jobs (a reused key then returns the existing job).
                Err(e)
                    if (e.is_unique_violation() || e.is_transient_conflict())
                        && attempt < ENQUEUE_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) if e.is_unique_violation() => {
                    return Err(StoreError::rejected(
                        ReasonCode::DuplicateJobId,
                        "a job id or idempotency key was taken concurrently",
                    ));
                }
                other => return other,
            }
        }
    }

    /// One attempt of [`Store::enqueue`], in one transaction. A unique violation is
    /// returned as is, for the caller to retry.
    async fn enqueue_once(
        &self,
        tenant: &TenantId,
        jobs: &[NewJob],
        key_list: &[&str],
    ) -> StoreResult<Vec<Enqueued>> {
        let mut tx = self.begin_write().await?;
        let out = self
            .enqueue_in_tx(&mut tx, tenant, jobs, key_list, Timestamp::now(), None)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// PostgreSQL, the common enqueue — up to [`ROWS_PER_STATEMENT`] jobs into queues this
    /// store knows exist, with no idempotency key, chosen id or dependency, in a tenant
    /// without a quota — as one statement outside any transaction (a statement is atomic
    /// and commits durably on its own): the jobs, their first timeline entries and their
    /// outbox row, inserted only if the tenant has no quota row, checked in the same
    /// statement. One round trip instead of five (`BEGIN`, the quota read, the insert,
    /// `COMMIT`). `None` when the enqueue is not of that kind or the tenant has a quota
    /// after all: nothing was written, and [`Store::enqueue_in_tx`] does the rest.
    async fn enqueue_in_one_statement(
        &self,
        tenant: &TenantId,
        jobs: &[NewJob],
        defaulted: &[bool],
    ) -> StoreResult<Option<Vec<Enqueued>>> {
        let plain = |j: &NewJob| {
            j.idempotency_key.is_none() && !j.client_chosen_id && j.depends_on.is_empty()
        };
        let queues: Vec<&QueueName> = jobs.iter().map(|j| &j.queue).collect();
        if self.backend() != Backend::Postgres
            || jobs.is_empty()
            || jobs.len() > ROWS_PER_STATEMENT
            || !jobs.iter().all(plain)
            || !self.inner.known_queues.all_known(tenant, &queues)
        {
            return Ok(None);
        }
        let now = Timestamp::now();
        let mut new_jobs: Vec<Job> = jobs
            .iter()
            .map(|j| new_job(j, initial_state(j, &[], now), now))
            .collect();
        let texts = job_texts(&new_jobs);
        let entries = first_entries(&new_jobs, None);
        let rows = jobs_insert(tenant, &new_jobs, &texts, &entries);
        let ids = entry_ids(&entries);
        // Plain jobs' first entries are kept in their rows: `events` is empty unless that
        // rule changes.
        let (events, payload) = events_insert(tenant, &entries, Births(true), &ids);
        // Parameters: the tenant, the jobs' arrays and which take their queue's default,
        // the entries' arrays (if any), the outbox row's two.
        let flags = 2 + rows.columns();
        let first_event = flags + 1;
        let mut at = first_event;
        let mut events_cte = String::new();
        if !events.is_empty() {
            events_cte = format!(
                "e AS ({}), ",
                events.pg_sql_if(first_event, "EXISTS (SELECT 1 FROM j)")
            );
            at += events.columns();
        }
        // Each job's `max_attempts` column, the queue's default where it applies.
        let columns = JOBS_INTO.trim_start_matches("jobs (").trim_end_matches(')');
        let select = columns
            .split(", ")
            .map(|c| match c {
                "max_attempts" => "COALESCE(CASE WHEN x.defaulted THEN (SELECT q.default_max_attempts \
                     FROM queues q WHERE q.tenant = x.tenant AND q.name = x.queue) END, x.max_attempts)"
                    .to_owned(),
                c => format!("x.{c}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        // One job (a single enqueue, the latency path) as a `VALUES` row of scalar
        // parameters, whose plan PostgreSQL reuses; several as one array per column.
        let one = new_jobs.len() == 1;
        let source = if one {
            format!("(VALUES ({}, ${flags}::boolean))", rows.values_args(2))
        } else {
            format!("unnest({}, ${flags}::text::boolean[])", rows.unnest_args(2))
        };
        let sql = format!(
            "WITH j AS (INSERT INTO {JOBS_INTO} SELECT {select} \
               FROM {source} AS x ({columns}, defaulted) \
               WHERE NOT EXISTS (SELECT 1 FROM quotas WHERE tenant = $1) RETURNING id, max_attempts), \
             {events_cte}\
             o AS (INSERT INTO outbox (created_at, topic, payload) SELECT ${at}, 'job', ${} WHERE EXISTS (SELECT 1 FROM j)) \
             SELECT id, max_attempts FROM j",
            at + 1
        );
        let flag = |i: usize| defaulted.get(i).copied().unwrap_or(false);
        let job_arrays = if one {
            Vec::new()
        } else {
            rows.pg_arrays_always()
        };
        let event_arrays = events.pg_arrays_always();
        let q = sqlx::query(&sql).bind(tenant.as_str());
        let q = rows.bind_pg(q, &job_arrays);
        let mut q = if one {
            q.bind(flag(0))
        } else {
            let mut flag_array = String::from("{");
            for i in 0..jobs.len() {
                if i > 0 {
                    flag_array.push(',');
                }
                flag_array.push(if flag(i) { 't' } else { 'f' });
            }
            flag_array.push('}');
            q.bind(flag_array)
        };
        if !events.is_empty() {
            q = events.bind_pg(q, &event_arrays);
        }
        let written = q
            .bind(now.as_micros())
            .bind(payload.as_str())
            .fetch_all(&self.inner.write)
            .await?;
        if written.is_empty() {
            return Ok(None);
        }
        let attempts: HashMap<String, i64> = written
            .iter()
            .map(|r| Ok((row::text(r, "id")?, row::int(r, "max_attempts")?)))
            .collect::<StoreResult<_>>()?;
        for job in &mut new_jobs {
            let n = attempts.get(&job.id.to_string()).ok_or_else(|| {
                StoreError::corrupt("jobs", format!("job {} was not inserted", job.id))
            })?;
            job.max_attempts = *n as u32;
        }
        Ok(Some(
            new_jobs
                .into_iter()
                .map(|job| Enqueued { job, created: true })
                .collect(),
        ))
    }

    /// Jobs marked in `defaulted` take their queue's `default_max_attempts`, when it has
    /// one (read from the read pool, before the enqueue's transaction).
    async fn apply_queue_defaults(
        &self,
        tenant: &TenantId,
        jobs: &mut [NewJob],
        defaulted: &[bool],
    ) -> StoreResult<()> {
        let mut queues: Vec<&str> = jobs
            .iter()
            .zip(defaulted)
            .filter(|(_, d)| **d)
            .map(|(j, _)| j.queue.as_str())
            .collect();
        queues.sort_unstable();
        queues.dedup();
        let policies = self.queue_retry_policies(tenant, &queues).await?;
        for (job, _) in jobs.iter_mut().zip(defaulted).filter(|(_, d)| **d) {
            if let Some(n) = policies
                .get(job.queue.as_str())
                .and_then(|p| p.max_attempts)
            {
                job.max_attempts = n;
            }
        }
        Ok(())
    }

    /// The body of an enqueue, in the caller's transaction (also used by schedules).
    /// `actor` goes on the first timeline entry of each new job.
    pub(crate) async fn enqueue_in_tx(
        &self,
        tx: &mut AnyConnection,
        tenant: &TenantId,
        jobs: &[NewJob],
        key_list: &[&str],
        now: Timestamp,
        actor: Option<&str>,
    ) -> StoreResult<Vec<Enqueued>> {
        // Existing jobs for reused idempotency keys.
        let mut existing_by_key: HashMap<String, Job> = HashMap::new();
        for chunk in key_list.chunks(ROWS_PER_STATEMENT) {
            // Both tables in one statement (one snapshot): a key whose job is being moved
            // is seen on one side or the other, never on neither.
            let keys = list_placeholders(chunk.len(), 2);
            let sql = format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND idempotency_key IN ({keys}) \
                 UNION ALL SELECT {JOB_COLUMNS} FROM jobs_done WHERE tenant = $1 AND idempotency_key IN ({keys})"
            );
            let sql = crate::sql::for_backend(tx, sql);
            let mut q = sqlx::query(&sql).bind(tenant.as_str());
            for k in chunk {
                q = q.bind(*k);
            }
            for r in q.fetch_all(&mut *tx).await? {
                let job = decode_job(&r)?;
                existing_by_key.insert(job.idempotency_key.clone().unwrap_or_default(), job);
            }
        }

        // Client-chosen ids already taken.
        let chosen: Vec<JobId> = jobs
            .iter()
            .filter(|j| j.client_chosen_id)
            .map(|j| j.id)
            .collect();
        let taken = fetch_by_ids(tx, tenant, &chosen, "").await?;

        let mut outcomes: Vec<Option<Enqueued>> = vec![None; jobs.len()];
        let mut fresh: Vec<usize> = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            if let Some(existing) = j
                .idempotency_key
                .as_ref()
                .and_then(|k| existing_by_key.get(k.as_str()))
            {
                let same = existing.queue == j.queue
                    && existing.job_type == j.job_type
                    && existing.payload == j.payload;
                if !same {
                    return Err(StoreError::rejected(
                        ReasonCode::IdempotencyConflict,
                        format!(
                            "idempotency key of jobs[{i}] was used for a different job ({})",
                            existing.id
                        ),
                    ));
                }
                outcomes[i] = Some(Enqueued {
                    job: existing.clone(),
                    created: false,
                });
            } else if taken.contains_key(&j.id) {
                return Err(StoreError::rejected(
                    ReasonCode::DuplicateJobId,
                    format!("job id {} is already used in this tenant", j.id),
                ));
            } else {
                fresh.push(i);
            }
        }

        crate::limits::admit_enqueue(tx, self.dialect(), tenant, fresh.len() as u64, now).await?;

        // Dependencies outside the batch must exist; their states decide the new jobs' states.
        // They are locked (shared) so that a concurrent cancel of one either commits before
        // we read it (we see it failed) or waits for our commit (its cascade sees our edges):
        // otherwise a new job could wait forever on a job canceled meanwhile.
        let external = external_dependencies(jobs);
        let upstream = fetch_by_ids(tx, tenant, &external, self.dialect().for_share()).await?;
        for (i, j) in jobs.iter().enumerate() {
            if let Some(missing) = j
                .depends_on
                .iter()
                .find(|d| external.contains(d) && !upstream.contains_key(d))
            {
                return Err(StoreError::Rejected(Rejection::field(
                    format!("jobs[{i}].depends_on"),
                    format!("unknown job {missing}"),
                )));
            }
        }
        // Resolve states in dependency order (the batch is acyclic).
        let index: HashMap<JobId, usize> =
            jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
        let mut state: Vec<Option<(JobState, Option<ReasonCode>)>> = vec![None; jobs.len()];
        for (i, outcome) in outcomes.iter().enumerate() {
            if let Some(o) = outcome {
                state[i] = Some((o.job.state, o.job.reason_code));
            }
        }
        let mut pending_work: Vec<usize> = (0..jobs.len()).collect();
        while !pending_work.is_empty() {
            let before = pending_work.len();
            pending_work.retain(|&i| {
                if state[i].is_some() {
                    return false;
                }
                let mut dep_states = Vec::new();
                for d in &jobs[i].depends_on {
                    match index.get(d) {
                        Some(&k) => match state[k] {
                            Some((s, _)) => dep_states.push(s),
                            None => return true,
                        },
                        None => dep_states.push(upstream[d].state),
                    }
                }
                state[i] = Some(initial_state(&jobs[i], &dep_states, now));
                false
            });
            if pending_work.len() == before {
                return Err(StoreError::Rejected(Rejection::field(
                    "jobs",
                    "dependencies form a cycle",
                )));
            }
        }

        let new_jobs: Vec<Job> = fresh
            .iter()
            .map(|&i| new_job(&jobs[i], state[i].expect("resolved"), now))
            .collect();
        let queues: Vec<&QueueName> = new_jobs.iter().map(|j| &j.queue).collect();
        ensure_queues(&self.inner.known_queues, tx, tenant, &queues, now).await?;
        insert_jobs(tx, tenant, &new_jobs, actor).await?;
        // The inserted jobs themselves become the outcomes: a copy of every job (and its
        // payload) was the largest allocation a 10,000-job batch made after its own body.
        for (&i, job) in fresh.iter().zip(new_jobs) {
            outcomes[i] = Some(Enqueued { job, created: true });
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every job resolved"))
            .collect())
    }

    /// Rows of `columns` for jobs matching `filter` (and `id < before`), in id order
    /// (`DESC` or `ASC`), at most `limit`.
    ///
    /// Three branches, each cut to `limit` along its own index before the merge: the hot
    /// table's running jobs, through `jobs_lease_expiry` (one row per outstanding lease, a
    /// bounded set, sorted here); the hot table's other jobs, through the list indexes,
    /// which leave running jobs out (migration 0018) and so can only be used when the
    /// statement says `state <> 'running'` in its text; and the finished jobs moved out of
    /// the hot table. A state filter keeps only the branches that can hold that state.
    async fn select_jobs(
        &self,
        columns: &str,
        tenant: &TenantId,
        filter: &JobFilter,
        before: Option<JobId>,
        order: &str,
        limit: u64,
    ) -> StoreResult<Vec<AnyRow>> {
        let (sql, texts, ints) = select_jobs_sql(
            self.backend(),
            columns,
            tenant,
            filter,
            before,
            order,
            limit,
        );
        let mut q = sqlx::query(&sql);
        for t in &texts {
            q = q.bind(t.as_str());
        }
        for i in &ints {
            q = q.bind(*i);
        }
        Ok(q.fetch_all(self.read_pool()).await?)
    }

    /// Jobs newest first (by id, which is time-ordered), after the keyset cursor.
    pub async fn list_jobs(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> StoreResult<(Vec<Job>, bool)> {
        let rows = self
            .select_jobs(
                JOB_COLUMNS,
                tenant,
                filter,
                before,
                "DESC",
                limit as u64 + 1,
            )
            .await?;
        let more = rows.len() > limit as usize;
        let jobs = rows
            .iter()
            .take(limit as usize)
            .map(decode_job)
            .collect::<StoreResult<_>>()?;
        Ok((jobs, more))
    }

    /// One job with its timeline, in the caller's tenant only.
    pub async fn get_job(&self, tenant: &TenantId, id: JobId) -> StoreResult<Option<Job>> {
        // Hot or moved: one statement, so a move in between cannot hide it.
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND id = $2 \
             UNION ALL SELECT {JOB_COLUMNS} FROM jobs_done WHERE tenant = $1 AND id = $2"
        );
        let Some(r) = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(id.to_string())
            .fetch_optional(self.read_pool())
            .await?
        else {
            return Ok(None);
        };
        let mut job = decode_job(&r)?;
        // The first entry, when the row keeps it (see `kept_in_row`).
        let first = row::opt_text(&r, "first_state")?
            .map(|s| {
                row::parse("jobs", &s, |s| JobState::parse(s).ok_or("unknown state")).map(|state| {
                    TimelineEntry {
                        at: job.created_at,
                        state,
                        attempt: 0,
                        agent_id: None,
                        actor: None,
                        reason_code: None,
                        error: None,
                    }
                })
            })
            .transpose()?;
        let rows = sqlx::query("SELECT at, state, attempt, agent_id, actor, reason_code, error FROM job_events WHERE tenant = $1 AND job_id = $2 ORDER BY id")
            .bind(tenant.as_str())
            .bind(id.to_string())
            .fetch_all(self.read_pool())
            .await?;
        let timeline = rows
            .iter()
            .map(|r| {
                Ok(TimelineEntry {
                    at: Timestamp::from_micros(row::int(r, "at")?),
                    state: row::parse("job_events", &row::text(r, "state")?, |s| {
                        JobState::parse(s).ok_or("unknown state")
                    })?,
                    attempt: row::int(r, "attempt")? as u32,
                    agent_id: row::opt_text(r, "agent_id")?,
                    actor: row::opt_text(r, "actor")?,
                    reason_code: row::opt_text(r, "reason_code")?
                        .map(|s| {
                            row::parse("job_events", &s, |s| {
                                ReasonCode::parse(s).ok_or("unknown code")
                            })
                        })
                        .transpose()?,
                    error: row::opt_text(r, "error")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        job.timeline = Some(first.into_iter().chain(timeline).collect());
        Ok(Some(job))
    }

    /// Cancel a job and append its `job.cancel` entry in one transaction. Pending dependents
    /// are canceled with `UPSTREAM_FAILED` in the same transaction.
    pub async fn cancel_job_audited(
        &self,
        tenant: &TenantId,
        id: JobId,
        draft: AuditDraft,
    ) -> StoreResult<Job> {
        let lock = self.dialect().for_update();
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let mut found = fetch_by_ids(&mut tx, tenant, &[id], lock).await?;
        let Some(mut job) = found.remove(&id) else {
            return Err(rejected_unknown(id));
        };
        let t = transition(job.state, job.attempt, job.max_attempts, JobEvent::Cancel).map_err(
            |_| {
                StoreError::rejected(
                    ReasonCode::InvalidStateTransition,
                    format!("job {id} is {} and cannot be canceled", job.state),
                )
            },
        )?;
        let state_before = job.state;
        sqlx::query("UPDATE jobs SET state = $1, updated_at = $2 WHERE tenant = $3 AND id = $4")
            .bind(t.to.as_str())
            .bind(now.as_micros())
            .bind(tenant.as_str())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let actor = draft.actor.display();
        let event = TimelineEntry {
            at: now,
            state: t.to,
            attempt: t.attempt,
            agent_id: None,
            actor: Some(actor),
            reason_code: None,
            error: None,
        };
        let mut depth = DepthDeltas::for_conn(&tx);
        if state_before == JobState::Running {
            depth.moved(job.queue.as_str(), state_before, t.to);
        }
        insert_events(&mut tx, tenant, &[(id, event)], &depth).await?;
        let upstream_canceled = cascade_upstream_failure(&mut tx, tenant, id, now, lock).await?;
        let draft = with_metadata(
            draft,
            &[
                ("state_before", state_before.as_str().into()),
                ("dependents_canceled", upstream_canceled.into()),
            ],
        );
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        job.state = t.to;
        job.updated_at = now;
        Ok(job)
    }

    /// Replay a terminal job as a new one and append its `job.replay` entry in one
    /// transaction. The old job and its history are never rewritten.
    pub async fn replay_job_audited(
        &self,
        tenant: &TenantId,
        id: JobId,
        draft: AuditDraft,
    ) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let mut found = fetch_by_ids(&mut tx, tenant, &[id], "").await?;
        let Some(old) = found.remove(&id) else {
            return Err(rejected_unknown(id));
        };
        if !old.state.is_terminal() {
            return Err(StoreError::rejected(
                ReasonCode::InvalidStateTransition,
                format!(
                    "job {id} is {}; only finished jobs can be replayed",
                    old.state
                ),
            ));
        }
        let new = replay_of(&old, now);
        let actor = draft.actor.display();
        ensure_queues(
            &self.inner.known_queues,
            &mut tx,
            tenant,
            &[&new.queue],
            now,
        )
        .await?;
        insert_jobs(&mut tx, tenant, std::slice::from_ref(&new), Some(&actor)).await?;
        let draft = with_metadata(
            draft,
            &[
                ("new_job_id", new.id.to_string().into()),
                ("state_before", old.state.as_str().into()),
            ],
        );
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// Ids matching `filter` right now, oldest first, at most `limit` (the snapshot a bulk
    /// action works on: jobs that arrive later are never touched).
    pub async fn snapshot_job_ids(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        limit: u32,
    ) -> StoreResult<Vec<JobId>> {
        let rows = self
            .select_jobs("id", tenant, filter, None, "ASC", limit as u64)
            .await?;
        rows.iter()
            .map(|r| row::parse("jobs", &row::text(r, "id")?, JobId::parse))
            .collect()
    }

    /// Read the jobs a bulk replay chunk names, outside any write transaction, so the
    /// reads of the next chunk overlap the writes of this one. Safe because a terminal
    /// job never changes (replay links a new job; the move to `jobs_done` copies it
    /// unchanged); [`Store::replay_chunk_audited`] reads again, in its transaction, every
    /// job this found missing or not yet terminal.
    pub async fn prepare_replay(
        &self,
        tenant: &TenantId,
        ids: &[JobId],
    ) -> StoreResult<ReplayChunk> {
        let mut conn = self.read_pool().acquire().await?;
        let found = fetch_by_ids(&mut conn, tenant, ids, "").await?;
        Ok(ReplayChunk {
            ids: ids.to_vec(),
            found,
        })
    }

    /// Replay a chunk of a bulk action in one transaction: each replayed job gets its own
    /// entry (built from `template`, with `metadata.bulk_id`), committed with the new job.
    pub async fn replay_chunk_audited(
        &self,
        tenant: &TenantId,
        chunk: ReplayChunk,
        template: &AuditDraft,
        bulk_id: &str,
    ) -> StoreResult<Vec<ReplayOutcome>> {
        let ReplayChunk { ids, mut found } = chunk;
        let now = Timestamp::now();
        let recheck: Vec<JobId> = ids
            .iter()
            .filter(|id| found.get(id).is_none_or(|j| !j.state.is_terminal()))
            .copied()
            .collect();
        // When the read-ahead settled every job (the usual case), the new jobs and their
        // entries are built and encoded before the writer is taken: on SQLite the one
        // write connection is then held only for the statements, not for this work.
        let planned = if recheck.is_empty() {
            Some(plan_replays(&ids, &found, now, template, bulk_id)?)
        } else {
            None
        };
        let mut tx = self.begin_write().await?;
        let plan = match planned {
            Some(plan) => plan,
            None => {
                found.extend(fetch_by_ids(&mut tx, tenant, &recheck, "").await?);
                plan_replays(&ids, &found, now, template, bulk_id)?
            }
        };
        // The new jobs go in before the log lock is taken, so on PostgreSQL the next chunk
        // inserts its jobs while this one appends its entries (the entries are stamped
        // after the lock, so `created_at` still never goes backwards as `seq` grows).
        let queues: Vec<&QueueName> = plan.new_jobs.iter().map(|j| &j.queue).collect();
        ensure_queues(&self.inner.known_queues, &mut tx, tenant, &queues, now).await?;
        insert_jobs(
            &mut tx,
            tenant,
            &plan.new_jobs,
            Some(&template.actor.display()),
        )
        .await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        audit::append_encoded_in_tx(&mut tx, plan.entries, log).await?;
        tx.commit().await?;
        Ok(plan.outcomes)
    }
}

/// The statement of [`Store::select_jobs`] with its text and integer parameters, in
/// that order.
fn select_jobs_sql(
    backend: Backend,
    columns: &str,
    tenant: &TenantId,
    filter: &JobFilter,
    before: Option<JobId>,
    order: &str,
    limit: u64,
) -> (String, Vec<String>, Vec<i64>) {
    let mut clause = String::from("tenant = $1");
    let mut texts: Vec<String> = vec![tenant.as_str().to_owned()];
    let mut eq = |col: &str, v: String| {
        texts.push(v);
        clause.push_str(&format!(" AND {col} = ${}", texts.len()));
    };
    if let Some(q) = &filter.queue {
        eq("queue", q.as_str().to_owned());
    }
    // `running` is spelled out in the running branch's text (a partial index is only
    // used for a literal), so it is not bound.
    if let Some(s) = filter.state.filter(|s| *s != JobState::Running) {
        eq("state", s.as_str().to_owned());
    }
    if let Some(t) = &filter.job_type {
        eq("job_type", t.as_str().to_owned());
    }
    if let Some(b) = before {
        texts.push(b.to_string());
        clause.push_str(&format!(" AND id < ${}", texts.len()));
    }
    let mut ints: Vec<i64> = Vec::new();
    for (op, bound) in [(">=", filter.since), ("<", filter.until)] {
        if let Some(t) = bound {
            ints.push(t.as_micros());
            clause.push_str(&format!(
                " AND created_at {op} ${}",
                texts.len() + ints.len()
            ));
        }
    }
    // SQLite is told which index serves the running branch: without statistics it
    // would rather walk the primary key in id order, past every queued job.
    let lease_index = match backend {
        Backend::Sqlite => " INDEXED BY jobs_lease_expiry",
        Backend::Postgres => "",
    };
    let branch = |table: &str, extra: &str| {
        format!(
            "SELECT * FROM (SELECT {columns} FROM {table} WHERE {clause}{extra} ORDER BY id {order} LIMIT {limit}) AS b"
        )
    };
    let running = branch(&format!("jobs{lease_index}"), " AND state = 'running'");
    // A queue without a state: one arm per state, each along the queue-and-state index in
    // id order. Walking the tenant's jobs in id order instead, filtering by queue, reads
    // every job of the other queues first: 300 ms on SQLite for a small queue beside a
    // backlog of 1,000,000 (docs/bench/engine.md, eighth session).
    let per_state = filter.queue.is_some() && filter.state.is_none();
    let arms = |table: &str, states: &mut dyn Iterator<Item = JobState>, extra: &str| {
        if per_state {
            states
                .map(|s| branch(table, &format!("{extra} AND state = '{}'", s.as_str())))
                .collect()
        } else {
            vec![branch(table, extra)]
        }
    };
    let others = arms(
        "jobs",
        &mut JobState::ALL
            .into_iter()
            .filter(|s| *s != JobState::Running),
        " AND state <> 'running'",
    );
    let done = arms(
        "jobs_done",
        &mut JobState::ALL.into_iter().filter(|s| s.is_terminal()),
        "",
    );
    let branches: Vec<String> = match filter.state {
        Some(JobState::Running) => vec![running],
        Some(_) => [others, done].concat(),
        None => [vec![running], others, done].concat(),
    };
    let sql = format!(
        "{} ORDER BY id {order} LIMIT {limit}",
        branches.join(" UNION ALL ")
    );
    (sql, texts, ints)
}

/// What a bulk replay chunk will write: per id its outcome, and for each replayed job the
/// new job and its entry, encoded.
struct ReplayPlan {
    outcomes: Vec<ReplayOutcome>,
    new_jobs: Vec<Job>,
    entries: Vec<EncodedDraft>,
}

/// Plan the replays of `ids` from the jobs `found` for them (a job not found, or not
/// finished, is skipped with its reason code).
fn plan_replays(
    ids: &[JobId],
    found: &HashMap<JobId, Job>,
    now: Timestamp,
    template: &AuditDraft,
    bulk_id: &str,
) -> StoreResult<ReplayPlan> {
    let mut drafts = Vec::with_capacity(ids.len());
    let mut plan = ReplayPlan {
        outcomes: Vec::with_capacity(ids.len()),
        new_jobs: Vec::with_capacity(ids.len()),
        entries: Vec::new(),
    };
    for &id in ids {
        match found.get(&id) {
            None => plan.outcomes.push(ReplayOutcome::Skipped {
                id,
                code: ReasonCode::UnknownJobId,
            }),
            Some(old) if !old.state.is_terminal() => plan.outcomes.push(ReplayOutcome::Skipped {
                id,
                code: ReasonCode::InvalidStateTransition,
            }),
            Some(old) => {
                let new = replay_of(old, now);
                let mut draft = template.clone();
                draft.target = Some(Target::new("job", id.to_string()));
                drafts.push(with_metadata(
                    draft,
                    &[
                        ("bulk_id", bulk_id.into()),
                        ("new_job_id", new.id.to_string().into()),
                        ("state_before", old.state.as_str().into()),
                    ],
                ));
                plan.outcomes
                    .push(ReplayOutcome::Replayed { id, new_id: new.id });
                plan.new_jobs.push(new);
            }
        }
    }
    plan.entries = audit::encode(drafts)?;
    Ok(plan)
}

/// The jobs of one bulk replay chunk, read ahead by [`Store::prepare_replay`].
#[derive(Debug)]
pub struct ReplayChunk {
    ids: Vec<JobId>,
    found: HashMap<JobId, Job>,
}

#[cfg(test)]
mod tests {
    use super::{JobFilter, select_jobs_sql};
    use crate::Backend;
    use crate::testing::TestDb;
    use warden_core::jobs::JobState;
    use warden_core::names::{JobType, QueueName, TenantId};

    /// SQLite's plan for listing with `filter`: one line per step.
    async fn list_plan(store: &crate::Store, filter: JobFilter) -> Vec<String> {
        let tenant = TenantId::parse("acme").unwrap();
        let (sql, texts, ints) =
            select_jobs_sql(Backend::Sqlite, "id", &tenant, &filter, None, "DESC", 101);
        let sql = format!("EXPLAIN QUERY PLAN {sql}");
        let mut explain = sqlx::query(&sql);
        for t in texts {
            explain = explain.bind(t);
        }
        for i in ints {
            explain = explain.bind(i);
        }
        explain
            .fetch_all(store.read_pool())
            .await
            .unwrap()
            .iter()
            .map(|r| crate::row::text(r, "detail").unwrap())
            .collect()
    }

    #[tokio::test]
    async fn every_listing_branch_on_sqlite_walks_an_index_not_the_hot_table() {
        let db = TestDb::sqlite();
        let store = db.open().await;
        let state = |s| JobFilter {
            state: Some(s),
            ..Default::default()
        };
        let queue = Some(QueueName::parse("q").unwrap());
        let (pk, done_pk) = ("sqlite_autoindex_jobs_1", "sqlite_autoindex_jobs_done_1");
        let cases = [
            (JobFilter::default(), vec!["jobs_lease_expiry", pk, done_pk]),
            (state(JobState::Running), vec!["jobs_lease_expiry"]),
            (
                state(JobState::Available),
                vec!["jobs_by_state", "jobs_done_by_state"],
            ),
            (
                JobFilter {
                    queue: queue.clone(),
                    state: Some(JobState::Available),
                    ..Default::default()
                },
                vec!["jobs_by_queue_state", "jobs_done_by_queue_state"],
            ),
            // A queue alone: one arm per state along the queue-and-state indexes.
            (
                JobFilter {
                    queue,
                    ..Default::default()
                },
                vec![
                    "jobs_lease_expiry",
                    "jobs_by_queue_state",
                    "jobs_done_by_queue_state",
                ],
            ),
            (
                JobFilter {
                    job_type: Some(JobType::parse("t").unwrap()),
                    ..Default::default()
                },
                vec!["jobs_lease_expiry", "jobs_by_type", "jobs_done_by_type"],
            ),
        ];
        for (filter, indexes) in cases {
            let plan = list_plan(&store, filter.clone()).await;
            if filter.queue.is_some() && filter.state.is_none() {
                assert!(
                    !plan.iter().any(|d| d.contains(pk) || d.contains(done_pk)),
                    "a queue's listing must not walk the tenant's jobs: {plan:#?}"
                );
            }
            for index in indexes {
                assert!(
                    plan.iter().any(|d| d.contains(&format!("INDEX {index} "))
                        || d.ends_with(&format!("INDEX {index}"))),
                    "{filter:?} must use {index}: {plan:#?}"
                );
            }
            assert!(
                !plan
                    .iter()
                    .any(|d| d.starts_with("SCAN jobs") && !d.contains(" INDEX ")),
                "{filter:?} must not scan a table: {plan:#?}"
            );
        }
    }

    #[test]
    fn the_insert_columns_are_the_selected_columns_with_the_tenant() {
        assert_eq!(
            super::JOBS_INTO,
            format!("jobs (tenant, {})", super::JOB_COLUMNS),
            "JOBS_INTO repeats JOB_COLUMNS (const strings cannot be concatenated)"
        );
        assert_eq!(
            super::JOB_TYPES.len(),
            super::JOBS_INTO.matches(',').count() + 1,
            "one PostgreSQL type per column"
        );
    }
}
