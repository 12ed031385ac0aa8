-- PostgreSQL's 0014 moves every text column to COLLATE "C" and re-keys job_events.
-- SQLite already compares text bytewise (BINARY), and its job_events rows live in their
-- rowid B-tree, so the by-job index is the only one: nothing to change here.
SELECT 1;
