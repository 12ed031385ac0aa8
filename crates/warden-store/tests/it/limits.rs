//! Queue limits and tenant quotas: setting them (audited), and what enqueue and leasing
//! do under them: concurrency caps, the GCRA lease rate, max running, max queued, the
//! enqueue rate, and fair rotation across queues.

use std::collections::HashMap;

use warden_core::audit::Outcome;
use warden_core::jobs::JobState;
use warden_core::limits::{QueueLimits, TenantQuota};
use warden_core::names::{AgentId, QueueName, TenantId};
use warden_core::reason::ReasonCode;
use warden_store::Store;
use warden_store::audit::AuditFilter;
use warden_store::leases::{Finish, FinishItem, LeaseRequest, LeasedJob};
use warden_store::testing::TestDb;

use crate::{all_entries, assert_rejected, draft, new_job, queue, tenant};

fn lease_req(queues: &[&str], max_jobs: u32) -> LeaseRequest {
    LeaseRequest {
        agent_id: AgentId::parse("w1").unwrap(),
        queues: queues.iter().map(|q| queue(q)).collect(),
        types: None,
        max_jobs,
        lease_secs: 60,
    }
}

async fn fill(store: &Store, t: &TenantId, q: &str, n: usize) {
    let jobs = (0..n)
        .map(|i| new_job(q, "work", serde_json::json!({ "i": i })))
        .collect();
    store.enqueue(t, jobs).await.unwrap();
}

async fn lease(store: &Store, t: &TenantId, queues: &[&str], max: u32) -> Vec<LeasedJob> {
    store.lease_jobs(t, &lease_req(queues, max)).await.unwrap()
}

fn limits(rate: Option<f64>, burst: Option<u64>, conc: Option<u64>) -> QueueLimits {
    QueueLimits {
        rate_per_sec: rate,
        burst,
        max_concurrency: conc,
    }
}

#[tokio::test]
async fn queue_limits_are_replaced_and_audited_with_before_and_after() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "emails", 1).await;
        let q = queue("emails");
        let view = store
            .set_queue_limits_audited(
                &t,
                &q,
                limits(Some(2.5), Some(5), Some(3)),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        assert_eq!(view.limits, limits(Some(2.5), Some(5), Some(3)), "[{b:?}]");
        let view = store
            .set_queue_limits_audited(
                &t,
                &q,
                limits(None, None, Some(1)),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        assert_eq!(
            view.limits,
            limits(None, None, Some(1)),
            "[{b:?}] replaced whole"
        );
        // A rate after no rate (a NULL float parameter before a real one).
        let view = store
            .set_queue_limits_audited(
                &t,
                &q,
                limits(Some(0.25), None, None),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        assert_eq!(view.limits, limits(Some(0.25), None, None), "[{b:?}]");
        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(entries.len(), 3, "[{b:?}] one entry per change");
        let m = &entries[1].entry.metadata;
        assert_eq!(
            m["before"],
            serde_json::json!({"rate_per_sec": "2.5", "burst": 5, "max_concurrency": 3}),
            "[{b:?}] rates are text in metadata"
        );
        assert_eq!(
            m["after"],
            serde_json::json!({"rate_per_sec": null, "burst": null, "max_concurrency": 1}),
            "[{b:?}]"
        );
        assert_rejected(
            b,
            store
                .set_queue_limits_audited(
                    &t,
                    &queue("nope"),
                    limits(None, None, None),
                    draft(&t, "queue.limits"),
                )
                .await,
            ReasonCode::UnknownQueue,
        );
        assert_rejected(
            b,
            store
                .set_queue_limits_audited(
                    &tenant("globex"),
                    &q,
                    limits(None, None, None),
                    draft(&tenant("globex"), "queue.limits"),
                )
                .await,
            ReasonCode::UnknownQueue,
        );
        assert_eq!(
            all_entries(&store, &t, &AuditFilter::default()).await.len(),
            3,
            "[{b:?}] a refused change writes nothing here (the pipeline audits the refusal)"
        );
    }
}

#[tokio::test]
async fn max_concurrency_caps_running_jobs_of_a_queue_across_leases() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "q", 10).await;
        store
            .set_queue_limits_audited(
                &t,
                &queue("q"),
                limits(None, None, Some(3)),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        let first = lease(&store, &t, &["q"], 2).await;
        assert_eq!(first.len(), 2, "[{b:?}]");
        let second = lease(&store, &t, &["q"], 10).await;
        assert_eq!(second.len(), 1, "[{b:?}] only one slot left");
        assert!(
            lease(&store, &t, &["q"], 10).await.is_empty(),
            "[{b:?}] full"
        );
        let j = &first[0];
        let done = store
            .finish_jobs(
                &t,
                &[FinishItem {
                    id: j.id,
                    lease_id: j.lease_id.clone(),
                    finish: Finish::Complete { result: None },
                }],
            )
            .await
            .unwrap();
        let finished = done[0].clone().expect("finished");
        assert_eq!(finished.state, JobState::Succeeded, "[{b:?}]");
        assert_eq!(finished.queue, queue("q"));
        assert!(
            finished.ran_micros.is_some_and(|us| us >= 0),
            "[{b:?}] run time known"
        );
        assert_eq!(
            lease(&store, &t, &["q"], 10).await.len(),
            1,
            "[{b:?}] a finished job frees its slot"
        );
    }
}

