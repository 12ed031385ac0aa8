-- Engine statistics (issue [2/3]): when a job's current lease began (its run time is
-- measured from there), and finished jobs per queue in 10-second buckets, for the
-- throughput and error rate over 1 min / 5 min / 1 h that GET /api/v1/queues shows.
-- Each finish transaction adds its counts to one of a few slots of the bucket, so
-- concurrent finishers of one queue rarely wait on the same row.
ALTER TABLE jobs ADD COLUMN leased_at BIGINT;
CREATE TABLE queue_stats (
    tenant TEXT NOT NULL,
    queue TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    slot INTEGER NOT NULL,
    succeeded BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    PRIMARY KEY (tenant, queue, bucket, slot)
);
CREATE INDEX queue_stats_by_bucket ON queue_stats (bucket);
