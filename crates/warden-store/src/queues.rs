//! Queues: views with depth by state, and the audited pause and resume.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use warden_core::audit::AuditDraft;
use warden_core::events::QueueChange;
use warden_core::jobs::{JobState, RetryPolicy};
use warden_core::names::{QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;

pub use warden_core::limits::QueueLimits;

use crate::sql::list_placeholders;
use crate::{Backend, Store, StoreError, StoreResult, audit, outbox, row};

/// A queue as served by `GET /api/v1/queues/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    /// The name.
    pub name: QueueName,
    /// Whether leasing is paused (enqueues are still accepted).
    pub paused: bool,
    /// Limits.
    pub limits: QueueLimits,
    /// Retry defaults of its jobs.
    pub retry: RetryPolicy,
    /// Job count per state; every state is present.
    pub depth: BTreeMap<&'static str, i64>,
    /// Jobs running now.
    pub running: i64,
    /// Jobs finished (succeeded or failed an attempt) per second, over the last `1m`,
    /// `5m` and `1h` (10-second buckets: each window reaches back up to 10 s further).
    pub throughput: BTreeMap<&'static str, f64>,
    /// Failed attempts over finished ones in the same windows; `null` when none finished.
    pub error_rate: BTreeMap<&'static str, Option<f64>>,
    /// When the queue came into being (its first enqueue).
    pub created_at: Timestamp,
    /// Last change of its settings.
    pub updated_at: Timestamp,
}

pub(crate) fn decode_queue(r: &AnyRow) -> StoreResult<QueueView> {
    let depth = JobState::ALL.into_iter().map(|s| (s.as_str(), 0)).collect();
    Ok(QueueView {
        name: row::parse("queues", &row::text(r, "name")?, QueueName::parse)?,
        paused: row::boolean(r, "paused")?,
        limits: decode_limits(r)?,
        retry: decode_retry(r)?,
        depth,
        running: 0,
        throughput: WINDOWS.iter().map(|(k, _)| (*k, 0.0)).collect(),
        error_rate: WINDOWS.iter().map(|(k, _)| (*k, None)).collect(),
        created_at: Timestamp::from_micros(row::int(r, "created_at")?),
        updated_at: Timestamp::from_micros(row::int(r, "updated_at")?),
    })
}

/// The windows of [`QueueView::throughput`]: name and length in seconds.
const WINDOWS: [(&str, i64); 3] = [("1m", 60), ("5m", 300), ("1h", 3600)];
/// Length of a `queue_stats` bucket, microseconds.
const BUCKET_MICROS: i64 = 10_000_000;
/// Slots per bucket (spread concurrent finishers over rows).
const SLOTS: u64 = 4;

