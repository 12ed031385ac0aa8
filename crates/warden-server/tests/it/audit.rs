//! The audit API: filters, paging, tenant isolation, immutability, stats, legacy aliases.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::apps;

#[tokio::test]
async fn n_actions_make_n_entries_and_paging_yields_each_once_newest_first() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let other_ticket = app.operator_token(&t.admin, "OPS-7").await;
        let mut ticket_123 = 0;
        for i in 0..12 {
            let job = app.enqueue(&t.token, "q").await;
            let token = if i % 3 == 0 {
                &other_ticket
            } else {
                &t.operator
            };
            if i % 3 != 0 {
                ticket_123 += 1;
            }
            let a = app
                .post(
                    &format!("/api/v1/jobs/{}/cancel", job["id"].as_str().unwrap()),
                    token,
                    None,
                )
                .await;
            assert_eq!(a.status, StatusCode::OK);
        }
        let by_ticket = app
            .audit(&t.token, "ticket=TICKET-123&action=job.cancel")
            .await;
        assert_eq!(by_ticket.len(), ticket_123);
        assert!(
            by_ticket
                .iter()
                .all(|e| e["operator_ticket"] == "TICKET-123")
        );
        let all_cancels = app.audit(&t.token, "action=job.cancel").await;
        assert_eq!(all_cancels.len(), 12, "N actions, N entries");

        let mut seqs = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("/api/v1/audit?action=job.cancel&limit=5&cursor={c}"),
                None => "/api/v1/audit?action=job.cancel&limit=5".into(),
            };
            let page = app.get(&q, &t.token).await.body;
            seqs.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["seq"].as_u64().unwrap()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.into()),
                None => break,
            }
        }
        let mut sorted = seqs.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        sorted.dedup();
        assert_eq!(seqs, sorted, "newest first, each once");
        assert_eq!(seqs.len(), 12);

        // Repeated actor/action filters are OR-ed; other filters AND-ed.
        let both = app
            .audit(&t.token, "action=job.cancel&action=token.issue")
            .await;
        assert_eq!(both.len(), 14);
        let entry = &all_cancels[0];
        let by_target = app
            .audit(
                &t.token,
                &format!("target={}", entry["target_id"].as_str().unwrap()),
            )
            .await;
        assert_eq!(by_target.len(), 1);
        assert!(app.audit(&t.token, "outcome=rejected").await.is_empty());
        assert_eq!(
            app.audit(&t.token, "actor=client:admin&action=job.cancel")
                .await
                .len(),
            12
        );
        assert!(app.audit(&t.token, "actor=client:nobody").await.is_empty());
        let since = entry["created_at"].as_str().unwrap();
        let since_q = format!("since={since}&action=job.cancel");
        assert_eq!(
            app.audit(&t.token, &since_q.replace(':', "%3A"))
                .await
                .len(),
            1,
            "since is inclusive"
        );
        let until_q = format!("until={since}&action=job.cancel");
        assert_eq!(
            app.audit(&t.token, &until_q.replace(':', "%3A"))
                .await
                .len(),
            11,
            "until is exclusive"
        );

        let shown = app
            .get(
                &format!("/api/v1/audit/{}", entry["id"].as_str().unwrap()),
                &t.token,
            )
            .await;
        assert_eq!(shown.body, *entry);
        for bad in [
            "limit=0",
            "limit=1001",
            "outcome=maybe",
            "since=yesterday",
            "cursor=abc",
            "q=%2A%2A",
        ] {
            assert_eq!(
                app.get(&format!("/api/v1/audit?{bad}"), &t.token)
                    .await
                    .code(),
                "VALIDATION_FAILED",
                "{bad}"
            );
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn tenant_b_never_sees_tenant_a_and_acting_on_a_is_not_found() {
    for app in apps().await {
        let a = app.tenant("tenant-a").await;
        let b = app.tenant("tenant-b").await;
        let job = app.enqueue(&a.token, "a-queue").await;
        let id = job["id"].as_str().unwrap();
        app.post(&format!("/api/v1/jobs/{id}/cancel"), &a.operator, None)
            .await;
        let a_entry = app.audit(&a.token, "action=job.cancel").await[0].clone();

        assert!(
            app.get("/api/v1/jobs", &b.token).await.body["items"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(
            app.get("/api/v1/queues", &b.token).await.body["items"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            app.get(&format!("/api/v1/jobs/{id}"), &b.token)
                .await
                .code(),
            "UNKNOWN_JOB_ID"
        );
        assert_eq!(
            app.get("/api/v1/queues/a-queue", &b.token).await.code(),
            "UNKNOWN_QUEUE"
        );
        assert_eq!(
            app.get(
                &format!("/api/v1/audit/{}", a_entry["id"].as_str().unwrap()),
                &b.token
            )
            .await
            .code(),
            "UNKNOWN_AUDIT_ID"
        );
        let b_entries = app.audit(&b.token, "").await;
        assert!(
            b_entries.iter().all(|e| e["tenant"] == "tenant-b"),
            "{b_entries:?}"
        );
        assert!(
            app.audit(&b.token, "ticket=TICKET-123&action=job.cancel")
                .await
                .is_empty()
        );

        let r = app
            .post(&format!("/api/v1/jobs/{id}/replay"), &b.operator, None)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_JOB_ID")
        );
        let r = app
            .post("/api/v1/queues/a-queue/pause", &b.operator, None)
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_QUEUE")
        );
        let r = app
            .post(
                "/api/v1/jobs/replay",
                &b.operator,
                Some(json!({"ids": [id]})),
            )
            .await;
        assert_eq!(r.body["skipped"][0]["code"], "UNKNOWN_JOB_ID");
        // B's refusals are in B's log, none in A's.
        assert_eq!(
            app.audit(&b.token, "action=job.replay&outcome=rejected")
                .await
                .len(),
            1
        );
        assert!(app.audit(&a.token, "outcome=rejected").await.is_empty());
        // Sequence numbers are per tenant and gapless.
        let seqs: Vec<u64> = app
            .audit(&b.token, "")
            .await
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..seqs.len() as u64).rev().collect::<Vec<_>>());
        app.stop().await;
    }
}

