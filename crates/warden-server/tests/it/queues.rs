//! Queues over HTTP.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::apps;

#[tokio::test]
async fn queues_show_depth_and_pause_resume_are_audited() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for _ in 0..3 {
            app.enqueue(&t.token, "emails").await;
        }
        let job = app.enqueue(&t.token, "emails").await;
        app.post(
            &format!("/api/v1/jobs/{}/cancel", job["id"].as_str().unwrap()),
            &t.operator,
            None,
        )
        .await;
        let q = app.get("/api/v1/queues/emails", &t.token).await.body;
        assert_eq!(q["depth"]["available"], 3);
        assert_eq!(q["depth"]["canceled"], 1);
        assert_eq!(q["depth"]["running"], 0);
        assert_eq!(q["paused"], false);
        assert_eq!(
            app.get("/api/v1/queues/never", &t.token).await.code(),
            "UNKNOWN_QUEUE"
        );

        let a = app
            .post("/api/v1/queues/emails/pause", &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.body["paused"].as_bool()),
            (StatusCode::OK, Some(true))
        );
        let a = app
            .post("/api/v1/queues/emails/pause", &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "INVALID_STATE_TRANSITION")
        );
        // A paused queue still accepts enqueues.
        app.enqueue(&t.token, "emails").await;
        let a = app
            .post("/api/v1/queues/emails/resume", &t.operator, None)
            .await;
        assert_eq!(a.body["paused"], false);
        let a = app
            .post("/api/v1/queues/nope/pause", &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_QUEUE")
        );
        let entries = app
            .audit(&t.token, "action=queue.pause&action=queue.resume")
            .await;
        let seen: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("queue.pause", "rejected"),
                ("queue.resume", "allowed"),
                ("queue.pause", "rejected"),
                ("queue.pause", "allowed")
            ]
        );
        assert_eq!(entries[3]["target_kind"], "queue");
        assert_eq!(entries[3]["target_id"], "emails");

        for name in ["a", "b", "c"] {
            app.enqueue(&t.token, name).await;
        }
        let page = app.get("/api/v1/queues?limit=2", &t.token).await.body;
        let names: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        let rest = app
            .get(
                &format!(
                    "/api/v1/queues?limit=2&cursor={}",
                    page["next_cursor"].as_str().unwrap()
                ),
                &t.token,
            )
            .await
            .body;
        let names: Vec<&str> = rest["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["c", "emails"]);
        assert!(rest["next_cursor"].is_null());
        app.stop().await;
    }
}

#[tokio::test]
async fn queue_limits_are_set_through_the_pipeline_and_enforced_on_leases() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        for _ in 0..5 {
            app.enqueue(&t.token, "emails").await;
        }
        let put = |token: &str, body: serde_json::Value| {
            let token = token.to_owned();
            let app = &app;
            async move {
                app.send(
                    reqwest::Method::PUT,
                    "/api/v1/queues/emails/limits",
                    Some(&token),
                    Some(&body),
                )
                .await
            }
        };
        let a = put(&t.operator, json!({"max_concurrency": 2})).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(
            a.body["limits"],
            json!({"rate_per_sec": null, "burst": null, "max_concurrency": 2})
        );
        // Refusals: scope, validation, unknown queue — each audited once.
        let a = put(&t.token, json!({"max_concurrency": 1})).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE")
        );
        for (body, field) in [
            (json!({"max_concurrency": 0}), "max_concurrency"),
            (json!({"rate_per_sec": -1.0}), "rate_per_sec"),
            (json!({"burst": 3}), "burst"),
            (json!({"max_concurrency": "many"}), "max_concurrency"),
            (json!({"speed": 1}), "body"),
        ] {
            let a = put(&t.operator, body.clone()).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
                "{body}: {:?}",
                a.body
            );
            if field != "body" {
                assert!(
                    a.body["detail"].as_str().unwrap().contains(field),
                    "{:?}",
                    a.body
                );
            }
        }
        let a = app
            .send(
                reqwest::Method::PUT,
                "/api/v1/queues/nope/limits",
                Some(&t.operator),
                Some(&json!({})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_QUEUE")
        );
        let entries = app.audit(&t.token, "action=queue.limits").await;
        let outcomes: Vec<&str> = entries
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes.iter().filter(|o| **o == "allowed").count(), 1);
        assert_eq!(outcomes.iter().filter(|o| **o == "rejected").count(), 7);
        let allowed = entries.iter().find(|e| e["outcome"] == "allowed").unwrap();
        assert_eq!(allowed["metadata"]["after"]["max_concurrency"], 2);
        assert_eq!(
            allowed["metadata"]["before"]["max_concurrency"],
            serde_json::Value::Null
        );
        assert_eq!(allowed["operator_ticket"], "TICKET-123");

        // Enforced: two running at most, whatever the worker asks for.
        let lease = app
            .post(
                "/api/v1/leases",
                &t.token,
                Some(json!({"agent_id": "w1", "queues": ["emails"], "max_jobs": 5, "lease_seconds": 60})),
            )
            .await;
        assert_eq!(lease.status, StatusCode::OK, "{:?}", lease.body);
        assert_eq!(lease.body["jobs"].as_array().unwrap().len(), 2);
        let q = app.get("/api/v1/queues/emails", &t.token).await.body;
        assert_eq!(q["running"], 2);
        assert_eq!(q["limits"]["max_concurrency"], 2);
    }
}

