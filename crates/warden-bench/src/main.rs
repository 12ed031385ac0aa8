//! `warden-bench`: the engine benchmark, through the real HTTP API of a `warden serve`
//! process, with workers in separate OS processes (this binary re-executed as
//! `warden-bench worker`, each running warden-client's `Worker` with a no-op handler).
//!
//! Workloads, each run against a fresh server and store, repeated `--runs` times:
//! - **enqueue**: jobs/s enqueuing `--jobs` through `POST /api/v1/jobs/batch` in batches
//!   of `--batch-size`, `--enqueue-concurrency` requests in flight, no worker running;
//! - **process**: workers start, then the same enqueue runs; jobs/s from the first enqueue
//!   until every job is `succeeded` (polling `GET /api/v1/queues/bench` every 100 ms);
//! - **latency**: single `POST /api/v1/jobs` at a steady `--rate` for `--latency-secs` to
//!   idle long-polling workers; latency = when the worker receives the job minus when the
//!   enqueue was sent (the send time travels in the payload), p50 and p99.
//!
//! Prints a human table on stderr and, with `--json FILE`, a JSON summary.
//!
//! # Layout
//! - [`server`]: a `warden serve` process over a fresh SQLite directory or PostgreSQL database.
//! - [`workers`]: the worker processes and the `worker` mode.
//! - [`workloads`]: the three workloads. [`stats`]: medians, ranges, percentiles.
//! - [`cpu`]: CPU seconds of the server, the workers and the machine, from `/proc`.
#![forbid(unsafe_code)]

mod cpu;
mod server;
mod stats;
mod workers;
mod workloads;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::server::{Server, Store};
use crate::stats::Summary;
use crate::workers::WorkerConfig;
use crate::workloads::Workload;

#[derive(Parser)]
#[command(
    name = "warden-bench",
    about = "Warden engine benchmark (enqueue, processing, latency)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the workloads and print the results.
    Run(RunArgs),
    /// (internal) One worker process; stops when stdin closes.
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        url: String,
        #[arg(long)]
        queue: String,
        #[arg(long)]
        agent_id: String,
        #[command(flatten)]
        config: WorkerConfig,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The `warden` binary to serve with (a release build).
    #[arg(long, env = "WARDEN_BIN", default_value = "target/release/warden")]
    warden_bin: PathBuf,
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// For `postgres`: a URL from which `CREATE DATABASE` works; each server gets a fresh
    /// database on that PostgreSQL server, dropped afterwards.
    #[arg(
        long,
        env = "BENCH_PG_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pg_admin_url: String,
    /// Repetitions of every workload.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Comma-separated subset of `enqueue,process,latency`.
    #[arg(long, default_value = "enqueue,process,latency")]
    only: String,
    /// Write the JSON summary here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep each server's data directory and log (and database) for inspection.
    #[arg(long)]
    keep: bool,
    /// `WARDEN_SQLITE__SYNCHRONOUS` for the server (default: the server's own, FULL).
    #[arg(long)]
    sqlite_synchronous: Option<String>,
    #[command(flatten)]
    workload: Workload,
    #[command(flatten)]
    worker: WorkerConfig,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker {
            url,
            queue,
            agent_id,
            config,
        } => {
            let mut rt = if config.threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(config.threads);
                b
            };
            rt.enable_all()
                .build()?
                .block_on(workers::worker_main(&url, &queue, &agent_id, &config))
        }
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(run(args)),
    }
}

#[derive(Serialize, Default)]
struct RunResult {
    enqueue: Option<workloads::Enqueue>,
    process: Option<workloads::Processing>,
    latency: Option<workloads::Latency>,
}

