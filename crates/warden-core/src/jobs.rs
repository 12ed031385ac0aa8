//! Jobs: the state machine of DESIGN.md §2, retry backoff, and the validated shapes of
//! enqueue requests and stored jobs.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::names::{IdempotencyKey, JobId, JobType, QueueName};
use crate::reason::ReasonCode;
use crate::time::Timestamp;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for dependencies or its `run_at`.
    Pending,
    /// Ready to be leased.
    Available,
    /// Leased by a worker.
    Running,
    /// Failed, waiting out its backoff before it becomes available again.
    Retrying,
    /// Finished successfully (terminal).
    Succeeded,
    /// Failed for good (terminal).
    DeadLetter,
    /// Canceled by an operator or because a dependency failed (terminal).
    Canceled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        Self::Pending,
        Self::Available,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::DeadLetter,
        Self::Canceled,
    ];

    /// The state's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Available => "available",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::DeadLetter => "dead_letter",
            Self::Canceled => "canceled",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Terminal states never change again; only they can be replayed.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::DeadLetter | Self::Canceled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// All dependencies succeeded and `run_at` has come.
    Ready,
    /// A worker took a lease.
    Lease,
    /// The worker reported success.
    Complete,
    /// The worker reported failure; `retryable` as the worker said.
    Fail {
        /// Whether the worker considers the failure transient.
        retryable: bool,
    },
    /// The lease ran out without a heartbeat (failover).
    LeaseExpired,
    /// A retrying job's backoff has passed.
    BackoffElapsed,
    /// An operator canceled the job.
    Cancel,
    /// A dependency ended in `dead_letter` or `canceled`.
    UpstreamFailed,
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply {event:?} to a job in state {from}")]
pub struct InvalidTransition {
    /// The state the job was in.
    pub from: JobState,
    /// The event refused.
    pub event: JobEvent,
}

impl InvalidTransition {
    /// The reason code for this refusal.
    pub const fn code(&self) -> ReasonCode {
        ReasonCode::InvalidStateTransition
    }
}

/// What a transition leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: JobState,
    /// The attempt number after the event (leases count attempts).
    pub attempt: u32,
    /// The reason code to record (e.g. `UPSTREAM_FAILED`).
    pub reason_code: Option<ReasonCode>,
}

/// Apply `event` to a job in state `from` at attempt `attempt` with `max_attempts`.
///
/// Attempts count leases: a lease makes attempt `n + 1`. A retryable failure, or an expired
/// lease, returns the job for another try only while attempts remain; otherwise it is dead.
pub fn transition(
    from: JobState,
    attempt: u32,
    max_attempts: u32,
    event: JobEvent,
) -> Result<Transition, InvalidTransition> {
    use JobEvent as E;
    use JobState as S;
    let ok = |to, attempt| {
        Ok(Transition {
            to,
            attempt,
            reason_code: None,
        })
    };
    let attempts_left = attempt < max_attempts;
    match (from, event) {
        (S::Pending, E::Ready) | (S::Retrying, E::BackoffElapsed) => ok(S::Available, attempt),
        (S::Available, E::Lease) => ok(S::Running, attempt + 1),
        (S::Running, E::Complete) => ok(S::Succeeded, attempt),
        (S::Running, E::Fail { retryable: true }) if attempts_left => ok(S::Retrying, attempt),
        (S::Running, E::Fail { .. }) => ok(S::DeadLetter, attempt),
        (S::Running, E::LeaseExpired) if attempts_left => ok(S::Available, attempt),
        (S::Running, E::LeaseExpired) => ok(S::DeadLetter, attempt),
        (S::Pending, E::UpstreamFailed) => Ok(Transition {
            to: S::Canceled,
            attempt,
            reason_code: Some(ReasonCode::UpstreamFailed),
        }),
        (s, E::Cancel) if !s.is_terminal() => ok(S::Canceled, attempt),
        (from, event) => Err(InvalidTransition { from, event }),
    }
}

