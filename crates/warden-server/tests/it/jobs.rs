//! Jobs over HTTP: enqueue, idempotency, dependencies, list, and the audited cancel/replay.

use reqwest::StatusCode;
use serde_json::json;
use warden_core::scopes::Role;

use crate::helpers::apps;

#[tokio::test]
async fn cancel_with_operator_token_commits_the_job_change_and_its_entry() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let job = app.enqueue(&t.token, "emails").await;
        let id = job["id"].as_str().unwrap();
        let r = app
            .http
            .post(format!("{}/api/v1/jobs/{id}/cancel", app.url))
            .bearer_auth(&t.operator)
            .header("x-request-id", "req-cancel-1")
            .send()
            .await
            .unwrap();
        let a = crate::helpers::answer(r).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(a.body["state"], "canceled");
        let entries = app.audit(&t.token, "action=job.cancel").await;
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(e["actor"], "client:admin");
        assert_eq!(e["actor_kind"], "client");
        assert_eq!(e["target_kind"], "job");
        assert_eq!(e["target_id"], id);
        assert_eq!(e["outcome"], "allowed");
        assert_eq!(e["operator_reason"], "maintenance");
        assert_eq!(e["operator_ticket"], "TICKET-123");
        assert_eq!(e["scope"], "orch:operate");
        assert_eq!(e["source_ip"], "127.0.0.1");
        assert_eq!(e["request_id"], "req-cancel-1");
        assert_eq!(e["reason_code"], serde_json::Value::Null);
        assert_eq!(e["metadata"]["state_before"], "available");
        assert!(e["token_id"].is_string() && e["seq"].is_u64() && e["leaf_hash"].is_string());
        // The job's timeline names the operator.
        let shown = app.get(&format!("/api/v1/jobs/{id}"), &t.token).await.body;
        let last = shown["timeline"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (last["state"].as_str(), last["actor"].as_str()),
            (Some("canceled"), Some("client:admin"))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn cancel_with_read_token_is_forbidden_and_audited_exactly_once() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let viewer = app.client("acme", "viewer", &[Role::Viewer]).await;
        let read = app.token(&viewer, &[]).await;
        let job = app.enqueue(&t.token, "emails").await;
        let id = job["id"].as_str().unwrap();
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &read, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE")
        );
        let entries = app.audit(&t.token, "action=job.cancel").await;
        assert_eq!(entries.len(), 1, "exactly one entry");
        assert_eq!(entries[0]["outcome"], "rejected");
        assert_eq!(entries[0]["reason_code"], "FORBIDDEN_SCOPE");
        assert_eq!(entries[0]["actor"], "client:viewer");
        assert_eq!(
            entries[0]["request_id"],
            a.headers["x-request-id"].to_str().unwrap()
        );
        // The job was not touched.
        assert_eq!(
            app.get(&format!("/api/v1/jobs/{id}"), &t.token).await.body["state"],
            "available"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn cancel_of_unknown_or_terminal_job_is_refused_and_audited_once_each() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let unknown = warden_core::names::JobId::new();
        let a = app
            .post(&format!("/api/v1/jobs/{unknown}/cancel"), &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_JOB_ID")
        );
        let a = app
            .post("/api/v1/jobs/not-a-uuid/cancel", &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_JOB_ID"),
            "unparseable id is unknown"
        );
        let job = app.enqueue(&t.token, "q").await;
        let id = job["id"].as_str().unwrap();
        assert_eq!(
            app.post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
                .await
                .status,
            StatusCode::OK
        );
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "INVALID_STATE_TRANSITION")
        );
        let entries = app.audit(&t.token, "action=job.cancel").await;
        let summary: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap(),
                    e["reason_code"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("rejected", "INVALID_STATE_TRANSITION"),
                ("allowed", "-"),
                ("rejected", "UNKNOWN_JOB_ID"),
                ("rejected", "UNKNOWN_JOB_ID")
            ]
        );
        assert_eq!(entries[3]["target_id"], unknown.to_string());
        app.stop().await;
    }
}

