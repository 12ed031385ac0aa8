//! A small client for Warden's worker protocol (API.md §Workers), and a [`Worker`] runner
//! built on it.
//!
//! [`Client`] gets its bearer token from `POST /oauth/token` with client credentials,
//! refreshes it before it runs out (and once more if the server answers 401), and offers
//! one typed method per route a worker needs: agent heartbeat, lease (with long-poll), job
//! heartbeat, complete, fail and the batched finish — plus the few producer calls a test or
//! a benchmark needs (enqueue, batch enqueue, a job, a queue's depth). Errors are
//! [`ClientError`]s that carry the server's problem `code`.
//!
//! [`Worker`] runs an async handler over leased jobs: it long-polls for work, runs up to
//! `concurrency` jobs at once, extends the lease of long jobs with heartbeats, reports
//! outcomes through `POST /api/v1/jobs/finish` (coalescing the ones that arrive together),
//! and stops gracefully when its `watch` signal turns true: no new leases, running jobs
//! finish and report.
//!
//! ```no_run
//! # async fn demo() -> Result<(), warden_client::ClientError> {
//! use warden_client::{Client, Credentials, Job, JobError, Worker, WorkerOptions};
//!
//! let client = Client::connect("http://127.0.0.1:8080", Credentials::new("id", "secret")).await?;
//! let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
//! let worker = Worker::new(client, WorkerOptions::new("agent-1", ["emails"]));
//! let stats = worker
//!     .run(
//!         |job: Job| async move {
//!             if job.payload["to"].is_null() {
//!                 return Err(JobError::permanent("no recipient"));
//!             }
//!             Ok(None)
//!         },
//!         stop_rx,
//!     )
//!     .await?;
//! # drop(stop_tx); let _ = stats; Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`] holds [`Client`] and its requests; [`token`] the token cache and its
//!   refresh rule.
//! - [`protocol`] holds the request and answer types of the routes.
//! - [`worker`] holds [`Worker`], its options, [`JobError`] and [`WorkerStats`].
//! - [`mod@error`] holds [`ClientError`].
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod protocol;
pub mod token;
pub mod worker;

pub use client::{Client, Credentials};
pub use error::{ClientError, ClientResult};
pub use protocol::{
    FinishItem, FinishOutcome, Job, JobRecord, LeaseRequest, NewJob, Outcome, QueueInfo,
};
pub use worker::{JobError, Worker, WorkerOptions, WorkerStats};
