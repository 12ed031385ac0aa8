//! Schedules over HTTP: creation under `orch:admin` (audited), validation of cron and
//! zone, listing, and backfill under the `orch:backfill` warrant — idempotent, bounded,
//! audited, tenant-scoped.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::apps;

#[tokio::test]
async fn schedules_are_created_validated_listed_and_backfilled_under_their_warrants() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        let admin = app
            .token(&t.admin, &[("scope", "orch:read orch:admin")])
            .await;
        let body = json!({"cron": "0 9 * * mon-fri", "timezone": "Europe/Paris",
                          "queue": "reports", "type": "daily", "payload": {"x": 1}});

        // Scope first, then validation.
        let a = app
            .post("/api/v1/schedules", &t.token, Some(body.clone()))
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE")
        );
        for (bad, field) in [
            (
                json!({"cron": "61 * * * *", "queue": "q", "type": "t"}),
                "cron",
            ),
            (
                json!({"cron": "0 0 31 2 *", "queue": "q", "type": "t"}),
                "cron",
            ),
            (
                json!({"cron": "* * * * *", "timezone": "Mars/Base", "queue": "q", "type": "t"}),
                "timezone",
            ),
            (
                json!({"cron": "* * * * *", "queue": "bad queue!", "type": "t"}),
                "queue",
            ),
        ] {
            let a = app.post("/api/v1/schedules", &admin, Some(bad)).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
                "{:?}",
                a.body
            );
            assert_eq!(a.body["errors"][0]["field"], field, "{:?}", a.body);
        }
        let a = app.post("/api/v1/schedules", &admin, Some(body)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        let s = a.body.clone();
        let id = s["id"].as_str().unwrap().to_owned();
        assert_eq!(s["cron"], "0 9 * * mon-fri");
        assert_eq!(s["timezone"], "Europe/Paris");
        assert_eq!(s["type"], "daily");
        assert!(s["next_fire_at"].as_str().unwrap().ends_with('Z'));
        let list = app.get("/api/v1/schedules?limit=10", &t.token).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.body["items"], json!([s]));
        assert_eq!(list.body["next_cursor"], json!(null));

        // Backfill needs its own warrant; the operator warrant is not it.
        let refused = app
            .token_request(
                &t.admin,
                &[("scope", "orch:backfill"), ("backfill_reason", "outage")],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(
            refused.body["error_description"]
                .as_str()
                .unwrap()
                .contains("backfill_ticket")
        );
        let backfill = app
            .token(
                &t.admin,
                &[
                    ("scope", "orch:read orch:backfill"),
                    ("backfill_reason", "reports missed during the outage"),
                    ("backfill_ticket", "INC-42"),
                ],
            )
            .await;
        let path = format!("/api/v1/schedules/{id}/backfill");
        // Monday 2026-11-16 to Wednesday 2026-11-18, 09:00 Paris = 08:00 UTC.
        let range = json!({"from": "2026-11-16T00:00:00Z", "to": "2026-11-18T08:00:00Z"});
        let a = app.post(&path, &t.operator, Some(range.clone())).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE")
        );
        let a = app.post(&path, &backfill, Some(range.clone())).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let runs = a.body["runs"].as_array().unwrap().clone();
        let fires: Vec<&str> = runs
            .iter()
            .map(|r| r["fire_time"].as_str().unwrap())
            .collect();
        assert_eq!(
            fires,
            ["2026-11-16T08:00:00.000000Z", "2026-11-17T08:00:00.000000Z"],
            "[from, to): the 18th at 08:00 is excluded"
        );
        assert!(runs.iter().all(|r| r["created"] == true));
        let job = app
            .get(
                &format!("/api/v1/jobs/{}", runs[0]["job_id"].as_str().unwrap()),
                &t.token,
            )
            .await;
        assert_eq!(job.body["queue"], "reports");
        assert_eq!(job.body["run_at"], "2026-11-16T08:00:00.000000Z");
        assert_eq!(job.body["payload"], json!({"x": 1}));

        // Idempotent per (schedule, fire time).
        let a = app.post(&path, &backfill, Some(range)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.body["runs"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["created"] == false)
        );
        assert_eq!(a.body["runs"][0]["job_id"], runs[0]["job_id"]);

        // Bad ranges and unknown schedules change nothing.
        for (range, status, code) in [
            (
                json!({"from": "2026-11-18T00:00:00Z", "to": "2026-11-16T00:00:00Z"}),
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
            ),
            (
                json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}),
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
            ),
            (
                json!({"from": "yesterday", "to": "2026-11-16T00:00:00Z"}),
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
            ),
        ] {
            let a = app.post(&path, &backfill, Some(range)).await;
            assert_eq!((a.status, a.code()), (status, code), "{:?}", a.body);
        }
        let ok_range = json!({"from": "2026-11-16T00:00:00Z", "to": "2026-11-17T00:00:00Z"});
        for unknown in ["0190c1a0-0000-7000-8000-000000000000", "not-an-id"] {
            let a = app
                .post(
                    &format!("/api/v1/schedules/{unknown}/backfill"),
                    &backfill,
                    Some(ok_range.clone()),
                )
                .await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::NOT_FOUND, "UNKNOWN_SCHEDULE_ID")
            );
        }
        let jobs = app.get("/api/v1/jobs?queue=reports", &t.token).await;
        assert_eq!(
            jobs.body["items"].as_array().unwrap().len(),
            2,
            "nothing more was made"
        );

        // Another tenant neither sees nor backfills it.
        let other = app.tenant("globex").await;
        let other_bf = app
            .token(
                &other.admin,
                &[
                    ("scope", "orch:read orch:backfill"),
                    ("backfill_reason", "r"),
                    ("backfill_ticket", "INC-1"),
                ],
            )
            .await;
        let a = app.post(&path, &other_bf, Some(ok_range)).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_SCHEDULE_ID")
        );
        let list = app.get("/api/v1/schedules", &other.token).await;
        assert_eq!(list.body["items"], json!([]));

        // The trail: the create, the two refusals at scope, and each backfill attempt.
        let entries = app.audit(&t.token, "action=schedule.backfill").await;
        let outcomes: Vec<&str> = entries
            .iter()
            .map(|e| e["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(
            outcomes,
            [
                "rejected", "rejected", "rejected", "rejected", "rejected", "allowed", "allowed",
                "rejected"
            ],
            "newest first"
        );
        let allowed = &entries[5];
        assert_eq!(allowed["scope"], "orch:backfill");
        assert_eq!(
            allowed["operator_reason"],
            "reports missed during the outage"
        );
        assert_eq!(allowed["operator_ticket"], "INC-42");
        assert_eq!(allowed["target_kind"], "schedule");
        assert_eq!(allowed["target_id"], id.as_str());
        assert_eq!(allowed["metadata"]["created"], 0);
        let created = app.audit(&t.token, "action=schedule.create").await;
        assert_eq!(
            created.len(),
            6,
            "one refusal at scope, four at validation, one allowed"
        );
        assert_eq!(created[0]["outcome"], "allowed");
        assert_eq!(created[0]["target_id"], id.as_str());
        app.stop().await;
    }
}

