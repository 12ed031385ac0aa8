//! [`Worker`]: lease jobs with long-poll, run a handler on up to `concurrency` of them at
//! once, keep long jobs' leases alive, and report outcomes in batches.
//!
//! Three kinds of task cooperate:
//! - the **lease loop** waits for a free slot, takes every other free slot too, and asks
//!   for that many jobs in one long-polling lease request;
//! - one **job task** per leased job runs the handler (in its own task, so a panic is
//!   reported as a failure) while heartbeating the lease every third of its duration;
//!   its outcome goes to the reporter, then its slot is freed;
//! - the **reporter** takes every outcome waiting (up to a batch) and sends them in one
//!   `POST /api/v1/jobs/finish`, with at most a few such requests in flight: outcomes that
//!   arrive while a request is out are coalesced into the next one.
//!
//! When the stop signal turns true (or its sender is dropped) the lease loop stops — an
//! open long-poll is abandoned; a job the server had claimed for it at that instant comes
//! back when its lease expires — and [`Worker::run`] returns once every running job has
//! finished and every outcome has been reported.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::client::Client;
use crate::error::{ClientError, ClientResult};
use crate::protocol::{
    FinishItem, Job, LeaseRequest, MAX_FINISH_ITEMS, MAX_LEASE_JOBS, MAX_WAIT_MS, Outcome,
};

/// The server refuses failure messages longer than this.
const MAX_ERROR_BYTES: usize = 16 * 1024;
/// Keep finish bodies well under the server's 1 MiB body limit.
const FINISH_BODY_BUDGET: usize = 768 * 1024;
/// Times a finish request is retried when the server is unreachable or overloaded.
const FINISH_RETRIES: u32 = 8;
/// The shortest lease heartbeat period.
const MIN_HEARTBEAT_PERIOD: Duration = Duration::from_millis(200);

/// A handler's failure: its message is stored as the job's `last_error`; a retryable
/// failure is retried with backoff while attempts remain, a permanent one dead-letters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// What went wrong.
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl JobError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry will fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

/// How a [`Worker`] leases and reports.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The agent id the server registers.
    pub agent_id: String,
    /// Queues to lease from.
    pub queues: Vec<String>,
    /// Only these job types, when given.
    pub types: Option<Vec<String>>,
    /// Jobs run at once (default 10).
    pub concurrency: usize,
    /// Lease duration, seconds (default 60); heartbeats go out every third of it.
    pub lease_seconds: u32,
    /// How long one lease request waits for work, milliseconds (default 10,000; at most
    /// 30,000).
    pub wait_ms: u64,
    /// The most outcomes one finish request carries (default 1,000).
    pub max_finish_batch: usize,
    /// Finish requests in flight at once (default 2); outcomes arriving meanwhile are
    /// coalesced.
    pub finish_in_flight: usize,
    /// Agent heartbeat period (default 10 s; the registry calls an agent online for 30 s).
    pub agent_heartbeat_every: Duration,
    /// Version string shown in the agent registry.
    pub version: Option<String>,
}

impl WorkerOptions {
    /// Defaults for an agent leasing from `queues`.
    pub fn new(
        agent_id: impl Into<String>,
        queues: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            agent_id: agent_id.into(),
            queues: queues.into_iter().map(Into::into).collect(),
            types: None,
            concurrency: 10,
            lease_seconds: 60,
            wait_ms: 10_000,
            max_finish_batch: 1_000,
            finish_in_flight: 2,
            agent_heartbeat_every: Duration::from_secs(10),
            version: Some(concat!("warden-client/", env!("CARGO_PKG_VERSION")).into()),
        }
    }

    fn check(&self) -> ClientResult<()> {
        let bad = |m: String| Err(ClientError::Invalid(m));
        if self.queues.is_empty() {
            return bad("a worker needs at least one queue".into());
        }
        if self.concurrency == 0 || self.concurrency > u32::MAX as usize {
            return bad(format!("concurrency {} out of range", self.concurrency));
        }
        if !(1..=3_600).contains(&self.lease_seconds) {
            return bad(format!(
                "lease_seconds {} is not from 1 to 3600",
                self.lease_seconds
            ));
        }
        if self.wait_ms > MAX_WAIT_MS {
            return bad(format!("wait_ms {} is over {MAX_WAIT_MS}", self.wait_ms));
        }
        if !(1..=MAX_FINISH_ITEMS).contains(&self.max_finish_batch) {
            return bad(format!(
                "max_finish_batch {} is not from 1 to {MAX_FINISH_ITEMS}",
                self.max_finish_batch
            ));
        }
        if self.finish_in_flight == 0 {
            return bad("finish_in_flight must be at least 1".into());
        }
        Ok(())
    }
}

