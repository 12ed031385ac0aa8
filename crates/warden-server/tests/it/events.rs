//! The operational event stream (DESIGN.md §6): job transitions and queue changes reach the
//! bus through the outbox, metadata-only.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::apps;

#[tokio::test]
async fn job_transitions_and_queue_changes_reach_the_bus_without_tenant_worker_or_payload() {
    for app in apps().await {
        let b = app.backend;
        let mut bus = app.app_state.events.subscribe();
        let t = app.tenant("acme-secret-tenant").await;
        let a = app
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "mail", "type": "send", "payload": {"to": "payload-secret"}})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        let id = a.body["id"].as_str().unwrap().to_owned();
        let a = app
            .post(
                "/api/v1/leases",
                &t.token,
                Some(json!({"agent_id": "agent-secret", "queues": ["mail"], "max_jobs": 1, "lease_seconds": 30})),
            )
            .await;
        let lease_id = a.body["jobs"][0]["lease_id"].as_str().unwrap().to_owned();
        let a = app
            .post(
                &format!("/api/v1/jobs/{id}/complete"),
                &t.token,
                Some(json!({"lease_id": lease_id, "result": {"r": "result-secret"}})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let a = app
            .post("/api/v1/queues/mail/pause", &t.operator, None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);

        // Collect until the pause arrives (the relay runs after each commit and every second).
        let mut jobs = Vec::new();
        let mut queues = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !queues.iter().any(|q: &Value| q["change"] == "paused") {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = tokio::time::timeout(left, bus.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("[{b:?}] no pause event; jobs {jobs:?} queues {queues:?}")
                })
                .unwrap();
            for secret in [
                "acme-secret-tenant",
                "agent-secret",
                "payload-secret",
                "result-secret",
                "TICKET-123",
            ] {
                assert!(
                    !e.payload.contains(secret),
                    "[{b:?}] {secret} leaked: {e:?}"
                );
            }
            let v: Value = serde_json::from_str(&e.payload).unwrap();
            match e.topic.as_str() {
                "job" if v["jobId"] == id.as_str() => jobs.push(v),
                "queue" if v["queue"] == "mail" => queues.push(v),
                _ => {}
            }
        }
        let states: Vec<&str> = jobs.iter().map(|j| j["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["available", "running", "succeeded"], "[{b:?}]");
        assert_eq!(jobs[1]["attempt"], 1, "[{b:?}]");
        let changes: Vec<&str> = queues
            .iter()
            .map(|q| q["change"].as_str().unwrap())
            .collect();
        assert_eq!(changes, ["created", "paused"], "[{b:?}]");
        app.stop().await;
    }
}