/// Add a finish batch's outcomes to the queue statistics, in the caller's transaction.
pub(crate) async fn count_finished(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    outcomes: &[Result<crate::leases::Finished, ReasonCode>],
    now: Timestamp,
) -> StoreResult<()> {
    let mut per_queue: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for f in outcomes.iter().flatten() {
        let e = per_queue.entry(f.queue.as_str()).or_default();
        if f.state == JobState::Succeeded {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let bucket = now.as_micros().div_euclid(BUCKET_MICROS);
    let slot = (uuid::Uuid::now_v7().as_u128() as u64 % SLOTS) as i64;
    for (queue, (ok, failed)) in per_queue {
        sqlx::query(
            "INSERT INTO queue_stats (tenant, queue, bucket, slot, succeeded, failed) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, queue, bucket, slot) DO UPDATE \
             SET succeeded = queue_stats.succeeded + excluded.succeeded, \
                 failed = queue_stats.failed + excluded.failed",
        )
        .bind(tenant.as_str())
        .bind(queue)
        .bind(bucket)
        .bind(slot)
        .bind(ok)
        .bind(failed)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(crate) fn decode_limits(r: &AnyRow) -> StoreResult<QueueLimits> {
    Ok(QueueLimits {
        rate_per_sec: r.try_get::<Option<f64>, _>("rate_per_sec")?,
        burst: row::opt_int(r, "burst")?.map(|b| b as u64),
        max_concurrency: row::opt_int(r, "max_concurrency")?.map(|c| c as u64),
    })
}

/// A queue's row, locked for the caller's transaction; `UNKNOWN_QUEUE` when the tenant has
/// no such queue.
pub(crate) async fn lock_queue(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    name: &QueueName,
    dialect: crate::Dialect,
) -> StoreResult<QueueView> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant = $1 AND name = $2{}",
        dialect.for_update()
    );
    let r = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| {
            StoreError::rejected(
                ReasonCode::UnknownQueue,
                format!("no queue {name} in this tenant"),
            )
        })?;
    decode_queue(&r)
}

pub(crate) const QUEUE_COLUMNS: &str = "name, paused, rate_per_sec, burst, max_concurrency, \
     default_max_attempts, backoff_base_ms, backoff_max_ms, created_at, updated_at";

pub(crate) fn decode_retry(r: &AnyRow) -> StoreResult<RetryPolicy> {
    Ok(RetryPolicy {
        max_attempts: row::opt_int(r, "default_max_attempts")?.map(|n| n as u32),
        backoff_base_ms: row::opt_int(r, "backoff_base_ms")?.map(|n| n as u64),
        backoff_max_ms: row::opt_int(r, "backoff_max_ms")?.map(|n| n as u64),
    })
}

/// The retry policies of `queues` (built-in defaults for a queue not found).
pub(crate) async fn retry_policies(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    queues: &[&str],
) -> StoreResult<std::collections::HashMap<String, RetryPolicy>> {
    let mut out = std::collections::HashMap::new();
    if queues.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT name, default_max_attempts, backoff_base_ms, backoff_max_ms FROM queues \
         WHERE tenant = $1 AND name IN ({})",
        list_placeholders(queues.len(), 2)
    );
    let mut q = sqlx::query(&sql).bind(tenant.as_str());
    for name in queues {
        q = q.bind(*name);
    }
    for r in q.fetch_all(&mut *conn).await? {
        out.insert(row::text(&r, "name")?, decode_retry(&r)?);
    }
    Ok(out)
}

impl Store {
    async fn fill_depths(&self, tenant: &TenantId, queues: &mut [QueueView]) -> StoreResult<()> {
        if queues.is_empty() {
            return Ok(());
        }
        // The counters the triggers keep for hot jobs (migration 0017), the deltas not yet
        // folded into them (PostgreSQL), and the mover's counters of moved jobs.
        let names = list_placeholders(queues.len(), 2);
        let sql = format!(
            "SELECT queue, state, CAST(SUM(n) AS BIGINT) AS n FROM ( \
               SELECT queue, state, n FROM jobs_depth WHERE tenant = $1 AND queue IN ({names}) \
               UNION ALL SELECT queue, state, n FROM jobs_depth_deltas WHERE tenant = $1 AND queue IN ({names}) \
               UNION ALL SELECT queue, state, n FROM jobs_done_counts WHERE tenant = $1 AND queue IN ({names}) \
             ) AS c GROUP BY queue, state HAVING SUM(n) <> 0"
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str());
        for v in queues.iter() {
            q = q.bind(v.name.as_str());
        }
        for r in q.fetch_all(self.read_pool()).await? {
            let name = row::text(&r, "queue")?;
            let state = row::parse("jobs", &row::text(&r, "state")?, |s| {
                JobState::parse(s).ok_or("unknown state")
            })?;
            if let Some(v) = queues.iter_mut().find(|v| v.name.as_str() == name) {
                let n = row::int(&r, "n")?;
                v.depth.insert(state.as_str(), n);
                if state == JobState::Running {
                    v.running = n;
                }
            }
        }
        self.fill_throughput(tenant, queues).await
    }

