//! The Worker runner over a few hundred jobs: retries, dead letters, heartbeats that keep
//! long jobs alive, and a graceful stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;
use warden_client::{Client, Job, JobError, NewJob, Worker, WorkerOptions};

use crate::helpers::TestServer;

/// Poll the queue until `state` holds `n` jobs, or panic after `within`.
async fn wait_for(client: &Client, queue: &str, state: &str, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let q = client.queue(queue).await.unwrap();
        if q.count(state) == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue}: wanted {n} {state}, have {:?}",
            q.depth
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_hundreds_of_jobs_with_retries() {
    const JOBS: usize = 400;
    for server in TestServer::all().await {
        let client = server.client().await;
        let jobs: Vec<NewJob> = (0..JOBS)
            .map(|n| {
                let mut j = NewJob::new("work", "add", json!({"n": n}));
                // Every 25th job fails for good; it must not be retried.
                if n % 25 == 0 {
                    j.job_type = "doomed".into();
                    j.max_attempts = Some(5);
                }
                j
            })
            .collect();
        client.enqueue_batch(&jobs).await.unwrap();

        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let calls = calls.clone();
            move |job: Job| {
                calls.fetch_add(1, Ordering::Relaxed);
                async move {
                    let n = job.payload["n"].as_u64().unwrap();
                    if job.job_type == "doomed" {
                        return Err(JobError::permanent(format!("job {n} cannot work")));
                    }
                    // Every 10th job fails on its first attempt and succeeds on the retry.
                    if n % 10 == 1 && job.attempt == 1 {
                        return Err(JobError::retryable("transient trouble"));
                    }
                    Ok(Some(json!({"double": n * 2})))
                }
            }
        };
        let mut options = WorkerOptions::new("it-worker-1", ["work"]);
        options.concurrency = 32;
        options.wait_ms = 500;
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(Worker::new(client.clone(), options).run(handler, stop_rx));

        let doomed = (0..JOBS).filter(|n| n % 25 == 0).count() as i64;
        let retried = (0..JOBS).filter(|n| n % 10 == 1).count();
        wait_for(
            &client,
            "work",
            "succeeded",
            JOBS as i64 - doomed,
            Duration::from_secs(60),
        )
        .await;
        wait_for(
            &client,
            "work",
            "dead_letter",
            doomed,
            Duration::from_secs(5),
        )
        .await;
        stop_tx.send(true).unwrap();
        let stats = worker.await.unwrap().unwrap();

        assert_eq!(stats.completed, (JOBS as i64 - doomed) as u64, "{stats:?}");
        assert_eq!(
            stats.failed,
            (doomed as usize + retried) as u64,
            "{stats:?}"
        );
        assert_eq!(stats.rejected + stats.undelivered, 0, "{stats:?}");
        assert_eq!(stats.leased, (JOBS + retried) as u64, "{stats:?}");
        assert_eq!(calls.load(Ordering::Relaxed), JOBS + retried);
        // Outcomes were coalesced: fewer finish requests than outcomes.
        assert!(
            stats.finish_requests < stats.completed + stats.failed,
            "{stats:?}"
        );
        let q = client.queue("work").await.unwrap();
        assert_eq!(q.count("running"), 0, "{q:?}");
        eprintln!("{:?}: {stats:?}", server.backend);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_errors_are_stored() {
    for server in TestServer::all().await {
        let client = server.client().await;
        let ok = client
            .enqueue(&NewJob::new("store", "ok", json!({"n": 21})))
            .await
            .unwrap();
        let mut bad = NewJob::new("store", "bad", json!({}));
        bad.max_attempts = Some(1);
        let bad = client.enqueue(&bad).await.unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(
            Worker::new(client.clone(), WorkerOptions::new("it-worker-2", ["store"])).run(
                |job: Job| async move {
                    match job.job_type.as_str() {
                        "ok" => Ok(Some(
                            json!({"answer": job.payload["n"].as_i64().unwrap() * 2}),
                        )),
                        _ => panic!("the handler broke"),
                    }
                },
                stop_rx,
            ),
        );
        wait_for(&client, "store", "succeeded", 1, Duration::from_secs(20)).await;
        wait_for(&client, "store", "dead_letter", 1, Duration::from_secs(20)).await;
        stop_tx.send(true).unwrap();
        worker.await.unwrap().unwrap();
        let ok = client.job(&ok.id).await.unwrap();
        assert_eq!(ok.result, Some(json!({"answer": 42})));
        let bad = client.job(&bad.id).await.unwrap();
        assert!(
            bad.last_error
                .as_deref()
                .unwrap_or("")
                .contains("the handler broke"),
            "{bad:?}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_long_jobs_and_a_stop_lets_them_finish() {
    for server in TestServer::all().await {
        let client = server.client().await;
        for n in 0..3 {
            client
                .enqueue(&NewJob::new("slow", "sleep", json!({"n": n})))
                .await
                .unwrap();
        }
        let mut options = WorkerOptions::new("it-worker-3", ["slow"]);
        // A 1 s lease, jobs of 2.5 s: only heartbeats keep them on their first attempt.
        options.lease_seconds = 1;
        options.concurrency = 3;
        options.wait_ms = 200;
        let started = Arc::new(AtomicUsize::new(0));
        let handler = {
            let started = started.clone();
            move |job: Job| {
                started.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(2_500)).await;
                    Ok(Some(json!({"attempt": job.attempt})))
                }
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = tokio::spawn(Worker::new(client.clone(), options).run(handler, stop_rx));
        // Stop while all three run: they must still finish and report.
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "jobs did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop_tx.send(true).unwrap();
        let stats = worker.await.unwrap().unwrap();
        assert_eq!(stats.completed, 3, "{stats:?}");
        assert_eq!(stats.leased, 3, "{stats:?}");
        let q = client.queue("slow").await.unwrap();
        assert_eq!(q.count("succeeded"), 3, "{q:?}");
        server.stop().await;
    }
}
