//! Jobs: enqueue (idempotency, ids, dependencies, batches), listing, tenant isolation, and
//! the audited cancel and replay with their atomicity.

use std::collections::HashSet;
use std::time::Duration;

use warden_core::audit::{Actor, Outcome};
use warden_core::jobs::{JobState, NewJob};
use warden_core::names::{AgentId, JobId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;
use warden_store::StoreError;
use warden_store::audit::AuditFilter;
use warden_store::jobs::{JobFilter, ReplayOutcome};
use warden_store::leases::{FinishItem, LeaseRequest};
use warden_store::testing::TestDb;

use crate::{
    all_entries, all_jobs, assert_rejected, audit_size, dependent_job, draft, enqueue_one, job,
    job_draft, job_type, keyed_job, new_job, queue, tenant,
};

#[tokio::test]
async fn enqueue_creates_an_available_job_with_its_timeline() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let before = Timestamp::now();
        let mut nj = new_job(
            "emails",
            "send",
            serde_json::json!({"to": "a@example.com", "n": [1, 2]}),
        );
        nj.priority = -5;
        nj.max_attempts = 7;
        let created = enqueue_one(&store, &t, nj.clone()).await;
        assert_eq!(created.id, nj.id, "[{b:?}]");
        assert_eq!(created.state, JobState::Available, "[{b:?}]");
        assert!(created.run_at >= before, "[{b:?}] run_at defaults to now");

        let got = job(&store, &t, nj.id).await;
        assert_eq!(got.state, JobState::Available, "[{b:?}]");
        assert_eq!(got.queue, nj.queue, "[{b:?}]");
        assert_eq!(got.job_type, nj.job_type, "[{b:?}]");
        assert_eq!(got.payload, nj.payload, "[{b:?}] payload round-trips");
        assert_eq!(got.priority, -5, "[{b:?}]");
        assert_eq!(got.max_attempts, 7, "[{b:?}]");
        assert_eq!(got.attempt, 0, "[{b:?}]");
        assert_eq!(got.replay_of, None, "[{b:?}]");
        assert_eq!(got.reason_code, None, "[{b:?}]");
        assert_eq!(got.created_at, created.created_at, "[{b:?}]");
        let timeline = got.timeline.expect("get_job carries the timeline");
        assert_eq!(timeline.len(), 1, "[{b:?}] one transition");
        assert_eq!(timeline[0].state, JobState::Available, "[{b:?}]");
        assert_eq!(timeline[0].at, created.created_at, "[{b:?}]");
        assert_eq!(timeline[0].actor, None, "[{b:?}] enqueues have no operator");
        // Without the timeline, the stored job is what enqueue returned.
        let mut listed = all_jobs(&store, &t).await;
        assert_eq!(listed.len(), 1, "[{b:?}]");
        assert_eq!(listed.remove(0), created, "[{b:?}] listed == enqueued");
    }
}

#[tokio::test]
async fn a_plain_enqueue_keeps_the_first_entry_in_the_job_row_and_older_stored_entries_still_read()
{
    // Decision 0015: a plain job's first timeline entry is its row's `first_state`, not a
    // `job_events` row; the timeline shows it first either way, before and after the job
    // moves to `jobs_done`, and a job written before migration 0019 (entry stored, no
    // `first_state`) reads as it always did.
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        // A batch of plain jobs (PostgreSQL's one-statement enqueue) and a keyed one (the
        // transaction path on both backends).
        let plain = [
            new_job("emails", "send", serde_json::json!({})),
            new_job("emails", "send", serde_json::json!({})),
        ];
        store.enqueue(&t, plain.to_vec()).await.unwrap();
        let keyed = enqueue_one(&store, &t, keyed_job("k-1", serde_json::json!({}))).await;
        let ids = [plain[0].id, plain[1].id, keyed.id];
        for id in ids {
            let stored = store
                .execute_raw(&format!("DELETE FROM job_events WHERE job_id = '{id}'"))
                .await
                .unwrap();
            assert_eq!(
                stored, 0,
                "[{b:?}] {id}: no job_events row for the first entry"
            );
            let got = job(&store, &t, id).await;
            let tl = got.timeline.unwrap();
            assert_eq!(tl.len(), 1, "[{b:?}] {id}: one entry");
            assert_eq!(
                (tl[0].at, tl[0].state, tl[0].attempt),
                (got.created_at, JobState::Available, 0),
                "[{b:?}] {id}"
            );
            assert_eq!(
                (
                    &tl[0].agent_id,
                    &tl[0].actor,
                    tl[0].reason_code,
                    &tl[0].error
                ),
                (&None, &None, None, &None),
                "[{b:?}] {id}"
            );
        }

        // As a job enqueued before migration 0019 is stored.
        let old = plain[1].id;
        let created = job(&store, &t, old).await.created_at.as_micros();
        store
            .execute_raw(&format!(
                "UPDATE jobs SET first_state = NULL WHERE id = '{old}'; \
                 INSERT INTO job_events (tenant, job_id, at, state, attempt) \
                 VALUES ('acme', '{old}', {created}, 'available', 0)"
            ))
            .await
            .unwrap();
        let tl = job(&store, &t, old).await.timeline.unwrap();
        assert_eq!(tl.len(), 1, "[{b:?}] the stored entry, once");
        assert_eq!(tl[0].at.as_micros(), created, "[{b:?}]");

        // Run and finish the first job, then move it out of the hot table: its timeline
        // still begins with the entry its row kept.
        let req = LeaseRequest {
            agent_id: AgentId::parse("w").unwrap(),
            queues: vec![queue("emails")],
            types: None,
            max_jobs: 1,
            lease_secs: 60,
        };
        let leased = store.lease_jobs(&t, &req).await.unwrap();
        assert_eq!(leased.len(), 1, "[{b:?}]");
        let first = leased[0].id;
        store
            .finish_jobs(&t, &[FinishItem::completed(&leased[0])])
            .await
            .unwrap();
        let moved = store
            .archive_finished_jobs(Timestamp::now().saturating_add_micros(1), 100)
            .await
            .unwrap();
        assert_eq!(moved, 1, "[{b:?}]");
        let states: Vec<(JobState, u32)> = job(&store, &t, first)
            .await
            .timeline
            .unwrap()
            .iter()
            .map(|e| (e.state, e.attempt))
            .collect();
        assert_eq!(
            states,
            [
                (JobState::Available, 0),
                (JobState::Running, 1),
                (JobState::Succeeded, 1)
            ],
            "[{b:?}] the moved job's whole timeline, in order"
        );
    }
}

