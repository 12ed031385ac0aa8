-- Retention of moved finished jobs (`jobs.done_retention_secs`): the leader deletes, oldest
-- first, the jobs of `jobs_done` that finished before the period, with their timelines.
CREATE INDEX jobs_done_by_age ON jobs_done (updated_at);
