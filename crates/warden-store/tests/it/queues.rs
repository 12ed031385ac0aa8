//! Queues: created at first enqueue, depth by state, audited pause and resume, listing.

use warden_core::audit::{AuditDraft, Target};
use warden_core::jobs::JobState;
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;
use warden_store::audit::AuditFilter;
use warden_store::testing::TestDb;

use crate::{
    all_entries, assert_rejected, audit_size, dependent_job, draft, enqueue_one, job_draft,
    new_job, queue, tenant,
};

fn queue_draft(t: &warden_core::names::TenantId, action: &str, name: &str) -> AuditDraft {
    AuditDraft {
        target: Some(Target::new("queue", name)),
        ..draft(t, action)
    }
}

#[tokio::test]
async fn a_queue_comes_into_being_at_its_first_enqueue() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let q = queue("emails");
        assert!(
            store.get_queue(&t, &q).await.unwrap().is_none(),
            "[{b:?}] not yet"
        );
        assert!(
            !store.tenant_exists(&t).await.unwrap(),
            "[{b:?}] a tenant without clients"
        );
        let before = Timestamp::now();
        enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        assert!(
            store.tenant_exists(&t).await.unwrap(),
            "[{b:?}] ... exists once it has jobs"
        );
        let v = store
            .get_queue(&t, &q)
            .await
            .unwrap()
            .expect("created by the enqueue");
        assert_eq!(v.name, q, "[{b:?}]");
        assert!(!v.paused, "[{b:?}] not paused");
        assert!(v.created_at >= before, "[{b:?}]");
        assert_eq!(v.limits.rate_per_sec, None, "[{b:?}]");
        assert_eq!(v.limits.burst, None, "[{b:?}]");
        assert_eq!(v.limits.max_concurrency, None, "[{b:?}]");
        // A second enqueue does not recreate it.
        enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        let again = store.get_queue(&t, &q).await.unwrap().unwrap();
        assert_eq!(again.created_at, v.created_at, "[{b:?}]");
        assert!(
            store
                .get_queue(&t, &queue("unknown"))
                .await
                .unwrap()
                .is_none(),
            "[{b:?}] unknown queue"
        );
    }
}

#[tokio::test]
async fn queue_depth_counts_jobs_by_state_with_every_state_present() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let a = enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        enqueue_one(&store, &t, dependent_job("emails", vec![a.id])).await;
        let c = enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        store
            .cancel_job_audited(&t, c.id, job_draft(&t, "job.cancel", c.id))
            .await
            .unwrap();
        enqueue_one(&store, &t, new_job("other", "send", serde_json::json!({}))).await;
        enqueue_one(
            &store,
            &tenant("globex"),
            new_job("emails", "send", serde_json::json!({})),
        )
        .await;

        let v = store
            .get_queue(&t, &queue("emails"))
            .await
            .unwrap()
            .unwrap();
        for s in JobState::ALL {
            assert!(v.depth.contains_key(s.as_str()), "[{b:?}] depth has {s}");
        }
        assert_eq!(v.depth.len(), JobState::ALL.len(), "[{b:?}]");
        assert_eq!(v.depth["available"], 2, "[{b:?}]");
        assert_eq!(v.depth["pending"], 1, "[{b:?}]");
        assert_eq!(v.depth["canceled"], 1, "[{b:?}]");
        assert_eq!(v.depth["running"], 0, "[{b:?}]");
        assert_eq!(v.running, 0, "[{b:?}]");
        assert_eq!(
            v.depth.values().sum::<i64>(),
            4,
            "[{b:?}] only this tenant's queue"
        );
    }
}

