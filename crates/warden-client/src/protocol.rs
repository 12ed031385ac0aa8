//! Request and answer types of the routes the client speaks (API.md §Jobs and queues,
//! §Workers). Answers ignore fields they do not know, so a newer server does not break an
//! older client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most jobs one lease request may take (the server's limit).
pub const MAX_LEASE_JOBS: u32 = 1_000;
/// The longest long-poll the server accepts, in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;
/// The most items one finish request may carry (the server's limit).
pub const MAX_FINISH_ITEMS: usize = 10_000;
/// The most jobs one batch enqueue may carry (the server's limit).
pub const MAX_BATCH_JOBS: usize = 10_000;

/// `POST /api/v1/leases`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The worker's id; the lease registers it.
    pub agent_id: String,
    /// Queues to claim from (1 to 100).
    pub queues: Vec<String>,
    /// Only these job types, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// At most this many jobs (1 to [`MAX_LEASE_JOBS`]).
    pub max_jobs: u32,
    /// Lease duration; a heartbeat extends by the same.
    pub lease_seconds: u32,
    /// Wait up to this long for work when none is available (0 to [`MAX_WAIT_MS`]).
    pub wait_ms: u64,
}

/// A leased job, as a lease answers it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// The lease to present when heartbeating or finishing.
    pub lease_id: String,
    /// Its queue.
    #[serde(default)]
    pub queue: String,
    /// Its type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Its payload.
    pub payload: Value,
    /// This attempt's number (1 for the first lease).
    pub attempt: u32,
    /// When the lease runs out unless extended (RFC 3339).
    #[serde(default)]
    pub lease_expires_at: Option<String>,
}

/// The answer of a lease request.
#[derive(Debug, Deserialize)]
pub(crate) struct Leased {
    pub jobs: Vec<Job>,
}

/// How a job ended, for [`FinishItem`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success, with an optional result.
    Complete {
        /// The result stored on the job.
        result: Option<Value>,
    },
    /// Failure; retried while attempts remain if `retryable`.
    Fail {
        /// What went wrong (at most 16 KiB).
        error: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
}

/// One item of `POST /api/v1/jobs/finish`.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishItem {
    /// The job.
    pub id: String,
    /// The lease held.
    pub lease_id: String,
    /// The outcome.
    pub outcome: Outcome,
}

impl Serialize for FinishItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("lease_id", &self.lease_id)?;
        match &self.outcome {
            Outcome::Complete { result } => {
                m.serialize_entry("outcome", "complete")?;
                if let Some(r) = result {
                    m.serialize_entry("result", r)?;
                }
            }
            Outcome::Fail { error, retryable } => {
                m.serialize_entry("outcome", "fail")?;
                m.serialize_entry("error", error)?;
                m.serialize_entry("retryable", retryable)?;
            }
        }
        m.end()
    }
}

impl FinishItem {
    /// About how many bytes the item takes in a request body (never less than it does).
    pub fn approx_len(&self) -> usize {
        const OVERHEAD: usize = 96;
        let outcome = match &self.outcome {
            Outcome::Complete { result: None } => 0,
            Outcome::Complete { result: Some(r) } => {
                serde_json::to_vec(r).map(|v| v.len()).unwrap_or(0)
            }
            // Escaping may grow a string up to six times (`\u00XX`).
            Outcome::Fail { error, .. } => error.len() * 6,
        };
        OVERHEAD + self.id.len() + self.lease_id.len() + outcome
    }
}

/// One item of the finish answer, in request order.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct FinishOutcome {
    /// The job.
    pub id: String,
    /// Whether the outcome was recorded.
    pub ok: bool,
    /// Why not (`LEASE_NOT_HELD`, `UNKNOWN_JOB_ID`, …).
    #[serde(default)]
    pub code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Finished {
    pub items: Vec<FinishOutcome>,
}

/// A job to enqueue (`POST /api/v1/jobs`, one item of `POST /api/v1/jobs/batch`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewJob {
    /// Target queue.
    pub queue: String,
    /// Job type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Payload.
    pub payload: Value,
    /// A client-chosen UUIDv7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Smaller runs first; default 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Not before (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<String>,
    /// Attempts before dead-lettering; default 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i64>,
    /// Makes the enqueue idempotent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Jobs that must succeed first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

