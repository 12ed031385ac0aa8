//! Audit entries: the immutable record of one operator action attempt, and the exact
//! bytes (RFC 8785) and leaf hash (RFC 9162 §2.1) the ledger keeps for it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::canonical::{CanonicalError, to_canonical_string};
use crate::names::{AuditId, TenantId};
use crate::reason::ReasonCode;
use crate::scopes::Scope;
use crate::time::Timestamp;

/// Whether the attempt was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action happened, in the same transaction as this entry.
    Allowed,
    /// The action was refused; the entry says why.
    Rejected,
}

impl Outcome {
    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Rejected => "rejected",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allowed" => Some(Self::Allowed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// Who acted: a client, a person, the operator's CLI, or Warden itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    /// `client`, `user`, `cli` or `system`.
    pub kind: ActorKind,
    /// The client name, username, OS user or subsystem.
    pub name: String,
}

/// The kind of actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// An OAuth client.
    Client,
    /// A person using the dashboard.
    User,
    /// The `warden` CLI working on the store directly.
    Cli,
    /// Warden itself (e.g. the authentication-failure aggregator).
    System,
    /// A subject from an external issuer.
    External,
}

impl ActorKind {
    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::User => "user",
            Self::Cli => "cli",
            Self::System => "system",
            Self::External => "external",
        }
    }
}

impl Actor {
    /// `client:<name>`.
    pub fn client(name: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::Client,
            name: name.into(),
        }
    }

    /// The `kind:name` spelling used in entries and filters.
    pub fn display(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// What an entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `job`, `queue`, `quota`, `token`, `schedule`, `view`, `policy`, `bulk`, `client`, `address`.
    pub kind: &'static str,
    /// The object's id or name.
    pub id: String,
}

impl Target {
    /// A target.
    pub fn new(kind: &'static str, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }
}

/// Everything about an attempt that the pipeline knows before the store numbers it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    /// The tenant whose log receives the entry.
    pub tenant: TenantId,
    /// Who acted.
    pub actor: Actor,
    /// Lower-case dotted action name, e.g. `job.cancel`.
    pub action: String,
    /// The object acted on, when there is one.
    pub target: Option<Target>,
    /// Allowed or rejected.
    pub outcome: Outcome,
    /// Why it was rejected.
    pub reason_code: Option<ReasonCode>,
    /// The warrant's reason (of the scope the action required).
    pub operator_reason: Option<String>,
    /// The warrant's ticket.
    pub operator_ticket: Option<String>,
    /// The scope the action required.
    pub scope: Option<Scope>,
    /// The peer address (or the first untrusted hop behind trusted proxies).
    pub source_ip: Option<String>,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    /// The token's `jti`.
    pub token_id: Option<String>,
    /// Action-specific details; strings, booleans, safe integers, arrays and objects only.
    pub metadata: serde_json::Value,
}

impl AuditDraft {
    /// An allowed action by `actor` with no warrant, request or metadata yet (work done by
    /// Warden itself or the CLI; HTTP actions fill in the rest from the request).
    pub fn new(tenant: TenantId, actor: Actor, action: impl Into<String>) -> Self {
        Self {
            tenant,
            actor,
            action: action.into(),
            target: None,
            outcome: Outcome::Allowed,
            reason_code: None,
            operator_reason: None,
            operator_ticket: None,
            scope: None,
            source_ip: None,
            request_id: None,
            token_id: None,
            metadata: serde_json::json!({}),
        }
    }

    /// The same draft, rejected with `code` (used when the action itself fails validation).
    pub fn rejected(mut self, code: ReasonCode) -> Self {
        self.outcome = Outcome::Rejected;
        self.reason_code = Some(code);
        self
    }

    /// Number the draft: give it its id, time and `seq`, producing the entry.
    pub fn into_entry(self, id: AuditId, seq: u64, created_at: Timestamp) -> AuditEntry {
        AuditEntry {
            id,
            seq,
            tenant: self.tenant.as_str().to_owned(),
            created_at,
            actor: self.actor.display(),
            actor_kind: self.actor.kind.as_str().to_owned(),
            action: self.action,
            target_id: self.target.as_ref().map(|t| t.id.clone()),
            target_kind: self.target.map(|t| t.kind.to_owned()),
            outcome: self.outcome,
            reason_code: self.reason_code,
            operator_reason: self.operator_reason,
            operator_ticket: self.operator_ticket,
            scope: self.scope.map(|s| s.as_str().to_owned()),
            source_ip: self.source_ip,
            request_id: self.request_id,
            token_id: self.token_id,
            metadata: self.metadata,
        }
    }
}

