//! Housekeeping the leader runs periodically.

use crate::{Backend, Store, StoreResult, row};

/// Tables that grow in bulk and are joined or filtered on the hot paths. Statistics of
/// one table alone are not enough: with `audit_entries` analysed and `audit_leaves` not,
/// the planner joined 1,000,000 leaves to find 100 entries (3.9 s instead of 5 ms).
const ANALYZED_TABLES: [&str; 7] = [
    "jobs",
    "job_events",
    "job_deps",
    "audit_entries",
    "audit_leaves",
    "audit_counts",
    "outbox",
];

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
}
