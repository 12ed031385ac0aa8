//! Group commit of finishes (`warden_store::group_commit`): finishes that arrive together
//! are settled in one transaction, and each caller still gets exactly its own outcomes.

use std::collections::HashMap;

use warden_core::jobs::JobState;
use warden_core::names::{AgentId, JobId};
use warden_core::reason::ReasonCode;
use warden_store::leases::{FinishItem, LeaseRequest};
use warden_store::testing::TestDb;
use warden_store::{Backend, Store};

use crate::{new_job, queue, tenant};

/// Enqueue `n` jobs into `q` and lease them all at once.
async fn leased(store: &Store, q: &str, n: usize) -> Vec<FinishItem> {
    let t = tenant("acme");
    let jobs = (0..n)
        .map(|i| new_job(q, "work", serde_json::json!({ "i": i })))
        .collect();
    store.enqueue(&t, jobs).await.unwrap();
    let req = LeaseRequest {
        agent_id: AgentId::parse("w1").unwrap(),
        queues: vec![queue(q)],
        types: None,
        max_jobs: n as u32,
        lease_secs: 60,
    };
    let got = store.lease_jobs(&t, &req).await.unwrap();
    assert_eq!(got.len(), n);
    got.iter().map(FinishItem::completed).collect()
}

/// Run every batch as its own concurrent `finish_jobs` call; each call's outcomes as
/// (job, Ok or the code), in its order.
async fn finish_concurrently(
    store: &Store,
    batches: Vec<Vec<FinishItem>>,
) -> Vec<Vec<(JobId, Result<JobState, ReasonCode>)>> {
    let calls: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let store = store.clone();
            tokio::spawn(async move {
                let out = store.finish_jobs(&tenant("acme"), &batch).await;
                let out = out.expect("the finish commits");
                assert_eq!(out.len(), batch.len(), "one outcome per item");
                batch
                    .iter()
                    .zip(out)
                    .map(|(item, o)| (item.id, o.map(|f| f.state)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.expect("the call does not panic"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_finishes_each_get_their_own_outcomes_and_a_job_settles_once() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let items = leased(&store, "q", 60).await;
        // Twelve calls of five jobs each; every call but the first also repeats the first
        // job, which only one of the twelve may settle.
        let batches: Vec<Vec<FinishItem>> = items
            .chunks(5)
            .enumerate()
            .map(|(k, chunk)| {
                let mut batch = chunk.to_vec();
                if k > 0 {
                    batch.insert(k % batch.len(), items[0].clone());
                }
                batch
            })
            .collect();
        let answers = finish_concurrently(&store, batches.clone()).await;
        for (batch, answer) in batches.iter().zip(&answers) {
            let ids: Vec<JobId> = answer.iter().map(|(id, _)| *id).collect();
            let asked: Vec<JobId> = batch.iter().map(|i| i.id).collect();
            assert_eq!(ids, asked, "[{b:?}] each call is answered in its own order");
        }
        let mut settled: HashMap<JobId, usize> = HashMap::new();
        for (id, outcome) in answers.iter().flatten() {
            match outcome {
                Ok(state) => {
                    assert_eq!(*state, JobState::Succeeded, "[{b:?}]");
                    *settled.entry(*id).or_default() += 1;
                }
                Err(code) => {
                    assert_eq!(*id, items[0].id, "[{b:?}] only the repeated job is refused");
                    assert_eq!(*code, ReasonCode::LeaseNotHeld, "[{b:?}]");
                }
            }
        }
        assert_eq!(settled.len(), 60, "[{b:?}] every job settled");
        assert!(
            settled.values().all(|&n| n == 1),
            "[{b:?}] each exactly once"
        );
        for item in &items {
            let job = crate::job(&store, &t, item.id).await;
            assert_eq!(job.state, JobState::Succeeded, "[{b:?}]");
            let timeline = job.timeline.unwrap();
            let states: Vec<JobState> = timeline.iter().map(|e| e.state).collect();
            assert_eq!(
                states,
                [JobState::Available, JobState::Running, JobState::Succeeded],
                "[{b:?}] one entry per transition, none twice"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_that_cannot_commit_fails_alone_and_the_others_settle() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let items = leased(&store, "q", 40).await;
        // The database refuses the timeline entry of one job's success: a finish naming it
        // cannot commit, whichever group it is settled in.
        let poison = items[7].id;
        let trigger = match b {
            Backend::Sqlite => format!(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON job_events \
                 WHEN NEW.job_id = '{poison}' AND NEW.state = 'succeeded' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ),
            Backend::Postgres => format!(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.job_id = '{poison}' AND NEW.state = 'succeeded' THEN \
                     RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER refuse_one BEFORE INSERT ON job_events \
                   FOR EACH ROW EXECUTE FUNCTION refuse_one()"
            ),
        };
        store.execute_raw(&trigger).await.unwrap();
        let batches: Vec<Vec<FinishItem>> = items.chunks(4).map(<[_]>::to_vec).collect();
        let calls: Vec<_> = batches
            .iter()
            .cloned()
            .map(|batch| {
                let store = store.clone();
                tokio::spawn(async move { store.finish_jobs(&tenant("acme"), &batch).await })
            })
            .collect();
        for (batch, call) in batches.iter().zip(calls) {
            let out = call.await.unwrap();
            if batch.iter().any(|i| i.id == poison) {
                assert!(
                    out.is_err(),
                    "[{b:?}] the finish naming the refused job fails"
                );
            } else {
                let out = out.unwrap_or_else(|e| panic!("[{b:?}] an innocent finish failed: {e}"));
                assert!(out.iter().all(Result::is_ok), "[{b:?}]");
            }
        }
        for item in &items {
            let job = crate::job(&store, &t, item.id).await;
            let poisoned_call = batches
                .iter()
                .any(|batch| batch.iter().any(|i| i.id == poison) && batch.contains(item));
            let want = if poisoned_call {
                JobState::Running
            } else {
                JobState::Succeeded
            };
            assert_eq!(
                job.state, want,
                "[{b:?}] a failed finish changes none of its jobs, the others commit"
            );
        }
    }
}
