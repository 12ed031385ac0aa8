//! Node addressing and the compact range: how a store keeps a log's tree.
//!
//! # Decisions
//!
//! - Only *perfect* subtrees are nodes. [`NodeId`] `{ level, index }` covers leaves
//!   `[index·2^level, (index+1)·2^level)`; a node exists in the tree of size `n` only once
//!   all its leaves do, and from then on its hash never changes. That is what lets a store
//!   write each node once (the append-only triggers stay simple) and answer any proof for
//!   any earlier size from the same rows. Hashes of the ragged right edge ("ephemeral"
//!   nodes) are recomputed from perfect ones when needed, never stored.
//! - [`CompactRange`] is the tree's right frontier: one perfect-subtree root per set bit of
//!   the size, biggest (leftmost) first. It is everything needed to append and to compute
//!   the root, in O(log n) space. [`CompactRange::append`] returns every node the append
//!   completes, the leaf included, so a store persists exactly those rows in the same
//!   transaction as the entry; [`ids_for_size`] says which rows rebuild the range for a
//!   size with one read.
//! - [`root_from_leaves`] is the RFC 9162 §2.1.1 recursive definition, kept deliberately
//!   naive: it is the reference the tests compare everything else against.

use crate::hash::{Hash, empty_root, node_hash};

/// A perfect subtree: level `level` (leaves are level 0), `index`-th from the left.
///
/// Covers leaves `[index·2^level, (index+1)·2^level)`. Levels are below 64 for any tree
/// whose size fits a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves; a leaf is level 0.
    pub level: u8,
    /// Position among the nodes of that level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The node at `level`, `index`.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }

    /// The leaf at `index`.
    pub const fn leaf(index: u64) -> Self {
        Self { level: 0, index }
    }

    /// The leaves it covers: `[begin, end)`.
    pub const fn coverage(self) -> (u64, u64) {
        (self.index << self.level, (self.index + 1) << self.level)
    }

    /// The node one level up that contains this one.
    pub const fn parent(self) -> Self {
        Self {
            level: self.level + 1,
            index: self.index >> 1,
        }
    }

    /// The other child of this node's parent.
    pub const fn sibling(self) -> Self {
        Self {
            level: self.level,
            index: self.index ^ 1,
        }
    }
}

/// Why parts could not be assembled into a [`CompactRange`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactRangeError {
    /// A tree of `size` leaves has one frontier hash per set bit of `size`.
    #[error("a compact range of size {size} has {want} hashes, got {got}")]
    WrongHashCount {
        /// The tree size given.
        size: u64,
        /// How many hashes that size needs.
        want: usize,
        /// How many were given.
        got: usize,
    },
}

/// The right frontier of the tree of leaves `[0, size)`: the roots of its perfect subtrees,
/// biggest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    /// Number of leaves covered.
    size: u64,
    /// One hash per set bit of `size`, highest bit (leftmost subtree) first.
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reassemble a range from its size and the hashes of [`ids_for_size`]`(size)`, in that
    /// order.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let want = size.count_ones() as usize;
        if hashes.len() != want {
            return Err(CompactRangeError::WrongHashCount {
                size,
                want,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier hashes, biggest subtree first (the nodes of [`CompactRange::ids`]).
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The nodes whose hashes [`CompactRange::hashes`] holds.
    pub fn ids(&self) -> Vec<NodeId> {
        ids_for_size(self.size)
    }

    /// Append one leaf hash; returns every node this completes, lowest first: the leaf
    /// itself, then each parent that has just become perfect.
    ///
    /// # Panics
    ///
    /// If the tree already holds `u64::MAX` leaves.
    pub fn append(&mut self, leaf: Hash) -> Vec<(NodeId, Hash)> {
        let index = self.size;
        self.size = index.checked_add(1).expect("tree size overflows u64");
        // Every trailing one bit of the old size is a subtree of the same height as the
        // one being carried, so they merge, exactly like binary addition.
        let merges = index.trailing_ones() as usize;
        let mut completed = Vec::with_capacity(merges + 1);
        let mut id = NodeId::leaf(index);
        let mut hash = leaf;
        completed.push((id, hash));
        for _ in 0..merges {
            let left = self
                .hashes
                .pop()
                .expect("a set bit of the size has a frontier hash");
            hash = node_hash(&left, &hash);
            id = id.parent();
            completed.push((id, hash));
        }
        self.hashes.push(hash);
        completed
    }

    /// The RFC 9162 Merkle tree hash of the leaves `[0, size)`; the empty tree's is
    /// [`empty_root`].
    pub fn root(&self) -> Hash {
        let mut rest = self.hashes.iter().rev();
        let Some(&last) = rest.next() else {
            return empty_root();
        };
        rest.fold(last, |right, left| node_hash(left, &right))
    }
}

/// The nodes making up the compact range of `[0, size)`, biggest first: what a store reads
/// to rebuild it with [`CompactRange::from_parts`].
pub fn ids_for_size(size: u64) -> Vec<NodeId> {
    let mut ids = Vec::with_capacity(size.count_ones() as usize);
    let mut begin = 0_u64;
    for level in (0..64_u8).rev() {
        let width = 1_u64 << level;
        if size & width != 0 {
            ids.push(NodeId::new(level, begin >> level));
            begin += width;
        }
    }
    ids
}

/// The RFC 9162 §2.1.1 Merkle tree hash of `leaves` (already leaf hashes), by the
/// recursive definition: a slow reference for tests.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            // The largest power of two strictly below n.
            let k = 1_usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(
                &root_from_leaves(&leaves[..k]),
                &root_from_leaves(&leaves[k..]),
            )
        }
    }
}

