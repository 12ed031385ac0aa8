//! Throwaway databases for tests (feature `testing`): a temp-dir SQLite file, and a fresh
//! PostgreSQL schema per test, so one test suite runs against both backends.
//!
//! PostgreSQL comes from `WARDEN_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the tests run on
//! SQLite only and say so loudly on stderr — unless `CI=true`, where that is a failure.
//!
//! Each PostgreSQL test gets a schema named `wt_<unix seconds>_<8 hex>`, selected on every
//! connection through the URL's `options=-c search_path=…`. It is dropped when the
//! [`TestDb`] is (kept, and named on stderr, when the test panicked); schemas a killed run
//! left behind are swept by the first [`TestDb::postgres`] of a later run once they are
//! two hours old.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection, Row};

use crate::{Backend, Store, StoreOptions, redact_url};

/// The variable naming the PostgreSQL server tests use.
pub const DATABASE_URL_VAR: &str = "WARDEN_TEST_DATABASE_URL";
/// Where tests look for PostgreSQL when [`DATABASE_URL_VAR`] is unset.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Schemas of test runs older than this are dropped by later runs.
const SCHEMA_MAX_AGE_SECS: u64 = 2 * 60 * 60;
/// How long to wait for the PostgreSQL server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static SWEPT: AtomicBool = AtomicBool::new(false);
static SKIP_ANNOUNCED: AtomicBool = AtomicBool::new(false);
/// Why PostgreSQL was unreachable, once it was: later tests skip it without waiting again.
static UNREACHABLE: OnceLock<String> = OnceLock::new();

/// A fresh, empty database for one test; dropped at the end of the test.
pub struct TestDb {
    /// Which backend.
    pub backend: Backend,
    /// The URL to open it with.
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema and the server URL (without the schema) to drop it through.
    schema: Option<(String, String)>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("backend", &self.backend)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Percent-encode a URL query value (everything but unreserved characters).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `options=-c search_path=<schema>` added to its query, and the schema as the
/// connections' `application_name` (so they can be found and ended when it is dropped).
fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let value = encode_query_value(&format!("-c search_path={schema}"));
    format!(
        "{url}{sep}options={value}&application_name={}",
        encode_query_value(schema)
    )
}

/// End the sessions still connected to `schema`, then drop it.
async fn drop_schema(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    // A store dropped with a transaction still open leaves its connection idle in that
    // transaction (the rollback needs the runtime this drop may be blocking), holding locks
    // DROP SCHEMA would wait for forever.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(schema)
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql(&format!(
        "SET lock_timeout = '30s'; DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The creation time encoded in a test schema's name, if it is one.
fn schema_created_secs(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("wt_")?;
    let (secs, suffix) = rest.split_once('_')?;
    if suffix.len() != 8 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    secs.parse().ok()
}

/// Drop test schemas older than [`SCHEMA_MAX_AGE_SECS`]. Best effort.
async fn sweep_old_schemas(conn: &mut PgConnection) {
    let rows = match sqlx::query("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'wt\\_%'")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("warden-store testing: could not list old test schemas: {e}");
            return;
        }
    };
    let now = unix_secs();
    for r in rows {
        let Ok(name) = r.try_get::<String, _>(0) else {
            continue;
        };
        let Some(created) = schema_created_secs(&name) else {
            continue;
        };
        if now.saturating_sub(created) <= SCHEMA_MAX_AGE_SECS {
            continue;
        }
        if let Err(e) = drop_schema(conn, &name).await {
            eprintln!("warden-store testing: could not drop old test schema {name}: {e}");
        }
    }
}

/// Report PostgreSQL unreachable: a panic under `CI=true`, else a loud skip.
fn unreachable(url: &str, err: impl std::fmt::Display) -> Option<TestDb> {
    let msg = format!("PostgreSQL at {} unreachable: {err}", redact_url(url));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg} (CI=true: PostgreSQL is required; set {DATABASE_URL_VAR})");
    }
    let line = format!("SKIPPED: {msg} — tests ran on SQLite only");
    // The test harness captures `eprintln!` of passing tests: say it once where it is
    // always seen, and in every test's own output.
    if !SKIP_ANNOUNCED.swap(true, Ordering::SeqCst) {
        let _ = writeln!(std::io::stderr(), "\n{line}\n");
    }
    eprintln!("{line}");
    None
}

