//! The small hot table: finished jobs move to `jobs_done` and everything a user does with
//! a finished job still works — show with timeline, list and page, depth by state, replay
//! (single and bulk), cancel refused as before, idempotency keys and chosen ids still
//! taken, dependencies on moved jobs — while claims never see them.

use serde_json::json;
use warden_core::jobs::{JobState, NewJob};
use warden_core::names::{AgentId, JobId, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;
use warden_store::Store;
use warden_store::jobs::JobFilter;
use warden_store::leases::{Finish, FinishItem, LeaseRequest};
use warden_store::testing::TestDb;

use crate::{
    all_jobs, assert_rejected, dependent_job, enqueue_one, job, job_draft, keyed_job, new_job,
    queue, tenant,
};

/// Lease every available job of `q` and finish each with `finish(i)`.
async fn work_off(store: &Store, t: &TenantId, q: &str, finish: impl Fn(usize) -> Finish) {
    let leased = lease_some(store, t, q, 1000).await;
    let items: Vec<FinishItem> = leased
        .iter()
        .enumerate()
        .map(|(i, j)| FinishItem {
            id: j.id,
            lease_id: j.lease_id.clone(),
            finish: finish(i),
        })
        .collect();
    for r in store.finish_jobs(t, &items).await.unwrap() {
        r.expect("finished");
    }
}

fn ok() -> Finish {
    Finish::Complete {
        result: Some(json!({"ok": true})),
    }
}

fn fatal() -> Finish {
    Finish::Fail {
        error: "boom".into(),
        retryable: false,
    }
}

/// Move everything finished until now.
async fn archive_all(store: &Store) -> u64 {
    store
        .archive_finished_jobs(Timestamp::now().saturating_add_micros(1), 10_000)
        .await
        .unwrap()
}

#[tokio::test]
async fn finished_jobs_move_out_and_stay_visible_countable_and_replayable() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(
                enqueue_one(&store, &t, new_job("mail", "send", json!({"i": i})))
                    .await
                    .id,
            );
        }
        work_off(&store, &t, "mail", |i| if i == 0 { fatal() } else { ok() }).await;
        let waiting = enqueue_one(&store, &t, new_job("mail", "send", json!({"i": 99}))).await;
        let depth_before = store
            .get_queue(&t, &queue("mail"))
            .await
            .unwrap()
            .unwrap()
            .depth;
        let listed_before = all_jobs(&store, &t).await;

        // Nothing finished long enough ago: nothing moves.
        let old = Timestamp::now().saturating_add_micros(-3_600_000_000);
        assert_eq!(
            store.archive_finished_jobs(old, 100).await.unwrap(),
            0,
            "[{b:?}]"
        );
        assert_eq!(
            archive_all(&store).await,
            6,
            "[{b:?}] the six finished jobs move"
        );
        assert_eq!(archive_all(&store).await, 0, "[{b:?}] once");

        // Depth by state, the list (order and content) and each job are as before.
        let depth_after = store
            .get_queue(&t, &queue("mail"))
            .await
            .unwrap()
            .unwrap()
            .depth;
        assert_eq!(depth_after, depth_before, "[{b:?}] depth counts moved jobs");
        assert_eq!(
            all_jobs(&store, &t).await,
            listed_before,
            "[{b:?}] list unchanged"
        );
        let shown = job(&store, &t, ids[1]).await;
        assert_eq!(shown.state, JobState::Succeeded);
        assert_eq!(shown.result, Some(json!({"ok": true})));
        let states: Vec<JobState> = shown.timeline.unwrap().iter().map(|e| e.state).collect();
        assert_eq!(
            states,
            [JobState::Available, JobState::Running, JobState::Succeeded]
        );

        // Paging by cursor crosses from hot to moved rows without loss or repeat.
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (page, more) = store
                .list_jobs(&t, &JobFilter::default(), cursor, 2)
                .await
                .unwrap();
            seen.extend(page.iter().map(|j| j.id));
            cursor = page.last().map(|j| j.id);
            if !more {
                break;
            }
        }
        let expected: Vec<JobId> = listed_before.iter().map(|j| j.id).collect();
        assert_eq!(seen, expected, "[{b:?}] pages newest first, each once");
        let filter = JobFilter {
            state: Some(JobState::DeadLetter),
            ..JobFilter::default()
        };
        let dead = store.snapshot_job_ids(&t, &filter, 100).await.unwrap();
        assert_eq!(dead, vec![ids[0]], "[{b:?}] filters reach moved jobs");

        // Claims never see moved jobs: only the waiting one is leased.
        let leased = store
            .lease_jobs(
                &t,
                &LeaseRequest {
                    agent_id: AgentId::parse("w").unwrap(),
                    queues: vec![queue("mail")],
                    types: None,
                    max_jobs: 100,
                    lease_secs: 60,
                },
            )
            .await
            .unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].id, waiting.id);

        // Replay (single and bulk) works from the moved row; cancel is refused as before.
        let replayed = store
            .replay_job_audited(&t, ids[0], job_draft(&t, "job.replay", ids[0]))
            .await
            .unwrap();
        assert_eq!(replayed.replay_of, Some(ids[0]));
        assert_eq!(replayed.state, JobState::Available);
        let bulk = store
            .replay_chunk_audited(
                &t,
                store.prepare_replay(&t, &ids[1..3]).await.unwrap(),
                &job_draft(&t, "job.replay", ids[1]),
                "bulk-1",
            )
            .await
            .unwrap();
        assert_eq!(bulk.len(), 2, "[{b:?}]");
        let cancel = store
            .cancel_job_audited(&t, ids[1], job_draft(&t, "job.cancel", ids[1]))
            .await;
        assert_rejected(b, cancel, ReasonCode::InvalidStateTransition);
        // Another tenant does not find them.
        let other = tenant("globex");
        assert!(store.get_job(&other, ids[1]).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn keys_ids_and_dependencies_of_moved_jobs_still_count() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let keyed = enqueue_one(&store, &t, keyed_job("order-7", json!({"n": 7}))).await;
        let chosen = NewJob {
            client_chosen_id: true,
            ..new_job("default", "work", json!({}))
        };
        let chosen_id = enqueue_one(&store, &t, chosen.clone()).await.id;
        let up_ok = enqueue_one(&store, &t, new_job("default", "work", json!({"up": 1}))).await;
        enqueue_one(&store, &t, new_job("default", "work", json!({"up": 2}))).await;
        let slow = enqueue_one(&store, &t, new_job("slow", "work", json!({}))).await;
        // A dependent of one upstream that will move and one that will finish later.
        let both = enqueue_one(&store, &t, dependent_job("later", vec![up_ok.id, slow.id])).await;
        assert_eq!(both.state, JobState::Pending);
        work_off(&store, &t, "default", |_| ok()).await; // keyed, chosen, up_ok, up_dead
        assert_eq!(archive_all(&store).await, 4, "[{b:?}]");

        // The idempotency key still returns its job; a different job under it conflicts.
        let again = store
            .enqueue(&t, vec![keyed_job("order-7", json!({"n": 7}))])
            .await
            .unwrap();
        assert!(
            !again[0].created,
            "[{b:?}] a moved job's key still deduplicates"
        );
        assert_eq!(again[0].job.id, keyed.id);
        let conflict = store
            .enqueue(&t, vec![keyed_job("order-7", json!({"n": 8}))])
            .await;
        assert_rejected(b, conflict, ReasonCode::IdempotencyConflict);
        let reused = store.enqueue(&t, vec![chosen]).await;
        assert_rejected(b, reused, ReasonCode::DuplicateJobId);
        assert_eq!(chosen_id, job(&store, &t, chosen_id).await.id);

        // New dependents of moved jobs: a succeeded upstream is satisfied.
        let on_ok = enqueue_one(&store, &t, dependent_job("after", vec![up_ok.id])).await;
        assert_eq!(on_ok.state, JobState::Available, "[{b:?}]");
        // The earlier dependent is promoted when its other upstream succeeds later.
        work_off(&store, &t, "slow", |_| ok()).await;
        assert_eq!(
            job(&store, &t, both.id).await.state,
            JobState::Available,
            "[{b:?}]"
        );
    }
}

