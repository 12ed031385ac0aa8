-- Fewer index entries per job on the fast path (available → running → finished); see
-- docs/bench/engine.md, eighth session. A lease and a finish each change `state`, and
-- every index that names `state` moved with it: SQLite deletes and reinserts the entry,
-- PostgreSQL (no HOT update when an indexed column changes) adds one to every index.
--
-- - The claim index holds only available jobs: claims look for nothing else
--   (`state = 'available'` is in every claim's text, as a partial index requires).
-- - The list indexes leave out running jobs: `Store::list_jobs` reads running jobs through
--   `jobs_lease_expiry` (one per outstanding lease, a bounded set) and everything else
--   through these, adding `state <> 'running'` to its text so they can be used.
-- The indexes are rebuilt in the migration's transaction, for as long as the hot table
-- takes to index (finished jobs have moved out of it).
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (tenant, queue, priority, run_at, id) WHERE state = 'available';
DROP INDEX jobs_by_queue_state;
CREATE INDEX jobs_by_queue_state ON jobs (tenant, queue, state, id) WHERE state <> 'running';
DROP INDEX jobs_by_state;
CREATE INDEX jobs_by_state ON jobs (tenant, state, id) WHERE state <> 'running';
DROP INDEX jobs_by_type;
CREATE INDEX jobs_by_type ON jobs (tenant, job_type, id) WHERE state <> 'running';
