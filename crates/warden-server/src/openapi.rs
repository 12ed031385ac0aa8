//! The OpenAPI 3.1 document, built from [`crate::routes::ROUTES`] so it describes exactly
//! the implemented routes (a test checks each one is served, and a snapshot pins it).

use serde_json::{Map, Value, json};
use warden_core::reason::ReasonCode;

use crate::routes::ROUTES;

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

fn query_params(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, desc: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": desc});
    let limit = json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}});
    match (method, path) {
        ("get", "/api/v1/jobs") => vec![
            q("queue", "Only this queue"),
            q("state", "Only this state"),
            q("type", "Only this type"),
            limit,
            q("cursor", "next_cursor of the previous page"),
        ],
        ("get", "/api/v1/queues") => vec![limit, q("cursor", "next_cursor of the previous page")],
        ("get", "/api/v1/audit") => vec![
            limit,
            q("cursor", "next_cursor of the previous page (a seq)"),
            q("actor", "Repeatable, e.g. client:ops-bot"),
            q("action", "Repeatable, e.g. job.cancel"),
            q("target", "The target's id or name"),
            q("ticket", "The warrant ticket"),
            q("outcome", "allowed or rejected"),
            q("since", "RFC 3339, inclusive"),
            q("until", "RFC 3339, exclusive"),
            q(
                "q",
                "Full text over reason, ticket and metadata: every word must occur",
            ),
        ],
        ("get", "/api/v1/audit/stats") | ("get", "/audit/operator/stats") => vec![
            q("since", "RFC 3339, inclusive"),
            q("until", "RFC 3339, exclusive"),
        ],
        ("get", "/api/v1/audit/proof/inclusion") => vec![
            q("seq", "The entry's seq (leaf index), required"),
            q("tree_size", "Default: the newest checkpoint's size"),
        ],
        ("get", "/api/v1/audit/proof/consistency") => vec![
            q("from", "The older tree size, required"),
            q("to", "Default: the newest checkpoint's size"),
        ],
        ("get", "/api/v1/audit/export") => vec![
            q(
                "format",
                "ndjson (default, verifiable offline), csv or json",
            ),
            q("since", "RFC 3339, inclusive"),
            q("until", "RFC 3339, exclusive"),
        ],
        ("get", "/audit/operator") => vec![
            limit,
            q("actor", "Repeatable"),
            q("action", "Repeatable"),
            q("since", "RFC 3339, inclusive"),
        ],
        _ => Vec::new(),
    }
}

/// The document served at `/api/v1/openapi.json`.
pub fn document(server_url: &str) -> Value {
    let mut paths = Map::new();
    for (method, path, scope, summary) in ROUTES {
        let mut params = path_params(path);
        params.extend(query_params(method, path));
        let mut op = json!({
            "summary": summary,
            "operationId": format!("{method}{}", path.replace(['/', '.', '-', '{', '}'], "_")),
            "responses": {
                "default": {"description": "An RFC 9457 problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        });
        let success = match (*method, *path) {
            ("post", "/api/v1/jobs") => {
                json!({"201": {"description": "Created"}, "200": {"description": "The existing job for a reused idempotency key"}})
            }
            ("post", "/api/v1/jobs/batch") | ("post", "/api/v1/jobs/{id}/replay") => {
                json!({"201": {"description": "Created"}})
            }
            _ => json!({"200": {"description": "OK"}}),
        };
        for (k, v) in success.as_object().expect("object") {
            op["responses"][k] = v.clone();
        }
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if *scope != "none" {
            op["security"] = json!([{"bearer": scope.split('|').collect::<Vec<_>>()}]);
        }
        let has_body = *method == "put"
            || *method == "patch"
            || (*method == "post"
                && path.starts_with("/api/v1/jobs")
                && !path.ends_with("/cancel")
                && !path.ends_with("}/replay"));
        if has_body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        if *path == "/oauth/token" {
            op["requestBody"] = json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]}, "scope": {"type": "string"},
                "client_id": {"type": "string"}, "client_secret": {"type": "string"},
                "operator_reason": {"type": "string"}, "operator_ticket": {"type": "string"},
                "quota_reason": {"type": "string"}, "quota_ticket": {"type": "string"},
                "backfill_reason": {"type": "string"}, "backfill_ticket": {"type": "string"}}, "required": ["grant_type"]}}}});
        }
        if path.starts_with("/audit/operator") {
            op["deprecated"] = json!(true);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Warden", "version": env!("CARGO_PKG_VERSION"), "description": "Job orchestrator with an accountable operator control plane."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Problem": {
                "type": "object",
                "required": ["type", "title", "status", "code", "detail", "request_id"],
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "code": {"type": "string", "enum": ReasonCode::ALL.iter().filter(|c| **c != ReasonCode::UpstreamFailed).map(|c| c.as_str()).collect::<Vec<_>>()},
                    "detail": {"type": "string"}, "request_id": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
                }
            }}
        }
    })
}
