//! Errors: problem+json with stable codes, request ids, limits, media types.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::apps;

#[tokio::test]
async fn every_error_is_a_problem_with_the_request_id() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let a = app.send(Method::GET, "/nowhere", None, None).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_ROUTE")
        );
        assert_eq!(a.headers["content-type"], "application/problem+json");
        assert_eq!(a.body["type"], "https://warden.dev/errors/unknown-route");
        assert_eq!(a.body["status"], 404);
        assert_eq!(
            a.body["request_id"],
            a.headers["x-request-id"].to_str().unwrap()
        );

        let a = app
            .send(Method::DELETE, "/api/v1/jobs", Some(&t.token), None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
        );
        assert!(a.headers.contains_key("allow"));

        // Kept when well formed, replaced otherwise.
        let r = app
            .http
            .get(format!("{}/healthz", app.url))
            .header("x-request-id", "abc.DEF-1_2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-request-id"], "abc.DEF-1_2");
        let r = app
            .http
            .get(format!("{}/healthz", app.url))
            .header("x-request-id", "has space")
            .send()
            .await
            .unwrap();
        assert_ne!(r.headers()["x-request-id"], "has space");

        let big = "x".repeat(1_100_000);
        let r = app
            .http
            .post(format!("{}/api/v1/jobs", app.url))
            .bearer_auth(&t.token)
            .header("content-type", "application/json")
            .body(format!(
                "{{\"queue\":\"q\",\"type\":\"t\",\"payload\":\"{big}\"}}"
            ))
            .send()
            .await
            .unwrap();
        let a = crate::helpers::answer(r).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
        );
        // The batch route takes up to 16 MiB.
        let r = app
            .http
            .post(format!("{}/api/v1/jobs/batch", app.url))
            .bearer_auth(&t.token)
            .json(&json!({"jobs": [{"queue": "q", "type": "t", "payload": big}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);

        let r = app
            .http
            .post(format!("{}/api/v1/jobs", app.url))
            .bearer_auth(&t.token)
            .header("content-type", "application/json")
            .body("{\"queue\": ")
            .send()
            .await
            .unwrap();
        let a = crate::helpers::answer(r).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_FAILED")
        );
        assert!(a.body["errors"][0]["field"].is_string());
        let r = app
            .http
            .post(format!("{}/api/v1/jobs", app.url))
            .bearer_auth(&t.token)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap();
        let a = crate::helpers::answer(r).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
        );
        // Authentication comes before validation.
        let r = app
            .http
            .post(format!("{}/api/v1/jobs", app.url))
            .header("content-type", "text/plain")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_refused_action_leaves_no_partial_state() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let jobs_before = app.get("/api/v1/jobs", &t.token).await.body["items"]
            .as_array()
            .unwrap()
            .len();
        let missing = warden_core::names::JobId::new().to_string();
        let a = app.post("/api/v1/jobs/batch", &t.token, Some(json!({"jobs": [{"queue": "q", "type": "t", "payload": {}}, {"queue": "q", "type": "t", "payload": {}, "depends_on": [missing]}]}))).await;
        assert_eq!(a.code(), "VALIDATION_FAILED");
        assert_eq!(a.body["errors"][0]["field"], "jobs[1].depends_on");
        assert_eq!(
            app.get("/api/v1/jobs", &t.token).await.body["items"]
                .as_array()
                .unwrap()
                .len(),
            jobs_before
        );
        assert_eq!(
            app.get("/api/v1/queues/q", &t.token).await.code(),
            "UNKNOWN_QUEUE",
            "no queue either"
        );
        app.stop().await;
    }
}
