//! The three measured workloads. Each runs against a fresh server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::json;
use warden_client::{Client, Credentials, NewJob};

use crate::cpu;
use crate::server::Server;
use crate::stats::percentile;
use crate::workers::{
    SENT_AT_FIELD, WARMUP_FIELD, WorkerConfig, WorkerPool, WorkerReport, unix_micros,
};

/// The queue every workload uses.
pub const QUEUE: &str = "bench";
/// The job type every workload uses.
pub const JOB_TYPE: &str = "noop";

/// Settings shared by the workloads.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Workload {
    /// Jobs in the enqueue and processing workloads.
    #[arg(long, default_value_t = 50_000)]
    pub jobs: usize,
    /// Jobs per `POST /api/v1/jobs/batch`.
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: usize,
    /// Batch requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub enqueue_concurrency: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Single enqueues per second in the latency workload.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Seconds of measured single enqueues in the latency workload.
    #[arg(long, default_value_t = 15)]
    pub latency_secs: u64,
    /// Seconds of warm-up enqueues (same rate, not measured) before them.
    #[arg(long, default_value_t = 1)]
    pub warmup_secs: u64,
}

fn client_for(server: &Server) -> Result<Client> {
    Ok(Client::new(
        &server.url,
        Credentials::new(&server.client_id, &server.client_secret),
    )?)
}

fn batches(w: &Workload) -> Vec<Vec<NewJob>> {
    let jobs: Vec<NewJob> = (0..w.jobs)
        .map(|i| NewJob::new(QUEUE, JOB_TYPE, json!({ "i": i })))
        .collect();
    jobs.chunks(w.batch_size.max(1))
        .map(<[NewJob]>::to_vec)
        .collect()
}

/// Send every batch with `concurrency` requests in flight; answer the time it took.
async fn enqueue_batches(
    client: &Client,
    batches: Vec<Vec<NewJob>>,
    concurrency: usize,
) -> Result<Duration> {
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, batches, next) = (client.clone(), batches.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let ids = client.enqueue_batch(batch).await?;
                ensure!(
                    ids.len() == batch.len(),
                    "a batch answered {} ids for {} jobs",
                    ids.len(),
                    batch.len()
                );
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

/// CPU seconds used over a workload, by whom.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuUse {
    /// By the `warden serve` process.
    pub server_secs: Option<f64>,
    /// By the worker processes together.
    pub workers_secs: Option<f64>,
    /// By the bench's own process (the producer and the polls).
    pub bench_secs: Option<f64>,
    /// By the whole machine, all cores (the rest is PostgreSQL and anything else running).
    pub machine_busy_secs: Option<f64>,
    /// Wall-clock seconds of the measured interval.
    pub wall_secs: f64,
}

/// CPU counters at the start of a measured interval.
struct CpuMark {
    server: Option<f64>,
    bench: Option<f64>,
    machine: Option<f64>,
    at: Instant,
}

impl CpuMark {
    fn now(server: &Server) -> Self {
        Self {
            server: server.pid().and_then(cpu::process_secs),
            bench: cpu::own_secs(),
            machine: cpu::machine_busy_secs(),
            at: Instant::now(),
        }
    }

    /// The use since the mark; `workers` is what the worker processes reported.
    fn since(&self, server: &Server, workers: Option<f64>) -> CpuUse {
        let diff = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        CpuUse {
            server_secs: diff(self.server, server.pid().and_then(cpu::process_secs)),
            workers_secs: workers,
            bench_secs: diff(self.bench, cpu::own_secs()),
            machine_busy_secs: diff(self.machine, cpu::machine_busy_secs()),
            wall_secs: self.at.elapsed().as_secs_f64(),
        }
    }
}

/// What the enqueue workload measured.
#[derive(Debug, Clone, Serialize)]
pub struct Enqueue {
    /// Jobs/s from the first batch sent to the last answered.
    pub jobs_per_sec: f64,
    /// Seconds that took.
    pub secs: f64,
    /// Where the CPU went meanwhile.
    pub cpu: CpuUse,
}

/// (a) Batch enqueue throughput, jobs/s, with no worker running.
pub async fn enqueue(server: &Server, w: &Workload) -> Result<Enqueue> {
    let client = client_for(server)?;
    client.queue(QUEUE).await.err(); // warm the token and a connection
    let all = batches(w);
    let mark = CpuMark::now(server);
    let took = enqueue_batches(&client, all, w.enqueue_concurrency).await?;
    let cpu = mark.since(server, None);
    let q = client.queue(QUEUE).await?;
    ensure!(
        q.count("available") == w.jobs as i64,
        "after the enqueue the queue holds {:?}",
        q.depth
    );
    Ok(Enqueue {
        jobs_per_sec: w.jobs as f64 / took.as_secs_f64(),
        secs: took.as_secs_f64(),
        cpu,
    })
}

/// What the processing workload measured.
#[derive(Debug, Clone, Serialize)]
pub struct Processing {
    /// Jobs/s from the first enqueue until every job succeeded.
    pub jobs_per_sec: f64,
    /// Seconds the enqueue took (while the workers ran).
    pub enqueue_secs: f64,
    /// Seconds until every job succeeded.
    pub total_secs: f64,
    /// Lease requests the workers sent.
    pub lease_requests: u64,
    /// Finish requests the workers sent.
    pub finish_requests: u64,
    /// Where the CPU went from the first enqueue until the workers stopped.
    pub cpu: CpuUse,
}