#[tokio::test]
async fn the_lease_rate_grants_the_burst_then_waits_for_the_rate() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "q", 20).await;
        // One lease per 10 s, three at once: a test that cannot race the clock.
        store
            .set_queue_limits_audited(
                &t,
                &queue("q"),
                limits(Some(0.1), Some(3), None),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        assert_eq!(
            lease(&store, &t, &["q"], 10).await.len(),
            3,
            "[{b:?}] the burst"
        );
        assert!(
            lease(&store, &t, &["q"], 10).await.is_empty(),
            "[{b:?}] then nothing"
        );
        // Lifting the rate lets the rest go.
        store
            .set_queue_limits_audited(
                &t,
                &queue("q"),
                limits(None, None, None),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        assert_eq!(lease(&store, &t, &["q"], 100).await.len(), 17, "[{b:?}]");
    }
}

#[tokio::test]
async fn the_tenant_max_running_caps_leases_across_queues() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "a", 5).await;
        fill(&store, &t, "b", 5).await;
        let quota = TenantQuota {
            max_running: Some(4),
            ..Default::default()
        };
        store
            .set_quota_audited(&t, quota, draft(&t, "quota.update"))
            .await
            .unwrap();
        assert_eq!(store.get_quota(&t).await.unwrap(), quota, "[{b:?}]");
        assert_eq!(lease(&store, &t, &["a", "b"], 3).await.len(), 3, "[{b:?}]");
        assert_eq!(
            lease(&store, &t, &["a", "b"], 10).await.len(),
            1,
            "[{b:?}] 4 running in all"
        );
        assert!(lease(&store, &t, &["b"], 10).await.is_empty(), "[{b:?}]");
        // Another tenant is not capped by acme's quota.
        let g = tenant("globex");
        fill(&store, &g, "a", 5).await;
        assert_eq!(lease(&store, &g, &["a"], 10).await.len(), 5, "[{b:?}]");
    }
}

#[tokio::test]
async fn max_queued_refuses_an_enqueue_with_quota_exceeded_and_creates_nothing() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let quota = TenantQuota {
            max_queued: Some(5),
            ..Default::default()
        };
        store
            .set_quota_audited(&t, quota, draft(&t, "quota.update"))
            .await
            .unwrap();
        fill(&store, &t, "q", 4).await;
        let two = vec![
            new_job("q", "w", serde_json::json!(1)),
            new_job("q", "w", serde_json::json!(2)),
        ];
        let r = assert_rejected(b, store.enqueue(&t, two).await, ReasonCode::QuotaExceeded);
        assert_eq!(r.retry_after, Some(1), "[{b:?}] 429s say when to retry");
        let (jobs, _) = store
            .list_jobs(&t, &Default::default(), None, 100)
            .await
            .unwrap();
        assert_eq!(jobs.len(), 4, "[{b:?}] all or nothing");
        fill(&store, &t, "q", 1).await;
        // Running jobs are not queued: leasing makes room.
        assert_eq!(lease(&store, &t, &["q"], 2).await.len(), 2, "[{b:?}]");
        fill(&store, &t, "q", 2).await;
    }
}

