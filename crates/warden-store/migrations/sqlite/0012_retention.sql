-- Retention (issue [3/3]): an old entry's body moves to a verifiable archive file while
-- its leaf hash stays. `upto` is the watermark: bodies of seq < upto are archived. It only
-- grows, and it is the one way a body may leave `audit_entries`.
CREATE TABLE audit_archived (
    tenant TEXT PRIMARY KEY,
    upto INTEGER NOT NULL,
    last_run_at INTEGER NOT NULL,
    last_moved INTEGER NOT NULL,
    last_file TEXT
);
CREATE TRIGGER audit_archived_only_grows BEFORE UPDATE ON audit_archived
WHEN NEW.upto < OLD.upto
BEGIN SELECT RAISE(ABORT, 'the archive watermark only grows'); END;
CREATE TRIGGER audit_archived_refuse_delete BEFORE DELETE ON audit_archived
BEGIN SELECT RAISE(ABORT, 'the archive watermark only grows'); END;

DROP TRIGGER audit_entries_refuse_delete;
CREATE TRIGGER audit_entries_refuse_delete BEFORE DELETE ON audit_entries
WHEN NOT EXISTS (SELECT 1 FROM audit_archived a WHERE a.tenant = OLD.tenant AND OLD.seq < a.upto)
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