/// The perfect subtrees covering `[begin, end)`, left to right, appended to `out`.
///
/// Mirrors `compact.RangeNodes` in transparency-dev/merkle: the left part climbs (lowest
/// level first) until it meets the right part, which descends.
pub(crate) fn range_nodes(begin: u64, end: u64, out: &mut Vec<NodeId>) {
    let (mut left, mut right) = decompose(begin, end);
    let mut pos = begin;
    while left != 0 {
        let level = left.trailing_zeros();
        out.push(NodeId::new(level as u8, pos >> level));
        pos += 1 << level;
        left &= left - 1;
    }
    while right != 0 {
        let level = 63 - right.leading_zeros();
        out.push(NodeId::new(level as u8, pos >> level));
        pos += 1 << level;
        right ^= 1 << level;
    }
}

/// How many perfect subtrees cover `[begin, end)`.
pub(crate) fn range_size(begin: u64, end: u64) -> usize {
    let (left, right) = decompose(begin, end);
    (left.count_ones() + right.count_ones()) as usize
}

/// The sizes of the left and right parts of the compact range `[begin, end)`, as bit masks:
/// bit `l` set means one subtree of level `l` on that side.
fn decompose(begin: u64, end: u64) -> (u64, u64) {
    if begin >= end {
        return (0, 0);
    }
    if begin == 0 {
        return (0, end);
    }
    let before = begin - 1;
    // Below the level where the paths to leaves `begin - 1` and `end` part, the range's
    // left part is every subtree right of the path to `begin - 1` (its zero bits) and
    // its right part every subtree left of the path to `end` (its one bits).
    let split = 63 - (before ^ end).leading_zeros();
    let mask = (1_u64 << split) - 1;
    (!before & mask, end & mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn node_ids_cover_what_they_say() {
        let n = NodeId::new(3, 5);
        assert_eq!(n.coverage(), (40, 48));
        assert_eq!(n.parent(), NodeId::new(4, 2));
        assert_eq!(n.sibling(), NodeId::new(3, 4));
        assert_eq!(NodeId::new(3, 4).sibling(), n);
        assert_eq!(NodeId::leaf(7).coverage(), (7, 8));
    }

    #[test]
    fn ids_for_size_is_one_node_per_set_bit_biggest_first() {
        assert!(ids_for_size(0).is_empty());
        assert_eq!(ids_for_size(1), [NodeId::new(0, 0)]);
        assert_eq!(ids_for_size(8), [NodeId::new(3, 0)]);
        assert_eq!(
            ids_for_size(13),
            [NodeId::new(3, 0), NodeId::new(2, 2), NodeId::new(0, 12)]
        );
        assert_eq!(ids_for_size(u64::MAX).len(), 64);
    }

    #[test]
    fn append_returns_every_completed_node_and_matches_the_reference_root() {
        let all = leaves(70);
        let mut range = CompactRange::new();
        assert_eq!(range.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            let completed = range.append(*leaf);
            let i = i as u64;
            assert_eq!(completed[0], (NodeId::leaf(i), *leaf));
            // Leaf i completes one node per trailing one bit of i, each the parent of the last.
            assert_eq!(completed.len() as u32, i.trailing_ones() + 1);
            for pair in completed.windows(2) {
                assert_eq!(pair[1].0, pair[0].0.parent());
            }
            // Each completed node ends exactly at the new size.
            for (id, _) in &completed {
                assert_eq!(id.coverage().1, i + 1);
            }
            assert_eq!(range.size(), i + 1);
            assert_eq!(range.ids(), ids_for_size(i + 1));
            assert_eq!(range.root(), root_from_leaves(&all[..=i as usize]));
        }
    }

    #[test]
    fn from_parts_checks_the_hash_count_and_round_trips() {
        let mut range = CompactRange::new();
        for leaf in leaves(11) {
            range.append(leaf);
        }
        let again = CompactRange::from_parts(11, range.hashes().to_vec()).unwrap();
        assert_eq!(again, range);
        assert_eq!(
            CompactRange::from_parts(11, vec![[0; 32]; 2]),
            Err(CompactRangeError::WrongHashCount {
                size: 11,
                want: 3,
                got: 2
            })
        );
        assert_eq!(CompactRange::from_parts(0, vec![]), Ok(CompactRange::new()));
    }

    #[test]
    fn range_nodes_tile_the_range_exactly() {
        for begin in 0..40_u64 {
            for end in begin..80 {
                let mut ids = Vec::new();
                range_nodes(begin, end, &mut ids);
                assert_eq!(ids.len(), range_size(begin, end), "[{begin}, {end})");
                let mut pos = begin;
                for id in ids {
                    let (b, e) = id.coverage();
                    assert_eq!(
                        b, pos,
                        "[{begin}, {end}): {id:?} starts where the last ended"
                    );
                    pos = e;
                }
                assert_eq!(pos, end, "[{begin}, {end}) is covered exactly");
            }
        }
    }
}
