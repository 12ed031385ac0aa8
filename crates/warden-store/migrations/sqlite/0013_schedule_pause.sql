-- A paused schedule produces no runs (its next fire time is cleared) until resumed; the
-- time it was paused is shown, and a resume starts again from the next fire time after it.
ALTER TABLE schedules ADD COLUMN paused_at BIGINT;