#[tokio::test]
async fn the_enqueue_rate_refuses_with_rate_limited_and_a_retry_after() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let quota = TenantQuota {
            enqueue_per_sec: Some(0.5),
            ..Default::default()
        };
        store
            .set_quota_audited(&t, quota, draft(&t, "quota.update"))
            .await
            .unwrap();
        // A batch may overdraw the rate once; then the tenant waits it off.
        fill(&store, &t, "q", 3).await;
        let r = assert_rejected(
            b,
            store
                .enqueue(&t, vec![new_job("q", "w", serde_json::json!(0))])
                .await,
            ReasonCode::RateLimited,
        );
        let wait = r.retry_after.expect("a retry-after");
        assert!(
            (4..=6).contains(&wait),
            "[{b:?}] 3 jobs at 0.5/s: about 6 s ahead, got {wait}"
        );
        // The quota is per tenant.
        fill(&store, &tenant("globex"), "q", 3).await;
    }
}

#[tokio::test]
async fn leases_rotate_across_queues_so_a_flooded_queue_starves_none() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        // "flood" has many urgent jobs; "small" a few ordinary ones.
        let urgent = (0..200)
            .map(|i| warden_core::jobs::NewJob {
                priority: -10,
                ..new_job("flood", "work", serde_json::json!({ "i": i }))
            })
            .collect();
        store.enqueue(&t, urgent).await.unwrap();
        fill(&store, &t, "small", 4).await;
        let mut by_queue: HashMap<QueueName, usize> = HashMap::new();
        for _ in 0..4 {
            for j in lease(&store, &t, &["flood", "small"], 1).await {
                *by_queue.entry(j.queue).or_default() += 1;
            }
        }
        assert_eq!(
            by_queue.get(&queue("small")),
            Some(&2),
            "[{b:?}] every other lease: {by_queue:?}"
        );
        // Several jobs per lease are shared equally.
        let got = lease(&store, &t, &["flood", "small"], 4).await;
        let small = got.iter().filter(|j| j.queue == queue("small")).count();
        assert_eq!((got.len(), small), (4, 2), "[{b:?}] equal shares");
        // A share a queue cannot fill goes to the others.
        let got = lease(&store, &t, &["flood", "small"], 10).await;
        assert_eq!(
            got.len(),
            10,
            "[{b:?}] small is empty; flood fills the lease"
        );
    }
}

#[tokio::test]
async fn quota_updates_are_audited_with_before_and_after() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        assert_eq!(
            store.get_quota(&t).await.unwrap(),
            TenantQuota::default(),
            "[{b:?}]"
        );
        let q1 = TenantQuota {
            max_queued: Some(100),
            max_running: None,
            enqueue_per_sec: Some(12.5),
        };
        store
            .set_quota_audited(&t, q1, draft(&t, "quota.update"))
            .await
            .unwrap();
        store
            .set_quota_audited(&t, TenantQuota::default(), draft(&t, "quota.update"))
            .await
            .unwrap();
        let e = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(e.len(), 2, "[{b:?}]");
        assert_eq!(e[0].entry.outcome, Outcome::Allowed);
        assert_eq!(
            e[0].entry.metadata["before"],
            serde_json::json!({"max_queued": 100, "max_running": null, "enqueue_per_sec": "12.5"}),
            "[{b:?}]"
        );
        assert_eq!(
            e[0].entry.metadata["after"],
            serde_json::json!({"max_queued": null, "max_running": null, "enqueue_per_sec": null}),
            "[{b:?}]"
        );
        assert_eq!(
            store.get_quota(&t).await.unwrap(),
            TenantQuota::default(),
            "[{b:?}]"
        );
        assert_eq!(
            store.get_quota(&tenant("globex")).await.unwrap(),
            TenantQuota::default(),
            "[{b:?}]"
        );
        // A rate after no rate (a NULL float parameter before a real one).
        store
            .set_quota_audited(&t, q1, draft(&t, "quota.update"))
            .await
            .unwrap();
        assert_eq!(store.get_quota(&t).await.unwrap(), q1, "[{b:?}]");
    }
}