#[tokio::test]
async fn enqueue_with_a_future_run_at_is_pending() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let at = Timestamp::from_micros(Timestamp::now().as_micros() + 3_600_000_000);
        let mut nj = new_job("emails", "send", serde_json::json!({}));
        nj.run_at = Some(at);
        let j = enqueue_one(&store, &t, nj.clone()).await;
        assert_eq!(j.state, JobState::Pending, "[{b:?}]");
        let got = job(&store, &t, nj.id).await;
        assert_eq!(got.state, JobState::Pending, "[{b:?}]");
        assert_eq!(got.run_at, at, "[{b:?}] run_at is kept");
        let mut past = new_job("emails", "send", serde_json::json!({}));
        past.run_at = Some(Timestamp::from_micros(1_000_000));
        assert_eq!(
            enqueue_one(&store, &t, past).await.state,
            JobState::Available,
            "[{b:?}] a past run_at is runnable now"
        );
    }
}

#[tokio::test]
async fn reusing_an_idempotency_key_for_the_same_job_returns_the_existing_one() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let payload = serde_json::json!({"b": 2, "a": 1});
        let first = enqueue_one(&store, &t, keyed_job("order-42", payload.clone())).await;
        let again = store
            .enqueue(
                &t,
                vec![keyed_job("order-42", serde_json::json!({"a": 1, "b": 2}))],
            )
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "[{b:?}]");
        assert!(!again[0].created, "[{b:?}] not created again");
        assert_eq!(again[0].job.id, first.id, "[{b:?}] the same job");
        assert_eq!(all_jobs(&store, &t).await.len(), 1, "[{b:?}] still one job");
        // The key is per tenant.
        let other = store
            .enqueue(&tenant("globex"), vec![keyed_job("order-42", payload)])
            .await
            .unwrap();
        assert!(
            other[0].created,
            "[{b:?}] another tenant may use the same key"
        );
        // Mixed batch: one reused key, one new job.
        let mixed = store
            .enqueue(
                &t,
                vec![
                    keyed_job("order-42", serde_json::json!({"a": 1, "b": 2})),
                    keyed_job("order-43", serde_json::json!({})),
                ],
            )
            .await
            .unwrap();
        assert!(!mixed[0].created && mixed[1].created, "[{b:?}]");
        assert_eq!(mixed[0].job.id, first.id, "[{b:?}]");
        assert_eq!(all_jobs(&store, &t).await.len(), 2, "[{b:?}]");
    }
}

#[tokio::test]
async fn reusing_an_idempotency_key_for_a_different_job_is_an_idempotency_conflict() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        enqueue_one(
            &store,
            &t,
            keyed_job("order-42", serde_json::json!({"a": 1})),
        )
        .await;
        for conflicting in [
            keyed_job("order-42", serde_json::json!({"a": 2})),
            NewJob {
                queue: queue("other"),
                ..keyed_job("order-42", serde_json::json!({"a": 1}))
            },
            NewJob {
                job_type: job_type("other"),
                ..keyed_job("order-42", serde_json::json!({"a": 1}))
            },
        ] {
            let r = store
                .enqueue(
                    &t,
                    vec![new_job("q", "t", serde_json::json!({})), conflicting],
                )
                .await;
            assert_rejected(b, r, ReasonCode::IdempotencyConflict);
        }
        assert_eq!(
            all_jobs(&store, &t).await.len(),
            1,
            "[{b:?}] nothing created"
        );
        // A key twice in one batch is a validation error.
        let r = store
            .enqueue(
                &t,
                vec![
                    keyed_job("k", serde_json::json!({})),
                    keyed_job("k", serde_json::json!({})),
                ],
            )
            .await;
        assert_rejected(b, r, ReasonCode::ValidationFailed);
    }
}

#[tokio::test]
async fn reusing_a_client_chosen_id_is_a_duplicate_job_id() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let nj = dependent_job("q", vec![]);
        enqueue_one(&store, &t, nj.clone()).await;
        let r = store
            .enqueue(
                &t,
                vec![new_job("q", "t", serde_json::json!({})), nj.clone()],
            )
            .await;
        assert_rejected(b, r, ReasonCode::DuplicateJobId);
        assert_eq!(
            all_jobs(&store, &t).await.len(),
            1,
            "[{b:?}] nothing created"
        );
        // Ids are per tenant.
        enqueue_one(&store, &tenant("globex"), nj).await;
    }
}

#[tokio::test]
async fn a_job_depending_on_another_in_its_batch_is_pending() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = dependent_job("q", vec![]);
        let bj = dependent_job("q", vec![a.id]);
        // Dependents may come before their dependencies in the batch.
        let out = store
            .enqueue(&t, vec![bj.clone(), a.clone()])
            .await
            .unwrap();
        assert_eq!(out[0].job.id, bj.id, "[{b:?}] outcomes in request order");
        assert_eq!(out[0].job.state, JobState::Pending, "[{b:?}] B waits for A");
        assert_eq!(
            out[1].job.state,
            JobState::Available,
            "[{b:?}] A is runnable"
        );
        let got = job(&store, &t, bj.id).await;
        assert_eq!(got.state, JobState::Pending, "[{b:?}]");
        assert_eq!(got.depends_on, vec![a.id], "[{b:?}] depends_on is kept");
        // A dependency outside the batch that is not finished keeps the new job pending too.
        let c = enqueue_one(&store, &t, dependent_job("q", vec![a.id])).await;
        assert_eq!(c.state, JobState::Pending, "[{b:?}]");
    }
}

