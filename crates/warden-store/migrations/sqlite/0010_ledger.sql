-- The Merkle ledger per tenant (issue [3/3], decision 0008).
-- The compact range (right frontier) of the tenant's tree, kept in the same transaction
-- as every append: the hashes of the perfect subtrees of [0, next_seq), biggest first,
-- concatenated. NULL on a log written before this migration; the next append builds it.
ALTER TABLE audit_heads ADD COLUMN frontier BLOB;

-- Completed interior nodes at every fourth level (4, 8, 12, ...); a node in between is
-- recomputed from at most 8 stored nodes (or leaves) below it, so a proof stays O(log n)
-- reads while the ledger writes about one node per 15 entries.
CREATE TABLE audit_nodes (
    tenant TEXT NOT NULL,
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (tenant, level, idx)
) WITHOUT ROWID;

-- Signed checkpoints (C2SP tlog-checkpoint bodies signed as C2SP notes), kept for ever.
CREATE TABLE audit_checkpoints (
    tenant TEXT NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, size)
);

CREATE TRIGGER audit_nodes_refuse_update BEFORE UPDATE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_nodes_refuse_delete BEFORE DELETE ON audit_nodes
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_checkpoints_refuse_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_checkpoints_refuse_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
-- REPLACE resolves a key conflict by a delete that fires no DELETE trigger (0002).
CREATE TRIGGER audit_nodes_refuse_overwrite BEFORE INSERT ON audit_nodes
WHEN EXISTS (SELECT 1 FROM audit_nodes WHERE tenant = NEW.tenant AND level = NEW.level AND idx = NEW.idx)
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
CREATE TRIGGER audit_checkpoints_refuse_overwrite BEFORE INSERT ON audit_checkpoints
WHEN EXISTS (SELECT 1 FROM audit_checkpoints WHERE tenant = NEW.tenant AND size = NEW.size)
BEGIN SELECT RAISE(ABORT, 'audit entries are immutable'); END;