/// The PostgreSQL URL tests and benchmarks start from: `WARDEN_TEST_DATABASE_URL`, else
/// [`DEFAULT_DATABASE_URL`].
pub fn postgres_url() -> String {
    std::env::var(DATABASE_URL_VAR)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` naming database `db` instead of its own (the query kept): for benchmarks and
/// tests that create a database of their own.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[host_start..]
        .find('/')
        .map(|i| i + host_start)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl TestDb {
    /// A temp-dir SQLite file (`sqlite://<dir>/warden.db?mode=rwc`).
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temp dir for the SQLite test database");
        let url = format!("sqlite://{}/warden.db?mode=rwc", dir.path().display());
        TestDb {
            backend: Backend::Sqlite,
            url,
            _dir: Some(dir),
            schema: None,
        }
    }

    /// A fresh PostgreSQL schema (name `wt_<unix secs>_<8 hex>`), selected for every
    /// connection via the URL's `options=-c search_path=<schema>` parameter. Returns `None`
    /// (after a loud `SKIPPED:` line on stderr) when PostgreSQL is unreachable, but panics
    /// instead when the environment variable `CI` is `true`.
    pub async fn postgres() -> Option<TestDb> {
        let base = postgres_url();
        if let Some(err) = UNREACHABLE.get() {
            return unreachable(&base, err);
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&base)).await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return unreachable(&base, UNREACHABLE.get_or_init(|| e.to_string())),
            Err(_) => {
                let err = format!("no answer within {}s", CONNECT_TIMEOUT.as_secs());
                return unreachable(&base, UNREACHABLE.get_or_init(|| err));
            }
        };
        if !SWEPT.swap(true, Ordering::SeqCst) {
            sweep_old_schemas(&mut conn).await;
        }
        let random = uuid::Uuid::now_v7().simple().to_string();
        // The tail of a UUIDv7 is random (its head is the time).
        let schema = format!("wt_{}_{}", unix_secs(), &random[random.len() - 8..]);
        sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create test schema {schema}: {e}"));
        let _ = conn.close().await;
        Some(TestDb {
            backend: Backend::Postgres,
            url: with_search_path(&base, &schema),
            _dir: None,
            schema: Some((schema, base)),
        })
    }

    /// The database named `sqlite` or `postgres` (`None` as [`TestDb::postgres`] says;
    /// any other name panics): how the benchmarks pick their backends.
    pub async fn named(backend: &str) -> Option<TestDb> {
        match backend {
            "sqlite" => Some(Self::sqlite()),
            "postgres" => Self::postgres().await,
            other => panic!("no test database named {other:?} (sqlite, postgres)"),
        }
    }

    /// SQLite, plus PostgreSQL when reachable: what every shared test iterates over.
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = vec![Self::sqlite()];
        dbs.extend(Self::postgres().await);
        dbs
    }

    /// Open the [`Store`] on it (applying the migrations).
    pub async fn open(&self) -> Store {
        Store::open(&StoreOptions::new(self.url.clone()))
            .await
            .unwrap_or_else(|e| panic!("open the {:?} test store: {e}", self.backend))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((schema, base)) = self.schema.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!(
                "warden-store testing: kept PostgreSQL schema {schema} of a failed test for inspection (swept after 2 hours)"
            );
            return;
        }
        // Drop cannot await, and may run inside a runtime: drop the schema from a thread of
        // its own. Best effort; the sweep catches whatever this misses.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&base))
                    .await
                    .map_err(|_| "connect timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                drop_schema(&mut conn, &schema)
                    .await
                    .map_err(|e| format!("drop schema {schema}: {e}"))?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warden-store testing: {e} (swept after 2 hours)"),
            Err(_) => eprintln!("warden-store testing: dropping a test schema panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_is_url_encoded() {
        assert_eq!(
            with_search_path("postgres://u@h/db", "wt_1_abcdef01"),
            "postgres://u@h/db?options=-c%20search_path%3Dwt_1_abcdef01&application_name=wt_1_abcdef01"
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds&application_name=s"
        );
    }

    #[test]
    fn only_test_schemas_carry_a_creation_time() {
        assert_eq!(
            schema_created_secs("wt_1700000000_0a1b2c3d"),
            Some(1_700_000_000)
        );
        assert_eq!(schema_created_secs("wt_1700000000_xyz"), None);
        assert_eq!(schema_created_secs("public"), None);
        assert_eq!(schema_created_secs("wt_abc_0a1b2c3d"), None);
    }
}

