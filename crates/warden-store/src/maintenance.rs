//! Housekeeping the leader runs periodically.

use std::collections::BTreeMap;

use warden_core::time::Timestamp;

use crate::jobs::JOB_COLUMNS;
use crate::sql::{ROWS_PER_STATEMENT, list_placeholders};
use crate::{Backend, Store, StoreResult, row};

/// Tables that grow in bulk and are joined or filtered on the hot paths. Statistics of
/// one table alone are not enough: with `audit_entries` analysed and `audit_leaves` not,
/// the planner joined 1,000,000 leaves to find 100 entries (3.9 s instead of 5 ms).
const ANALYZED_TABLES: [&str; 8] = [
    "jobs",
    "jobs_done",
    "job_events",
    "job_deps",
    "audit_entries",
    "audit_leaves",
    "audit_counts",
    "outbox",
];

/// Whether a hot-table row has finished: exactly the predicate of the `jobs_finished`
/// index, which SQLite uses only for a query that repeats it (migration 0016 says why it
/// is not an `IN` list).
pub(crate) const FINISHED: &str =
    "state = 'succeeded' OR state = 'dead_letter' OR state = 'canceled'";

impl Store {
    /// On PostgreSQL, `ANALYZE` each hot table whose rows changed by more than 1,000 plus
    /// 10 % since its last analysis. Autovacuum does the same, but only once a minute or
    /// slower; a bulk load followed at once by claims or a bulk replay would otherwise be
    /// planned from the statistics of the table as it was before the load. Returns the
    /// tables analysed. A no-op on SQLite, whose planner does not rely on such statistics.
    pub async fn refresh_planner_stats(&self) -> StoreResult<Vec<&'static str>> {
        if self.backend() != Backend::Postgres {
            return Ok(Vec::new());
        }
        let mut analysed = Vec::new();
        for table in ANALYZED_TABLES {
            let r = sqlx::query(
                "SELECT CAST(n_mod_since_analyze AS BIGINT) AS changed, CAST(GREATEST(n_live_tup, 0) AS BIGINT) AS live \
                 FROM pg_stat_user_tables WHERE relname = $1 AND schemaname = current_schema()",
            )
            .bind(table)
            .fetch_optional(self.read_pool())
            .await?;
            let Some(r) = r else { continue };
            let (changed, live) = (row::int(&r, "changed")?, row::int(&r, "live")?);
            if changed > 1_000 + live / 10 {
                sqlx::raw_sql(&format!("ANALYZE {table}"))
                    .execute(self.read_pool())
                    .await?;
                analysed.push(table);
            }
        }
        Ok(analysed)
    }

    /// Move up to `batch` jobs that finished before `cutoff` from the hot table to
    /// `jobs_done`, in one transaction: rows, queue-depth counters, and the dependency
    /// edges the moved jobs no longer need. Returns how many moved.
    pub async fn archive_finished_jobs(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let mut sql = format!(
            "SELECT tenant, id, queue, state FROM jobs \
             WHERE ({FINISHED}) AND updated_at < $1 ORDER BY updated_at LIMIT {batch}"
        );
        if self.backend() == Backend::Postgres {
            // Two movers during a leader handover each take their own rows.
            sql.push_str(" FOR UPDATE SKIP LOCKED");
        }
        let rows = sqlx::query(&sql)
            .bind(cutoff.as_micros())
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let (keys, counts) = tally(&rows)?;
        let now = Timestamp::now().as_micros();
        for (tenant, ids) in by_tenant(&keys) {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let list = list_placeholders(chunk.len(), 3);
                let insert = format!(
                    "INSERT INTO jobs_done (tenant, {JOB_COLUMNS}, moved_at) \
                     SELECT tenant, {JOB_COLUMNS}, $1 FROM jobs WHERE tenant = $2 AND id IN ({list})"
                );
                let list = list_placeholders(chunk.len(), 2);
                let delete_deps =
                    format!("DELETE FROM job_deps WHERE tenant = $1 AND job_id IN ({list})");
                let delete = format!("DELETE FROM jobs WHERE tenant = $1 AND id IN ({list})");
                for (sql, moved_at) in [(insert, Some(now)), (delete_deps, None), (delete, None)] {
                    let sql = crate::sql::for_backend(&tx, sql);
                    let mut q = sqlx::query(&sql);
                    if let Some(at) = moved_at {
                        q = q.bind(at);
                    }
                    q = q.bind(tenant);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
        }
        add_done_counts(&mut tx, counts, 1).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Delete up to `batch` moved jobs that finished before `cutoff`, oldest first, with
    /// their timelines and their share of the queue-depth counters, in one transaction
    /// (`jobs.done_retention_secs`). A job another job still depends on stays (its
    /// dependent reads its state). Returns how many went. Their audit entries stay: the
    /// log is never rewritten, and may name jobs that no longer exist.
    pub async fn purge_done_jobs(&self, cutoff: Timestamp, batch: u32) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let mut sql = format!(
            "SELECT tenant, id, queue, state FROM jobs_done d WHERE updated_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM job_deps p WHERE p.tenant = d.tenant AND p.depends_on = d.id) \
             ORDER BY updated_at LIMIT {batch}"
        );
        if self.backend() == Backend::Postgres {
            sql.push_str(" FOR UPDATE SKIP LOCKED");
        }
        let rows = sqlx::query(&sql)
            .bind(cutoff.as_micros())
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let (keys, counts) = tally(&rows)?;
        for (tenant, ids) in by_tenant(&keys) {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let list = list_placeholders(chunk.len(), 2);
                for sql in [
                    format!("DELETE FROM job_events WHERE tenant = $1 AND job_id IN ({list})"),
                    format!("DELETE FROM jobs_done WHERE tenant = $1 AND id IN ({list})"),
                ] {
                    let sql = crate::sql::for_backend(&tx, sql);
                    let mut q = sqlx::query(&sql).bind(tenant);
                    for id in chunk {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
        }
        add_done_counts(&mut tx, counts, -1).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }
}

/// Jobs per (tenant, queue, state) among `rows` (`tenant, id, queue, state`), and their
/// (tenant, id) keys.
type DoneCounts = BTreeMap<(String, String, String), i64>;

fn tally(rows: &[sqlx::any::AnyRow]) -> StoreResult<(Vec<(String, String)>, DoneCounts)> {
    let mut keys = Vec::with_capacity(rows.len());
    let mut counts = DoneCounts::new();
    for r in rows {
        let tenant = row::text(r, "tenant")?;
        let key = (
            tenant.clone(),
            row::text(r, "queue")?,
            row::text(r, "state")?,
        );
        *counts.entry(key).or_default() += 1;
        keys.push((tenant, row::text(r, "id")?));
    }
    Ok((keys, counts))
}

/// Keys grouped by tenant: per tenant, `tenant = ? AND id IN (…)` is a primary-key search
/// on both backends (SQLite plans a row-value `IN (VALUES …)` as a scan of the whole
/// table); chunks of [`ROWS_PER_STATEMENT`] keep every statement below the limits.
fn by_tenant(keys: &[(String, String)]) -> BTreeMap<&str, Vec<&str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (t, id) in keys {
        out.entry(t.as_str()).or_default().push(id.as_str());
    }
    out
}

/// Add `counts` times `sign` to the queue-depth counters of moved jobs.
async fn add_done_counts(
    conn: &mut sqlx::AnyConnection,
    counts: DoneCounts,
    sign: i64,
) -> StoreResult<()> {
    for ((tenant, queue, state), n) in counts {
        sqlx::query(
            "INSERT INTO jobs_done_counts (tenant, queue, state, n) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, queue, state) DO UPDATE SET n = jobs_done_counts.n + excluded.n",
        )
        .bind(tenant)
        .bind(queue)
        .bind(state)
        .bind(sign * n)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FINISHED;
    use crate::testing::TestDb;

    #[tokio::test]
    async fn the_mover_finds_finished_jobs_through_the_partial_index_on_sqlite() {
        let db = TestDb::sqlite();
        let store = db.open().await;
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT tenant, id, queue, state FROM jobs \
             WHERE ({FINISHED}) AND updated_at < 1 ORDER BY updated_at LIMIT 10"
        );
        let rows = sqlx::query(&sql)
            .fetch_all(store.read_pool())
            .await
            .unwrap();
        let details: Vec<String> = rows
            .iter()
            .map(|r| crate::row::text(r, "detail").unwrap())
            .collect();
        assert!(
            details
                .iter()
                .any(|d| d.contains("USING INDEX jobs_finished")),
            "the predicate must match the index's exactly: {details:?}"
        );
    }
}
