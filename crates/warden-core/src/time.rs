//! UTC timestamps in microseconds.
