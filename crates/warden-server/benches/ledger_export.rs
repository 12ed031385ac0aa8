//! The streamed audit export, end to end (issue [3/3]: ≥ 200,000 entries/s, memory flat
//! regardless of size). Results and method: `docs/BENCHMARKS.md`.
//!
//! Starts the real server in-process (SQLite in a temp directory; PostgreSQL in a fresh
//! `warden_bench_<random>` database), seeds one tenant's log with 1,000,000 entries
//! through `Store::append_audit_batch` in chunks of 5,000 (the control-plane benchmark's
//! entries), waits until the server's background work has caught up (outbox relayed,
//! search index built), then streams `GET /api/v1/audit/export` (NDJSON) over real HTTP,
//! counting bytes and lines as they arrive and dropping them: first about 10,000 and then
//! about 100,000 entries (`until` the time of that entry) with the resident memory noted
//! after each, then the whole log once to warm up, then the whole log `WARDEN_BENCH_RUNS`
//! times (default 3), measured. During those a thread samples the process's resident memory
//! (`VmRSS` of `/proc/self/status`: server and client together) every 20 ms; each run also
//! reports the CPU time the process spent on it, and the last one its rate in each tenth of
//! the export (a page that costs the same wherever it is gives ten equal rates). Finally one
//! more export is streamed into `warden_ledger::export::Verifier`, so what was timed is known
//! to verify.
//!
//! ```sh
//! cargo bench -p warden-server --bench ledger_export                          # both backends
//! WARDEN_BENCH_ONLY=sqlite cargo bench -p warden-server --bench ledger_export
//! WARDEN_BENCH_KEEP=1 WARDEN_BENCH_ONLY=sqlite cargo bench -p warden-server --bench ledger_export
//! ```
//!
//! `WARDEN_BENCH_ENTRIES` sets the log size (default 1,000,000); `WARDEN_BENCH_VERIFY=0` skips
//! the verified export (for profiling the export alone). `WARDEN_BENCH_KEEP=1` keeps
//! the seeded store (SQLite: `$TMPDIR/warden-bench-export-<n>`; PostgreSQL: database
//! `warden_bench_export_<n>`) and reuses it on the next run with the same setting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden_authority::ClientSecret;
use warden_core::audit::{Actor, ActorKind};
use warden_core::names::{ClientName, TenantId};
use warden_core::scopes::Role;
use warden_ledger::export::{Verifier, VerifyOptions};
use warden_server::{AppState, Application, Config, ServerError};
use warden_store::testing::{Rng, bench_draft as seed_draft};
use warden_store::testing::{postgres_url as pg_admin_url, with_database};

/// The allocator the `warden` binary ships with (decision 0013), so these numbers are its.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TENANT: &str = "bench-export";
const CHUNK: usize = 5_000;

// ---------------------------------------------------------------------------------------
// The server under test

struct Server {
    backend: &'static str,
    base: String,
    http: reqwest::Client,
    state: AppState,
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
    _dir: Option<tempfile::TempDir>,
    /// (admin URL, database name) of a PostgreSQL database to drop at the end.
    drop_pg: Option<(String, String)>,
}

