//! The client against the real server, started in-process on an ephemeral port over a
//! fresh store (SQLite always; PostgreSQL too when `WARDEN_TEST_DATABASE_URL` or the
//! default local server is reachable).

mod helpers;

mod client;
mod worker;
