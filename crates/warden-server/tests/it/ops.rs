//! Health, readiness, metrics and the OpenAPI document.

use reqwest::{Method, StatusCode};
use warden_server::routes::ROUTES;

use crate::helpers::{TestApp, apps};

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    for app in apps().await {
        let t = app.tenant("acme").await;
        assert_eq!(
            app.send(Method::GET, "/healthz", None, None).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.send(Method::GET, "/readyz", None, None).await.body["status"],
            "ready"
        );
        let job = app.enqueue(&t.token, "q").await;
        app.post(
            &format!("/api/v1/jobs/{}/cancel", job["id"].as_str().unwrap()),
            &t.operator,
            None,
        )
        .await;
        let m = app.send(Method::GET, "/metrics", None, None).await;
        let text = m.body.as_str().unwrap();
        assert!(
            text.contains(
                "warden_audit_entries_total{action=\"job.cancel\",outcome=\"allowed\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("warden_tokens_issued_total{scope=\"orch:operate\"} 1"));
        assert!(text.contains("warden_http_requests_total{route=\"/api/v1/jobs/{id}/cancel\",method=\"POST\",status=\"200\"} 1"));
        assert!(text.contains("warden_http_request_duration_seconds_bucket{route=\"/api/v1/jobs\",method=\"POST\",le=\"+Inf\"} 1"));
        app.stop().await;
    }
}

#[tokio::test]
async fn openapi_describes_exactly_the_served_routes() {
    let db = warden_store::testing::TestDb::sqlite();
    let app = TestApp::spawn(db).await;
    let doc = app
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented += 1;
            let concrete = path
                .replace("{id}", "01a20000-0000-7000-8000-000000000000")
                .replace("{name}", "q");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = app.send(m, &concrete, None, None).await;
            assert_ne!(
                a.code(),
                "UNKNOWN_ROUTE",
                "{method} {path} is documented but not served"
            );
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        }
    }
    assert_eq!(documented, ROUTES.len());
    let mut doc = doc;
    doc["servers"][0]["url"] = "http://127.0.0.1:8080".into();
    insta::assert_json_snapshot!("openapi", doc);
    app.stop().await;
}
