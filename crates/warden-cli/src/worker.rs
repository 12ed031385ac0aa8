//! `warden worker`: lease jobs and run a shell command per job — the payload on stdin,
//! the result from stdout, a non-zero exit a (retryable) failure — with a concurrency
//! limit, lease heartbeats, and a graceful stop on SIGTERM or Ctrl-C (no new leases;
//! running jobs finish and report). The protocol work (token refresh, long-poll leases,
//! heartbeats, batched finishes) is `warden-client`'s [`Worker`]; this file only runs
//! commands.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use warden_client::{Credentials, Job, JobError, Worker, WorkerOptions};

use crate::args::WorkerArgs;

/// How long one lease request waits for work.
const LONG_POLL_MS: u64 = 10_000;
/// How much of stderr a failure reports.
const ERROR_TAIL: usize = 2_048;

async fn stop_signal(tx: watch::Sender<bool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    eprintln!("worker: stopping — no new leases; waiting for running jobs");
    let _ = tx.send(true);
}

pub async fn run(args: WorkerArgs) -> Result<()> {
    let agent_id = args.agent_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let concurrency = args.concurrency.clamp(1, 1_000);
    let id = args
        .conn
        .client_id
        .clone()
        .context("no client id: pass --client-id or set WARDEN_CLIENT_ID")?;
    let secret = args
        .conn
        .client_secret
        .clone()
        .context("no client secret: pass --client-secret or set WARDEN_CLIENT_SECRET")?;
    let client = warden_client::Client::connect(&args.conn.url, Credentials::new(id, secret))
        .await
        .map_err(|e| anyhow!("cannot connect to {}: {e}", args.conn.url))?;
    let mut options = WorkerOptions::new(agent_id.clone(), args.queues.clone());
    options.types = (!args.types.is_empty()).then(|| args.types.clone());
    options.concurrency = concurrency as usize;
    options.lease_seconds = args.lease_seconds;
    options.wait_ms = LONG_POLL_MS;
    options.version = Some(concat!("warden-cli/", env!("CARGO_PKG_VERSION")).into());
    eprintln!(
        "worker {agent_id}: leasing from {} with concurrency {concurrency}",
        args.queues.join(", ")
    );
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(stop_signal(stop_tx));
    let exec = std::sync::Arc::new(args.exec.clone());
    let stats = Worker::new(client, options)
        .run(
            move |job: Job| {
                let exec = exec.clone();
                async move { run_command(&exec, job).await }
            },
            stop,
        )
        .await
        .map_err(|e| anyhow!("worker: {e}"))?;
    eprintln!("worker {agent_id}: stopped ({stats:?})");
    Ok(())
}

/// Run the command for one job: its outcome, as the worker reports it.
async fn run_command(exec: &str, job: Job) -> Result<Option<Value>, JobError> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(exec)
        .env("WARDEN_JOB_ID", &job.id)
        .env("WARDEN_JOB_TYPE", &job.job_type)
        .env("WARDEN_JOB_QUEUE", &job.queue)
        .env("WARDEN_JOB_ATTEMPT", job.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| JobError::retryable(format!("cannot start the command: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let payload = job.payload.to_string();
    tokio::spawn(async move {
        // A command that does not read its stdin is fine: ignore the broken pipe.
        let _ = stdin.write_all(payload.as_bytes()).await;
    });
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| JobError::retryable(format!("the command could not be waited for: {e}")))?;
    let elapsed = started.elapsed().as_millis();
    if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        eprintln!("worker: job {} completed in {elapsed} ms", job.id);
        if text.is_empty() {
            return Ok(None);
        }
        return Ok(Some(
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .chars()
        .rev()
        .take(ERROR_TAIL)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let error = match output.status.code() {
        Some(code) => format!("exit status {code}: {}", tail.trim()),
        None => format!("killed by a signal: {}", tail.trim()),
    };
    eprintln!("worker: job {} failed in {elapsed} ms: {error}", job.id);
    Err(JobError::retryable(error))
}