#[tokio::test]
async fn self_dependencies_and_cycles_are_refused_and_create_nothing() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut selfish = dependent_job("q", vec![]);
        selfish.depends_on = vec![selfish.id];
        let r = store
            .enqueue(&t, vec![new_job("q", "t", serde_json::json!({})), selfish])
            .await;
        let r = assert_rejected(b, r, ReasonCode::ValidationFailed);
        assert_eq!(r.errors[0].field, "jobs[1].depends_on", "[{b:?}]");

        let (x, y, z) = (JobId::new(), JobId::new(), JobId::new());
        let mk = |id: JobId, dep: JobId| NewJob {
            id,
            ..dependent_job("q", vec![dep])
        };
        let r = store
            .enqueue(
                &t,
                vec![
                    new_job("q", "t", serde_json::json!({})),
                    mk(x, z),
                    mk(y, x),
                    mk(z, y),
                ],
            )
            .await;
        let r = assert_rejected(b, r, ReasonCode::ValidationFailed);
        assert!(r.detail.contains("cycle"), "[{b:?}] {}", r.detail);
        assert!(
            all_jobs(&store, &t).await.is_empty(),
            "[{b:?}] nothing created"
        );
        assert!(
            store.get_queue(&t, &queue("q")).await.unwrap().is_none(),
            "[{b:?}] not even the queue"
        );
    }
}

#[tokio::test]
async fn a_dependency_on_an_unknown_job_is_refused() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let other_tenants = enqueue_one(
            &store,
            &tenant("globex"),
            new_job("q", "t", serde_json::json!({})),
        )
        .await;
        for missing in [JobId::new(), other_tenants.id] {
            let r = store
                .enqueue(
                    &t,
                    vec![
                        new_job("q", "t", serde_json::json!({})),
                        dependent_job("q", vec![missing]),
                    ],
                )
                .await;
            let r = assert_rejected(b, r, ReasonCode::ValidationFailed);
            assert_eq!(r.errors[0].field, "jobs[1].depends_on", "[{b:?}]");
            assert!(
                r.errors[0].message.contains(&missing.to_string()),
                "[{b:?}]"
            );
        }
        assert!(
            all_jobs(&store, &t).await.is_empty(),
            "[{b:?}] nothing created"
        );
    }
}

#[tokio::test]
async fn a_job_depending_on_a_canceled_job_is_canceled_upstream_failed() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        store
            .cancel_job_audited(&t, a.id, job_draft(&t, "job.cancel", a.id))
            .await
            .unwrap();
        let nb = dependent_job("q", vec![a.id]);
        let nc = dependent_job("q", vec![nb.id]);
        let out = store
            .enqueue(&t, vec![nb.clone(), nc.clone()])
            .await
            .unwrap();
        for (o, id) in out.iter().zip([nb.id, nc.id]) {
            assert_eq!(o.job.state, JobState::Canceled, "[{b:?}] {id}");
            assert_eq!(
                o.job.reason_code,
                Some(ReasonCode::UpstreamFailed),
                "[{b:?}]"
            );
            let got = job(&store, &t, id).await;
            assert_eq!(got.state, JobState::Canceled, "[{b:?}]");
            assert_eq!(got.reason_code, Some(ReasonCode::UpstreamFailed), "[{b:?}]");
            let tl = got.timeline.unwrap();
            assert_eq!(tl.len(), 1, "[{b:?}]");
            assert_eq!(
                tl[0].reason_code,
                Some(ReasonCode::UpstreamFailed),
                "[{b:?}]"
            );
        }
    }
}

#[tokio::test]
async fn a_batch_of_2000_jobs_is_all_or_nothing() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let batch = |n: usize| -> Vec<NewJob> {
            (0..n)
                .map(|i| NewJob {
                    priority: (i % 10) as i32,
                    ..new_job(
                        &format!("q{}", i % 3),
                        "bulk",
                        serde_json::json!({ "i": i }),
                    )
                })
                .collect()
        };
        // The last job is bad: nothing at all is created.
        let mut bad = batch(2000);
        bad[1999].depends_on = vec![JobId::new()];
        let r = store.enqueue(&t, bad).await;
        let r = assert_rejected(b, r, ReasonCode::ValidationFailed);
        assert_eq!(r.errors[0].field, "jobs[1999].depends_on", "[{b:?}]");
        assert!(
            all_jobs(&store, &t).await.is_empty(),
            "[{b:?}] none created"
        );

        // A duplicate id discovered by the database at the end rolls everything back too.
        let existing = enqueue_one(&store, &t, new_job("q0", "bulk", serde_json::json!({}))).await;
        let mut dup = batch(2000);
        dup[1500].id = existing.id; // not client-chosen: only the insert finds the clash
        let r = store.enqueue(&t, dup).await;
        assert_rejected(b, r, ReasonCode::DuplicateJobId);
        assert_eq!(all_jobs(&store, &t).await.len(), 1, "[{b:?}] none created");

        let good = batch(2000);
        let ids: HashSet<JobId> = good.iter().map(|j| j.id).collect();
        let out = store.enqueue(&t, good).await.unwrap();
        assert_eq!(out.len(), 2000, "[{b:?}]");
        assert!(out.iter().all(|o| o.created), "[{b:?}]");
        let listed = all_jobs(&store, &t).await;
        assert_eq!(listed.len(), 2001, "[{b:?}] all listed");
        let listed_ids: HashSet<JobId> = listed.iter().map(|j| j.id).collect();
        assert!(
            ids.is_subset(&listed_ids),
            "[{b:?}] every job of the batch is listed"
        );
        let q0 = store.get_queue(&t, &queue("q0")).await.unwrap().unwrap();
        assert_eq!(q0.depth["available"], 668, "[{b:?}] 667 of the batch + 1");
    }
}

