//! Control-plane benchmarks for issue [1/3] (results and method: `docs/BENCHMARKS.md`).
//!
//! Speed targets live here, never in timed unit tests. The harness builds the real server
//! in-process (SQLite in a temp dir, PostgreSQL in a fresh `warden_bench_<random>`
//! database), creates clients through the store, gets tokens from `POST /oauth/token` and
//! drives every measured request through real HTTP with one keep-alive `reqwest` client.
//!
//! ```text
//! cargo bench -p warden-server --bench control_plane                  # everything
//! cargo bench -p warden-server --bench control_plane -- sqlite audit  # a selection
//! WARDEN_BENCH_ONLY=postgres,cancel cargo bench -p warden-server --bench control_plane
//! WARDEN_BENCH_QUICK=1 cargo bench -p warden-server --bench control_plane   # smoke run
//! ```
//!
//! Selection words (CLI arguments or the comma-separated `WARDEN_BENCH_ONLY`): backends
//! `sqlite`, `postgres`; scenarios `cancel`, `token`, `replay`, `audit`. Nothing named in
//! a category selects all of it. `WARDEN_TEST_DATABASE_URL` names the PostgreSQL admin
//! connection (default `postgres://postgres@127.0.0.1:5432/postgres`); when it is
//! unreachable the PostgreSQL backend is skipped with a message, unless it was asked for
//! explicitly. `WARDEN_BENCH_JSON=FILE` appends one JSON line per result (for aggregating
//! several runs). `WARDEN_BENCH_ANALYZE=1` (diagnostic) refreshes planner statistics before
//! the replay and audit measurements. `WARDEN_BENCH_KEEP=1` keeps the databases (the
//! SQLite file, the PostgreSQL database) and prints where they are, for `EXPLAIN ANALYZE`.
//! `WARDEN_BENCH_SETUP_SQL='DROP INDEX audit_by_time'` (diagnostic) runs schema statements
//! after the migrations, to price an index without a rebuild.
//!
//! Scenarios and the issue's targets:
//! 1. `cancel`: one audited operator action (`POST /api/v1/jobs/{id}/cancel`) at a time,
//!    2,000 of them: p99 < 5 ms.
//! 2. `token`: `POST /oauth/token` with 1 and 8 concurrent clients for 5 s each:
//!    ≥ 5,000 tokens/s (non-elevated); elevated tokens (one `token.issue` entry each) as a
//!    second row.
//! 3. `replay`: bulk replay of 100,000 dead-lettered jobs with its 100,001 entries: < 5 s.
//! 4. `audit`: with 1,000,000 entries stored, the list filtered by ticket and by actor:
//!    p99 < 20 ms; stats: < 250 ms.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden_authority::ClientSecret;
use warden_core::audit::{Actor, ActorKind, AuditDraft};
use warden_core::names::{ClientName, TenantId};
use warden_core::scopes::Role;
use warden_server::{AppState, Application, Config, ServerError};
use warden_store::audit::AuditFilter;
use warden_store::testing::{
    BENCH_ACTORS as ACTORS, BENCH_TICKETS as TICKETS, Rng, bench_draft as seed_draft,
};
use warden_store::testing::{postgres_url as pg_admin_url, with_database};

/// The allocator the `warden` binary ships with (decision 0013), so these numbers are its.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type R<T> = Result<T, Box<dyn Error + Send + Sync>>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(format!($($t)*).into()) };
}

const BACKENDS: [&str; 2] = ["sqlite", "postgres"];
const SCENARIOS: [&str; 4] = ["cancel", "token", "replay", "audit"];

// ---------------------------------------------------------------------------------------
// Options and sizes

#[derive(Debug, Clone)]
struct Sizes {
    cancel_jobs: usize,
    cancel_warmup: usize,
    token_secs: f64,
    replay_jobs: usize,
    enqueue_batch: usize,
    audit_entries: usize,
    audit_chunk: usize,
    list_requests: usize,
    stats_requests: usize,
}

impl Sizes {
    fn full() -> Self {
        Self {
            cancel_jobs: 2_000,
            cancel_warmup: 100,
            token_secs: 5.0,
            replay_jobs: 100_000,
            enqueue_batch: 10_000,
            audit_entries: 1_000_000,
            audit_chunk: 5_000,
            list_requests: 200,
            stats_requests: 20,
        }
    }

