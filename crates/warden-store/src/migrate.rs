//! A small migration runner: each backend's migrations are embedded in the binary and
//! applied in order, each in its own transaction, recorded in `schema_migrations`.

use sqlx::Row;

use crate::{Backend, Store, StoreResult};

/// (version, name, SQLite script, PostgreSQL script).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "audit_no_overwrite",
        include_str!("../migrations/sqlite/0002_audit_no_overwrite.sql"),
        include_str!("../migrations/postgres/0002_audit_no_overwrite.sql"),
    ),
    (
        3,
        "leases",
        include_str!("../migrations/sqlite/0003_leases.sql"),
        include_str!("../migrations/postgres/0003_leases.sql"),
    ),
    (
        4,
        "audit_counts",
        include_str!("../migrations/sqlite/0004_audit_counts.sql"),
        include_str!("../migrations/postgres/0004_audit_counts.sql"),
    ),
    (
        5,
        "limits",
        include_str!("../migrations/sqlite/0005_limits.sql"),
        include_str!("../migrations/postgres/0005_limits.sql"),
    ),
    (
        6,
        "schedules",
        include_str!("../migrations/sqlite/0006_schedules.sql"),
        include_str!("../migrations/postgres/0006_schedules.sql"),
    ),
    (
        7,
        "engine_stats",
        include_str!("../migrations/sqlite/0007_engine_stats.sql"),
        include_str!("../migrations/postgres/0007_engine_stats.sql"),
    ),
    (
        8,
        "jobs_done",
        include_str!("../migrations/sqlite/0008_jobs_done.sql"),
        include_str!("../migrations/postgres/0008_jobs_done.sql"),
    ),
    (
        9,
        "queue_retry",
        include_str!("../migrations/sqlite/0009_queue_retry.sql"),
        include_str!("../migrations/postgres/0009_queue_retry.sql"),
    ),
    (
        10,
        "ledger",
        include_str!("../migrations/sqlite/0010_ledger.sql"),
        include_str!("../migrations/postgres/0010_ledger.sql"),
    ),
    (
        11,
        "audit_search",
        include_str!("../migrations/sqlite/0011_audit_search.sql"),
        include_str!("../migrations/postgres/0011_audit_search.sql"),
    ),
    (
        12,
        "retention",
        include_str!("../migrations/sqlite/0012_retention.sql"),
        include_str!("../migrations/postgres/0012_retention.sql"),
    ),
    (
        13,
        "schedule_pause",
        include_str!("../migrations/sqlite/0013_schedule_pause.sql"),
        include_str!("../migrations/postgres/0013_schedule_pause.sql"),
    ),
    (
        14,
        "bytewise_keys",
        include_str!("../migrations/sqlite/0014_bytewise_keys.sql"),
        include_str!("../migrations/postgres/0014_bytewise_keys.sql"),
    ),
    (
        15,
        "done_retention",
        include_str!("../migrations/sqlite/0015_done_retention.sql"),
        include_str!("../migrations/postgres/0015_done_retention.sql"),
    ),
    (
        16,
        "finished_index_predicate",
        include_str!("../migrations/sqlite/0016_finished_index_predicate.sql"),
        include_str!("../migrations/postgres/0016_finished_index_predicate.sql"),
    ),
    (
        17,
        "queue_depth",
        include_str!("../migrations/sqlite/0017_queue_depth.sql"),
        include_str!("../migrations/postgres/0017_queue_depth.sql"),
    ),
    (
        18,
        "hot_indexes_by_state",
        include_str!("../migrations/sqlite/0018_hot_indexes_by_state.sql"),
        include_str!("../migrations/postgres/0018_hot_indexes_by_state.sql"),
    ),
    (
        19,
        "first_entry_in_row",
        include_str!("../migrations/sqlite/0019_first_entry_in_row.sql"),
        include_str!("../migrations/postgres/0019_first_entry_in_row.sql"),
    ),
    (
        20,
        "type_index_whole",
        include_str!("../migrations/sqlite/0020_type_index_whole.sql"),
        include_str!("../migrations/postgres/0020_type_index_whole.sql"),
    ),
    (
        21,
        "running_counted_by_the_store",
        include_str!("../migrations/sqlite/0021_running_counted_by_the_store.sql"),
        include_str!("../migrations/postgres/0021_running_counted_by_the_store.sql"),
    ),
];

/// The newest migration version this binary knows.
pub(crate) const LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

pub(crate) async fn run(store: &Store) -> StoreResult<()> {
    let mut tx = store.begin_write().await?;
    if store.backend() == Backend::Postgres {
        // Several nodes may start at once; one migrates, the others wait here.
        sqlx::query("SELECT pg_advisory_xact_lock(7254321)")
            .execute(&mut *tx)
            .await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    for &(version, name, sqlite, postgres) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let script = match store.backend() {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        sqlx::raw_sql(script).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(warden_core::time::Timestamp::now().as_micros())
        .execute(&mut *tx)
        .await?;
        tracing::info!(version, name, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn is_current(store: &Store) -> StoreResult<bool> {
    let row = sqlx::query("SELECT MAX(version) AS v FROM schema_migrations")
        .fetch_one(store.read_pool())
        .await?;
    Ok(row.try_get::<Option<i64>, _>("v")? == Some(LATEST))
}
