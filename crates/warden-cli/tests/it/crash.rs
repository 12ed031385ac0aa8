//! Crash test: the real `warden serve` under load, killed with SIGKILL at random moments
//! and restarted on the same store, must keep every acknowledged action and finish every
//! job exactly once. Run on SQLite (a temp data dir) and on PostgreSQL (a fresh database).
//!
//! # Scenario
//!
//! - The server runs on a fixed port, chosen once per run below Linux's ephemeral range
//!   (32768–60999) so no client socket — ours included — is handed that port while the
//!   server is down, and kept across restarts. Two clients are created with
//!   `warden clients create --json`: a worker (`Orch.Worker`, enqueues and works) and a
//!   viewer (`Orch.Viewer`, checks). Their tokens are fetched once and must stay valid
//!   across restarts (the signing keys live in the store).
//! - Load, in tokio tasks talking plain HTTP:
//!   - [`ENQUEUERS`] enqueuers, each job tagged with a unique `payload.n`: single enqueues
//!     (never resent, so each `n` may exist at most once); single enqueues with an
//!     idempotency key, or with a client-chosen id, resent through the outage until the
//!     server answers (a keyed resend must return the same job, a chosen-id resend may
//!     only be refused `DUPLICATE_JOB_ID` when an earlier try may have committed); batches
//!     with keys, chosen ids and `depends_on` chains inside the batch, resent likewise;
//!     batches without keys, never resent (they must exist all or nothing); some singles
//!     depend on earlier acknowledged jobs; acknowledged keyed jobs are sometimes enqueued
//!     again later, possibly after a crash, and must come back `200` with the same id.
//!   - Job plans (`payload.plan`): `ok` succeeds; `flaky` fails (retryable) while its
//!     attempt is at most `fail_until`, with `max_attempts` 2–4 (so some dead-letter);
//!     `fatal` fails non-retryably; `slow` works 1.2–2.6 s under a 2 s lease with
//!     heartbeats, so crashes cut through live leases.
//!   - [`WORKERS`] workers lease from two queues (`lease_seconds` 2, `max_jobs` 1–8,
//!     long-poll 500 ms), abandon 3 % of their jobs (the lease must expire and the job come
//!     back), and finish through single `complete`/`fail` or batch `POST /jobs/finish`,
//!     resending a finish through the outage until the server answers.
//!   - Every acknowledged enqueue (2xx), completion and failure (2xx / `ok: true`) is
//!     recorded, as is every result a worker ever *sent*. Transport errors during an
//!     outage are expected: the outcome is then unknown, and the checks allow both.
//! - [`KILLS`] times, after 1.5–4 s of load, the server gets SIGKILL (`Child::kill`), stays
//!   down 0–0.8 s, and is restarted on the same store and port (ready at `/readyz`).
//! - After the last restart: 2 s more load, enqueuers stop, workers drain until no job of
//!   either queue is pending, available, running or retrying, then workers stop. The drain
//!   fails (naming unfinished jobs and their timelines) when the count stops falling for
//!   [`DRAIN_STALL`] or the drain exceeds [`DRAIN_CAP`]: a job stuck forever is a finding.
//!
//! # Checks (through the HTTP API: the job list, and `GET /api/v1/jobs/{id}` with its timeline)
//!
//! - No loss: every acknowledged enqueue exists, with the acknowledged id.
//! - No duplicate: no id is listed twice; no `payload.n` exists twice; no idempotency key
//!   is on two jobs and every answer for a key named the same job; a batch exists whole
//!   or not at all; no job exists that no enqueuer tried to create.
//! - Every acknowledged completion is `succeeded` with exactly that result and attempt,
//!   and at most one completion per job was acknowledged; every acknowledged failure
//!   appears in the timeline at its attempt; a `succeeded` job's result is one a worker
//!   sent for it.
//! - Every job is terminal (`succeeded`, `dead_letter`, `canceled`), its timeline follows
//!   the state machine of DESIGN.md §2 entry by entry (attempts +1 per lease, nothing
//!   after a terminal entry) and holds exactly one terminal entry, the last, matching the
//!   job's state; attempts never exceed `max_attempts`; a `succeeded` job's dependencies
//!   all succeeded; a `canceled` one (nobody cancels here) is `UPSTREAM_FAILED` with a
//!   failed dependency.
//! - No answer outside the contract: a 5xx, a 401 after a restart, an unexpected 4xx, an
//!   enqueue or finish answer that does not match its request, or a lease that names the
//!   same job twice.
//!
//! Failures are grouped by kind (`lost`, `undone`, `duplicate`, `timeline`, `contract`, …)
//! with a few examples each. Each backend takes about 35–45 s (the two run in parallel;
//! most of it is load, the drain of the backlog it leaves, and the checks). The seed is printed; `WARDEN_CRASH_SEED=<seed>`
//! replays the same kill schedule and the same choices of every task (thread timing, and
//! so which requests a kill cuts, still varies). On failure the SQLite data dir or the
//! PostgreSQL database is kept for inspection, and the server log's tail is printed.
//! PostgreSQL comes from `WARDEN_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) through `psql`; when it is unreachable
//! the PostgreSQL run is SKIPPED loudly, or fails under `CI=true`.
#![cfg(unix)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{run, stderr, warden};

/// How many times the server is killed.
const KILLS: usize = 5;
const ENQUEUERS: u64 = 3;
const WORKERS: u64 = 4;
const QUEUES: [&str; 2] = ["crash-a", "crash-b"];
const LEASE_SECS: u64 = 2;
/// Percent of leased jobs a worker walks away from.
const ABANDON_PERCENT: u64 = 3;
/// The drain fails when the number of unfinished jobs has not fallen for this long (the
/// longest legitimate wait is a 4 s retry backoff or a 2 s lease plus the 1 s sweep)…
const DRAIN_STALL: Duration = Duration::from_secs(20);
/// …or when it takes longer than this altogether.
const DRAIN_CAP: Duration = Duration::from_secs(90);
/// How long a request is resent while the server does not answer.
const RESEND_FOR: Duration = Duration::from_secs(60);
const TERMINAL: [&str; 3] = ["succeeded", "dead_letter", "canceled"];

// ---------------------------------------------------------------------------------------
// Randomness: a seeded splitmix64, so a failing run can be replayed.

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// In `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// An independent stream for task `stream`.
    fn fork(&self, stream: u64) -> Rng {
        let mut r = Rng(self.0 ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
}

fn entropy() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut r = Rng(nanos ^ ((std::process::id() as u64) << 32));
    r.next()
}

