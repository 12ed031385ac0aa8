//! Integration tests for warden-core, built as the single test binary `it`.

mod time;
