-- The mover's index of finished jobs, its predicate written as ORs. SQLite evaluates a
-- partial index's predicate on every insert into the table and on every update of a column
-- it names (`state`: each lease and each finish), and evaluates an `IN` list of three or more
-- values by building a temporary B-tree each time: that cost 4–12 µs per changed row, a
-- tenth of a finish (measured, docs/bench/engine.md). The same test written as equalities
-- costs a few comparisons. The mover's query repeats this predicate exactly, as SQLite
-- requires to use a partial index (`maintenance::FINISHED`).
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (updated_at)
    WHERE state = 'succeeded' OR state = 'dead_letter' OR state = 'canceled';
