//! Warden's storage: one [`Store`], two backends — embedded SQLite (the default) and
//! PostgreSQL — behind the same queries.
//!
//! Both backends go through sqlx's `Any` driver with only portable column types (text ids,
//! integer microseconds, blobs), so every query is written once; the few dialect
//! differences (how a write transaction begins, row locks) live in [`Dialect`]. See
//! `docs/decisions/0002-one-store-two-backends.md`.
//!
//! Every operator action commits together with its audit entry: the `*_audited` methods
//! take an [`AuditDraft`](warden_core::audit::AuditDraft) and append it inside the same
//! transaction as the change, or return a [`Rejection`] and change nothing.
//!
//! # Layout
//! - [`audit`]: appending entries (gapless per-tenant `seq`, leaf hashes), listing, stats.
//! - [`jobs`]: enqueue, list, show with timeline, cancel, replay.
//! - [`leases`]: the worker protocol: claims, lease heartbeats, finishing, recovery.
//! - [`queues`]: queue views with depth by state, pause and resume.
//! - [`tenants`]: tenants, OAuth clients, signing keys.
//! - [`outbox`]: the transactional outbox of the event stream.
//! - `testing` (feature `testing`): throwaway SQLite and PostgreSQL databases for tests.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cluster;
pub mod group_commit;
pub mod jobs;
pub mod leases;
pub mod ledger;
pub mod limits;
mod maintenance;
mod migrate;
pub mod outbox;
pub mod queues;
pub mod schedules;
pub mod sealing;
mod sql;
pub mod tenants;
#[cfg(feature = "testing")]
pub mod testing;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use warden_core::audit::AuditEncodeError;
use warden_core::jobs::FieldError;
use warden_core::names::{QueueName, TenantId};
use warden_core::reason::ReasonCode;

pub use sqlx;

/// A request the store refused for a domain reason; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable reason code.
    pub code: ReasonCode,
    /// A human sentence.
    pub detail: String,
    /// Field errors, for `VALIDATION_FAILED`.
    pub errors: Vec<FieldError>,
    /// Seconds after which trying again may succeed (`429`s).
    pub retry_after: Option<u64>,
}

impl Rejection {
    /// A rejection with a code and detail.
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// A `VALIDATION_FAILED` naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let e = FieldError::new(field, message);
        Self {
            code: ReasonCode::ValidationFailed,
            detail: format!("{}: {}", e.field, e.message),
            errors: vec![e],
            retry_after: None,
        }
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The request was refused for a domain reason; nothing changed.
    #[error("rejected: {}: {}", .0.code, .0.detail)]
    Rejected(Rejection),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An entry could not be encoded for the ledger.
    #[error("audit entry encoding: {0}")]
    Encode(#[from] AuditEncodeError),
    /// A stored row did not decode into a domain value (a defect or tampering).
    #[error("corrupt row in {table}: {message}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What failed.
        message: String,
    },
    /// The URL names no supported backend.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// A signing key could not be opened (no master key, or the wrong one).
    #[error(transparent)]
    Sealing(#[from] sealing::SealingError),
}

impl StoreError {
    /// The refusal to pause `what` (e.g. `queue emails`) when it is paused, or to resume it
    /// when it is not.
    pub(crate) fn pause_refused(what: &str, paused: bool) -> Self {
        let state = if paused {
            "already paused"
        } else {
            "not paused"
        };
        Self::rejected(
            ReasonCode::InvalidStateTransition,
            format!("{what} is {state}"),
        )
    }

    /// A domain rejection.
    pub fn rejected(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self::Rejected(Rejection::new(code, detail))
    }

    pub(crate) fn corrupt(table: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            table,
            message: message.to_string(),
        }
    }

    /// Whether this is a unique-constraint violation (a concurrent insert won the race).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }

    /// Whether PostgreSQL aborted the transaction to break a deadlock or a serialization
    /// conflict, so running it again may succeed.
    pub(crate) fn is_transient_conflict(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite, one file, WAL.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The SQL that differs between backends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    pub backend: Backend,
}

impl Dialect {
    /// How each kind of write transaction begins, given the configured SQLite
    /// `synchronous` level (see [`Store::begin_soft_write`]). SQLite refuses to change
    /// `synchronous` inside a transaction, so the level is set just before `BEGIN`, in the
    /// same call; every write transaction sets its own, so none inherits a soft one's.
    /// SQLite takes the write lock up front (`IMMEDIATE`), so a transaction never fails
    /// half-way on upgrading a read lock (`SQLITE_BUSY`).
    fn begins(self, sqlite_sync: &str) -> (String, String) {
        match self.backend {
            Backend::Sqlite => (
                format!("PRAGMA synchronous = {sqlite_sync}; BEGIN IMMEDIATE"),
                "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE".to_owned(),
            ),
            Backend::Postgres => (
                "BEGIN".to_owned(),
                "BEGIN; SET LOCAL synchronous_commit = off".to_owned(),
            ),
        }
    }

