//! Worker processes: the bench re-executes itself as `warden-bench worker`, each child
//! running warden-client's [`Worker`] with a no-op handler. A child prints `READY` once it
//! holds a token, runs until its stdin closes, then prints one JSON line with its
//! counters and the enqueue→start latencies it saw.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use warden_client::{Client, Credentials, Job, Worker, WorkerOptions};

/// The payload field carrying the enqueue request's send time (Unix microseconds).
pub const SENT_AT_FIELD: &str = "sent_at_us";
/// The payload field marking warm-up jobs, whose latency is not recorded.
pub const WARMUP_FIELD: &str = "warmup";

/// Now, in Unix microseconds (the wall clock every process on the machine shares).
pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// How the worker processes run.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    /// Jobs each worker process runs at once (lease size is capped by the server at 1,000).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Lease duration, seconds.
    #[arg(long, default_value_t = 60)]
    pub lease_seconds: u32,
    /// Long-poll wait of each lease request, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub wait_ms: u64,
    /// Outcomes per finish request at most.
    #[arg(long, default_value_t = 1_000)]
    pub max_finish_batch: usize,
    /// Finish requests in flight per worker process.
    #[arg(long, default_value_t = 2)]
    pub finish_in_flight: usize,
    /// Tokio worker threads per worker process (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

impl WorkerConfig {
    fn to_args(&self) -> Vec<String> {
        vec![
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--lease-seconds".into(),
            self.lease_seconds.to_string(),
            "--wait-ms".into(),
            self.wait_ms.to_string(),
            "--max-finish-batch".into(),
            self.max_finish_batch.to_string(),
            "--finish-in-flight".into(),
            self.finish_in_flight.to_string(),
            "--threads".into(),
            self.threads.to_string(),
        ]
    }
}

/// What a worker process reports when it stops.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Jobs leased.
    pub leased: u64,
    /// Completions recorded by the server.
    pub completed: u64,
    /// Failures recorded by the server.
    pub failed: u64,
    /// Outcomes refused by the server.
    pub rejected: u64,
    /// Outcomes never delivered.
    pub undelivered: u64,
    /// Lease requests sent.
    pub lease_requests: u64,
    /// Finish requests sent.
    pub finish_requests: u64,
    /// CPU seconds (user + system) the process used.
    pub cpu_secs: Option<f64>,
    /// Enqueue→start latency of each non-warm-up job carrying a send time, microseconds.
    pub latencies_us: Vec<i64>,
}

/// `warden-bench worker`: run one worker until stdin closes.
pub async fn worker_main(url: &str, queue: &str, agent_id: &str, cfg: &WorkerConfig) -> Result<()> {
    let id = std::env::var("WARDEN_CLIENT_ID").context("WARDEN_CLIENT_ID is not set")?;
    let secret =
        std::env::var("WARDEN_CLIENT_SECRET").context("WARDEN_CLIENT_SECRET is not set")?;
    let client = Client::connect(url, Credentials::new(id, secret)).await?;
    let mut options = WorkerOptions::new(agent_id, [queue]);
    options.concurrency = cfg.concurrency;
    options.lease_seconds = cfg.lease_seconds;
    options.wait_ms = cfg.wait_ms;
    options.max_finish_batch = cfg.max_finish_batch;
    options.finish_in_flight = cfg.finish_in_flight;

    let latencies = Arc::new(Mutex::new(Vec::<i64>::new()));
    let handler = {
        let latencies = latencies.clone();
        move |job: Job| {
            // The job has been received: this is the moment latency is measured to.
            let now = unix_micros();
            if job.payload.get(WARMUP_FIELD).and_then(Value::as_bool) != Some(true)
                && let Some(sent) = job.payload.get(SENT_AT_FIELD).and_then(Value::as_i64)
            {
                latencies.lock().expect("latency lock").push(now - sent);
            }
            async { Ok(None) }
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Stop when the parent closes our stdin (or dies).
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        let _ = stop_tx.send(true);
    });
    println!("READY");
    let stats = Worker::new(client, options).run(handler, stop_rx).await?;
    let report = WorkerReport {
        leased: stats.leased,
        completed: stats.completed,
        failed: stats.failed,
        rejected: stats.rejected,
        undelivered: stats.undelivered,
        lease_requests: stats.lease_requests,
        finish_requests: stats.finish_requests,
        cpu_secs: crate::cpu::own_secs(),
        latencies_us: std::mem::take(&mut *latencies.lock().expect("latency lock")),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

/// Worker processes serving one queue.
pub struct WorkerPool {
    procs: Vec<Proc>,
}

impl WorkerPool {
    /// Start `n` worker processes of the executable `exe` and wait until each has a token.
    pub async fn start(
        exe: &Path,
        url: &str,
        client_id: &str,
        client_secret: &str,
        queue: &str,
        n: usize,
        cfg: &WorkerConfig,
    ) -> Result<Self> {
        let mut procs = Vec::with_capacity(n);
        for i in 0..n {
            let mut child = Command::new(exe)
                .arg("worker")
                .args(["--url", url, "--queue", queue])
                .args(["--agent-id", &format!("bench-{}-{i}", std::process::id())])
                .args(cfg.to_args())
                .env("WARDEN_CLIENT_ID", client_id)
                .env("WARDEN_CLIENT_SECRET", client_secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a worker process")?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take().expect("piped");
            procs.push(Proc {
                child,
                stdin,
                lines: BufReader::new(stdout).lines(),
            });
        }
        for (i, p) in procs.iter_mut().enumerate() {
            match p.lines.next_line().await? {
                Some(l) if l.trim() == "READY" => {}
                other => bail!("worker {i} did not start: {other:?}"),
            }
        }
        Ok(Self { procs })
    }

    /// Close every worker's stdin (a graceful stop) and collect their reports.
    pub async fn stop(mut self) -> Result<Vec<WorkerReport>> {
        for p in &mut self.procs {
            p.stdin.take();
        }
        let mut reports = Vec::with_capacity(self.procs.len());
        for (i, mut p) in self.procs.into_iter().enumerate() {
            let mut last = None;
            while let Some(line) = p.lines.next_line().await? {
                last = Some(line);
            }
            let status = p.child.wait().await?;
            if !status.success() {
                bail!("worker {i} exited with {status}");
            }
            let line = last.with_context(|| format!("worker {i} printed no report"))?;
            reports.push(
                serde_json::from_str(&line)
                    .with_context(|| format!("worker {i} printed a bad report: {line}"))?,
            );
        }
        Ok(reports)
    }
}
