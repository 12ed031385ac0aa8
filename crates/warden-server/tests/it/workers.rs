//! The worker protocol over HTTP: leases, heartbeats, finishing, retries, expiry, long-poll.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, apps};

async fn lease(app: &TestApp, token: &str, body: Value) -> Vec<Value> {
    let a = app.post("/api/v1/leases", token, Some(body)).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    a.body["jobs"].as_array().unwrap().clone()
}

fn lease_body(queue: &str, max_jobs: u32, lease_seconds: u32) -> Value {
    json!({"agent_id": "worker-1", "queues": [queue], "max_jobs": max_jobs, "lease_seconds": lease_seconds})
}

/// Send a lease request in the background: its answer, and how long it took.
fn long_poll(
    app: &TestApp,
    token: &str,
    body: Value,
) -> tokio::task::JoinHandle<(Value, Duration)> {
    let (url, token, http) = (app.url.clone(), token.to_owned(), app.http.clone());
    let started = Instant::now();
    tokio::spawn(async move {
        let r = http
            .post(format!("{url}/api/v1/leases"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.json::<Value>().await.unwrap(), started.elapsed())
    })
}

async fn wait_for_state(app: &TestApp, token: &str, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = app.get(&format!("/api/v1/jobs/{id}"), token).await.body;
        if job["state"] == state {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached {state}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn leases_follow_priority_and_only_the_lease_holder_can_finish() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for (p, n) in [(5, "low"), (-1, "urgent"), (0, "normal")] {
            app.post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "q", "type": "t", "payload": {"n": n}, "priority": p})),
            )
            .await;
        }
        let jobs = lease(&app, &t.token, lease_body("q", 2, 30)).await;
        let names: Vec<&str> = jobs
            .iter()
            .map(|j| j["payload"]["n"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["urgent", "normal"], "smaller priority first");
        assert_eq!(jobs[0]["attempt"], 1);
        let (id, lease_id) = (
            jobs[0]["id"].as_str().unwrap(),
            jobs[0]["lease_id"].as_str().unwrap(),
        );

        let a = app
            .post(
                &format!("/api/v1/jobs/{id}/heartbeat"),
                &t.token,
                Some(json!({"lease_id": "someone-else"})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "LEASE_NOT_HELD")
        );
        let a = app
            .post(
                &format!("/api/v1/jobs/{id}/heartbeat"),
                &t.token,
                Some(json!({"lease_id": lease_id})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let a = app
            .post(
                &format!("/api/v1/jobs/{id}/complete"),
                &t.token,
                Some(json!({"lease_id": lease_id, "result": {"sent": true}})),
            )
            .await;
        assert_eq!(
            (a.status, a.body["state"].as_str()),
            (StatusCode::OK, Some("succeeded"))
        );
        assert_eq!(a.body["result"], json!({"sent": true}));
        let a = app
            .post(
                &format!("/api/v1/jobs/{id}/complete"),
                &t.token,
                Some(json!({"lease_id": lease_id})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "LEASE_NOT_HELD"),
            "finishing twice changes nothing"
        );
        let job = app.get(&format!("/api/v1/jobs/{id}"), &t.token).await.body;
        let states: Vec<&str> = job["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["available", "running", "succeeded"]);
        assert_eq!(job["timeline"][1]["agent_id"], "worker-1");

        let agents = app.get("/api/v1/agents", &t.token).await.body;
        assert_eq!(agents["items"][0]["agent_id"], "worker-1");
        assert_eq!(agents["items"][0]["online"], true);
        // Another tenant cannot touch the job.
        let other = app.tenant("other").await;
        let leased_id = jobs[1]["id"].as_str().unwrap();
        let a = app
            .post(
                &format!("/api/v1/jobs/{leased_id}/complete"),
                &other.token,
                Some(json!({"lease_id": jobs[1]["lease_id"]})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_JOB_ID")
        );
        assert!(
            lease(&app, &other.token, lease_body("q", 10, 30))
                .await
                .is_empty()
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter_and_cancel_dependents() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let a = warden_core::names::JobId::new().to_string();
        let b = warden_core::names::JobId::new().to_string();
        let batch = json!({"jobs": [
            {"id": a, "queue": "q", "type": "t", "payload": {}, "max_attempts": 2},
            {"id": b, "queue": "q", "type": "t", "payload": {}, "depends_on": [a]},
        ]});
        assert_eq!(
            app.post("/api/v1/jobs/batch", &t.token, Some(batch))
                .await
                .status,
            StatusCode::CREATED
        );
        let jobs = lease(&app, &t.token, lease_body("q", 10, 30)).await;
        assert_eq!(jobs.len(), 1, "the dependent is pending");
        let r = app
            .post(
                &format!("/api/v1/jobs/{a}/fail"),
                &t.token,
                Some(json!({"lease_id": jobs[0]["lease_id"], "error": "boom", "retryable": true})),
            )
            .await;
        assert_eq!(r.body["state"], "retrying");
        assert_eq!(r.body["last_error"], "boom");
        // Backoff of the first retry is at most 1 s; the promotion loop then frees it.
        wait_for_state(&app, &t.token, &a, "available").await;
        let jobs = lease(&app, &t.token, lease_body("q", 10, 30)).await;
        assert_eq!((jobs.len(), jobs[0]["attempt"].as_u64()), (1, Some(2)));
        let r = app.post(&format!("/api/v1/jobs/{a}/fail"), &t.token, Some(json!({"lease_id": jobs[0]["lease_id"], "error": "boom again", "retryable": true}))).await;
        assert_eq!(r.body["state"], "dead_letter", "attempts exhausted");
        let dependent = app.get(&format!("/api/v1/jobs/{b}"), &t.token).await.body;
        assert_eq!(
            (
                dependent["state"].as_str(),
                dependent["reason_code"].as_str()
            ),
            (Some("canceled"), Some("UPSTREAM_FAILED"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn success_releases_dependents_and_non_retryable_failure_is_final() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let a = warden_core::names::JobId::new().to_string();
        let b = warden_core::names::JobId::new().to_string();
        let batch = json!({"jobs": [
            {"id": a, "queue": "q", "type": "t", "payload": {}},
            {"id": b, "queue": "q", "type": "t", "payload": {}, "depends_on": [a]},
        ]});
        app.post("/api/v1/jobs/batch", &t.token, Some(batch)).await;
        let jobs = lease(&app, &t.token, lease_body("q", 10, 30)).await;
        app.post(
            &format!("/api/v1/jobs/{a}/complete"),
            &t.token,
            Some(json!({"lease_id": jobs[0]["lease_id"]})),
        )
        .await;
        assert_eq!(
            app.get(&format!("/api/v1/jobs/{b}"), &t.token).await.body["state"],
            "available"
        );
        let jobs = lease(&app, &t.token, lease_body("q", 10, 30)).await;
        let r = app.post(&format!("/api/v1/jobs/{b}/fail"), &t.token, Some(json!({"lease_id": jobs[0]["lease_id"], "error": "bad input", "retryable": false}))).await;
        assert_eq!(r.body["state"], "dead_letter");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_expired_lease_returns_the_job_and_the_old_holder_is_refused() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let id = app.enqueue(&t.token, "q").await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let first = lease(&app, &t.token, lease_body("q", 1, 1)).await;
        let job = wait_for_state(&app, &t.token, &id, "available").await;
        let last = job["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["error"], "lease_expired");
        let a = app
            .post(
                &format!("/api/v1/jobs/{id}/complete"),
                &t.token,
                Some(json!({"lease_id": first[0]["lease_id"]})),
            )
            .await;
        assert_eq!(a.code(), "LEASE_NOT_HELD");
        let second = lease(&app, &t.token, lease_body("q", 1, 30)).await;
        assert_eq!(
            second[0]["attempt"], 2,
            "the expired lease counted as an attempt"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_long_poll_is_woken_by_an_enqueue_and_paused_queues_lease_nothing() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let poll = long_poll(
            &app,
            &t.token,
            json!({"agent_id": "w", "queues": ["q"], "max_jobs": 1, "lease_seconds": 30, "wait_ms": 20000}),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.enqueue(&t.token, "q").await;
        let (body, elapsed) = poll.await.unwrap();
        assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
        assert!(
            elapsed < Duration::from_secs(10),
            "woken by the enqueue, not by the 20 s timeout ({elapsed:?})"
        );

        app.enqueue(&t.token, "q").await;
        app.post("/api/v1/queues/q/pause", &t.operator, None).await;
        assert!(
            lease(&app, &t.token, lease_body("q", 10, 30))
                .await
                .is_empty(),
            "a paused queue leases nothing"
        );
        app.post("/api/v1/queues/q/resume", &t.operator, None).await;
        assert_eq!(
            lease(&app, &t.token, lease_body("q", 10, 30)).await.len(),
            1
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn each_enqueued_job_wakes_its_own_long_poll_and_filtered_ones_stay_asleep() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let poll = |agent: &str, types: Option<Vec<&str>>, wait_ms: u64| {
            let mut body = json!({"agent_id": agent, "queues": ["q"], "max_jobs": 1, "lease_seconds": 30, "wait_ms": wait_ms});
            if let Some(types) = types {
                body["types"] = json!(types);
            }
            long_poll(&app, &t.token, body)
        };
        let a = poll("a", None, 20_000);
        let b = poll("b", None, 20_000);
        let other_type = poll("c", Some(vec!["other"]), 1_500);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Two jobs one after the other: the second must not be absorbed by the waiter the
        // first woke, but reach the other waiter.
        let first = app.enqueue(&t.token, "q").await;
        let second = app.enqueue(&t.token, "q").await;
        let (a, a_elapsed) = a.await.unwrap();
        let (b, b_elapsed) = b.await.unwrap();
        for elapsed in [a_elapsed, b_elapsed] {
            assert!(
                elapsed < Duration::from_secs(10),
                "woken by an enqueue, not by the 20 s timeout ({elapsed:?})"
            );
        }
        let mut got: Vec<Value> = [a, b]
            .iter()
            .map(|r| {
                let jobs = r["jobs"].as_array().unwrap();
                assert_eq!(jobs.len(), 1, "each long-poll got one job: {r}");
                jobs[0]["id"].clone()
            })
            .collect();
        got.sort_by_key(|v| v.as_str().unwrap().to_owned());
        let mut want = vec![first["id"].clone(), second["id"].clone()];
        want.sort_by_key(|v| v.as_str().unwrap().to_owned());
        assert_eq!(got, want);
        let (c, _) = other_type.await.unwrap();
        assert!(
            c["jobs"].as_array().unwrap().is_empty(),
            "a long-poll for another type leases nothing: {c}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn finish_batch_answers_each_item_in_order() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for _ in 0..3 {
            app.enqueue(&t.token, "q").await;
        }
        let jobs = lease(&app, &t.token, lease_body("q", 3, 30)).await;
        let items = json!({"items": [
            {"id": jobs[0]["id"], "lease_id": jobs[0]["lease_id"], "outcome": "complete", "result": 1},
            {"id": jobs[1]["id"], "lease_id": "stale", "outcome": "complete"},
            {"id": jobs[2]["id"], "lease_id": jobs[2]["lease_id"], "outcome": "fail", "error": "x", "retryable": false},
            {"id": jobs[0]["id"], "lease_id": jobs[0]["lease_id"], "outcome": "complete"},
            {"id": "not-a-job", "lease_id": "x", "outcome": "complete"},
        ]});
        let r = app.post("/api/v1/jobs/finish", &t.token, Some(items)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let answers: Vec<(bool, &str)> = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["ok"].as_bool().unwrap(),
                    i["code"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            answers,
            [
                (true, "-"),
                (false, "LEASE_NOT_HELD"),
                (true, "-"),
                (false, "LEASE_NOT_HELD"),
                (false, "UNKNOWN_JOB_ID")
            ]
        );
        assert_eq!(
            app.get(
                &format!("/api/v1/jobs/{}", jobs[1]["id"].as_str().unwrap()),
                &t.token
            )
            .await
            .body["state"],
            "running",
            "a refused item changes nothing"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn absurd_worker_requests_are_refused_with_their_fields() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for (body, field) in [
            (
                json!({"agent_id": "w", "queues": ["q"], "max_jobs": 0, "lease_seconds": 30}),
                "max_jobs",
            ),
            (
                json!({"agent_id": "w", "queues": ["q"], "max_jobs": 1001, "lease_seconds": 30}),
                "max_jobs",
            ),
            (
                json!({"agent_id": "w", "queues": ["q"], "max_jobs": 1, "lease_seconds": 0}),
                "lease_seconds",
            ),
            (
                json!({"agent_id": "w", "queues": ["q"], "max_jobs": 1, "lease_seconds": 30, "wait_ms": 30001}),
                "wait_ms",
            ),
            (
                json!({"agent_id": "w w", "queues": ["q"], "max_jobs": 1, "lease_seconds": 30}),
                "agent_id",
            ),
            (
                json!({"agent_id": "w", "queues": [], "max_jobs": 1, "lease_seconds": 30}),
                "queues",
            ),
        ] {
            let a = app.post("/api/v1/leases", &t.token, Some(body)).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
                "{field}"
            );
            assert_eq!(a.body["errors"][0]["field"], field);
        }
        let a = app
            .post(
                "/api/v1/jobs/finish",
                &t.token,
                Some(json!({"items": [{"id": "x", "lease_id": "y", "outcome": "explode"}]})),
            )
            .await;
        assert_eq!(a.body["errors"][0]["field"], "items[0].outcome");
        let a = app
            .post("/api/v1/leases", &t.operator, Some(lease_body("q", 1, 30)))
            .await;
        assert_eq!(a.code(), "FORBIDDEN_SCOPE", "leasing needs orch:work");
        app.stop().await;
    }
}

#[tokio::test]
async fn queues_show_throughput_and_error_rate_and_metrics_count_the_engine() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for _ in 0..4 {
            app.enqueue(&t.token, "mail").await;
        }
        let jobs = lease(&app, &t.token, lease_body("mail", 4, 30)).await;
        assert_eq!(jobs.len(), 4);
        let items: Vec<Value> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                if i == 0 {
                    json!({"id": j["id"], "lease_id": j["lease_id"], "outcome": "fail",
                           "error": "smtp down", "retryable": false})
                } else {
                    json!({"id": j["id"], "lease_id": j["lease_id"], "outcome": "complete"})
                }
            })
            .collect();
        let a = app
            .post(
                "/api/v1/jobs/finish",
                &t.token,
                Some(json!({"items": items})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        app.enqueue(&t.token, "mail").await;

        let q = app.get("/api/v1/queues/mail", &t.token).await.body;
        for w in ["1m", "5m", "1h"] {
            assert!(q["throughput"][w].as_f64().unwrap() > 0.0, "{q}");
            assert_eq!(q["error_rate"][w], 0.25, "one of four failed: {q}");
        }
        // Another queue with nothing finished: zero throughput, no error rate.
        app.enqueue(&t.token, "idle").await;
        let idle = app.get("/api/v1/queues/idle", &t.token).await.body;
        assert_eq!(idle["throughput"]["1m"], 0.0);
        assert_eq!(idle["error_rate"]["1m"], Value::Null);

        let text = app
            .http
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in [
            r#"warden_queue_jobs{tenant="acme",queue="mail",state="available"} 1"#,
            r#"warden_jobs_leased_total{tenant="acme",queue="mail"} 4"#,
            r#"warden_jobs_finished_total{tenant="acme",queue="mail",type="test",state="succeeded"} 3"#,
            r#"warden_jobs_finished_total{tenant="acme",queue="mail",type="test",state="dead_letter"} 1"#,
            r#"warden_job_start_delay_seconds_count{tenant="acme",queue="mail"} 4"#,
            r#"warden_job_run_seconds_count{tenant="acme",queue="mail",type="test"} 4"#,
            "warden_leader 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_leader_moves_finished_jobs_out_of_the_hot_table_and_they_stay_visible() {
    for db in warden_store::testing::TestDb::all().await {
        let app = TestApp::spawn_with(db, |c| c.jobs.archive_after_secs = 0).await;
        let t = app.tenant("acme").await;
        let id = app.enqueue(&t.token, "mail").await["id"].clone();
        let jobs = lease(&app, &t.token, lease_body("mail", 1, 30)).await;
        let done = app
            .post(
                &format!("/api/v1/jobs/{}/complete", jobs[0]["id"].as_str().unwrap()),
                &t.token,
                Some(json!({"lease_id": jobs[0]["lease_id"], "result": {"n": 1}})),
            )
            .await;
        assert_eq!(done.status, StatusCode::OK, "{:?}", done.body);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = app
                .http
                .get(format!("{}/metrics", app.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.lines().any(|l| l == "warden_jobs_archived_total 1") {
                break;
            }
            assert!(Instant::now() < deadline, "moved within 10 s:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let job = app
            .get(&format!("/api/v1/jobs/{}", id.as_str().unwrap()), &t.token)
            .await;
        assert_eq!(job.body["state"], "succeeded");
        assert_eq!(job.body["result"], json!({"n": 1}));
        assert_eq!(job.body["timeline"].as_array().unwrap().len(), 3);
        let q = app.get("/api/v1/queues/mail", &t.token).await.body;
        assert_eq!(q["depth"]["succeeded"], 1, "{q}");
        app.stop().await;
    }
}

#[tokio::test]
async fn stopping_the_server_answers_open_long_polls_and_ends_live_tails_at_once() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let poll = long_poll(
            &app,
            &t.token,
            json!({"agent_id": "w", "queues": ["q"], "max_jobs": 1, "lease_seconds": 30, "wait_ms": 30000}),
        );
        let mut tail = app
            .http
            .get(format!("{}/api/v1/audit/stream", app.url))
            .bearer_auth(&t.token)
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        app.stop().await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "[{b:?}] the drain waited on open requests ({:?})",
            started.elapsed()
        );
        let (body, _) = poll.await.unwrap();
        assert_eq!(body["jobs"], json!([]), "[{b:?}] answered with no jobs");
        // The tail's body ends (after its opening comment).
        let end = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(_)) = tail.chunk().await {}
        })
        .await;
        assert!(end.is_ok(), "[{b:?}] the live tail ended");
    }
}