    /// Row lock suffix for a read that precedes a write of the same row. SQLite has one
    /// writer at a time, so it needs none.
    pub fn for_update(self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Row lock suffix for a read whose result must stay true until commit, though the row
    /// itself is not written (an enqueue reading the state of the jobs it depends on, which
    /// a concurrent cancel must not change underneath it). SQLite needs none.
    pub fn for_share(self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }
}

/// How to open a store.
#[derive(Clone)]
pub struct StoreOptions {
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub url: String,
    /// Connections for reads (and, on Postgres, writes).
    pub max_connections: u32,
    /// SQLite `synchronous` setting: `FULL` (default: every commit is on disk before it is
    /// acknowledged, surviving power loss) or `NORMAL` (survives a killed process, not an OS crash).
    pub sqlite_synchronous: String,
    /// Seals signing keys at rest (`WARDEN_MASTER_KEY`); plain keys found at open are
    /// sealed then.
    pub master_key: Option<sealing::MasterKey>,
}

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("master_key", &self.master_key)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for logs and `--print-config`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

impl StoreOptions {
    /// Options for a URL with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            sqlite_synchronous: "FULL".into(),
            master_key: None,
        }
    }
}

/// The one storage abstraction. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Writes. On SQLite a single connection: SQLite has one writer, and queueing in the
    /// pool is far cheaper than spinning in the busy handler.
    write: AnyPool,
    /// Reads. On Postgres the same pool as writes.
    read: AnyPool,
    dialect: Dialect,
    /// `BEGIN` of a durable write transaction, and of a soft one ([`Dialect::begins`]).
    begin_durable: String,
    begin_soft: String,
    /// Queues known to exist, so an enqueue need not ensure them.
    known_queues: KnownQueues,
    /// Agents whose rows a lease of this node refreshed lately.
    agent_touches: leases::AgentTouches,
    /// Finishes waiting to be settled together (SQLite, [`group_commit`]).
    finish_lanes: group_commit::FinishLanes,
    /// Where the next lease starts its round over the queues it names (fairness).
    rotation: std::sync::atomic::AtomicUsize,
    /// The connection URL, for the dedicated connections of [`cluster`].
    url: DbUrl,
    /// Seals and opens signing keys.
    master_key: Option<sealing::MasterKey>,
}

/// The WAL size (4 KiB pages) at which the SQLite writer checkpoints inline, after its
/// commit: a backstop for when [`checkpoint_wal`] cannot keep up.
const WAL_BACKSTOP_PAGES: u32 = 16_000;

/// A PostgreSQL connection idle at least this long is pinged before it is used.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How often the background checkpointer copies committed WAL frames into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Copy committed WAL frames into the SQLite database file from a reader connection, so
/// that a commit never waits for a checkpoint. Left to SQLite's automatic checkpoints,
/// every few bulk-replay commits paid 20–35 ms for one, inside the writer lock (against
/// 5 ms for a commit without). Durability does not change: a commit is durable once its
/// WAL frames are synced (`synchronous = FULL`); a checkpoint only moves them. PASSIVE
/// never blocks the writer or readers. Stops when the store is dropped or closed.
async fn checkpoint_wal(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.read.is_closed() {
            return;
        }
        if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&inner.read)
            .await
        {
            tracing::warn!(error = %e, "background WAL checkpoint failed; will retry");
        }
    }
}

/// Queues seen to exist, by tenant (see `jobs::ensure_queues`). Bounded: past
/// [`KnownQueues::MAX`] queues it starts afresh, which costs only the statements it saves.
#[derive(Debug, Default)]
pub(crate) struct KnownQueues(std::sync::Mutex<Known>);

#[derive(Debug, Default)]
struct Known {
    queues: std::collections::HashMap<TenantId, std::collections::HashSet<QueueName>>,
    count: usize,
}