impl Server {
    async fn start(backend: &'static str, n: usize, keep: bool) -> R<Self> {
        let mut config = Config {
            listen: "127.0.0.1:0".parse()?,
            ..Config::default()
        };
        let mut dir = None;
        let mut drop_pg = None;
        match (backend, keep) {
            ("sqlite", false) => {
                let d = tempfile::Builder::new()
                    .prefix("warden-bench-export-")
                    .tempdir()?;
                config.data_dir = d.path().to_path_buf();
                dir = Some(d);
            }
            ("sqlite", true) => {
                config.data_dir = std::env::temp_dir().join(format!("warden-bench-export-{n}"));
                std::fs::create_dir_all(&config.data_dir)?;
            }
            (_, keep) => {
                let admin = pg_admin_url();
                let mut conn = tokio::time::timeout(
                    Duration::from_secs(10),
                    sqlx::PgConnection::connect(&admin),
                )
                .await
                .map_err(|_| "timed out connecting to PostgreSQL")??;
                let name = if keep {
                    format!("warden_bench_export_{n}")
                } else {
                    let random = uuid::Uuid::now_v7().simple().to_string();
                    format!("warden_bench_{}", &random[random.len() - 12..])
                };
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                )
                .bind(&name)
                .fetch_one(&mut conn)
                .await?;
                if !exists {
                    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                        .execute(&mut conn)
                        .await?;
                }
                conn.close().await?;
                config.database_url = Some(with_database(&admin, &name));
                if !keep {
                    drop_pg = Some((admin, name));
                }
            }
        }
        let url = config.store_url();
        let app = Application::build(config).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Ok(Self {
            backend,
            base,
            http: reqwest::Client::builder().tcp_nodelay(true).build()?,
            state,
            url,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
            drop_pg,
        })
    }

    async fn shutdown(mut self) -> R<()> {
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
        if let Some((admin, name)) = self.drop_pg.take() {
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }

    /// A read token for the tenant, through a fresh client and `POST /oauth/token`.
    async fn read_token(&self, tenant: &TenantId) -> R<String> {
        let secret = ClientSecret::generate()?;
        let actor = Actor {
            kind: ActorKind::Cli,
            name: "bench".into(),
        };
        let random = uuid::Uuid::now_v7().simple().to_string();
        let name = ClientName::parse(&format!("bench-{}", &random[random.len() - 8..]))
            .map_err(|e| format!("{e:?}"))?;
        let record = self
            .state
            .store
            .create_client(
                tenant,
                &name,
                &[Role::Admin],
                *secret.digest().as_bytes(),
                &actor,
            )
            .await?;
        let r = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(record.id.to_string(), Some(secret.expose()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&scope=orch%3Aread")
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        if status != 200 {
            return Err(format!("token: {status} {body}").into());
        }
        Ok(body["access_token"].as_str().ok_or("no token")?.to_owned())
    }

    /// Wait until the outbox is relayed and the search index has caught up with the log.
    async fn settle(&self, tenant: &TenantId) -> R<Duration> {
        let start = Instant::now();
        let size = self.state.store.audit_size(tenant).await? as i64;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.url).await?;
        loop {
            let outbox_empty = self.state.store.outbox_peek(1).await?.is_empty();
            let indexed: Option<i64> =
                sqlx::query_scalar("SELECT next_seq FROM audit_search_progress WHERE tenant = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(&mut conn)
                    .await?;
            if outbox_empty && indexed.unwrap_or(0) >= size {
                break;
            }
            if start.elapsed() > Duration::from_secs(3600) {
                return Err("the server did not settle within an hour".into());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        conn.close().await?;
        Ok(start.elapsed())
    }
}

// ---------------------------------------------------------------------------------------
// Seeding (the control-plane benchmark's entries)

// ---------------------------------------------------------------------------------------
// Memory

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// One sample: entries received so far, RSS in KiB, seconds since the start.
type Sample = (u64, u64, f64);

/// Samples progress and RSS every 20 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(progress: Arc<AtomicU64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            let t = Instant::now();
            while !s.load(Ordering::Relaxed) {
                out.push((
                    progress.load(Ordering::Relaxed),
                    rss_kib(),
                    t.elapsed().as_secs_f64(),
                ));
                std::thread::sleep(Duration::from_millis(20));
            }
            out
        });
        Self { stop, handle }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the sampler thread")
    }
}

// ---------------------------------------------------------------------------------------
// The export

struct Streamed {
    elapsed: Duration,
    first_byte: Duration,
    bytes: u64,
    entries: u64,
}

/// Stream the export, splitting lines and handing each to `line`.
async fn export(
    s: &Server,
    token: &str,
    progress: &AtomicU64,
    line: impl FnMut(&str),
) -> R<Streamed> {
    export_query(s, token, "", progress, line).await
}

