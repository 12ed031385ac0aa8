//! The command line, as API.md's CLI contract describes it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Rotate and list the keys that sign tokens and checkpoints, working on the store
    /// directly (running servers take up a rotated key within seconds).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Enqueue, inspect, cancel and replay jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspect, pause and resume queues, and set their limits.
    #[command(subcommand)]
    Queues(QueuesCommand),
    /// Show or set the tenant's quota.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Create, list, show, change and delete cron schedules, pause and resume them, and
    /// backfill their past runs.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Read the audit log, and prove it: exports verified offline, signed checkpoints,
    /// receipts, a monitor and a live tail.
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
pub enum KeysCommand {
    /// Make a fresh key sign tokens or checkpoints. The old key is retired: it signs
    /// nothing more but keeps verifying (JWKS, `/api/v1/audit/keys`). Audited as
    /// `key.rotate` in the `_system` log.
    Rotate {
        /// `token` or `checkpoint`.
        #[arg(long, value_parser = ["token", "checkpoint"])]
        purpose: String,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change the master key: seal every signing key with the one in
    /// `WARDEN_NEW_MASTER_KEY` (opened with `WARDEN_MASTER_KEY`, if keys are sealed now).
    /// Audited as `key.reseal`. Restart the servers with the new key afterwards.
    Reseal {
        #[command(flatten)]
        warrant: WarrantArgs,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the signing keys (never their secrets), oldest first.
    List {
        /// Only `token` or `checkpoint` keys.
        #[arg(long, value_parser = ["token", "checkpoint"])]
        purpose: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
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
    /// Show one schedule.
    Show {
        id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Change what a schedule runs or when; only the options given change (needs
    /// `orch:admin`; audited `schedule.update` with before and after). Runs already
    /// produced keep what they were made with.
    Update {
        id: String,
        #[arg(long)]
        cron: Option<String>,
        /// IANA time zone; `UTC` for UTC.
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        /// JSON payload of each future run.
        #[arg(long)]
        payload: Option<String>,
        #[arg(long)]
        priority: Option<i64>,
        #[arg(long)]
        max_attempts: Option<i64>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Delete a schedule; the jobs it produced stay (needs `orch:admin`; audited
    /// `schedule.delete`).
    Delete {
        id: String,
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
    /// Pause a schedule: no runs until resumed (needs `orch:operate`; audited
    /// `schedule.pause`).
    Pause {
        id: String,
        #[command(flatten)]
        warrant: WarrantArgs,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Resume a schedule from its next fire time after now; runs missed while paused are
    /// not produced (backfill them). Audited `schedule.resume`.
    Resume {
        id: String,
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
        /// Full text over reason, ticket and metadata: every word must occur.
        #[arg(long)]
        q: Option<String>,
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
    /// Print the server's checkpoint verifier keys, one per line (no credentials needed).
    ///
    /// Save them once, from a channel you trust, and pin them with `verify --key`: keys
    /// read from an export or fetched next to a checkpoint prove only self-consistency.
    Keys {
        /// Write the keys to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Fetch the newest signed checkpoint of your tenant's log and check its signature.
    ///
    /// Prints the C2SP signed note (or saves it with --out) and says its origin, size and
    /// root. A saved checkpoint can later be given to `verify --checkpoint`.
    Checkpoint {
        /// Save the note to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Verify with these keys (lines as `warden audit keys` prints them) instead of
        /// the ones the server serves.
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Download the log, streamed in constant memory.
    ///
    /// The NDJSON form (the default) carries the keys, the signed checkpoints and any
    /// proofs it needs, so `verify` can check it offline; CSV and JSON are for reading.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Ndjson)]
        format: ExportFormat,
        /// RFC 3339; entries at or after this time.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339; entries before this time.
        #[arg(long)]
        until: Option<String>,
        /// Write to this file (complete, or not at all) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Verify an NDJSON export, or a receipt, offline: no server, no credentials.
    ///
    /// An export: every entry's leaf, the Merkle root at each signed checkpoint, every
    /// signature, and the consistency of every checkpoint given. Exits 0 only if all
    /// hold; otherwise 1, naming the first altered entry (seq) or failing checkpoint.
    /// Without --key the export's own keys are used, which proves the file is
    /// self-consistent but not who signed it.
    ///
    /// A receipt (a c2sp.org/tlog-proof file, as `receipt` writes it): needs --entry
    /// and --key, and proves that entry is in the signed log.
    Verify {
        /// The NDJSON export, or a tlog-proof receipt.
        file: PathBuf,
        /// A signed checkpoint kept from earlier (`checkpoint --out`); repeatable. Each
        /// must be consistent with the export.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// Trusted verifier keys, one per line (`warden audit keys --out`).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// For a receipt: the entry's JSON (`receipt` writes it as FILE.entry.json).
        #[arg(long, value_name = "FILE")]
        entry: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Save one entry's proof of inclusion as a receipt anyone can verify offline.
    ///
    /// Fetches the entry, the newest checkpoint and the inclusion proof between them,
    /// checks them here, and writes a C2SP tlog-proof file and, next to it,
    /// FILE.entry.json with the entry. `warden audit verify FILE --entry FILE.entry.json
    /// --key KEYS` then proves the entry is in the signed log, with no server.
    Receipt {
        /// The entry's id.
        id: String,
        /// Where to write the receipt (default: receipt-<id>.tlog-proof).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Verify with these keys instead of the ones the server serves.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Monitor the log for rollbacks and forks.
    ///
    /// Keeps the last trusted checkpoint on this disk and demands, each round, a proof
    /// that the newest one extends it. The first round trusts the server's keys (or --key) and its checkpoint. Later
    /// rounds verify the new checkpoint's signature with those keys and its consistency
    /// with the trusted one. A smaller tree is a ROLLBACK, a proof that fails (or another
    /// root at the same size) a FORK: either is reported loudly and exits 1, leaving the
    /// state untouched.
    Watch {
        /// The state file (default: one file per log under $XDG_STATE_HOME/warden or
        /// ~/.local/state/warden).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Seconds between rounds.
        #[arg(long, value_name = "SECS", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
        /// Do one round and exit (for scripts and cron).
        #[arg(long)]
        once: bool,
        /// On first use, trust these keys instead of the ones the server serves.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Follow new entries as they are written, one line each.
    ///
    /// Human lines give time, seq, actor, action, target and outcome; --json prints each
    /// entry as `audit show` does, on one line. After a dropped connection it reconnects
    /// (backing off up to 30 s) and resumes after the last entry shown.
    Tail {
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// The formats of `audit export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object a line, verifiable offline with `verify`.
    Ndjson,
    /// A spreadsheet; not verifiable.
    Csv,
    /// One JSON document `{items, checkpoint}`; not streamed-verifiable.
    Json,
}

impl ExportFormat {
    /// The `format` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
            Self::Json => "json",
        }
    }
}

/// A usage error found after parsing (a flag that one kind of input needs): exit 2, like
/// clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
