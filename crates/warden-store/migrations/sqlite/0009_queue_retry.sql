-- A queue's retry defaults (issue [2/3]): attempts for jobs enqueued without their own,
-- and the exponential backoff between attempts. NULL is the built-in default.
ALTER TABLE queues ADD COLUMN default_max_attempts BIGINT;
ALTER TABLE queues ADD COLUMN backoff_base_ms BIGINT;
ALTER TABLE queues ADD COLUMN backoff_max_ms BIGINT;