fn seed() -> u64 {
    std::env::var("WARDEN_CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(entropy)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------
// The server process.

/// A free port below the ephemeral range, so that no outgoing connection is given it
/// while the server is down between a kill and its restart.
fn pick_port() -> u16 {
    let mut r = Rng(entropy());
    for _ in 0..500 {
        let port = r.range(20_000, 32_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// The last `lines` lines of the server log, without the per-request lines.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(r#""message":"request""#))
        .collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `warden serve` on a fixed address and store, killed and restarted at will.
struct Node {
    child: Option<Child>,
    listen: String,
    url: String,
    store_args: Vec<String>,
    log: PathBuf,
    starts: u32,
}

impl Node {
    fn new(store_args: Vec<String>, log: PathBuf) -> Self {
        let listen = format!("127.0.0.1:{}", pick_port());
        Self {
            child: None,
            url: format!("http://{listen}"),
            listen,
            store_args,
            log,
            starts: 0,
        }
    }

    /// Start the server and wait until `/readyz` answers 200; returns how long it took.
    async fn start(&mut self, http: &reqwest::Client) -> Duration {
        assert!(self.child.is_none(), "already running");
        let t0 = Instant::now();
        'spawn: for try_no in 1..=5 {
            self.starts += 1;
            let mut log = File::options()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            writeln!(log, "\n===== crash test: start #{} =====", self.starts).unwrap();
            let child = warden()
                .args(["serve", "--listen", &self.listen])
                .args(&self.store_args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn warden serve");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let exited = self.child.as_mut().unwrap().try_wait().unwrap();
                if let Some(status) = exited {
                    self.child = None;
                    let log = tail(&self.log, 30);
                    if log.contains("Address already in use") && try_no < 5 {
                        tokio::time::sleep(ms(500)).await;
                        continue 'spawn;
                    }
                    panic!(
                        "warden serve exited during start #{}: {status}\n{log}",
                        self.starts
                    );
                }
                let ready = http
                    .get(format!("{}/readyz", self.url))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return t0.elapsed();
                }
                assert!(
                    Instant::now() < deadline,
                    "warden serve not ready within 30 s of start #{}\n{}",
                    self.starts,
                    tail(&self.log, 30)
                );
                tokio::time::sleep(ms(50)).await;
            }
        }
        unreachable!()
    }

    /// SIGKILL the server; it must still have been running. Returns its pid.
    fn kill(&mut self) -> u32 {
        let mut child = self.child.take().expect("server running");
        let pid = child.id();
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "warden serve (pid {pid}) died on its own before the kill: {status}\n{}",
                tail(&self.log, 40)
            );
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
        pid
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- tail of the server log {} ---\n{}",
                self.log.display(),
                tail(&self.log, 25)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP.

#[derive(Debug)]
enum Reply {
    /// The server answered.
    Http(StatusCode, Value),
    /// No answer (refused, reset, timed out): the request may or may not have been applied.
    Down,
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

impl Api {
    /// Get a token (default scopes) for the client.
    async fn connect(base: &str, id: &str, secret: &str) -> Api {
        let http = http_client();
        let r = http
            .post(format!("{base}/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token endpoint answers");
        assert_eq!(r.status(), StatusCode::OK, "token");
        let v: Value = r.json().await.unwrap();
        Api {
            http,
            base: base.to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(_) => return Reply::Down,
        };
        let status = response.status();
        match response.text().await {
            Ok(t) => Reply::Http(status, serde_json::from_str(&t).unwrap_or(Value::String(t))),
            Err(_) => Reply::Down,
        }
    }

    /// Send until the server answers (it may be down for a restart). Also says whether an
    /// earlier try got no answer (so the request may already have been applied).
    async fn until_answered(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> (Option<(StatusCode, Value)>, bool) {
        let deadline = Instant::now() + RESEND_FOR;
        let mut lost = false;
        loop {
            match self.call(method.clone(), path, Some(body)).await {
                Reply::Http(s, v) => return (Some((s, v)), lost),
                Reply::Down => {
                    lost = true;
                    if Instant::now() > deadline {
                        return (None, lost);
                    }
                    tokio::time::sleep(ms(150)).await;
                }
            }
        }
    }

    /// A read that must succeed (the server is up).
    async fn get(&self, path: &str) -> Value {
        for _ in 0..3 {
            match self.call(Method::GET, path, None).await {
                Reply::Http(s, v) if s == StatusCode::OK => return v,
                Reply::Http(s, v) => panic!("GET {path}: {s} {v}"),
                Reply::Down => tokio::time::sleep(ms(300)).await,
            }
        }
        panic!("GET {path}: no answer");
    }
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// What the clients did and were told.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `POST /jobs`, sent once.
    Plain,
    /// `POST /jobs` with an idempotency key, resent until answered.
    Keyed,
    /// `POST /jobs` with a client-chosen id, resent until answered.
    Chosen,
    /// `POST /jobs/batch` with keys and chosen ids, resent until answered.
    KeyedBatch,
    /// `POST /jobs/batch` without keys, sent once.
    PlainBatch,
}

#[derive(Debug, Clone)]
struct Intent {
    how: How,
    key: Option<String>,
    chosen_id: Option<String>,
    /// The id an acknowledged answer named (or a chosen id a `DUPLICATE_JOB_ID` confirmed).
    id: Option<String>,
    acked: bool,
}

#[derive(Debug, Default)]
struct Stats {
    enqueue_acked: u64,
    enqueue_unknown: u64,
    keyed_replayed_after_outage: u64,
    chosen_confirmed_by_409: u64,
    keyed_resends: u64,
    leases: u64,
    leased_jobs: u64,
    leased_twice: u64,
    abandoned: u64,
    completions_acked: u64,
    failures_acked: u64,
    finish_refused_lease_not_held: u64,
    finish_unknown: u64,
    finish_acked_after_outage: u64,
    heartbeats_refused: u64,
    transport_errors: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    intents: BTreeMap<u64, Intent>,
    /// Unkeyed batches: their `n`s and whether the batch was acknowledged.
    plain_batches: Vec<(Vec<u64>, bool)>,
    /// Every id answered for each idempotency key.
    key_answers: HashMap<String, HashSet<String>>,
    /// Acknowledged keyed singles (for later resends): `n`, body, id.
    keyed_done: Vec<(u64, Value, String)>,
    /// Recently acknowledged ids, for dependencies.
    recent: Vec<String>,
    /// Every result a worker sent for a job.
    sent: HashMap<String, Vec<Value>>,
    /// Acknowledged completions: attempt and result.
    completed: HashMap<String, Vec<(u64, Value)>>,
    /// Acknowledged failures: id, attempt, error.
    failed: Vec<(String, u64, String)>,
    /// Answers outside the contract.
    unexpected: Vec<String>,
    stats: Stats,
}

type Shared = Arc<Mutex<Ledger>>;

impl Ledger {
    fn unexpected(&mut self, what: String) {
        if self.unexpected.len() < 200 {
            self.unexpected.push(what);
        }
    }
    fn ack(&mut self, n: u64, id: &str) {
        let i = self.intents.get_mut(&n).expect("intent recorded");
        i.id = Some(id.to_owned());
        i.acked = true;
        self.stats.enqueue_acked += 1;
        self.recent.push(id.to_owned());
        if self.recent.len() > 400 {
            self.recent.drain(..200);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Enqueuers.

/// A job's enqueue body; `payload.n` tags it, `payload.plan` tells the workers what to do.
fn job_body(
    rng: &mut Rng,
    n: u64,
    key: Option<&str>,
    id: Option<&str>,
    depends_on: &[String],
) -> Value {
    let (plan, max_attempts, fail_until, work_ms) = match rng.below(100) {
        0..60 => {
            let m = if rng.chance(50) {
                None
            } else {
                Some(rng.range(3, 7))
            };
            ("ok", m, 0, rng.below(15))
        }
        60..84 => {
            let m = rng.range(2, 5);
            ("flaky", Some(m), rng.range(1, m + 1), rng.below(15))
        }
        84..90 => ("fatal", Some(3), 0, rng.below(15)),
        _ => ("slow", None, 0, rng.range(1_200, 2_600)),
    };
    let mut b = json!({
        "queue": QUEUES[rng.below(2) as usize],
        "type": plan,
        "priority": rng.below(5) as i64 - 2,
        "payload": {"n": n, "plan": plan, "fail_until": fail_until, "work_ms": work_ms},
    });
    if let Some(m) = max_attempts {
        b["max_attempts"] = json!(m);
    }
    if let Some(k) = key {
        b["idempotency_key"] = json!(k);
    }
    if let Some(i) = id {
        b["id"] = json!(i);
    }
    if !depends_on.is_empty() {
        b["depends_on"] = json!(depends_on);
    }
    b
}

struct Enqueuer {
    api: Api,
    ledger: Shared,
    next_n: Arc<AtomicU64>,
    rng: Rng,
    seed: u64,
}

impl Enqueuer {
    fn n(&self) -> u64 {
        self.next_n.fetch_add(1, Ordering::SeqCst)
    }

    fn record(&self, n: u64, how: How, key: Option<String>, chosen_id: Option<String>) {
        self.ledger.lock().unwrap().intents.insert(
            n,
            Intent {
                how,
                key,
                chosen_id,
                id: None,
                acked: false,
                // acked is set by Ledger::ack
            },
        );
    }

    fn external_deps(&mut self) -> Vec<String> {
        if !self.rng.chance(25) {
            return Vec::new();
        }
        let l = self.ledger.lock().unwrap();
        if l.recent.is_empty() {
            return Vec::new();
        }
        let k = self.rng.range(1, 3);
        (0..k)
            .map(|_| l.recent[self.rng.below(l.recent.len() as u64) as usize].clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect()
    }

    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            match self.rng.below(100) {
                0..30 => self.plain().await,
                30..48 => self.keyed().await,
                48..60 => self.chosen().await,
                60..80 => self.keyed_batch().await,
                80..92 => self.plain_batch().await,
                _ => self.resend_keyed().await,
            }
            tokio::time::sleep(ms(self.rng.range(10, 50))).await;
        }
    }

    async fn plain(&mut self) {
        let n = self.n();
        let deps = self.external_deps();
        let body = job_body(&mut self.rng, n, None, None, &deps);
        self.record(n, How::Plain, None, None);
        let reply = self
            .api
            .call(Method::POST, "/api/v1/jobs", Some(&body))
            .await;
        let mut l = self.ledger.lock().unwrap();
        match reply {
            Reply::Http(s, v) if s == StatusCode::CREATED => l.ack(n, v["id"].as_str().unwrap()),
            Reply::Http(s, v) => l.unexpected(format!("enqueue n={n}: {s} {v}")),
            Reply::Down => {
                l.stats.enqueue_unknown += 1;
                l.stats.transport_errors += 1;
            }
        }
    }

    async fn keyed(&mut self) {
        let n = self.n();
        let key = format!("crash-{}-{n}", self.seed);
        let with_id = self
            .rng
            .chance(50)
            .then(|| uuid::Uuid::now_v7().to_string());
        let deps = self.external_deps();
        let body = job_body(&mut self.rng, n, Some(&key), with_id.as_deref(), &deps);
        self.record(n, How::Keyed, Some(key.clone()), with_id);
        let (reply, lost) = self
            .api
            .until_answered(Method::POST, "/api/v1/jobs", &body)
            .await;
        let mut l = self.ledger.lock().unwrap();
        match reply {
            Some((s, v)) if s == StatusCode::CREATED || s == StatusCode::OK => {
                let id = v["id"].as_str().unwrap().to_owned();
                if s == StatusCode::OK {
                    if lost {
                        l.stats.keyed_replayed_after_outage += 1;
                    } else {
                        l.unexpected(format!(
                            "first keyed enqueue n={n} answered 200 (existing job {id})"
                        ));
                    }
                }
                l.ack(n, &id);
                l.key_answers.entry(key).or_default().insert(id.clone());
                l.keyed_done.push((n, body, id));
            }
            Some((s, v)) => l.unexpected(format!("keyed enqueue n={n}: {s} {v}")),
            None => l.unexpected(format!("keyed enqueue n={n}: no answer in {RESEND_FOR:?}")),
        }
    }

    async fn chosen(&mut self) {
        let n = self.n();
        let id = uuid::Uuid::now_v7().to_string();
        let deps = self.external_deps();
        let body = job_body(&mut self.rng, n, None, Some(&id), &deps);
        self.record(n, How::Chosen, None, Some(id.clone()));
        let (reply, lost) = self
            .api
            .until_answered(Method::POST, "/api/v1/jobs", &body)
            .await;
        let mut l = self.ledger.lock().unwrap();
        match reply {
            Some((s, v)) if s == StatusCode::CREATED => {
                if v["id"] != json!(id) {
                    l.unexpected(format!("chosen id {id} answered as {}", v["id"]));
                }
                l.ack(n, &id);
            }
            // An earlier try committed before the kill: the job exists.
            Some((s, v)) if s == StatusCode::CONFLICT && code(&v) == "DUPLICATE_JOB_ID" && lost => {
                l.stats.chosen_confirmed_by_409 += 1;
                l.ack(n, &id);
            }
            Some((s, v)) => l.unexpected(format!("chosen-id enqueue n={n}: {s} {v}")),
            None => l.unexpected(format!("chosen-id enqueue n={n}: no answer")),
        }
    }

    async fn keyed_batch(&mut self) {
        let size = self.rng.range(2, 11);
        let mut jobs = Vec::new();
        let mut ns = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for i in 0..size {
            let n = self.n();
            let id = uuid::Uuid::now_v7().to_string();
            let key = format!("crash-{}-{n}", self.seed);
            let mut deps = Vec::new();
            if i > 0 && self.rng.chance(50) {
                deps.push(ids[self.rng.below(i) as usize].clone());
            }
            if i == 0 {
                deps = self.external_deps();
            }
            jobs.push(job_body(&mut self.rng, n, Some(&key), Some(&id), &deps));
            self.record(n, How::KeyedBatch, Some(key), Some(id.clone()));
            ns.push(n);
            ids.push(id);
        }
        let body = json!({ "jobs": jobs });
        let (reply, lost) = self
            .api
            .until_answered(Method::POST, "/api/v1/jobs/batch", &body)
            .await;
        let mut l = self.ledger.lock().unwrap();
        match reply {
            Some((s, v)) if s == StatusCode::CREATED => {
                if v["ids"] != json!(ids) {
                    l.unexpected(format!(
                        "keyed batch {ns:?}: answered ids {} instead of {ids:?}",
                        v["ids"]
                    ));
                }
                if lost {
                    l.stats.keyed_replayed_after_outage += 1;
                }
                for (n, id) in ns.iter().zip(&ids) {
                    l.ack(*n, id);
                    let key = l.intents[n].key.clone().unwrap();
                    l.key_answers.entry(key).or_default().insert(id.clone());
                }
            }
            Some((s, v)) => l.unexpected(format!("keyed batch {ns:?}: {s} {v}")),
            None => l.unexpected(format!("keyed batch {ns:?}: no answer")),
        }
    }

    async fn plain_batch(&mut self) {
        let size = self.rng.range(2, 13);
        let mut jobs = Vec::new();
        let mut ns = Vec::new();
        for _ in 0..size {
            let n = self.n();
            jobs.push(job_body(&mut self.rng, n, None, None, &[]));
            self.record(n, How::PlainBatch, None, None);
            ns.push(n);
        }
        let body = json!({ "jobs": jobs });
        let reply = self
            .api
            .call(Method::POST, "/api/v1/jobs/batch", Some(&body))
            .await;
        let mut l = self.ledger.lock().unwrap();
        match reply {
            Reply::Http(s, v) if s == StatusCode::CREATED => {
                let ids = v["ids"].as_array().cloned().unwrap_or_default();
                if ids.len() != ns.len() {
                    l.unexpected(format!("plain batch {ns:?}: {} ids", ids.len()));
                }
                for (n, id) in ns.iter().zip(&ids) {
                    l.ack(*n, id.as_str().unwrap());
                }
                l.plain_batches.push((ns, true));
            }
            Reply::Http(s, v) => {
                l.unexpected(format!("plain batch {ns:?}: {s} {v}"));
                l.plain_batches.push((ns, false));
            }
            Reply::Down => {
                l.stats.enqueue_unknown += ns.len() as u64;
                l.stats.transport_errors += 1;
                l.plain_batches.push((ns, false));
            }
        }
    }

    /// Enqueue an acknowledged keyed job again: the same job must come back, 200.
    async fn resend_keyed(&mut self) {
        let pick = {
            let l = self.ledger.lock().unwrap();
            if l.keyed_done.is_empty() {
                None
            } else {
                Some(l.keyed_done[self.rng.below(l.keyed_done.len() as u64) as usize].clone())
            }
        };
        let Some((n, body, id)) = pick else {
            return self.plain().await;
        };
        let (reply, _) = self
            .api
            .until_answered(Method::POST, "/api/v1/jobs", &body)
            .await;
        let mut l = self.ledger.lock().unwrap();
        l.stats.keyed_resends += 1;
        match reply {
            Some((s, v)) if s == StatusCode::OK && v["id"] == json!(id) => {
                let key = body["idempotency_key"].as_str().unwrap().to_owned();
                l.key_answers.entry(key).or_default().insert(id);
            }
            Some((s, v)) => l.unexpected(format!(
                "keyed resend of n={n} (job {id}) answered {s} {v}: the same job, 200, was due"
            )),
            None => l.unexpected(format!("keyed resend n={n}: no answer")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Workers.

#[derive(Debug, Clone)]
struct Leased {
    id: String,
    lease_id: String,
    attempt: u64,
    n: u64,
    plan: String,
    fail_until: u64,
    work_ms: u64,
}

impl Leased {
    fn from(job: &Value) -> Leased {
        let p = &job["payload"];
        Leased {
            id: job["id"].as_str().unwrap().to_owned(),
            lease_id: job["lease_id"].as_str().unwrap().to_owned(),
            attempt: job["attempt"].as_u64().unwrap(),
            n: p["n"].as_u64().unwrap(),
            plan: p["plan"].as_str().unwrap().to_owned(),
            fail_until: p["fail_until"].as_u64().unwrap(),
            work_ms: p["work_ms"].as_u64().unwrap(),
        }
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Complete(Value),
    Fail { error: String, retryable: bool },
}

#[derive(Debug, Clone)]
struct Done {
    job: Leased,
    outcome: Outcome,
}

impl Done {
    fn decide(job: Leased, agent: &str, rng: &mut Rng, ledger: &Shared) -> Done {
        let outcome = match job.plan.as_str() {
            "fatal" => Outcome::Fail {
                error: format!("fatal n={} attempt={}", job.n, job.attempt),
                retryable: false,
            },
            "flaky" if job.attempt <= job.fail_until => Outcome::Fail {
                error: format!("flaky n={} attempt={}", job.n, job.attempt),
                retryable: true,
            },
            _ => {
                let result = json!({
                    "n": job.n, "attempt": job.attempt, "agent": agent,
                    "nonce": format!("{:016x}", rng.next()),
                });
                ledger
                    .lock()
                    .unwrap()
                    .sent
                    .entry(job.id.clone())
                    .or_default()
                    .push(result.clone());
                Outcome::Complete(result)
            }
        };
        Done { job, outcome }
    }

    fn item(&self) -> Value {
        match &self.outcome {
            Outcome::Complete(r) => {
                json!({"id": self.job.id, "lease_id": self.job.lease_id, "outcome": "complete", "result": r})
            }
            Outcome::Fail { error, retryable } => json!({
                "id": self.job.id, "lease_id": self.job.lease_id, "outcome": "fail",
                "error": error, "retryable": retryable,
            }),
        }
    }

    /// Record an acknowledged finish.
    fn acked(&self, l: &mut Ledger, after_outage: bool) {
        if after_outage {
            l.stats.finish_acked_after_outage += 1;
        }
        match &self.outcome {
            Outcome::Complete(r) => {
                l.stats.completions_acked += 1;
                l.completed
                    .entry(self.job.id.clone())
                    .or_default()
                    .push((self.job.attempt, r.clone()));
            }
            Outcome::Fail { error, .. } => {
                l.stats.failures_acked += 1;
                l.failed
                    .push((self.job.id.clone(), self.job.attempt, error.clone()));
            }
        }
    }

    /// Finish through `complete` or `fail`, resending through an outage.
    async fn finish_one(&self, api: &Api, ledger: &Shared) {
        let (path, body) = match &self.outcome {
            Outcome::Complete(r) => (
                format!("/api/v1/jobs/{}/complete", self.job.id),
                json!({"lease_id": self.job.lease_id, "result": r}),
            ),
            Outcome::Fail { error, retryable } => (
                format!("/api/v1/jobs/{}/fail", self.job.id),
                json!({"lease_id": self.job.lease_id, "error": error, "retryable": retryable}),
            ),
        };
        let (reply, lost) = api.until_answered(Method::POST, &path, &body).await;
        let mut l = ledger.lock().unwrap();
        match reply {
            Some((s, v)) if s == StatusCode::OK => {
                let expected: &[&str] = match self.outcome {
                    Outcome::Complete(_) => &["succeeded"],
                    Outcome::Fail { .. } => &["retrying", "dead_letter"],
                };
                if !expected.contains(&v["state"].as_str().unwrap_or("")) {
                    l.unexpected(format!("{path} answered 200 with state {}", v["state"]));
                }
                self.acked(&mut l, lost);
            }
            Some((s, v)) if s == StatusCode::CONFLICT && code(&v) == "LEASE_NOT_HELD" => {
                l.stats.finish_refused_lease_not_held += 1;
            }
            Some((s, v)) => l.unexpected(format!("{path}: {s} {v}")),
            None => l.stats.finish_unknown += 1,
        }
    }
}

/// Finish several jobs with one `POST /jobs/finish`, resending through an outage.
async fn finish_batch(api: &Api, ledger: &Shared, done: &[Done]) {
    let body = json!({"items": done.iter().map(Done::item).collect::<Vec<_>>()});
    let (reply, lost) = api
        .until_answered(Method::POST, "/api/v1/jobs/finish", &body)
        .await;
    let mut l = ledger.lock().unwrap();
    match reply {
        Some((s, v)) if s == StatusCode::OK => {
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if items.len() != done.len() {
                l.unexpected(format!(
                    "finish of {} answered {} items",
                    done.len(),
                    items.len()
                ));
                return;
            }
            for (d, item) in done.iter().zip(&items) {
                if item["id"] != json!(d.job.id) {
                    l.unexpected(format!("finish answered {} for {}", item["id"], d.job.id));
                } else if item["ok"] == json!(true) {
                    d.acked(&mut l, lost);
                } else if item["code"] == json!("LEASE_NOT_HELD") {
                    l.stats.finish_refused_lease_not_held += 1;
                } else {
                    l.unexpected(format!("finish item {}: {item}", d.job.id));
                }
            }
        }
        Some((s, v)) => l.unexpected(format!("finish: {s} {v}")),
        None => l.stats.finish_unknown += done.len() as u64,
    }
}

/// A `slow` job: work past the lease with heartbeats, then complete.
async fn run_slow(api: Api, ledger: Shared, job: Leased, agent: String, mut rng: Rng) {
    let end = Instant::now() + ms(job.work_ms);
    let body = json!({"lease_id": job.lease_id});
    let path = format!("/api/v1/jobs/{}/heartbeat", job.id);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(ms(600))).await;
        if Instant::now() >= end {
            break;
        }
        match api.call(Method::POST, &path, Some(&body)).await {
            Reply::Http(s, _) if s == StatusCode::OK => {}
            Reply::Http(s, v) if s == StatusCode::CONFLICT && code(&v) == "LEASE_NOT_HELD" => {
                ledger.lock().unwrap().stats.heartbeats_refused += 1;
                break;
            }
            Reply::Http(s, v) => ledger
                .lock()
                .unwrap()
                .unexpected(format!("{path}: {s} {v}")),
            // Keep working: the lease may outlive the outage.
            Reply::Down => ledger.lock().unwrap().stats.transport_errors += 1,
        }
    }
    // Complete even after a refused heartbeat: the answer must then be LEASE_NOT_HELD.
    Done::decide(job, &agent, &mut rng, &ledger)
        .finish_one(&api, &ledger)
        .await;
}

async fn worker(idx: u64, api: Api, ledger: Shared, stop: Arc<AtomicBool>, mut rng: Rng) {
    let agent = format!("crash-worker-{idx}");
    let mut slow = tokio::task::JoinSet::new();
    while !stop.load(Ordering::SeqCst) {
        let body = json!({
            "agent_id": agent, "queues": QUEUES, "max_jobs": rng.range(1, 9),
            "lease_seconds": LEASE_SECS, "wait_ms": 500,
        });
        let jobs = match api.call(Method::POST, "/api/v1/leases", Some(&body)).await {
            Reply::Http(s, v) if s == StatusCode::OK => v["jobs"].as_array().cloned().unwrap(),
            Reply::Http(s, v) => {
                ledger.lock().unwrap().unexpected(format!("lease: {s} {v}"));
                tokio::time::sleep(ms(200)).await;
                continue;
            }
            Reply::Down => {
                ledger.lock().unwrap().stats.transport_errors += 1;
                tokio::time::sleep(ms(150)).await;
                continue;
            }
        };
        {
            let mut l = ledger.lock().unwrap();
            l.stats.leases += 1;
            l.stats.leased_jobs += jobs.len() as u64;
            let mut ids = HashSet::new();
            for j in &jobs {
                if !ids.insert(&j["id"]) {
                    l.stats.leased_twice += 1;
                    let msg = format!(
                        "one lease (max_jobs {}) answered job {} twice, lease {}",
                        body["max_jobs"], j["id"], j["lease_id"]
                    );
                    l.unexpected(msg);
                }
            }
        }
        let mut done = Vec::new();
        for j in &jobs {
            let job = Leased::from(j);
            if rng.chance(ABANDON_PERCENT) {
                ledger.lock().unwrap().stats.abandoned += 1;
                continue;
            }
            if job.plan == "slow" {
                let stream = rng.next();
                slow.spawn(run_slow(
                    api.clone(),
                    ledger.clone(),
                    job,
                    agent.clone(),
                    rng.fork(stream),
                ));
                continue;
            }
            tokio::time::sleep(ms(job.work_ms)).await;
            done.push(Done::decide(job, &agent, &mut rng, &ledger));
        }
        if done.is_empty() {
            continue;
        }
        if rng.chance(50) {
            finish_batch(&api, &ledger, &done).await;
        } else {
            for d in &done {
                d.finish_one(&api, &ledger).await;
            }
        }
    }
    while slow.join_next().await.is_some() {}
}

// ---------------------------------------------------------------------------------------
// Checks.

fn terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

fn timeline_text(job: &Value) -> String {
    job["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|e| {
                    let mut s = format!("{}#{}", e["state"].as_str().unwrap_or("?"), e["attempt"]);
                    if let Some(a) = e["agent_id"].as_str() {
                        s.push_str(&format!("({a})"));
                    }
                    if let Some(err) = e["error"].as_str() {
                        s.push_str(&format!("[{err}]"));
                    }
                    if let Some(c) = e["reason_code"].as_str() {
                        s.push_str(&format!("<{c}>"));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .unwrap_or_else(|| "no timeline".into())
}

/// The timeline follows DESIGN.md §2 entry by entry, ends in exactly one terminal entry
/// matching the job's state, and no attempt exceeds `max_attempts`.
fn check_timeline(job: &Value, out: &mut Violations) {
    let id = job["id"].as_str().unwrap_or("?");
    let state = job["state"].as_str().unwrap_or("?");
    let max = job["max_attempts"].as_u64().unwrap_or(0);
    let Some(tl) = job["timeline"].as_array() else {
        out.add("timeline", format!("job {id}: no timeline"));
        return;
    };
    let mut prev: Option<&str> = None;
    let mut attempt = 0;
    for (i, e) in tl.iter().enumerate() {
        let s = e["state"].as_str().unwrap_or("?");
        let a = e["attempt"].as_u64().unwrap_or(u64::MAX);
        let err = e["error"].as_str();
        let ok = match (prev, s) {
            (None, "available" | "pending") => a == 0,
            (None, "canceled") => a == 0 && e["reason_code"] == json!("UPSTREAM_FAILED"),
            (Some("pending"), "available" | "canceled") => a == attempt,
            (Some("available"), "running") => a == attempt + 1,
            (Some("running"), "succeeded" | "retrying" | "dead_letter") => a == attempt,
            (Some("running"), "available") => a == attempt && err == Some("lease_expired"),
            (Some("retrying"), "available") => a == attempt,
            _ => false,
        };
        if !ok {
            out.add(
                "timeline",
                format!(
                    "job {id}: impossible timeline step {} → {s}#{a} at entry {i}: {}",
                    prev.unwrap_or("(start)"),
                    timeline_text(job)
                ),
            );
            return;
        }
        prev = Some(s);
        attempt = a;
    }
    let terminals = tl
        .iter()
        .filter(|e| terminal(e["state"].as_str().unwrap_or("")))
        .count();
    if terminals != 1 || prev != Some(state) || !terminal(state) {
        out.add(
            "timeline",
            format!(
                "job {id} ({state}): {terminals} terminal entries, last {prev:?}: {}",
                timeline_text(job)
            ),
        );
    }
    if attempt > max || job["attempt"].as_u64() != Some(attempt) {
        out.add(
            "timeline",
            format!(
                "job {id}: attempt {} (timeline {attempt}) with max_attempts {max}: {}",
                job["attempt"],
                timeline_text(job)
            ),
        );
    }
}

async fn list_all(viewer: &Api) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/jobs?limit=1000&cursor={c}"),
            None => "/api/v1/jobs?limit=1000".to_owned(),
        };
        let page = viewer.get(&path).await;
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

/// Every job with its timeline, keyed by id.
async fn with_timelines(viewer: &Api, ids: Vec<String>) -> HashMap<String, Value> {
    let mut set = tokio::task::JoinSet::new();
    let per = ids.len().div_ceil(8).max(1);
    for chunk in ids.chunks(per) {
        let (viewer, chunk) = (viewer.clone(), chunk.to_vec());
        set.spawn(async move {
            let mut out = Vec::new();
            for id in chunk {
                out.push((id.clone(), viewer.get(&format!("/api/v1/jobs/{id}")).await));
            }
            out
        });
    }
    let mut all = HashMap::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

/// Jobs of the crash queues not yet in a terminal state.
async fn unfinished(viewer: &Api) -> i64 {
    let v = viewer.get("/api/v1/queues?limit=1000").await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| QUEUES.contains(&q["name"].as_str().unwrap_or("")))
        .flat_map(|q| {
            ["pending", "available", "running", "retrying"]
                .map(|s| q["depth"][s].as_i64().unwrap_or(0))
        })
        .sum()
}

async fn describe_unfinished(viewer: &Api) -> String {
    let mut out = String::new();
    for s in ["pending", "available", "running", "retrying"] {
        let page = viewer
            .get(&format!("/api/v1/jobs?state={s}&limit=10"))
            .await;
        for j in page["items"].as_array().unwrap() {
            let id = j["id"].as_str().unwrap();
            let full = viewer.get(&format!("/api/v1/jobs/{id}")).await;
            out.push_str(&format!(
                "\n  {id} {s} run_at={} deps={}: {}",
                full["run_at"],
                full["depends_on"],
                timeline_text(&full)
            ));
        }
    }
    out
}

/// What the checks found, by kind.
#[derive(Debug, Default)]
struct Violations(BTreeMap<&'static str, Vec<String>>);

impl Violations {
    fn add(&mut self, kind: &'static str, what: String) {
        self.0.entry(kind).or_default().push(what);
    }

    /// Counts by kind, then a few of each.
    fn report(&self) -> String {
        let mut s = String::new();
        for (kind, all) in &self.0 {
            s.push_str(&format!("\n{kind}: {}", all.len()));
            for v in all.iter().take(6) {
                s.push_str(&format!("\n  - {v}"));
            }
        }
        s
    }
}

/// Every check of the module doc; returns the violations.
fn verify(jobs: &HashMap<String, Value>, listed: &[Value], l: &Ledger) -> Violations {
    let mut out = Violations::default();
    // No id listed twice.
    let mut seen = HashSet::new();
    for j in listed {
        let id = j["id"].as_str().unwrap();
        if !seen.insert(id) {
            out.add("duplicate", format!("job {id} listed twice"));
        }
    }
    // Jobs by tag; no tag twice, no job without an intent.
    let mut by_n: HashMap<u64, Vec<&Value>> = HashMap::new();
    for j in jobs.values() {
        match j["payload"]["n"].as_u64() {
            Some(n) => by_n.entry(n).or_default().push(j),
            None => out.add(
                "phantom",
                format!("job {} has no payload.n: {}", j["id"], j["payload"]),
            ),
        }
    }
    for (n, js) in &by_n {
        if js.len() > 1 {
            let ids: Vec<&Value> = js.iter().map(|j| &j["id"]).collect();
            out.add(
                "duplicate",
                format!(
                    "payload.n={n} enqueued once exists {} times: {ids:?}",
                    js.len()
                ),
            );
        }
        if !l.intents.contains_key(n) {
            out.add(
                "phantom",
                format!(
                    "job {} (n={n}) was never enqueued by this test",
                    js[0]["id"]
                ),
            );
        }
    }
    // No loss; acknowledged ids, chosen ids and keys as answered.
    for (n, intent) in &l.intents {
        let found = by_n.get(n).map(Vec::as_slice).unwrap_or(&[]);
        if intent.acked && found.is_empty() {
            out.add(
                "lost",
                format!(
                    "LOST: acknowledged enqueue n={n} ({:?}, id {:?}) does not exist",
                    intent.how, intent.id
                ),
            );
        }
        let Some(j) = found.first() else { continue };
        if intent.acked && intent.id.as_deref() != j["id"].as_str() {
            out.add(
                "identity",
                format!(
                    "n={n}: acknowledged as {:?} but stored as {}",
                    intent.id, j["id"]
                ),
            );
        }
        if let Some(c) = &intent.chosen_id
            && j["id"].as_str() != Some(c)
        {
            out.add(
                "identity",
                format!("n={n}: chosen id {c} stored as {}", j["id"]),
            );
        }
        if j["idempotency_key"].as_str() != intent.key.as_deref() {
            out.add(
                "identity",
                format!(
                    "n={n}: idempotency key {:?} stored as {}",
                    intent.key, j["idempotency_key"]
                ),
            );
        }
    }
    // Batches all or nothing.
    for (ns, acked) in &l.plain_batches {
        let present = ns.iter().filter(|n| by_n.contains_key(n)).count();
        if present != 0 && present != ns.len() || *acked && present != ns.len() {
            out.add(
                "batch atomicity",
                format!(
                    "batch {ns:?} (acknowledged: {acked}): {present} of {} jobs exist",
                    ns.len()
                ),
            );
        }
    }
    // One job per idempotency key, and every answer for a key named it.
    let mut per_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for j in jobs.values() {
        if let Some(k) = j["idempotency_key"].as_str() {
            per_key
                .entry(k)
                .or_default()
                .push(j["id"].as_str().unwrap());
        }
    }
    for (k, ids) in &per_key {
        if ids.len() > 1 {
            out.add(
                "duplicate",
                format!("DUPLICATE: idempotency key {k} on {ids:?}"),
            );
        }
    }
    for (k, answered) in &l.key_answers {
        if answered.len() > 1 {
            out.add(
                "duplicate",
                format!("idempotency key {k} answered with several jobs: {answered:?}"),
            );
        }
    }
    // Each job: terminal, timeline by the state machine, result sent by a worker,
    // dependencies consistent with the final state.
    for j in jobs.values() {
        let id = j["id"].as_str().unwrap();
        let state = j["state"].as_str().unwrap_or("?");
        if !terminal(state) {
            out.add(
                "not terminal",
                format!("job {id} not terminal: {state}: {}", timeline_text(j)),
            );
        }
        check_timeline(j, &mut out);
        let deps: Vec<&Value> = j["depends_on"]
            .as_array()
            .map(|d| d.iter().filter_map(|d| jobs.get(d.as_str()?)).collect())
            .unwrap_or_default();
        match state {
            "succeeded" => {
                let sent = l.sent.get(id).map(Vec::as_slice).unwrap_or(&[]);
                if !sent.contains(&j["result"]) {
                    out.add(
                        "result",
                        format!(
                            "job {id} succeeded with result {} that no worker sent ({sent:?})",
                            j["result"]
                        ),
                    );
                }
                if let Some(d) = deps.iter().find(|d| d["state"] != json!("succeeded")) {
                    out.add(
                        "dependencies",
                        format!(
                            "job {id} succeeded before its dependency {} ({})",
                            d["id"], d["state"]
                        ),
                    );
                }
            }
            "canceled" => {
                let upstream_failed = deps
                    .iter()
                    .any(|d| matches!(d["state"].as_str(), Some("dead_letter" | "canceled")));
                if j["reason_code"] != json!("UPSTREAM_FAILED") || !upstream_failed {
                    out.add(
                        "dependencies",
                        format!(
                            "job {id} canceled ({}) without a failed dependency",
                            j["reason_code"]
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    // Acknowledged completions and failures.
    for (id, acks) in &l.completed {
        if acks.len() > 1 {
            out.add(
                "duplicate",
                format!(
                    "job {id}: {} completions acknowledged: {acks:?}",
                    acks.len()
                ),
            );
        }
        let Some(j) = jobs.get(id) else {
            out.add(
                "lost",
                format!("LOST: job {id} with an acknowledged completion does not exist"),
            );
            continue;
        };
        let (attempt, result) = &acks[0];
        if j["state"] != json!("succeeded")
            || j["result"] != *result
            || j["attempt"].as_u64() != Some(*attempt)
        {
            out.add("undone", format!(
                "UNDONE: completion of job {id} (attempt {attempt}, result {result}) was acknowledged, \
                 but the job is {} at attempt {} with result {}: {}",
                j["state"],
                j["attempt"],
                j["result"],
                timeline_text(j)
            ));
        }
    }
    for (id, attempt, error) in &l.failed {
        let Some(j) = jobs.get(id) else {
            out.add(
                "lost",
                format!("LOST: job {id} with an acknowledged failure does not exist"),
            );
            continue;
        };
        let recorded = j["timeline"].as_array().is_some_and(|t| {
            t.iter().any(|e| {
                e["attempt"].as_u64() == Some(*attempt)
                    && matches!(e["state"].as_str(), Some("retrying" | "dead_letter"))
                    && e["error"].as_str() == Some(error)
            })
        });
        if !recorded {
            out.add(
                "undone",
                format!(
                    "UNDONE: failure of job {id} at attempt {attempt} ({error}) was acknowledged \
                 but is not in its timeline: {}",
                    timeline_text(j)
                ),
            );
        }
    }
    for u in &l.unexpected {
        out.add("contract", format!("answer outside the contract: {u}"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// The scenario.

fn create_client(store_args: &[String], name: &str, role: &str) -> (String, String) {
    let mut args = vec![
        "clients", "create", "--tenant", "default", "--name", name, "--role", role, "--json",
    ];
    args.extend(store_args.iter().map(String::as_str));
    let o = run(&args, &[]);
    assert!(o.status.success(), "clients create: {}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn scenario(label: &str, store_args: Vec<String>, work: &Path) {
    let seed = seed();
    eprintln!("[{label}] crash test seed {seed} (replay: WARDEN_CRASH_SEED={seed})");
    let t0 = Instant::now();
    let mut rng = Rng(seed);
    let http = http_client();
    let mut node = Node::new(store_args.clone(), work.join("server.log"));
    node.start(&http).await;
    let (wid, wsecret) = create_client(&store_args, "crash-worker", "Orch.Worker");
    let (vid, vsecret) = create_client(&store_args, "crash-viewer", "Orch.Viewer");
    let api = Api::connect(&node.url, &wid, &wsecret).await;
    let viewer = Api::connect(&node.url, &vid, &vsecret).await;

    let ledger: Shared = Arc::default();
    let next_n = Arc::new(AtomicU64::new(1));
    let stop_enqueue = Arc::new(AtomicBool::new(false));
    let stop_work = Arc::new(AtomicBool::new(false));
    let enqueuers: Vec<_> = (0..ENQUEUERS)
        .map(|i| {
            let e = Enqueuer {
                api: api.clone(),
                ledger: ledger.clone(),
                next_n: next_n.clone(),
                rng: rng.fork(100 + i),
                seed,
            };
            tokio::spawn(e.run(stop_enqueue.clone()))
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            tokio::spawn(worker(
                i,
                api.clone(),
                ledger.clone(),
                stop_work.clone(),
                rng.fork(200 + i),
            ))
        })
        .collect();

    for k in 1..=KILLS {
        let load = rng.range(1_500, 4_000);
        tokio::time::sleep(ms(load)).await;
        let at = t0.elapsed();
        let pid = node.kill();
        let down = rng.below(800);
        tokio::time::sleep(ms(down)).await;
        let restart = node.start(&http).await;
        eprintln!(
            "[{label}] kill {k}/{KILLS}: SIGKILL pid {pid} at {:.2}s after {load} ms of load; \
             down {down} ms; ready {} ms after restart",
            at.as_secs_f64(),
            restart.as_millis()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_enqueue.store(true, Ordering::SeqCst);
    for e in enqueuers {
        e.await.unwrap();
    }
    let drain_start = Instant::now();
    let backlog = unfinished(&viewer).await;
    let (mut fewest, mut progress_at) = (backlog, Instant::now());
    loop {
        let left = unfinished(&viewer).await;
        if left == 0 {
            break;
        }
        if left < fewest {
            (fewest, progress_at) = (left, Instant::now());
        }
        if progress_at.elapsed() > DRAIN_STALL || drain_start.elapsed() > DRAIN_CAP {
            panic!(
                "[{label}] seed {seed}: {left} jobs unfinished {:.0}s after the load stopped \
                 (none finished in the last {:.0}s); some:{}",
                drain_start.elapsed().as_secs_f64(),
                progress_at.elapsed().as_secs_f64(),
                describe_unfinished(&viewer).await
            );
        }
        tokio::time::sleep(ms(500)).await;
    }
    let drained = drain_start.elapsed();
    stop_work.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }

    let listed = list_all(&viewer).await;
    let ids: Vec<String> = listed
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let jobs = with_timelines(&viewer, ids).await;
    let l = ledger.lock().unwrap();
    let violations = verify(&jobs, &listed, &l);

    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    for j in jobs.values() {
        *states
            .entry(j["state"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    eprintln!(
        "[{label}] {} jobs {states:?} from {} enqueue intents; {backlog} unfinished when the load \
         stopped, drained in {:.1}s; total {:.1}s\n[{label}] {:?}",
        jobs.len(),
        l.intents.len(),
        drained.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        l.stats
    );
    assert!(
        l.stats.completions_acked > 0 && l.stats.failures_acked > 0 && jobs.len() > 100,
        "[{label}] seed {seed}: the load did too little to prove anything: {:?}",
        l.stats
    );
    if !violations.0.is_empty() {
        panic!(
            "[{label}] seed {seed} (replay: WARDEN_CRASH_SEED={seed}): violations after {KILLS} SIGKILLs:{}",
            violations.report()
        );
    }
}

/// Keeps a directory unless the test passed.
struct KeepOnFailure(Option<tempfile::TempDir>);

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!("crash test: kept {} for inspection", d.keep().display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_keeps_every_acknowledged_action_sqlite() {
    let dir = KeepOnFailure(Some(tempfile::tempdir().unwrap()));
    let path = dir.0.as_ref().unwrap().path().to_owned();
    let data = path.join("data");
    scenario(
        "sqlite",
        vec!["--data-dir".into(), data.to_str().unwrap().into()],
        &path,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: a fresh database per run, through psql.

const PG_PREFIX: &str = "warden_crash_";
/// Databases of earlier runs older than this are dropped (a killed run leaves its own).
const PG_MAX_AGE_SECS: u64 = 2 * 60 * 60;

fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &userinfo[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let o = Command::new("psql")
        .arg(url)
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
    }
}

/// A database created for one run, dropped after it unless the run failed.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create() -> Option<PgDb> {
        let admin = warden_store::testing::postgres_url();
        if let Err(e) = psql(&admin, "SELECT 1") {
            let msg = format!("PostgreSQL at {} unreachable: {e}", redact(&admin));
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg} (CI=true: PostgreSQL is required; set WARDEN_TEST_DATABASE_URL)");
            }
            let line = format!("SKIPPED: {msg} — the PostgreSQL crash test did not run");
            let _ = writeln!(std::io::stderr(), "\n{line}\n");
            eprintln!("{line}");
            return None;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Sweep what killed runs left behind.
        if let Ok(names) = psql(
            &admin,
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{PG_PREFIX}%'"),
        ) {
            for name in names.lines() {
                let created = name
                    .strip_prefix(PG_PREFIX)
                    .and_then(|r| r.split('_').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if created.is_some_and(|c| now.saturating_sub(c) > PG_MAX_AGE_SECS) {
                    let _ = psql(
                        &admin,
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    );
                }
            }
        }
        let name = format!("{PG_PREFIX}{now}_{:08x}", entropy() as u32);
        psql(&admin, &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        Some(PgDb {
            url: warden_store::testing::with_database(&admin, &name),
            admin,
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "crash test: kept PostgreSQL database {} for inspection (dropped by a run 2 hours later)",
                self.name
            );
            return;
        }
        if let Err(e) = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("crash test: could not drop database {}: {e}", self.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_keeps_every_acknowledged_action_postgres() {
    let Some(db) = PgDb::create() else { return };
    let dir = KeepOnFailure(Some(tempfile::tempdir().unwrap()));
    let path = dir.0.as_ref().unwrap().path().to_owned();
    scenario(
        "postgres",
        vec!["--database-url".into(), db.url.clone()],
        &path,
    )
    .await;
    drop(dir);
    drop(db);
}

#[test]
fn urls_name_the_run_database_and_hide_passwords() {
    assert_eq!(
        warden_store::testing::with_database("postgres://u@h:5432/postgres", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        warden_store::testing::with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        warden_store::testing::with_database("postgres://h", "x"),
        "postgres://h/x"
    );
    assert_eq!(redact("postgres://u:p@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
}
