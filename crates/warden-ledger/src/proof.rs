//! Inclusion and consistency proofs: planned from stored nodes, verified per RFC 9162.
//!
//! # Decisions
//!
//! - **Planning mirrors transparency-dev/merkle's `proof` package.** A [`ProofPlan`] lists
//!   only perfect nodes ([`NodeId`]), so a store fetches them with one query, and
//!   [`ProofPlan::rehash`] folds the few right-border nodes that stand in for an
//!   *ephemeral* node (a subtree still ragged at that size) into the hash the RFC's proof
//!   wants. Proofs for any earlier size come from the same rows.
//! - **Verification is the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithm, step by step**, with the
//!   expected proof length checked first so a wrong length is named as such. Accepting a
//!   proof that is too long, too short, for an index outside the tree, or between sizes in
//!   the wrong order is the classic bug (immudb GO-2022-1117); every such case is an error.
//! - **A consistency proof from the empty tree is refused** ([`ProofError::EmptyTree`]),
//!   as transparency-dev/merkle does and its test vectors require: it proves nothing, and
//!   an API that "verifies" it invites callers to trust a root no one checked.
//! - Equal sizes need an empty proof and equal roots.

use std::ops::Range;

use crate::hash::{Hash, node_hash};
use crate::tree::{NodeId, range_nodes, range_size};

/// Why a proof could not be planned, assembled or verified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf is not in the tree.
    #[error("leaf index {index} is outside the tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked about.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof must go from a smaller tree to a larger one.
    #[error("tree size {size1} is larger than {size2}: a log never shrinks")]
    SizesOutOfOrder {
        /// The earlier size.
        size1: u64,
        /// The later size.
        size2: u64,
    },
    /// Consistency with the empty tree is trivially true, so a "proof" of it proves nothing.
    #[error("a consistency proof from the empty tree is meaningless")]
    EmptyTree,
    /// The proof has the wrong number of hashes for its index and sizes.
    #[error("the proof has {got} hashes, but these sizes need exactly {want}")]
    WrongProofLength {
        /// Hashes given.
        got: usize,
        /// Hashes this proof needs.
        want: usize,
    },
    /// The hashes do not lead to the root they should.
    #[error("the proof does not reproduce the root of the tree of size {size}")]
    RootMismatch {
        /// The tree size whose root did not match.
        size: u64,
    },
    /// [`ProofPlan::rehash`] was given a different number of hashes than nodes planned.
    #[error("{got} node hashes were fetched for a plan of {want} nodes")]
    WrongNodeCount {
        /// Hashes given.
        got: usize,
        /// Nodes in the plan.
        want: usize,
    },
}

/// Which stored nodes a proof needs, and how to turn their hashes into the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    /// Perfect nodes to fetch, in proof order.
    ids: Vec<NodeId>,
    /// `ids[ephemeral]` are the right-border nodes to fold into one ephemeral node's hash;
    /// empty when the proof needs no ephemeral node.
    ephemeral: Range<usize>,
}

impl ProofPlan {
    /// The nodes to fetch, in the order [`ProofPlan::rehash`] expects their hashes.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// The final proof hashes from the fetched node hashes (one per [`ProofPlan::ids`],
    /// same order).
    pub fn rehash(&self, fetched: &[Hash]) -> Result<Vec<Hash>, ProofError> {
        if fetched.len() != self.ids.len() {
            return Err(ProofError::WrongNodeCount {
                got: fetched.len(),
                want: self.ids.len(),
            });
        }
        let Range { start, end } = self.ephemeral.clone();
        if start >= end {
            return Ok(fetched.to_vec());
        }
        let mut proof = Vec::with_capacity(fetched.len() - (end - start) + 1);
        proof.extend_from_slice(&fetched[..start]);
        // The border nodes are ordered lowest (rightmost) first, so each next one is the
        // left sibling of what has been folded so far.
        let folded = fetched[start + 1..end]
            .iter()
            .fold(fetched[start], |right, left| node_hash(left, &right));
        proof.push(folded);
        proof.extend_from_slice(&fetched[end..]);
        Ok(proof)
    }

