//! Claim speed against a large history of finished jobs: does a lease cost the same with
//! 10,000,000 finished jobs as with none? Three layouts per backend:
//!
//! - `empty`: no finished jobs;
//! - `moved`: N finished jobs in `jobs_done` (what the hot-table move produces);
//! - `kept`: the same N finished jobs left in `jobs` (what graphile-worker and pg-boss
//!   users live with until they prune).
//!
//! Each layout gets 2,000 available jobs in one queue; a worker loop then leases one job
//! and completes it, 1,000 times, and the p50/p99 of the lease and of the finish are
//! reported, plus the time to seed. The rows are written with SQL (generate_series on
//! PostgreSQL, a recursive CTE on SQLite) and the planner statistics refreshed, as the
//! server's leader would.
//!
//! ```sh
//! cargo bench -p warden-store --bench hot_table                      # N = 10,000,000
//! WARDEN_BENCH_FINISHED=1000000 WARDEN_BENCH_ONLY=postgres cargo bench -p warden-store --bench hot_table
//! ```

use std::time::{Duration, Instant};

use warden_core::jobs::NewJob;
use warden_core::names::{AgentId, QueueName, TenantId};
use warden_store::leases::{FinishItem, LeaseRequest};
use warden_store::testing::{TestDb, bench_job};
use warden_store::{Backend, Store};

/// The allocator the `warden` binary ships with (decision 0013), so these numbers are its.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const READY: usize = 2_000;
const ROUNDS: usize = 1_000;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

/// N finished jobs of tenant `acme`, queue `mail`, written straight into `table`.
async fn seed(store: &Store, backend: Backend, table: &str, n: u64) -> R<()> {
    if n == 0 {
        return Ok(());
    }
    let extra = if table == "jobs_done" {
        ", moved_at"
    } else {
        ""
    };
    let extra_v = if table == "jobs_done" { ", 0" } else { "" };
    // Ids sort before every UUIDv7 the run creates (prefix 0000…), states mixed 98/1/1 %.
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO {table} (tenant, id, queue, job_type, payload, priority, state, attempt, max_attempts, \
             run_at, created_at, updated_at, depends_on{extra}) \
             SELECT 'acme', '00000000-' || lpad(to_hex(g), 27, '0'), 'mail', 'send', '{{}}', 0, \
             CASE WHEN g % 100 = 0 THEN 'dead_letter' WHEN g % 100 = 1 THEN 'canceled' ELSE 'succeeded' END, \
             1, 3, g, g, g, '[]'{extra_v} FROM generate_series(1, {n}) AS g"
        ),
        _ => format!(
            "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) \
             INSERT INTO {table} (tenant, id, queue, job_type, payload, priority, state, attempt, max_attempts, \
             run_at, created_at, updated_at, depends_on{extra}) \
             SELECT 'acme', '00000000-' || printf('%027x', g), 'mail', 'send', '{{}}', 0, \
             CASE WHEN g % 100 = 0 THEN 'dead_letter' WHEN g % 100 = 1 THEN 'canceled' ELSE 'succeeded' END, \
             1, 3, g, g, g, '[]'{extra_v} FROM s"
        ),
    };
    store.execute_raw(&sql).await?;
    if table == "jobs_done" {
        store
            .execute_raw(&format!(
                "INSERT INTO jobs_done_counts (tenant, queue, state, n) VALUES ('acme', 'mail', 'succeeded', {n})"
            ))
            .await?;
    }
    if backend == Backend::Postgres {
        store.execute_raw(&format!("ANALYZE {table}")).await?;
    } else {
        store.execute_raw("ANALYZE").await?;
    }
    Ok(())
}

async fn run(db: &TestDb, layout: &str, n: u64) -> R<()> {
    let store = db.open().await;
    let t = TenantId::parse("acme")?;
    let started = Instant::now();
    match layout {
        "moved" => seed(&store, db.backend, "jobs_done", n).await?,
        "kept" => seed(&store, db.backend, "jobs", n).await?,
        _ => {}
    }
    let seeded = started.elapsed();
    let jobs: Vec<NewJob> = (0..READY).map(|i| bench_job("mail", "send", i)).collect();
    for chunk in jobs.chunks(500) {
        store.enqueue(&t, chunk.to_vec()).await?;
    }
    let req = LeaseRequest {
        agent_id: AgentId::parse("bench")?,
        queues: vec![QueueName::parse("mail")?],
        types: None,
        max_jobs: 1,
        lease_secs: 60,
    };
    let (mut lease, mut finish) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        let got = store.lease_jobs(&t, &req).await?;
        lease.push(t0.elapsed());
        let j = got.first().ok_or("no job to lease")?;
        let t1 = Instant::now();
        store.finish_jobs(&t, &[FinishItem::completed(j)]).await?;
        finish.push(t1.elapsed());
    }
    println!(
        "{:<9} {:<6} finished={:<9} seed={:>7.1}s  lease p50={:.2}ms p99={:.2}ms  finish p50={:.2}ms p99={:.2}ms",
        format!("{:?}", db.backend),
        layout,
        if layout == "empty" { 0 } else { n },
        seeded.as_secs_f64(),
        pct(&mut lease, 0.5),
        pct(&mut lease, 0.99),
        pct(&mut finish, 0.5),
        pct(&mut finish, 0.99),
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> R<()> {
    let n: u64 = std::env::var("WARDEN_BENCH_FINISHED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // Selection words: backends (sqlite, postgres) and layouts (empty, moved, kept); a
    // group with no word chosen runs whole.
    let only: Vec<String> = std::env::var("WARDEN_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let pick = |group: &[&'static str]| -> Vec<&'static str> {
        let chosen: Vec<&'static str> = group
            .iter()
            .copied()
            .filter(|g| only.iter().any(|o| o == g))
            .collect();
        if chosen.is_empty() {
            group.to_vec()
        } else {
            chosen
        }
    };
    for layout in pick(&["empty", "moved", "kept"]) {
        for backend in pick(&["sqlite", "postgres"]) {
            let Some(db) = TestDb::named(backend).await else {
                continue; // PostgreSQL unreachable: `TestDb::postgres` said so loudly
            };
            run(&db, layout, n).await?;
        }
    }
    Ok(())
}