#[tokio::test]
async fn enqueue_validates_every_field_and_honours_idempotency_keys() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let body = json!({"queue": "q", "type": "t", "payload": {"a": 1}, "idempotency_key": "k-1", "priority": -5});
        let first = app.post("/api/v1/jobs", &t.token, Some(body.clone())).await;
        assert_eq!(first.status, StatusCode::CREATED);
        for k in [
            "id",
            "queue",
            "type",
            "payload",
            "priority",
            "state",
            "attempt",
            "max_attempts",
            "run_at",
            "created_at",
            "updated_at",
            "depends_on",
            "idempotency_key",
            "replay_of",
            "reason_code",
            "last_error",
            "result",
        ] {
            assert!(first.body.get(k).is_some(), "field {k} always present");
        }
        let again = app.post("/api/v1/jobs", &t.token, Some(body.clone())).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body["id"], first.body["id"]);
        let mut other = body.clone();
        other["payload"] = json!({"a": 2});
        let a = app.post("/api/v1/jobs", &t.token, Some(other)).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "IDEMPOTENCY_CONFLICT")
        );

        let a = app
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "bad queue", "type": "", "payload": 1, "max_attempts": 0})),
            )
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_FAILED")
        );
        let fields: Vec<&str> = a.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, vec!["queue", "type", "max_attempts"]);
        let a = app
            .post(
                "/api/v1/jobs",
                &t.token,
                Some(json!({"queue": "q", "type": "t"})),
            )
            .await;
        assert_eq!(a.body["errors"][0]["field"], "payload");

        let id = warden_core::names::JobId::new().to_string();
        let body = json!({"id": id, "queue": "q", "type": "t", "payload": null});
        assert_eq!(
            app.post("/api/v1/jobs", &t.token, Some(body.clone()))
                .await
                .status,
            StatusCode::CREATED
        );
        let a = app.post("/api/v1/jobs", &t.token, Some(body)).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "DUPLICATE_JOB_ID")
        );

        let future =
            json!({"queue": "q", "type": "t", "payload": {}, "run_at": "2999-01-01T00:00:00Z"});
        assert_eq!(
            app.post("/api/v1/jobs", &t.token, Some(future)).await.body["state"],
            "pending"
        );
        // Enqueueing needs orch:work or orch:operate.
        let viewer = app.client("acme", "viewer", &[Role::Viewer]).await;
        let read = app.token(&viewer, &[]).await;
        assert_eq!(
            app.post(
                "/api/v1/jobs",
                &read,
                Some(json!({"queue": "q", "type": "t", "payload": {}}))
            )
            .await
            .code(),
            "FORBIDDEN_SCOPE"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn batch_is_all_or_nothing_and_rejects_cycles() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let (a, b, c) = (
            warden_core::names::JobId::new(),
            warden_core::names::JobId::new(),
            warden_core::names::JobId::new(),
        );
        let job = |id: &warden_core::names::JobId, deps: Vec<String>| json!({"id": id.to_string(), "queue": "q", "type": "t", "payload": {}, "depends_on": deps});
        let cyclic = json!({"jobs": [job(&a, vec![c.to_string()]), job(&b, vec![a.to_string()]), job(&c, vec![b.to_string()])]});
        let r = app.post("/api/v1/jobs/batch", &t.token, Some(cyclic)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "VALIDATION_FAILED")
        );
        let own = json!({"jobs": [job(&a, vec![a.to_string()])]});
        assert_eq!(
            app.post("/api/v1/jobs/batch", &t.token, Some(own))
                .await
                .code(),
            "VALIDATION_FAILED"
        );
        assert!(
            app.get("/api/v1/jobs", &t.token).await.body["items"]
                .as_array()
                .unwrap()
                .is_empty(),
            "nothing created"
        );

        let ok = json!({"jobs": [job(&a, vec![]), job(&b, vec![a.to_string()])]});
        let r = app.post("/api/v1/jobs/batch", &t.token, Some(ok)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["ids"], json!([a.to_string(), b.to_string()]));
        assert_eq!(
            app.get(&format!("/api/v1/jobs/{b}"), &t.token).await.body["state"],
            "pending"
        );
        // Canceling a cascades to its pending dependent.
        assert_eq!(
            app.post(&format!("/api/v1/jobs/{a}/cancel"), &t.operator, None)
                .await
                .status,
            StatusCode::OK
        );
        let dependent = app.get(&format!("/api/v1/jobs/{b}"), &t.token).await.body;
        assert_eq!(
            (
                dependent["state"].as_str(),
                dependent["reason_code"].as_str()
            ),
            (Some("canceled"), Some("UPSTREAM_FAILED"))
        );

        let too_many = json!({"jobs": (0..10_001).map(|_| json!({"queue": "q", "type": "t", "payload": {}})).collect::<Vec<_>>()});
        assert_eq!(
            app.post("/api/v1/jobs/batch", &t.token, Some(too_many))
                .await
                .code(),
            "VALIDATION_FAILED"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn job_list_pages_newest_first_with_filters_and_validated_limits() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let jobs: Vec<serde_json::Value> = (0..7).map(|i| json!({"queue": if i % 2 == 0 { "even" } else { "odd" }, "type": "t", "payload": {"i": i}})).collect();
        let ids = app
            .post("/api/v1/jobs/batch", &t.token, Some(json!({"jobs": jobs})))
            .await
            .body["ids"]
            .as_array()
            .unwrap()
            .clone();
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/jobs?limit=3&cursor={c}"),
                None => "/api/v1/jobs?limit=3".into(),
            };
            let page = app.get(&path, &t.token).await.body;
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|j| j["id"].clone()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(seen, expected, "each once, newest first");
        let even = app
            .get("/api/v1/jobs?queue=even&state=available&type=t", &t.token)
            .await
            .body;
        assert_eq!(even["items"].as_array().unwrap().len(), 4);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "state=nope",
            "cursor=zzz",
            "bogus=1",
        ] {
            let a = app.get(&format!("/api/v1/jobs?{bad}"), &t.token).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
                "{bad}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn replay_creates_a_linked_job_and_never_rewrites_the_old_one() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let job = app.enqueue(&t.token, "q").await;
        let id = job["id"].as_str().unwrap();
        let a = app
            .post(&format!("/api/v1/jobs/{id}/replay"), &t.operator, None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "INVALID_STATE_TRANSITION"),
            "available jobs cannot be replayed"
        );
        app.post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
            .await;
        let before = app.get(&format!("/api/v1/jobs/{id}"), &t.token).await.body;
        let a = app
            .post(&format!("/api/v1/jobs/{id}/replay"), &t.operator, None)
            .await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert_eq!(a.body["replay_of"], id);
        assert_eq!(a.body["state"], "available");
        assert_eq!(a.body["payload"], job["payload"]);
        let again = app
            .post(&format!("/api/v1/jobs/{id}/replay"), &t.operator, None)
            .await;
        assert_eq!(
            again.status,
            StatusCode::CREATED,
            "replay as often as wanted"
        );
        assert_eq!(
            app.get(&format!("/api/v1/jobs/{id}"), &t.token).await.body,
            before,
            "old job untouched"
        );
        let entries = app.audit(&t.token, "action=job.replay").await;
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1]["metadata"]["new_job_id"], a.body["id"]);
        assert_eq!(entries[1]["metadata"]["state_before"], "canceled");
        assert_eq!(entries[2]["outcome"], "rejected");
        app.stop().await;
    }
}

