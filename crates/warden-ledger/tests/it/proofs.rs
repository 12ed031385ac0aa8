//! Proofs planned from the nodes `CompactRange::append` stores verify for every (index,
//! size), and any change to a proof, its index or its sizes makes verification fail.

use std::sync::OnceLock;

use proptest::prelude::*;
use warden_ledger::hash::{Hash, empty_root, leaf_hash};
use warden_ledger::proof::{
    ProofError, ProofPlan, consistency, inclusion, verify_consistency, verify_inclusion,
};
use warden_ledger::tree::root_from_leaves;

use crate::StoredTree;

/// One shared tree for the sampled properties.
fn big_tree() -> &'static StoredTree {
    static TREE: OnceLock<StoredTree> = OnceLock::new();
    TREE.get_or_init(|| StoredTree::new(BIG))
}

const BIG: u64 = 5000;

/// Plan only nodes inside the tree the proof is for: a store at a later size must not
/// hand out nodes the earlier tree did not have.
fn assert_within(plan: &ProofPlan, size: u64) {
    for id in plan.ids() {
        assert!(id.coverage().1 <= size, "{id:?} reaches past size {size}");
    }
}

#[test]
fn compact_range_roots_match_the_reference_definition() {
    let tree = StoredTree::new(300);
    assert_eq!(tree.root(0), empty_root());
    for size in 0..=300 {
        assert_eq!(
            tree.root(size),
            root_from_leaves(&tree.leaves[..size as usize]),
            "size {size}"
        );
    }
}

#[test]
fn every_inclusion_proof_up_to_size_300_verifies() {
    let tree = StoredTree::new(300);
    for size in 1..=300 {
        let root = tree.root(size);
        for index in 0..size {
            let plan = inclusion(index, size).unwrap();
            assert_within(&plan, size);
            let proof = tree.prove(&plan);
            verify_inclusion(&tree.leaves[index as usize], index, size, &proof, &root)
                .unwrap_or_else(|e| panic!("leaf {index} in size {size}: {e}"));
        }
        assert_eq!(
            inclusion(size, size).unwrap_err(),
            ProofError::IndexOutOfRange { index: size, size }
        );
    }
}

#[test]
fn every_consistency_proof_up_to_size_128_verifies() {
    let tree = StoredTree::new(128);
    for size2 in 1..=128 {
        for size1 in 1..=size2 {
            let plan = consistency(size1, size2).unwrap();
            assert_within(&plan, size2);
            let proof = tree.prove(&plan);
            verify_consistency(size1, size2, &proof, &tree.root(size1), &tree.root(size2))
                .unwrap_or_else(|e| panic!("{size1} -> {size2}: {e}"));
        }
        assert_eq!(consistency(0, size2).unwrap_err(), ProofError::EmptyTree);
        assert_eq!(
            verify_consistency(0, size2, &[], &empty_root(), &tree.root(size2)),
            Err(ProofError::EmptyTree)
        );
    }
}

/// Every proof with one byte of one hash changed (each byte, each hash) is refused.
#[test]
fn flipping_any_byte_of_any_proof_hash_is_caught() {
    let tree = StoredTree::new(32);
    for size in 1..=32 {
        let root = tree.root(size);
        for index in 0..size {
            let leaf = tree.leaves[index as usize];
            let proof = tree.prove(&inclusion(index, size).unwrap());
            for_each_flip(&proof, |bad| {
                assert!(
                    verify_inclusion(&leaf, index, size, bad, &root).is_err(),
                    "flipped inclusion proof {index}/{size} verified"
                );
            });
        }
        for size1 in 1..size {
            let proof = tree.prove(&consistency(size1, size).unwrap());
            for_each_flip(&proof, |bad| {
                assert!(
                    verify_consistency(size1, size, bad, &tree.root(size1), &root).is_err(),
                    "flipped consistency proof {size1}->{size} verified"
                );
            });
        }
    }
}

fn for_each_flip(proof: &[Hash], mut check: impl FnMut(&[Hash])) {
    let mut bad = proof.to_vec();
    for i in 0..bad.len() {
        for byte in 0..32 {
            bad[i][byte] ^= 0x01;
            check(&bad);
            bad[i][byte] ^= 0x01;
        }
    }
}

/// (size, index < size) up to [`BIG`].
fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=BIG).prop_flat_map(|size| (Just(size), 0..size))
}

/// (size1 <= size2) up to [`BIG`].
fn two_sizes() -> impl Strategy<Value = (u64, u64)> {
    (1..=BIG).prop_flat_map(|size2| (1..=size2, Just(size2)))
}

