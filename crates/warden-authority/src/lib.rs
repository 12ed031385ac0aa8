//! Warden token authority: the pure cryptographic core behind operator tokens.
//!
//! Operator actions in Warden are authorised by short-lived, scoped JWTs. This
//! crate mints and checks them, publishes the verifying keys as a JWKS, and
//! hashes the client secrets that service accounts exchange for tokens. It does
//! no I/O: storage, clocks and HTTP belong to the server.
//!
//! # Why a hand-rolled EdDSA JWS instead of `jsonwebtoken`
//!
//! * **Lean build.** The project is built and tested on 2-core machines;
//!   `jsonwebtoken` pulls in a crypto backend and multi-algorithm machinery we
//!   would never use. Compact JWS with a single algorithm is ~200 lines on top
//!   of `ed25519-dalek`, which we need anyway for keys.
//! * **EdDSA only, strictly.** There is exactly one accepted `alg`
//!   (`"EdDSA"`, byte-for-byte), base64url is decoded canonically (no padding,
//!   no standard-alphabet characters, no non-zero trailing bits), signatures
//!   are checked with `verify_strict`, and `crit` headers are refused.
//! * **No algorithm confusion.** Because no HMAC, RSA or `none` code path
//!   exists, a token cannot talk the verifier into treating a public key as a
//!   shared secret or skipping the signature: the header only ever selects
//!   *which* Ed25519 key to use, never *how* to verify.
//!
//! # Layout
//!
//! * [`secrets`] — [`ClientSecret`] generation and [`SecretDigest`] (SHA-256,
//!   constant-time comparison).
//! * [`keys`] — Ed25519 [`SigningKey`] / [`VerifyingKey`], deterministic key
//!   ids, JWK/JWKS import and export ([`KeySet`]).
//! * [`jwt`] — compact JWS signing ([`sign_jwt`]) and strict verification
//!   ([`verify_jwt`], [`Validation`], [`JwtError`]).
//! * [`claims`] — the typed [`Claims`] Warden puts in, and reads out of, a
//!   verified token.
#![forbid(unsafe_code)]

pub mod claims;
pub mod jwt;
pub mod keys;
pub mod secrets;

pub use claims::Claims;
pub use jwt::{JwtError, MAX_TOKEN_LEN, Validation, sign_jwt, verify_jwt};
pub use keys::{KeySet, SigningKey, VerifyingKey, kid_for_public_key};
pub use secrets::{ClientSecret, SecretDigest};

/// Errors produced by this crate (token rejections are wrapped as [`AuthorityError::Jwt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The operating system's random number generator failed.
    #[error("operating system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// A secret digest was not 64 hexadecimal characters.
    #[error("invalid secret digest: {0}")]
    InvalidDigest(&'static str),
    /// A JWK could not be used as an Ed25519 verifying key.
    #[error("invalid JWK: {0}")]
    InvalidJwk(String),
    /// A JWKS document was not shaped like `{"keys":[...]}`.
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
    /// A JWKS document contained no usable Ed25519 signing keys.
    #[error("JWKS contains no usable Ed25519 keys")]
    NoUsableKeys,
    /// Two keys in one key set share a `kid`, which would make lookup ambiguous.
    #[error("duplicate key id in key set: {0}")]
    DuplicateKeyId(String),
    /// A token was rejected.
    #[error(transparent)]
    Jwt(#[from] JwtError),
}

/// Convenience alias for results carrying [`AuthorityError`].
pub type Result<T, E = AuthorityError> = std::result::Result<T, E>;

/// Strict base64url helpers shared by the modules.
///
/// Everything in JOSE is base64url *without* padding. We spell the engine
/// configuration out rather than relying on `URL_SAFE_NO_PAD`'s defaults so the
/// strictness is visible here: padding is refused and non-zero trailing bits are
/// refused, which makes every byte string have exactly one accepted encoding.
/// That uniqueness is what lets the "flip any byte" property hold.
pub(crate) mod b64 {
    use base64::Engine as _;
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

    const STRICT_URL_NO_PAD: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    );

    /// Encodes as base64url without padding.
    pub(crate) fn encode(bytes: impl AsRef<[u8]>) -> String {
        STRICT_URL_NO_PAD.encode(bytes)
    }

    /// Decodes canonical base64url without padding, or `None`.
    pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
        STRICT_URL_NO_PAD.decode(text).ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips() {
            for len in 0..70 {
                let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
                assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
            }
        }

        #[test]
        fn rejects_padding_and_standard_alphabet() {
            assert_eq!(decode("YQ").unwrap(), b"a");
            assert!(decode("YQ==").is_none());
            assert!(decode("YQ=").is_none());
            // `+` and `/` belong to the standard alphabet, not base64url.
            assert!(decode("-_8").is_some());
            assert!(decode("+/8").is_none());
            assert!(decode(" YQ").is_none());
        }

        #[test]
        fn rejects_non_canonical_trailing_bits() {
            // "YQ" is canonical for b"a"; "YR".."YT" differ only in discarded bits.
            for alias in ["YR", "YS", "YT"] {
                assert!(decode(alias).is_none(), "{alias} must be rejected");
            }
            // The stock URL_SAFE_NO_PAD engine behaves the same; pin that too.
            use base64::Engine as _;
            assert!(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode("YR")
                    .is_err()
            );
        }
    }
}
