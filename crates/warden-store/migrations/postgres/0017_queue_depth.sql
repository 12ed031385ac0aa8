-- Queue depth by state, kept by the database itself (decision 0012). Counting the hot
-- table's rows per request cost O(jobs) on every dashboard refresh and metrics scrape.
-- Statement triggers (one per INSERT, UPDATE and DELETE statement on `jobs`, not one per
-- row) append the net change per (tenant, queue, state) to `jobs_depth_deltas`, in the
-- statement's transaction. Appending never waits on another transaction: counters updated
-- in place would serialise every concurrent lease and finish of a queue on one row lock.
-- The leader folds the deltas into `jobs_depth` every sweep (`fold_depth_deltas`).
-- Depth = jobs_depth + jobs_depth_deltas (hot jobs) + jobs_done_counts (moved jobs).
-- Text columns compare bytewise, as every other since 0014.
--
-- No write to `jobs` may commit between the backfill's snapshot and the triggers: nodes of
-- an older build keep leasing and finishing during a rolling upgrade, and such a write
-- would be counted by neither. Writers wait for this migration's commit instead.
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;
CREATE TABLE jobs_depth (
    tenant TEXT COLLATE "C" NOT NULL,
    queue TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tenant, queue, state)
);
CREATE TABLE jobs_depth_deltas (
    tenant TEXT COLLATE "C" NOT NULL,
    queue TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL
);
-- Readers filter the pending deltas by tenant and queue: an index keeps that cheap even
-- when the fold falls behind (no leader for a while, an upgrade in progress).
CREATE INDEX jobs_depth_deltas_by_queue ON jobs_depth_deltas (tenant, queue, state);
INSERT INTO jobs_depth (tenant, queue, state, n)
    SELECT tenant, queue, state, COUNT(*) FROM jobs GROUP BY tenant, queue, state;

CREATE FUNCTION warden_jobs_depth_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs_depth_deltas (tenant, queue, state, n)
        SELECT tenant, queue, state, COUNT(*) FROM new_jobs GROUP BY tenant, queue, state;
    RETURN NULL;
END $$;
CREATE FUNCTION warden_jobs_depth_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs_depth_deltas (tenant, queue, state, n)
        SELECT tenant, queue, state, SUM(d) FROM (
            SELECT tenant, queue, state, 1 AS d FROM new_jobs
            UNION ALL SELECT tenant, queue, state, -1 AS d FROM old_jobs
        ) AS c GROUP BY tenant, queue, state HAVING SUM(d) <> 0;
    RETURN NULL;
END $$;
CREATE FUNCTION warden_jobs_depth_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs_depth_deltas (tenant, queue, state, n)
        SELECT tenant, queue, state, -COUNT(*) FROM old_jobs GROUP BY tenant, queue, state;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_depth_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION warden_jobs_depth_insert();
CREATE TRIGGER jobs_depth_update AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION warden_jobs_depth_update();
CREATE TRIGGER jobs_depth_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION warden_jobs_depth_delete();
