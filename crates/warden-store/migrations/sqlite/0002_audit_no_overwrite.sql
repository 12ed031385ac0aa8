-- An entry or leaf can only be inserted where none exists. `INSERT OR REPLACE` (and `REPLACE`)
-- resolve a key conflict by deleting the old row, and those deletes fire no DELETE trigger
-- unless `recursive_triggers` is on: without these, REPLACE could rewrite the log.
CREATE TRIGGER audit_entries_refuse_overwrite BEFORE INSERT ON audit_entries
WHEN EXISTS (SELECT 1 FROM audit_entries WHERE tenant = NEW.tenant AND seq = NEW.seq)
  OR EXISTS (SELECT 1 FROM audit_entries WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_leaves_refuse_overwrite BEFORE INSERT ON audit_leaves
WHEN EXISTS (SELECT 1 FROM audit_leaves WHERE tenant = NEW.tenant AND seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