impl KnownQueues {
    const MAX: usize = 100_000;

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether every one of `queues` of `tenant` is known to exist.
    pub(crate) fn all_known(&self, tenant: &TenantId, queues: &[&QueueName]) -> bool {
        match self.known().queues.get(tenant) {
            Some(known) => queues.iter().all(|q| known.contains(*q)),
            None => queues.is_empty(),
        }
    }

    /// Remember that these committed queues of `tenant` exist.
    pub(crate) fn learn<'a>(&self, tenant: &TenantId, queues: impl Iterator<Item = &'a QueueName>) {
        let mut known = self.known();
        for q in queues {
            if known.count >= Self::MAX {
                *known = Known::default();
            }
            if known
                .queues
                .entry(tenant.clone())
                .or_default()
                .insert(q.clone())
            {
                known.count += 1;
            }
        }
    }
}

/// A connection URL whose `Debug` hides the password.
struct DbUrl(String);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::ops::Deref for DbUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Store {
    /// Connect and apply pending migrations.
    pub async fn open(options: &StoreOptions) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if options.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let connect = AnyConnectOptions::from_str(&options.url)?;
        let sync = match options.sqlite_synchronous.to_ascii_uppercase().as_str() {
            "NORMAL" => "NORMAL",
            _ => "FULL",
        };
        let dialect = Dialect { backend };
        let (begin_durable, begin_soft) = dialect.begins(sync);
        let (write, read) = match backend {
            Backend::Sqlite => {
                // The writer gets a larger page cache (a 1,000-job bulk chunk touches some
                // ten indexes; the 2 MiB default spills dirty pages mid-transaction);
                // statement journals stay in memory. Checkpoints run in the background
                // ([`checkpoint_wal`]); the writer checkpoints itself only as a backstop.
                let pragmas = |cache_kib: u32| {
                    format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{cache_kib}; \
                         PRAGMA wal_autocheckpoint = {WAL_BACKSTOP_PAGES};"
                    )
                };
                let pool = |n: u32, pragmas: String| {
                    AnyPoolOptions::new()
                        .max_connections(n)
                        .min_connections(1)
                        .acquire_timeout(Duration::from_secs(30))
                        // A connection to a local file cannot hang up: no ping (a round
                        // trip to sqlx's worker thread) before every use.
                        .test_before_acquire(false)
                        .after_connect(move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move {
                                conn.execute(sqlx::raw_sql(&pragmas)).await?;
                                Ok(())
                            })
                        })
                        .connect_with(connect.clone())
                };
                // The writer first: it switches the file to WAL before readers open it.
                let write = pool(1, pragmas(32 * 1024)).await?;
                let read = pool(options.max_connections.max(1), pragmas(8 * 1024)).await?;
                (write, read)
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(options.max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    // sqlx pings a connection before every use by default: a network
                    // round trip per transaction, a tenth of a millisecond or more here.
                    // Only a connection idle for a while is checked; one in use a moment
                    // ago that has since died fails its statement, and the pool drops it.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_IF_IDLE_FOR {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_with(connect)
                    .await?;
                (pool.clone(), pool)
            }
        };
        let store = Self {
            inner: Arc::new(Inner {
                write,
                read,
                dialect,
                begin_durable,
                begin_soft,
                known_queues: KnownQueues::default(),
                agent_touches: leases::AgentTouches::default(),
                finish_lanes: group_commit::FinishLanes::default(),
                rotation: std::sync::atomic::AtomicUsize::new(0),
                url: DbUrl(options.url.clone()),
                master_key: options.master_key.clone(),
            }),
        };
        migrate::run(&store).await?;
        store.seal_plain_signing_keys().await?;
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoint_wal(Arc::downgrade(&store.inner)));
        }
        Ok(store)
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.inner.dialect.backend
    }

    /// The next starting offset of a round over `n` queues.
    pub(crate) fn next_rotation(&self, n: usize) -> usize {
        self.inner
            .rotation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % n.max(1)
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    pub(crate) fn read_pool(&self) -> &AnyPool {
        &self.inner.read
    }

    /// Begin a write transaction (the writer lock on SQLite) whose commit returns once it
    /// is on disk (with SQLite's configured `synchronous`, `FULL` by default).
    pub(crate) async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self
            .inner
            .write
            .begin_with(self.inner.begin_durable.clone())
            .await?)
    }

    /// Begin a write transaction whose commit does not wait for the disk: SQLite
    /// `synchronous = NORMAL` (the WAL frames reach the operating system at commit and
    /// the disk with the next durable commit or checkpoint), PostgreSQL
    /// `synchronous_commit = off`. Only for soft state, which a worker's lease is: a
    /// killed `warden` process loses nothing committed this way (the operating system
    /// holds it), and a power loss or operating-system crash can forget only the last
    /// moments of such commits, whole and in order — a forgotten lease leaves its job
    /// `available` to be leased again, which at-least-once delivery already allows (an
    /// expired lease does the same). Enqueues, completions and failures, and every
    /// operator action with its audit entry stay durable. Decision 0004 says why the
    /// lease's own disk wait was the one to go.
    pub(crate) async fn begin_soft_write(
        &self,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self
            .inner
            .write
            .begin_with(self.inner.begin_soft.clone())
            .await?)
    }

    /// Whether the store answers and its migrations are applied (`/readyz`).
    pub async fn ready(&self) -> bool {
        migrate::is_current(self).await.unwrap_or(false)
    }

    /// Run raw SQL on the write connection. For tests and operators' tooling only: it is how
    /// the tamper tests prove that the database itself refuses to rewrite the audit log.
    pub async fn execute_raw(&self, sql: &str) -> StoreResult<u64> {
        Ok(sqlx::raw_sql(sql)
            .execute(&self.inner.write)
            .await?
            .rows_affected())
    }

    /// Close the pools, waiting for connections to be returned.
    pub async fn close(&self) {
        self.inner.write.close().await;
        self.inner.read.close().await;
    }
}