/// What a worker did, returned by [`Worker::run`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs leased.
    pub leased: u64,
    /// Completions the server recorded.
    pub completed: u64,
    /// Failures the server recorded.
    pub failed: u64,
    /// Outcomes the server refused (`LEASE_NOT_HELD`: the lease had expired or was
    /// finished elsewhere).
    pub rejected: u64,
    /// Outcomes never delivered (the finish request kept failing); their leases expire.
    pub undelivered: u64,
    /// Lease requests sent.
    pub lease_requests: u64,
    /// Finish requests sent (retries included).
    pub finish_requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    leased: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    undelivered: AtomicU64,
    lease_requests: AtomicU64,
    finish_requests: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            leased: get(&self.leased),
            completed: get(&self.completed),
            failed: get(&self.failed),
            rejected: get(&self.rejected),
            undelivered: get(&self.undelivered),
            lease_requests: get(&self.lease_requests),
            finish_requests: get(&self.finish_requests),
        }
    }
}

/// Runs a handler over the jobs of some queues. See the module documentation.
#[derive(Debug)]
pub struct Worker {
    client: Client,
    options: WorkerOptions,
}

/// A type with no values: what a future that never finishes returns.
enum Never {}

impl Worker {
    /// A worker leasing through `client` as `options` say.
    pub fn new(client: Client, options: WorkerOptions) -> Self {
        Self { client, options }
    }

    /// Register the agent, then lease and run jobs until `stop` turns true (or its sender
    /// is dropped); return when every running job has reported.
    ///
    /// Returns an error if the options are invalid, if the registration is refused, or if
    /// a lease is refused for a reason retrying cannot fix (e.g. `FORBIDDEN_SCOPE`) — in
    /// that case after the running jobs have reported. Transient failures (server down,
    /// 429, 5xx) are retried with backoff.
    pub async fn run<H, F>(
        self,
        handler: H,
        mut stop: watch::Receiver<bool>,
    ) -> ClientResult<WorkerStats>
    where
        H: Fn(Job) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Option<Value>, JobError>> + Send + 'static,
    {
        let Self { client, options } = self;
        options.check()?;
        let types = options.types.clone().unwrap_or_default();
        client
            .agent_heartbeat(
                &options.agent_id,
                &options.queues,
                &types,
                options.version.as_deref(),
            )
            .await?;
        tracing::info!(agent = %options.agent_id, queues = ?options.queues, concurrency = options.concurrency, "worker started");

        let counters = Arc::new(Counters::default());
        let (report_tx, report_rx) =
            mpsc::channel(options.concurrency.max(options.max_finish_batch));
        let reporter = tokio::spawn(report_loop(
            client.clone(),
            report_rx,
            options.max_finish_batch,
            options.finish_in_flight,
            counters.clone(),
        ));
        let beats = tokio::spawn(agent_beats(client.clone(), options.clone()));
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(options.concurrency));
        let heartbeat_every = heartbeat_period(options.lease_seconds);
        let mut request = LeaseRequest {
            agent_id: options.agent_id.clone(),
            queues: options.queues.clone(),
            types: options.types.clone(),
            max_jobs: 1,
            lease_seconds: options.lease_seconds,
            wait_ms: options.wait_ms,
        };
        let mut failures = 0u32;
        let mut fatal = None;
        loop {
            let first = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            };
            // Let jobs that are about to finish free their slots, then take every free
            // slot: one lease request fills them all.
            tokio::task::yield_now().await;
            let mut permits = vec![first];
            while permits.len() < MAX_LEASE_JOBS as usize {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            request.max_jobs = permits.len() as u32;
            Counters::add(&counters.lease_requests, 1);
            let leased = tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                r = client.lease(&request) => r,
            };
            match leased {
                Ok(jobs) => {
                    failures = 0;
                    Counters::add(&counters.leased, jobs.len() as u64);
                    for job in jobs {
                        let Some(permit) = permits.pop() else {
                            tracing::error!(job = %job.id, "the server leased more jobs than asked for");
                            break;
                        };
                        tokio::spawn(run_job(
                            client.clone(),
                            handler.clone(),
                            job,
                            heartbeat_every,
                            report_tx.clone(),
                            permit,
                        ));
                    }
                }
                Err(e) if e.is_transient() => {
                    failures += 1;
                    let pause = e.retry_after().unwrap_or_else(|| backoff(failures));
                    tracing::warn!(error = %e, retry_in = ?pause, "lease failed");
                    drop(permits);
                    tokio::select! {
                        biased;
                        _ = stopped(&mut stop) => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "lease refused; the worker stops");
                    fatal = Some(e);
                    break;
                }
            }
        }
        tracing::info!(agent = %options.agent_id, "worker stopping: waiting for running jobs");
        let _all = slots
            .acquire_many(options.concurrency as u32)
            .await
            .expect("the semaphore is never closed");
        drop(report_tx);
        if let Err(e) = reporter.await {
            tracing::error!(error = %e, "the reporter failed");
        }
        beats.abort();
        let stats = counters.snapshot();
        tracing::info!(agent = %options.agent_id, ?stats, "worker stopped");
        match fatal {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }
}