/// How often the queue's depth is polled, as the peers' harness does (`bench/peers`). A
/// poll reads Warden's depth counters (about 1 ms; decision 0012), but the peers' polls
/// are counts, so the same period keeps the comparison even; the end is seen at most
/// this late (plus one poll), i.e. about 1 % of a 10 s run.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// Poll the queue every [`POLL_EVERY`] until `n` jobs succeeded; answers when that was seen.
async fn until_succeeded(client: &Client, n: i64, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = match client.queue(QUEUE).await {
            Ok(q) => q.count("succeeded"),
            Err(e) if e.code() == Some("UNKNOWN_QUEUE") => 0,
            Err(e) => return Err(e.into()),
        };
        if done >= n {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("only {done} of {n} jobs succeeded within {timeout:?}");
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn check_reports(reports: &[WorkerReport], expected: u64) -> Result<()> {
    let completed: u64 = reports.iter().map(|r| r.completed).sum();
    let bad: u64 = reports
        .iter()
        .map(|r| r.rejected + r.undelivered + r.failed)
        .sum();
    ensure!(
        completed == expected && bad == 0,
        "workers completed {completed} of {expected} jobs ({bad} failed, refused or undelivered)"
    );
    Ok(())
}

/// (b) Processing with the enqueue overlapping: workers first, then the batch enqueue.
pub async fn process(
    server: &Server,
    w: &Workload,
    exe: &std::path::Path,
    cfg: &WorkerConfig,
) -> Result<Processing> {
    let client = client_for(server)?;
    client.queue(QUEUE).await.err();
    let pool = WorkerPool::start(
        exe,
        &server.url,
        &server.client_id,
        &server.client_secret,
        QUEUE,
        w.workers,
        cfg,
    )
    .await?;
    // Let every worker open its first long-poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = batches(w);
    let mark = CpuMark::now(server);
    let started = Instant::now();
    let producer = {
        let (client, concurrency) = (client.clone(), w.enqueue_concurrency);
        tokio::spawn(async move { enqueue_batches(&client, all, concurrency).await })
    };
    let finished = until_succeeded(&client, w.jobs as i64, Duration::from_secs(600)).await;
    let enqueue_took = producer.await.context("the producer panicked")??;
    let finished = finished?;
    let reports = pool.stop().await?;
    let workers_cpu = reports.iter().map(|r| r.cpu_secs).sum::<Option<f64>>();
    let cpu = mark.since(server, workers_cpu);
    check_reports(&reports, w.jobs as u64)?;
    let total = finished - started;
    Ok(Processing {
        jobs_per_sec: w.jobs as f64 / total.as_secs_f64(),
        enqueue_secs: enqueue_took.as_secs_f64(),
        total_secs: total.as_secs_f64(),
        lease_requests: reports.iter().map(|r| r.lease_requests).sum(),
        finish_requests: reports.iter().map(|r| r.finish_requests).sum(),
        cpu,
    })
}

/// What the latency workload measured.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median enqueue→start latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Measured jobs.
    pub samples: usize,
    /// The rate actually achieved by the sender, jobs/s.
    pub achieved_rate: f64,
    /// Where the CPU went from the first send until the workers stopped.
    pub cpu: CpuUse,
}

/// (c) Enqueue→start latency: single enqueues at a steady rate to idle, long-polling
/// workers. Each enqueue is sent on schedule in its own task (an open loop: a slow answer
/// does not delay the next send), with its send time in the payload.
pub async fn latency(
    server: &Server,
    w: &Workload,
    exe: &std::path::Path,
    cfg: &WorkerConfig,
) -> Result<Latency> {
    let client = client_for(server)?;
    client.queue(QUEUE).await.err();
    let pool = WorkerPool::start(
        exe,
        &server.url,
        &server.client_id,
        &server.client_secret,
        QUEUE,
        w.workers,
        cfg,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let period = Duration::from_secs_f64(1.0 / f64::from(w.rate.max(1)));
    let warmup = (w.warmup_secs * u64::from(w.rate)) as usize;
    let measured = (w.latency_secs * u64::from(w.rate)) as usize;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mark = CpuMark::now(server);
    let mut sends = Vec::with_capacity(warmup + measured);
    let mut first_measured = None;
    for i in 0..warmup + measured {
        tick.tick().await;
        if i == warmup {
            first_measured = Some(Instant::now());
        }
        let client = client.clone();
        let is_warmup = i < warmup;
        sends.push(tokio::spawn(async move {
            let mut payload = json!({ "i": i, WARMUP_FIELD: is_warmup });
            payload[SENT_AT_FIELD] = json!(unix_micros());
            client.enqueue(&NewJob::new(QUEUE, JOB_TYPE, payload)).await
        }));
    }
    let sent_for = first_measured.map(|t| t.elapsed()).unwrap_or_default();
    for s in sends {
        s.await.context("a sender panicked")??;
    }
    until_succeeded(
        &client,
        (warmup + measured) as i64,
        Duration::from_secs(120),
    )
    .await?;
    let reports = pool.stop().await?;
    let workers_cpu = reports.iter().map(|r| r.cpu_secs).sum::<Option<f64>>();
    let cpu = mark.since(server, workers_cpu);
    check_reports(&reports, (warmup + measured) as u64)?;
    let mut ms: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.latencies_us.iter().map(|&us| us as f64 / 1_000.0))
        .collect();
    ensure!(
        ms.len() == measured,
        "recorded {} latencies for {measured} jobs",
        ms.len()
    );
    ms.sort_by(f64::total_cmp);
    Ok(Latency {
        p50_ms: percentile(&ms, 50.0).unwrap_or(f64::NAN),
        p99_ms: percentile(&ms, 99.0).unwrap_or(f64::NAN),
        mean_ms: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        samples: ms.len(),
        achieved_rate: measured as f64 / sent_for.as_secs_f64().max(1e-9),
        cpu,
    })
}
