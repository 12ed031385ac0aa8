//! The command line, as API.md's CLI contract describes it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Warden: a job orchestrator whose operators can act, and prove it.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (embedded SQLite under --data-dir unless --database-url is given).
    Serve(ServeArgs),
    /// Manage OAuth clients, working on the store directly.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Enqueue, inspect, cancel and replay jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspect, pause and resume queues, and set their limits.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Show or set the tenant's quota.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Create and list cron schedules, and backfill their past runs.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run jobs: lease them and run a shell command per job (payload on stdin, result
    /// from stdout, non-zero exit = failure).
    Worker(WorkerArgs),
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Queue to lease from; repeatable.
    #[arg(long = "queue", required = true)]
    pub queues: Vec<String>,
    /// Only jobs of this type; repeatable (default: any type).
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// The shell command run for each job (`sh -c`).
    #[arg(long)]
    pub exec: String,
    /// Jobs run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Lease duration in seconds; the worker heartbeats at a third of it.
    #[arg(long, default_value_t = 30)]
    pub lease_seconds: u32,
    /// This worker's id in the agent registry (default: host name and process id).
    #[arg(long)]
    pub agent_id: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Where the store is (for `serve` and the store-side commands).
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite database.
    #[arg(long, env = "WARDEN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…) instead of the embedded SQLite.
    #[arg(long, env = "WARDEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A TOML configuration file.
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, env = "WARDEN_LISTEN")]
    pub listen: Option<String>,
    /// Print the effective configuration (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create a client and print its id and secret (once).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// Orch.Viewer, Orch.Operator, Orch.Admin, Orch.Worker or Orch.Exporter; repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a tenant's clients.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a client; its tokens stop working at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a client a new secret (the old one stops working) and print it once.
    RotateSecret {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// How client commands reach the server.
#[derive(Debug, Args, Clone)]
pub struct ConnArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "WARDEN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// OAuth client id.
    #[arg(long, env = "WARDEN_CLIENT_ID", global = true)]
    pub client_id: Option<String>,
    /// OAuth client secret.
    #[arg(
        long,
        env = "WARDEN_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub client_secret: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The warrant every state-changing operator command requires.
#[derive(Debug, Args, Clone)]
pub struct WarrantArgs {
    /// Why you act (recorded in the audit log).
    #[arg(long, required = true)]
    pub reason: String,
    /// The change ticket, e.g. OPS-123 (recorded in the audit log).
    #[arg(long, required = true)]
    pub ticket: String,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue a job.
    Enqueue {
        #[arg(long)]
        queue: String,
        #[arg(long = "type")]
        job_type: String,
        /// The payload, as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long)]
        priority: Option<i64>,
        /// RFC 3339 time before which the job does not run.
        #[arg(long)]
        run_at: Option<String>,
        #[arg(long)]
        max_attempts: Option<i64>,
        #[arg(long)]
        idempotency_key: Option<String>,
        /// A job that must succeed first; repeatable.
        #[arg(long = "depends-on")]
        depends_on: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List jobs, newest first.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show a job with its timeline.
    Show {
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Cancel a job (operator action, audited).
    Cancel {
        id: String,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Replay finished jobs as new ones (operator action, audited). One id replays it;
    /// several ids, or --state/--queue/--type, run a bulk replay.
    Replay {
        ids: Vec<String>,
        /// Bulk: every job in this state (e.g. dead_letter) when the command runs.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        /// Bulk: show what would be replayed, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueuesCommand {
    /// List queues with their depth by state.
    List {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show one queue.
    Show {
        name: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Pause leasing from a queue (operator action, audited).
    Pause {
        name: String,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Resume a paused queue (operator action, audited).
    Resume {
        name: String,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Replace a queue's limits (operator action, audited); an omitted limit is none.
    Limits {
        name: String,
        /// Leases per second (GCRA).
        #[arg(long)]
        rate_per_sec: Option<f64>,
        /// Leases at once within the rate.
        #[arg(long)]
        burst: Option<u64>,
        /// Running jobs across all workers.
        #[arg(long)]
        max_concurrency: Option<u64>,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Replace a queue's retry defaults (operator action, audited `queue.retry`); an
    /// omitted value is the built-in default (20 attempts, 1 s doubling to 1 h).
    Retry {
        name: String,
        /// Attempts for jobs enqueued without their own max_attempts.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// First retry delay, ms; it doubles per attempt.
        #[arg(long)]
        backoff_base_ms: Option<u64>,
        /// Longest retry delay, ms.
        #[arg(long)]
        backoff_max_ms: Option<u64>,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Show the tenant's quota.
    Show {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Replace the tenant's quota (needs `orch:quota`; audited `quota.update`; the
    /// reason and ticket become the token's `quota_reason` and `quota_ticket`). An
    /// omitted limit is none.
    Set {
        /// Jobs waiting at most (beyond: 429 QUOTA_EXCEEDED at enqueue).
        #[arg(long)]
        max_queued: Option<u64>,
        /// Jobs running at most (beyond: leases hand out fewer).
        #[arg(long)]
        max_running: Option<u64>,
        /// Enqueued jobs per second (beyond: 429 RATE_LIMITED).
        #[arg(long)]
        enqueue_per_sec: Option<f64>,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create a schedule (needs `orch:admin`; audited `schedule.create`).
    Create {
        /// Five-field cron expression, e.g. "0 9 * * mon-fri", or @hourly, @daily, …
        #[arg(long)]
        cron: String,
        /// IANA time zone, e.g. Europe/Paris (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long)]
        queue: String,
        #[arg(long = "type")]
        job_type: String,
        /// JSON payload of each run (default null).
        #[arg(long)]
        payload: Option<String>,
        #[arg(long)]
        priority: Option<i64>,
        #[arg(long)]
        max_attempts: Option<i64>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// List schedules, newest first.
    List {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Produce the runs the schedule's cron yields in [FROM, TO) that do not exist yet
    /// (needs `orch:backfill`; audited `schedule.backfill`; the reason and ticket become
    /// the token's `backfill_reason` and `backfill_ticket`).
    Backfill {
        id: String,
        /// RFC 3339, inclusive.
        #[arg(long)]
        from: String,
        /// RFC 3339, exclusive.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries, newest first.
    List {
        /// e.g. client:ops-bot; repeatable.
        #[arg(long)]
        actor: Vec<String>,
        /// e.g. job.cancel; repeatable.
        #[arg(long)]
        action: Vec<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        ticket: Option<String>,
        /// allowed or rejected.
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Show one entry with its seq and leaf hash.
    Show {
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Counts by action, outcome and actor.
    Stats {
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
}