#[tokio::test]
async fn bulk_replay_audits_each_job_plus_a_summary_and_dry_run_changes_nothing() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let jobs: Vec<serde_json::Value> = (0..25)
            .map(|i| json!({"queue": "q", "type": "t", "payload": {"i": i}}))
            .collect();
        let ids = app
            .post("/api/v1/jobs/batch", &t.token, Some(json!({"jobs": jobs})))
            .await
            .body["ids"]
            .as_array()
            .unwrap()
            .clone();
        for id in &ids[..20] {
            app.post(
                &format!("/api/v1/jobs/{}/cancel", id.as_str().unwrap()),
                &t.operator,
                None,
            )
            .await;
        }
        let before = app.audit(&t.token, "").await.len();
        let dry = app
            .post(
                "/api/v1/jobs/replay",
                &t.operator,
                Some(json!({"filter": {"state": "canceled"}, "dry_run": true})),
            )
            .await;
        assert_eq!(dry.status, StatusCode::OK, "{:?}", dry.body);
        assert_eq!(dry.body["count"], 20);
        assert_eq!(
            app.audit(&t.token, "").await.len(),
            before,
            "a dry run is not audited"
        );

        let r = app
            .post(
                "/api/v1/jobs/replay",
                &t.operator,
                Some(json!({"filter": {"state": "canceled"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["replayed"].as_array().unwrap().len(), 20);
        assert!(r.body["skipped"].as_array().unwrap().is_empty());
        let bulk_id = r.body["bulk_id"].as_str().unwrap();
        let per_job = app.audit(&t.token, "action=job.replay").await;
        assert_eq!(per_job.len(), 20);
        assert!(
            per_job
                .iter()
                .all(|e| e["metadata"]["bulk_id"] == bulk_id && e["outcome"] == "allowed")
        );
        let summary = app.audit(&t.token, "action=job.bulk_replay").await;
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0]["metadata"]["replayed"], 20);
        assert_eq!(summary[0]["target_id"], bulk_id);
        assert_eq!(app.audit(&t.token, "").await.len(), before + 21);
        // The filter covered only what matched on arrival: a second run finds the same 20
        // old jobs, not the 20 replays (which are available).
        let again = app
            .post(
                "/api/v1/jobs/replay",
                &t.operator,
                Some(json!({"filter": {"state": "canceled"}, "dry_run": true})),
            )
            .await;
        assert_eq!(again.body["count"], 20);

        // By ids: unknown, unparseable and non-terminal ids are skipped with their codes.
        let unknown = warden_core::names::JobId::new().to_string();
        let r = app
            .post(
                "/api/v1/jobs/replay",
                &t.operator,
                Some(json!({"ids": [ids[0], ids[24], unknown, "garbage"]})),
            )
            .await;
        let skipped: Vec<(String, String)> = r.body["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_owned(),
                    s["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(r.body["replayed"].as_array().unwrap().len(), 1);
        assert!(skipped.contains(&(
            ids[24].as_str().unwrap().to_owned(),
            "INVALID_STATE_TRANSITION".into()
        )));
        assert!(skipped.contains(&(unknown.clone(), "UNKNOWN_JOB_ID".into())));
        assert!(skipped.contains(&("garbage".into(), "UNKNOWN_JOB_ID".into())));
        let bad = app
            .post(
                "/api/v1/jobs/replay",
                &t.operator,
                Some(json!({"ids": [], "filter": {}})),
            )
            .await;
        assert_eq!(bad.code(), "VALIDATION_FAILED");
        let refused = app
            .audit(&t.token, "action=job.bulk_replay&outcome=rejected")
            .await;
        assert_eq!(refused.len(), 1, "a refused bulk request is audited once");
        app.stop().await;
    }
}
