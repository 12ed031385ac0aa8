//! HTTP-level tests: the real server on an ephemeral port, on SQLite and PostgreSQL.

mod helpers;

mod audit;
mod authority;
mod cluster;
mod errors;
mod events;
mod jobs;
mod ledger;
mod ops;
mod queues;
mod quota;
mod schedules;
mod workers;