#[tokio::test]
async fn a_dependent_of_a_moved_dead_job_is_canceled_upstream_failed() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let up = enqueue_one(&store, &t, new_job("q", "work", json!({}))).await;
        work_off(&store, &t, "q", |_| fatal()).await;
        assert_eq!(archive_all(&store).await, 1);
        let dep = enqueue_one(&store, &t, dependent_job("q", vec![up.id])).await;
        assert_eq!(dep.state, JobState::Canceled, "[{b:?}]");
        assert_eq!(dep.reason_code, Some(ReasonCode::UpstreamFailed));
    }
}

#[tokio::test]
async fn a_finish_batch_tells_moved_foreign_and_unknown_jobs_apart_and_settles_only_its_own() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, other) = (tenant("acme"), tenant("other"));
        // A job that finished and moved to `jobs_done`, with the lease it once held.
        let moved = enqueue_one(&store, &acme, new_job("mail", "send", json!({})))
            .await
            .id;
        let request = LeaseRequest {
            agent_id: AgentId::parse("w").unwrap(),
            queues: vec![queue("mail")],
            types: None,
            max_jobs: 10,
            lease_secs: 60,
        };
        let old = store.lease_jobs(&acme, &request).await.unwrap();
        let old_item = FinishItem {
            id: moved,
            lease_id: old[0].lease_id.clone(),
            finish: ok(),
        };
        store
            .finish_jobs(&acme, std::slice::from_ref(&old_item))
            .await
            .unwrap()[0]
            .as_ref()
            .expect("first finish");
        assert_eq!(archive_all(&store).await, 1, "{b:?}");
        // Three held leases in acme and one in another tenant.
        for i in 0..3 {
            enqueue_one(&store, &acme, new_job("mail", "send", json!({ "i": i }))).await;
        }
        let foreign = enqueue_one(&store, &other, new_job("mail", "send", json!({})))
            .await
            .id;
        let held = store.lease_jobs(&acme, &request).await.unwrap();
        let theirs = store.lease_jobs(&other, &request).await.unwrap();
        assert_eq!((held.len(), theirs.len()), (3, 1), "{b:?}");
        let mut items: Vec<FinishItem> = held
            .iter()
            .map(|j| FinishItem {
                id: j.id,
                lease_id: j.lease_id.clone(),
                finish: if j.id == held[1].id { fatal() } else { ok() },
            })
            .collect();
        items.push(old_item);
        items.push(FinishItem {
            id: foreign,
            lease_id: theirs[0].lease_id.clone(),
            finish: ok(),
        });
        items.push(FinishItem {
            id: JobId::new(),
            lease_id: "nope".into(),
            finish: ok(),
        });
        let out = store.finish_jobs(&acme, &items).await.unwrap();
        let states: Vec<Result<JobState, ReasonCode>> =
            out.into_iter().map(|r| r.map(|f| f.state)).collect();
        assert_eq!(
            states,
            vec![
                Ok(JobState::Succeeded),
                Ok(JobState::DeadLetter),
                Ok(JobState::Succeeded),
                Err(ReasonCode::LeaseNotHeld),
                Err(ReasonCode::UnknownJobId),
                Err(ReasonCode::UnknownJobId),
            ],
            "{b:?}"
        );
        // The other tenant's job is untouched: still running under its lease.
        let theirs_now = store.get_job(&other, foreign).await.unwrap().unwrap();
        assert_eq!(theirs_now.state, JobState::Running, "{b:?}");
        for j in &held {
            let now = store.get_job(&acme, j.id).await.unwrap().unwrap();
            assert!(now.state.is_terminal(), "{b:?}: {:?}", now.state);
        }
    }
}