#[tokio::test]
async fn list_jobs_pages_newest_first_yielding_each_job_once() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut ids = Vec::new();
        for i in 0..23 {
            ids.push(
                enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({ "i": i })))
                    .await
                    .id,
            );
        }
        enqueue_one(
            &store,
            &tenant("globex"),
            new_job("q", "t", serde_json::json!({})),
        )
        .await;
        ids.reverse();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, more) = store
                .list_jobs(&t, &JobFilter::default(), cursor, 4)
                .await
                .unwrap();
            seen.extend(page.iter().map(|j| j.id));
            if !more {
                break;
            }
            assert_eq!(page.len(), 4, "[{b:?}]");
            cursor = page.last().map(|j| j.id);
        }
        assert_eq!(seen, ids, "[{b:?}] each once, newest first");
    }
}

#[tokio::test]
async fn list_jobs_filters_by_queue_state_type_and_time() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        let bj = enqueue_one(
            &store,
            &t,
            new_job("emails", "bounce", serde_json::json!({})),
        )
        .await;
        let c = enqueue_one(
            &store,
            &t,
            new_job("reports", "send", serde_json::json!({})),
        )
        .await;
        let d = enqueue_one(&store, &t, dependent_job("reports", vec![c.id])).await;
        store
            .cancel_job_audited(&t, bj.id, job_draft(&t, "job.cancel", bj.id))
            .await
            .unwrap();
        let ids = |f: JobFilter| {
            let store = store.clone();
            let t = t.clone();
            async move {
                let (jobs, _) = store.list_jobs(&t, &f, None, 100).await.unwrap();
                jobs.into_iter().map(|j| j.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            ids(JobFilter {
                queue: Some(queue("emails")),
                ..Default::default()
            })
            .await,
            vec![bj.id, a.id],
            "[{b:?}] queue"
        );
        assert_eq!(
            ids(JobFilter {
                state: Some(JobState::Canceled),
                ..Default::default()
            })
            .await,
            vec![bj.id],
            "[{b:?}] state"
        );
        assert_eq!(
            ids(JobFilter {
                state: Some(JobState::Pending),
                ..Default::default()
            })
            .await,
            vec![d.id],
            "[{b:?}] pending"
        );
        assert_eq!(
            ids(JobFilter {
                job_type: Some(job_type("send")),
                ..Default::default()
            })
            .await,
            vec![c.id, a.id],
            "[{b:?}] type"
        );
        assert_eq!(
            ids(JobFilter {
                queue: Some(queue("reports")),
                state: Some(JobState::Available),
                job_type: Some(job_type("send")),
                ..Default::default()
            })
            .await,
            vec![c.id],
            "[{b:?}] combined"
        );
        assert_eq!(
            ids(JobFilter {
                since: Some(bj.created_at),
                until: Some(d.created_at),
                ..Default::default()
            })
            .await,
            vec![c.id, bj.id],
            "[{b:?}] since inclusive, until exclusive"
        );
        assert_eq!(
            ids(JobFilter {
                queue: Some(queue("emails")),
                since: Some(bj.created_at),
                ..Default::default()
            })
            .await,
            vec![bj.id],
            "[{b:?}] text and time filters together"
        );
        // A keyset cursor combined with a time filter.
        let (page, _) = store
            .list_jobs(
                &t,
                &JobFilter {
                    since: Some(a.created_at),
                    ..Default::default()
                },
                Some(c.id),
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            page.into_iter().map(|j| j.id).collect::<Vec<_>>(),
            vec![bj.id, a.id],
            "[{b:?}] cursor and time filter"
        );
    }
}

#[tokio::test]
async fn another_tenants_jobs_are_invisible() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let j = enqueue_one(&store, &acme, new_job("q", "t", serde_json::json!({}))).await;
        assert!(
            store.get_job(&globex, j.id).await.unwrap().is_none(),
            "[{b:?}] get_job"
        );
        assert!(
            all_jobs(&store, &globex).await.is_empty(),
            "[{b:?}] list_jobs"
        );
        assert!(
            store
                .snapshot_job_ids(&globex, &JobFilter::default(), 100)
                .await
                .unwrap()
                .is_empty(),
            "[{b:?}] snapshot"
        );
        assert!(
            store.get_job(&acme, j.id).await.unwrap().is_some(),
            "[{b:?}] own job"
        );
    }
}

#[tokio::test]
async fn cancel_job_audited_cancels_an_available_job_with_one_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let j = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        let mut d = job_draft(&t, "job.cancel", j.id);
        d.actor = Actor::client("alice");
        d.metadata = serde_json::json!({"note": "kept"});
        let canceled = store.cancel_job_audited(&t, j.id, d).await.unwrap();
        assert_eq!(canceled.id, j.id, "[{b:?}]");
        assert_eq!(canceled.state, JobState::Canceled, "[{b:?}] returned job");

        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(entries.len(), 1, "[{b:?}] exactly one entry");
        let e = &entries[0].entry;
        assert_eq!(e.action, "job.cancel", "[{b:?}]");
        assert_eq!(e.outcome, Outcome::Allowed, "[{b:?}]");
        assert_eq!(e.actor, "client:alice", "[{b:?}]");
        assert_eq!(
            e.target_id.as_deref(),
            Some(j.id.to_string().as_str()),
            "[{b:?}]"
        );
        assert_eq!(e.operator_ticket.as_deref(), Some("OPS-1"), "[{b:?}]");
        assert_eq!(e.metadata["state_before"], "available", "[{b:?}]");
        assert_eq!(e.metadata["dependents_canceled"], 0, "[{b:?}]");
        assert_eq!(
            e.metadata["note"], "kept",
            "[{b:?}] caller metadata is kept"
        );

        let got = job(&store, &t, j.id).await;
        assert_eq!(got.state, JobState::Canceled, "[{b:?}] stored state");
        let tl = got.timeline.unwrap();
        assert_eq!(tl.len(), 2, "[{b:?}]");
        assert_eq!(tl[1].state, JobState::Canceled, "[{b:?}]");
        assert_eq!(
            tl[1].actor.as_deref(),
            Some("client:alice"),
            "[{b:?}] who canceled"
        );
        assert_eq!(tl[1].at, e.created_at, "[{b:?}] same instant as the entry");
    }
}