/// Stream `GET /api/v1/audit/export{query}`.
async fn export_query(
    s: &Server,
    token: &str,
    query: &str,
    progress: &AtomicU64,
    mut line: impl FnMut(&str),
) -> R<Streamed> {
    let t = Instant::now();
    let mut r = s
        .http
        .get(format!("{}/api/v1/audit/export{query}", s.base))
        .bearer_auth(token)
        .send()
        .await?;
    if r.status() != 200 {
        let status = r.status();
        return Err(format!("export: {status} {}", r.text().await?).into());
    }
    let mut first_byte = None;
    let (mut bytes, mut entries) = (0u64, 0u64);
    let mut partial: Vec<u8> = Vec::with_capacity(4096);
    while let Some(chunk) = r.chunk().await? {
        first_byte.get_or_insert_with(|| t.elapsed());
        bytes += chunk.len() as u64;
        let mut rest: &[u8] = &chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let text: &[u8] = if partial.is_empty() {
                &rest[..i]
            } else {
                partial.extend_from_slice(&rest[..i]);
                &partial
            };
            let text = std::str::from_utf8(text)?;
            // Entry lines are the canonical entry (keys sorted: `action` first).
            if text.starts_with("{\"action\"") {
                entries += 1;
            }
            line(text);
            partial.clear();
            rest = &rest[i + 1..];
        }
        partial.extend_from_slice(rest);
        progress.store(entries, Ordering::Relaxed);
    }
    if !partial.is_empty() {
        return Err("the export ended inside a line".into());
    }
    Ok(Streamed {
        elapsed: t.elapsed(),
        first_byte: first_byte.unwrap_or_default(),
        bytes,
        entries,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(backend: &'static str, n: usize, runs: usize, keep: bool) -> R<()> {
    let s = Server::start(backend, n, keep).await?;
    let tenant = TenantId::parse(TENANT).map_err(|e| format!("{e:?}"))?;
    let have = s.state.store.audit_size(&tenant).await? as usize;
    if have < n {
        if have > 0 {
            return Err(
                format!("[{backend}] the kept store holds {have} entries, fewer than {n}").into(),
            );
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let t = Instant::now();
        let mut done = 0;
        while done < n {
            let k = CHUNK.min(n - done);
            let drafts = (0..k).map(|_| seed_draft(&tenant, &mut rng)).collect();
            s.state.store.append_audit_batch(drafts).await?;
            done += k;
            if done % 200_000 == 0 {
                eprintln!(
                    "[{backend}] seeded {done}/{n} in {:.0} s",
                    t.elapsed().as_secs_f64()
                );
            }
        }
        eprintln!(
            "[{backend}] seeded {n} entries in {:.0} s",
            t.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("[{backend}] reusing the kept store with {have} entries");
    }
    let token = s.read_token(&tenant).await?;
    let settle = s.settle(&tenant).await?;
    eprintln!(
        "[{backend}] background work settled after {:.0} s",
        settle.as_secs_f64()
    );
    let progress = Arc::new(AtomicU64::new(0));
    // Memory against size: in this fresh process, export about 10,000 and then about
    // 100,000 entries (`until` the time of that entry) before the whole log, and note the
    // resident memory after each. Growth that stops once the caches are full is flat;
    // growth with the size would not be.
    let mut conn = sqlx::AnyConnection::connect(&s.url).await?;
    for k in [10_000_i64, 100_000] {
        if k as usize >= n {
            continue;
        }
        let at: i64 = sqlx::query_scalar(
            "SELECT created_at FROM audit_entries WHERE tenant = $1 AND seq = $2",
        )
        .bind(tenant.as_str())
        .bind(k)
        .fetch_one(&mut conn)
        .await?;
        let until = warden_core::time::Timestamp::from_micros(at).to_rfc3339();
        let before = rss_kib();
        let r = export_query(&s, &token, &format!("?until={until}"), &progress, |_| {}).await?;
        println!(
            "[{backend}] export of the first {} entries: {:.2} s; RSS {:.1} MiB before it, {:.1} MiB after",
            r.entries,
            r.elapsed.as_secs_f64(),
            before as f64 / 1024.0,
            rss_kib() as f64 / 1024.0
        );
    }
    conn.close().await?;
    // One unmeasured export of everything warms the caches (and cuts the checkpoint).
    let cold = rss_kib();
    let warm = export(&s, &token, &progress, |_| {}).await?;
    println!(
        "[{backend}] warm-up export of all {} entries: {:.2} s; RSS {:.1} MiB before it, {:.1} MiB after",
        warm.entries,
        warm.elapsed.as_secs_f64(),
        cold as f64 / 1024.0,
        rss_kib() as f64 / 1024.0
    );

    println!();
    println!(
        "== {backend}: GET /api/v1/audit/export (NDJSON), {n}+ entries, {runs} measured runs after one warm-up =="
    );
    println!(
        "{:<4} {:>8} {:>12} {:>9} {:>10} {:>10} {:>9} {:>11} {:>11} {:>11} {:>8}",
        "run",
        "time s",
        "entries/s",
        "MB/s",
        "entries",
        "MB",
        "1st byte",
        "RSS before",
        "RSS max",
        "RSS growth",
        "CPU s"
    );
    let mut rates = Vec::new();
    let mut growths = Vec::new();
    let mut traces = Vec::new();
    for run in 1..=runs {
        progress.store(0, Ordering::Relaxed);
        let before = rss_kib();
        let cpu = cpu_secs();
        let sampler = Sampler::start(progress.clone());
        let r = export(&s, &token, &progress, |_| {}).await?;
        let samples = sampler.finish();
        let cpu = cpu_secs() - cpu;
        let max = samples
            .iter()
            .map(|(_, m, _)| *m)
            .max()
            .unwrap_or(before)
            .max(before);
        let rate = r.entries as f64 / r.elapsed.as_secs_f64();
        rates.push(rate);
        growths.push((max as f64 - before as f64) / 1024.0);
        println!(
            "{:<4} {:>8.2} {:>12.0} {:>9.1} {:>10} {:>10.1} {:>7.1}ms {:>8.1}MiB {:>8.1}MiB {:>8.1}MiB {:>8.2}",
            run,
            r.elapsed.as_secs_f64(),
            rate,
            r.bytes as f64 / r.elapsed.as_secs_f64() / 1e6,
            r.entries,
            r.bytes as f64 / 1e6,
            r.first_byte.as_secs_f64() * 1e3,
            before as f64 / 1024.0,
            max as f64 / 1024.0,
            (max as f64 - before as f64) / 1024.0,
            cpu,
        );
        traces.push(samples);
    }
    println!(
        "median {:.0} entries/s (range {:.0}..{:.0}) -> target >= 200,000: {}; RSS growth during an export: median {:.1} MiB",
        median(&rates),
        rates.iter().copied().fold(f64::INFINITY, f64::min),
        rates.iter().copied().fold(0.0, f64::max),
        if median(&rates) >= 200_000.0 {
            "MET"
        } else {
            "MISSED"
        },
        median(&growths),
    );
    // RSS against progress in the last run: flat means memory does not follow the size.
    if let Some(trace) = traces.last() {
        let total = trace.last().map(|(p, ..)| *p).unwrap_or(0).max(1);
        let mut rss = String::from("RSS (MiB) by share of the export streamed, last run:");
        let mut speed = String::from("entries/s in each tenth of the export, last run:");
        let mut last_at = 0.0;
        for decile in 0..=10 {
            let at = total * decile / 10;
            if let Some((_, m, t)) = trace.iter().find(|(p, ..)| *p >= at) {
                rss.push_str(&format!(" {}%={:.1}", decile * 10, *m as f64 / 1024.0));
                if decile > 0 {
                    speed.push_str(&format!(" {:.0}", (total / 10) as f64 / (t - last_at)));
                }
                last_at = *t;
            }
        }
        println!("{rss}");
        // A page costing the same wherever it is gives the same rate in every tenth.
        println!("{speed}");
    }

    if std::env::var("WARDEN_BENCH_VERIFY").is_ok_and(|v| v == "0") {
        return s.shutdown().await;
    }
    // The same export, verified.
    let mut verifier = Verifier::new(VerifyOptions::default())?;
    let mut failure = None;
    let t = Instant::now();
    export(&s, &token, &progress, |l| {
        if failure.is_none()
            && let Err(e) = verifier.feed_line(l)
        {
            failure = Some(e.to_string());
        }
    })
    .await?;
    if let Some(f) = failure {
        return Err(format!("[{backend}] the export does not verify: {f}").into());
    }
    let report = verifier.finish()?;
    println!(
        "verified: {} entries, {} checkpoints, origin {} (export + verify in the same process: {:.1} s)",
        report.entries,
        report.checkpoints_valid,
        report.origin,
        t.elapsed().as_secs_f64()
    );
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if keep {
        eprintln!("[{backend}] kept {}", warden_store::redact_url(&s.url));
    }
    s.shutdown().await
}

#[tokio::main]
async fn main() -> R<()> {
    let n: usize = std::env::var("WARDEN_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("WARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let keep = std::env::var("WARDEN_BENCH_KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
    let only = std::env::var("WARDEN_BENCH_ONLY").unwrap_or_default();
    println!(
        "command: WARDEN_BENCH_ENTRIES={n} WARDEN_BENCH_RUNS={runs}{}{} cargo bench -p warden-server --bench ledger_export",
        if keep { " WARDEN_BENCH_KEEP=1" } else { "" },
        if only.is_empty() {
            String::new()
        } else {
            format!(" WARDEN_BENCH_ONLY={only}")
        }
    );
    for backend in ["sqlite", "postgres"] {
        if !only.is_empty() && !only.split(',').any(|w| w.trim() == backend) {
            continue;
        }
        run(backend, n, runs, keep).await?;
    }
    Ok(())
}