    /// Throughput and error rate per window, from the `queue_stats` buckets.
    async fn fill_throughput(
        &self,
        tenant: &TenantId,
        queues: &mut [QueueView],
    ) -> StoreResult<()> {
        let now = Timestamp::now().as_micros();
        let current = now.div_euclid(BUCKET_MICROS);
        let oldest = current - WINDOWS[WINDOWS.len() - 1].1 * 1_000_000 / BUCKET_MICROS;
        let sql = format!(
            "SELECT queue, bucket, CAST(SUM(succeeded) AS BIGINT) AS ok, CAST(SUM(failed) AS BIGINT) AS failed FROM queue_stats \
             WHERE tenant = $1 AND bucket >= $2 AND queue IN ({}) GROUP BY queue, bucket",
            list_placeholders(queues.len(), 3)
        );
        let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(oldest);
        for v in queues.iter() {
            q = q.bind(v.name.as_str());
        }
        let rows = q.fetch_all(self.read_pool()).await?;
        for v in queues.iter_mut() {
            for (window, secs) in WINDOWS {
                let first = current - secs * 1_000_000 / BUCKET_MICROS;
                let (mut ok, mut failed) = (0i64, 0i64);
                for r in &rows {
                    if row::text(r, "queue")? == v.name.as_str() && row::int(r, "bucket")? >= first
                    {
                        ok += row::int(r, "ok")?;
                        failed += row::int(r, "failed")?;
                    }
                }
                // The window covers the whole buckets since `first` and the current one so far.
                let span = (now - first * BUCKET_MICROS) as f64 / 1e6;
                let done = ok + failed;
                v.throughput.insert(window, done as f64 / span);
                v.error_rate
                    .insert(window, (done > 0).then(|| failed as f64 / done as f64));
            }
        }
        Ok(())
    }

    /// The retry policies of the named queues (those that exist).
    pub async fn queue_retry_policies(
        &self,
        tenant: &TenantId,
        queues: &[&str],
    ) -> StoreResult<std::collections::HashMap<String, RetryPolicy>> {
        let mut conn = self.read_pool().acquire().await?;
        retry_policies(&mut conn, tenant, queues).await
    }

    /// Replace a queue's retry defaults and append its `queue.retry` entry (metadata
    /// `before` and `after`) in one transaction.
    pub async fn set_queue_retry_audited(
        &self,
        tenant: &TenantId,
        name: &QueueName,
        retry: RetryPolicy,
        mut draft: AuditDraft,
    ) -> StoreResult<QueueView> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let before = lock_queue(&mut tx, tenant, name, self.dialect())
            .await?
            .retry;
        sqlx::query(
            "UPDATE queues SET default_max_attempts = $1, backoff_base_ms = $2, backoff_max_ms = $3, \
             updated_at = $4 WHERE tenant = $5 AND name = $6",
        )
        .bind(retry.max_attempts.map(i64::from))
        .bind(retry.backoff_base_ms.map(|v| v as i64))
        .bind(retry.backoff_max_ms.map(|v| v as i64))
        .bind(now.as_micros())
        .bind(tenant.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        let as_json = |r: &RetryPolicy| {
            serde_json::json!({
                "max_attempts": r.max_attempts,
                "backoff_base_ms": r.backoff_base_ms,
                "backoff_max_ms": r.backoff_max_ms,
            })
        };
        draft.metadata = serde_json::json!({"before": as_json(&before), "after": as_json(&retry)});
        outbox::enqueue_queue_change(&mut tx, name, QueueChange::Retry, now).await?;
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        self.get_queue(tenant, name)
            .await?
            .ok_or_else(|| StoreError::corrupt("queues", "queue vanished after update"))
    }

