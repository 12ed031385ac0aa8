//! Warden's domain: the types every other crate speaks, with no I/O.
//!
//! # Layout
//! - [`canonical`]: RFC 8785 JSON canonicalization (the bytes an audit entry is hashed as).
//! - [`time`]: [`time::Timestamp`], UTC microseconds, RFC 3339 in and out.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod time;
