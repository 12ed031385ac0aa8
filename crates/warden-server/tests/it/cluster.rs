//! Two `warden serve` nodes on one PostgreSQL database: exactly one leads (and says so in
//! `/metrics`), the other takes over when it stops, and an enqueue on one node wakes a
//! long-poll waiting on the other at once (LISTEN/NOTIFY), not at the end of its wait.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use warden_store::Backend;

use crate::helpers::{TestApp, apps};

async fn leads(app: &TestApp) -> bool {
    let text = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines().any(|l| l == "warden_leader 1")
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn one_node_leads_and_the_other_takes_over_when_it_stops() {
    for mut first in apps().await {
        if first.backend == Backend::Sqlite {
            until("the only SQLite node leads", async || leads(&first).await).await;
            first.stop().await;
            continue;
        }
        until("the first node leads", async || leads(&first).await).await;
        let mut second = first.peer().await;
        first.hand_over_db(&mut second);
        // Give the second node a few election rounds: it must not lead too.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            leads(&first).await && !leads(&second).await,
            "exactly one leader"
        );
        first.stop().await;
        until("the second node takes over", async || leads(&second).await).await;
        second.stop().await;
    }
}

#[tokio::test]
async fn an_enqueue_on_one_node_wakes_a_long_poll_on_another() {
    for mut a in apps().await {
        if a.backend == Backend::Sqlite {
            a.stop().await;
            continue;
        }
        let mut b = a.peer().await;
        a.hand_over_db(&mut b);
        let t = a.tenant("acme").await;
        let poll = {
            let (http, url, token) = (b.http.clone(), b.url.clone(), t.token.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let r = http
                    .post(format!("{url}/api/v1/leases"))
                    .bearer_auth(token)
                    .json(&json!({"agent_id": "w", "queues": ["q"], "max_jobs": 1,
                                  "lease_seconds": 30, "wait_ms": 20000}))
                    .send()
                    .await
                    .unwrap();
                let body: serde_json::Value = r.json().await.unwrap();
                (started.elapsed(), body)
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let enqueued = a
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "q", "type": "t", "payload": {}})),
            )
            .await;
        assert_eq!(enqueued.status, StatusCode::CREATED);
        let (waited, body) = poll.await.unwrap();
        assert_eq!(body["jobs"][0]["id"], enqueued.body["id"], "{body}");
        assert!(
            waited < Duration::from_secs(5),
            "woken by the other node's NOTIFY, not by the end of the 20 s wait ({waited:?})"
        );
        b.stop().await;
        a.stop().await;
    }
}