/// Exponential backoff with jitter for the retry after failed attempt `attempt` (1-based).
///
/// The delay is `base * 2^(attempt-1)`, capped at `max`, then scaled into
/// `[delay * (1 - jitter), delay]` by `random` (any u64, e.g. from a RNG), so that many
/// jobs failing together do not come back together.
pub fn retry_delay_micros(
    attempt: u32,
    base_micros: i64,
    max_micros: i64,
    jitter: f64,
    random: u64,
) -> i64 {
    let exp = attempt.saturating_sub(1).min(62);
    let raw = base_micros.saturating_mul(1_i64 << exp.min(40));
    let delay = raw.min(max_micros).max(0);
    let jitter = jitter.clamp(0.0, 1.0);
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
    let reduce = (delay as f64 * jitter * fraction) as i64;
    delay - reduce
}

/// A queue's retry defaults (`PUT /api/v1/queues/{name}/retry`); `None` is the built-in
/// default. A job's own `max_attempts` wins over the queue's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts for jobs enqueued without `max_attempts` (built-in: [`DEFAULT_MAX_ATTEMPTS`]).
    pub max_attempts: Option<u32>,
    /// The first retry's delay, ms (built-in: 1,000); it doubles per attempt.
    pub backoff_base_ms: Option<u64>,
    /// The longest delay, ms (built-in: one hour).
    pub backoff_max_ms: Option<u64>,
}

/// Built-in first retry delay.
pub const DEFAULT_BACKOFF_BASE_MS: u64 = 1_000;
/// Built-in longest retry delay.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 3_600_000;
/// The largest backoff accepted (a week).
pub const MAX_BACKOFF_MS: u64 = 7 * 24 * 3_600_000;
/// Fraction of a delay removed at random, so jobs failing together do not return together.
pub const RETRY_JITTER: f64 = 0.2;

impl RetryPolicy {
    /// Check ranges: attempts 1..=[`MAX_MAX_ATTEMPTS`], backoffs 1 ms..=a week, base ≤ max.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(n) = self.max_attempts
            && !(1..=MAX_MAX_ATTEMPTS).contains(&n)
        {
            return Err(FieldError::new(
                "max_attempts",
                format!("must be from 1 to {MAX_MAX_ATTEMPTS}"),
            ));
        }
        for (field, v) in [
            ("backoff_base_ms", self.backoff_base_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            if let Some(ms) = v
                && !(1..=MAX_BACKOFF_MS).contains(&ms)
            {
                return Err(FieldError::new(
                    field,
                    format!("must be from 1 to {MAX_BACKOFF_MS} (a week)"),
                ));
            }
        }
        if self.base_ms() > self.max_ms() {
            return Err(FieldError::new(
                "backoff_max_ms",
                "must not be below backoff_base_ms",
            ));
        }
        Ok(())
    }

    fn base_ms(&self) -> u64 {
        self.backoff_base_ms.unwrap_or(DEFAULT_BACKOFF_BASE_MS)
    }

    fn max_ms(&self) -> u64 {
        self.backoff_max_ms
            .unwrap_or(DEFAULT_BACKOFF_MAX_MS.max(self.base_ms()))
    }

    /// The delay before the retry after failed attempt `attempt`, with jitter from `random`.
    pub fn delay_micros(&self, attempt: u32, random: u64) -> i64 {
        retry_delay_micros(
            attempt,
            (self.base_ms() * 1_000) as i64,
            (self.max_ms() * 1_000) as i64,
            RETRY_JITTER,
            random,
        )
    }
}

/// The default number of attempts a job gets (API.md: leases count, expired ones too).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;
/// The largest `max_attempts` accepted.
pub const MAX_MAX_ATTEMPTS: u32 = 1000;
/// The most jobs one batch enqueue may carry.
pub const MAX_BATCH: usize = 10_000;

/// A validated enqueue request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Client-chosen id (UUIDv7), or a fresh one.
    pub id: JobId,
    /// Whether the client chose the id (so a clash is `DUPLICATE_JOB_ID`).
    pub client_chosen_id: bool,
    /// The queue, created at first use.
    pub queue: QueueName,
    /// The job type.
    pub job_type: JobType,
    /// Opaque JSON for the worker.
    pub payload: serde_json::Value,
    /// Smaller is claimed first.
    pub priority: i32,
    /// Not before this time.
    pub run_at: Option<Timestamp>,
    /// Attempts before dead letter.
    pub max_attempts: u32,
    /// Deduplicates enqueues within the tenant.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Jobs that must succeed first.
    pub depends_on: Vec<JobId>,
}

