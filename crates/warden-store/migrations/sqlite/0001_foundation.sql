-- Warden foundation schema (SQLite). Times are integer microseconds since the Unix epoch,
-- ids are hyphenated UUID text, so the same queries run on both backends.
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (name, created_at) VALUES ('_system', 0);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name),
    name TEXT NOT NULL,
    secret_digest BLOB NOT NULL,
    roles TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    UNIQUE (tenant, name)
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    secret BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
);

CREATE TABLE queues (
    tenant TEXT NOT NULL REFERENCES tenants (name),
    name TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0, -- 0/1: the Any driver cannot decode SQLite BOOLEAN
    rate_per_sec DOUBLE PRECISION,
    burst INTEGER,
    max_concurrency INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE jobs (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    queue TEXT NOT NULL,
    job_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    depends_on TEXT NOT NULL,
    idempotency_key TEXT,
    replay_of TEXT,
    reason_code TEXT,
    last_error TEXT,
    result TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_queue_state ON jobs (tenant, queue, state, id);
CREATE INDEX jobs_by_state ON jobs (tenant, state, id);
CREATE INDEX jobs_by_type ON jobs (tenant, job_type, id);

-- Reverse edges of depends_on, so a failed job finds its dependents by index.
CREATE TABLE job_deps (
    tenant TEXT NOT NULL,
    job_id TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (tenant, depends_on, job_id)
);

CREATE TABLE job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    job_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent_id TEXT,
    actor TEXT,
    reason_code TEXT,
    error TEXT
);
CREATE INDEX job_events_by_job ON job_events (tenant, job_id, id);

-- The per-tenant head of the audit log: the next gapless seq. Appends lock this row.
CREATE TABLE audit_heads (
    tenant TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL
);

-- Entry bodies: the canonical text exactly as hashed, plus the columns filters use.
CREATE TABLE audit_entries (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT,
    target_id TEXT,
    outcome TEXT NOT NULL,
    reason_code TEXT,
    operator_ticket TEXT,
    canonical TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_by_actor ON audit_entries (tenant, actor, seq);
CREATE INDEX audit_by_action ON audit_entries (tenant, action, seq);
CREATE INDEX audit_by_ticket ON audit_entries (tenant, operator_ticket, seq);
CREATE INDEX audit_by_target ON audit_entries (tenant, target_id, seq);
CREATE INDEX audit_by_outcome ON audit_entries (tenant, outcome, seq);
CREATE INDEX audit_by_time ON audit_entries (tenant, created_at);

-- Leaf hashes live apart from bodies: retention may one day move bodies out, never leaves.
CREATE TABLE audit_leaves (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    leaf_hash BLOB NOT NULL,
    PRIMARY KEY (tenant, seq)
);

CREATE TRIGGER audit_entries_refuse_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_entries_refuse_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_leaves_refuse_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_leaves_refuse_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;

-- Transactional outbox for the metadata-only event stream (DESIGN.md §3 step 8, §6).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL
);
