-- A job's first timeline entry kept in its own row (decision 0015). `first_state` set: the
-- job's timeline begins with (created_at, first_state, attempt 0, no agent, actor, reason
-- code or error), and no `job_events` row holds that entry. NULL: the first entry is a
-- `job_events` row, as for every job enqueued before this migration and for jobs whose
-- first entry names an actor or a reason code (replays, jobs canceled at enqueue).
-- Adding a nullable column without a default rewrites nothing on either backend.
-- COLLATE "C" as every text column since 0014.
ALTER TABLE jobs ADD COLUMN first_state TEXT COLLATE "C";
ALTER TABLE jobs_done ADD COLUMN first_state TEXT COLLATE "C";
