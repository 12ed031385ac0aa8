//! Integration tests for warden-ledger, built as the single test binary `it`.

mod canonical;
mod checkpoint;
mod export;
mod note;
mod proofs;
mod tlog_proof;
mod vectors;

use std::collections::HashMap;

use warden_ledger::hash::{Hash, leaf_hash};
use warden_ledger::note::{Signer, VerifierKey};
use warden_ledger::proof::ProofPlan;
use warden_ledger::tree::{CompactRange, NodeId};

/// Go `sumdb/note` test key pair (golang.org/x/mod `sumdb/note/note_test.go`).
pub const PETER_SIGNER: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
/// The verifier key of [`PETER_SIGNER`].
pub const PETER_VERIFIER: &str =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
/// A second Go test verifier key, whose private key is not published.
pub const ENOCH_VERIFIER: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";

/// Peter's signer.
pub fn peter() -> Signer {
    Signer::parse_private_key(PETER_SIGNER).expect("Go's test signer key parses")
}

/// Peter's verifier key.
pub fn peter_key() -> VerifierKey {
    VerifierKey::parse(PETER_VERIFIER).expect("Go's test verifier key parses")
}

/// A log of `n` distinct leaves with every completed node stored, as a store keeps it.
pub struct StoredTree {
    /// The leaf hashes, by index.
    pub leaves: Vec<Hash>,
    /// Every perfect node `CompactRange::append` reported.
    pub nodes: HashMap<NodeId, Hash>,
    /// The root at every size 0..=n.
    pub roots: Vec<Hash>,
}

impl StoredTree {
    /// Build the tree by appending leaf hashes of `i.to_be_bytes()`.
    pub fn new(n: u64) -> Self {
        Self::from_leaves((0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect())
    }

    /// Build the tree from given leaf hashes.
    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        let mut range = CompactRange::new();
        let mut nodes = HashMap::new();
        let mut roots = vec![range.root()];
        for leaf in &leaves {
            for (id, hash) in range.append(*leaf) {
                assert!(nodes.insert(id, hash).is_none(), "{id:?} completed twice");
            }
            roots.push(range.root());
        }
        Self {
            leaves,
            nodes,
            roots,
        }
    }

    /// Fetch a plan's nodes and rehash them into the proof.
    pub fn prove(&self, plan: &ProofPlan) -> Vec<Hash> {
        let fetched: Vec<Hash> =
            plan.ids()
                .iter()
                .map(|id| {
                    *self.nodes.get(id).unwrap_or_else(|| {
                        panic!("plan asks for {id:?}, which was never completed")
                    })
                })
                .collect();
        plan.rehash(&fetched).expect("one hash per planned node")
    }

    /// The root of the tree of `size` leaves.
    pub fn root(&self, size: u64) -> Hash {
        self.roots[size as usize]
    }
}