#[tokio::test]
async fn a_lease_over_several_queues_never_hands_out_a_job_twice() {
    // A queue that fills its share in the first round is asked again in the next; the rows
    // it gave are still `available` (and locked by this very transaction) until the lease
    // is written, so the second round must continue after them, not start over.
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        for (qa, qb, qc, max) in [(8, 1, 0, 5), (3, 0, 7, 9), (20, 2, 1, 16), (1, 1, 1, 10)] {
            fill(&store, &t, "qa", qa).await;
            fill(&store, &t, "qb", qb).await;
            fill(&store, &t, "qc", qc).await;
            let got = lease(&store, &t, &["qa", "qb", "qc"], max).await;
            let ids: std::collections::HashSet<_> = got.iter().map(|j| j.id).collect();
            assert_eq!(
                ids.len(),
                got.len(),
                "[{b:?}] ({qa},{qb},{qc}) max {max}: no job twice"
            );
            assert_eq!(
                got.len(),
                (qa + qb + qc).min(max as usize),
                "[{b:?}] ({qa},{qb},{qc}) max {max}: as many as asked or available"
            );
            // Drain what is left so the next case starts empty.
            let rest = lease(&store, &t, &["qa", "qb", "qc"], 1000).await;
            assert_eq!(got.len() + rest.len(), qa + qb + qc, "[{b:?}]");
        }
    }
}

#[tokio::test]
async fn has_ready_jobs_sees_only_what_a_lease_could_claim() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let req = |queues: &[&str], types: Option<&[&str]>| LeaseRequest {
            types: types.map(|ts| ts.iter().map(|n| crate::job_type(n)).collect()),
            ..lease_req(queues, 1)
        };
        assert!(
            !store.has_ready_jobs(&t, &req(&["q"], None)).await.unwrap(),
            "[{b:?}] empty"
        );
        let later = warden_core::jobs::NewJob {
            run_at: Some(warden_core::time::Timestamp::now().saturating_add_micros(3_600_000_000)),
            ..new_job("q", "work", serde_json::json!({}))
        };
        store.enqueue(&t, vec![later]).await.unwrap();
        assert!(
            !store.has_ready_jobs(&t, &req(&["q"], None)).await.unwrap(),
            "[{b:?}] not due"
        );
        fill(&store, &t, "q", 1).await;
        assert!(
            store
                .has_ready_jobs(&t, &req(&["other", "q"], None))
                .await
                .unwrap(),
            "[{b:?}]"
        );
        assert!(
            store
                .has_ready_jobs(&t, &req(&["q"], Some(&["work"])))
                .await
                .unwrap()
        );
        assert!(
            !store
                .has_ready_jobs(&t, &req(&["q"], Some(&["mail"])))
                .await
                .unwrap(),
            "[{b:?}] type"
        );
        assert!(
            !store
                .has_ready_jobs(&tenant("globex"), &req(&["q"], None))
                .await
                .unwrap(),
            "[{b:?}] tenant"
        );
        lease(&store, &t, &["q"], 10).await;
        assert!(
            !store.has_ready_jobs(&t, &req(&["q"], None)).await.unwrap(),
            "[{b:?}] leased"
        );
    }
}

