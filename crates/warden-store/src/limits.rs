//! Queue limits and tenant quotas: setting them (audited, with before and after), and the
//! checks enqueue and leasing make against them.
//!
//! Where limits are counted across nodes, the row that holds them is locked first (the
//! queue's row for `max_concurrency` and its lease rate, the tenant's quota row for
//! `max_running`, `max_queued` and the enqueue rate), so two nodes never both hand out the
//! last slot. Unlimited queues and tenants take no such lock: claims on them stay parallel.

use serde_json::{Value, json};
use sqlx::AnyConnection;
use warden_core::audit::AuditDraft;
use warden_core::events::QueueChange;
use warden_core::limits::{QueueLimits, TenantQuota, rate_text};
use warden_core::names::{QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;

use crate::queues::{QueueView, lock_queue};
use crate::{Dialect, Rejection, Store, StoreError, StoreResult, audit, row};

fn limits_metadata(l: &QueueLimits) -> Value {
    json!({
        "rate_per_sec": rate_text(l.rate_per_sec),
        "burst": l.burst,
        "max_concurrency": l.max_concurrency,
    })
}

fn quota_metadata(q: &TenantQuota) -> Value {
    json!({
        "max_queued": q.max_queued,
        "max_running": q.max_running,
        "enqueue_per_sec": rate_text(q.enqueue_per_sec),
    })
}

fn with_before_after(mut draft: AuditDraft, before: Value, after: Value) -> AuditDraft {
    draft.metadata = json!({ "before": before, "after": after });
    draft
}

/// A tenant's quota row, locked for the transaction when `lock` is a lock clause.
pub(crate) async fn quota_row(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    lock: &str,
) -> StoreResult<Option<(TenantQuota, Option<i64>)>> {
    let sql = format!(
        "SELECT max_queued, max_running, enqueue_per_sec, enqueue_tat FROM quotas WHERE tenant = $1{lock}"
    );
    let Some(r) = sqlx::query(&sql)
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    use sqlx::Row as _;
    Ok(Some((
        TenantQuota {
            max_queued: row::opt_int(&r, "max_queued")?.map(|n| n as u64),
            max_running: row::opt_int(&r, "max_running")?.map(|n| n as u64),
            enqueue_per_sec: r.try_get::<Option<f64>, _>("enqueue_per_sec")?,
        },
        row::opt_int(&r, "enqueue_tat")?,
    )))
}

/// Jobs of the tenant (of one queue, when given) in `states`, from the queue-depth
/// counters (decision 0012): constant time however many jobs are queued, where a count of
/// the rows cost O(limit) per enqueue or lease. The counters move in the transaction of
/// each change, so this reads what a `COUNT(*)` would under the same snapshot.
pub(crate) async fn count_in_states(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    queue: Option<&QueueName>,
    states: &str,
) -> StoreResult<u64> {
    let queue_clause = if queue.is_some() {
        " AND queue = $2"
    } else {
        ""
    };
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM ( \
           SELECT n FROM jobs_depth WHERE tenant = $1{queue_clause} AND state IN ({states}) \
           UNION ALL SELECT n FROM jobs_depth_deltas WHERE tenant = $1{queue_clause} AND state IN ({states}) \
         ) AS c"
    );
    let mut q = sqlx::query(&sql).bind(tenant.as_str());
    if let Some(name) = queue {
        q = q.bind(name.as_str());
    }
    let r = q.fetch_one(&mut *conn).await?;
    let n = row::int(&r, "n")?;
    if n < 0 {
        // Only a hand edit of `jobs` around the triggers can do this; say so rather than
        // let a limit quietly loosen.
        tracing::warn!(tenant = %tenant.as_str(), queue = ?queue.map(QueueName::as_str), states, n,
            "queue-depth counters below zero; recount them (decision 0012)");
    }
    Ok(n.max(0) as u64)
}

/// The states that count against `max_queued`.
const QUEUED_STATES: &str = "'pending', 'available', 'retrying'";