    /// The plan for a proof needing no nodes (equal sizes).
    fn empty() -> Self {
        Self {
            ids: Vec::new(),
            ephemeral: 0..0,
        }
    }

    /// Drop the first node: the one the proof is about, which the verifier already has.
    fn skip_first(mut self) -> Self {
        self.ids.remove(0);
        if self.ephemeral.start < self.ephemeral.end {
            self.ephemeral = self.ephemeral.start - 1..self.ephemeral.end - 1;
        }
        self
    }
}

/// The plan for the inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion(index: u64, size: u64) -> Result<ProofPlan, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    Ok(nodes(index, 0, size).skip_first())
}

/// The plan for the consistency proof between the trees of `size1` and `size2` leaves.
pub fn consistency(size1: u64, size2: u64) -> Result<ProofPlan, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyTree);
    }
    if size1 == size2 {
        return Ok(ProofPlan::empty());
    }
    // The biggest perfect subtree ending at size1; the proof is its inclusion proof in the
    // bigger tree, plus the subtree itself unless it is the whole old tree (whose root the
    // verifier already has).
    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let plan = nodes(index, level as u8, size2);
    Ok(if size1.is_power_of_two() {
        plan.skip_first()
    } else {
        plan
    })
}

/// The nodes proving that node (`level`, `index`) is in the tree of `size` leaves, the
/// node itself first (transparency-dev/merkle `proof.nodes`).
fn nodes(index: u64, level: u8, size: u64) -> ProofPlan {
    // The fork is where the path to our node leaves the path to the tree's right edge; its
    // sibling is the ephemeral node, covering [end, size) only partly.
    let inner = 63 - (index ^ (size >> level)).leading_zeros();
    let fork = NodeId::new(level + inner as u8, index >> inner);
    let (begin, end) = fork.coverage();
    let left = range_size(0, begin);
    let right = range_size(end, size);

    let mut node = NodeId::new(level, index);
    let mut ids = Vec::with_capacity(1 + inner as usize + right + left);
    ids.push(node);
    while node.level < fork.level {
        ids.push(node.sibling());
        node = node.parent();
    }
    // The nodes standing in for the ephemeral one, lowest level first so rehash can fold
    // them; then the nodes left of the fork, lowest first, each the next proof hash.
    let border_start = ids.len();
    range_nodes(end, size, &mut ids);
    ids[border_start..].reverse();
    let border_end = ids.len();
    range_nodes(0, begin, &mut ids);
    ids[border_end..].reverse();

    ProofPlan {
        ids,
        ephemeral: border_start..border_end,
    }
}

/// Check that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion_proof(leaf_hash, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch { size })
    }
}

/// The root that an inclusion proof leads to (RFC 9162 §2.1.3.2): compare it with a
/// trusted root, or use [`verify_inclusion`].
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_proof_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // RFC 9162 §2.1.3.2, steps 2-5.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    Ok(r)
}

/// Check that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::EmptyTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch { size: size2 })
        };
    }
    let want = consistency_proof_len(size1, size2);
    if proof.len() != want {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    // RFC 9162 §2.1.4.2. Step 2: a power-of-two old tree is itself the first path node.
    let path: Vec<Hash> = if size1.is_power_of_two() {
        std::iter::once(*root1)
            .chain(proof.iter().copied())
            .collect()
    } else {
        proof.to_vec()
    };
    // Steps 3-4.
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Steps 5-6.
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(ProofError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(ProofError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if fr != *root1 {
        return Err(ProofError::RootMismatch { size: size1 });
    }
    if sr != *root2 {
        return Err(ProofError::RootMismatch { size: size2 });
    }
    Ok(())
}

/// Hashes in the inclusion proof of leaf `index < size`: the levels below the point where
/// the paths to `index` and to the last leaf part, plus one per left subtree above it.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = decompose_inclusion(index, size);
    (inner + border) as usize
}

/// Hashes in the consistency proof `0 < size1 < size2`.
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    let (inner, border) = decompose_inclusion(size1 - 1, size2);
    let shift = size1.trailing_zeros();
    let seed = u32::from(!size1.is_power_of_two());
    (seed + inner - shift + border) as usize
}

