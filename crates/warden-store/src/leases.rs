//! The worker protocol's storage: claiming jobs under a lease, extending and finishing
//! leases, the agent registry, and the periodic recovery of expired leases and promotion
//! of jobs that came due. A lease is held iff the job is `running` with that `lease_id`;
//! every worker call checks both in the statement that changes the row.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::AnyConnection;
use warden_core::jobs::{JobEvent, JobState, TimelineEntry, transition};
use warden_core::names::{AgentId, JobId, JobType, QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;

use sqlx::any::AnyRow;
use warden_core::limits::QueueLimits;

use crate::jobs::{DepthDeltas, cascade_upstream_failure, insert_events};
use crate::limits::{count_in_states, quota_row};
use crate::queues::decode_limits;
use crate::sql::{ROWS_PER_STATEMENT, list_placeholders};
use crate::{Backend, Store, StoreError, StoreResult, row};

/// Rows a periodic pass handles per transaction.
const SWEEP_BATCH: i64 = 1_000;

impl LeaseRequest {
    /// The named queues and types as text, as an agent's row records them.
    fn names(&self) -> (Vec<String>, Vec<String>) {
        let queues = self.queues.iter().map(|q| q.as_str().to_owned()).collect();
        let types = self
            .types
            .iter()
            .flatten()
            .map(|t| t.as_str().to_owned())
            .collect();
        (queues, types)
    }
}

/// The jobs a claim took (its rows, in claim order), checked against the state machine:
/// each row as the claim left it, its attempt already counting this lease.
fn leased_jobs(rows: &[AnyRow], stamp: &Stamp<'_>) -> StoreResult<Vec<LeasedJob>> {
    let mut leased = Vec::with_capacity(rows.len());
    for r in rows {
        let attempt = row::int(r, "attempt")? as u32;
        let max_attempts = row::int(r, "max_attempts")? as u32;
        let t = transition(
            JobState::Available,
            attempt.saturating_sub(1),
            max_attempts,
            JobEvent::Lease,
        )
        .expect("available jobs can be leased");
        if t.attempt != attempt {
            return Err(StoreError::Corrupt {
                table: "jobs",
                message: format!(
                    "a lease counted attempt {attempt}, the state machine {}",
                    t.attempt
                ),
            });
        }
        leased.push(LeasedJob {
            id: row::parse("jobs", &row::text(r, "id")?, JobId::parse)?,
            lease_id: stamp.lease_id.to_owned(),
            queue: row::parse("jobs", &row::text(r, "queue")?, QueueName::parse)?,
            job_type: row::parse("jobs", &row::text(r, "job_type")?, JobType::parse)?,
            payload: row::parse("jobs", &row::text(r, "payload")?, |s| {
                serde_json::from_str(s)
            })?,
            attempt,
            lease_expires_at: stamp.expires,
            due_at: Timestamp::from_micros(row::int(r, "run_at")?),
        });
    }
    Ok(leased)
}

/// Whether queue `$7` of tenant `$6` exists, is not paused, has neither a rate nor a
/// concurrency limit, and the tenant caps no running jobs: a lease of that queue alone
/// needs no settings read first.
const UNLIMITED: &str = "(EXISTS (SELECT 1 FROM queues WHERE tenant = $6 AND name = $7 AND NOT paused \
       AND rate_per_sec IS NULL AND max_concurrency IS NULL) \
     AND NOT EXISTS (SELECT 1 FROM quotas WHERE tenant = $6 AND max_running IS NOT NULL))";

/// What one claim took, in claim order, and (for a claim that checked) whether its queue
/// was unlimited, so that nothing more needs a look.
#[derive(Default)]
struct Claimed {
    rows: Vec<AnyRow>,
    unlimited: bool,
}

/// A queue taking part in one lease.
struct Lane {
    name: QueueName,
    limits: QueueLimits,
    /// Whether its row must be locked (it has a rate or a concurrency limit).
    limited: bool,
    /// Its GCRA state.
    tat: Option<i64>,
    /// Jobs its `max_concurrency` still admits.
    room: u64,
    /// It has nothing more to give in this lease.
    done: bool,
}

/// What a lease writes on every job it claims.
struct Stamp<'a> {
    lease_id: &'a str,
    agent: &'a AgentId,
    lease_secs: u32,
    expires: Timestamp,
    now: Timestamp,
}

/// What a worker asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The worker.
    pub agent_id: AgentId,
    /// Queues to claim from.
    pub queues: Vec<QueueName>,
    /// Only these types, when given.
    pub types: Option<Vec<JobType>>,
    /// At most this many jobs.
    pub max_jobs: u32,
    /// Lease duration; heartbeats extend by the same.
    pub lease_secs: u32,
}

/// A job handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeasedJob {
    /// The job.
    pub id: JobId,
    /// The lease the worker must present to heartbeat or finish.
    pub lease_id: String,
    /// Its queue.
    pub queue: QueueName,
    /// Its type.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// Its payload.
    pub payload: serde_json::Value,
    /// This attempt's number (1 for the first lease).
    pub attempt: u32,
    /// When the lease runs out unless extended.
    pub lease_expires_at: Timestamp,
    /// When the job became due (its `run_at`): the lease's start minus this is the job's
    /// wait. Not part of the wire format.
    #[serde(skip)]
    pub due_at: Timestamp,
}

/// What finishing one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its queue.
    pub queue: QueueName,
    /// Its type.
    pub job_type: JobType,
    /// Its state now: `succeeded`, `retrying` or `dead_letter`.
    pub state: JobState,
    /// How long the attempt ran (from its lease to now), when known.
    pub ran_micros: Option<i64>,
    /// Whether settling it may have let other jobs be leased: it has dependents (which a
    /// success releases), its queue caps concurrent jobs, or its tenant caps running
    /// jobs (either cap now has room). Waiting long-polls need waking only then: a
    /// finish of any other job makes nothing leasable.
    pub frees: bool,
}

/// How a worker finished a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// Success, with an optional result.
    Complete {
        /// The worker's result.
        result: Option<serde_json::Value>,
    },
    /// Failure; retried while attempts remain if `retryable`.
    Fail {
        /// What went wrong.
        error: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

/// One item of a finish batch.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishItem {
    /// The job.
    pub id: JobId,
    /// The lease presented.
    pub lease_id: String,
    /// The outcome.
    pub finish: Finish,
}

