-- Warden foundation schema (PostgreSQL). Names that are ordered use COLLATE "C" so
-- keyset paging and tie-breaks order byte-wise, as on SQLite. Times are integer microseconds since the Unix epoch,
-- ids are hyphenated UUID text, so the same queries run on both backends.
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
INSERT INTO tenants (name, created_at) VALUES ('_system', 0);

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name),
    name TEXT NOT NULL,
    secret_digest BYTEA NOT NULL,
    roles TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (tenant, name)
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    purpose TEXT NOT NULL,
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE queues (
    tenant TEXT NOT NULL REFERENCES tenants (name),
    name TEXT COLLATE "C" NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    rate_per_sec DOUBLE PRECISION,
    burst BIGINT,
    max_concurrency BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE jobs (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    queue TEXT NOT NULL,
    job_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    run_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
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
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    job_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    agent_id TEXT,
    actor TEXT,
    reason_code TEXT,
    error TEXT
);
CREATE INDEX job_events_by_job ON job_events (tenant, job_id, id);

-- The per-tenant head of the audit log: the next gapless seq. Appends lock this row.
CREATE TABLE audit_heads (
    tenant TEXT PRIMARY KEY,
    next_seq BIGINT NOT NULL
);

-- Entry bodies: the canonical text exactly as hashed, plus the columns filters use.
CREATE TABLE audit_entries (
    tenant TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
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
    seq BIGINT NOT NULL,
    leaf_hash BYTEA NOT NULL,
    PRIMARY KEY (tenant, seq)
);

CREATE FUNCTION warden_refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries are immutable (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_entries_refuse_change BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION warden_refuse_audit_change();
-- TRUNCATE bypasses row triggers; refuse it too.
CREATE TRIGGER audit_entries_refuse_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION warden_refuse_audit_change();
CREATE TRIGGER audit_leaves_refuse_change BEFORE UPDATE OR DELETE ON audit_leaves
    FOR EACH ROW EXECUTE FUNCTION warden_refuse_audit_change();
CREATE TRIGGER audit_leaves_refuse_truncate BEFORE TRUNCATE ON audit_leaves
    FOR EACH STATEMENT EXECUTE FUNCTION warden_refuse_audit_change();

-- Transactional outbox for the metadata-only event stream (DESIGN.md §3 step 8, §6).
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL
);
