//! The one mapping from errors to HTTP: status, reason code and an RFC 9457 body.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` leaves a [`Problem`] in the response's
//! extensions, and the outermost middleware ([`crate::request_id`]) renders it with the
//! request id, so every problem body carries `request_id` equal to `x-request-id`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use warden_core::jobs::FieldError;
use warden_core::reason::ReasonCode;
use warden_store::{Rejection, StoreError};

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The stable code.
    pub code: ReasonCode,
    /// A human sentence; never internals for a 5xx.
    pub detail: String,
    /// Field errors for `VALIDATION_FAILED`.
    pub errors: Vec<FieldError>,
    /// Seconds for `Retry-After` (429).
    pub retry_after: Option<u64>,
    /// Methods for `Allow` (405).
    pub allow: Option<&'static str>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a code and detail.
    pub fn new(code: ReasonCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            allow: None,
        }
    }

    /// `400 VALIDATION_FAILED` naming one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::from(Rejection::field(field, message))
    }

    /// `400 VALIDATION_FAILED` naming several fields.
    pub fn fields(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(ReasonCode::ValidationFailed, detail)
        }
    }

    /// A `500 INTERNAL_ERROR`; the cause is logged, never sent.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ReasonCode::InternalError,
            "an internal error occurred; it has been logged with this request id",
        )
    }

    /// `401 UNAUTHENTICATED`.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(ReasonCode::Unauthenticated, detail)
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        Self {
            errors: r.errors,
            retry_after: r.retry_after,
            ..Self::new(r.code, r.detail)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(r) => r.into(),
            other => Self::internal(other),
        }
    }
}

/// The problem a response carries until the outer middleware renders it.
#[derive(Debug, Clone)]
pub struct Problem(pub ApiError);

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_url: String,
    title: String,
    status: u16,
    code: &'static str,
    detail: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(Problem(self));
        response
    }
}

/// Render the problem body (called by the request-id middleware).
pub fn render_problem(problem: &ApiError, request_id: &str, response: &mut Response) {
    let body = ProblemBody {
        type_url: problem.code.type_url(),
        title: problem.code.title(),
        status: problem.code.http_status(),
        code: problem.code.as_str(),
        detail: &problem.detail,
        request_id,
        errors: &problem.errors,
    };
    let bytes = serde_json::to_vec(&body).expect("problem serializes");
    *response.body_mut() = axum::body::Body::from(bytes);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.remove(header::CONTENT_LENGTH);
    if let Some(secs) = problem.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(allow) = problem.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if problem.code == ReasonCode::Unauthenticated {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"warden\", error=\"invalid_token\""),
        );
    }
}
