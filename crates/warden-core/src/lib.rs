//! Warden's domain: the types every other crate speaks, with no I/O.
//!
//! Nothing here depends on tokio, sqlx, axum or clap (CI checks `cargo tree -p warden-core`),
//! so the rules can be tested without a database.
//!
//! # Layout
//! - [`names`]: validated names and ids (`TenantId`, `QueueName`, `JobId`, …).
//! - [`scopes`]: scopes, roles, warrant rules and the ticket pattern.
//! - [`reason`]: the closed set of reason codes.
//! - [`jobs`]: the job state machine, backoff, enqueue validation.
//! - [`audit`]: audit entries, their canonical bytes and leaf hashes.
//! - [`events`]: the metadata-only payloads of the operational event stream.
//! - [`canonical`]: RFC 8785 JSON canonicalization (the bytes an audit entry is hashed as),
//!   re-exported from `warden-ledger`, which owns it with the rest of the ledger maths.
//! - [`schedule`]: cron expressions in a time zone, fire times, backfill ranges.
//! - [`time`]: [`time::Timestamp`], UTC microseconds, RFC 3339 in and out.
#![forbid(unsafe_code)]

pub mod audit;
pub mod events;
pub mod jobs;
pub mod limits;
pub mod names;
pub mod reason;
pub mod schedule;
pub mod scopes;
pub mod time;

/// RFC 8785 canonicalization lives with the rest of the ledger maths; this keeps the
/// `warden_core::canonical::…` paths working.
pub use warden_ledger::canonical;