/// One field-level validation failure, for `errors: [{field, message}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `jobs[3].depends_on`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Check the dependencies inside one batch: no job depends on itself, ids are unique within
/// the batch, and the dependencies between batch members form no cycle. Dependencies on
/// jobs outside the batch are left for the store to check (they must exist).
pub fn check_batch_dependencies(jobs: &[NewJob]) -> Result<(), FieldError> {
    let mut index: HashMap<JobId, usize> = HashMap::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        if index.insert(job.id, i).is_some() {
            return Err(FieldError::new(
                format!("jobs[{i}].id"),
                "duplicate id within the batch",
            ));
        }
    }
    for (i, job) in jobs.iter().enumerate() {
        if job.depends_on.contains(&job.id) {
            return Err(FieldError::new(
                format!("jobs[{i}].depends_on"),
                "a job cannot depend on itself",
            ));
        }
    }
    // Iterative three-colour DFS over in-batch edges only.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; jobs.len()];
    for start in 0..jobs.len() {
        if mark[start] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = &jobs[node].depends_on;
            if *next < deps.len() {
                let dep = deps[*next];
                *next += 1;
                if let Some(&d) = index.get(&dep) {
                    match mark[d] {
                        Mark::Active => {
                            return Err(FieldError::new(
                                format!("jobs[{node}].depends_on"),
                                "dependencies form a cycle",
                            ));
                        }
                        Mark::New => {
                            mark[d] = Mark::Active;
                            stack.push((d, 0));
                        }
                        Mark::Done => {}
                    }
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// The dependencies of a batch that point outside it (the store checks they exist).
pub fn external_dependencies(jobs: &[NewJob]) -> Vec<JobId> {
    let inside: HashSet<JobId> = jobs.iter().map(|j| j.id).collect();
    let mut out: Vec<JobId> = jobs
        .iter()
        .flat_map(|j| j.depends_on.iter().copied())
        .filter(|d| !inside.contains(d))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A job as stored and served (API.md *Conventions*).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The id.
    pub id: JobId,
    /// Its queue.
    pub queue: QueueName,
    /// Its type.
    #[serde(rename = "type")]
    pub job_type: JobType,
    /// Opaque JSON for the worker.
    pub payload: serde_json::Value,
    /// Smaller is claimed first.
    pub priority: i32,
    /// Current state.
    pub state: JobState,
    /// Leases taken so far.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Not before this time.
    pub run_at: Timestamp,
    /// When enqueued.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Jobs that must succeed first.
    pub depends_on: Vec<JobId>,
    /// The enqueue's idempotency key.
    pub idempotency_key: Option<String>,
    /// The job this one replays.
    pub replay_of: Option<JobId>,
    /// Why it is in its state, when a code says it (`UPSTREAM_FAILED`).
    pub reason_code: Option<ReasonCode>,
    /// The last worker error.
    pub last_error: Option<String>,
    /// The worker's result.
    pub result: Option<serde_json::Value>,
    /// The transitions, on `GET /jobs/{id}` only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timeline: Option<Vec<TimelineEntry>>,
}

/// One transition in a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// When.
    pub at: Timestamp,
    /// The state entered.
    pub state: JobState,
    /// The attempt at that time.
    pub attempt: u32,
    /// The worker, for lease transitions.
    pub agent_id: Option<String>,
    /// The operator, for operator actions (`client:ops-bot`).
    pub actor: Option<String>,
    /// A code explaining the transition (`UPSTREAM_FAILED`, `lease_expired` is an error text).
    pub reason_code: Option<ReasonCode>,
    /// The worker's error, or a note such as `lease_expired`.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_event() -> impl Strategy<Value = JobEvent> {
        prop_oneof![
            Just(JobEvent::Ready),
            Just(JobEvent::Lease),
            Just(JobEvent::Complete),
            any::<bool>().prop_map(|retryable| JobEvent::Fail { retryable }),
            Just(JobEvent::LeaseExpired),
            Just(JobEvent::BackoffElapsed),
            Just(JobEvent::Cancel),
            Just(JobEvent::UpstreamFailed),
        ]
    }

    proptest! {
        /// Any sequence of events, applied where allowed, keeps every invariant of §2.
        #[test]
        fn any_event_sequence_respects_the_state_machine(
            max_attempts in 1u32..6,
            events in proptest::collection::vec(any_event(), 0..60),
        ) {
            let (mut state, mut attempt) = (JobState::Pending, 0u32);
            for event in events {
                match transition(state, attempt, max_attempts, event) {
                    Ok(t) => {
                        prop_assert!(!state.is_terminal(), "a terminal state changed");
                        prop_assert!(t.attempt >= attempt, "attempts never go down");
                        prop_assert!(t.attempt <= max_attempts, "never more leases than attempts");
                        if t.to == JobState::Running {
                            prop_assert_eq!(t.attempt, attempt + 1);
                        } else {
                            prop_assert_eq!(t.attempt, attempt);
                        }
                        if event == JobEvent::UpstreamFailed {
                            prop_assert_eq!(t.reason_code, Some(ReasonCode::UpstreamFailed));
                        }
                        state = t.to;
                        attempt = t.attempt;
                    }
                    Err(e) => {
                        prop_assert_eq!(e.from, state);
                        prop_assert_eq!(e.code(), ReasonCode::InvalidStateTransition);
                    }
                }
            }
        }

        /// Backoff stays within [delay*(1-jitter), delay] and never exceeds the cap.
        #[test]
        fn backoff_is_bounded(attempt in 1u32..100, random in any::<u64>()) {
            let d = retry_delay_micros(attempt, 1_000_000, 3_600_000_000, 0.2, random);
            let full = (1_000_000i64 << (attempt - 1).min(40)).min(3_600_000_000);
            prop_assert!(d <= full && d >= full - full / 5 - 1);
        }
    }

    #[test]
    fn terminal_states_only_allow_nothing() {
        for s in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(transition(s, 1, 3, JobEvent::Cancel).is_err());
        }
        assert_eq!(
            transition(JobState::Running, 3, 3, JobEvent::Fail { retryable: true })
                .unwrap()
                .to,
            JobState::DeadLetter
        );
        assert_eq!(
            transition(JobState::Running, 1, 3, JobEvent::LeaseExpired)
                .unwrap()
                .to,
            JobState::Available
        );
        assert_eq!(
            transition(JobState::Running, 3, 3, JobEvent::LeaseExpired)
                .unwrap()
                .to,
            JobState::DeadLetter
        );
    }

    fn job(id: JobId, deps: Vec<JobId>) -> NewJob {
        NewJob {
            id,
            client_chosen_id: true,
            queue: QueueName::parse("q").unwrap(),
            job_type: JobType::parse("t").unwrap(),
            payload: serde_json::Value::Null,
            priority: 0,
            run_at: None,
            max_attempts: 3,
            idempotency_key: None,
            depends_on: deps,
        }
    }

    #[test]
    fn batch_cycles_and_self_dependencies_are_refused() {
        let (a, b, c, x) = (JobId::new(), JobId::new(), JobId::new(), JobId::new());
        assert!(
            check_batch_dependencies(&[job(a, vec![]), job(b, vec![a]), job(c, vec![a, b, x])])
                .is_ok()
        );
        let err = check_batch_dependencies(&[job(a, vec![c]), job(b, vec![a]), job(c, vec![b])])
            .unwrap_err();
        assert_eq!(err.message, "dependencies form a cycle");
        let err = check_batch_dependencies(&[job(a, vec![a])]).unwrap_err();
        assert_eq!(err.field, "jobs[0].depends_on");
        assert_eq!(
            external_dependencies(&[job(a, vec![x, b]), job(b, vec![])]),
            vec![x]
        );
    }
}