/// Decode helpers shared by the modules: every stored value is text, integer or blob.
pub(crate) mod row {
    use sqlx::Row;
    use sqlx::any::AnyRow;

    use crate::{StoreError, StoreResult};

    pub fn text(r: &AnyRow, col: &str) -> StoreResult<String> {
        Ok(r.try_get::<String, _>(col)?)
    }

    pub fn opt_text(r: &AnyRow, col: &str) -> StoreResult<Option<String>> {
        Ok(r.try_get::<Option<String>, _>(col)?)
    }

    pub fn int(r: &AnyRow, col: &str) -> StoreResult<i64> {
        Ok(r.try_get::<i64, _>(col)?)
    }

    pub fn opt_int(r: &AnyRow, col: &str) -> StoreResult<Option<i64>> {
        Ok(r.try_get::<Option<i64>, _>(col)?)
    }

    pub fn boolean(r: &AnyRow, col: &str) -> StoreResult<bool> {
        // SQLite hands booleans back as integers through `Any`.
        match r.try_get::<bool, _>(col) {
            Ok(b) => Ok(b),
            Err(_) => Ok(r.try_get::<i64, _>(col)? != 0),
        }
    }

    pub fn parse<T, E: std::fmt::Display>(
        table: &'static str,
        value: &str,
        f: impl FnOnce(&str) -> Result<T, E>,
    ) -> StoreResult<T> {
        f(value).map_err(|e| StoreError::corrupt(table, format!("{value:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_queues_answer_per_tenant_and_start_afresh_when_full() {
        let known = KnownQueues::default();
        let (acme, globex) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("globex").unwrap(),
        );
        let (mail, sms) = (
            QueueName::parse("mail").unwrap(),
            QueueName::parse("sms").unwrap(),
        );
        assert!(known.all_known(&acme, &[]), "nothing to ensure");
        assert!(!known.all_known(&acme, &[&mail]));
        known.learn(&acme, [&mail].into_iter());
        assert!(known.all_known(&acme, &[&mail]));
        assert!(
            !known.all_known(&acme, &[&mail, &sms]),
            "every queue must be known"
        );
        assert!(
            !known.all_known(&globex, &[&mail]),
            "another tenant's queue is not"
        );
        let many: Vec<QueueName> = (0..KnownQueues::MAX)
            .map(|i| QueueName::parse(&format!("q{i}")).unwrap())
            .collect();
        known.learn(&globex, many.iter());
        assert!(
            !known.all_known(&acme, &[&mail]),
            "full: forgotten, not grown"
        );
        assert!(known.known().count <= KnownQueues::MAX);
    }

    #[test]
    fn urls_are_redacted_for_logs() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite://./x.db?mode=rwc"),
            "sqlite://./x.db?mode=rwc"
        );
    }
}
