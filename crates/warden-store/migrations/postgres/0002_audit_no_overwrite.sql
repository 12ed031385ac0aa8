-- PostgreSQL has no REPLACE, and `INSERT ... ON CONFLICT DO UPDATE` fires the row UPDATE
-- triggers of 0001, so nothing here needs guarding; this migration only keeps the version
-- numbers of both backends in step (SQLite's 0002 closes the REPLACE hole).
COMMENT ON TABLE audit_entries IS 'Append-only: UPDATE, DELETE and TRUNCATE are refused by triggers.';
COMMENT ON TABLE audit_leaves IS 'Append-only: UPDATE, DELETE and TRUNCATE are refused by triggers.';