#[tokio::test]
async fn expired_moved_jobs_are_deleted_with_their_timelines_unless_a_job_depends_on_them() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                enqueue_one(&store, &t, new_job("mail", "send", json!({"i": i})))
                    .await
                    .id,
            );
        }
        work_off(&store, &t, "mail", |_| ok()).await;
        // A job that waits on a finished one keeps it: it reads its state.
        let unfinished = enqueue_one(&store, &t, new_job("slow", "send", json!({}))).await;
        let waiting = enqueue_one(
            &store,
            &t,
            dependent_job("mail", vec![ids[3], unfinished.id]),
        )
        .await;
        assert_eq!(archive_all(&store).await, 4, "[{b:?}]");
        let depth = |store: Store| async move {
            store
                .get_queue(&tenant("acme"), &queue("mail"))
                .await
                .unwrap()
                .unwrap()
                .depth
        };
        assert_eq!(depth(store.clone()).await["succeeded"], 4, "[{b:?}]");

        // Nothing finished before the cutoff: nothing goes.
        let old = Timestamp::now().saturating_add_micros(-3_600_000_000);
        assert_eq!(store.purge_done_jobs(old, 100).await.unwrap(), 0, "[{b:?}]");
        // Two at a time, oldest first; the one depended on stays.
        let now = Timestamp::now().saturating_add_micros(1);
        assert_eq!(store.purge_done_jobs(now, 2).await.unwrap(), 2, "[{b:?}]");
        assert_eq!(store.purge_done_jobs(now, 2).await.unwrap(), 1, "[{b:?}]");
        assert_eq!(store.purge_done_jobs(now, 2).await.unwrap(), 0, "[{b:?}]");
        for id in &ids[..3] {
            assert!(
                store.get_job(&t, *id).await.unwrap().is_none(),
                "[{b:?}] {id} deleted"
            );
            let events = store
                .execute_raw(&format!("DELETE FROM job_events WHERE job_id = '{id}'"))
                .await
                .unwrap();
            assert_eq!(events, 0, "[{b:?}] its timeline went with it");
        }
        assert_eq!(
            job(&store, &t, ids[3]).await.state,
            JobState::Succeeded,
            "[{b:?}]"
        );
        assert_eq!(
            job(&store, &t, waiting.id).await.state,
            JobState::Pending,
            "[{b:?}]"
        );
        let d = depth(store.clone()).await;
        assert_eq!(
            (d["succeeded"], d["pending"]),
            (1, 1),
            "[{b:?}] depth follows"
        );
        // A replay of a deleted job is an unknown job.
        let gone = store
            .replay_job_audited(&t, ids[0], job_draft(&t, "job.replay", ids[0]))
            .await;
        assert_rejected(b, gone, ReasonCode::UnknownJobId);
    }
}