#[tokio::test]
async fn any_write_to_the_audit_log_is_405_immutable() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let id = app.audit(&t.token, "").await[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for method in [Method::PUT, Method::PATCH, Method::DELETE, Method::POST] {
            for path in [
                "/api/v1/audit".to_owned(),
                format!("/api/v1/audit/{id}"),
                "/api/v1/audit/stats".into(),
                format!("/api/v1/audit/{id}/anything"),
            ] {
                let a = app
                    .send(
                        method.clone(),
                        &path,
                        Some(&t.operator),
                        Some(&json!({"actor": "x"})),
                    )
                    .await;
                assert_eq!(
                    (a.status, a.code()),
                    (StatusCode::METHOD_NOT_ALLOWED, "IMMUTABLE"),
                    "{method} {path}"
                );
                assert_eq!(a.headers["allow"], "GET");
            }
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn raw_sql_cannot_rewrite_the_audit_log() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let before = app.audit(&t.token, "").await;
        for sql in [
            "UPDATE audit_entries SET actor = 'client:mallory'",
            "DELETE FROM audit_entries",
            "UPDATE audit_leaves SET leaf_hash = leaf_hash",
            "DELETE FROM audit_leaves",
        ] {
            assert!(
                app.store.execute_raw(sql).await.is_err(),
                "{sql} refused on {:?}",
                app.backend
            );
        }
        assert_eq!(app.audit(&t.token, "").await, before);
        app.stop().await;
    }
}

#[tokio::test]
async fn stats_count_by_action_outcome_and_actor() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let job = app.enqueue(&t.token, "q").await;
        let path = format!("/api/v1/jobs/{}/cancel", job["id"].as_str().unwrap());
        app.post(&path, &t.operator, None).await;
        app.post(&path, &t.operator, None).await;
        let s = app.get("/api/v1/audit/stats", &t.token).await.body;
        // client.create (by the test's CLI actor), token.issue, job.cancel x2.
        assert_eq!(s["total"], 4, "{s}");
        assert_eq!(s["by_action"]["job.cancel"], 2);
        assert_eq!(s["by_outcome"]["rejected"], 1);
        assert_eq!(
            s["top_actors"][0],
            json!({"actor": "client:admin", "count": 3})
        );
        assert!(s["first_at"].is_string() && s["last_at"].is_string());
        assert_eq!(
            app.get("/api/v1/audit/stats?since=2999-01-01T00:00:00Z", &t.token)
                .await
                .body["total"],
            0
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn legacy_aliases_answer_with_deprecation_headers() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let a = app.get("/audit/operator?limit=5", &t.token).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body["items"].is_array());
        assert!(a.headers["deprecation"].to_str().unwrap().starts_with('@'));
        assert!(a.headers["sunset"].to_str().unwrap().ends_with("GMT"));
        assert_eq!(
            a.headers["link"],
            "</api/v1/audit>; rel=\"successor-version\""
        );
        let s = app.get("/audit/operator/stats", &t.token).await;
        assert_eq!(
            s.body["total"],
            app.get("/api/v1/audit/stats", &t.token).await.body["total"]
        );
        assert!(s.headers.contains_key("deprecation"));
        app.stop().await;
    }
}

#[tokio::test]
async fn q_searches_reason_ticket_and_metadata_within_seconds_of_the_action() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let job = app.enqueue(&t.token, "emails").await;
        let id = job["id"].as_str().unwrap();
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
            .await;
        assert_eq!(a.status, reqwest::StatusCode::OK, "[{b:?}]");
        // The leader's indexer runs every second.
        let mut found = Vec::new();
        for _ in 0..50 {
            found = app.audit(&t.token, "q=TICKET-123&action=job.cancel").await;
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(found.len(), 1, "[{b:?}] found by ticket");
        assert_eq!(found[0]["target_id"], id, "[{b:?}]");
        assert!(
            app.audit(&t.token, "q=nothing-like-this").await.is_empty(),
            "[{b:?}]"
        );
        let a = app.get("/api/v1/audit?q=%20-%20", &t.token).await;
        assert_eq!(a.code(), "VALIDATION_FAILED", "[{b:?}]");
        assert_eq!(a.body["errors"][0]["field"], "q", "[{b:?}]");
    }
}