/// An audit entry exactly as served by `GET /api/v1/audit/{id}` (without `leaf_hash`) and
/// hashed into the ledger. Every field is always present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The entry's id.
    pub id: AuditId,
    /// Gapless position in the tenant's log (the leaf index).
    pub seq: u64,
    /// The tenant.
    pub tenant: String,
    /// When the entry was written.
    pub created_at: Timestamp,
    /// `client:<name>`, `user:<name>`, `cli:<os user>`, `system:<subsystem>`.
    pub actor: String,
    /// The actor's kind.
    pub actor_kind: String,
    /// e.g. `job.cancel`.
    pub action: String,
    /// The object's id or name.
    pub target_id: Option<String>,
    /// The object's kind.
    pub target_kind: Option<String>,
    /// Allowed or rejected.
    pub outcome: Outcome,
    /// Why rejected.
    pub reason_code: Option<ReasonCode>,
    /// The warrant's reason.
    pub operator_reason: Option<String>,
    /// The warrant's ticket.
    pub operator_ticket: Option<String>,
    /// The scope the action required.
    pub scope: Option<String>,
    /// Where the request came from.
    pub source_ip: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// The token's `jti`.
    pub token_id: Option<String>,
    /// Action-specific details.
    pub metadata: serde_json::Value,
}

/// Why an entry could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditEncodeError {
    /// Metadata held a value the ledger refuses (a float, or an integer beyond ±2^53).
    #[error("metadata at {path} is not a string, boolean, safe integer, array or object")]
    UnsafeMetadata {
        /// Where in the metadata.
        path: String,
    },
    /// Canonicalization failed.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// Largest integer magnitude metadata may hold, so its canonical form is unambiguous.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

fn check_metadata(value: &serde_json::Value, path: &mut String) -> Result<(), AuditEncodeError> {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
        Value::Number(n) => {
            let safe = n.as_u64().is_some_and(|u| u <= MAX_SAFE_INTEGER)
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER);
            if safe {
                Ok(())
            } else {
                Err(AuditEncodeError::UnsafeMetadata { path: path.clone() })
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_metadata(v, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_metadata(v, path)?;
                path.truncate(len);
            }
            Ok(())
        }
    }
}

impl AuditEntry {
    /// The RFC 8785 canonical text of the entry: what the ledger stores and hashes.
    pub fn canonical(&self) -> Result<String, AuditEncodeError> {
        check_metadata(&self.metadata, &mut String::from("metadata"))?;
        let value = serde_json::to_value(self).expect("audit entries always serialize");
        Ok(to_canonical_string(&value)?)
    }