/// Every (tenant, queue, state) with its number of jobs, hot and moved, counted row by row
/// around the store: what the queue-depth counters must always agree with.
async fn counted(url: &str) -> std::collections::BTreeMap<(String, String, String), i64> {
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT tenant, queue, state, CAST(COUNT(*) AS BIGINT) AS n FROM ( \
           SELECT tenant, queue, state FROM jobs UNION ALL SELECT tenant, queue, state FROM jobs_done \
         ) AS j GROUP BY tenant, queue, state",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| {
            let text = |c: &str| sqlx::Row::try_get::<String, _>(r, c).unwrap();
            let n = sqlx::Row::try_get::<i64, _>(r, "n").unwrap();
            ((text("tenant"), text("queue"), text("state")), n)
        })
        .collect()
}

/// The depths the store serves for every queue of `counted`, in the same shape.
async fn served(
    store: &Store,
    of: &std::collections::BTreeMap<(String, String, String), i64>,
) -> std::collections::BTreeMap<(String, String, String), i64> {
    let mut queues: Vec<(String, String)> =
        of.keys().map(|(t, q, _)| (t.clone(), q.clone())).collect();
    queues.dedup();
    let mut out = std::collections::BTreeMap::new();
    for (t, q) in queues {
        let v = store
            .get_queue(&tenant(&t), &queue(&q))
            .await
            .unwrap()
            .unwrap();
        for (state, n) in v.depth {
            if n != 0 {
                out.insert((t.clone(), q.clone(), state.to_string()), n);
            }
        }
    }
    out
}