impl FinishItem {
    /// `job` completed under the lease it was handed, with no result.
    pub fn completed(job: &LeasedJob) -> Self {
        FinishItem {
            id: job.id,
            lease_id: job.lease_id.clone(),
            finish: Finish::Complete { result: None },
        }
    }
}

/// An agent as the registry shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    /// The worker's id.
    pub agent_id: String,
    /// Queues it serves.
    pub queues: Vec<String>,
    /// Types it handles (empty: any).
    pub types: Vec<String>,
    /// Its version string.
    pub version: Option<String>,
    /// First heartbeat or lease.
    pub first_seen_at: Timestamp,
    /// Last heartbeat or lease.
    pub last_heartbeat_at: Timestamp,
    /// Whether the last heartbeat is recent (30 s).
    pub online: bool,
}

/// Agents count as online this long after their last heartbeat.
pub const AGENT_ONLINE_MICROS: i64 = 30_000_000;

fn random_u64() -> u64 {
    // UUIDv7 carries 74 random bits; the low 64 of them are enough for jitter.
    uuid::Uuid::now_v7().as_u128() as u64
}

async fn touch_agent(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    agent: &AgentId,
    queues: &[String],
    types: &[String],
    version: Option<&str>,
    now: Timestamp,
) -> StoreResult<()> {
    let queues = serde_json::to_string(queues).expect("strings serialize");
    let types = serde_json::to_string(types).expect("strings serialize");
    sqlx::query(
        // A worker polling again within a few seconds with the same queues changes nothing:
        // no row write, so an empty long-poll round commits nothing (no fsync on SQLite).
        "INSERT INTO agents (tenant, agent_id, queues, types, version, first_seen_at, last_heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (tenant, agent_id) DO UPDATE SET queues = $3, types = $4, version = COALESCE($5, agents.version), last_heartbeat_at = $6 \
         WHERE agents.last_heartbeat_at < $7 OR agents.queues <> $3 OR agents.types <> $4 OR $5 IS NOT NULL",
    )
    .bind(tenant.as_str())
    .bind(agent.as_str())
    .bind(queues)
    .bind(types)
    .bind(version)
    .bind(now.as_micros())
    .bind(now.as_micros() - AGENT_TOUCH_MICROS)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How stale an agent's `last_heartbeat_at` may get before a lease refreshes it (well
/// inside the 30 s after which the registry shows it offline).
const AGENT_TOUCH_MICROS: i64 = 5_000_000;

/// When this node last had a lease refresh each agent's row, with the queues and types it
/// wrote: a lease within [`AGENT_TOUCH_MICROS`] of that, naming the same, skips the
/// statement (which would change nothing) instead of sending it to the database. Another
/// node's cache does not know of this one's touches, so it may send a statement that
/// changes nothing, as before. Bounded: past [`AgentTouches::MAX`] agents it starts
/// afresh.
#[derive(Debug, Default)]
pub(crate) struct AgentTouches(std::sync::Mutex<HashMap<(TenantId, AgentId), Touch>>);

/// The queues and types a lease wrote to an agent's row, and when (micros).
type Touch = (Vec<String>, Vec<String>, i64);

impl AgentTouches {
    const MAX: usize = 100_000;

    /// Whether a lease must touch the agent's row now; if so and `note`, it is noted as
    /// touched (a lease about to touch it), else nothing is noted (a look ahead).
    fn due(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        queues: &[String],
        types: &[String],
        now: Timestamp,
        note: bool,
    ) -> bool {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (tenant.clone(), agent.clone());
        if !Self::stale(&map, &key, queues, types, now) {
            return false;
        }
        if note {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(key, (queues.to_vec(), types.to_vec(), now.as_micros()));
        }
        true
    }

    /// Whether `key`'s last touch is missing, older than [`AGENT_TOUCH_MICROS`], or wrote
    /// other queues or types.
    fn stale(
        map: &HashMap<(TenantId, AgentId), Touch>,
        key: &(TenantId, AgentId),
        queues: &[String],
        types: &[String],
        now: Timestamp,
    ) -> bool {
        !matches!(map.get(key), Some((q, t, at))
            if q == queues && t == types && now.as_micros() - at < AGENT_TOUCH_MICROS)
    }
}

/// One finished attempt's new row values: the row's locator (`crate::sql::locator`),
/// state, `run_at`, result, error.
type FinishedRow = (String, JobState, Timestamp, Option<String>, Option<String>);

/// Write finished attempts in a few statements (one per 200 jobs), not one per job, to
/// rows this transaction holds locked.
async fn update_finished(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    rows: &[FinishedRow],
    now: Timestamp,
) -> StoreResult<()> {
    for chunk in rows.chunks(200) {
        // Parameters in text order (the row values first), so SQLite gets anonymous ones.
        let values = (0..chunk.len())
            .map(|i| {
                let n = i * 5;
                format!(
                    "(CAST(${} AS TEXT), CAST(${} AS TEXT), CAST(${} AS BIGINT), CAST(${} AS TEXT), CAST(${} AS TEXT))",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let next = chunk.len() * 5 + 1;
        let sql = format!(
            "WITH v (loc, state, run_at, result, error) AS (VALUES {values}) \
             UPDATE jobs SET state = v.state, run_at = v.run_at, \
               result = COALESCE(v.result, jobs.result), last_error = COALESCE(v.error, jobs.last_error), \
               lease_id = NULL, lease_agent = NULL, lease_expires_at = NULL, updated_at = ${next} \
             FROM v WHERE {}",
            crate::sql::locator_eq(conn, "jobs", next + 1)
        );
        let sql = crate::sql::for_backend(conn, sql);
        let mut q = sqlx::query(&sql);
        for (loc, state, run_at, result, error) in chunk {
            q = q
                .bind(loc.as_str())
                .bind(state.as_str())
                .bind(run_at.as_micros())
                .bind(result.clone())
                .bind(error.clone());
        }
        let updated = q
            .bind(now.as_micros())
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated != chunk.len() as u64 {
            return Err(StoreError::Corrupt {
                table: "jobs",
                message: format!("a finish updated {updated} of {} locked rows", chunk.len()),
            });
        }
    }
    Ok(())
}

/// What a finish needs of a job it settles, read and locked in one statement per chunk.
struct Settling {
    loc: String,
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    queue: QueueName,
    job_type: JobType,
    run_at: Timestamp,
    lease_id: Option<String>,
    leased_at: Option<i64>,
}

/// The hot-table rows of `ids` a finish settles, locked; ids not there are left out (a
/// job moved to `jobs_done` has finished, so no lease on it is held).
async fn settling_rows(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    ids: &[JobId],
    lock: &str,
) -> StoreResult<HashMap<JobId, Settling>> {
    let cols = format!(
        "id, state, attempt, max_attempts, queue, job_type, run_at, lease_id, leased_at, {} AS loc",
        crate::sql::locator(conn)
    );
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = crate::sql::select_by_ids(conn, "jobs", &cols, chunk.len(), lock);
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(
                row::parse("jobs", &row::text(&r, "id")?, JobId::parse)?,
                Settling {
                    loc: row::text(&r, "loc")?,
                    state: row::parse("jobs", &row::text(&r, "state")?, |s| {
                        JobState::parse(s).ok_or("unknown state")
                    })?,
                    attempt: row::int(&r, "attempt")? as u32,
                    max_attempts: row::int(&r, "max_attempts")? as u32,
                    queue: row::parse("jobs", &row::text(&r, "queue")?, QueueName::parse)?,
                    job_type: row::parse("jobs", &row::text(&r, "job_type")?, JobType::parse)?,
                    run_at: Timestamp::from_micros(row::int(&r, "run_at")?),
                    lease_id: row::opt_text(&r, "lease_id")?,
                    leased_at: row::opt_int(&r, "leased_at")?,
                },
            );
        }
    }
    Ok(out)
}

/// Those of `ids` that exist in `jobs_done` (for telling `LEASE_NOT_HELD` from
/// `UNKNOWN_JOB_ID`).
async fn finished_ids(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    ids: &[JobId],
) -> StoreResult<std::collections::HashSet<JobId>> {
    let mut out = std::collections::HashSet::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let sql = crate::sql::select_by_ids(conn, "jobs_done", "id", chunk.len(), "");
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(row::parse(
                "jobs_done",
                &row::text(&r, "id")?,
                JobId::parse,
            )?);
        }
    }
    Ok(out)
}

