-- Every text column compares bytewise (COLLATE "C"), not through the database's locale.
-- Bulk writes spend most of their time inserting index entries whose keys start with
-- (tenant, some text); under a libc locale (C.UTF-8, en_US.UTF-8, …) each comparison
-- goes through strcoll, under "C" it is a memcmp. The ids, names, states and tickets we
-- store are compared for equality or ordered as ids (ASCII), so nothing a user sees
-- changes, except that names order by their bytes on every deployment alike. All text
-- columns change together, so no comparison ever mixes two collations. A collation
-- change needs no table rewrite; the indexes on these columns are rebuilt.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.table_name,
               string_agg(format('ALTER COLUMN %I TYPE TEXT COLLATE "C"', c.column_name), ', ') AS alters
        FROM information_schema.columns c
        JOIN information_schema.tables tb
          ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
        WHERE c.table_schema = current_schema()
          AND tb.table_type = 'BASE TABLE'
          AND c.data_type = 'text'
          AND c.collation_name IS NULL
        GROUP BY c.table_name
    LOOP
        EXECUTE format('ALTER TABLE %I %s', t.table_name, t.alters);
    END LOOP;
END
$$;

-- A timeline is only ever read whole, by job: (tenant, job_id, id) is its key, and the
-- separate index on `id` alone was one more B-tree insert per transition for nothing.
ALTER TABLE job_events DROP CONSTRAINT job_events_pkey;
DROP INDEX job_events_by_job;
ALTER TABLE job_events ADD PRIMARY KEY (tenant, job_id, id);
