//! The store's integration tests, built as the single test binary `it`.
//!
//! Every test runs against every backend: `TestDb::all()` yields a fresh SQLite file and,
//! when PostgreSQL is reachable (`WARDEN_TEST_DATABASE_URL`), a fresh PostgreSQL schema.
//! Assertion messages name the backend.

mod archive;
mod audit;
mod clients;
mod cluster;
mod group_commit;
mod immutability;
mod jobs;
mod ledger;
mod limits;
mod queues;
mod schedules;

use std::fmt::Debug;

use warden_core::audit::{Actor, AuditDraft, Outcome, Target};
use warden_core::jobs::{Job, NewJob};
use warden_core::names::{IdempotencyKey, JobId, JobType, QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::scopes::Scope;
use warden_store::audit::{AuditFilter, StoredEntry};
use warden_store::jobs::JobFilter;
use warden_store::testing::TestDb;
use warden_store::{Backend, Rejection, Store, StoreError};

/// A tenant by name.
pub fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

/// A queue by name.
pub fn queue(name: &str) -> QueueName {
    QueueName::parse(name).expect("valid queue")
}

/// A job type by name.
pub fn job_type(name: &str) -> JobType {
    JobType::parse(name).expect("valid type")
}

/// An allowed operator action by `client:ops-bot` under an `orch:operate` warrant.
pub fn draft(tenant: &TenantId, action: &str) -> AuditDraft {
    AuditDraft {
        tenant: tenant.clone(),
        actor: Actor::client("ops-bot"),
        action: action.to_owned(),
        target: None,
        outcome: Outcome::Allowed,
        reason_code: None,
        operator_reason: Some("maintenance window".into()),
        operator_ticket: Some("OPS-1".into()),
        scope: Some(Scope::Operate),
        source_ip: Some("127.0.0.1".into()),
        request_id: Some("req-1".into()),
        token_id: Some("tok-1".into()),
        metadata: serde_json::json!({}),
    }
}

/// [`draft`] aimed at a job.
pub fn job_draft(tenant: &TenantId, action: &str, id: JobId) -> AuditDraft {
    AuditDraft {
        target: Some(Target::new("job", id.to_string())),
        ..draft(tenant, action)
    }
}

/// A job on `queue` of type `type` with `payload`, runnable now, store-chosen id.
pub fn new_job(queue_name: &str, type_name: &str, payload: serde_json::Value) -> NewJob {
    NewJob {
        id: JobId::new(),
        client_chosen_id: false,
        queue: queue(queue_name),
        job_type: job_type(type_name),
        payload,
        priority: 0,
        run_at: None,
        max_attempts: 3,
        idempotency_key: None,
        depends_on: Vec::new(),
    }
}

/// [`new_job`] with a client-chosen id and dependencies.
pub fn dependent_job(queue_name: &str, depends_on: Vec<JobId>) -> NewJob {
    NewJob {
        client_chosen_id: true,
        depends_on,
        ..new_job(queue_name, "work", serde_json::json!({}))
    }
}

/// [`new_job`] with an idempotency key.
pub fn keyed_job(key: &str, payload: serde_json::Value) -> NewJob {
    NewJob {
        idempotency_key: Some(IdempotencyKey::parse(key).expect("valid key")),
        ..new_job("default", "work", payload)
    }
}

/// Enqueue one job and return it (it must be created).
pub async fn enqueue_one(store: &Store, tenant: &TenantId, job: NewJob) -> Job {
    let b = store.backend();
    let mut out = store
        .enqueue(tenant, vec![job])
        .await
        .unwrap_or_else(|e| panic!("[{b:?}] enqueue: {e}"));
    assert_eq!(out.len(), 1, "[{b:?}] one outcome per job");
    let e = out.remove(0);
    assert!(e.created, "[{b:?}] the job is new");
    e.job
}

/// A job that must exist.
pub async fn job(store: &Store, tenant: &TenantId, id: JobId) -> Job {
    let b = store.backend();
    store
        .get_job(tenant, id)
        .await
        .unwrap_or_else(|e| panic!("[{b:?}] get_job: {e}"))
        .unwrap_or_else(|| panic!("[{b:?}] job {id} exists"))
}

/// Every job of the tenant, newest first.
pub async fn all_jobs(store: &Store, tenant: &TenantId) -> Vec<Job> {
    let b = store.backend();
    let (jobs, more) = store
        .list_jobs(tenant, &JobFilter::default(), None, 100_000)
        .await
        .unwrap_or_else(|e| panic!("[{b:?}] list_jobs: {e}"));
    assert!(!more, "[{b:?}] everything fits one page");
    jobs
}

/// Every audit entry of the tenant matching `filter`, newest first.
pub async fn all_entries(
    store: &Store,
    tenant: &TenantId,
    filter: &AuditFilter,
) -> Vec<StoredEntry> {
    let b = store.backend();
    let (entries, more) = store
        .list_audit(tenant, filter, None, 100_000)
        .await
        .unwrap_or_else(|e| panic!("[{b:?}] list_audit: {e}"));
    assert!(!more, "[{b:?}] everything fits one page");
    entries
}

/// The number of entries in the tenant's log.
pub async fn audit_size(store: &Store, tenant: &TenantId) -> u64 {
    let b = store.backend();
    store
        .audit_size(tenant)
        .await
        .unwrap_or_else(|e| panic!("[{b:?}] audit_size: {e}"))
}

/// The rejection inside a result that must be one.
#[track_caller]
pub fn rejected<T: Debug>(backend: Backend, result: Result<T, StoreError>) -> Rejection {
    match result {
        Err(StoreError::Rejected(r)) => r,
        other => panic!("[{backend:?}] expected a rejection, got {other:?}"),
    }
}

/// Assert a result is a rejection with `code`, returning it.
#[track_caller]
pub fn assert_rejected<T: Debug>(
    backend: Backend,
    result: Result<T, StoreError>,
    code: ReasonCode,
) -> Rejection {
    let r = rejected(backend, result);
    assert_eq!(r.code, code, "[{backend:?}] rejection code ({})", r.detail);
    r
}

#[tokio::test]
async fn migrations_are_idempotent_and_the_store_is_ready() {
    for db in TestDb::all().await {
        let b = db.backend;
        let first = db.open().await;
        assert_eq!(first.backend(), b);
        assert!(first.ready().await, "[{b:?}] ready after the first open");
        let t = tenant("acme");
        first.append_audit(draft(&t, "job.cancel")).await.unwrap();
        // Opening the same database again applies nothing and loses nothing.
        let second = db.open().await;
        assert!(second.ready().await, "[{b:?}] ready after the second open");
        assert_eq!(audit_size(&second, &t).await, 1, "[{b:?}] data survives");
        assert!(
            second.tenant_exists(&TenantId::system()).await.unwrap(),
            "[{b:?}] the _system tenant is seeded once"
        );
        first.close().await;
        second.close().await;
    }
}

#[tokio::test]
async fn a_closed_store_is_not_ready() {
    for db in TestDb::all().await {
        let store = db.open().await;
        store.close().await;
        assert!(
            !store.ready().await,
            "[{:?}] closed store is not ready",
            db.backend
        );
    }
}

#[tokio::test]
async fn test_databases_are_isolated_from_each_other() {
    let (a, b) = (TestDb::all().await, TestDb::all().await);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.backend, y.backend);
        assert_ne!(
            x.url, y.url,
            "[{:?}] each TestDb is a fresh database",
            x.backend
        );
        let (sx, sy) = (x.open().await, y.open().await);
        let t = tenant("acme");
        sx.append_audit(draft(&t, "job.cancel")).await.unwrap();
        assert_eq!(audit_size(&sx, &t).await, 1, "[{:?}]", x.backend);
        assert_eq!(
            audit_size(&sy, &t).await,
            0,
            "[{:?}] nothing leaks",
            x.backend
        );
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = Store::open(&warden_store::StoreOptions::new("mysql://localhost/x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl), "{err:?}");
}

/// Raises (naming them) if any text column of the schema still compares through the
/// database's locale instead of bytewise.
const CHECK_BYTEWISE_TEXT: &str = "DO $$ BEGIN IF EXISTS (
    SELECT 1 FROM information_schema.columns c
    JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
    WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
      AND c.data_type = 'text' AND c.collation_name IS DISTINCT FROM 'C'
      AND c.table_name <> 'schema_migrations')
  THEN RAISE EXCEPTION 'text columns not COLLATE \"C\": %', (
    SELECT string_agg(c.table_name || '.' || c.column_name, ', ')
    FROM information_schema.columns c
    WHERE c.table_schema = current_schema() AND c.data_type = 'text'
      AND c.collation_name IS DISTINCT FROM 'C' AND c.table_name <> 'schema_migrations');
  END IF; END $$";

#[tokio::test]
async fn every_postgres_text_column_compares_bytewise() {
    // One collation everywhere: index keys compare with memcmp (migration 0014), and no
    // query can mix two collations. A later migration that forgets COLLATE "C" fails here.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.open().await;
    store
        .execute_raw(CHECK_BYTEWISE_TEXT)
        .await
        .expect("every text column is COLLATE \"C\"");
    store
        .execute_raw(r#"ALTER TABLE jobs ALTER COLUMN job_type TYPE TEXT COLLATE "default""#)
        .await
        .unwrap();
    let err = store.execute_raw(CHECK_BYTEWISE_TEXT).await.unwrap_err();
    assert!(err.to_string().contains("jobs.job_type"), "{err}");
    store.close().await;
}
