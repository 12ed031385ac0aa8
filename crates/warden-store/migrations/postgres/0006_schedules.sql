-- Schedules (issue [2/3]): cron definitions and the runs they produced. A run's primary key
-- (tenant, schedule_id, fire_at) is what makes each fire time produce exactly one job,
-- whichever node, restart or backfill gets there first.
CREATE TABLE schedules (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT,
    queue TEXT NOT NULL,
    job_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    next_fire_at BIGINT,
    last_fire_at BIGINT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE next_fire_at IS NOT NULL;
CREATE TABLE schedule_runs (
    tenant TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    job_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, schedule_id, fire_at)
);
