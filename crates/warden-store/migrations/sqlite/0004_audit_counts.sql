-- Hourly per-tenant counters of the audit log, so `GET /api/v1/audit/stats` reads a few
-- rows per hour instead of scanning millions of entries. Updated in the same transaction
-- as every append (audit::append_in_tx). Derived data, not evidence: the entries and their
-- leaf hashes stay the record; this table may be rebuilt from them at any time.
CREATE TABLE audit_counts (
    tenant TEXT NOT NULL,
    hour BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT NOT NULL,
    n BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, hour, action, outcome, actor)
);
INSERT INTO audit_counts (tenant, hour, action, outcome, actor, n, first_at, last_at)
SELECT tenant, created_at / 3600000000, action, outcome, actor, COUNT(*), MIN(created_at), MAX(created_at)
FROM audit_entries
GROUP BY tenant, created_at / 3600000000, action, outcome, actor;

-- Most entries are allowed: index only the rejected ones (a filter for `allowed` walks the
-- log newest first and finds matches at once). The filter names the outcome as a literal,
-- so both planners can prove this partial index applies.
DROP INDEX audit_by_outcome;
CREATE INDEX audit_rejected ON audit_entries (tenant, seq) WHERE outcome = 'rejected';