    fn quick() -> Self {
        Self {
            cancel_jobs: 200,
            cancel_warmup: 20,
            token_secs: 1.0,
            replay_jobs: 2_000,
            enqueue_batch: 1_000,
            audit_entries: 20_000,
            audit_chunk: 5_000,
            list_requests: 50,
            stats_requests: 5,
        }
    }
}

#[derive(Debug)]
struct Options {
    quick: bool,
    backends: Vec<&'static str>,
    scenarios: Vec<&'static str>,
    postgres_explicit: bool,
    json_out: Option<String>,
    /// Keep the database (and SQLite directory) for a post-mortem (`EXPLAIN ANALYZE`).
    keep: bool,
    sizes: Sizes,
}

fn options() -> R<Options> {
    let mut words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Ok(only) = std::env::var("WARDEN_BENCH_ONLY") {
        words.extend(
            only.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        );
    }
    let mut backends = Vec::new();
    let mut scenarios = Vec::new();
    for w in &words {
        let w = w.to_ascii_lowercase();
        match w.as_str() {
            "sqlite" => backends.push("sqlite"),
            "postgres" | "pg" | "postgresql" => backends.push("postgres"),
            other => match SCENARIOS.iter().find(|s| **s == other) {
                Some(s) => scenarios.push(*s),
                None => bail!("unknown selection word {w:?}: use {BACKENDS:?} and {SCENARIOS:?}"),
            },
        }
    }
    let postgres_explicit = backends.contains(&"postgres");
    if backends.is_empty() {
        backends = BACKENDS.to_vec();
    }
    if scenarios.is_empty() {
        scenarios = SCENARIOS.to_vec();
    }
    backends.dedup();
    scenarios.dedup();
    let quick = std::env::var("WARDEN_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    Ok(Options {
        quick,
        backends,
        scenarios,
        postgres_explicit,
        json_out: std::env::var("WARDEN_BENCH_JSON")
            .ok()
            .filter(|s| !s.is_empty()),
        keep: std::env::var("WARDEN_BENCH_KEEP").is_ok_and(|v| !v.is_empty() && v != "0"),
        sizes: if quick { Sizes::quick() } else { Sizes::full() },
    })
}