/// A small deterministic generator (xorshift64*), so every benchmark run seeds the same
/// shape of log.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A value in `[lo, hi]`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Distinct actors among benchmark entries.
pub const BENCH_ACTORS: u64 = 50;
/// Distinct tickets among benchmark entries.
pub const BENCH_TICKETS: u64 = 10_000;

/// The audited action every benchmark seeds its logs with: one of six actions, 3 %
/// rejected, [`BENCH_ACTORS`] actors, [`BENCH_TICKETS`] tickets, every audit field filled.
pub fn bench_draft(
    tenant: &warden_core::names::TenantId,
    rng: &mut Rng,
) -> warden_core::audit::AuditDraft {
    use warden_core::audit::{Actor, Outcome, Target};
    const ACTIONS: [&str; 6] = [
        "job.cancel",
        "job.replay",
        "queue.pause",
        "queue.resume",
        "token.issue",
        "job.bulk_replay",
    ];
    let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
    let rejected = rng.below(100) < 3;
    let target = match action {
        "queue.pause" | "queue.resume" => Target::new("queue", format!("queue-{}", rng.below(20))),
        "token.issue" => Target::new("token", uuid::Uuid::now_v7().to_string()),
        "job.bulk_replay" => Target::new("bulk", uuid::Uuid::now_v7().to_string()),
        _ => Target::new("job", uuid::Uuid::now_v7().to_string()),
    };
    let d = warden_core::audit::AuditDraft {
        tenant: tenant.clone(),
        actor: Actor::client(format!("bot-{}", rng.below(BENCH_ACTORS))),
        action: action.into(),
        target: Some(target),
        outcome: Outcome::Allowed,
        reason_code: None,
        operator_reason: Some("routine maintenance for the benchmark".into()),
        operator_ticket: Some(format!("OPS-{}", rng.below(BENCH_TICKETS))),
        scope: Some(warden_core::scopes::Scope::Operate),
        source_ip: Some("127.0.0.1".into()),
        request_id: Some(format!("bench-{:016x}", rng.next())),
        token_id: Some(uuid::Uuid::now_v7().to_string()),
        metadata: serde_json::json!({"state_before": "available", "dependents_canceled": 0}),
    };
    if rejected {
        d.rejected(warden_core::reason::ReasonCode::InvalidStateTransition)
    } else {
        d
    }
}

/// The job every engine benchmark enqueues: a no-op of type `job_type` in `queue` with
/// payload `{"i": i}`, default priority, due now, three attempts.
pub fn bench_job(queue: &str, job_type: &str, i: usize) -> warden_core::jobs::NewJob {
    warden_core::jobs::NewJob {
        id: warden_core::names::JobId::new(),
        client_chosen_id: false,
        queue: warden_core::names::QueueName::parse(queue).expect("a valid queue name"),
        job_type: warden_core::names::JobType::parse(job_type).expect("a valid type name"),
        payload: serde_json::json!({ "i": i }),
        priority: 0,
        run_at: None,
        max_attempts: 3,
        idempotency_key: None,
        depends_on: Vec::new(),
    }
}