/// Resolves when `stop` is true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Run one job: the handler in its own task while the lease is kept alive; then hand the
/// outcome to the reporter and free the slot.
async fn run_job<H, F>(
    client: Client,
    handler: Arc<H>,
    job: Job,
    heartbeat_every: Duration,
    reports: mpsc::Sender<FinishItem>,
    permit: OwnedSemaphorePermit,
) where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Option<Value>, JobError>> + Send + 'static,
{
    let (id, lease_id) = (job.id.clone(), job.lease_id.clone());
    let task = tokio::spawn(handler(job));
    let outcome = tokio::select! {
        biased;
        joined = task => outcome_of(joined),
        never = keep_lease(&client, &id, &lease_id, heartbeat_every) => match never {},
    };
    let item = FinishItem {
        id,
        lease_id,
        outcome,
    };
    if reports.send(item).await.is_err() {
        tracing::error!("the reporter is gone; an outcome is lost");
    }
    drop(permit);
}

fn outcome_of(joined: Result<Result<Option<Value>, JobError>, tokio::task::JoinError>) -> Outcome {
    match joined {
        Ok(Ok(result)) => Outcome::Complete { result },
        Ok(Err(e)) => Outcome::Fail {
            error: truncate(e.message, MAX_ERROR_BYTES),
            retryable: e.retryable,
        },
        Err(join) => {
            let why = if join.is_panic() {
                let panic = join.into_panic();
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".into())
            } else {
                "the handler task was cancelled".into()
            };
            Outcome::Fail {
                error: truncate(format!("the handler panicked: {why}"), MAX_ERROR_BYTES),
                retryable: true,
            }
        }
    }
}

/// Heartbeat the lease every `period`, forever; once the lease is lost, keep quiet (the
/// outcome will be refused with `LEASE_NOT_HELD`).
async fn keep_lease(client: &Client, id: &str, lease_id: &str, period: Duration) -> Never {
    loop {
        tokio::time::sleep(period).await;
        match client.heartbeat(id, lease_id).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(job = %id, error = %e, "lease heartbeat failed; retrying");
            }
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "the lease is lost");
                return std::future::pending().await;
            }
        }
    }
}

/// Take the outcomes waiting (up to `max_batch`) whenever a finish request may go out.
async fn report_loop(
    client: Client,
    mut rx: mpsc::Receiver<FinishItem>,
    max_batch: usize,
    in_flight: usize,
    counters: Arc<Counters>,
) {
    let gate = Arc::new(Semaphore::new(in_flight));
    loop {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut batch = Vec::with_capacity(max_batch.min(1_024));
        if rx.recv_many(&mut batch, max_batch).await == 0 {
            break;
        }
        let (client, counters) = (client.clone(), counters.clone());
        tokio::spawn(async move {
            for chunk in chunks_by_size(batch, FINISH_BODY_BUDGET) {
                deliver(&client, &chunk, &counters).await;
            }
            drop(permit);
        });
    }
    let _all = gate.acquire_many(in_flight as u32).await;
}

/// Send one finish request, retrying transient failures; tally the outcomes.
async fn deliver(client: &Client, items: &[FinishItem], counters: &Counters) {
    let mut attempt = 0;
    loop {
        Counters::add(&counters.finish_requests, 1);
        match client.finish(items).await {
            Ok(outcomes) => {
                for (item, answer) in items.iter().zip(outcomes) {
                    if answer.ok {
                        let counter = match item.outcome {
                            Outcome::Complete { .. } => &counters.completed,
                            Outcome::Fail { .. } => &counters.failed,
                        };
                        Counters::add(counter, 1);
                    } else {
                        Counters::add(&counters.rejected, 1);
                        tracing::warn!(job = %item.id, code = ?answer.code, "outcome refused");
                    }
                }
                return;
            }
            Err(e) if e.is_transient() && attempt < FINISH_RETRIES => {
                attempt += 1;
                let pause = e.retry_after().unwrap_or_else(|| backoff(attempt));
                tracing::warn!(error = %e, retry_in = ?pause, items = items.len(), "finish failed");
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                tracing::error!(error = %e, items = items.len(), "finish failed for good; these leases will expire");
                Counters::add(&counters.undelivered, items.len() as u64);
                return;
            }
        }
    }
}

