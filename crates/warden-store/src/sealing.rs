//! Signing keys at rest: sealed with the operator's master key (`WARDEN_MASTER_KEY`) when
//! one is configured, so a copy of the database (a backup, a replica, a stolen disk) does
//! not hand out the keys that sign tokens and checkpoints.
//!
//! A sealed secret is `"WMK1" ‖ nonce (12) ‖ AES-256-GCM(secret) ‖ tag (16)`, 64 bytes; the
//! associated data is the key's purpose and id, so a sealed secret moved to another row
//! does not open. A plain secret is the 32 raw bytes (no master key configured).

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The prefix that marks a sealed secret (and its format's version).
const SEALED_TAG: &[u8; 4] = b"WMK1";

/// The operator's key that seals signing keys in the store.
#[derive(Clone)]
pub struct MasterKey(std::sync::Arc<LessSafeKey>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// Why a master key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealingError {
    /// The configured master key is not base64 of 32 bytes.
    #[error("WARDEN_MASTER_KEY must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)")]
    BadMasterKey,
    /// A stored key is sealed and no master key is configured.
    #[error("signing key {kid} is encrypted at rest: set WARDEN_MASTER_KEY")]
    NoMasterKey {
        /// The key's id.
        kid: String,
    },
    /// A stored key does not open with the configured master key.
    #[error(
        "signing key {kid} does not decrypt with this WARDEN_MASTER_KEY (a different key, or the row was altered)"
    )]
    WrongMasterKey {
        /// The key's id.
        kid: String,
    },
}

impl MasterKey {
    /// From its base64 text (standard alphabet, padded or not), which must hold 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SealingError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| SealingError::BadMasterKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealingError::BadMasterKey)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealingError::BadMasterKey)?;
        Ok(Self(std::sync::Arc::new(LessSafeKey::new(key))))
    }

    /// Seal `secret` for the key `kid` of `purpose`.
    pub(crate) fn seal(&self, purpose: &str, kid: &str, secret: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let mut data = secret.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(purpose, kid)),
                &mut data,
            )
            .expect("a 32-byte secret seals");
        let mut out = Vec::with_capacity(SEALED_TAG.len() + NONCE_LEN + data.len());
        out.extend_from_slice(SEALED_TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out
    }
}

/// Whether a stored secret is sealed.
pub(crate) fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(SEALED_TAG) && stored.len() > SEALED_TAG.len() + NONCE_LEN
}

/// The secret of a stored key: as stored if plain, opened with `master` if sealed.
pub(crate) fn open(
    master: Option<&MasterKey>,
    purpose: &str,
    kid: &str,
    stored: &[u8],
) -> Result<Vec<u8>, SealingError> {
    if !is_sealed(stored) {
        return Ok(stored.to_vec());
    }
    let master = master.ok_or_else(|| SealingError::NoMasterKey {
        kid: kid.to_owned(),
    })?;
    let wrong = || SealingError::WrongMasterKey {
        kid: kid.to_owned(),
    };
    let (nonce, sealed) = stored[SEALED_TAG.len()..].split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut data = sealed.to_vec();
    let plain = master
        .0
        .open_in_place(nonce, Aad::from(aad(purpose, kid)), &mut data)
        .map_err(|_| wrong())?;
    Ok(plain.to_vec())
}

fn aad(purpose: &str, kid: &str) -> Vec<u8> {
    format!("warden signing key\0{purpose}\0{kid}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32]))
            .unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_master_key_purpose_and_kid() {
        let secret = [7u8; 32];
        let sealed = key(1).seal("token", "k1", &secret);
        assert_eq!(sealed.len(), 64);
        assert!(is_sealed(&sealed) && !is_sealed(&secret));
        assert!(!sealed.windows(32).any(|w| w == secret));
        assert_eq!(open(Some(&key(1)), "token", "k1", &sealed).unwrap(), secret);
        for (master, purpose, kid) in [
            (Some(key(2)), "token", "k1"),
            (Some(key(1)), "checkpoint", "k1"),
            (Some(key(1)), "token", "k2"),
        ] {
            assert!(matches!(
                open(master.as_ref(), purpose, kid, &sealed),
                Err(SealingError::WrongMasterKey { .. })
            ));
        }
        assert_eq!(
            open(None, "token", "k1", &sealed),
            Err(SealingError::NoMasterKey { kid: "k1".into() })
        );
        let mut flipped = sealed.clone();
        flipped[40] ^= 1;
        assert!(open(Some(&key(1)), "token", "k1", &flipped).is_err());
        // Plain secrets (no master key when they were stored) read as they are.
        assert_eq!(open(None, "token", "k1", &secret).unwrap(), secret);
    }

    #[test]
    fn a_master_key_must_be_base64_of_32_bytes() {
        for bad in ["", "not base64!", "AAAA", &"A".repeat(60)] {
            assert_eq!(
                MasterKey::from_base64(bad).unwrap_err(),
                SealingError::BadMasterKey,
                "{bad:?}"
            );
        }
        let text = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert!(MasterKey::from_base64(&text).is_ok());
        assert!(MasterKey::from_base64(text.trim_end_matches('=')).is_ok());
        assert_eq!(format!("{:?}", key(1)), "MasterKey(***)");
    }
}
