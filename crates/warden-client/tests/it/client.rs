//! The typed calls: tokens, problems with their codes, the lease/finish round trip.

use serde_json::json;
use warden_client::{Client, ClientError, Credentials, FinishItem, LeaseRequest, NewJob, Outcome};

use crate::helpers::TestServer;

#[tokio::test]
async fn bad_credentials_are_a_token_error() {
    for server in TestServer::all().await {
        let e = Client::connect(
            &server.url,
            Credentials::new(server.credentials.client_id.clone(), "wrong"),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ClientError::Token { status: 401, .. }), "{e}");
        assert_eq!(e.code(), Some("invalid_client"));
        server.stop().await;
    }
}

#[tokio::test]
async fn problems_carry_the_server_code() {
    for server in TestServer::all().await {
        let client = server.client().await;
        let e = client.queue("never-existed").await.unwrap_err();
        assert_eq!(e.code(), Some("UNKNOWN_QUEUE"), "{e}");
        assert_eq!(e.status(), Some(404));
        let e = client
            .lease(&LeaseRequest {
                agent_id: "a1".into(),
                queues: vec!["not a queue!".into()],
                types: None,
                max_jobs: 1,
                lease_seconds: 30,
                wait_ms: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("VALIDATION_FAILED"), "{e}");
        // A token without `orch:read` on a read route.
        let e = client
            .with_scope("orch:admin")
            .queue("q")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("FORBIDDEN_SCOPE"), "{e}");
        assert_eq!(e.status(), Some(403));
        // A scope the authority does not know: refused at the token endpoint.
        let e = client
            .with_scope("orch:bogus")
            .queue("q")
            .await
            .unwrap_err();
        assert!(matches!(e, ClientError::Token { status: 400, .. }), "{e}");
        assert_eq!(e.code(), Some("invalid_scope"), "{e}");
        server.stop().await;
    }
}

#[tokio::test]
async fn lease_heartbeat_and_finish_by_hand() {
    for server in TestServer::all().await {
        let client = server.client().await;
        let ids = client
            .enqueue_batch(&[
                NewJob::new("manual", "t", json!({"n": 1})),
                NewJob::new("manual", "t", json!({"n": 2})),
                NewJob::new("manual", "t", json!({"n": 3})),
            ])
            .await
            .unwrap();
        assert_eq!(ids.len(), 3);
        client
            .agent_heartbeat("hand-1", &["manual".into()], &[], Some("test"))
            .await
            .unwrap();
        let jobs = client
            .lease(&LeaseRequest {
                agent_id: "hand-1".into(),
                queues: vec!["manual".into()],
                types: Some(vec!["t".into()]),
                max_jobs: 10,
                lease_seconds: 30,
                wait_ms: 0,
            })
            .await
            .unwrap();
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert!(jobs.iter().all(|j| j.attempt == 1 && j.queue == "manual"));
        client
            .heartbeat(&jobs[0].id, &jobs[0].lease_id)
            .await
            .unwrap();
        let e = client
            .heartbeat(&jobs[0].id, "not-the-lease")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("LEASE_NOT_HELD"), "{e}");

        let done = client
            .complete(&jobs[0].id, &jobs[0].lease_id, Some(json!({"ok": 1})))
            .await
            .unwrap();
        assert_eq!(done.state, "succeeded");
        let failed = client
            .fail(&jobs[1].id, &jobs[1].lease_id, "nope", false)
            .await
            .unwrap();
        assert_eq!(failed.state, "dead_letter", "{failed:?}");
        let outcomes = client
            .finish(&[
                FinishItem {
                    id: jobs[2].id.clone(),
                    lease_id: jobs[2].lease_id.clone(),
                    outcome: Outcome::Complete { result: None },
                },
                // Already finished: refused, and the rest of the batch still counts.
                FinishItem {
                    id: jobs[0].id.clone(),
                    lease_id: jobs[0].lease_id.clone(),
                    outcome: Outcome::Complete { result: None },
                },
            ])
            .await
            .unwrap();
        assert!(outcomes[0].ok);
        assert!(!outcomes[1].ok);
        assert_eq!(outcomes[1].code.as_deref(), Some("LEASE_NOT_HELD"));
        let q = client.queue("manual").await.unwrap();
        assert_eq!(q.count("succeeded"), 2, "{q:?}");
        assert_eq!(q.count("dead_letter"), 1, "{q:?}");
        server.stop().await;
    }
}