/// Keep the agent registered while the worker runs.
async fn agent_beats(client: Client, options: WorkerOptions) {
    let types = options.types.clone().unwrap_or_default();
    loop {
        tokio::time::sleep(options.agent_heartbeat_every).await;
        if let Err(e) = client
            .agent_heartbeat(
                &options.agent_id,
                &options.queues,
                &types,
                options.version.as_deref(),
            )
            .await
        {
            tracing::warn!(error = %e, "agent heartbeat failed");
        }
    }
}

/// A third of the lease, so two heartbeats may fail before it runs out.
pub fn heartbeat_period(lease_seconds: u32) -> Duration {
    (Duration::from_secs(lease_seconds.into()) / 3).max(MIN_HEARTBEAT_PERIOD)
}

/// The pause after the `attempt`-th consecutive failure: 100 ms doubling up to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    Duration::from_millis(100u64 << exp).min(Duration::from_secs(5))
}

/// `items` in order, cut into runs whose estimated body stays under `budget` bytes (an
/// item larger than the budget goes alone).
pub fn chunks_by_size(items: Vec<FinishItem>, budget: usize) -> Vec<Vec<FinishItem>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for item in items {
        let len = item.approx_len();
        if !current.is_empty() && size + len > budget {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize, error_len: usize) -> FinishItem {
        FinishItem {
            id: format!("job-{n}"),
            lease_id: "lease".into(),
            outcome: if error_len == 0 {
                Outcome::Complete { result: None }
            } else {
                Outcome::Fail {
                    error: "e".repeat(error_len),
                    retryable: true,
                }
            },
        }
    }

    #[test]
    fn heartbeats_come_every_third_of_the_lease() {
        assert_eq!(heartbeat_period(60), Duration::from_secs(20));
        assert_eq!(
            heartbeat_period(1),
            Duration::from_millis(333) + Duration::from_nanos(333_333)
        );
        assert_eq!(heartbeat_period(0), MIN_HEARTBEAT_PERIOD);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(6), Duration::from_millis(3_200));
        assert_eq!(backoff(7), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn chunks_keep_order_and_budget() {
        let items: Vec<_> = (0..10).map(|n| item(n, 0)).collect();
        let one = items[0].approx_len();
        let chunks = chunks_by_size(items.clone(), one * 4);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(chunks.concat(), items);
        // An item over the budget travels alone.
        let big = chunks_by_size(vec![item(0, 0), item(1, 1_000), item(2, 0)], one * 2);
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
        assert!(chunks_by_size(Vec::new(), 10).is_empty());
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }

    #[test]
    fn handler_results_become_outcomes() {
        assert_eq!(
            outcome_of(Ok(Ok(Some(Value::from(1))))),
            Outcome::Complete {
                result: Some(Value::from(1))
            }
        );
        assert_eq!(
            outcome_of(Ok(Err(JobError::permanent("no")))),
            Outcome::Fail {
                error: "no".into(),
                retryable: false
            }
        );
    }

    #[tokio::test]
    async fn panics_are_retryable_failures() {
        let joined = tokio::spawn(async {
            if true {
                panic!("kaboom");
            }
            Ok(None)
        })
        .await;
        match outcome_of(joined) {
            Outcome::Fail { error, retryable } => {
                assert!(error.contains("kaboom"), "{error}");
                assert!(retryable);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_dropped_sender_stops() {
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(1), stopped(&mut rx))
            .await
            .expect("stops");
        let (tx, mut rx) = watch::channel(false);
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), stopped(&mut rx))
            .await
            .expect("stops");
    }

    #[tokio::test]
    async fn invalid_options_are_refused_before_any_request() {
        let client = Client::new("http://127.0.0.1:9", crate::Credentials::new("a", "b")).unwrap();
        let mut o = WorkerOptions::new("a", ["q"]);
        o.concurrency = 0;
        let (_tx, rx) = watch::channel(false);
        let e = Worker::new(client, o)
            .run(|_job| async { Ok(None) }, rx)
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Invalid(_)), "{e}");
    }
}
