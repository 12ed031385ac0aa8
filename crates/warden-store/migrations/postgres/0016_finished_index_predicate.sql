-- SQLite's 0016 rewrites its finished-jobs index predicate as ORs (an `IN` list costs SQLite
-- a temporary B-tree per evaluation). PostgreSQL tests `state IN (…)` cheaply and its planner
-- matches either spelling: nothing to change here.
SELECT 1;