async fn run(args: RunArgs) -> Result<()> {
    let store = match args.backend.as_str() {
        "sqlite" => Store::Sqlite,
        "postgres" | "postgresql" => Store::Postgres {
            admin_url: args.pg_admin_url.clone(),
        },
        other => bail!("--backend must be sqlite or postgres, not {other}"),
    };
    let wanted: Vec<&str> = args.only.split(',').map(str::trim).collect();
    for w in &wanted {
        if !["enqueue", "process", "latency"].contains(w) {
            bail!("unknown workload {w}");
        }
    }
    if !args.warden_bin.exists() {
        bail!(
            "no warden binary at {} (cargo build -p warden-cli --release, or pass --warden-bin)",
            args.warden_bin.display()
        );
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut env = Vec::new();
    if let Some(s) = &args.sqlite_synchronous {
        env.push(("WARDEN_SQLITE__SYNCHRONOUS".to_owned(), s.clone()));
    }
    let load_at_start = load_average();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let w = &args.workload;
    eprintln!(
        "warden-bench: {} backend, {} runs; {} jobs, batches of {} ({} in flight), {} worker processes × concurrency {}",
        store.label(),
        args.runs,
        w.jobs,
        w.batch_size,
        w.enqueue_concurrency,
        w.workers,
        args.worker.concurrency
    );
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let mut result = RunResult::default();
        for workload in &wanted {
            let server = Server::start(&args.warden_bin, &store, &env).await?;
            let outcome = match *workload {
                "enqueue" => workloads::enqueue(&server, w)
                    .await
                    .map(|r| result.enqueue = Some(r)),
                "process" => workloads::process(&server, w, &exe, &args.worker)
                    .await
                    .map(|r| result.process = Some(r)),
                _ => workloads::latency(&server, w, &exe, &args.worker)
                    .await
                    .map(|r| result.latency = Some(r)),
            };
            let log = server.log_path();
            let kept = server.stop(args.keep || outcome.is_err()).await?;
            if let Err(e) = outcome {
                let where_ = kept
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| log.display().to_string());
                return Err(e.context(format!(
                    "run {run}, workload {workload} (server files kept in {where_})"
                )));
            }
            if let Some(p) = kept {
                eprintln!("warden-bench: kept {}", p.display());
            }
        }
        eprintln!(
            "run {run}: enqueue {} jobs/s; process {} jobs/s; latency p50 {} ms, p99 {} ms",
            fmt(result.enqueue.as_ref().map(|e| e.jobs_per_sec)),
            fmt(result.process.as_ref().map(|p| p.jobs_per_sec)),
            fmt(result.latency.as_ref().map(|l| l.p50_ms)),
            fmt(result.latency.as_ref().map(|l| l.p99_ms)),
        );
        runs.push(result);
    }

    let pick = |f: &dyn Fn(&RunResult) -> Option<f64>| -> Option<Summary> {
        Summary::of(&runs.iter().filter_map(f).collect::<Vec<_>>())
    };
    let summary = json!({
        "enqueue_jobs_per_sec": pick(&|r| r.enqueue.as_ref().map(|e| e.jobs_per_sec)),
        "process_jobs_per_sec": pick(&|r| r.process.as_ref().map(|p| p.jobs_per_sec)),
        "latency_p50_ms": pick(&|r| r.latency.as_ref().map(|l| l.p50_ms)),
        "latency_p99_ms": pick(&|r| r.latency.as_ref().map(|l| l.p99_ms)),
    });
    let out = json!({
        "system": format!("warden-{}", store.label()),
        "started_at_unix": started_at,
        "settings": {
            "workload": w,
            "worker_processes": w.workers,
            "worker_concurrency": args.worker.concurrency,
            "worker_threads": args.worker.threads,
            "lease_seconds": args.worker.lease_seconds,
            "wait_ms": args.worker.wait_ms,
            "max_finish_batch": args.worker.max_finish_batch,
            "finish_in_flight": args.worker.finish_in_flight,
            "sqlite_synchronous": args.sqlite_synchronous.clone().unwrap_or_else(|| "server default (FULL)".into()),
        },
        "load_average": {"start": load_at_start, "end": load_average()},
        "runs": runs,
        "summary": summary,
    });
    eprintln!();
    eprintln!(
        "{}",
        table(&format!("warden ({})", store.label()), &summary)
    );
    let text = serde_json::to_string_pretty(&out)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`): how busy the shared machine was.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

fn fmt(v: Option<f64>) -> String {
    match v {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

fn table(title: &str, summary: &serde_json::Value) -> String {
    let mut s = format!(
        "{title}\n{:<26} {:>12} {:>22}\n",
        "metric", "median", "range (min–max)"
    );
    for (key, label) in [
        ("enqueue_jobs_per_sec", "batch enqueue, jobs/s"),
        ("process_jobs_per_sec", "processing, jobs/s"),
        ("latency_p50_ms", "latency p50, ms"),
        ("latency_p99_ms", "latency p99, ms"),
    ] {
        let v = &summary[key];
        if v.is_null() {
            continue;
        }
        let g = |k: &str| v[k].as_f64();
        s.push_str(&format!(
            "{label:<26} {:>12} {:>22}\n",
            fmt(g("median")),
            format!("{}–{}", fmt(g("min")), fmt(g("max")))
        ));
    }
    s
}