#[tokio::test]
async fn pause_and_resume_are_audited_and_refused_when_already_so() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let q = queue("emails");
        enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;

        let v = store
            .set_queue_paused_audited(&t, &q, true, queue_draft(&t, "queue.pause", "emails"))
            .await
            .unwrap();
        assert!(v.paused, "[{b:?}] paused");
        assert_eq!(v.depth["available"], 1, "[{b:?}] the view has depths");
        assert!(v.updated_at >= v.created_at, "[{b:?}]");
        assert!(
            store.get_queue(&t, &q).await.unwrap().unwrap().paused,
            "[{b:?}] stored"
        );
        assert_eq!(audit_size(&store, &t).await, 1, "[{b:?}] one entry");
        let e = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0)
            .entry;
        assert_eq!(e.action, "queue.pause", "[{b:?}]");
        assert_eq!(e.target_id.as_deref(), Some("emails"), "[{b:?}]");

        let r = store
            .set_queue_paused_audited(&t, &q, true, queue_draft(&t, "queue.pause", "emails"))
            .await;
        assert_rejected(b, r, ReasonCode::InvalidStateTransition);
        assert_eq!(
            audit_size(&store, &t).await,
            1,
            "[{b:?}] no entry for the refusal"
        );
        assert!(
            store.get_queue(&t, &q).await.unwrap().unwrap().paused,
            "[{b:?}] still paused"
        );

        let v = store
            .set_queue_paused_audited(&t, &q, false, queue_draft(&t, "queue.resume", "emails"))
            .await
            .unwrap();
        assert!(!v.paused, "[{b:?}] resumed");
        assert!(
            !store.get_queue(&t, &q).await.unwrap().unwrap().paused,
            "[{b:?}] stored"
        );
        assert_eq!(audit_size(&store, &t).await, 2, "[{b:?}]");
        let e = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0)
            .entry;
        assert_eq!(e.action, "queue.resume", "[{b:?}]");

        let r = store
            .set_queue_paused_audited(&t, &q, false, queue_draft(&t, "queue.resume", "emails"))
            .await;
        assert_rejected(b, r, ReasonCode::InvalidStateTransition);
        assert_eq!(audit_size(&store, &t).await, 2, "[{b:?}]");
    }
}

#[tokio::test]
async fn pausing_an_unknown_or_foreign_queue_is_unknown_queue() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        enqueue_one(
            &store,
            &globex,
            new_job("emails", "send", serde_json::json!({})),
        )
        .await;
        for name in ["emails", "nope"] {
            let r = store
                .set_queue_paused_audited(
                    &acme,
                    &queue(name),
                    true,
                    queue_draft(&acme, "queue.pause", name),
                )
                .await;
            assert_rejected(b, r, ReasonCode::UnknownQueue);
        }
        assert_eq!(audit_size(&store, &acme).await, 0, "[{b:?}]");
        assert!(
            !store
                .get_queue(&globex, &queue("emails"))
                .await
                .unwrap()
                .unwrap()
                .paused,
            "[{b:?}] their queue is untouched"
        );
    }
}

