-- Retention (issue [3/3]): an old entry's body moves to a verifiable archive file while
-- its leaf hash stays. `upto` is the watermark: bodies of seq < upto are archived. It only
-- grows, and it is the one way a body may leave `audit_entries`.
CREATE TABLE audit_archived (
    tenant TEXT PRIMARY KEY,
    upto BIGINT NOT NULL,
    last_run_at BIGINT NOT NULL,
    last_moved BIGINT NOT NULL,
    last_file TEXT
);

CREATE FUNCTION warden_archive_only_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.upto >= OLD.upto THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the archive watermark only grows (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_archived_only_grows BEFORE UPDATE OR DELETE ON audit_archived
    FOR EACH ROW EXECUTE FUNCTION warden_archive_only_grows();
CREATE TRIGGER audit_archived_refuse_truncate BEFORE TRUNCATE ON audit_archived
    FOR EACH STATEMENT EXECUTE FUNCTION warden_archive_only_grows();

-- Entries: still no UPDATE; a DELETE only below the tenant's archive watermark.
CREATE FUNCTION warden_refuse_audit_entry_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM audit_archived a WHERE a.tenant = OLD.tenant AND OLD.seq < a.upto
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit entries are immutable (% on %)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER audit_entries_refuse_change ON audit_entries;
CREATE TRIGGER audit_entries_refuse_change BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION warden_refuse_audit_entry_change();
