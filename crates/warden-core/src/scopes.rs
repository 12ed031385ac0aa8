//! Scopes, roles and the warrant rules that tie an elevated scope to a reason and a ticket.

use std::sync::Arc;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::reason::ReasonCode;

/// An OAuth scope a token may carry. Deny by default: no scope implies another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Read jobs, queues and the audit log.
    #[serde(rename = "orch:read")]
    Read,
    /// Operator control actions (cancel, replay, pause, limits). Needs a warrant.
    #[serde(rename = "orch:operate")]
    Operate,
    /// Change tenant quotas. Needs a warrant.
    #[serde(rename = "orch:quota")]
    Quota,
    /// Backfill schedules. Needs a warrant.
    #[serde(rename = "orch:backfill")]
    Backfill,
    /// Worker protocol: enqueue, lease, finish.
    #[serde(rename = "orch:work")]
    Work,
    /// Administration (schedules, views, policies).
    #[serde(rename = "orch:admin")]
    Admin,
    /// Write run exports to the findings ledger.
    #[serde(rename = "orchestrator:exports:write")]
    ExportsWrite,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 7] = [
        Self::Read,
        Self::Operate,
        Self::Quota,
        Self::Backfill,
        Self::Work,
        Self::Admin,
        Self::ExportsWrite,
    ];

    /// The scope as written in tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "orch:read",
            Self::Operate => "orch:operate",
            Self::Quota => "orch:quota",
            Self::Backfill => "orch:backfill",
            Self::Work => "orch:work",
            Self::Admin => "orch:admin",
            Self::ExportsWrite => "orchestrator:exports:write",
        }
    }

    /// Parse one scope token.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Elevated scopes are short-lived and must be asked for explicitly.
    pub const fn is_elevated(self) -> bool {
        matches!(
            self,
            Self::Operate | Self::Quota | Self::Backfill | Self::Admin
        )
    }

    /// The warrant an elevated scope requires, if any.
    pub const fn warrant(self) -> Option<WarrantKind> {
        match self {
            Self::Operate => Some(WarrantKind::Operator),
            Self::Quota => Some(WarrantKind::Quota),
            Self::Backfill => Some(WarrantKind::Backfill),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes, as carried by a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Parse a space-separated scope string; unknown scopes are reported by name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(' ').filter(|p| !p.is_empty()) {
            let scope = Scope::parse(part).ok_or_else(|| part.to_owned())?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        out.sort();
        Ok(Self(out))
    }

    /// Build from scopes (deduplicated, sorted).
    pub fn from_scopes(scopes: impl IntoIterator<Item = Scope>) -> Self {
        let mut v: Vec<Scope> = scopes.into_iter().collect();
        v.sort();
        v.dedup();
        Self(v)
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Whether any scope in the set is elevated.
    pub fn any_elevated(&self) -> bool {
        self.0.iter().any(|s| s.is_elevated())
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = self.0.iter().map(|s| s.as_str()).collect();
        f.write_str(&parts.join(" "))
    }
}

/// A role a client holds; roles decide which scopes it may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Read-only.
    #[serde(rename = "Orch.Viewer")]
    Viewer,
    /// Read and operate.
    #[serde(rename = "Orch.Operator")]
    Operator,
    /// Every `orch:*` scope.
    #[serde(rename = "Orch.Admin")]
    Admin,
    /// The worker protocol.
    #[serde(rename = "Orch.Worker")]
    Worker,
    /// Run exports.
    #[serde(rename = "Orch.Exporter")]
    Exporter,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Self::Viewer,
        Self::Operator,
        Self::Admin,
        Self::Worker,
        Self::Exporter,
    ];

    /// The role's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "Orch.Viewer",
            Self::Operator => "Orch.Operator",
            Self::Admin => "Orch.Admin",
            Self::Worker => "Orch.Worker",
            Self::Exporter => "Orch.Exporter",
        }
    }

    /// Parse a role's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The scopes this role may ask for (DESIGN.md §5).
    pub fn allowed_scopes(self) -> &'static [Scope] {
        match self {
            Self::Viewer => &[Scope::Read],
            Self::Operator => &[Scope::Read, Scope::Operate],
            Self::Admin => &[
                Scope::Read,
                Scope::Operate,
                Scope::Quota,
                Scope::Backfill,
                Scope::Work,
                Scope::Admin,
            ],
            Self::Worker => &[Scope::Work],
            Self::Exporter => &[Scope::ExportsWrite],
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every scope any of `roles` allows.
pub fn scopes_allowed_by(roles: &[Role]) -> ScopeSet {
    ScopeSet::from_scopes(
        roles
            .iter()
            .flat_map(|r| r.allowed_scopes().iter().copied()),
    )
}

/// Which pair of warrant claims an elevated scope needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarrantKind {
    /// `operator_reason` / `operator_ticket` for `orch:operate`.
    Operator,
    /// `quota_reason` / `quota_ticket` for `orch:quota`.
    Quota,
    /// `backfill_reason` / `backfill_ticket` for `orch:backfill`.
    Backfill,
}

