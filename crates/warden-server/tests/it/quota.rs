//! Tenant quotas over HTTP: `orch:quota` with its own warrant, audited with before and
//! after, enforced at enqueue with 429s that say when to retry.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::apps;

#[tokio::test]
async fn quota_updates_need_the_quota_warrant_and_are_enforced_at_enqueue() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let quota_token = app
            .token(
                &t.admin,
                &[
                    ("scope", "orch:read orch:quota"),
                    ("quota_reason", "noisy neighbour"),
                    ("quota_ticket", "CAP-7"),
                ],
            )
            .await;
        let refused = app
            .token_request(&t.admin, &[("scope", "orch:quota"), ("quota_reason", "x")])
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.body["error"], "invalid_request");
        assert!(
            refused.body["error_description"]
                .as_str()
                .unwrap()
                .contains("quota_ticket")
        );

        let get = app.get("/api/v1/quota", &t.token).await;
        assert_eq!(
            get.body,
            json!({"max_queued": null, "max_running": null, "enqueue_per_sec": null})
        );
        // The operator warrant is not the quota warrant.
        let a = app
            .send(
                Method::PUT,
                "/api/v1/quota",
                Some(&t.operator),
                Some(&json!({"max_queued": 2})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE")
        );
        let a = app
            .send(
                Method::PUT,
                "/api/v1/quota",
                Some(&quota_token),
                Some(&json!({"max_queued": -2})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_FAILED")
        );
        let a = app
            .send(
                Method::PUT,
                "/api/v1/quota",
                Some(&quota_token),
                Some(&json!({"max_queued": 2})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(a.body["max_queued"], 2);

        let entries = app.audit(&t.token, "action=quota.update").await;
        assert_eq!(entries.len(), 3, "two refusals and the update");
        let ok = &entries[0];
        assert_eq!(ok["outcome"], "allowed");
        assert_eq!(ok["scope"], "orch:quota");
        assert_eq!(
            (ok["target_kind"].as_str(), ok["target_id"].as_str()),
            (Some("quota"), Some("acme"))
        );
        assert_eq!(
            ok["operator_reason"], "noisy neighbour",
            "the quota warrant is recorded"
        );
        assert_eq!(ok["operator_ticket"], "CAP-7");
        assert_eq!(
            ok["metadata"]["before"]["max_queued"],
            serde_json::Value::Null
        );
        assert_eq!(ok["metadata"]["after"]["max_queued"], 2);
        assert_eq!(entries[1]["reason_code"], "VALIDATION_FAILED");
        assert_eq!(entries[2]["reason_code"], "FORBIDDEN_SCOPE");

        app.enqueue(&t.token, "q").await;
        app.enqueue(&t.token, "q").await;
        let a = app
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "q", "type": "t", "payload": {}})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::TOO_MANY_REQUESTS, "QUOTA_EXCEEDED")
        );
        assert!(
            a.headers.get("retry-after").is_some(),
            "429 carries Retry-After"
        );
        let jobs = app.get("/api/v1/jobs", &t.token).await;
        assert_eq!(
            jobs.body["items"].as_array().unwrap().len(),
            2,
            "nothing was created"
        );

        // The enqueue rate: RATE_LIMITED with a Retry-After in seconds.
        let a = app
            .send(
                Method::PUT,
                "/api/v1/quota",
                Some(&quota_token),
                Some(&json!({"enqueue_per_sec": 0.2})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        app.enqueue(&t.token, "q").await;
        let a = app
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "q", "type": "t", "payload": {}})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED")
        );
        let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(
            (4..=5).contains(&wait),
            "one job at 0.2/s: about 5 s, got {wait}"
        );

        // Another tenant neither sees nor is bound by acme's quota.
        let g = app.tenant("globex").await;
        let get = app.get("/api/v1/quota", &g.token).await;
        assert_eq!(get.body["enqueue_per_sec"], serde_json::Value::Null);
        app.enqueue(&g.token, "q").await;
        app.enqueue(&g.token, "q").await;
    }
}
