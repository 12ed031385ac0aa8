-- SQLite's 0020 drops the predicate of `jobs_by_type`, which it then never touches on a
-- lease or a finish. PostgreSQL gives every new row version an entry in every index whose
-- predicate it satisfies, changed columns or not, so the predicate that keeps running jobs
-- out saves it an entry per lease: nothing to change here.
SELECT 1;