proptest! {
    #[test]
    fn sampled_inclusion_proofs_verify((size, index) in size_and_index()) {
        let tree = big_tree();
        let plan = inclusion(index, size).unwrap();
        assert_within(&plan, size);
        let proof = tree.prove(&plan);
        prop_assert_eq!(
            verify_inclusion(&tree.leaves[index as usize], index, size, &proof, &tree.root(size)),
            Ok(())
        );
    }

    #[test]
    fn sampled_consistency_proofs_verify((size1, size2) in two_sizes()) {
        let tree = big_tree();
        let plan = consistency(size1, size2).unwrap();
        assert_within(&plan, size2);
        let proof = tree.prove(&plan);
        prop_assert_eq!(
            verify_consistency(size1, size2, &proof, &tree.root(size1), &tree.root(size2)),
            Ok(())
        );
    }

    #[test]
    fn a_flipped_bit_in_an_inclusion_proof_is_caught(
        (size, index) in size_and_index(),
        which in any::<prop::sample::Index>(),
        byte in 0..32_usize,
        bit in 0..8_u32,
    ) {
        let tree = big_tree();
        let mut proof = tree.prove(&inclusion(index, size).unwrap());
        prop_assume!(!proof.is_empty());
        let i = which.index(proof.len());
        proof[i][byte] ^= 1 << bit;
        prop_assert!(verify_inclusion(&tree.leaves[index as usize], index, size, &proof, &tree.root(size)).is_err());
    }

    #[test]
    fn a_flipped_bit_in_a_consistency_proof_is_caught(
        (size1, size2) in two_sizes(),
        which in any::<prop::sample::Index>(),
        byte in 0..32_usize,
        bit in 0..8_u32,
    ) {
        let tree = big_tree();
        let mut proof = tree.prove(&consistency(size1, size2).unwrap());
        prop_assume!(!proof.is_empty());
        let i = which.index(proof.len());
        proof[i][byte] ^= 1 << bit;
        prop_assert!(verify_consistency(size1, size2, &proof, &tree.root(size1), &tree.root(size2)).is_err());
    }

    /// The proof for one leaf proves nothing about another index, another tree size (with
    /// that tree's true root), another root, or another leaf.
    #[test]
    fn an_inclusion_proof_is_bound_to_its_index_size_and_leaf(
        (size, index) in size_and_index(),
        other_index in 0..BIG,
        other_size in 1..=BIG,
    ) {
        let tree = big_tree();
        let leaf = tree.leaves[index as usize];
        let proof = tree.prove(&inclusion(index, size).unwrap());
        if other_index != index {
            prop_assert!(verify_inclusion(&leaf, other_index, size, &proof, &tree.root(size)).is_err());
        }
        if other_size != size {
            prop_assert!(verify_inclusion(&leaf, index, other_size, &proof, &tree.root(other_size)).is_err());
        }
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &leaf_hash(b"another root")).is_err());
        let other_leaf = leaf_hash(b"not in the log");
        prop_assert!(verify_inclusion(&other_leaf, index, size, &proof, &tree.root(size)).is_err());
        // One hash too many or too few is refused on length alone.
        let mut longer = proof.clone();
        longer.push(tree.root(size));
        let result = verify_inclusion(&leaf, index, size, &longer, &tree.root(size));
        prop_assert!(matches!(result, Err(ProofError::WrongProofLength { .. })), "{:?}", result);
        if let Some((_, shorter)) = proof.split_last() {
            let result = verify_inclusion(&leaf, index, size, shorter, &tree.root(size));
            prop_assert!(matches!(result, Err(ProofError::WrongProofLength { .. })), "{:?}", result);
        }
    }

    /// A consistency proof proves nothing about other sizes (with those trees' true roots)
    /// or other roots.
    #[test]
    fn a_consistency_proof_is_bound_to_its_sizes_and_roots(
        (size1, size2) in two_sizes(),
        other1 in 1..=BIG,
        other2 in 1..=BIG,
    ) {
        let tree = big_tree();
        let proof = tree.prove(&consistency(size1, size2).unwrap());
        if other1 != size1 && other1 <= size2 {
            prop_assert!(verify_consistency(other1, size2, &proof, &tree.root(other1), &tree.root(size2)).is_err());
        }
        if other2 != size2 && other2 >= size1 {
            prop_assert!(verify_consistency(size1, other2, &proof, &tree.root(size1), &tree.root(other2)).is_err());
        }
        // Any other root, old or new, is refused.
        let stranger = leaf_hash(b"some other root");
        prop_assert!(verify_consistency(size1, size2, &proof, &stranger, &tree.root(size2)).is_err());
        prop_assert!(verify_consistency(size1, size2, &proof, &tree.root(size1), &stranger).is_err());
        // Swapping the roots is refused, except where they are one root.
        if size1 != size2 {
            prop_assert!(verify_consistency(size1, size2, &proof, &tree.root(size2), &tree.root(size1)).is_err());
        }
        // One hash too many or too few is refused on length alone.
        let mut longer = proof.clone();
        longer.push(tree.root(size2));
        let result = verify_consistency(size1, size2, &longer, &tree.root(size1), &tree.root(size2));
        prop_assert!(matches!(result, Err(ProofError::WrongProofLength { .. })), "{:?}", result);
        if let Some((_, shorter)) = proof.split_last() {
            let result = verify_consistency(size1, size2, shorter, &tree.root(size1), &tree.root(size2));
            prop_assert!(matches!(result, Err(ProofError::WrongProofLength { .. })), "{:?}", result);
        }
    }
}