impl WarrantKind {
    /// The claim (and form field) carrying the reason.
    pub const fn reason_field(self) -> &'static str {
        match self {
            Self::Operator => "operator_reason",
            Self::Quota => "quota_reason",
            Self::Backfill => "backfill_reason",
        }
    }

    /// The claim (and form field) carrying the ticket.
    pub const fn ticket_field(self) -> &'static str {
        match self {
            Self::Operator => "operator_ticket",
            Self::Quota => "quota_ticket",
            Self::Backfill => "backfill_ticket",
        }
    }

    /// The code answered when the reason is missing.
    pub const fn missing_reason(self) -> ReasonCode {
        match self {
            Self::Operator => ReasonCode::MissingOperatorReason,
            Self::Quota => ReasonCode::MissingQuotaReason,
            Self::Backfill => ReasonCode::MissingBackfillReason,
        }
    }

    /// The code answered when the ticket is missing.
    pub const fn missing_ticket(self) -> ReasonCode {
        match self {
            Self::Operator => ReasonCode::MissingOperatorTicket,
            Self::Quota => ReasonCode::MissingQuotaTicket,
            Self::Backfill => ReasonCode::MissingBackfillTicket,
        }
    }
}

/// The raw warrant claims of a token (or fields of a token request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarrantClaims {
    /// Why the operator acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_reason: Option<String>,
    /// The operator's change ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_ticket: Option<String>,
    /// Why the quota changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_reason: Option<String>,
    /// The quota change ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_ticket: Option<String>,
    /// Why the backfill runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_reason: Option<String>,
    /// The backfill ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_ticket: Option<String>,
}

/// A checked warrant: a non-blank reason and a ticket matching the configured pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warrant {
    /// The reason, trimmed.
    pub reason: String,
    /// The ticket.
    pub ticket: String,
}

/// Why a warrant was refused: the code and the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {field}")]
pub struct WarrantError {
    /// `MISSING_…` or `INVALID_TICKET_FORMAT`.
    pub code: ReasonCode,
    /// The claim or form field at fault.
    pub field: &'static str,
}

/// The maximum length of a reason (longer ones are refused as blank-equivalent abuse).
pub const MAX_REASON_LEN: usize = 1024;

impl WarrantClaims {
    fn pair(&self, kind: WarrantKind) -> (Option<&str>, Option<&str>) {
        match kind {
            WarrantKind::Operator => (
                self.operator_reason.as_deref(),
                self.operator_ticket.as_deref(),
            ),
            WarrantKind::Quota => (self.quota_reason.as_deref(), self.quota_ticket.as_deref()),
            WarrantKind::Backfill => (
                self.backfill_reason.as_deref(),
                self.backfill_ticket.as_deref(),
            ),
        }
    }