#[tokio::test]
async fn list_queues_pages_by_name_and_stays_in_the_tenant() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let names = ["a", "b.1", "b_2", "c", "d-x", "e", "f"];
        // Enqueue in a scrambled order; listing is by name.
        for n in ["e", "a", "f", "c", "b_2", "d-x", "b.1"] {
            enqueue_one(&store, &acme, new_job(n, "t", serde_json::json!({}))).await;
        }
        enqueue_one(&store, &globex, new_job("zzz", "t", serde_json::json!({}))).await;
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let (page, more) = store.list_queues(&acme, after.as_deref(), 3).await.unwrap();
            pages += 1;
            for v in &page {
                assert_eq!(
                    v.depth["available"], 1,
                    "[{b:?}] depths are filled on lists"
                );
            }
            seen.extend(page.iter().map(|v| v.name.as_str().to_owned()));
            if !more {
                break;
            }
            after = page.last().map(|v| v.name.as_str().to_owned());
        }
        assert_eq!(pages, 3, "[{b:?}]");
        assert_eq!(seen, names, "[{b:?}] each once, by name");
        let (theirs, more) = store.list_queues(&globex, None, 10).await.unwrap();
        assert!(!more, "[{b:?}]");
        assert_eq!(theirs.len(), 1, "[{b:?}] only their queue");
        assert!(
            store
                .get_queue(&globex, &queue("a"))
                .await
                .unwrap()
                .is_none(),
            "[{b:?}] acme's queue is invisible to globex"
        );
        let (none, more) = store
            .list_queues(&tenant("initech"), None, 10)
            .await
            .unwrap();
        assert!(none.is_empty() && !more, "[{b:?}]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pauses_of_one_queue_write_one_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        enqueue_one(&store, &t, new_job("emails", "send", serde_json::json!({}))).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move {
                    store
                        .set_queue_paused_audited(
                            &t,
                            &queue("emails"),
                            true,
                            queue_draft(&t, "queue.pause", "emails"),
                        )
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
        assert_eq!(ok, 1, "[{b:?}] one pause wins");
        assert_eq!(audit_size(&store, &t).await, 1, "[{b:?}] one entry");
    }
}

#[tokio::test]
async fn jobs_without_max_attempts_take_their_queues_default_in_either_enqueue_path() {
    use warden_core::jobs::RetryPolicy;
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        // Two enqueues make both queues known to the store (the first creates them), so
        // that a later plain enqueue is one statement on PostgreSQL.
        for _ in 0..2 {
            let jobs = vec![
                new_job("q", "w", serde_json::json!({})),
                new_job("plain", "w", serde_json::json!({})),
            ];
            store.enqueue(&t, jobs).await.unwrap();
        }
        let policy = RetryPolicy {
            max_attempts: Some(7),
            ..Default::default()
        };
        store
            .set_queue_retry_audited(&t, &queue("q"), policy, queue_draft(&t, "queue.retry", "q"))
            .await
            .unwrap();
        let mut jobs = vec![
            new_job("q", "w", serde_json::json!({})),
            new_job("q", "w", serde_json::json!({})),
            new_job("plain", "w", serde_json::json!({})),
        ];
        jobs[1].max_attempts = 3;
        jobs[2].max_attempts = 4;
        // Plain jobs (the one-statement path on PostgreSQL), then the same with an
        // idempotency key (the transaction, after a read of the defaults).
        let mut keyed = jobs.clone();
        for (i, j) in keyed.iter_mut().enumerate() {
            j.id = warden_core::names::JobId::new();
            j.idempotency_key =
                Some(warden_core::names::IdempotencyKey::parse(&format!("k{i}")).unwrap());
        }
        for batch in [jobs, keyed] {
            let done = store
                .enqueue_defaulted(&t, batch, &[true, false, true])
                .await
                .unwrap();
            let got: Vec<u32> = done.iter().map(|e| e.job.max_attempts).collect();
            assert_eq!(got, [7, 3, 4], "[{b:?}] default, explicit, no default");
            for e in &done {
                let stored = crate::job(&store, &t, e.job.id).await;
                assert_eq!(stored.max_attempts, e.job.max_attempts, "[{b:?}] as stored");
            }
        }
        // One job alone (on PostgreSQL a `VALUES` row of scalar parameters, not arrays),
        // more than five times, so the reused generic plan is exercised too.
        for round in 0..7 {
            for (flag, want) in [(true, 7), (false, 3)] {
                let mut one = new_job("q", "w", serde_json::json!({ "round": round }));
                one.max_attempts = 3;
                let done = store
                    .enqueue_defaulted(&t, vec![one], &[flag])
                    .await
                    .unwrap();
                assert_eq!(done[0].job.max_attempts, want, "[{b:?}] alone, {flag}");
                let stored = crate::job(&store, &t, done[0].job.id).await;
                assert_eq!(stored.max_attempts, want, "[{b:?}] alone, as stored");
            }
        }
    }
}
