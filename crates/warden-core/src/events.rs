//! The operational event stream's payloads (DESIGN.md §6). They are metadata-only by
//! construction: these types have no field that could hold a tenant id, an actor id, a
//! request id, an idempotency key, a payload, a query or a cursor.

use serde::{Deserialize, Serialize};

use crate::audit::AuditEntry;
use crate::jobs::JobState;
use crate::names::{AuditId, JobId, QueueName};
use crate::reason::ReasonCode;
use crate::time::Timestamp;

/// An operator-audit event, reduced to what outside consumers may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEvent {
    /// The entry's id (not the tenant's or the actor's).
    pub event_id: AuditId,
    /// When the entry was written.
    pub timestamp: Timestamp,
    /// e.g. `job.cancel`.
    pub action: String,
    /// `allowed` / `rejected`.
    pub outcome: String,
    /// Why rejected.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason_code: Option<ReasonCode>,
    /// The object acted on, as `kind:id` (a job id or queue name, never a person).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
}

/// A new signed checkpoint of a log — which log is not said (its origin names a tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckpointEvent {
    /// When it was cut.
    pub timestamp: Timestamp,
    /// The tree size it commits to.
    pub size: u64,
    /// The root, base64.
    pub root: String,
}

/// An alert raised — not whose log or which actor (the webhook, an operator's own
/// endpoint, gets those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertEvent {
    /// The rule, e.g. `bulk-replay` or `ledger.self_check`.
    pub rule: String,
    /// When it fired.
    pub timestamp: Timestamp,
    /// Entries counted in the rule's window (or the seq a self-check names).
    pub count: u64,
}

/// A job moved to a new state (one per timeline entry): not its tenant, payload, worker,
/// actor, idempotency key or error text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransitionEvent {
    /// When it moved.
    pub timestamp: Timestamp,
    /// Which job.
    pub job_id: JobId,
    /// The state it is in now.
    pub state: JobState,
    /// Its attempt count after the move.
    pub attempt: u32,
    /// Why, when the move has a code (e.g. `UPSTREAM_FAILED`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason_code: Option<ReasonCode>,
}

/// What happened to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueChange {
    /// It came into being (with its first job).
    Created,
    /// Leasing stopped.
    Paused,
    /// Leasing resumed.
    Resumed,
    /// Its concurrency or rate limits changed.
    Limits,
    /// Its retry defaults changed.
    Retry,
}

/// A queue changed: which queue (its name, an object's name like an audit target) and
/// how; not who changed it or why (the ledger has that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueueEvent {
    /// When.
    pub timestamp: Timestamp,
    /// The queue's name.
    pub queue: String,
    /// What changed.
    pub change: QueueChange,
}

impl QueueEvent {
    /// The event of `change` to `queue` at `timestamp`.
    pub fn new(queue: &QueueName, change: QueueChange, timestamp: Timestamp) -> Self {
        Self {
            timestamp,
            queue: queue.as_str().to_owned(),
            change,
        }
    }
}

impl AuditEvent {
    /// Reduce an entry to its event.
    pub fn from_entry(e: &AuditEntry) -> Self {
        Self {
            event_id: e.id,
            timestamp: e.created_at,
            action: e.action.clone(),
            outcome: e.outcome.as_str().to_owned(),
            reason_code: e.reason_code,
            target: match (&e.target_kind, &e.target_id) {
                (Some(k), Some(id)) if k != "token" && k != "client" && k != "address" => {
                    Some(format!("{k}:{id}"))
                }
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditDraft, Outcome, Target};
    use crate::names::TenantId;

    #[test]
    fn audit_events_carry_no_tenant_actor_request_or_token() {
        let entry = AuditDraft {
            tenant: TenantId::parse("acme-secret-tenant").unwrap(),
            actor: Actor::client("ops-bot-secret"),
            action: "job.cancel".into(),
            target: Some(Target::new("job", "j1")),
            outcome: Outcome::Allowed,
            reason_code: None,
            operator_reason: Some("reason-secret".into()),
            operator_ticket: Some("TICKET-999".into()),
            scope: None,
            source_ip: Some("10.9.8.7".into()),
            request_id: Some("request-secret".into()),
            token_id: Some("token-secret".into()),
            metadata: serde_json::json!({"idempotency_key": "idem-secret"}),
        }
        .into_entry(AuditId::new(), 0, Timestamp::from_micros(0));
        let json = serde_json::to_string(&AuditEvent::from_entry(&entry)).unwrap();
        for secret in [
            "acme-secret-tenant",
            "ops-bot-secret",
            "reason-secret",
            "TICKET-999",
            "10.9.8.7",
            "request-secret",
            "token-secret",
            "idem-secret",
        ] {
            assert!(!json.contains(secret), "{secret} leaked into {json}");
        }
        assert!(json.contains("\"target\":\"job:j1\""));
        // Unknown fields (e.g. a tenant smuggled in by a producer) are refused on decode.
        let smuggled = json.replacen('{', "{\"tenant\":\"acme\",", 1);
        assert!(serde_json::from_str::<AuditEvent>(&smuggled).is_err());
    }

    #[test]
    fn job_and_queue_events_hold_only_their_metadata() {
        let j = TransitionEvent {
            timestamp: Timestamp::from_micros(0),
            job_id: JobId::new(),
            state: JobState::DeadLetter,
            attempt: 3,
            reason_code: Some(ReasonCode::UpstreamFailed),
        };
        let v = serde_json::to_value(&j).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["attempt", "jobId", "reasonCode", "state", "timestamp"]
        );
        assert_eq!(v["state"], "dead_letter");
        let mut smuggled = v.clone();
        smuggled["tenant"] = "acme".into();
        assert!(serde_json::from_value::<TransitionEvent>(smuggled).is_err());
        let q = QueueEvent::new(
            &QueueName::parse("emails").unwrap(),
            QueueChange::Paused,
            Timestamp::from_micros(0),
        );
        let v = serde_json::to_value(&q).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["change", "queue", "timestamp"]);
        assert_eq!(v["change"], "paused");
        let mut smuggled = v;
        smuggled["actor"] = "client:ops".into();
        assert!(serde_json::from_value::<QueueEvent>(smuggled).is_err());
    }

    #[test]
    fn checkpoint_and_alert_events_hold_only_their_metadata() {
        let c = CheckpointEvent {
            timestamp: Timestamp::from_micros(0),
            size: 7,
            root: "cm9vdA==".into(),
        };
        let v = serde_json::to_value(&c).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["root", "size", "timestamp"]);
        let a = AlertEvent {
            rule: "bulk-replay".into(),
            timestamp: Timestamp::from_micros(0),
            count: 50,
        };
        let v = serde_json::to_value(&a).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["count", "rule", "timestamp"]);
        // Nothing else gets in on the way back either.
        assert!(
            serde_json::from_str::<AlertEvent>(
                r#"{"rule":"r","timestamp":"2026-01-01T00:00:00Z","count":1,"tenant":"acme"}"#
            )
            .is_err()
        );
    }
}