    /// Check the warrant for `kind`: reason present and not blank, ticket present and matching.
    pub fn require(
        &self,
        kind: WarrantKind,
        tickets: &TicketPattern,
    ) -> Result<Warrant, WarrantError> {
        let (reason, ticket) = self.pair(kind);
        let reason = reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .ok_or(WarrantError {
                code: kind.missing_reason(),
                field: kind.reason_field(),
            })?;
        let ticket = ticket
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(WarrantError {
                code: kind.missing_ticket(),
                field: kind.ticket_field(),
            })?;
        if reason.len() > MAX_REASON_LEN || reason.chars().any(|c| c.is_control() && c != '\n') {
            return Err(WarrantError {
                code: kind.missing_reason(),
                field: kind.reason_field(),
            });
        }
        if !tickets.matches(ticket) {
            return Err(WarrantError {
                code: ReasonCode::InvalidTicketFormat,
                field: kind.ticket_field(),
            });
        }
        Ok(Warrant {
            reason: reason.to_owned(),
            ticket: ticket.to_owned(),
        })
    }
}

/// The configured pattern tickets must match (default `^[A-Za-z][A-Za-z0-9]*-[0-9]+$`).
#[derive(Debug, Clone)]
pub struct TicketPattern(Arc<Regex>);

impl TicketPattern {
    /// The default pattern, `PROJ-123` style.
    pub const DEFAULT: &'static str = r"^[A-Za-z][A-Za-z0-9]*-[0-9]+$";

    /// Compile a pattern; it is anchored at both ends if it is not already.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let mut p = pattern.to_owned();
        if !p.starts_with('^') {
            p.insert(0, '^');
        }
        if !p.ends_with('$') {
            p.push('$');
        }
        Regex::new(&p).map(|r| Self(Arc::new(r)))
    }

    /// Whether `ticket` matches (tickets are at most 128 characters).
    pub fn matches(&self, ticket: &str) -> bool {
        ticket.len() <= 128 && self.0.is_match(ticket)
    }
}

impl Default for TicketPattern {
    fn default() -> Self {
        Self::new(Self::DEFAULT).expect("default ticket pattern compiles")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_the_documented_scopes() {
        assert_eq!(scopes_allowed_by(&[Role::Viewer]).to_string(), "orch:read");
        assert_eq!(
            scopes_allowed_by(&[Role::Operator]).to_string(),
            "orch:read orch:operate"
        );
        let admin = scopes_allowed_by(&[Role::Admin]);
        assert!(admin.contains(Scope::Quota) && admin.contains(Scope::Backfill));
        assert!(!admin.contains(Scope::ExportsWrite));
    }

    #[test]
    fn scope_strings_parse_and_reject_unknown() {
        let s = ScopeSet::parse("orch:operate  orch:read orch:read").unwrap();
        assert_eq!(s.to_string(), "orch:read orch:operate");
        assert_eq!(
            ScopeSet::parse("orch:read orch:god"),
            Err("orch:god".to_owned())
        );
    }

    #[test]
    fn operator_warrant_needs_reason_and_well_formed_ticket() {
        let pat = TicketPattern::default();
        let mut w = WarrantClaims {
            operator_reason: Some("maintenance".into()),
            operator_ticket: Some("TICKET-123".into()),
            ..Default::default()
        };
        assert_eq!(
            w.require(WarrantKind::Operator, &pat).unwrap().ticket,
            "TICKET-123"
        );
        w.operator_ticket = Some("ticket 123".into());
        assert_eq!(
            w.require(WarrantKind::Operator, &pat).unwrap_err().code,
            ReasonCode::InvalidTicketFormat
        );
        w.operator_reason = Some("   ".into());
        assert_eq!(
            w.require(WarrantKind::Operator, &pat).unwrap_err(),
            WarrantError {
                code: ReasonCode::MissingOperatorReason,
                field: "operator_reason"
            }
        );
        assert_eq!(
            w.require(WarrantKind::Quota, &pat).unwrap_err().code,
            ReasonCode::MissingQuotaReason
        );
    }

    #[test]
    fn custom_ticket_patterns_are_anchored() {
        let pat = TicketPattern::new("[0-9]+").unwrap();
        assert!(pat.matches("123"));
        assert!(!pat.matches("x123"));
    }
}
