-- A small hot table (issue [2/3]): finished jobs move out of `jobs` after a configurable
-- time into `jobs_done`, where listing, showing and replay still find them but claims,
-- sweeps and the claim indexes never see them. Finished is final (no transition leaves
-- succeeded, dead_letter or canceled), so a moved row never changes again.
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE state IN ('succeeded', 'dead_letter', 'canceled');
-- The mover deletes a moved job's own dependency edges; promotion looks them up the same way.
CREATE INDEX job_deps_by_job ON job_deps (tenant, job_id, depends_on);
CREATE TABLE jobs_done (
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
    moved_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX jobs_done_idempotency ON jobs_done (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_done_by_queue_state ON jobs_done (tenant, queue, state, id);
CREATE INDEX jobs_done_by_state ON jobs_done (tenant, state, id);
CREATE INDEX jobs_done_by_type ON jobs_done (tenant, job_type, id);
-- Queue depth of moved jobs, kept by the mover (counting millions of rows per request
-- would put the cost back).
CREATE TABLE jobs_done_counts (
    tenant TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tenant, queue, state)
);