#[tokio::test]
async fn canceling_a_pending_job_records_state_before_pending() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        let p = enqueue_one(&store, &t, dependent_job("q", vec![a.id])).await;
        store
            .cancel_job_audited(&t, p.id, job_draft(&t, "job.cancel", p.id))
            .await
            .unwrap();
        let e = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0);
        assert_eq!(e.entry.metadata["state_before"], "pending", "[{b:?}]");
        assert_eq!(
            job(&store, &t, a.id).await.state,
            JobState::Available,
            "[{b:?}] upstream untouched"
        );
    }
}

#[tokio::test]
async fn canceling_twice_is_an_invalid_state_transition_and_changes_nothing() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let j = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        store
            .cancel_job_audited(&t, j.id, job_draft(&t, "job.cancel", j.id))
            .await
            .unwrap();
        let before = job(&store, &t, j.id).await;
        let r = store
            .cancel_job_audited(&t, j.id, job_draft(&t, "job.cancel", j.id))
            .await;
        assert_rejected(b, r, ReasonCode::InvalidStateTransition);
        assert_eq!(audit_size(&store, &t).await, 1, "[{b:?}] no new entry");
        assert_eq!(job(&store, &t, j.id).await, before, "[{b:?}] job unchanged");
    }
}

#[tokio::test]
async fn canceling_an_unknown_or_foreign_job_is_unknown_job_id() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let theirs = enqueue_one(&store, &globex, new_job("q", "t", serde_json::json!({}))).await;
        for id in [JobId::new(), theirs.id] {
            let r = store
                .cancel_job_audited(&acme, id, job_draft(&acme, "job.cancel", id))
                .await;
            assert_rejected(b, r, ReasonCode::UnknownJobId);
        }
        assert_eq!(audit_size(&store, &acme).await, 0, "[{b:?}] no entry");
        assert_eq!(audit_size(&store, &globex).await, 0, "[{b:?}] no entry");
        assert_eq!(
            job(&store, &globex, theirs.id).await.state,
            JobState::Available,
            "[{b:?}] their job is untouched"
        );
    }
}

#[tokio::test]
async fn canceling_a_job_cascades_upstream_failed_to_pending_dependents() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = dependent_job("q", vec![]);
        let bj = dependent_job("q", vec![a.id]);
        let c = dependent_job("q", vec![bj.id]);
        let unrelated = dependent_job("q", vec![]);
        let d = dependent_job("q", vec![unrelated.id]);
        store
            .enqueue(
                &t,
                vec![
                    a.clone(),
                    bj.clone(),
                    c.clone(),
                    unrelated.clone(),
                    d.clone(),
                ],
            )
            .await
            .unwrap();
        store
            .cancel_job_audited(&t, a.id, job_draft(&t, "job.cancel", a.id))
            .await
            .unwrap();
        assert_eq!(
            job(&store, &t, a.id).await.state,
            JobState::Canceled,
            "[{b:?}]"
        );
        assert_eq!(
            job(&store, &t, a.id).await.reason_code,
            None,
            "[{b:?}] A was canceled by hand"
        );
        for id in [bj.id, c.id] {
            let got = job(&store, &t, id).await;
            assert_eq!(got.state, JobState::Canceled, "[{b:?}] dependent {id}");
            assert_eq!(got.reason_code, Some(ReasonCode::UpstreamFailed), "[{b:?}]");
            let last = got.timeline.unwrap().pop().unwrap();
            assert_eq!(last.state, JobState::Canceled, "[{b:?}]");
            assert_eq!(
                last.reason_code,
                Some(ReasonCode::UpstreamFailed),
                "[{b:?}]"
            );
        }
        assert_eq!(
            job(&store, &t, d.id).await.state,
            JobState::Pending,
            "[{b:?}] unrelated"
        );
        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(
            entries.len(),
            1,
            "[{b:?}] one entry for the operator's action"
        );
        assert_eq!(
            entries[0].entry.metadata["dependents_canceled"], 2,
            "[{b:?}]"
        );
    }
}

#[tokio::test]
async fn a_failing_audit_append_rolls_the_cancel_back() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        let dep = enqueue_one(&store, &t, dependent_job("q", vec![a.id])).await;
        let before_a = job(&store, &t, a.id).await;
        let before_dep = job(&store, &t, dep.id).await;
        let outbox_before = store.outbox_peek(100).await.unwrap();
        let mut d = job_draft(&t, "job.cancel", a.id);
        d.metadata = serde_json::json!({"x": 1.5}); // floats are refused by the ledger
        let r = store.cancel_job_audited(&t, a.id, d).await;
        assert!(matches!(r, Err(StoreError::Encode(_))), "[{b:?}] {r:?}");
        assert_eq!(
            job(&store, &t, a.id).await,
            before_a,
            "[{b:?}] still available"
        );
        assert_eq!(before_a.state, JobState::Available, "[{b:?}]");
        assert_eq!(
            job(&store, &t, dep.id).await,
            before_dep,
            "[{b:?}] cascade rolled back"
        );
        assert_eq!(audit_size(&store, &t).await, 0, "[{b:?}] no entry");
        assert_eq!(
            store.outbox_peek(100).await.unwrap(),
            outbox_before,
            "[{b:?}] no event"
        );
        // And the store is fine afterwards: a good cancel gets seq 0.
        store
            .cancel_job_audited(&t, a.id, job_draft(&t, "job.cancel", a.id))
            .await
            .unwrap();
        let e = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0);
        assert_eq!(e.entry.seq, 0, "[{b:?}] the failed append left no gap");
    }
}

