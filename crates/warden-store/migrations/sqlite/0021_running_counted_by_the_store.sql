-- SQLite's queue-depth row trigger (0017) ran two upserts of `jobs_depth` for every row a
-- lease or a finish changed: under callgrind 7.7 % of the instructions of the store's
-- enqueue→lease→finish path (docs/bench/engine.md, ninth session). The trigger now leaves
-- out every move into or out of `running`; the four statements that make such moves
-- (the claim, the finish, the lease-expiry sweep, the cancel) count them per batch in
-- the same call as their timeline entries (`jobs::DepthDeltas`), as enqueues already
-- count their inserts. Every other change of a job's state is still counted here.
-- PostgreSQL counts with statement triggers and is unchanged (its 0021 is empty).
DROP TRIGGER jobs_depth_update;
CREATE TRIGGER jobs_depth_update AFTER UPDATE OF tenant, queue, state ON jobs
    WHEN (OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue OR OLD.tenant IS NOT NEW.tenant)
        AND OLD.state <> 'running' AND NEW.state <> 'running'
BEGIN
    UPDATE jobs_depth SET n = n - 1 WHERE tenant = OLD.tenant AND queue = OLD.queue AND state = OLD.state;
    INSERT INTO jobs_depth (tenant, queue, state, n) VALUES (NEW.tenant, NEW.queue, NEW.state, 1)
        ON CONFLICT (tenant, queue, state) DO UPDATE SET n = n + 1;
END;
