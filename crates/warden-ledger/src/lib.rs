//! Warden's tamper-evident ledger core: the maths and formats behind the audit log, as
//! plain functions over plain types — no I/O, no async, no database.
//!
//! The store keeps each tenant's log as an RFC 9162 Merkle tree (every completed node
//! stored once, the compact range kept current with each append); the server signs
//! C2SP checkpoints of it and serves proofs; `warden audit verify` checks an NDJSON export
//! offline. All of them call this crate, so there is one implementation of each rule.
//! Nothing here depends on tokio, sqlx, axum or clap, nor on `warden-core` (which depends
//! on this crate for canonical JSON and leaf hashes).
//!
//! # Layout
//! - [`canonical`]: RFC 8785 JSON canonicalization, the bytes an audit entry is hashed as.
//! - [`hash`]: [`hash::Hash`], leaf and node hashes with RFC 9162 domain separation.
//! - [`tree`]: [`tree::NodeId`] addressing of perfect subtrees and the
//!   [`tree::CompactRange`] a store appends to.
//! - [`proof`]: inclusion and consistency proofs, planned from stored nodes and verified by
//!   the RFC 9162 algorithms.
//! - [`note`]: C2SP signed notes with Ed25519 keys (Go `sumdb/note` compatible).
//! - [`checkpoint`]: C2SP `tlog-checkpoint` bodies and signed checkpoints.
//! - [`tlog_proof`]: the C2SP `tlog-proof` file, a self-contained inclusion proof.
//! - [`export`]: the streaming verifier of Warden's NDJSON audit export.
#![forbid(unsafe_code)]

pub mod canonical;
pub mod checkpoint;
pub mod export;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tlog_proof;
pub mod tree;
