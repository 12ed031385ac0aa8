-- SQLite's 0021 takes moves into and out of `running` out of its row trigger and counts
-- them per batch in the store. PostgreSQL's statement triggers count every change once per
-- statement already: nothing to change here.
SELECT 1;