/// What settling some finished jobs may free for other jobs ([`Finished::frees`]).
#[derive(Debug, Default)]
struct Frees {
    /// Those of the succeeded jobs that some job depends on (in their order).
    with_dependents: Vec<JobId>,
    /// Those of the finished jobs' queues that cap concurrent jobs.
    capped_queues: std::collections::HashSet<String>,
    /// Whether the tenant caps its running jobs.
    tenant_capped: bool,
}

/// [`Frees`] of a finish: in one statement (per [`ROWS_PER_STATEMENT`] succeeded jobs), the
/// succeeded jobs some job depends on (most have none: one indexed query instead of a
/// promotion attempt per job), and whether the finished jobs' queues or their tenant cap
/// running jobs.
async fn frees(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    succeeded: &[JobId],
    queues: &[&str],
) -> StoreResult<Frees> {
    let mut out = Frees::default();
    let mut chunks: Vec<&[JobId]> = succeeded.chunks(ROWS_PER_STATEMENT).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut arms = Vec::new();
        let mut next = 2;
        if !chunk.is_empty() {
            arms.push(format!(
                "SELECT DISTINCT depends_on AS v, CAST(1 AS BIGINT) AS kind FROM job_deps WHERE tenant = $1 AND depends_on IN ({})",
                list_placeholders(chunk.len(), next)
            ));
            next += chunk.len();
        }
        // The caps, with the first chunk only.
        if i == 0 {
            if !queues.is_empty() {
                arms.push(format!(
                    "SELECT name AS v, CAST(2 AS BIGINT) AS kind FROM queues WHERE tenant = $1 AND max_concurrency IS NOT NULL AND name IN ({})",
                    list_placeholders(queues.len(), next)
                ));
            }
            arms.push(
                "SELECT '' AS v, CAST(3 AS BIGINT) AS kind FROM quotas WHERE tenant = $1 AND max_running IS NOT NULL"
                    .to_owned(),
            );
        }
        let sql = crate::sql::for_backend(conn, arms.join(" UNION ALL "));
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for id in chunk {
            q = q.bind(id.to_string());
        }
        if i == 0 {
            for name in queues {
                q = q.bind(*name);
            }
        }
        for r in q.fetch_all(&mut *conn).await? {
            let v = row::text(&r, "v")?;
            match row::int(&r, "kind")? {
                1 => out
                    .with_dependents
                    .push(row::parse("job_deps", &v, JobId::parse)?),
                2 => {
                    out.capped_queues.insert(v);
                }
                _ => out.tenant_capped = true,
            }
        }
    }
    Ok(out)
}

/// For a job `j` of the outer query: its dependencies that have not succeeded. Written
/// as a lookup per edge (by the job's own edges, then each upstream by primary key):
/// joined the other way round, SQLite without statistics walked every job of the tenant
/// for each pending job. An upstream moved out of the hot table has finished; if it had
/// failed, its dependents were canceled when it failed.
const UNFINISHED_UPSTREAM: &str = "SELECT 1 FROM job_deps d WHERE d.tenant = j.tenant AND d.job_id = j.id \
     AND EXISTS (SELECT 1 FROM jobs u WHERE u.tenant = d.tenant AND u.id = d.depends_on AND u.state <> 'succeeded')";

