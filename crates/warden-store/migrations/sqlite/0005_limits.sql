-- Limits (issue [2/3]): a queue's GCRA lease state next to its limits, and tenant quotas.
ALTER TABLE queues ADD COLUMN lease_tat BIGINT;
CREATE TABLE quotas (
    tenant TEXT PRIMARY KEY,
    max_queued BIGINT,
    max_running BIGINT,
    enqueue_per_sec REAL,
    enqueue_tat BIGINT,
    updated_at BIGINT NOT NULL
);