#[tokio::test]
async fn queue_depth_counters_agree_with_the_rows_through_every_kind_of_transition() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let check = |step: &'static str| {
            let (store, url) = (store.clone(), db.url.clone());
            async move {
                let rows = counted(&url).await;
                assert_eq!(served(&store, &rows).await, rows, "[{b:?}] after {step}");
                // The metrics' reading of unfinished jobs agrees too.
                let live: std::collections::BTreeMap<_, _> = store
                    .live_depths()
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|(_, _, _, n)| *n != 0)
                    .map(|(t, q, s, n)| ((t, q, s.as_str().to_owned()), n))
                    .collect();
                let unfinished: std::collections::BTreeMap<_, _> = rows
                    .into_iter()
                    .filter(|((_, _, s), _)| !JobState::parse(s).unwrap().is_terminal())
                    .collect();
                assert_eq!(live, unfinished, "[{b:?}] /metrics after {step}");
            }
        };
        let mut mail = Vec::new();
        for i in 0..12 {
            mail.push(enqueue_one(&store, &acme, new_job("mail", "send", json!({ "i": i }))).await);
        }
        enqueue_one(&store, &acme, dependent_job("mail", vec![mail[2].id])).await;
        let other = enqueue_one(&store, &acme, new_job("other", "send", json!({}))).await;
        enqueue_one(&store, &acme, new_job("slow", "send", json!({}))).await;
        enqueue_one(&store, &globex, new_job("mail", "send", json!({}))).await;
        check("enqueue").await;

        // Succeed, retry, dead-letter (cascading to the dependent).
        work_off(&store, &acme, "mail", |i| match i % 3 {
            0 => ok(),
            1 => Finish::Fail {
                error: "again".into(),
                retryable: true,
            },
            _ => fatal(),
        })
        .await;
        check("finishes").await;
        store
            .cancel_job_audited(&acme, other.id, job_draft(&acme, "job.cancel", other.id))
            .await
            .unwrap();
        store
            .replay_job_audited(
                &acme,
                mail[2].id,
                job_draft(&acme, "job.replay", mail[2].id),
            )
            .await
            .unwrap();
        check("cancel and replay").await;

        // A lease that runs out returns its job.
        let short = LeaseRequest {
            agent_id: AgentId::parse("w").unwrap(),
            queues: vec![queue("slow")],
            types: None,
            max_jobs: 10,
            lease_secs: 1,
        };
        assert_eq!(
            store.lease_jobs(&acme, &short).await.unwrap().len(),
            1,
            "[{b:?}]"
        );
        check("lease").await;
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        assert_eq!(store.recover_expired_leases().await.unwrap(), 1, "[{b:?}]");
        store.promote_due_jobs().await.unwrap();
        check("lease expiry").await;
        // A running job canceled by an operator (SQLite counts moves out of `running` in
        // the store, migration 0021).
        let running = store
            .lease_jobs(
                &acme,
                &LeaseRequest {
                    lease_secs: 60,
                    ..short.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(running.len(), 1, "[{b:?}]");
        store
            .cancel_job_audited(
                &acme,
                running[0].id,
                job_draft(&acme, "job.cancel", running[0].id),
            )
            .await
            .unwrap();
        check("cancel of a running job").await;

        assert!(archive_all(&store).await > 0, "[{b:?}]");
        check("the mover").await;
        // A bulk replay of moved and hot jobs (a path of its own into the table).
        let ids: Vec<JobId> = mail.iter().map(|j| j.id).collect();
        let chunk = store.prepare_replay(&acme, &ids).await.unwrap();
        store
            .replay_chunk_audited(
                &acme,
                chunk,
                &job_draft(&acme, "job.replay", ids[0]),
                "bulk-1",
            )
            .await
            .unwrap();
        check("bulk replay").await;
        let now = Timestamp::now().saturating_add_micros(1);
        assert!(
            store.purge_done_jobs(now, 100).await.unwrap() > 0,
            "[{b:?}]"
        );
        check("retention").await;

        // Folding (PostgreSQL's deltas into its counters) changes no reading.
        let folded = store.fold_depth_deltas().await.unwrap();
        assert_eq!(
            folded > 0,
            b == warden_store::Backend::Postgres,
            "[{b:?}] {folded}"
        );
        assert_eq!(
            store.fold_depth_deltas().await.unwrap(),
            0,
            "[{b:?}] all folded"
        );
        check("folding").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_depth_counters_stay_exact_under_concurrent_work_and_folding() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let folder = {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.fold_depth_deltas().await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let t = tenant("acme");
                    for round in 0..5 {
                        let jobs = (0..20)
                            .map(|i| new_job("mail", "send", json!({ "w": w, "r": round, "i": i })))
                            .collect();
                        store.enqueue(&t, jobs).await.unwrap();
                        work_off(
                            &store,
                            &t,
                            "mail",
                            |i| if i % 4 == 0 { fatal() } else { ok() },
                        )
                        .await;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        folder.await.unwrap();
        let rows = counted(&db.url).await;
        assert_eq!(rows.values().sum::<i64>(), 400, "[{b:?}]");
        assert_eq!(served(&store, &rows).await, rows, "[{b:?}]");
        store.fold_depth_deltas().await.unwrap();
        assert_eq!(served(&store, &rows).await, rows, "[{b:?}] folded");
    }
}

/// Lease up to `n` available jobs of `q` and keep them running.
async fn lease_some(
    store: &Store,
    t: &TenantId,
    q: &str,
    n: u32,
) -> Vec<warden_store::leases::LeasedJob> {
    store
        .lease_jobs(
            t,
            &LeaseRequest {
                agent_id: AgentId::parse("w").unwrap(),
                queues: vec![queue(q)],
                types: None,
                max_jobs: n,
                lease_secs: 60,
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn listing_merges_running_hot_and_moved_jobs_newest_first_under_every_filter() {
    // Running jobs are listed through the lease index and every other hot job through
    // list indexes that leave them out (migration 0018); moved jobs from `jobs_done`. Each
    // filter, paged 3 at a time, must yield exactly the matching jobs, each once, newest
    // first, whatever branch holds them.
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        let mut ids = Vec::new();
        for i in 0..24 {
            let (q, ty) = (["a", "b"][i % 2], ["x", "y"][i % 3 % 2]);
            ids.push(
                enqueue_one(&store, &acme, new_job(q, ty, json!({ "i": i })))
                    .await
                    .id,
            );
        }
        for q in ["a", "b"] {
            enqueue_one(&store, &globex, new_job(q, "x", json!({}))).await;
            assert_eq!(lease_some(&store, &globex, q, 1).await.len(), 1);
        }
        // Moved: the first jobs of each queue, finished and archived.
        let mut leased = lease_some(&store, &acme, "a", 3).await;
        leased.extend(lease_some(&store, &acme, "b", 3).await);
        assert_eq!(leased.len(), 6, "[{b:?}]");
        let items: Vec<FinishItem> = leased
            .iter()
            .map(|j| FinishItem {
                id: j.id,
                lease_id: j.lease_id.clone(),
                finish: ok(),
            })
            .collect();
        for r in store.finish_jobs(&acme, &items).await.unwrap() {
            r.expect("finished");
        }
        assert!(archive_all(&store).await >= 6, "[{b:?}]");
        // Hot and finished, hot and running, hot and canceled; the rest available.
        work_off(&store, &acme, "a", |i| if i < 2 { ok() } else { fatal() }).await;
        assert_eq!(lease_some(&store, &acme, "b", 4).await.len(), 4, "[{b:?}]");
        store
            .cancel_job_audited(&acme, ids[23], job_draft(&acme, "job.cancel", ids[23]))
            .await
            .unwrap();

        let mut truth = Vec::new();
        for id in &ids {
            truth.push(job(&store, &acme, *id).await);
        }
        let states: Vec<JobState> = truth.iter().map(|j| j.state).collect();
        for s in [
            JobState::Running,
            JobState::Available,
            JobState::Succeeded,
            JobState::DeadLetter,
            JobState::Canceled,
        ] {
            assert!(states.contains(&s), "[{b:?}] the fixture has {s} jobs");
        }
        for q in [None, Some("a"), Some("b")] {
            for s in [
                None,
                Some(JobState::Running),
                Some(JobState::Available),
                Some(JobState::Succeeded),
                Some(JobState::DeadLetter),
                Some(JobState::Canceled),
            ] {
                for ty in [None, Some("x")] {
                    let filter = JobFilter {
                        queue: q.map(queue),
                        state: s,
                        job_type: ty.map(crate::job_type),
                        ..Default::default()
                    };
                    let mut want: Vec<JobId> = truth
                        .iter()
                        .filter(|j| q.is_none_or(|q| j.queue.as_str() == q))
                        .filter(|j| s.is_none_or(|s| j.state == s))
                        .filter(|j| ty.is_none_or(|ty| j.job_type.as_str() == ty))
                        .map(|j| j.id)
                        .collect();
                    want.sort_by(|x, y| y.cmp(x));
                    let (mut got, mut cursor) = (Vec::new(), None);
                    loop {
                        let (page, more) =
                            store.list_jobs(&acme, &filter, cursor, 3).await.unwrap();
                        got.extend(page.iter().map(|j| j.id));
                        cursor = page.last().map(|j| j.id);
                        if !more {
                            break;
                        }
                    }
                    assert_eq!(got, want, "[{b:?}] {filter:?}");
                    let snapshot = store.snapshot_job_ids(&acme, &filter, 1_000).await.unwrap();
                    let mut oldest_first = want.clone();
                    oldest_first.reverse();
                    assert_eq!(snapshot, oldest_first, "[{b:?}] snapshot of {filter:?}");
                }
            }
        }
    }
}
