//! Several nodes on one database: exactly one leads, leadership passes on when the leader
//! goes, and a wake-up sent by one node reaches the others (PostgreSQL); on SQLite the
//! only process always leads.

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