#[tokio::test]
async fn a_failing_audit_append_rolls_the_replay_back() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        store
            .cancel_job_audited(&t, a.id, job_draft(&t, "job.cancel", a.id))
            .await
            .unwrap();
        let mut d = job_draft(&t, "job.replay", a.id);
        d.metadata = serde_json::json!({"big": 9_007_199_254_740_993u64});
        let r = store.replay_job_audited(&t, a.id, d.clone()).await;
        assert!(matches!(r, Err(StoreError::Encode(_))), "[{b:?}] {r:?}");
        let r = store
            .replay_chunk_audited(
                &t,
                store.prepare_replay(&t, &[a.id]).await.unwrap(),
                &d,
                "bulk-1",
            )
            .await;
        assert!(matches!(r, Err(StoreError::Encode(_))), "[{b:?}] {r:?}");
        assert_eq!(all_jobs(&store, &t).await.len(), 1, "[{b:?}] no new job");
        assert_eq!(audit_size(&store, &t).await, 1, "[{b:?}] only the cancel");
    }
}

#[tokio::test]
async fn replay_job_audited_creates_a_new_available_job_and_leaves_the_old_one() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut nj = keyed_job("order-1", serde_json::json!({"x": "y"}));
        nj.priority = 3;
        nj.max_attempts = 9;
        let old = enqueue_one(&store, &t, nj).await;
        store
            .cancel_job_audited(&t, old.id, job_draft(&t, "job.cancel", old.id))
            .await
            .unwrap();
        let old_before = job(&store, &t, old.id).await;
        let new = store
            .replay_job_audited(&t, old.id, job_draft(&t, "job.replay", old.id))
            .await
            .unwrap();
        assert_ne!(new.id, old.id, "[{b:?}]");
        assert_eq!(new.state, JobState::Available, "[{b:?}]");
        assert_eq!(new.replay_of, Some(old.id), "[{b:?}]");
        let got = job(&store, &t, new.id).await;
        assert_eq!(got.state, JobState::Available, "[{b:?}]");
        assert_eq!(got.replay_of, Some(old.id), "[{b:?}]");
        assert_eq!(got.payload, old.payload, "[{b:?}]");
        assert_eq!(got.queue, old.queue, "[{b:?}]");
        assert_eq!(got.priority, 3, "[{b:?}]");
        assert_eq!(got.max_attempts, 9, "[{b:?}]");
        assert_eq!(
            got.idempotency_key, None,
            "[{b:?}] the key stays with the old job"
        );
        let tl = got.timeline.unwrap();
        assert_eq!(tl.len(), 1, "[{b:?}]");
        assert_eq!(
            tl[0].actor.as_deref(),
            Some("client:ops-bot"),
            "[{b:?}] who replayed"
        );
        assert_eq!(
            job(&store, &t, old.id).await,
            old_before,
            "[{b:?}] old job unchanged"
        );

        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(entries.len(), 2, "[{b:?}] cancel + replay");
        let e = &entries[0].entry;
        assert_eq!(e.action, "job.replay", "[{b:?}]");
        assert_eq!(e.metadata["new_job_id"], new.id.to_string(), "[{b:?}]");
        assert_eq!(e.metadata["state_before"], "canceled", "[{b:?}]");
        // Replaying the same old job again is allowed and makes another job.
        let again = store
            .replay_job_audited(&t, old.id, job_draft(&t, "job.replay", old.id))
            .await
            .unwrap();
        assert_ne!(again.id, new.id, "[{b:?}]");
        // The idempotency key still finds the old job.
        let out = store
            .enqueue(
                &t,
                vec![keyed_job("order-1", serde_json::json!({"x": "y"}))],
            )
            .await
            .unwrap();
        assert_eq!(out[0].job.id, old.id, "[{b:?}]");
    }
}

#[tokio::test]
async fn replaying_a_non_terminal_or_unknown_job_is_refused_without_an_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let avail = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        let pending = enqueue_one(&store, &t, dependent_job("q", vec![avail.id])).await;
        for id in [avail.id, pending.id] {
            let r = store
                .replay_job_audited(&t, id, job_draft(&t, "job.replay", id))
                .await;
            assert_rejected(b, r, ReasonCode::InvalidStateTransition);
        }
        let foreign = enqueue_one(
            &store,
            &tenant("globex"),
            new_job("q", "t", serde_json::json!({})),
        )
        .await;
        store
            .cancel_job_audited(
                &tenant("globex"),
                foreign.id,
                job_draft(&tenant("globex"), "job.cancel", foreign.id),
            )
            .await
            .unwrap();
        for id in [JobId::new(), foreign.id] {
            let r = store
                .replay_job_audited(&t, id, job_draft(&t, "job.replay", id))
                .await;
            assert_rejected(b, r, ReasonCode::UnknownJobId);
        }
        assert_eq!(audit_size(&store, &t).await, 0, "[{b:?}] no entry");
        assert_eq!(all_jobs(&store, &t).await.len(), 2, "[{b:?}] no new job");
    }
}