#[tokio::test]
async fn a_lease_writes_each_jobs_running_entry_and_one_event_per_job_in_the_outbox_format() {
    use warden_core::events::TransitionEvent;
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "q", 4).await;
        // The agent's first lease refreshes its row (a transaction); the next, within
        // seconds, is the claim alone (on PostgreSQL one statement outside a transaction).
        assert_eq!(lease(&store, &t, &["q"], 1).await.len(), 1, "[{b:?}]");
        for e in store.outbox_peek(100).await.unwrap() {
            store.outbox_ack(e.id).await.unwrap();
        }
        let leased = lease(&store, &t, &["q"], 10).await;
        assert_eq!(leased.len(), 3, "[{b:?}]");
        let events = store.outbox_peek(100).await.unwrap();
        assert_eq!(events.len(), 3, "[{b:?}] one event per job: {events:?}");
        assert!(
            events
                .iter()
                .all(|e| e.id == events[0].id && e.topic == "job"),
            "[{b:?}] in one outbox row: {events:?}"
        );
        // Each exactly as serde writes the event (PostgreSQL builds them in SQL).
        let lines: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
        for l in &lines {
            let ev: TransitionEvent =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("[{b:?}] {l}: {e}"));
            assert_eq!(
                *l,
                serde_json::to_string(&ev).unwrap(),
                "[{b:?}] byte for byte"
            );
        }
        let mut ids: Vec<_> = lines
            .iter()
            .map(|l| serde_json::from_str::<TransitionEvent>(l).unwrap())
            .inspect(|ev| {
                assert_eq!(ev.state, JobState::Running, "[{b:?}]");
                assert_eq!(ev.attempt, 1, "[{b:?}]");
                assert_eq!(ev.reason_code, None, "[{b:?}]");
            })
            .map(|ev| ev.job_id)
            .collect();
        ids.sort_unstable();
        let mut want: Vec<_> = leased.iter().map(|j| j.id).collect();
        want.sort_unstable();
        assert_eq!(ids, want, "[{b:?}] one event per leased job");
        for j in &leased {
            let timeline = crate::job(&store, &t, j.id).await.timeline.unwrap();
            let last = timeline.last().unwrap();
            assert_eq!(last.state, JobState::Running, "[{b:?}]");
            assert_eq!(last.attempt, 1, "[{b:?}]");
            assert_eq!(last.agent_id.as_deref(), Some("w1"), "[{b:?}]");
            assert_eq!(timeline.len(), 2, "[{b:?}] available, running");
        }
    }
}

#[tokio::test]
async fn a_one_queue_lease_takes_nothing_from_a_paused_or_unknown_queue() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "q", 2).await;
        store
            .set_queue_paused_audited(&t, &queue("q"), true, draft(&t, "queue.pause"))
            .await
            .unwrap();
        assert!(
            lease(&store, &t, &["q"], 10).await.is_empty(),
            "[{b:?}] paused"
        );
        assert!(
            lease(&store, &t, &["nope"], 10).await.is_empty(),
            "[{b:?}] unknown"
        );
        store
            .set_queue_paused_audited(&t, &queue("q"), false, draft(&t, "queue.resume"))
            .await
            .unwrap();
        assert_eq!(
            lease(&store, &t, &["q"], 10).await.len(),
            2,
            "[{b:?}] resumed"
        );
    }
}

#[tokio::test]
async fn a_lease_registers_its_agent_again_only_when_the_row_is_due_a_refresh() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let req = lease_req(&["q"], 1);
        assert!(store.lease_registers_agent(&t, &req), "[{b:?}] never seen");
        store.lease_jobs(&t, &req).await.unwrap();
        assert!(
            !store.lease_registers_agent(&t, &req),
            "[{b:?}] just refreshed"
        );
        assert!(
            store.lease_registers_agent(&t, &lease_req(&["q", "other"], 1)),
            "[{b:?}] other queues are written to the row"
        );
        assert!(
            store.lease_registers_agent(&tenant("globex"), &req),
            "[{b:?}] per tenant"
        );
        let agents = store.list_agents(&t).await.unwrap();
        assert_eq!(agents.len(), 1, "[{b:?}] the first lease registered it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_leases_never_exceed_max_concurrency_read_from_the_counters() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        fill(&store, &t, "q", 40).await;
        store
            .set_queue_limits_audited(
                &t,
                &queue("q"),
                limits(None, None, Some(7)),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (store, t) = (store.clone(), t.clone());
                tokio::spawn(async move { lease(&store, &t, &["q"], 3).await.len() })
            })
            .collect();
        let mut leased = 0;
        for c in calls {
            leased += c.await.unwrap();
        }
        assert_eq!(
            leased, 7,
            "[{b:?}] eight racing leases fill exactly the seven slots"
        );
        // Folding PostgreSQL's deltas changes nothing a lease reads.
        store.fold_depth_deltas().await.unwrap();
        assert!(
            lease(&store, &t, &["q"], 3).await.is_empty(),
            "[{b:?}] full"
        );
    }
}

