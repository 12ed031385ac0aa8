-- The same as SQLite's 0018: fewer index entries per job on the fast path (available →
-- running → finished); see docs/bench/engine.md, eighth session. Each lease and finish
-- changes `state`, and PostgreSQL cannot make such an update HOT: the new row version
-- gets an entry in every index whose predicate it satisfies. A running job is now in the
-- primary key and `jobs_lease_expiry` only (was: all six), which also makes each lease
-- heartbeat cheaper.
--
-- - The claim index holds only available jobs: claims look for nothing else
--   (`state = 'available'` is in every claim's text).
-- - The list indexes leave out running jobs: `Store::list_jobs` reads running jobs through
--   `jobs_lease_expiry` (one per outstanding lease, a bounded set) and everything else
--   through these, adding `state <> 'running'` to its text so they can be used.
-- The indexes are rebuilt in the migration's transaction: writers wait for it, for as
-- long as the hot table takes to index (finished jobs have moved out of it). During a
-- rolling upgrade, nodes of the previous build still list correctly, but their job
-- lists bind the state as a parameter, and a generic plan cannot prove it is not
-- `running`: such lists may scan until every node runs this build.
DROP INDEX jobs_claim;
CREATE INDEX jobs_claim ON jobs (tenant, queue, priority, run_at, id) WHERE state = 'available';
DROP INDEX jobs_by_queue_state;
CREATE INDEX jobs_by_queue_state ON jobs (tenant, queue, state, id) WHERE state <> 'running';
DROP INDEX jobs_by_state;
CREATE INDEX jobs_by_state ON jobs (tenant, state, id) WHERE state <> 'running';
DROP INDEX jobs_by_type;
CREATE INDEX jobs_by_type ON jobs (tenant, job_type, id) WHERE state <> 'running';