#[tokio::test]
async fn an_operator_pauses_a_schedule_with_a_warrant_and_it_fires_again_only_when_resumed() {
    use warden_core::time::Timestamp;
    const MINUTE: i64 = 60_000_000;
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        let admin = app
            .token(&t.admin, &[("scope", "orch:read orch:admin")])
            .await;
        let a = app
            .post(
                "/api/v1/schedules",
                &admin,
                Some(json!({"cron": "* * * * *", "queue": "ticks", "type": "tick"})),
            )
            .await;
        let id = a.body["id"].as_str().unwrap().to_owned();
        assert_eq!(a.body["paused_at"], serde_json::Value::Null, "[{b:?}]");
        let pause = format!("/api/v1/schedules/{id}/pause");
        let resume = format!("/api/v1/schedules/{id}/resume");

        // Without a warrant, or for another tenant, nothing changes (and it is audited).
        let a = app.post(&pause, &t.token, None).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE"),
            "[{b:?}]"
        );
        let a = app.post(&pause, &other.operator, None).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "UNKNOWN_SCHEDULE_ID"),
            "[{b:?}]"
        );
        let a = app.post(&resume, &t.operator, None).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::CONFLICT, "INVALID_STATE_TRANSITION"),
            "[{b:?}] not paused"
        );

        let a = app.post(&pause, &t.operator, None).await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        assert!(a.body["paused_at"].is_string(), "[{b:?}]");
        assert_eq!(a.body["next_fire_at"], serde_json::Value::Null, "[{b:?}]");
        let a = app.post(&pause, &t.operator, None).await;
        assert_eq!(
            a.code(),
            "INVALID_STATE_TRANSITION",
            "[{b:?}] already paused"
        );

        // The scheduler, an hour on, produces nothing for a paused schedule.
        let later = Timestamp::from_micros(Timestamp::now().as_micros() + 60 * MINUTE);
        let report = app
            .store
            .fire_due_schedules(later, 24 * 60 * MINUTE)
            .await
            .unwrap();
        assert_eq!(report.created, 0, "[{b:?}] {report:?}");
        let jobs = app.get("/api/v1/jobs?queue=ticks", &t.token).await;
        assert_eq!(jobs.body["items"].as_array().unwrap().len(), 0, "[{b:?}]");

        // Resumed: from the next fire time after now, not the missed ones.
        let a = app.post(&resume, &t.operator, None).await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        assert_eq!(a.body["paused_at"], serde_json::Value::Null, "[{b:?}]");
        let next = Timestamp::parse_rfc3339(a.body["next_fire_at"].as_str().unwrap()).unwrap();
        assert!(next > Timestamp::now(), "[{b:?}]");
        assert!(
            next.as_micros() <= Timestamp::now().as_micros() + MINUTE,
            "[{b:?}]"
        );
        let report = app
            .store
            .fire_due_schedules(
                Timestamp::from_micros(next.as_micros() + 1),
                24 * 60 * MINUTE,
            )
            .await
            .unwrap();
        assert_eq!(report.created, 1, "[{b:?}] {report:?}");

        let entries = app.audit(&t.token, &format!("target={id}")).await;
        let actions: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("schedule.resume", "allowed"),
                ("schedule.pause", "rejected"),
                ("schedule.pause", "allowed"),
                ("schedule.resume", "rejected"),
                ("schedule.pause", "rejected"),
                ("schedule.create", "allowed"),
            ],
            "[{b:?}] newest first"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_admin_changes_and_deletes_a_schedule_audited_and_only_in_its_own_tenant() {
    use reqwest::Method;
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let other = app.tenant("globex").await;
        let admin = app
            .token(&t.admin, &[("scope", "orch:read orch:admin")])
            .await;
        let other_admin = app
            .token(&other.admin, &[("scope", "orch:read orch:admin")])
            .await;
        let a = app
            .post(
                "/api/v1/schedules",
                &admin,
                Some(json!({"cron": "0 9 * * *", "queue": "reports", "type": "daily", "payload": {"v": 1}})),
            )
            .await;
        let id = a.body["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/schedules/{id}");
        let shown = app.get(&path, &t.token).await;
        assert_eq!(shown.status, StatusCode::OK, "[{b:?}]");
        assert_eq!(shown.body, a.body, "[{b:?}] show is what create answered");

        // Read scope cannot change it; another tenant cannot see, change or delete it.
        let patch = |token: &str, body: serde_json::Value| {
            let (path, token) = (path.clone(), token.to_owned());
            let app = &app;
            async move {
                app.send(Method::PATCH, &path, Some(&token), Some(&body))
                    .await
            }
        };
        let a = patch(&t.token, json!({"cron": "0 10 * * *"})).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::FORBIDDEN, "FORBIDDEN_SCOPE"),
            "[{b:?}]"
        );
        for a in [
            app.get(&path, &other.token).await,
            patch(&other_admin, json!({"cron": "0 10 * * *"})).await,
            app.send(Method::DELETE, &path, Some(&other_admin), None)
                .await,
        ] {
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::NOT_FOUND, "UNKNOWN_SCHEDULE_ID"),
                "[{b:?}] {:?}",
                a.body
            );
        }
        // Bad input names its field and changes nothing.
        for (bad, field) in [
            (json!({"cron": "61 * * * *"}), "cron"),
            (json!({"timezone": "Mars/Base"}), "timezone"),
            (json!({"queue": "bad queue!"}), "queue"),
            (json!({}), "body"),
        ] {
            let a = patch(&admin, bad).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "VALIDATION_FAILED"),
                "[{b:?}] {:?}",
                a.body
            );
            assert_eq!(a.body["errors"][0]["field"], field, "[{b:?}] {:?}", a.body);
        }
        assert_eq!(app.get(&path, &t.token).await.body, shown.body, "[{b:?}]");

        // A new zone keeps the cron and moves the next fire time; other fields stay.
        let a = patch(
            &admin,
            json!({"timezone": "America/New_York", "queue": "nightly", "priority": 5}),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        assert_eq!(a.body["cron"], "0 9 * * *", "[{b:?}]");
        assert_eq!(a.body["timezone"], "America/New_York", "[{b:?}]");
        assert_eq!(a.body["queue"], "nightly", "[{b:?}]");
        assert_eq!(a.body["priority"], 5, "[{b:?}]");
        assert_eq!(a.body["type"], "daily", "[{b:?}]");
        assert_eq!(a.body["payload"], json!({"v": 1}), "[{b:?}]");
        assert_ne!(
            a.body["next_fire_at"], shown.body["next_fire_at"],
            "[{b:?}]"
        );
        assert_eq!(
            app.get(&path, &t.token).await.body,
            a.body,
            "[{b:?}] stored"
        );

        // Deleted: gone from show and list, and the entries say what it was.
        let a = app.send(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        assert_eq!(a.body["queue"], "nightly", "[{b:?}]");
        let gone = app.get(&path, &t.token).await;
        assert_eq!(gone.code(), "UNKNOWN_SCHEDULE_ID", "[{b:?}]");
        let list = app.get("/api/v1/schedules", &t.token).await;
        assert_eq!(list.body["items"], json!([]), "[{b:?}]");
        let again = app.send(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(again.code(), "UNKNOWN_SCHEDULE_ID", "[{b:?}]");

        let entries = app.audit(&t.token, &format!("target={id}")).await;
        let actions: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap(),
                    e["outcome"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("schedule.delete", "rejected"),
                ("schedule.delete", "allowed"),
                ("schedule.update", "allowed"),
                ("schedule.update", "rejected"),
                ("schedule.update", "rejected"),
                ("schedule.update", "rejected"),
                ("schedule.update", "rejected"),
                ("schedule.update", "rejected"),
                ("schedule.create", "allowed"),
            ],
            "[{b:?}] newest first"
        );
        let update = &entries[2]["metadata"];
        assert_eq!(update["before"]["timezone"], json!(null), "[{b:?}]");
        assert_eq!(update["after"]["timezone"], "America/New_York", "[{b:?}]");
        assert_eq!(update["before"]["queue"], "reports", "[{b:?}]");
        assert_eq!(update["payload_changed"], false, "[{b:?}]");
        assert_eq!(
            entries[1]["metadata"]["deleted"]["queue"], "nightly",
            "[{b:?}]"
        );
        app.stop().await;
    }
}
