//! The RFC 9162 §2.1 hashes: SHA-256 with one domain-separation byte, so a leaf can never
//! be passed off as an interior node or the other way round.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of one log entry's bytes.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node from its two children.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A hash in the standard, padded base64 every C2SP format and Warden's API use.
pub fn to_base64(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// A hash from standard, padded, canonical base64; `None` unless it is exactly 32 bytes.
pub fn from_base64(text: &str) -> Option<Hash> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn known_answers() {
        // RFC 6962 test data as used by transparency-dev/merkle: the empty tree, and the
        // one-leaf tree whose only leaf is the empty string.
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // Root of the two leaves "" and 0x00.
        assert_eq!(
            hex(&node_hash(&leaf_hash(b""), &leaf_hash(&[0x00]))),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
    }

    #[test]
    fn base64_round_trips_and_refuses_other_lengths() {
        let h = leaf_hash(b"x");
        assert_eq!(from_base64(&to_base64(&h)), Some(h));
        assert_eq!(from_base64("ZG9uJ3QgY2FyZSAx"), None, "12 bytes");
        assert_eq!(from_base64(""), None);
        assert_eq!(from_base64("not base64!"), None);
        // Unpadded input is refused: one spelling per hash.
        assert_eq!(from_base64(to_base64(&h).trim_end_matches('=')), None);
    }
}