    /// Jobs in the unfinished states, per tenant, queue and state, across tenants (for
    /// `/metrics`; finished jobs are counted by the finish counters instead). A queue that
    /// drained reads 0 rather than vanishing. Reads the counters of migration 0017: the
    /// cost does not grow with the number of jobs.
    pub async fn live_depths(&self) -> StoreResult<Vec<(String, String, JobState, i64)>> {
        let rows = sqlx::query(
            "SELECT tenant, queue, state, CAST(SUM(n) AS BIGINT) AS n FROM ( \
               SELECT tenant, queue, state, n FROM jobs_depth \
               UNION ALL SELECT tenant, queue, state, n FROM jobs_depth_deltas \
             ) AS c WHERE state IN ('pending', 'available', 'running', 'retrying') \
             GROUP BY tenant, queue, state",
        )
        .fetch_all(self.read_pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    row::text(r, "tenant")?,
                    row::text(r, "queue")?,
                    row::parse("jobs", &row::text(r, "state")?, |s| {
                        JobState::parse(s).ok_or("unknown state")
                    })?,
                    row::int(r, "n")?,
                ))
            })
            .collect()
    }

    /// Fold the queue-depth deltas that PostgreSQL's triggers append into the counters
    /// (run by the leader each sweep; SQLite's triggers update the counters in place and
    /// leave nothing to fold). Deleting and adding happen in one statement, so a reader
    /// sees each delta either still pending or folded, never both nor neither; two nodes
    /// folding at once each take a delta at most once. Returns how many deltas were folded.
    pub async fn fold_depth_deltas(&self) -> StoreResult<u64> {
        if self.backend() != Backend::Postgres {
            return Ok(0);
        }
        let r = sqlx::query(
            "WITH d AS (DELETE FROM jobs_depth_deltas RETURNING tenant, queue, state, n), \
                  s AS (INSERT INTO jobs_depth (tenant, queue, state, n) \
                        SELECT tenant, queue, state, SUM(n) FROM d GROUP BY tenant, queue, state \
                        ORDER BY tenant, queue, state \
                        ON CONFLICT (tenant, queue, state) DO UPDATE SET n = jobs_depth.n + excluded.n) \
             SELECT COUNT(*) AS n FROM d",
        )
        .fetch_one(&self.inner.write)
        .await?;
        Ok(row::int(&r, "n")? as u64)
    }

    /// Forget queue statistics older than the longest window (run by the leader).
    pub async fn prune_queue_stats(&self) -> StoreResult<u64> {
        let keep_from = Timestamp::now().as_micros().div_euclid(BUCKET_MICROS)
            - 2 * WINDOWS[WINDOWS.len() - 1].1 * 1_000_000 / BUCKET_MICROS;
        Ok(sqlx::query("DELETE FROM queue_stats WHERE bucket < $1")
            .bind(keep_from)
            .execute(&self.inner.write)
            .await?
            .rows_affected())
    }

    /// Queues by name after the keyset cursor, with their depths.
    pub async fn list_queues(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<(Vec<QueueView>, bool)> {
        let sql = format!(
            "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant = $1 AND name > $2 ORDER BY name LIMIT {}",
            limit as u64 + 1
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(after.unwrap_or(""))
            .fetch_all(self.read_pool())
            .await?;
        let more = rows.len() > limit as usize;
        let mut views = rows
            .iter()
            .take(limit as usize)
            .map(decode_queue)
            .collect::<StoreResult<Vec<_>>>()?;
        self.fill_depths(tenant, &mut views).await?;
        Ok((views, more))
    }

    /// One queue with its depth, in the caller's tenant only.
    pub async fn get_queue(
        &self,
        tenant: &TenantId,
        name: &QueueName,
    ) -> StoreResult<Option<QueueView>> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant = $1 AND name = $2");
        let Some(r) = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(name.as_str())
            .fetch_optional(self.read_pool())
            .await?
        else {
            return Ok(None);
        };
        let mut views = vec![decode_queue(&r)?];
        self.fill_depths(tenant, &mut views).await?;
        Ok(views.pop())
    }

    /// Pause or resume a queue and append its `queue.pause` / `queue.resume` entry in one
    /// transaction. Pausing a paused queue (or resuming a running one) is refused.
    pub async fn set_queue_paused_audited(
        &self,
        tenant: &TenantId,
        name: &QueueName,
        paused: bool,
        draft: AuditDraft,
    ) -> StoreResult<QueueView> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let current = lock_queue(&mut tx, tenant, name, self.dialect()).await?;
        if current.paused == paused {
            return Err(StoreError::pause_refused(&format!("queue {name}"), paused));
        }
        sqlx::query(
            "UPDATE queues SET paused = $1, updated_at = $2 WHERE tenant = $3 AND name = $4",
        )
        .bind(paused)
        .bind(now.as_micros())
        .bind(tenant.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        let change = if paused {
            QueueChange::Paused
        } else {
            QueueChange::Resumed
        };
        outbox::enqueue_queue_change(&mut tx, name, change, now).await?;
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        self.get_queue(tenant, name)
            .await?
            .ok_or_else(|| StoreError::corrupt("queues", "queue vanished after update"))
    }
}
