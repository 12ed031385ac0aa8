-- The worker protocol (issue [2/3]): a job's current lease lives on its row; a worker call
-- is valid only while `state = 'running'` and `lease_id` matches.
ALTER TABLE jobs ADD COLUMN lease_id TEXT;
ALTER TABLE jobs ADD COLUMN lease_agent TEXT;
ALTER TABLE jobs ADD COLUMN lease_secs BIGINT;
ALTER TABLE jobs ADD COLUMN lease_expires_at BIGINT;
-- Claims: the ready jobs of a queue in claim order.
CREATE INDEX jobs_claim ON jobs (tenant, queue, state, priority, run_at, id);
-- The periodic loops: expired leases, and pending/retrying jobs that come due. Partial,
-- so the many available and finished jobs cost these indexes nothing on insert.
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('pending', 'retrying');

-- The agent registry: online while its last heartbeat is recent.
CREATE TABLE agents (
    tenant TEXT NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    queues TEXT NOT NULL,
    types TEXT NOT NULL,
    version TEXT,
    first_seen_at BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, agent_id)
);
