//! Client secrets for service accounts and their stored digests.
//!
//! A [`ClientSecret`] is shown to its owner once; the server keeps only its
//! [`SecretDigest`]. The digest is a single unsalted SHA-256, not a slow
//! password hash: the secret carries 256 bits from the OS RNG, so there is no
//! dictionary to attack and stretching would only add latency to every token
//! exchange. crates.io stores its API tokens the same way.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::{AuthorityError, Result, b64};

/// Prefix of every generated secret, so leaked secrets are recognisable by scanners.
pub const CLIENT_SECRET_PREFIX: &str = "ws_";

/// A client secret; `Debug` never prints it, read it with [`ClientSecret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Generates `ws_` + base64url-no-pad of 256 random bits (46 characters).
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(AuthorityError::Random)?;
        let secret = Self(format!("{CLIENT_SECRET_PREFIX}{}", b64::encode(bytes)));
        // Best effort only: without `zeroize` the compiler may elide this, but
        // it costs nothing and usually keeps the raw bytes off the stack.
        bytes.fill(0);
        std::hint::black_box(&bytes);
        Ok(secret)
    }

    /// Returns the secret text, for showing it to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns the digest to store in place of the secret.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest::of(&self.0)
    }
}

impl From<String> for ClientSecret {
    /// Wraps a secret obtained elsewhere (environment, prompt) so it cannot be logged by accident.
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(..)")
    }
}

/// SHA-256 of a client secret's UTF-8 bytes, as stored by the server.
#[derive(Clone, Copy)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Hashes `secret` (the constructor behind [`ClientSecret::digest`]).
    fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Wraps raw digest bytes, e.g. as loaded from the database.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Encodes the digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        use fmt::Write as _;
        self.0.iter().fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// Parses 64 hex characters (either case) produced by [`SecretDigest::to_hex`].
    pub fn from_hex(hex: &str) -> Result<Self> {
        if hex.len() != 64 {
            return Err(AuthorityError::InvalidDigest("expected 64 hex characters"));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
                _ => return Err(AuthorityError::InvalidDigest("non-hex character")),
            }
        }
        Ok(Self(out))
    }

    /// Whether `presented` hashes to this digest, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        // Hashing first means the comparison input is fixed-length, so neither
        // the length nor the content of `presented` leaks through timing.
        bool::from(Self::of(presented).0.ct_eq(&self.0))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl PartialEq for SecretDigest {
    fn eq(&self, other: &Self) -> bool {
        // Constant time even here, so no caller can build a timing oracle by
        // comparing a stored digest with `==`.
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SecretDigest {}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A digest of a 256-bit secret is not itself sensitive, but printing a
        // short prefix is enough to correlate log lines.
        write!(f, "SecretDigest({}..)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_shape() {
        let s = ClientSecret::generate().unwrap();
        let text = s.expose();
        assert_eq!(text.len(), 3 + 43);
        assert!(text.starts_with("ws_"));
        assert_eq!(b64::decode(&text[3..]).unwrap().len(), 32);
        assert_ne!(s, ClientSecret::generate().unwrap());
    }

    #[test]
    fn debug_redacts() {
        let s = ClientSecret::generate().unwrap();
        let dbg = format!("{s:?}");
        assert_eq!(dbg, "ClientSecret(..)");
        assert!(!dbg.contains(&s.expose()[3..]));
        let d = format!("{:?}", s.digest());
        assert!(!d.contains(&s.digest().to_hex()));
    }

    #[test]
    fn digest_is_sha256_of_utf8() {
        let s = ClientSecret::from("abc".to_owned());
        assert_eq!(
            s.digest().to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn matches_only_the_same_secret() {
        let s = ClientSecret::generate().unwrap();
        let d = s.digest();
        assert!(d.matches(s.expose()));
        assert!(!d.matches(""));
        assert!(!d.matches(&s.expose()[..45]));
        assert!(!d.matches(&format!("{} ", s.expose())));
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let d = ClientSecret::generate().unwrap().digest();
        let hex = d.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(SecretDigest::from_hex(&hex).unwrap(), d);
        assert_eq!(SecretDigest::from_hex(&hex.to_uppercase()).unwrap(), d);
        assert_eq!(SecretDigest::from_bytes(*d.as_bytes()), d);
        assert!(SecretDigest::from_hex(&hex[..62]).is_err());
        assert!(SecretDigest::from_hex(&format!("{hex}00")).is_err());
        assert!(SecretDigest::from_hex(&format!("{}zz", &hex[..62])).is_err());
        // Multi-byte UTF-8 of the right byte length must not panic.
        assert!(SecretDigest::from_hex(&"é".repeat(32)).is_err());
    }
}