/// Make pending dependents of `succeeded` available once all their dependencies succeeded
/// and their `run_at` has come.
async fn promote_dependents(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    succeeded: JobId,
    now: Timestamp,
) -> StoreResult<()> {
    let rows = sqlx::query(&format!(
        // CROSS JOIN: SQLite keeps the edges of `succeeded` as the outer loop (left to
        // itself it walked every pending job of the tenant); PostgreSQL plans it freely.
        "SELECT j.id, j.attempt FROM job_deps d CROSS JOIN jobs j \
         WHERE j.tenant = d.tenant AND j.id = d.job_id \
         AND d.tenant = $1 AND d.depends_on = $2 AND j.state = 'pending' AND j.run_at <= $3 \
         AND NOT EXISTS ({UNFINISHED_UPSTREAM})",
    ))
    .bind(tenant.as_str())
    .bind(succeeded.to_string())
    .bind(now.as_micros())
    .fetch_all(&mut *conn)
    .await?;
    let mut events = Vec::new();
    for r in &rows {
        let id = row::parse("jobs", &row::text(r, "id")?, JobId::parse)?;
        sqlx::query("UPDATE jobs SET state = 'available', updated_at = $1 WHERE tenant = $2 AND id = $3 AND state = 'pending'")
            .bind(now.as_micros())
            .bind(tenant.as_str())
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
        let attempt = row::int(r, "attempt")? as u32;
        events.push((
            id,
            TimelineEntry {
                at: now,
                state: JobState::Available,
                attempt,
                agent_id: None,
                actor: None,
                reason_code: None,
                error: None,
            },
        ));
    }
    // Pending → available: the row trigger counts it.
    insert_events(conn, tenant, &events, &DepthDeltas::default()).await
}

impl Store {
    /// Register or refresh an agent.
    pub async fn heartbeat_agent(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        queues: &[String],
        types: &[String],
        version: Option<&str>,
    ) -> StoreResult<AgentView> {
        let mut tx = self.begin_write().await?;
        let now = Timestamp::now();
        touch_agent(&mut tx, tenant, agent, queues, types, version, now).await?;
        tx.commit().await?;
        let agents = self.list_agents(tenant).await?;
        Ok(agents
            .into_iter()
            .find(|a| a.agent_id == agent.as_str())
            .expect("just written"))
    }

    /// The agent registry of a tenant, by id.
    pub async fn list_agents(&self, tenant: &TenantId) -> StoreResult<Vec<AgentView>> {
        let now = Timestamp::now();
        let rows = sqlx::query("SELECT agent_id, queues, types, version, first_seen_at, last_heartbeat_at FROM agents WHERE tenant = $1 ORDER BY agent_id")
            .bind(tenant.as_str())
            .fetch_all(self.read_pool())
            .await?;
        rows.iter()
            .map(|r| {
                let last = row::int(r, "last_heartbeat_at")?;
                Ok(AgentView {
                    agent_id: row::text(r, "agent_id")?,
                    queues: row::parse("agents", &row::text(r, "queues")?, |s| {
                        serde_json::from_str(s)
                    })?,
                    types: row::parse("agents", &row::text(r, "types")?, |s| {
                        serde_json::from_str(s)
                    })?,
                    version: row::opt_text(r, "version")?,
                    first_seen_at: Timestamp::from_micros(row::int(r, "first_seen_at")?),
                    last_heartbeat_at: Timestamp::from_micros(last),
                    online: now.as_micros() - last <= AGENT_ONLINE_MICROS,
                })
            })
            .collect()
    }

    /// Whether a lease by this request's agent would refresh the agent's row (its last
    /// refresh by this node is missing, over 5 s old, or named other queues or types): a
    /// long-poll's first look must then be a lease, not a read.
    pub fn lease_registers_agent(&self, tenant: &TenantId, req: &LeaseRequest) -> bool {
        let (queues, types) = req.names();
        self.inner.agent_touches.due(
            tenant,
            &req.agent_id,
            &queues,
            &types,
            Timestamp::now(),
            false,
        )
    }

    /// Whether any job a lease request could claim is ready now (a read; paused queues
    /// and limits are left to [`Store::lease_jobs`]).
    pub async fn has_ready_jobs(&self, tenant: &TenantId, req: &LeaseRequest) -> StoreResult<bool> {
        let mut sql = format!(
            "SELECT 1 FROM jobs WHERE tenant = $1 AND state = 'available' AND run_at <= $2 AND queue IN ({})",
            list_placeholders(req.queues.len(), 3)
        );
        let types: Vec<&str> = req.types.iter().flatten().map(JobType::as_str).collect();
        if !types.is_empty() {
            sql.push_str(&format!(
                " AND job_type IN ({})",
                list_placeholders(types.len(), 3 + req.queues.len())
            ));
        }
        sql.push_str(" LIMIT 1");
        let mut q = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(Timestamp::now().as_micros());
        for queue in &req.queues {
            q = q.bind(queue.as_str());
        }
        for t in types {
            q = q.bind(t);
        }
        Ok(q.fetch_optional(self.read_pool()).await?.is_some())
    }

    /// Claim up to `max_jobs` ready jobs from the named queues (skipping paused ones), in
    /// claim order: priority (smaller first), then `run_at`, then id. One transaction: the
    /// jobs become `running` under one new lease, with their timeline entries. It commits
    /// without waiting for the disk ([`Store::begin_soft_write`]): a lease is soft state.
    pub async fn lease_jobs(
        &self,
        tenant: &TenantId,
        req: &LeaseRequest,
    ) -> StoreResult<Vec<LeasedJob>> {
        let now = Timestamp::now();
        let (queue_names, type_names) = req.names();
        let touch = self.inner.agent_touches.due(
            tenant,
            &req.agent_id,
            &queue_names,
            &type_names,
            now,
            true,
        );
        let lease_id = uuid::Uuid::now_v7().to_string();
        let stamp = Stamp {
            lease_id: &lease_id,
            agent: &req.agent_id,
            lease_secs: req.lease_secs,
            expires: now.saturating_add_micros(req.lease_secs as i64 * 1_000_000),
            now,
        };
        let want = u64::from(req.max_jobs);
        let postgres = self.backend() == Backend::Postgres;
        // One queue, unlimited, in a tenant without a running cap (the common case): the
        // claim itself checks that, in one call. On PostgreSQL, when the agent's row needs
        // no refresh, that call is the whole lease: one statement outside any transaction
        // (atomic on its own, its timeline entries and outbox row in it, its commit soft
        // — see `claim_from`).
        let mut looked = false;
        if let ([queue], true, false) = (req.queues.as_slice(), postgres, touch) {
            let mut conn = self.inner.write.acquire().await?;
            let fast = self
                .claim_from(&mut conn, tenant, queue, &type_names, want, &stamp, true)
                .await?;
            if fast.unlimited {
                return leased_jobs(&fast.rows, &stamp);
            }
            looked = true;
        }
        let mut tx = self.begin_soft_write().await?;
        if touch {
            touch_agent(
                &mut tx,
                tenant,
                &req.agent_id,
                &queue_names,
                &type_names,
                None,
                now,
            )
            .await?;
        }
        let fast = match req.queues.as_slice() {
            [queue] if !looked => {
                self.claim_from(&mut tx, tenant, queue, &type_names, want, &stamp, true)
                    .await?
            }
            _ => Claimed::default(),
        };
        let rows = if fast.unlimited {
            fast.rows
        } else {
            self.claim_rows(&mut tx, tenant, req, &queue_names, &type_names, &stamp)
                .await?
        };
        let leased = leased_jobs(&rows, &stamp)?;
        // PostgreSQL wrote them with the claim (see `claim_from`).
        if !postgres && !leased.is_empty() {
            let events: Vec<(JobId, TimelineEntry)> = leased
                .iter()
                .map(|j| {
                    (
                        j.id,
                        TimelineEntry {
                            at: now,
                            state: JobState::Running,
                            attempt: j.attempt,
                            agent_id: Some(req.agent_id.as_str().to_owned()),
                            actor: None,
                            reason_code: None,
                            error: None,
                        },
                    )
                })
                .collect();
            let mut depth = DepthDeltas::for_conn(&tx);
            for j in &leased {
                depth.moved(j.queue.as_str(), JobState::Available, JobState::Running);
            }
            insert_events(&mut tx, tenant, &events, &depth).await?;
        }
        tx.commit().await?;
        Ok(leased)
    }

