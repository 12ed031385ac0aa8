//! [`ClientError`]: what can go wrong talking to a Warden server.

use std::time::Duration;

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What the HTTP client reported.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an RFC 9457 problem.
    #[error("{code}: {detail} (HTTP {status}, request {request_id})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The problem's `code` (`LEASE_NOT_HELD`, `VALIDATION_FAILED`, …); `UNKNOWN` when
        /// the body was not a problem.
        code: String,
        /// The problem's `detail`, or the body when it was not a problem.
        detail: String,
        /// The problem's `request_id`, to find the server's log line.
        request_id: String,
        /// `Retry-After` of a 429, when given.
        retry_after: Option<Duration>,
    },
    /// The token endpoint refused (RFC 6749 §5.2).
    #[error("the authority refused a token: {error}: {description} (HTTP {status})")]
    Token {
        /// HTTP status.
        status: u16,
        /// `invalid_client`, `invalid_scope`, `invalid_request`, …
        error: String,
        /// `error_description`.
        description: String,
    },
    /// A success answer that does not have the documented shape.
    #[error("unexpected answer from {url}: {source}")]
    Decode {
        /// The URL requested.
        url: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The arguments cannot make a valid request (caught before sending).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// The server's reason code: the problem `code` of an API error, the OAuth `error` of
    /// a token refusal; `None` for transport and decoding failures.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::Token { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Token { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether sending the same request again later may succeed: the server was
    /// unreachable, overloaded (429) or failed (5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } | Self::Token { status, .. } => {
                *status == 429 || *status >= 500
            }
            Self::Decode { .. } | Self::Invalid(_) => false,
        }
    }
}

/// What the client's calls return.
pub type ClientResult<T> = Result<T, ClientError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.into(),
            detail: String::new(),
            request_id: "r".into(),
            retry_after: None,
        }
    }

    #[test]
    fn code_and_transience() {
        assert_eq!(api(409, "LEASE_NOT_HELD").code(), Some("LEASE_NOT_HELD"));
        assert!(!api(409, "LEASE_NOT_HELD").is_transient());
        assert!(api(429, "RATE_LIMITED").is_transient());
        assert!(api(503, "UNKNOWN").is_transient());
        assert_eq!(ClientError::Invalid("x".into()).code(), None);
    }
}