    /// Parse an entry back from its canonical text (as stored).
    pub fn from_canonical(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// A draft encoded before its place in the log is known: the entry and its canonical text
/// with a placeholder `seq` and `created_at`, and where in the text those two values sit.
///
/// Encoding is most of an append's CPU work (serializing, sorting members, escaping), and
/// `seq` and `created_at` are only known once the tenant's log is locked. Encoding first and
/// splicing the two values in under the lock ([`EncodedDraft::place`]) keeps that work out
/// of the time the log (and, on SQLite, the one writer) is held. The splice is exact: the
/// canonical form of an integer is its decimal digits, and a timestamp's RFC 3339 text has
/// nothing JSON escapes, so the result is byte for byte [`AuditEntry::canonical`] of the
/// placed entry.
#[derive(Debug, Clone)]
pub struct EncodedDraft {
    entry: AuditEntry,
    canonical: String,
    /// Byte ranges of the `created_at` and `seq` values (`created_at` sorts first), when the
    /// canonical text was checked member by member; otherwise [`EncodedDraft::place`]
    /// encodes again.
    slots: Option<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl AuditDraft {
    /// Encode the draft as entry `id`, to be placed in the log later. Refuses what
    /// [`AuditEntry::canonical`] refuses.
    pub fn encode(self, id: AuditId) -> Result<EncodedDraft, AuditEncodeError> {
        let entry = self.into_entry(id, 0, Timestamp::UNIX_EPOCH);
        let canonical = entry.canonical()?;
        let slots = slots(&canonical);
        Ok(EncodedDraft {
            entry,
            canonical,
            slots,
        })
    }
}

/// Where the `created_at` and `seq` values sit in an entry's canonical text.
fn slots(text: &str) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let members = crate::canonical::canonical_members(text)?;
    let range = |key: &[u8]| {
        let (_, value) = members.iter().find(|(k, _)| *k == key)?;
        let start = value.as_ptr() as usize - text.as_ptr() as usize;
        Some(start..start + value.len())
    };
    range(b"created_at").zip(range(b"seq"))
}

impl EncodedDraft {
    /// The tenant whose log the entry goes to.
    pub fn tenant(&self) -> &str {
        &self.entry.tenant
    }

    /// The entry at position `seq`, written at `created_at`, with its canonical text.
    pub fn place(
        self,
        seq: u64,
        created_at: Timestamp,
    ) -> Result<(AuditEntry, String), AuditEncodeError> {
        let EncodedDraft {
            mut entry,
            canonical,
            slots,
        } = self;
        entry.seq = seq;
        entry.created_at = created_at;
        let Some((time, number)) = slots else {
            let canonical = entry.canonical()?;
            return Ok((entry, canonical));
        };
        let mut out = String::with_capacity(canonical.len() + 32);
        out.push_str(&canonical[..time.start]);
        out.push('"');
        out.push_str(&created_at.to_rfc3339());
        out.push('"');
        out.push_str(&canonical[time.end..number.start]);
        // Sequence numbers stay far below 2^53, where JCS writes integers digit for digit.
        write!(out, "{seq}").expect("writing to a String cannot fail");
        out.push_str(&canonical[number.end..]);
        debug_assert_eq!(Some(&out), entry.canonical().ok().as_ref());
        Ok((entry, out))
    }
}

/// A leaf hash: `SHA-256(0x00 ‖ bytes)` (RFC 9162 §2.1), computed by the ledger crate.
pub fn leaf_hash(canonical: &[u8]) -> [u8; 32] {
    warden_ledger::hash::leaf_hash(canonical)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn draft() -> AuditDraft {
        AuditDraft {
            tenant: TenantId::parse("acme").unwrap(),
            actor: Actor::client("ops-bot"),
            action: "job.cancel".into(),
            target: Some(Target::new("job", "j1")),
            outcome: Outcome::Allowed,
            reason_code: None,
            operator_reason: Some("maintenance".into()),
            operator_ticket: Some("TICKET-123".into()),
            scope: Some(Scope::Operate),
            source_ip: Some("127.0.0.1".into()),
            request_id: Some("r1".into()),
            token_id: Some("t1".into()),
            metadata: serde_json::json!({"state_before": "available", "n": 3}),
        }
    }

    #[test]
    fn entry_serializes_every_field_and_hashes_its_canonical_bytes() {
        let id = AuditId::parse("019a0000-0000-7000-8000-000000000000").unwrap();
        let e = draft().into_entry(id, 41, Timestamp::from_micros(0));
        let text = e.canonical().unwrap();
        assert!(text.starts_with(r#"{"action":"job.cancel","actor":"client:ops-bot","actor_kind":"client","created_at":"1970-01-01T00:00:00.000000Z","id":"019a0000-0000-7000-8000-000000000000","metadata":{"n":3,"state_before":"available"}"#), "{text}");
        assert!(text.contains(r#""reason_code":null"#));
        assert_eq!(AuditEntry::from_canonical(&text).unwrap(), e);
        let mut prefixed = vec![0u8];
        prefixed.extend_from_slice(text.as_bytes());
        assert_eq!(
            leaf_hash(text.as_bytes()),
            <[u8; 32]>::from(Sha256::digest(&prefixed))
        );
    }

    #[test]
    fn unsafe_metadata_is_refused() {
        let id = AuditId::new();
        let mut d = draft();
        d.metadata = serde_json::json!({"x": [1.5]});
        let err = d
            .into_entry(id, 0, Timestamp::from_micros(0))
            .canonical()
            .unwrap_err();
        assert!(err.to_string().contains("metadata.x[0]"), "{err}");
        let mut d = draft();
        d.metadata = serde_json::json!({"big": 9_007_199_254_740_993u64});
        assert!(
            d.into_entry(id, 0, Timestamp::from_micros(0))
                .canonical()
                .is_err()
        );
    }

    #[test]
    fn an_encoded_draft_placed_later_is_the_entry_encoded_in_place() {
        let id = AuditId::new();
        for (seq, at) in [
            (0, Timestamp::from_micros(0)),
            (41, Timestamp::from_micros(1_765_000_000_123_456)),
            ((1 << 53) - 1, Timestamp::MAX_RFC3339),
        ] {
            let (entry, text) = draft().encode(id).unwrap().place(seq, at).unwrap();
            assert_eq!(entry, draft().into_entry(id, seq, at));
            assert_eq!(text, entry.canonical().unwrap());
        }
    }

    proptest::proptest! {
        #[test]
        fn placing_matches_encoding_in_place_for_any_metadata(
            seq in 0u64..(1 << 53),
            at in Timestamp::MIN_RFC3339.as_micros()..=Timestamp::MAX_RFC3339.as_micros(),
            keys in proptest::collection::vec("[a-z_\"\\\\\u{1}-\u{1f}\u{e000}-\u{10ffff}]{0,8}", 0..6),
            text in "\\PC{0,16}",
            n in -(1i64 << 53) + 1..(1i64 << 53),
        ) {
            let mut d = draft();
            let mut meta = serde_json::Map::new();
            for (i, k) in keys.into_iter().enumerate() {
                meta.insert(k, if i % 2 == 0 { text.clone().into() } else { n.into() });
            }
            meta.insert("seq".into(), serde_json::json!({"created_at": text, "seq": n}));
            d.metadata = serde_json::Value::Object(meta);
            d.operator_reason = Some(text.clone());
            let id = AuditId::new();
            let at = Timestamp::from_micros(at);
            let (entry, placed) = d.clone().encode(id).unwrap().place(seq, at).unwrap();
            let direct = d.into_entry(id, seq, at);
            proptest::prop_assert_eq!(&entry, &direct);
            proptest::prop_assert_eq!(placed, direct.canonical().unwrap());
        }
    }
}