impl NewJob {
    /// A job with the server's defaults for everything but queue, type and payload.
    pub fn new(queue: impl Into<String>, job_type: impl Into<String>, payload: Value) -> Self {
        Self {
            queue: queue.into(),
            job_type: job_type.into(),
            payload,
            id: None,
            priority: None,
            run_at: None,
            max_attempts: None,
            idempotency_key: None,
            depends_on: None,
        }
    }
}

/// A job as the server shows it (the fields a worker or a test reads).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct JobRecord {
    /// Its id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `available`, `running`, `succeeded`, `dead_letter`, …
    pub state: String,
    /// Leases so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its payload.
    #[serde(default)]
    pub payload: Value,
    /// The worker's result, once succeeded.
    #[serde(default)]
    pub result: Option<Value>,
    /// The last failure's message.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Why it is in its state, when that needs saying.
    #[serde(default)]
    pub reason_code: Option<String>,
}

/// A queue as `GET /api/v1/queues/{name}` shows it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct QueueInfo {
    /// Its name.
    pub name: String,
    /// Whether leasing is paused.
    #[serde(default)]
    pub paused: bool,
    /// Jobs per state; every state is present.
    #[serde(default)]
    pub depth: BTreeMap<String, i64>,
    /// Jobs running now.
    #[serde(default)]
    pub running: i64,
}

impl QueueInfo {
    /// The number of jobs in `state` (0 when absent).
    pub fn count(&self, state: &str) -> i64 {
        self.depth.get(state).copied().unwrap_or(0)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BatchIds {
    pub ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finish_items_serialize_as_the_api_says() {
        let done = FinishItem {
            id: "j1".into(),
            lease_id: "l1".into(),
            outcome: Outcome::Complete { result: None },
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap(),
            json!({"id": "j1", "lease_id": "l1", "outcome": "complete"})
        );
        let failed = FinishItem {
            id: "j2".into(),
            lease_id: "l2".into(),
            outcome: Outcome::Fail {
                error: "boom".into(),
                retryable: false,
            },
        };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"id": "j2", "lease_id": "l2", "outcome": "fail", "error": "boom", "retryable": false})
        );
    }

    #[test]
    fn approx_len_never_underestimates() {
        let items = [
            FinishItem {
                id: "0191f8a0-0000-7000-8000-000000000000".into(),
                lease_id: "0191f8a0-0000-7000-8000-000000000001".into(),
                outcome: Outcome::Complete {
                    result: Some(json!({"a": [1, 2, "three"]})),
                },
            },
            FinishItem {
                id: "x".into(),
                lease_id: "y".into(),
                outcome: Outcome::Fail {
                    error: "\u{1}\"\\\n".repeat(50),
                    retryable: true,
                },
            },
        ];
        for item in items {
            let real = serde_json::to_vec(&item).unwrap().len();
            assert!(item.approx_len() >= real, "{real} > {}", item.approx_len());
        }
    }

    #[test]
    fn new_jobs_leave_defaults_out() {
        let j = NewJob::new("q", "t", json!({"n": 1}));
        assert_eq!(
            serde_json::to_value(&j).unwrap(),
            json!({"queue": "q", "type": "t", "payload": {"n": 1}})
        );
    }

    #[test]
    fn leases_and_queues_parse_and_ignore_new_fields() {
        let l: Leased = serde_json::from_value(json!({"jobs": [{"id": "a", "lease_id": "b", "queue": "q", "type": "t", "payload": null, "attempt": 2, "lease_expires_at": "2026-01-01T00:00:00.000000Z", "later": 1}]})).unwrap();
        assert_eq!(l.jobs[0].attempt, 2);
        let q: QueueInfo = serde_json::from_value(json!({"name": "q", "paused": false, "depth": {"succeeded": 3}, "running": 0, "limits": {}})).unwrap();
        assert_eq!(q.count("succeeded"), 3);
        assert_eq!(q.count("available"), 0);
    }
}
