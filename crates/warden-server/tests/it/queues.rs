//! Queues over HTTP.

use reqwest::StatusCode;

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