#[tokio::test]
async fn replay_chunk_rereads_jobs_that_finished_after_they_were_read_ahead() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let x = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        // Read ahead while x is still available, then cancel it before the chunk writes.
        let chunk = store.prepare_replay(&t, &[x.id]).await.unwrap();
        store
            .cancel_job_audited(&t, x.id, job_draft(&t, "job.cancel", x.id))
            .await
            .unwrap();
        let outcomes = store
            .replay_chunk_audited(&t, chunk, &draft(&t, "job.replay"), "bulk-9")
            .await
            .unwrap();
        assert!(
            matches!(outcomes[..], [ReplayOutcome::Replayed { id, .. }] if id == x.id),
            "[{b:?}] replayed as the state is at write time: {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn replay_chunk_audited_replays_terminal_jobs_and_skips_the_rest_in_order() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let x = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({"n": 1}))).await;
        let y = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({"n": 2}))).await;
        let w = enqueue_one(&store, &t, new_job("r", "t", serde_json::json!({"n": 3}))).await;
        for id in [x.id, w.id] {
            store
                .cancel_job_audited(&t, id, job_draft(&t, "job.cancel", id))
                .await
                .unwrap();
        }
        let unknown = JobId::new();
        let size_before = audit_size(&store, &t).await;
        let mut template = draft(&t, "job.replay");
        template.metadata = serde_json::json!({"filter": "state=canceled"});
        let outcomes = store
            .replay_chunk_audited(
                &t,
                store
                    .prepare_replay(&t, &[x.id, y.id, unknown, w.id])
                    .await
                    .unwrap(),
                &template,
                "bulk-7",
            )
            .await
            .unwrap();
        assert_eq!(outcomes.len(), 4, "[{b:?}]");
        let new_x = match outcomes[0] {
            ReplayOutcome::Replayed { id, new_id } if id == x.id => new_id,
            ref o => panic!("[{b:?}] {o:?}"),
        };
        assert_eq!(
            outcomes[1],
            ReplayOutcome::Skipped {
                id: y.id,
                code: ReasonCode::InvalidStateTransition
            },
            "[{b:?}]"
        );
        assert_eq!(
            outcomes[2],
            ReplayOutcome::Skipped {
                id: unknown,
                code: ReasonCode::UnknownJobId
            },
            "[{b:?}]"
        );
        let new_w = match outcomes[3] {
            ReplayOutcome::Replayed { id, new_id } if id == w.id => new_id,
            ref o => panic!("[{b:?}] {o:?}"),
        };
        for (old, new) in [(x.id, new_x), (w.id, new_w)] {
            let got = job(&store, &t, new).await;
            assert_eq!(got.state, JobState::Available, "[{b:?}]");
            assert_eq!(got.replay_of, Some(old), "[{b:?}]");
        }
        assert_eq!(
            job(&store, &t, y.id).await.state,
            JobState::Available,
            "[{b:?}] skipped job untouched"
        );
        assert_eq!(
            audit_size(&store, &t).await,
            size_before + 2,
            "[{b:?}] one entry per replay"
        );
        let entries = all_entries(
            &store,
            &t,
            &AuditFilter {
                actions: vec!["job.replay".into()],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(entries.len(), 2, "[{b:?}]");
        // Oldest first: x, then w.
        for (e, (old, new)) in entries.iter().rev().zip([(x.id, new_x), (w.id, new_w)]) {
            let e = &e.entry;
            assert_eq!(e.metadata["bulk_id"], "bulk-7", "[{b:?}]");
            assert_eq!(e.metadata["new_job_id"], new.to_string(), "[{b:?}]");
            assert_eq!(e.metadata["state_before"], "canceled", "[{b:?}]");
            assert_eq!(
                e.metadata["filter"], "state=canceled",
                "[{b:?}] template metadata kept"
            );
            assert_eq!(
                e.target_id.as_deref(),
                Some(old.to_string().as_str()),
                "[{b:?}]"
            );
            assert_eq!(e.target_kind.as_deref(), Some("job"), "[{b:?}]");
        }
        // A chunk with nothing to replay writes nothing.
        let outcomes = store
            .replay_chunk_audited(
                &t,
                store.prepare_replay(&t, &[y.id, unknown]).await.unwrap(),
                &template,
                "bulk-8",
            )
            .await
            .unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, ReplayOutcome::Skipped { .. })),
            "[{b:?}]"
        );
        assert_eq!(audit_size(&store, &t).await, size_before + 2, "[{b:?}]");
    }
}

#[tokio::test]
async fn snapshot_job_ids_lists_matching_ids_oldest_first() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut canceled = Vec::new();
        for i in 0..6 {
            let j = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({ "i": i }))).await;
            if i % 2 == 0 {
                store
                    .cancel_job_audited(&t, j.id, job_draft(&t, "job.cancel", j.id))
                    .await
                    .unwrap();
                canceled.push(j.id);
            }
        }
        let f = JobFilter {
            state: Some(JobState::Canceled),
            ..Default::default()
        };
        let ids = store.snapshot_job_ids(&t, &f, 100).await.unwrap();
        assert_eq!(ids, canceled, "[{b:?}] canceled ones, oldest first");
        let all = store
            .snapshot_job_ids(&t, &JobFilter::default(), 100)
            .await
            .unwrap();
        assert_eq!(all.len(), 6, "[{b:?}]");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "[{b:?}] oldest first");
        // Jobs enqueued after the snapshot are not in it.
        enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        assert_eq!(ids.len(), 3, "[{b:?}]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_with_one_idempotency_key_create_one_job() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        for round in 0..5 {
            let key = format!("retry-{round}");
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (store, t, key) = (store.clone(), t.clone(), key.clone());
                    tokio::spawn(async move {
                        store
                            .enqueue(&t, vec![keyed_job(&key, serde_json::json!({"same": true}))])
                            .await
                    })
                })
                .collect();
            let mut ids = HashSet::new();
            let mut created = 0;
            for task in tasks {
                let out = task
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("[{b:?}] an idempotent retry must not fail: {e}"));
                ids.insert(out[0].job.id);
                created += usize::from(out[0].created);
            }
            assert_eq!(ids.len(), 1, "[{b:?}] every request got the same job");
            assert_eq!(created, 1, "[{b:?}] exactly one created it");
        }
        assert_eq!(all_jobs(&store, &t).await.len(), 5, "[{b:?}]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cancels_of_one_job_write_one_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let j = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    store
                        .cancel_job_audited(&t, j.id, job_draft(&t, "job.cancel", j.id))
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                r => {
                    assert_rejected(b, r, ReasonCode::InvalidStateTransition);
                }
            }
        }
        assert_eq!(ok, 1, "[{b:?}] one cancel wins");
        assert_eq!(audit_size(&store, &t).await, 1, "[{b:?}] one entry");
        let tl = job(&store, &t, j.id).await.timeline.unwrap();
        assert_eq!(tl.len(), 2, "[{b:?}] one cancel in the timeline");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dependent_enqueued_while_its_upstream_is_canceled_never_stays_pending() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        for _ in 0..40 {
            let a = enqueue_one(&store, &t, new_job("q", "t", serde_json::json!({}))).await;
            let nb = dependent_job("q", vec![a.id]);
            let bid = nb.id;
            let cancel = {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    store
                        .cancel_job_audited(&t, a.id, job_draft(&t, "job.cancel", a.id))
                        .await
                        .unwrap()
                })
            };
            let enqueue = {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move { store.enqueue(&t, vec![nb]).await.unwrap() })
            };
            cancel.await.unwrap();
            enqueue.await.unwrap();
            let got = job(&store, &t, bid).await;
            assert_eq!(
                got.state,
                JobState::Canceled,
                "[{b:?}] B may not wait forever on a canceled A"
            );
            assert_eq!(got.reason_code, Some(ReasonCode::UpstreamFailed), "[{b:?}]");
        }
    }
}