#[tokio::test]
async fn queue_retry_defaults_are_audited_and_apply_to_attempts_and_backoff() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        app.enqueue(&t.token, "mail").await;
        let path = "/api/v1/queues/mail/retry";
        let put = |token: String, body: serde_json::Value| {
            let app = &app;
            async move {
                app.send(reqwest::Method::PUT, path, Some(&token), Some(&body))
                    .await
            }
        };
        let a = put(t.token.clone(), json!({"max_attempts": 2})).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE")
        );
        for (bad, field) in [
            (json!({"max_attempts": 0}), "max_attempts"),
            (
                json!({"backoff_base_ms": 5000, "backoff_max_ms": 1000}),
                "backoff_max_ms",
            ),
            (json!({"backoff_base_ms": -1}), "backoff_base_ms"),
            (json!({"retries": 3}), "retries"),
        ] {
            let a = put(t.operator.clone(), bad).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
                "{:?}",
                a.body
            );
            assert!(a.body.to_string().contains(field), "{:?}", a.body);
        }
        let a = app
            .send(
                reqwest::Method::PUT,
                "/api/v1/queues/nope/retry",
                Some(&t.operator),
                Some(&json!({})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_QUEUE")
        );
        let a = put(
            t.operator.clone(),
            json!({"max_attempts": 2, "backoff_base_ms": 60000, "backoff_max_ms": 120000}),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(
            a.body["retry"],
            json!({"max_attempts": 2, "backoff_base_ms": 60000, "backoff_max_ms": 120000})
        );
        let entries = app.audit(&t.token, "action=queue.retry").await;
        assert_eq!(
            entries.len(),
            7,
            "one refusal at scope, four at validation, one unknown, one allowed"
        );
        assert_eq!(
            entries[0]["metadata"]["before"]["max_attempts"],
            json!(null)
        );
        assert_eq!(entries[0]["metadata"]["after"]["backoff_base_ms"], 60000);

        // The default applies to jobs that give no max_attempts; a job's own wins.
        let defaulted = app.enqueue(&t.token, "mail").await;
        assert_eq!(defaulted["max_attempts"], 2);
        let own = app
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "mail", "type": "t", "payload": {}, "max_attempts": 5})),
            )
            .await;
        assert_eq!(own.body["max_attempts"], 5);

        // A retryable failure waits the queue's backoff (60 s, less up to 20 % jitter).
        let leased = app
            .post(
                "/api/v1/leases",
                &t.token,
                Some(json!({"agent_id": "w", "queues": ["mail"], "max_jobs": 1, "lease_seconds": 30})),
            )
            .await;
        let job = &leased.body["jobs"][0];
        let before = warden_core::time::Timestamp::now();
        let failed = app
            .post(
                &format!("/api/v1/jobs/{}/fail", job["id"].as_str().unwrap()),
                &t.token,
                Some(json!({"lease_id": job["lease_id"], "error": "smtp", "retryable": true})),
            )
            .await;
        assert_eq!(failed.body["state"], "retrying", "{:?}", failed.body);
        let run_at =
            warden_core::time::Timestamp::parse_rfc3339(failed.body["run_at"].as_str().unwrap())
                .unwrap();
        let delay = run_at.as_micros() - before.as_micros();
        assert!(
            (47_000_000..=61_000_000).contains(&delay),
            "backoff from the queue's policy, got {delay} µs"
        );
        app.stop().await;
    }
}