/// Check an enqueue of `fresh` new jobs against the tenant's quota, in the enqueue's
/// transaction: `429 QUOTA_EXCEEDED` beyond `max_queued`, `429 RATE_LIMITED` with the wait
/// beyond `enqueue_per_sec`. An admitted batch advances the rate limit's state.
pub(crate) async fn admit_enqueue(
    conn: &mut AnyConnection,
    dialect: Dialect,
    tenant: &TenantId,
    fresh: u64,
    now: Timestamp,
) -> StoreResult<()> {
    if fresh == 0 {
        return Ok(());
    }
    let Some((quota, tat)) = quota_row(conn, tenant, dialect.for_update()).await? else {
        return Ok(());
    };
    if let Some(max) = quota.max_queued {
        let queued = count_in_states(conn, tenant, None, QUEUED_STATES).await?;
        if queued + fresh > max {
            return Err(StoreError::Rejected(Rejection {
                retry_after: Some(1),
                ..Rejection::new(
                    ReasonCode::QuotaExceeded,
                    format!(
                        "the tenant's quota allows {max} queued jobs; {queued} are queued and this request adds {fresh}"
                    ),
                )
            }));
        }
    }
    if let Some(g) = quota.enqueue_gcra() {
        match g.admit(tat, now.as_micros(), fresh) {
            Ok(new_tat) => {
                sqlx::query("UPDATE quotas SET enqueue_tat = $1 WHERE tenant = $2")
                    .bind(new_tat)
                    .bind(tenant.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            Err(wait) => {
                let secs = (wait as u64).div_ceil(1_000_000).max(1);
                return Err(StoreError::Rejected(Rejection {
                    retry_after: Some(secs),
                    ..Rejection::new(
                        ReasonCode::RateLimited,
                        format!(
                            "the tenant's quota allows {} enqueued jobs per second; try again in {secs} s",
                            rate_text(quota.enqueue_per_sec)
                                .as_str()
                                .unwrap_or_default()
                        ),
                    )
                }));
            }
        }
    }
    Ok(())
}

impl Store {
    /// Replace a queue's limits and append its `queue.limits` entry (metadata `before` and
    /// `after`) in one transaction. Changing the rate starts its GCRA state afresh.
    pub async fn set_queue_limits_audited(
        &self,
        tenant: &TenantId,
        name: &QueueName,
        limits: QueueLimits,
        draft: AuditDraft,
    ) -> StoreResult<QueueView> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let before = lock_queue(&mut tx, tenant, name, self.dialect())
            .await?
            .limits;
        sqlx::query(
            "UPDATE queues SET rate_per_sec = $1, burst = $2, max_concurrency = $3, \
             lease_tat = CASE WHEN rate_per_sec = $1 THEN lease_tat ELSE NULL END, updated_at = $4 \
             WHERE tenant = $5 AND name = $6",
        )
        // Not cached: sqlx's Any driver types a NULL f64 parameter as float4, and
        // PostgreSQL keeps the first execution's parameter types for a cached statement.
        .persistent(false)
        .bind(limits.rate_per_sec)
        .bind(limits.burst.map(|b| b as i64))
        .bind(limits.max_concurrency.map(|c| c as i64))
        .bind(now.as_micros())
        .bind(tenant.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        let draft = with_before_after(draft, limits_metadata(&before), limits_metadata(&limits));
        crate::outbox::enqueue_queue_change(&mut tx, name, QueueChange::Limits, now).await?;
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        self.get_queue(tenant, name)
            .await?
            .ok_or_else(|| StoreError::corrupt("queues", "queue vanished after update"))
    }

    /// The tenant's quota (no limits when none was ever set).
    pub async fn get_quota(&self, tenant: &TenantId) -> StoreResult<TenantQuota> {
        let mut conn = self.read_pool().acquire().await?;
        Ok(quota_row(&mut conn, tenant, "")
            .await?
            .map(|(q, _)| q)
            .unwrap_or_default())
    }

    /// Replace the tenant's quota and append its `quota.update` entry (metadata `before`
    /// and `after`) in one transaction.
    pub async fn set_quota_audited(
        &self,
        tenant: &TenantId,
        quota: TenantQuota,
        draft: AuditDraft,
    ) -> StoreResult<TenantQuota> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let before = quota_row(&mut tx, tenant, self.dialect().for_update())
            .await?
            .map(|(q, _)| q)
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO quotas (tenant, max_queued, max_running, enqueue_per_sec, enqueue_tat, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (tenant) DO UPDATE SET max_queued = excluded.max_queued, \
             max_running = excluded.max_running, enqueue_per_sec = excluded.enqueue_per_sec, \
             enqueue_tat = CASE WHEN quotas.enqueue_per_sec = excluded.enqueue_per_sec THEN quotas.enqueue_tat ELSE NULL END, \
             updated_at = excluded.updated_at",
        )
        // Not cached: see `set_queue_limits_audited`.
        .persistent(false)
        .bind(tenant.as_str())
        .bind(quota.max_queued.map(|n| n as i64))
        .bind(quota.max_running.map(|n| n as i64))
        .bind(quota.enqueue_per_sec)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        let draft = with_before_after(draft, quota_metadata(&before), quota_metadata(&quota));
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(quota)
    }
}
