//! Queues: views with depth by state, and the audited pause and resume.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use warden_core::audit::AuditDraft;
use warden_core::jobs::JobState;
use warden_core::names::{QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;

pub use warden_core::limits::QueueLimits;

use crate::sql::list_placeholders;
use crate::{Store, StoreError, StoreResult, audit, row};

/// A queue as served by `GET /api/v1/queues/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueView {
    /// The name.
    pub name: QueueName,
    /// Whether leasing is paused (enqueues are still accepted).
    pub paused: bool,
    /// Limits.
    pub limits: QueueLimits,
    /// Job count per state; every state is present.
    pub depth: BTreeMap<&'static str, i64>,
    /// Jobs running now.
    pub running: i64,
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
        depth,
        running: 0,
        created_at: Timestamp::from_micros(row::int(r, "created_at")?),
        updated_at: Timestamp::from_micros(row::int(r, "updated_at")?),
    })
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

pub(crate) const QUEUE_COLUMNS: &str =
    "name, paused, rate_per_sec, burst, max_concurrency, created_at, updated_at";

impl Store {
    async fn fill_depths(&self, tenant: &TenantId, queues: &mut [QueueView]) -> StoreResult<()> {
        if queues.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT queue, state, COUNT(*) AS n FROM jobs WHERE tenant = $1 AND queue IN ({}) GROUP BY queue, state",
            list_placeholders(queues.len(), 2)
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
        Ok(())
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
        let now = audit::lock_log(&mut tx, tenant, self.dialect()).await?;
        let current = lock_queue(&mut tx, tenant, name, self.dialect()).await?;
        if current.paused == paused {
            let state = if paused {
                "already paused"
            } else {
                "not paused"
            };
            return Err(StoreError::rejected(
                ReasonCode::InvalidStateTransition,
                format!("queue {name} is {state}"),
            ));
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
        audit::append_in_tx(&mut tx, vec![draft], now).await?;
        tx.commit().await?;
        self.get_queue(tenant, name)
            .await?
            .ok_or_else(|| StoreError::corrupt("queues", "queue vanished after update"))
    }
}
