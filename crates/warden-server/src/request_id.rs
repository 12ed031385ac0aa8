//! `x-request-id` on every response, and the last step of every error: rendering the
//! problem body, including for errors axum produces itself (unknown methods, body limits).

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use warden_core::reason::ReasonCode;

use crate::error::{ApiError, Problem, render_problem};

/// The request's id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Whether a client-supplied id is kept: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn is_acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Middleware: assign or keep the request id, render problems, set the header.
pub async fn middleware(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let under_audit = req.uri().path().starts_with("/api/v1/audit");
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;

    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(Problem(p)) => Some(p),
        None => match response.status() {
            // Axum answered by itself: a known route with another method, or a body limit.
            StatusCode::METHOD_NOT_ALLOWED => Some(if under_audit {
                ApiError {
                    allow: Some("GET"),
                    ..ApiError::new(
                        ReasonCode::Immutable,
                        "audit entries cannot be modified or deleted",
                    )
                }
            } else {
                ApiError::new(
                    ReasonCode::MethodNotAllowed,
                    "this route does not accept that method",
                )
            }),
            StatusCode::PAYLOAD_TOO_LARGE => Some(ApiError::new(
                ReasonCode::PayloadTooLarge,
                "request body is over the limit",
            )),
            _ => None,
        },
    };
    if let Some(p) = problem {
        if p.code == ReasonCode::MethodNotAllowed || p.code == ReasonCode::Immutable {
            // Keep axum's Allow header when it set one.
            let allow = response.headers().get(axum::http::header::ALLOW).cloned();
            render_problem(&p, &id, &mut response);
            if let Some(a) = allow {
                response.headers_mut().insert(axum::http::header::ALLOW, a);
            }
        } else {
            render_problem(&p, &id, &mut response);
        }
        if p.code.http_status() >= 500 {
            tracing::error!(request_id = %id, code = p.code.as_str(), "request failed");
        }
    }
    response.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_str(&id).expect("validated id"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_ids_are_kept_only_when_well_formed() {
        assert!(super::is_acceptable("abc-123_X.y"));
        assert!(!super::is_acceptable(""));
        assert!(!super::is_acceptable(&"a".repeat(65)));
        assert!(!super::is_acceptable("a b"));
        assert!(!super::is_acceptable("ä"));
    }
}