#[tokio::test]
async fn a_finish_says_whether_it_may_let_other_jobs_be_leased() {
    // `Finished::frees` decides whether the server wakes the tenant's long-polls after a
    // finish: only a job with dependents, in a queue with a concurrency cap, or of a
    // tenant with a running cap can make room or work for another.
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let finish_one = |job: LeasedJob, fail: bool| {
            let store = store.clone();
            let t = t.clone();
            async move {
                let finish = if fail {
                    Finish::Fail {
                        error: "no".into(),
                        retryable: false,
                    }
                } else {
                    Finish::Complete { result: None }
                };
                let item = FinishItem {
                    id: job.id,
                    lease_id: job.lease_id.clone(),
                    finish,
                };
                let mut out = store.finish_jobs(&t, &[item]).await.unwrap();
                out.remove(0).unwrap().frees
            }
        };
        // Unlimited, no dependents: nothing freed, succeeded or failed.
        fill(&store, &t, "plain", 2).await;
        let mut got = lease(&store, &t, &["plain"], 2).await;
        assert!(!finish_one(got.remove(0), false).await, "[{b:?}] success");
        assert!(!finish_one(got.remove(0), true).await, "[{b:?}] failure");

        // A job something depends on: its success releases the dependent.
        let upstream =
            crate::enqueue_one(&store, &t, new_job("deps", "work", serde_json::json!({}))).await;
        crate::enqueue_one(&store, &t, crate::dependent_job("deps", vec![upstream.id])).await;
        let got = lease(&store, &t, &["deps"], 10).await;
        assert_eq!(got.len(), 1, "[{b:?}] the dependent waits");
        assert!(
            finish_one(got[0].clone(), false).await,
            "[{b:?}] dependents"
        );
        assert_eq!(
            lease(&store, &t, &["deps"], 10).await.len(),
            1,
            "[{b:?}] released"
        );

        // A queue with a concurrency cap: any finish makes room.
        fill(&store, &t, "capped", 2).await;
        store
            .set_queue_limits_audited(
                &t,
                &queue("capped"),
                limits(None, None, Some(1)),
                draft(&t, "queue.limits"),
            )
            .await
            .unwrap();
        let got = lease(&store, &t, &["capped"], 10).await;
        assert_eq!(got.len(), 1, "[{b:?}]");
        assert!(
            finish_one(got[0].clone(), true).await,
            "[{b:?}] capped queue"
        );
        // The uncapped queue beside it still frees nothing.
        fill(&store, &t, "plain", 1).await;
        let got = lease(&store, &t, &["plain"], 10).await;
        assert!(
            !finish_one(got[0].clone(), false).await,
            "[{b:?}] plain queue"
        );

        // A tenant with a running cap: every finish makes room.
        let quota = TenantQuota {
            max_running: Some(100),
            ..Default::default()
        };
        store
            .set_quota_audited(&t, quota, draft(&t, "quota.update"))
            .await
            .unwrap();
        fill(&store, &t, "plain", 1).await;
        let got = lease(&store, &t, &["plain"], 10).await;
        assert!(
            finish_one(got[0].clone(), false).await,
            "[{b:?}] tenant cap"
        );
    }
}