/// (inner, border) proof lengths for leaf `index` in a tree of `size` leaves.
fn decompose_inclusion(index: u64, size: u64) -> (u32, u32) {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // `inner` is 64 when the paths part at the root of a 2^63+ tree; nothing is left above.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::{CompactRange, root_from_leaves};
    use std::collections::HashMap;

    /// A tree of `n` leaves with every perfect node stored, as a store would keep it.
    fn stored_tree(n: u64) -> (Vec<Hash>, HashMap<NodeId, Hash>) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut range = CompactRange::new();
        let mut nodes = HashMap::new();
        for leaf in &leaves {
            nodes.extend(range.append(*leaf));
        }
        (leaves, nodes)
    }

    fn fetch(plan: &ProofPlan, nodes: &HashMap<NodeId, Hash>) -> Vec<Hash> {
        let fetched: Vec<Hash> = plan.ids().iter().map(|id| nodes[id]).collect();
        plan.rehash(&fetched).unwrap()
    }

    #[test]
    fn planned_proofs_verify_for_small_trees() {
        let (leaves, nodes) = stored_tree(40);
        for size in 1..=40 {
            let root = root_from_leaves(&leaves[..size as usize]);
            for index in 0..size {
                let proof = fetch(&inclusion(index, size).unwrap(), &nodes);
                verify_inclusion(&leaves[index as usize], index, size, &proof, &root)
                    .unwrap_or_else(|e| panic!("inclusion {index}/{size}: {e}"));
            }
            for size1 in 1..=size {
                let root1 = root_from_leaves(&leaves[..size1 as usize]);
                let proof = fetch(&consistency(size1, size).unwrap(), &nodes);
                verify_consistency(size1, size, &proof, &root1, &root)
                    .unwrap_or_else(|e| panic!("consistency {size1}->{size}: {e}"));
            }
        }
    }

    /// Plans and verification agree on proof lengths even for trees near `u64::MAX`
    /// leaves (no shift overflows), so the length check never refuses a planned proof.
    #[test]
    fn huge_trees_plan_proofs_of_the_length_verification_expects() {
        let sizes = [1 << 63, (1 << 63) + 1, u64::MAX - 1, u64::MAX];
        for size in sizes {
            for index in [0, 1, size / 2, size - 2, size - 1] {
                let plan = inclusion(index, size).unwrap();
                let proof = plan.rehash(&vec![[0; 32]; plan.ids().len()]).unwrap();
                assert_eq!(
                    proof.len(),
                    inclusion_proof_len(index, size),
                    "leaf {index} of {size}"
                );
            }
            for size1 in [1, 2, 3, size / 2 + 1, size - 1] {
                let plan = consistency(size1, size).unwrap();
                let proof = plan.rehash(&vec![[0; 32]; plan.ids().len()]).unwrap();
                assert_eq!(
                    proof.len(),
                    consistency_proof_len(size1, size),
                    "{size1} -> {size}"
                );
            }
        }
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            inclusion(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            consistency(6, 5),
            Err(ProofError::SizesOutOfOrder { size1: 6, size2: 5 })
        );
        assert_eq!(consistency(0, 5), Err(ProofError::EmptyTree));
        assert_eq!(consistency(5, 5).unwrap().ids(), &[]);
        let plan = inclusion(3, 7).unwrap();
        assert_eq!(
            plan.rehash(&[]),
            Err(ProofError::WrongNodeCount {
                got: 0,
                want: plan.ids().len()
            })
        );
        let h = [7; 32];
        assert_eq!(
            verify_inclusion(&h, 0, 1, &[h], &h),
            Err(ProofError::WrongProofLength { got: 1, want: 0 })
        );
        assert_eq!(verify_inclusion(&h, 0, 1, &[], &h), Ok(()));
        assert_eq!(
            verify_consistency(0, 0, &[], &h, &h),
            Err(ProofError::EmptyTree)
        );
        assert_eq!(
            verify_consistency(3, 3, &[], &h, &[8; 32]),
            Err(ProofError::RootMismatch { size: 3 })
        );
    }
}