    /// Choose and lock the rows a lease takes, fairly and within limits. The named queues
    /// that exist and are not paused are visited in a rotating order (each lease starts one
    /// queue further), each offered an equal share of what is left of `max_jobs`; a share a
    /// queue cannot fill passes to the others in a second round. Within a queue, priority
    /// order holds. A queue takes no more than its `max_concurrency` leaves room for and its
    /// GCRA lease rate grants; the tenant's `max_running` caps the whole lease.
    async fn claim_rows(
        &self,
        tx: &mut AnyConnection,
        tenant: &TenantId,
        req: &LeaseRequest,
        queue_names: &[String],
        type_names: &[String],
        stamp: &Stamp<'_>,
    ) -> StoreResult<Vec<AnyRow>> {
        let now = stamp.now;
        let lock = self.dialect().for_update();
        // The named queues' settings (limited ones are re-read under their row lock below),
        // and in the same statement whether the tenant caps its running jobs.
        let sql = format!(
            "SELECT name, paused, rate_per_sec, burst, max_concurrency, lease_tat, \
               (SELECT max_running FROM quotas WHERE tenant = $1) AS tenant_max_running \
             FROM queues WHERE tenant = $1 AND name IN ({})",
            list_placeholders(queue_names.len(), 2)
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for n in queue_names {
            q = q.bind(n.as_str());
        }
        let mut lanes = Vec::new();
        let mut capped = false;
        for r in q.fetch_all(&mut *tx).await? {
            capped |= row::opt_int(&r, "tenant_max_running")?.is_some();
            if row::boolean(&r, "paused")? {
                continue;
            }
            let name = row::parse("queues", &row::text(&r, "name")?, QueueName::parse)?;
            let limits = decode_limits(&r)?;
            lanes.push(Lane {
                name,
                limited: limits.rate_per_sec.is_some() || limits.max_concurrency.is_some(),
                limits,
                tat: row::opt_int(&r, "lease_tat")?,
                room: u64::MAX,
                done: false,
            });
        }
        if lanes.is_empty() {
            return Ok(Vec::new());
        }
        // Tenant cap: lock the quota row only when it limits running jobs.
        let mut budget = req.max_jobs as u64;
        if capped
            && let Some((q, _)) = quota_row(tx, tenant, lock).await?
            && let Some(max) = q.max_running
        {
            let running = count_in_states(tx, tenant, None, "'running'").await?;
            budget = budget.min(max.saturating_sub(running));
        }
        if budget == 0 {
            return Ok(Vec::new());
        }
        // Request order, then rotated: the same queues start in turn.
        lanes.sort_by_key(|l| queue_names.iter().position(|n| n == l.name.as_str()));
        let start = self.next_rotation(lanes.len());
        lanes.rotate_left(start);
        for lane in lanes.iter_mut().filter(|l| l.limited) {
            let sql = format!(
                "SELECT paused, rate_per_sec, burst, max_concurrency, lease_tat FROM queues WHERE tenant = $1 AND name = $2{lock}"
            );
            let r = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(lane.name.as_str())
                .fetch_one(&mut *tx)
                .await?;
            lane.limits = decode_limits(&r)?;
            lane.tat = row::opt_int(&r, "lease_tat")?;
            lane.done = row::boolean(&r, "paused")?;
            if let Some(max) = lane.limits.max_concurrency {
                let running = count_in_states(tx, tenant, Some(&lane.name), "'running'").await?;
                lane.room = max.saturating_sub(running);
            }
        }

        let mut rows = Vec::new();
        let now_us = now.as_micros();
        loop {
            let open: Vec<usize> = (0..lanes.len()).filter(|&i| !lanes[i].done).collect();
            if open.is_empty() || budget == 0 {
                break;
            }
            let share = budget.div_ceil(open.len() as u64);
            for i in open {
                if budget == 0 {
                    break;
                }
                let lane = &mut lanes[i];
                let mut want = share.min(budget).min(lane.room);
                if let Some(g) = lane.limits.gcra() {
                    want = g.take_up_to(lane.tat, now_us, want).0;
                }
                if want == 0 {
                    lane.done = true;
                    continue;
                }
                let got = self
                    .claim_from(tx, tenant, &lane.name, type_names, want, stamp, false)
                    .await?
                    .rows;
                let n = got.len() as u64;
                if n < want {
                    lane.done = true;
                }
                if let Some(g) = lane.limits.gcra()
                    && n > 0
                {
                    lane.tat = Some(g.take_up_to(lane.tat, now_us, n).1);
                    sqlx::query("UPDATE queues SET lease_tat = $1 WHERE tenant = $2 AND name = $3")
                        .bind(lane.tat)
                        .bind(tenant.as_str())
                        .bind(lane.name.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                lane.room = lane.room.saturating_sub(n);
                budget -= n;
                rows.extend(got);
            }
        }
        Ok(rows)
    }

    /// Lease up to `want` ready jobs of one queue, in claim order: one statement that
    /// picks them (on PostgreSQL locking them, skipping rows another node is claiming) and
    /// makes them `running` under `stamp`'s lease. A later round of the same lease finds
    /// them no longer `available`. The rows come back in claim order.
    ///
    /// `unlimited_only`: claim nothing unless the queue exists, is not paused, has neither
    /// a rate nor a concurrency limit, and the tenant caps no running jobs ([`UNLIMITED`])
    /// — the checks [`Store::claim_rows`] makes with reads first, here made in the same
    /// call (in the claim's snapshot, as those reads were: an unlimited queue's row is not
    /// locked either way), which also answers whether they held, so that an empty poll of
    /// an unlimited queue needs no second look.
    ///
    /// On PostgreSQL the same statement writes the claimed jobs' `running` timeline entries
    /// and their outbox row (data-modifying CTEs), each event's JSON exactly as
    /// [`crate::outbox::payload`] writes a [`warden_core::events::TransitionEvent`]; on SQLite the caller writes
    /// them with [`insert_events`].
    #[allow(clippy::too_many_arguments)]
    async fn claim_from(
        &self,
        tx: &mut AnyConnection,
        tenant: &TenantId,
        queue: &QueueName,
        type_names: &[String],
        want: u64,
        stamp: &Stamp<'_>,
        unlimited_only: bool,
    ) -> StoreResult<Claimed> {
        // Parameters: the stamp ($1–$5), then the pick's ($6–), then (PostgreSQL) the
        // events' timestamp as JSON.
        let postgres = self.backend() == Backend::Postgres;
        let mut pick = format!(
            "SELECT {} FROM jobs WHERE tenant = $6 AND queue = $7 AND state = 'available' AND run_at <= $5",
            if postgres { "ctid" } else { "id" }
        );
        if !type_names.is_empty() {
            pick.push_str(&format!(
                " AND job_type IN ({})",
                list_placeholders(type_names.len(), 8)
            ));
        }
        if unlimited_only {
            pick.push_str(&format!(" AND {UNLIMITED}"));
        }
        pick.push_str(&format!(" ORDER BY priority, run_at, id LIMIT {want}"));
        let target = if postgres {
            // Several nodes claim at once: each skips the rows another is claiming. The
            // rows are updated by `ctid` (see `crate::sql::locator`).
            format!(
                "ctid = ANY (ARRAY({pick} FOR UPDATE SKIP LOCKED)) AND tenant IS NOT DISTINCT FROM $6"
            )
        } else {
            format!("tenant = $6 AND id IN ({pick})")
        };
        let mut sql = format!(
            "UPDATE jobs SET state = 'running', attempt = attempt + 1, lease_id = $1, lease_agent = $2, \
               lease_secs = $3, lease_expires_at = $4, updated_at = $5, leased_at = $5 \
             WHERE {target} \
             RETURNING id, queue, job_type, payload, priority, run_at, attempt, max_attempts"
        );
        let timestamp =
            postgres.then(|| serde_json::to_string(&stamp.now).expect("timestamps serialize"));
        if postgres {
            let ts = 8 + type_names.len();
            sql = format!(
                "WITH c AS ({sql}), \
                 e AS (INSERT INTO job_events (tenant, job_id, at, state, attempt, agent_id, actor, reason_code, error) \
                   SELECT $6, id, $5, 'running', attempt, $2, NULL, NULL, NULL FROM c), \
                 o AS (INSERT INTO outbox (created_at, topic, payload) \
                   SELECT $5, 'job', string_agg('{{\"timestamp\":' || ${ts} || ',\"jobId\":\"' || id \
                     || '\",\"state\":\"running\",\"attempt\":' || CAST(attempt AS TEXT) || '}}', chr(10)) \
                   FROM c HAVING count(*) > 0) "
            );
            // With the check, one row more or less: the check's answer joined to each
            // claimed row, or alone (the job columns null) when nothing was claimed.
            // `set_config(…, true)` lasts until the end of the transaction, so a claim run
            // as a statement of its own commits as a soft write does (`SET LOCAL` needs a
            // transaction block); inside one it changes nothing.
            if unlimited_only {
                sql.push_str(&format!(
                    "SELECT c.*, g.unlimited FROM \
                       (SELECT {UNLIMITED} AS unlimited, set_config('synchronous_commit', 'off', true) AS soft) AS g \
                     LEFT JOIN c ON TRUE"
                ));
            } else {
                sql.push_str("SELECT * FROM c");
            }
        } else if unlimited_only {
            // The check's answer as a statement of its own before the claim, in one call.
            sql = format!("SELECT {UNLIMITED} AS unlimited; {sql}");
        }
        let mut q = sqlx::query(&sql)
            .bind(stamp.lease_id)
            .bind(stamp.agent.as_str())
            .bind(i64::from(stamp.lease_secs))
            .bind(stamp.expires.as_micros())
            .bind(stamp.now.as_micros())
            .bind(tenant.as_str())
            .bind(queue.as_str());
        for t in type_names {
            q = q.bind(t.as_str());
        }
        if let Some(ts) = &timestamp {
            q = q.bind(ts.as_str());
        }
        let mut rows = q.fetch_all(&mut *tx).await?;
        let mut unlimited = !unlimited_only;
        if unlimited_only {
            unlimited = match rows.first() {
                Some(r) => row::boolean(r, "unlimited")?,
                None => false,
            };
            if !postgres {
                rows.remove(0);
            }
        }
        // `RETURNING` promises no order.
        let mut keyed = Vec::with_capacity(rows.len());
        for r in rows.drain(..) {
            if postgres && unlimited_only && row::opt_text(&r, "id")?.is_none() {
                continue;
            }
            keyed.push((
                (
                    row::int(&r, "priority")?,
                    row::int(&r, "run_at")?,
                    row::text(&r, "id")?,
                ),
                r,
            ));
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Claimed {
            rows: keyed.into_iter().map(|(_, r)| r).collect(),
            unlimited,
        })
    }

    /// Extend a held lease by its duration; `LEASE_NOT_HELD` (and no change) otherwise.
    /// Soft, like the lease it extends.
    pub async fn heartbeat_lease(
        &self,
        tenant: &TenantId,
        id: JobId,
        lease_id: &str,
    ) -> StoreResult<Result<Timestamp, ReasonCode>> {
        let mut tx = self.begin_soft_write().await?;
        let now = Timestamp::now();
        let r = sqlx::query(
            "UPDATE jobs SET lease_expires_at = $1 + lease_secs * 1000000, updated_at = $1 \
             WHERE tenant = $2 AND id = $3 AND state = 'running' AND lease_id = $4 RETURNING lease_expires_at",
        )
        .bind(now.as_micros())
        .bind(tenant.as_str())
        .bind(id.to_string())
        .bind(lease_id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match r {
            Some(r) => Ok(Timestamp::from_micros(row::int(&r, "lease_expires_at")?)),
            None => Err(self.why_not_held(&mut tx, tenant, id).await?),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn why_not_held(
        &self,
        conn: &mut AnyConnection,
        tenant: &TenantId,
        id: JobId,
    ) -> StoreResult<ReasonCode> {
        let exists = sqlx::query(
            "SELECT 1 FROM jobs WHERE tenant = $1 AND id = $2 \
             UNION ALL SELECT 1 FROM jobs_done WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(if exists.is_some() {
            ReasonCode::LeaseNotHeld
        } else {
            ReasonCode::UnknownJobId
        })
    }

    /// Settle a batch of completions and failures in one transaction (callers go through
    /// [`Store::finish_jobs`], which groups them). Each item answers in order: `Ok` or the
    /// code that refused it (`LEASE_NOT_HELD`, `UNKNOWN_JOB_ID`); a refused item changes
    /// nothing, and a job named twice is settled by its first item only. Successes release
    /// dependents; final failures cancel them with `UPSTREAM_FAILED`.
    pub(crate) async fn settle_finishes(
        &self,
        tenant: &TenantId,
        items: &[FinishItem],
    ) -> StoreResult<Vec<Result<Finished, ReasonCode>>> {
        let mut tx = self.begin_write().await?;
        let now = Timestamp::now();
        let ids: Vec<JobId> = items.iter().map(|i| i.id).collect();
        let lock = self.dialect().for_update();
        let jobs = settling_rows(&mut tx, tenant, &ids, lock).await?;
        let missing: Vec<JobId> = ids
            .iter()
            .filter(|id| !jobs.contains_key(id))
            .copied()
            .collect();
        let done = if missing.is_empty() {
            Default::default()
        } else {
            finished_ids(&mut tx, tenant, &missing).await?
        };
        let mut settled: HashMap<JobId, JobState> = HashMap::new();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut events = Vec::new();
        let mut succeeded = Vec::new();
        let mut dead = Vec::new();
        let mut updates = Vec::new();
        // Backoff settings of the queues whose jobs may retry (failures only).
        let failing: std::collections::BTreeSet<&str> = items
            .iter()
            .filter(|i| {
                matches!(
                    i.finish,
                    Finish::Fail {
                        retryable: true,
                        ..
                    }
                )
            })
            .filter_map(|i| jobs.get(&i.id).map(|j| j.queue.as_str()))
            .collect();
        let failing: Vec<&str> = failing.into_iter().collect();
        let retry = crate::queues::retry_policies(&mut tx, tenant, &failing).await?;
        for item in items {
            let Some(job) = jobs.get(&item.id) else {
                outcomes.push(Err(if done.contains(&item.id) {
                    ReasonCode::LeaseNotHeld
                } else {
                    ReasonCode::UnknownJobId
                }));
                continue;
            };
            let state = settled.get(&item.id).copied().unwrap_or(job.state);
            let held = state == JobState::Running
                && job.lease_id.as_deref() == Some(item.lease_id.as_str());
            if !held {
                outcomes.push(Err(ReasonCode::LeaseNotHeld));
                continue;
            }
            let (event, result, error) = match &item.finish {
                Finish::Complete { result } => (
                    JobEvent::Complete,
                    result.as_ref().map(|r| r.to_string()),
                    None,
                ),
                Finish::Fail { error, retryable } => (
                    JobEvent::Fail {
                        retryable: *retryable,
                    },
                    None,
                    Some(error.clone()),
                ),
            };
            let t = transition(state, job.attempt, job.max_attempts, event)
                .expect("running jobs can finish");
            let run_at = if t.to == JobState::Retrying {
                let policy = retry.get(job.queue.as_str()).copied().unwrap_or_default();
                now.saturating_add_micros(policy.delay_micros(job.attempt, random_u64()))
            } else {
                job.run_at
            };
            updates.push((job.loc.clone(), t.to, run_at, result, error.clone()));
            events.push((
                item.id,
                TimelineEntry {
                    at: now,
                    state: t.to,
                    attempt: t.attempt,
                    agent_id: None,
                    actor: None,
                    reason_code: None,
                    error,
                },
            ));
            settled.insert(item.id, t.to);
            match t.to {
                JobState::Succeeded => succeeded.push(item.id),
                JobState::DeadLetter => dead.push(item.id),
                _ => {}
            }
            outcomes.push(Ok(Finished {
                queue: job.queue.clone(),
                job_type: job.job_type.clone(),
                state: t.to,
                ran_micros: job.leased_at.map(|at| now.as_micros() - at),
                frees: false,
            }));
        }
        update_finished(&mut tx, tenant, &updates, now).await?;
        let mut depth = DepthDeltas::for_conn(&tx);
        for f in outcomes.iter().flatten() {
            depth.moved(f.queue.as_str(), JobState::Running, f.state);
        }
        insert_events(&mut tx, tenant, &events, &depth).await?;
        crate::queues::count_finished(&mut tx, tenant, &outcomes, now).await?;
        if outcomes.iter().any(Result::is_ok) {
            let mut queues: Vec<&str> = outcomes
                .iter()
                .flatten()
                .map(|f| f.queue.as_str())
                .collect();
            queues.sort_unstable();
            queues.dedup();
            let freed = frees(&mut tx, tenant, &succeeded, &queues).await?;
            for id in &freed.with_dependents {
                promote_dependents(&mut tx, tenant, *id, now).await?;
            }
            let released: std::collections::HashSet<&JobId> =
                freed.with_dependents.iter().collect();
            for (item, outcome) in items.iter().zip(outcomes.iter_mut()) {
                if let Ok(f) = outcome {
                    f.frees = freed.tenant_capped
                        || freed.capped_queues.contains(f.queue.as_str())
                        || released.contains(&item.id);
                }
            }
        }
        for id in dead {
            cascade_upstream_failure(&mut tx, tenant, id, now, lock).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Return jobs whose lease ran out to `available` (or `dead_letter` when their attempts
    /// are spent), with timeline error `lease_expired`. Returns how many, across tenants.
    pub async fn recover_expired_leases(&self) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let now = Timestamp::now();
        let mut sql = format!(
            "SELECT tenant, id, queue, attempt, max_attempts FROM jobs WHERE state = 'running' AND lease_expires_at < $1 LIMIT {SWEEP_BATCH}"
        );
        if self.backend() == Backend::Postgres {
            sql.push_str(" FOR UPDATE SKIP LOCKED");
        }
        let rows = sqlx::query(&sql)
            .bind(now.as_micros())
            .fetch_all(&mut *tx)
            .await?;
        for r in &rows {
            let tenant = row::parse(
                "jobs",
                &row::text(r, "tenant")?,
                TenantId::parse_including_reserved,
            )?;
            let id = row::parse("jobs", &row::text(r, "id")?, JobId::parse)?;
            let attempt = row::int(r, "attempt")? as u32;
            let t = transition(
                JobState::Running,
                attempt,
                row::int(r, "max_attempts")? as u32,
                JobEvent::LeaseExpired,
            )
            .expect("running jobs can expire");
            sqlx::query("UPDATE jobs SET state = $1, lease_id = NULL, lease_agent = NULL, lease_expires_at = NULL, last_error = 'lease_expired', updated_at = $2 WHERE tenant = $3 AND id = $4")
                .bind(t.to.as_str())
                .bind(now.as_micros())
                .bind(tenant.as_str())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            let event = TimelineEntry {
                at: now,
                state: t.to,
                attempt,
                agent_id: None,
                actor: None,
                reason_code: None,
                error: Some("lease_expired".into()),
            };
            let queue = row::text(r, "queue")?;
            let mut depth = DepthDeltas::for_conn(&tx);
            depth.moved(&queue, JobState::Running, t.to);
            insert_events(&mut tx, &tenant, &[(id, event)], &depth).await?;
            if t.to == JobState::DeadLetter {
                cascade_upstream_failure(&mut tx, &tenant, id, now, self.dialect().for_update())
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Make due jobs available: `retrying` ones whose backoff passed, and `pending` ones
    /// whose `run_at` came and whose dependencies all succeeded. Returns how many.
    pub async fn promote_due_jobs(&self) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let now = Timestamp::now();
        let rows = sqlx::query(&format!(
            "SELECT tenant, id, state, attempt FROM jobs j WHERE state IN ('pending', 'retrying') AND run_at <= $1 \
             AND (state = 'retrying' OR NOT EXISTS ({UNFINISHED_UPSTREAM})) LIMIT {SWEEP_BATCH}"
        ))
        .bind(now.as_micros())
        .fetch_all(&mut *tx)
        .await?;
        let mut promoted = 0;
        for r in &rows {
            let tenant = row::parse(
                "jobs",
                &row::text(r, "tenant")?,
                TenantId::parse_including_reserved,
            )?;
            let id = row::parse("jobs", &row::text(r, "id")?, JobId::parse)?;
            let from = row::parse("jobs", &row::text(r, "state")?, |s| {
                JobState::parse(s).ok_or("unknown state")
            })?;
            let changed = sqlx::query("UPDATE jobs SET state = 'available', updated_at = $1 WHERE tenant = $2 AND id = $3 AND state = $4")
                .bind(now.as_micros())
                .bind(tenant.as_str())
                .bind(id.to_string())
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Changed meanwhile (e.g. canceled by a failed dependency on another node):
            // no transition happened, so the timeline gets no entry.
            if changed == 0 {
                continue;
            }
            promoted += 1;
            let attempt = row::int(r, "attempt")? as u32;
            let event = TimelineEntry {
                at: now,
                state: JobState::Available,
                attempt,
                agent_id: None,
                actor: None,
                reason_code: None,
                error: None,
            };
            // Pending or retrying → available: the row trigger counts it.
            insert_events(&mut tx, &tenant, &[(id, event)], &DepthDeltas::default()).await?;
        }
        tx.commit().await?;
        Ok(promoted)
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use sqlx::Row;

    use crate::testing::TestDb;
    use crate::{Backend, Store};

    /// The commit level the open write transaction runs with, as the database reports it.
    async fn level(store: &Store, tx: &mut sqlx::AnyConnection) -> String {
        let sql = match store.backend() {
            Backend::Sqlite => "SELECT CAST(synchronous AS TEXT) AS v FROM pragma_synchronous",
            Backend::Postgres => "SELECT current_setting('synchronous_commit') AS v",
        };
        sqlx::query(sql)
            .fetch_one(&mut *tx)
            .await
            .unwrap()
            .get::<String, _>("v")
    }

    #[tokio::test]
    async fn a_soft_write_does_not_wait_for_the_disk_and_the_next_durable_one_does() {
        for db in TestDb::all().await {
            let store = db.open().await;
            let (soft, durable) = match store.backend() {
                Backend::Sqlite => ("1", "2"), // NORMAL, FULL
                Backend::Postgres => ("off", "on"),
            };
            // A soft transaction, committed or rolled back, leaves its level behind for
            // no durable one.
            for commit in [true, false] {
                let mut tx = store.begin_soft_write().await.unwrap();
                assert_eq!(level(&store, &mut tx).await, soft, "{:?}", store.backend());
                if commit {
                    tx.commit().await.unwrap();
                } else {
                    tx.rollback().await.unwrap();
                }
                let mut tx = store.begin_write().await.unwrap();
                assert_eq!(
                    level(&store, &mut tx).await,
                    durable,
                    "{:?}",
                    store.backend()
                );
                tx.commit().await.unwrap();
            }
        }
    }
}
