//! Several nodes on one database: exactly one leads, leadership passes on when the leader
//! goes, and a wake-up sent by one node reaches the others (PostgreSQL); on SQLite the
//! only process always leads. And a pooled PostgreSQL connection that died while idle is
//! replaced before it is used.

use std::time::Duration;

use warden_store::Backend;
use warden_store::testing::TestDb;

#[tokio::test]
async fn one_node_leads_and_leadership_passes_on_when_it_goes() {
    for db in TestDb::all().await {
        let b = db.backend;
        let (a, c) = (db.open().await, db.open().await);
        let mut first = a.try_lead().await.unwrap().expect("the first node leads");
        assert!(first.still_held().await, "[{b:?}]");
        if b == Backend::Sqlite {
            // One process per file: it always leads.
            assert!(c.try_lead().await.unwrap().is_some());
            continue;
        }
        assert!(
            c.try_lead().await.unwrap().is_none(),
            "[{b:?}] a second node does not lead while the first does"
        );
        first.release().await;
        let mut second = c
            .try_lead()
            .await
            .unwrap()
            .expect("the second node leads once the first is gone");
        assert!(second.still_held().await);
        assert!(a.try_lead().await.unwrap().is_none(), "only one leader");
        // A leader whose connection is killed finds out and steps down; another takes over.
        a.execute_raw(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 2 AND objid = hashtext(current_schema())::oid AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
        assert!(
            !second.still_held().await,
            "the killed leader knows it lost"
        );
        let mut third = None;
        for _ in 0..50 {
            third = a.try_lead().await.unwrap();
            if third.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(third.is_some(), "a node takes over after the leader died");
    }
}

#[tokio::test]
async fn a_wake_up_from_one_node_reaches_the_others_but_not_itself() {
    for db in TestDb::all().await {
        let (a, c) = (db.open().await, db.open().await);
        if db.backend == Backend::Sqlite {
            assert!(a.work_listener("a").await.unwrap().is_none());
            a.announce_work("a").await.unwrap(); // a no-op, not an error
            continue;
        }
        let mut on_a = a.work_listener("node-a").await.unwrap().unwrap();
        let mut on_c = c.work_listener("node-c").await.unwrap().unwrap();
        a.announce_work("node-a").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), on_c.recv())
            .await
            .expect("node c is woken within 5 s")
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), on_a.recv())
                .await
                .is_err(),
            "a node ignores its own wake-ups"
        );
    }
}

/// Two nodes lease and finish from one queue at once, with lease recovery running beside
/// them: every job is leased by one node at a time and succeeds exactly once. (The lease
/// and finish updates address locked rows by `ctid` on PostgreSQL; a row another node has
/// changed in between must be re-read, never written through a stale locator.)
#[tokio::test]
async fn two_nodes_leasing_and_finishing_at_once_settle_every_job_exactly_once() {
    use std::collections::HashSet;

    use warden_core::names::{AgentId, QueueName, TenantId};
    use warden_store::leases::{FinishItem, LeaseRequest};
    use warden_store::testing::bench_job;

    for db in TestDb::all().await {
        if db.backend != Backend::Postgres {
            continue; // one process per SQLite file
        }
        let t = TenantId::parse("acme").unwrap();
        let first = db.open().await;
        let jobs: Vec<_> = (0..2_000).map(|i| bench_job("race", "noop", i)).collect();
        for chunk in jobs.chunks(500) {
            first.enqueue(&t, chunk.to_vec()).await.unwrap();
        }
        let node = |store: warden_store::Store, name: &'static str| {
            let t = t.clone();
            tokio::spawn(async move {
                let req = LeaseRequest {
                    agent_id: AgentId::parse(name).unwrap(),
                    queues: vec![QueueName::parse("race").unwrap()],
                    types: None,
                    max_jobs: 64,
                    lease_secs: 60,
                };
                let mut settled = Vec::new();
                loop {
                    let got = store.lease_jobs(&t, &req).await.unwrap();
                    if got.is_empty() {
                        return settled;
                    }
                    let items: Vec<FinishItem> = got.iter().map(FinishItem::completed).collect();
                    for (item, out) in items
                        .iter()
                        .zip(store.finish_jobs(&t, &items).await.unwrap())
                    {
                        out.unwrap_or_else(|c| {
                            panic!("{name}: finishing {} refused: {c:?}", item.id)
                        });
                        settled.push(item.id);
                    }
                }
            })
        };
        let a = node(db.open().await, "node-a");
        let b = node(db.open().await, "node-b");
        // Lease recovery touches the same rows (nothing has expired, so it changes none).
        let sweeper = {
            let store = db.open().await;
            tokio::spawn(async move {
                for _ in 0..20 {
                    store.recover_expired_leases().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        sweeper.await.unwrap();
        let all: HashSet<_> = a.iter().chain(&b).copied().collect();
        assert_eq!(a.len() + b.len(), 2_000, "every job settled once");
        assert_eq!(all.len(), 2_000, "no job settled twice");
    }
}

#[tokio::test]
async fn a_connection_that_died_while_idle_is_replaced_before_use() {
    for db in TestDb::all().await {
        if db.backend == Backend::Sqlite {
            continue; // a local file: nothing to hang up
        }
        let (a, killer) = (db.open().await, db.open().await);
        let tenant = warden_core::names::TenantId::parse("acme").unwrap();
        a.ensure_tenant(&tenant).await.unwrap();
        // Every other session of this test's schema ends, as in a database restart.
        let killed = killer
            .execute_raw(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid()",
            )
            .await
            .unwrap();
        assert!(killed > 0, "the store's connections were found");
        // Idle long enough to be checked before use: the pool replaces the dead ones.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(a.tenant_exists(&tenant).await.unwrap());
        a.ensure_tenant(&tenant).await.unwrap();
    }
}
