//! `warden worker`: lease jobs and run a shell command per job — the payload on stdin,
//! the result from stdout, a non-zero exit a (retryable) failure — with a concurrency
//! limit, lease heartbeats, and a graceful stop on SIGTERM or Ctrl-C (no new leases;
//! running jobs finish and report).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};

use crate::args::WorkerArgs;
use crate::client::{Client, Need};

/// Tokens live an hour; get a fresh one well before.
const TOKEN_REFRESH: Duration = Duration::from_secs(30 * 60);
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
    let mut client = Client::connect(&args.conn, Need::Default).await?;
    let mut token_at = Instant::now();
    let registration =
        json!({"queues": args.queues, "types": args.types, "version": env!("CARGO_PKG_VERSION")});
    client
        .call(
            Method::POST,
            &format!("/api/v1/agents/{agent_id}/heartbeat"),
            &[],
            Some(&registration),
        )
        .await
        .context("cannot register the worker")?;
    eprintln!(
        "worker {agent_id}: leasing from {} with concurrency {concurrency}",
        args.queues.join(", ")
    );

    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(stop_signal(stop_tx));
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let exec = Arc::new(args.exec.clone());
    loop {
        if *stop.borrow() {
            break;
        }
        // Wait for a free slot, then take every other free slot too: one lease request
        // fills them all.
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore open"),
            _ = stop.changed() => break,
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        if token_at.elapsed() > TOKEN_REFRESH {
            client = Client::connect(&args.conn, Need::Default).await?;
            token_at = Instant::now();
        }
        let mut body = json!({"agent_id": agent_id, "queues": args.queues, "max_jobs": permits.len(), "lease_seconds": args.lease_seconds, "wait_ms": LONG_POLL_MS});
        if !args.types.is_empty() {
            body["types"] = json!(args.types);
        }
        let leased = tokio::select! {
            r = client.call(Method::POST, "/api/v1/leases", &[], Some(&body)) => r,
            _ = stop.changed() => break,
        };
        let jobs = match leased {
            Ok((_, v)) => v["jobs"].as_array().cloned().unwrap_or_default(),
            Err(e) => {
                eprintln!("worker: lease failed: {e:#}; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for job in jobs {
            let permit = permits.pop().expect("never more jobs than permits");
            let (client, exec, lease_secs) = (client.clone(), exec.clone(), args.lease_seconds);
            tokio::spawn(async move {
                if let Err(e) = run_job(&client, &exec, &job, lease_secs).await {
                    eprintln!("worker: job {}: {e:#}", job["id"]);
                }
                drop(permit);
            });
        }
    }
    // Graceful stop: wait until every running job has reported.
    let _all = slots.acquire_many(concurrency).await;
    eprintln!("worker {agent_id}: stopped");
    Ok(())
}

async fn run_job(client: &Client, exec: &str, job: &Value, lease_secs: u32) -> Result<()> {
    let id = job["id"].as_str().context("job without id")?.to_owned();
    let lease_id = job["lease_id"]
        .as_str()
        .context("job without lease")?
        .to_owned();
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(exec)
        .env("WARDEN_JOB_ID", &id)
        .env("WARDEN_JOB_TYPE", job["type"].as_str().unwrap_or(""))
        .env("WARDEN_JOB_QUEUE", job["queue"].as_str().unwrap_or(""))
        .env("WARDEN_JOB_ATTEMPT", job["attempt"].to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the command")?;
    let mut stdin = child.stdin.take().expect("piped");
    let payload = job["payload"].to_string();
    tokio::spawn(async move {
        // A command that does not read its stdin is fine: ignore the broken pipe.
        let _ = stdin.write_all(payload.as_bytes()).await;
    });
    // Heartbeat at a third of the lease while the command runs.
    let beat = {
        let (client, id, lease_id) = (client.clone(), id.clone(), lease_id.clone());
        tokio::spawn(async move {
            let period = Duration::from_millis((lease_secs as u64 * 1000 / 3).max(200));
            loop {
                tokio::time::sleep(period).await;
                let body = json!({"lease_id": lease_id});
                if let Err(e) = client
                    .call(
                        Method::POST,
                        &format!("/api/v1/jobs/{id}/heartbeat"),
                        &[],
                        Some(&body),
                    )
                    .await
                {
                    eprintln!("worker: job {id}: heartbeat refused ({e:#}); the lease is lost");
                    return;
                }
            }
        })
    };
    let output = child.wait_with_output().await;
    beat.abort();
    let output = output.context("the command could not be waited for")?;
    let elapsed = started.elapsed().as_millis();
    let (path, body) = if output.status.success() {
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let result = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (
            format!("/api/v1/jobs/{id}/complete"),
            json!({"lease_id": lease_id, "result": result}),
        )
    } else {
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
        (
            format!("/api/v1/jobs/{id}/fail"),
            json!({"lease_id": lease_id, "error": error, "retryable": true}),
        )
    };
    let (_, job) = client.call(Method::POST, &path, &[], Some(&body)).await?;
    eprintln!(
        "worker: job {id} {} in {elapsed} ms",
        job["state"].as_str().unwrap_or("?")
    );
    Ok(())
}
