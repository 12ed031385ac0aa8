-- Full-text search over audit entries' reason, ticket and metadata (`q`, issue [3/3]).
-- A derived index, filled by the leader from the log a moment after each append (not in
-- the append's transaction: search lags by about a second, audited actions do not slow).
CREATE TABLE audit_search (
    tenant TEXT NOT NULL,
    seq BIGINT NOT NULL,
    doc TSVECTOR NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_search_doc ON audit_search USING GIN (doc);
-- How far each tenant's log is indexed: the next seq to index.
CREATE TABLE audit_search_progress (
    tenant TEXT PRIMARY KEY,
    next_seq BIGINT NOT NULL
);
