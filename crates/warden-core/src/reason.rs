//! The closed set of reason codes (API.md §Errors). A code never changes meaning;
//! `detail` text may vary, `code` never does.

use serde::{Deserialize, Serialize};

/// A stable, low-cardinality reason code carried by every rejection and by some job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ReasonCode {
    Unauthenticated,
    ForbiddenScope,
    MissingOperatorReason,
    MissingOperatorTicket,
    MissingQuotaReason,
    MissingQuotaTicket,
    MissingBackfillReason,
    MissingBackfillTicket,
    InvalidTicketFormat,
    UnknownJobId,
    UnknownQueue,
    UnknownScheduleId,
    UnknownViewId,
    UnknownPolicyId,
    UnknownAuditId,
    UnknownExport,
    UnsupportedTarget,
    ValidationFailed,
    InvalidStateTransition,
    DuplicateExport,
    LeaseNotHeld,
    DuplicateJobId,
    IdempotencyConflict,
    UnknownRoute,
    MethodNotAllowed,
    UnsupportedMediaType,
    UpstreamFailed,
    QuotaExceeded,
    RateLimited,
    PayloadTooLarge,
    SignatureInvalid,
    Immutable,
    InternalError,
}

impl ReasonCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ReasonCode; 33] = [
        Self::Unauthenticated,
        Self::ForbiddenScope,
        Self::MissingOperatorReason,
        Self::MissingOperatorTicket,
        Self::MissingQuotaReason,
        Self::MissingQuotaTicket,
        Self::MissingBackfillReason,
        Self::MissingBackfillTicket,
        Self::InvalidTicketFormat,
        Self::UnknownJobId,
        Self::UnknownQueue,
        Self::UnknownScheduleId,
        Self::UnknownViewId,
        Self::UnknownPolicyId,
        Self::UnknownAuditId,
        Self::UnknownExport,
        Self::UnsupportedTarget,
        Self::ValidationFailed,
        Self::InvalidStateTransition,
        Self::DuplicateExport,
        Self::LeaseNotHeld,
        Self::DuplicateJobId,
        Self::IdempotencyConflict,
        Self::UnknownRoute,
        Self::MethodNotAllowed,
        Self::UnsupportedMediaType,
        Self::UpstreamFailed,
        Self::QuotaExceeded,
        Self::RateLimited,
        Self::PayloadTooLarge,
        Self::SignatureInvalid,
        Self::Immutable,
        Self::InternalError,
    ];

    /// The code as written on the wire, e.g. `UNKNOWN_JOB_ID`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::ForbiddenScope => "FORBIDDEN_SCOPE",
            Self::MissingOperatorReason => "MISSING_OPERATOR_REASON",
            Self::MissingOperatorTicket => "MISSING_OPERATOR_TICKET",
            Self::MissingQuotaReason => "MISSING_QUOTA_REASON",
            Self::MissingQuotaTicket => "MISSING_QUOTA_TICKET",
            Self::MissingBackfillReason => "MISSING_BACKFILL_REASON",
            Self::MissingBackfillTicket => "MISSING_BACKFILL_TICKET",
            Self::InvalidTicketFormat => "INVALID_TICKET_FORMAT",
            Self::UnknownJobId => "UNKNOWN_JOB_ID",
            Self::UnknownQueue => "UNKNOWN_QUEUE",
            Self::UnknownScheduleId => "UNKNOWN_SCHEDULE_ID",
            Self::UnknownViewId => "UNKNOWN_VIEW_ID",
            Self::UnknownPolicyId => "UNKNOWN_POLICY_ID",
            Self::UnknownAuditId => "UNKNOWN_AUDIT_ID",
            Self::UnknownExport => "UNKNOWN_EXPORT",
            Self::UnsupportedTarget => "UNSUPPORTED_TARGET",
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::InvalidStateTransition => "INVALID_STATE_TRANSITION",
            Self::DuplicateExport => "DUPLICATE_EXPORT",
            Self::LeaseNotHeld => "LEASE_NOT_HELD",
            Self::DuplicateJobId => "DUPLICATE_JOB_ID",
            Self::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Self::UnknownRoute => "UNKNOWN_ROUTE",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::UpstreamFailed => "UPSTREAM_FAILED",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::RateLimited => "RATE_LIMITED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::SignatureInvalid => "SIGNATURE_INVALID",
            Self::Immutable => "IMMUTABLE",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    /// Parse the wire form back into a code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status the code is answered with (`UPSTREAM_FAILED` is never an HTTP error;
    /// it maps to 409 only so the function is total).
    pub const fn http_status(self) -> u16 {
        match self {
            Self::Unauthenticated => 401,
            Self::ForbiddenScope => 403,
            Self::MissingOperatorReason
            | Self::MissingOperatorTicket
            | Self::MissingQuotaReason
            | Self::MissingQuotaTicket
            | Self::MissingBackfillReason
            | Self::MissingBackfillTicket
            | Self::InvalidTicketFormat
            | Self::UnsupportedTarget
            | Self::ValidationFailed
            | Self::SignatureInvalid => 400,
            Self::UnknownJobId
            | Self::UnknownQueue
            | Self::UnknownScheduleId
            | Self::UnknownViewId
            | Self::UnknownPolicyId
            | Self::UnknownAuditId
            | Self::UnknownExport
            | Self::UnknownRoute => 404,
            Self::InvalidStateTransition
            | Self::DuplicateExport
            | Self::LeaseNotHeld
            | Self::DuplicateJobId
            | Self::IdempotencyConflict
            | Self::UpstreamFailed => 409,
            Self::MethodNotAllowed | Self::Immutable => 405,
            Self::UnsupportedMediaType => 415,
            Self::QuotaExceeded | Self::RateLimited => 429,
            Self::PayloadTooLarge => 413,
            Self::InternalError => 500,
        }
    }

    /// A short human title for the problem document.
    pub fn title(self) -> String {
        let lower = self.as_str().replace('_', " ").to_lowercase();
        let mut chars = lower.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        }
    }

    /// The problem `type` URL: `https://warden.dev/errors/<code in kebab case>`.
    pub fn type_url(self) -> String {
        format!(
            "https://warden.dev/errors/{}",
            self.as_str().replace('_', "-").to_lowercase()
        )
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_form() {
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn type_url_ends_in_kebab_case_code() {
        assert_eq!(
            ReasonCode::MissingOperatorReason.type_url(),
            "https://warden.dev/errors/missing-operator-reason"
        );
        assert_eq!(
            ReasonCode::MissingOperatorReason.title(),
            "Missing operator reason"
        );
    }
}
