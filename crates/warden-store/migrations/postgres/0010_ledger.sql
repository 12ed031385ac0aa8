-- The Merkle ledger per tenant (issue [3/3], decision 0008).
-- The compact range (right frontier) of the tenant's tree, kept in the same transaction
-- as every append: the hashes of the perfect subtrees of [0, next_seq), biggest first,
-- concatenated. NULL on a log written before this migration; the next append builds it.
ALTER TABLE audit_heads ADD COLUMN frontier BYTEA;

-- Completed interior nodes at every fourth level (4, 8, 12, ...); a node in between is
-- recomputed from at most 8 stored nodes (or leaves) below it, so a proof stays O(log n)
-- reads while the ledger writes about one node per 15 entries.
CREATE TABLE audit_nodes (
    tenant TEXT NOT NULL,
    level SMALLINT NOT NULL,
    idx BIGINT NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (tenant, level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint bodies signed as C2SP notes), kept for ever.
CREATE TABLE audit_checkpoints (
    tenant TEXT NOT NULL,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, size)
);

CREATE TRIGGER audit_nodes_refuse_change BEFORE UPDATE OR DELETE ON audit_nodes
    FOR EACH ROW EXECUTE FUNCTION warden_refuse_audit_change();
CREATE TRIGGER audit_nodes_refuse_truncate BEFORE TRUNCATE ON audit_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION warden_refuse_audit_change();
CREATE TRIGGER audit_checkpoints_refuse_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION warden_refuse_audit_change();
CREATE TRIGGER audit_checkpoints_refuse_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION warden_refuse_audit_change();
