//! The store's share of a job's life, without HTTP: how many microseconds of the single
//! writer a job costs to enqueue (batches of 5,000), to lease (256 at a time) and to
//! finish (256 at a time, one `finish_jobs` call). Sequential, one tenant, one queue, so
//! each figure is the serial cost that bounds the engine's throughput on one node.
//!
//! ```sh
//! cargo bench -p warden-store --bench engine_path                       # both backends, 3 runs
//! WARDEN_BENCH_ONLY=sqlite WARDEN_BENCH_RUNS=5 WARDEN_BENCH_JOBS=50000 cargo bench -p warden-store --bench engine_path
//! WARDEN_BENCH_ANALYZE=1 cargo bench -p warden-store --bench engine_path   # with planner statistics
//! WARDEN_BENCH_SETUP_SQL='DROP INDEX jobs_by_type' cargo bench -p warden-store --bench engine_path
//! ```
//!
//! `WARDEN_BENCH_SETUP_SQL` holds statements separated by `;`, or by
//! `WARDEN_BENCH_SETUP_SEP` when they contain `;` themselves (a trigger's body).
//!
//! By default the leases start right after the bulk enqueue, before PostgreSQL has
//! statistics for the new rows (the situation of a fresh deployment or a sudden flood,
//! for up to 5 s until the leader's refresh); `WARDEN_BENCH_ANALYZE` waits 1.2 s and
//! refreshes them first, as the leader would.

use std::time::{Duration, Instant};

use warden_core::jobs::NewJob;
use warden_core::names::{AgentId, QueueName, TenantId};
use warden_store::leases::{FinishItem, LeaseRequest};
use warden_store::testing::{TestDb, bench_job};

/// The allocator the `warden` binary ships with (decision 0013), so these numbers are its.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const ENQUEUE_BATCH: usize = 5_000;
const LEASE_BATCH: u32 = 256;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Microseconds per job of (enqueue, lease, finish) for one fresh store.
async fn run(db: &TestDb, jobs: usize) -> R<[f64; 3]> {
    let store = db.open().await;
    // Schema experiments without a rebuild: statements (`;`-separated) run after the
    // migrations, e.g. `DROP INDEX jobs_by_type`.
    if let Ok(setup) = std::env::var("WARDEN_BENCH_SETUP_SQL") {
        let sep = std::env::var("WARDEN_BENCH_SETUP_SEP").unwrap_or_else(|_| ";".into());
        for stmt in setup.split(sep.as_str()).filter(|s| !s.trim().is_empty()) {
            store.execute_raw(stmt).await?;
        }
    }
    let t = TenantId::parse("acme")?;
    let queue = QueueName::parse("bench")?;
    let new: Vec<NewJob> = (0..jobs).map(|i| bench_job("bench", "noop", i)).collect();
    let started = Instant::now();
    for chunk in new.chunks(ENQUEUE_BATCH) {
        store.enqueue(&t, chunk.to_vec()).await?;
    }
    let enqueue = started.elapsed();
    if std::env::var("WARDEN_BENCH_ANALYZE").is_ok() {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        store.refresh_planner_stats().await?;
    }
    let req = LeaseRequest {
        agent_id: AgentId::parse("bench")?,
        queues: vec![queue],
        types: None,
        max_jobs: LEASE_BATCH,
        lease_secs: 60,
    };
    let (mut lease, mut finish) = (Duration::ZERO, Duration::ZERO);
    let mut done = 0;
    while done < jobs {
        let t0 = Instant::now();
        let got = store.lease_jobs(&t, &req).await?;
        lease += t0.elapsed();
        if got.is_empty() {
            return Err(format!("nothing to lease after {done} of {jobs} jobs").into());
        }
        let items: Vec<FinishItem> = got.iter().map(FinishItem::completed).collect();
        let t1 = Instant::now();
        let outcomes = store.finish_jobs(&t, &items).await?;
        finish += t1.elapsed();
        if outcomes.iter().any(|o| o.is_err()) {
            return Err("a finish was refused".into());
        }
        done += got.len();
    }
    store.close().await;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / jobs as f64;
    Ok([per(enqueue), per(lease), per(finish)])
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

#[tokio::main]
async fn main() -> R<()> {
    let jobs = env_num("WARDEN_BENCH_JOBS", 50_000);
    let runs = env_num("WARDEN_BENCH_RUNS", 3).max(1);
    let only = std::env::var("WARDEN_BENCH_ONLY").unwrap_or_default();
    for backend in ["sqlite", "postgres"] {
        if !only.is_empty() && !only.split(',').any(|o| o == backend) {
            continue;
        }
        let mut results = Vec::new();
        for _ in 0..runs {
            let Some(db) = TestDb::named(backend).await else {
                break; // PostgreSQL unreachable: `TestDb::postgres` said so loudly
            };
            results.push(run(&db, jobs).await?);
        }
        if results.is_empty() {
            continue;
        }
        let mut line = format!("{backend:<8} jobs={jobs} runs={runs}");
        let mut total = 0.0;
        for (i, name) in ["enqueue", "lease", "finish"].iter().enumerate() {
            let (m, lo, hi) = median(results.iter().map(|r| r[i]).collect());
            total += m;
            line.push_str(&format!("  {name} {m:.1} µs/job ({lo:.1}–{hi:.1})"));
        }
        line.push_str(&format!(
            "  sum {total:.1} µs/job = {:.0} jobs/s serial",
            1e6 / total
        ));
        println!("{line}");
    }
    Ok(())
}