#[tokio::test]
async fn planner_statistics_are_refreshed_after_a_bulk_load_on_postgres_only() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let batch: Vec<_> = (0..3_000)
            .map(|i| new_job("bulk", "load", serde_json::json!({ "i": i })))
            .collect();
        store.enqueue(&t, batch).await.unwrap();
        if b == warden_store::Backend::Sqlite {
            assert!(
                store.refresh_planner_stats().await.unwrap().is_empty(),
                "[{b:?}] no-op"
            );
            continue;
        }
        // The server's statistics counters are flushed about once a second.
        let mut analysed = Vec::new();
        for _ in 0..50 {
            analysed = store.refresh_planner_stats().await.unwrap();
            if analysed.contains(&"jobs") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            analysed.contains(&"jobs"),
            "[{b:?}] 3,000 new jobs: analysed {analysed:?}"
        );
        assert!(
            !store
                .refresh_planner_stats()
                .await
                .unwrap()
                .contains(&"jobs"),
            "[{b:?}] fresh statistics are left alone"
        );
    }
}

/// SQLite commits append to the WAL; a background task copies them into the database
/// file, so no commit pays for a checkpoint. Without it nothing would reach the file
/// until the WAL held the writer's backstop of 16,000 pages.
#[tokio::test]
async fn sqlite_wal_is_checkpointed_in_the_background() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    let path = db
        .url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .expect("a path")
        .to_owned();
    let size = || std::fs::metadata(&path).expect("the database file").len();
    // Let the checkpoint of the migrations happen, then measure from there.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = size();
    let t = tenant("acme");
    let jobs: Vec<NewJob> = (0..2_000)
        .map(|i| {
            new_job(
                "bulk",
                "noop",
                serde_json::json!({"i": i, "pad": "x".repeat(200)}),
            )
        })
        .collect();
    store.enqueue(&t, jobs).await.expect("enqueue");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {before} bytes: nothing was checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Texts that a bulk insert must carry verbatim: on PostgreSQL rows travel as array
/// literals, whose syntax gives `"`, `\`, braces, commas, blanks and the word `NULL` a
/// meaning of their own.
const AWKWARD: [&str; 8] = [
    r#"a "quoted" word"#,
    r#"back\slash \\ and \""#,
    "{braces},{and}, commas",
    "NULL",
    "",
    "  leading and trailing blanks  ",
    "ünïcödé — 日本語 😀",
    r#"{"json": "in \"json\""}"#,
];

#[tokio::test]
async fn awkward_texts_round_trip_through_bulk_inserts_and_the_ledger() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let jobs: Vec<NewJob> = AWKWARD
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let mut nj = new_job("q", "t", serde_json::json!({ "text": text, "n": i }));
                if !text.is_empty() {
                    nj.idempotency_key =
                        Some(warden_core::names::IdempotencyKey::parse(text).unwrap());
                }
                nj
            })
            .collect();
        let created = store.enqueue(&t, jobs.clone()).await.unwrap();
        assert_eq!(created.len(), AWKWARD.len(), "[{b:?}]");
        for nj in &jobs {
            let got = job(&store, &t, nj.id).await;
            assert_eq!(got.payload, nj.payload, "[{b:?}] payload verbatim");
            assert_eq!(
                got.idempotency_key.as_deref(),
                nj.idempotency_key.as_ref().map(|k| k.as_str()),
                "[{b:?}] key verbatim"
            );
        }
        // The same key again finds the stored job: the key was stored as given.
        let keyed: Vec<NewJob> = jobs
            .iter()
            .filter(|j| j.idempotency_key.is_some())
            .cloned()
            .collect();
        let again = store.enqueue(&t, keyed).await.unwrap();
        assert!(
            again.iter().all(|o| !o.created),
            "[{b:?}] keys match themselves"
        );

        let drafts: Vec<_> = AWKWARD
            .iter()
            .map(|text| {
                let mut d = draft(&t, "queue.pause");
                d.operator_reason = Some((*text).to_owned());
                d.operator_ticket = Some(format!("T-{text}"));
                d.metadata = serde_json::json!({ "note": text });
                d
            })
            .collect();
        let appended = store.append_audit_batch(drafts).await.unwrap();
        let stored = all_entries(&store, &t, &AuditFilter::default()).await;
        for e in &appended {
            let s = stored
                .iter()
                .find(|s| s.entry.seq == e.seq)
                .unwrap_or_else(|| panic!("[{b:?}] entry {} listed", e.seq));
            assert_eq!(&s.entry, e, "[{b:?}] entry verbatim");
        }
        // One row at a time takes another shape on PostgreSQL (plain parameters).
        for text in AWKWARD {
            let nj = new_job("q", "t", serde_json::json!({ "single": text }));
            let got = enqueue_one(&store, &t, nj.clone()).await;
            assert_eq!(job(&store, &t, got.id).await.payload, nj.payload, "[{b:?}]");
            let mut d = draft(&t, "queue.resume");
            d.operator_reason = Some(text.to_owned());
            let e = store.append_audit(d).await.unwrap();
            let listed = all_entries(&store, &t, &AuditFilter::default()).await;
            assert_eq!(listed[0].entry, e, "[{b:?}] single entry verbatim");
        }
        // Bodies hash to their stored leaves, and the leaves to the root.
        let (c, _) = store
            .cut_checkpoint(&t, |size, root| format!("{size} {root:?}"))
            .await
            .unwrap();
        let (checked, problem) = store.self_check(&t, c.size).await.unwrap();
        assert_eq!(checked, c.size, "[{b:?}] every entry checked");
        assert_eq!(problem, None, "[{b:?}] the stored tree is intact");
    }
}