// ---------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    metric: String,
    value: f64,
    unit: &'static str,
    /// `(text, passed)` for rows that carry one of the issue's targets.
    target: Option<(String, bool)>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, scenario: &str, metric: &str, value: f64, unit: &'static str) {
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit,
            target: None,
        });
    }

    /// A row with a target; `lower_is_better` decides the comparison.
    fn target(
        &mut self,
        scenario: &str,
        metric: &str,
        value: f64,
        unit: &'static str,
        target: f64,
        lower_is_better: bool,
    ) {
        let (text, pass) = if lower_is_better {
            (format!("< {} {unit}", fmt_num(target)), value < target)
        } else {
            (format!(">= {} {unit}", fmt_num(target)), value >= target)
        };
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit,
            target: Some((text, pass)),
        });
    }

    fn latencies(&mut self, scenario: &str, l: &Latencies, which: &[&str]) {
        for w in which {
            let v = l.get(w);
            self.add(scenario, w, v, "ms");
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn print_table(backend: &str, rows: &[Row]) {
    println!();
    println!("== {backend} ==");
    println!(
        "{:<34} {:<26} {:>12} {:<6} {:<14} verdict",
        "scenario", "metric", "value", "unit", "target"
    );
    let mut last = String::new();
    for r in rows {
        let scenario = if r.scenario == last {
            ""
        } else {
            r.scenario.as_str()
        };
        last = r.scenario.clone();
        let (target, verdict) = match &r.target {
            Some((t, pass)) => (t.as_str(), if *pass { "PASS" } else { "MISS" }),
            None => ("", ""),
        };
        println!(
            "{:<34} {:<26} {:>12} {:<6} {:<14} {}",
            scenario,
            r.metric,
            fmt_num(r.value),
            r.unit,
            target,
            verdict
        );
    }
    let _ = std::io::stdout().flush();
}

/// Request latencies, in milliseconds.
struct Latencies(Vec<f64>);

impl Latencies {
    fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Self(v.into_iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    /// Nearest-rank percentile.
    fn pct(&self, p: f64) -> f64 {
        let n = self.0.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.0[rank.clamp(1, n) - 1]
    }

    fn get(&self, which: &str) -> f64 {
        match which {
            "median" => self.pct(50.0),
            "p90" => self.pct(90.0),
            "p99" => self.pct(99.0),
            "max" => self.pct(100.0),
            "min" => self.0.first().copied().unwrap_or(f64::NAN),
            "mean" => self.0.iter().sum::<f64>() / self.0.len() as f64,
            other => panic!("unknown statistic {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server under test

struct Server {
    backend: &'static str,
    base: String,
    http: reqwest::Client,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
    _dir: Option<tempfile::TempDir>,
    /// (admin URL, database name) of the PostgreSQL database to drop at the end.
    pg: Option<(String, String)>,
}

async fn create_pg_database() -> R<(String, String, String)> {
    let admin = pg_admin_url();
    let mut conn =
        tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&admin))
            .await
            .map_err(|_| "timed out connecting to PostgreSQL")??;
    let random = uuid::Uuid::now_v7().simple().to_string();
    let name = format!("warden_bench_{}", &random[random.len() - 12..]);
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let url = with_database(&admin, &name);
    Ok((admin, name, url))
}

async fn drop_pg_database(admin: &str, name: &str) -> R<()> {
    let mut conn = sqlx::PgConnection::connect(admin).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

impl Server {
    async fn start(backend: &'static str) -> R<Self> {
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        };
        let mut dir = None;
        let mut pg = None;
        match backend {
            "sqlite" => {
                let d = tempfile::Builder::new().prefix("warden-bench-").tempdir()?;
                config.data_dir = d.path().to_path_buf();
                dir = Some(d);
            }
            "postgres" => {
                let (admin, name, url) = create_pg_database().await?;
                config.database_url = Some(url);
                pg = Some((admin, name));
            }
            other => bail!("unknown backend {other}"),
        }
        let app = match Application::build(config).await {
            Ok(app) => app,
            Err(e) => {
                if let Some((admin, name)) = &pg {
                    let _ = drop_pg_database(admin, name).await;
                }
                return Err(e.into());
            }
        };
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        // Schema experiments without a rebuild, as in warden-store's engine_path bench:
        // statements (`;`-separated) run after the migrations, e.g. `DROP INDEX audit_by_time`.
        if let Ok(setup) = std::env::var("WARDEN_BENCH_SETUP_SQL") {
            for stmt in setup.split(';').filter(|s| !s.trim().is_empty()) {
                state.store.execute_raw(stmt).await?;
            }
        }
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            backend,
            base,
            http,
            state,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
            pg,
        })
    }

    async fn shutdown(mut self, keep: bool) -> R<()> {
        // Close our keep-alive connections first so the graceful drain has nothing to wait for.
        self.http = reqwest::Client::new();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => eprintln!("[{}] server ended with an error: {e}", self.backend),
                Ok(Err(e)) => eprintln!("[{}] server task failed: {e}", self.backend),
                Err(_) => eprintln!("[{}] server did not stop within 60 s", self.backend),
            }
        }
        if keep {
            if let Some(dir) = self._dir.take() {
                eprintln!(
                    "[{}] kept {}",
                    self.backend,
                    dir.keep().join("warden.db").display()
                );
            }
            if let Some((admin, name)) = self.pg.take() {
                eprintln!(
                    "[{}] kept database {}",
                    self.backend,
                    warden_store::redact_url(&with_database(&admin, &name))
                );
            }
        }
        if let Some((admin, name)) = self.pg.take() {
            drop_pg_database(&admin, &name).await?;
        }
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client of `tenant` with the admin role: (client_id, secret).
    async fn client(&self, tenant: &str, name: &str) -> R<Cred> {
        let secret = ClientSecret::generate()?;
        let actor = Actor {
            kind: ActorKind::Cli,
            name: "bench".into(),
        };
        let tenant = TenantId::parse(tenant).map_err(|e| format!("{e:?}"))?;
        let name = ClientName::parse(name).map_err(|e| format!("{e:?}"))?;
        let record = self
            .state
            .store
            .create_client(
                &tenant,
                &name,
                &[Role::Admin],
                *secret.digest().as_bytes(),
                &actor,
            )
            .await?;
        Ok(Cred {
            id: record.id.to_string(),
            secret: secret.expose().to_owned(),
            tenant,
        })
    }
}

#[derive(Clone)]
struct Cred {
    id: String,
    secret: String,
    tenant: TenantId,
}

/// The warrant every elevated token of the bench carries.
const REASON: &str = "benchmark run";
const TICKET: &str = "BENCH-1";

fn token_form(scope: Option<&str>) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.append_pair("grant_type", "client_credentials");
    if let Some(s) = scope {
        f.append_pair("scope", s);
        if s.split(' ').any(|s| s == "orch:operate") {
            f.append_pair("operator_reason", REASON);
            f.append_pair("operator_ticket", TICKET);
        }
    }
    f.finish()
}

async fn request_token(http: &reqwest::Client, url: &str, cred: &Cred, form: &str) -> R<String> {
    let r = http
        .post(url)
        .basic_auth(&cred.id, Some(&cred.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    if status != 200 {
        bail!("token request failed: {status} {body}");
    }
    Ok(body["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned())
}

impl Server {
    async fn token(&self, cred: &Cred, scope: Option<&str>) -> R<String> {
        request_token(
            &self.http,
            &self.url("/oauth/token"),
            cred,
            &token_form(scope),
        )
        .await
    }

    async fn get_json(&self, token: &str, path: &str) -> R<Value> {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }

    async fn post_json(
        &self,
        token: &str,
        path: &str,
        body: &Value,
    ) -> R<(reqwest::StatusCode, Value)> {
        let bytes = serde_json::to_vec(body)?;
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        Ok((status, body))
    }

    async fn audit_total(&self, token: &str) -> R<i64> {
        let stats = self.get_json(token, "/api/v1/audit/stats").await?;
        stats["total"]
            .as_i64()
            .ok_or_else(|| format!("no total in {stats}").into())
    }

    /// Enqueue `n` jobs through the batch endpoint, `batch` per request; returns the ids.
    async fn enqueue(&self, token: &str, n: usize, batch: usize) -> R<Vec<String>> {
        let mut ids = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            let k = batch.min(n - i);
            let jobs: Vec<Value> = (i..i + k)
                .map(|j| json!({"queue": "bench", "type": "noop", "payload": {"n": j}}))
                .collect();
            let (status, body) = self
                .post_json(token, "/api/v1/jobs/batch", &json!({ "jobs": jobs }))
                .await?;
            if status != 201 {
                bail!("batch enqueue failed: {status} {body}");
            }
            for id in body["ids"].as_array().ok_or("no ids")? {
                ids.push(id.as_str().ok_or("id not a string")?.to_owned());
            }
            i += k;
        }
        Ok(ids)
    }

    /// Wait until the outbox relay has delivered everything (the relay competes with
    /// requests for the writer; measuring reads while it drains a million events would
    /// measure the drain). Returns how long it took.
    /// Diagnostic only (`WARDEN_BENCH_ANALYZE=1`): refresh the planner's statistics the
    /// way autovacuum eventually would (`VACUUM ANALYZE` on PostgreSQL, `ANALYZE` on
    /// SQLite) before measuring, to separate plan choice from the server's own cost. Off
    /// by default: the numbers of record measure the server as it runs.
    async fn maybe_analyze(&self, rep: &mut Report, scenario: &str) -> R<()> {
        if !std::env::var("WARDEN_BENCH_ANALYZE").is_ok_and(|v| !v.is_empty() && v != "0") {
            return Ok(());
        }
        let sql = if self.backend == "postgres" {
            "VACUUM ANALYZE"
        } else {
            "ANALYZE"
        };
        let t = Instant::now();
        self.state.store.execute_raw(sql).await?;
        rep.add(
            scenario,
            &format!("diagnostic: {sql} first"),
            t.elapsed().as_secs_f64(),
            "s",
        );
        Ok(())
    }

    async fn wait_outbox_drained(&self, limit: Duration) -> R<Duration> {
        let start = Instant::now();
        while !self.state.store.outbox_peek(1).await?.is_empty() {
            if start.elapsed() > limit {
                bail!("outbox not drained after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(start.elapsed())
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 1: one audited operator action at a time

async fn bench_cancel(s: &Server, z: &Sizes, rep: &mut Report) -> R<()> {
    let sc = format!("1 cancel (n={}, sequential)", z.cancel_jobs);
    let cred = s.client("bench-cancel", "bench-admin").await?;
    let token = s.token(&cred, Some("orch:read orch:operate")).await?;
    let ids = s
        .enqueue(&token, z.cancel_jobs + z.cancel_warmup, z.enqueue_batch)
        .await?;
    let before = s.audit_total(&token).await?;
    let mut lat = Vec::with_capacity(z.cancel_jobs);
    let start = Instant::now();
    let mut measured_start = start;
    for (i, id) in ids.iter().enumerate() {
        if i == z.cancel_warmup {
            measured_start = Instant::now();
        }
        let url = s.url(&format!("/api/v1/jobs/{id}/cancel"));
        let t = Instant::now();
        let r = s.http.post(&url).bearer_auth(&token).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        let dt = t.elapsed();
        if status != 200 {
            bail!("cancel {id}: {status} {}", String::from_utf8_lossy(&body));
        }
        if i >= z.cancel_warmup {
            lat.push(dt);
        }
    }
    let wall = measured_start.elapsed();
    let after = s.audit_total(&token).await?;
    if after - before != ids.len() as i64 {
        bail!(
            "cancel: the audit log grew by {} for {} cancels",
            after - before,
            ids.len()
        );
    }
    let l = Latencies::new(lat);
    rep.latencies(&sc, &l, &["median", "p90"]);
    rep.target(&sc, "p99", l.get("p99"), "ms", 5.0, true);
    rep.latencies(&sc, &l, &["max", "mean"]);
    rep.add(
        &sc,
        "throughput",
        z.cancel_jobs as f64 / wall.as_secs_f64(),
        "ops/s",
    );
    // Where the time goes: the same request path without the write transaction (bearer
    // verification, client lookup, one indexed read and the job's timeline), over the same
    // jobs, sequentially.
    let mut base = Vec::with_capacity(z.cancel_jobs);
    for id in ids.iter().skip(z.cancel_warmup) {
        let t = Instant::now();
        let r = s
            .http
            .get(s.url(&format!("/api/v1/jobs/{id}")))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = r.status();
        r.bytes().await?;
        base.push(t.elapsed());
        if status != 200 {
            bail!("GET job {id}: {status}");
        }
    }
    let b = Latencies::new(base);
    rep.add(&sc, "baseline GET job median", b.get("median"), "ms");
    rep.add(&sc, "baseline GET job p99", b.get("p99"), "ms");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenario 2: token issuance

async fn token_run(
    s: &Server,
    cred: &Cred,
    scope: Option<&str>,
    concurrency: usize,
    secs: f64,
) -> R<(f64, Latencies, u64)> {
    let url = Arc::new(s.url("/oauth/token"));
    let form = Arc::new(token_form(scope));
    // Warm the connections up.
    for _ in 0..concurrency * 5 {
        request_token(&s.http, &url, cred, &form).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, form, cred, stop) = (
            s.http.clone(),
            url.clone(),
            form.clone(),
            cred.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                request_token(&http, &url, &cred, &form).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = start.elapsed().as_secs_f64();
    let n = all.len() as u64;
    Ok((n as f64 / wall, Latencies::new(all), n))
}

async fn bench_token(s: &Server, z: &Sizes, rep: &mut Report) -> R<()> {
    let cred = s.client("bench-token", "bench-admin").await?;
    let read = s.token(&cred, Some("orch:read")).await?;
    for (kind, scope) in [("plain", None), ("elevated", Some("orch:operate"))] {
        for conc in [1usize, 8] {
            let sc = format!("2 token {kind} (c={conc}, {}s)", z.token_secs);
            let before = s.audit_total(&read).await?;
            let (rate, l, n) = token_run(s, &cred, scope, conc, z.token_secs).await?;
            let grew = s.audit_total(&read).await? - before;
            let expect = if scope.is_some() {
                n as i64 + conc as i64 * 5
            } else {
                0
            };
            if grew != expect {
                bail!("token {kind}: the audit log grew by {grew}, expected {expect}");
            }
            if scope.is_none() {
                rep.target(&sc, "tokens/s", rate, "1/s", 5000.0, false);
            } else {
                rep.add(&sc, "tokens/s", rate, "1/s");
            }
            rep.latencies(&sc, &l, &["median", "p99"]);
        }
    }
    // The ceiling of this harness on this machine: the same loop against `GET /healthz`
    // (no store, no crypto), since the load generator shares the server's two cores.
    let sc = format!("2 ceiling: GET /healthz (c=8, {}s)", z.token_secs);
    let (rate, l) = healthz_run(s, 8, z.token_secs).await?;
    rep.add(&sc, "requests/s", rate, "1/s");
    rep.latencies(&sc, &l, &["median", "p99"]);
    Ok(())
}

async fn healthz_run(s: &Server, concurrency: usize, secs: f64) -> R<(f64, Latencies)> {
    let url = Arc::new(s.url("/healthz"));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, stop) = (s.http.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = http.get(url.as_str()).send().await?;
                let status = r.status();
                r.bytes().await?;
                if status != 200 {
                    return Err(format!("GET /healthz: {status}").into());
                }
                lat.push(t.elapsed());
            }
            Ok::<_, Box<dyn Error + Send + Sync>>(lat)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    Ok((rate, Latencies::new(all)))
}

// ---------------------------------------------------------------------------------------
// Scenario 3: bulk replay of dead letters

async fn bench_replay(s: &Server, z: &Sizes, rep: &mut Report) -> R<()> {
    let n = z.replay_jobs;
    let sc = format!("3 bulk replay (n={n})");
    let tenant = "bench-replay";
    let cred = s.client(tenant, "bench-admin").await?;
    let token = s.token(&cred, Some("orch:read orch:operate")).await?;
    let t = Instant::now();
    let ids = s.enqueue(&token, n, z.enqueue_batch).await?;
    let enqueue = t.elapsed();
    if ids.len() != n {
        bail!("enqueued {} of {n}", ids.len());
    }
    // The worker protocol that dead-letters jobs comes with a later issue: set the state
    // directly.
    let changed = s
        .state
        .store
        .execute_raw(&format!(
            "UPDATE jobs SET state = 'dead_letter' WHERE tenant = '{tenant}'"
        ))
        .await?;
    if changed != n as u64 {
        bail!("dead-lettered {changed} of {n}");
    }
    s.wait_outbox_drained(Duration::from_secs(600)).await?;
    s.maybe_analyze(rep, &sc).await?;
    let before = s.audit_total(&token).await?;
    let t = Instant::now();
    let (status, body) = s
        .post_json(
            &token,
            "/api/v1/jobs/replay",
            &json!({"filter": {"state": "dead_letter"}}),
        )
        .await?;
    let wall = t.elapsed();
    if status != 200 {
        let short: String = body.to_string().chars().take(500).collect();
        bail!("bulk replay: {status} {short}");
    }
    let replayed = body["replayed"].as_array().map(Vec::len).unwrap_or(0);
    let skipped = body["skipped"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(usize::MAX);
    if replayed != n || skipped != 0 {
        bail!("bulk replay: replayed {replayed}, skipped {skipped}, expected {n} and 0");
    }
    let after = s.audit_total(&token).await?;
    if after - before != n as i64 + 1 {
        bail!(
            "bulk replay: the audit log grew by {}, expected {}",
            after - before,
            n + 1
        );
    }
    rep.target(&sc, "wall time", wall.as_secs_f64(), "s", 5.0, true);
    rep.add(&sc, "entries/s", (n + 1) as f64 / wall.as_secs_f64(), "1/s");
    rep.add(&sc, "audit entries written", (after - before) as f64, "");
    rep.add(&sc, "setup: enqueue via batch", enqueue.as_secs_f64(), "s");
    // Where the time goes: the snapshot (the filter evaluated once) on the store directly.
    // The old jobs stay dead letters, so the same filter still matches all of them.
    let filter = warden_store::jobs::JobFilter {
        state: Some(warden_core::jobs::JobState::DeadLetter),
        ..Default::default()
    };
    let mut snap = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let got = s
            .state
            .store
            .snapshot_job_ids(&cred.tenant, &filter, n as u32 + 1)
            .await?;
        snap.push(t.elapsed());
        if got.len() != n {
            bail!("snapshot found {} of {n}", got.len());
        }
    }
    let snap = Latencies::new(snap);
    rep.add(
        &sc,
        "store-only: snapshot (median of 3)",
        snap.get("median") / 1e3,
        "s",
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Scenario 4: the audit list and stats over a large log

async fn timed_gets(s: &Server, token: &str, paths: &[String]) -> R<(Latencies, usize)> {
    let mut lat = Vec::with_capacity(paths.len());
    let mut items = 0;
    for p in paths {
        let t = Instant::now();
        let r = s.http.get(s.url(p)).bearer_auth(token).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        lat.push(t.elapsed());
        if status != 200 {
            bail!("GET {p}: {status} {}", String::from_utf8_lossy(&body));
        }
        let v: Value = serde_json::from_slice(&body)?;
        items += v["items"].as_array().map(Vec::len).unwrap_or(0);
    }
    Ok((Latencies::new(lat), items))
}

async fn bench_audit(s: &Server, z: &Sizes, rep: &mut Report) -> R<()> {
    let n = z.audit_entries;
    let sc_seed = format!("4 audit seeding (n={n})");
    let tenant_name = "bench-audit";
    let cred = s.client(tenant_name, "bench-admin").await?;
    let tenant = cred.tenant.clone();
    let token = s.token(&cred, Some("orch:read")).await?;

    // Seed through the store in chunks (the same append path as every action).
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = Instant::now();
    let mut done = 0;
    let mut last_report = Instant::now();
    while done < n {
        let k = z.audit_chunk.min(n - done);
        let drafts: Vec<AuditDraft> = (0..k).map(|_| seed_draft(&tenant, &mut rng)).collect();
        s.state.store.append_audit_batch(drafts).await?;
        done += k;
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!(
                "[{}] seeded {done}/{n} entries in {:.0} s",
                s.backend,
                t.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let seeding = t.elapsed();
    let drain = s.wait_outbox_drained(Duration::from_secs(1800)).await?;
    s.maybe_analyze(rep, &sc_seed).await?;
    let size = s.state.store.audit_size(&tenant).await?;
    rep.add(&sc_seed, "seeding time", seeding.as_secs_f64(), "s");
    rep.add(
        &sc_seed,
        "seeding rate",
        n as f64 / seeding.as_secs_f64(),
        "1/s",
    );
    rep.add(
        &sc_seed,
        "outbox drain after seeding",
        drain.as_secs_f64(),
        "s",
    );
    rep.add(&sc_seed, "entries in the tenant's log", size as f64, "");

    // Warm-up (page cache, statement caches), not measured.
    let warm: Vec<String> = (0..10)
        .flat_map(|k| {
            [
                format!("/api/v1/audit?ticket=OPS-{}&limit=100", 5000 + k),
                format!("/api/v1/audit?actor=client:bot-{k}&limit=100"),
            ]
        })
        .collect();
    timed_gets(s, &token, &warm).await?;
    timed_gets(s, &token, &["/api/v1/audit/stats".to_owned()]).await?;

    let reqs = z.list_requests;
    let sc = format!("4 audit list by ticket (x{reqs})");
    let paths: Vec<String> = (0..reqs as u64)
        .map(|k| {
            format!(
                "/api/v1/audit?ticket=OPS-{}&limit=100",
                (1234 + k * 37) % TICKETS
            )
        })
        .collect();
    let (l, items) = timed_gets(s, &token, &paths).await?;
    if items == 0 {
        bail!("the ticket filter found nothing");
    }
    rep.add(&sc, "median", l.get("median"), "ms");
    rep.target(&sc, "p99", l.get("p99"), "ms", 20.0, true);
    rep.add(&sc, "max", l.get("max"), "ms");
    rep.add(&sc, "items per page (mean)", items as f64 / reqs as f64, "");

    let sc = format!("4 audit list by actor (x{reqs})");
    let paths: Vec<String> = (0..reqs as u64)
        .map(|k| {
            format!(
                "/api/v1/audit?actor=client:bot-{}&limit=100",
                (7 + k) % ACTORS
            )
        })
        .collect();
    let (l, items) = timed_gets(s, &token, &paths).await?;
    if items == 0 {
        bail!("the actor filter found nothing");
    }
    rep.add(&sc, "median", l.get("median"), "ms");
    rep.target(&sc, "p99", l.get("p99"), "ms", 20.0, true);
    rep.add(&sc, "max", l.get("max"), "ms");

    let reqs = z.stats_requests;
    let sc = format!("4 audit stats (x{reqs})");
    let paths: Vec<String> = (0..reqs)
        .map(|_| "/api/v1/audit/stats".to_owned())
        .collect();
    let mut lat = Vec::new();
    for p in &paths {
        let t = Instant::now();
        let v = s.get_json(&token, p).await?;
        lat.push(t.elapsed());
        if v["total"].as_i64() != Some(size as i64) {
            bail!("stats total {} != {size}", v["total"]);
        }
    }
    let l = Latencies::new(lat);
    rep.add(&sc, "median", l.get("median"), "ms");
    rep.target(&sc, "p99", l.get("p99"), "ms", 250.0, true);
    rep.target(&sc, "max", l.get("max"), "ms", 250.0, true);

    // The same calls on the store directly (no HTTP, no JSON): where the time goes.
    let sc = "4 store-only (no HTTP), x20";
    let mut by_ticket = Vec::new();
    let mut by_actor = Vec::new();
    let mut stats = Vec::new();
    for k in 0..20u64 {
        let f = AuditFilter {
            ticket: Some(format!("OPS-{}", (4321 + k * 53) % TICKETS)),
            ..AuditFilter::default()
        };
        let t = Instant::now();
        s.state.store.list_audit(&tenant, &f, None, 100).await?;
        by_ticket.push(t.elapsed());
        let f = AuditFilter {
            actors: vec![format!("client:bot-{}", (k * 3) % ACTORS)],
            ..AuditFilter::default()
        };
        let t = Instant::now();
        s.state.store.list_audit(&tenant, &f, None, 100).await?;
        by_actor.push(t.elapsed());
        let t = Instant::now();
        s.state
            .store
            .audit_stats(&tenant, &AuditFilter::default())
            .await?;
        stats.push(t.elapsed());
    }
    for (name, v) in [
        ("list_audit ticket", by_ticket),
        ("list_audit actor", by_actor),
        ("audit_stats", stats),
    ] {
        let l = Latencies::new(v);
        rep.add(sc, &format!("{name} median"), l.get("median"), "ms");
        rep.add(sc, &format!("{name} p99"), l.get("p99"), "ms");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Driver

async fn run_backend(backend: &'static str, opts: &Options) -> R<Vec<Row>> {
    let server = Server::start(backend).await?;
    eprintln!("[{backend}] server on {}", server.base);
    let mut rep = Report::default();
    let mut result = Ok(());
    for sc in &opts.scenarios {
        let t = Instant::now();
        eprintln!("[{backend}] scenario {sc}…");
        let r = match *sc {
            "cancel" => bench_cancel(&server, &opts.sizes, &mut rep).await,
            "token" => bench_token(&server, &opts.sizes, &mut rep).await,
            "replay" => bench_replay(&server, &opts.sizes, &mut rep).await,
            "audit" => bench_audit(&server, &opts.sizes, &mut rep).await,
            _ => unreachable!(),
        };
        eprintln!(
            "[{backend}] scenario {sc} took {:.1} s",
            t.elapsed().as_secs_f64()
        );
        if let Err(e) = r {
            result = Err(format!("{backend}/{sc}: {e}"));
            break;
        }
    }
    let stopped = server.shutdown(opts.keep).await;
    result?;
    stopped?;
    Ok(rep.rows)
}

fn write_json(path: &str, run_id: &str, backend: &str, rows: &[Row], quick: bool) -> R<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for r in rows {
        let line = json!({
            "run": run_id, "quick": quick, "backend": backend, "scenario": r.scenario, "metric": r.metric,
            "value": r.value, "unit": r.unit,
            "target": r.target.as_ref().map(|t| t.0.clone()), "pass": r.target.as_ref().map(|t| t.1),
        });
        writeln!(f, "{line}")?;
    }
    Ok(())
}

async fn postgres_reachable() -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&pg_admin_url())
        )
        .await,
        Ok(Ok(_))
    )
}

#[tokio::main]
async fn main() -> R<()> {
    let opts = options()?;
    let run_id = uuid::Uuid::now_v7().to_string();
    eprintln!(
        "warden control-plane benchmarks: backends {:?}, scenarios {:?}{}",
        opts.backends,
        opts.scenarios,
        if opts.quick {
            " (QUICK: small sizes, numbers are not comparable to the targets)"
        } else {
            ""
        }
    );
    let mut all: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
    let mut failures = Vec::new();
    for &backend in &opts.backends {
        if backend == "postgres" && !postgres_reachable().await {
            let msg = format!(
                "PostgreSQL at {} is unreachable",
                warden_store::redact_url(&pg_admin_url())
            );
            if opts.postgres_explicit {
                failures.push(msg);
            } else {
                eprintln!("SKIPPING postgres: {msg} (set WARDEN_TEST_DATABASE_URL)");
            }
            continue;
        }
        match run_backend(backend, &opts).await {
            Ok(rows) => {
                print_table(backend, &rows);
                if let Some(path) = &opts.json_out {
                    write_json(path, &run_id, backend, &rows, opts.quick)?;
                }
                all.insert(backend, rows);
            }
            Err(e) => {
                eprintln!("FAILED {e}");
                failures.push(e.to_string());
            }
        }
    }
    let misses: Vec<String> = all
        .iter()
        .flat_map(|(b, rows)| {
            rows.iter()
                .filter(|r| r.target.as_ref().is_some_and(|t| !t.1))
                .map(move |r| format!("{b}: {} {}", r.scenario, r.metric))
        })
        .collect();
    println!();
    if misses.is_empty() {
        println!(
            "all targets met{}",
            if opts.quick { " (quick sizes)" } else { "" }
        );
    } else {
        println!(
            "targets missed{}:",
            if opts.quick { " (quick sizes)" } else { "" }
        );
        for m in &misses {
            println!("  MISS {m}");
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} backend(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
    }
    Ok(())
}
