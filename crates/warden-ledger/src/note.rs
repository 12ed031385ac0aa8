//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 keys, compatible with Go's
//! `golang.org/x/mod/sumdb/note`.
//!
//! ```text
//! <text, ending in a newline>
//!
//! — <key name> <base64(4-byte key id ‖ 64-byte Ed25519 signature)>
//! ```
//!
//! # Decisions
//!
//! - **Only Ed25519 (signature type 0x01).** The spec asks implementations to support only
//!   the types their design needs. A verifier key of any other type is refused when parsed;
//!   a *signature* from an unknown key, of any type, is ignored as the spec requires.
//! - **Key ids** are `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian; verifier
//!   keys use Go's `<name>+<8 hex digits>+<base64(0x01 ‖ public key)>` form, and
//!   [`Signer::parse_private_key`] reads Go's `PRIVATE+KEY+…` signer keys, so keys can be
//!   made and checked with Go's tools too.
//! - **Opening is strict.** The note must be UTF-8 with no control character but newline,
//!   end in a signature block after its last blank line, and every signature line must be
//!   well formed (valid name, base64 of at least 5 bytes); more than
//!   [`MAX_SIGNATURES`] lines is refused, as Go does. Signatures from unknown keys are
//!   ignored; *every* signature whose name and id match a known key is verified (with
//!   `verify_strict`) and any failure rejects the whole note — stricter than Go, which
//!   checks only the first of repeated signatures by one key. A note no known key signed
//!   is refused.
//! - **Names** are non-empty with no Unicode white space and no `+` (the spec), and no
//!   control characters either (a note could not carry them anyway).
//! - Two *different* verifier keys with the same name and key id make a note ambiguous and
//!   are refused (as Go does); the same key listed twice is harmless.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Most signature lines a note may carry (Go's limit; the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// The signature type byte of Ed25519 in key ids and verifier keys.
const ALG_ED25519: u8 = 0x01;

/// What starts every signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note, key or signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// The note's syntax is wrong.
    #[error("malformed note: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("the note has {count} signatures, more than the {MAX_SIGNATURES} allowed")]
    TooManySignatures {
        /// Signature lines found.
        count: usize,
    },
    /// No signature is from a known key.
    #[error("the note has no signature from a known key (signed by: {})", signed_by.join(", "))]
    NoKnownSignature {
        /// `name+keyid` of every key that did sign it.
        signed_by: Vec<String>,
    },
    /// A signature from a known key does not verify.
    #[error("invalid signature for key {key}")]
    InvalidSignature {
        /// `name+keyid` of the key.
        key: String,
    },
    /// Two different known keys share a name and key id.
    #[error("ambiguous key {key}: two different verifier keys share its name and key id")]
    AmbiguousKey {
        /// `name+keyid`.
        key: String,
    },
    /// A key name breaks the naming rules.
    #[error(
        "invalid key name {name:?}: a name is non-empty, with no spaces, control characters or '+'"
    )]
    InvalidName {
        /// The name.
        name: String,
    },
    /// A verifier key string is malformed.
    #[error("malformed verifier key: {reason}")]
    MalformedVerifierKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// A signer key string is malformed (no part of the key is echoed).
    #[error("malformed signer key: {reason}")]
    MalformedSignerKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// A key of a signature type this crate does not support.
    #[error("unsupported signature type {alg:#04x}: only Ed25519 (0x01) is supported")]
    UnknownAlgorithm {
        /// The type byte.
        alg: u8,
    },
    /// Signing needs at least one signer.
    #[error("a note needs at least one signer")]
    NoSigners,
}

/// The key id of an Ed25519 key: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    raw_key_id(name, &[&[ALG_ED25519], public_key.as_slice()].concat())
}

/// The key id over an already type-prefixed key encoding.
fn raw_key_id(name: &str, typed_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(typed_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Whether `name` may name a key.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Exactly eight hex digits (no sign, no `0x`), as a key id.
fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

/// `name+keyid`, how keys are named in errors.
fn key_label(name: &str, key_id: u32) -> String {
    format!("{name}+{key_id:08x}")
}

/// A named Ed25519 signing key. Its `Debug` shows the name and key id, never the key.
#[derive(Clone)]
pub struct Signer {
    /// The key name written on signature lines.
    name: String,
    /// The private key.
    key: SigningKey,
    /// Cached key id, written before each signature.
    key_id: u32,
}

impl Signer {
    /// A signer named `name` using `key`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_name(name)?;
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// A signer from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::from_bytes(seed))
    }

    /// Parse a Go `sumdb/note` signer key: `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖
    /// seed)>`.
    pub fn parse_private_key(skey: &str) -> Result<Self, NoteError> {
        let malformed = |reason| NoteError::MalformedSignerKey { reason };
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(malformed("does not start with PRIVATE+KEY+"))?;
        let (name, rest) = rest.split_once('+').ok_or(malformed("missing key id"))?;
        let (hex, encoded) = rest.split_once('+').ok_or(malformed("missing key"))?;
        check_name(name)?;
        let claimed_id = parse_key_id(hex).ok_or(malformed("key id is not 8 hex digits"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| malformed("key is not base64"))?;
        let (&alg, seed) = bytes.split_first().ok_or(malformed("empty key"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::UnknownAlgorithm { alg });
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| malformed("an Ed25519 seed is 32 bytes"))?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != claimed_id {
            return Err(malformed("key id does not match the name and key"));
        }
        Ok(signer)
    }

    /// The Go `sumdb/note` signer key string. It is the secret: store it like one.
    pub fn to_private_key(&self) -> String {
        let seed = [&[ALG_ED25519], self.key.as_bytes().as_slice()].concat();
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(seed)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public half, to publish and to verify with.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// `— <name> <base64(key id ‖ signature)>\n` over `text`.
    fn signature_line(&self, text: &str) -> String {
        let signature = self.key.sign(text.as_bytes());
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&signature.to_bytes());
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(bytes)
        )
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A named Ed25519 public key that notes are verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name signature lines carry.
    name: String,
    /// The key id signatures start with.
    key_id: u32,
    /// The public key.
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key named `name` for the Ed25519 public key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key =
            VerifyingKey::from_bytes(public_key).map_err(|_| NoteError::MalformedVerifierKey {
                reason: "not an Ed25519 public key",
            })?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, public_key),
            key,
        })
    }

    /// Parse Go's `<name>+<8 hex digit key id>+<base64(0x01 ‖ public key)>` form.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let malformed = |reason| NoteError::MalformedVerifierKey { reason };
        let (name, rest) = vkey.split_once('+').ok_or(malformed("missing key id"))?;
        let (hex, encoded) = rest.split_once('+').ok_or(malformed("missing key"))?;
        check_name(name)?;
        let claimed_id = parse_key_id(hex).ok_or(malformed("key id is not 8 hex digits"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| malformed("key is not base64"))?;
        if bytes.is_empty() {
            return Err(malformed("empty key"));
        }
        if raw_key_id(name, &bytes) != claimed_id {
            return Err(malformed("key id does not match the name and key"));
        }
        let (&alg, key) = bytes.split_first().ok_or(malformed("empty key"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::UnknownAlgorithm { alg });
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| malformed("an Ed25519 public key is 32 bytes"))?;
        Self::new(name, key)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` (without its key id) is this key's signature of `text`.
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| self.key.verify_strict(text.as_bytes(), &s).is_ok())
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let typed = [&[ALG_ED25519], self.key.as_bytes().as_slice()].concat();
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(typed)
        )
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One signature line, parsed but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The key name on the line.
    pub name: String,
    /// The key id (the first four decoded bytes).
    pub key_id: u32,
    /// The signature proper (the bytes after the key id).
    pub signature: Vec<u8>,
}

/// A note split into its text and signatures, none verified yet.
///
/// Its text must be ignored until [`Note::verify`] succeeds; this type exists so a caller
/// can learn which keys signed, or read a checkpoint's size to plan work, before the keys
/// are at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in a newline.
    text: String,
    /// Every signature line, in order.
    signatures: Vec<Signature>,
}

impl Note {
    /// Split a signed note into text and signature lines, checking its syntax.
    pub fn parse(msg: &str) -> Result<Self, NoteError> {
        let malformed = |reason| NoteError::Malformed { reason };
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed("contains a control character other than newline"));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or(malformed("no blank line before the signatures"))?;
        let (text, block) = (&msg[..=split], &msg[split + 2..]);
        if block.is_empty() {
            return Err(malformed("no signature lines after the last blank line"));
        }
        let Some(block) = block.strip_suffix('\n') else {
            return Err(malformed("does not end in a newline"));
        };
        let count = block.split('\n').count();
        if count > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count });
        }
        let signatures = block
            .split('\n')
            .map(parse_signature_line)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text (unverified until [`Note::verify`] succeeds).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Verify against the known `verifiers`: every signature by a known key must verify,
    /// and at least one must exist.
    pub fn verify(&self, verifiers: &[VerifierKey]) -> Result<Opened, NoteError> {
        let mut verified_by: Vec<VerifierKey> = Vec::new();
        for sig in &self.signatures {
            let mut matching = verifiers
                .iter()
                .filter(|v| v.name == sig.name && v.key_id == sig.key_id);
            let Some(verifier) = matching.next() else {
                continue;
            };
            if matching.any(|other| other.key != verifier.key) {
                return Err(NoteError::AmbiguousKey {
                    key: key_label(&sig.name, sig.key_id),
                });
            }
            if !verifier.verifies(&self.text, &sig.signature) {
                return Err(NoteError::InvalidSignature {
                    key: key_label(&sig.name, sig.key_id),
                });
            }
            if !verified_by.contains(verifier) {
                verified_by.push(verifier.clone());
            }
        }
        if verified_by.is_empty() {
            let mut signed_by: Vec<String> = Vec::new();
            for sig in &self.signatures {
                let label = key_label(&sig.name, sig.key_id);
                if !signed_by.contains(&label) {
                    signed_by.push(label);
                }
            }
            return Err(NoteError::NoKnownSignature { signed_by });
        }
        Ok(Opened {
            text: self.text.clone(),
            verified_by,
        })
    }
}

fn parse_signature_line(line: &str) -> Result<Signature, NoteError> {
    let malformed = |reason| NoteError::Malformed { reason };
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or(malformed(
        "a line after the last blank line is not a signature",
    ))?;
    let (name, encoded) = rest
        .split_once(' ')
        .ok_or(malformed("a signature line has no signature"))?;
    if !is_valid_name(name) {
        return Err(malformed("a signature line has an invalid key name"));
    }
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|_| malformed("a signature is not base64"))?;
    if bytes.len() < 5 {
        return Err(malformed(
            "a signature is shorter than a key id and one byte",
        ));
    }
    let (id, signature) = bytes.split_at(4);
    Ok(Signature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// A note whose signatures verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The known keys that signed it, each once, in signature order.
    pub verified_by: Vec<VerifierKey>,
}

/// Sign `text` (which must end in a newline) with every signer, in order.
pub fn sign(text: &str, signers: &[&Signer]) -> Result<String, NoteError> {
    if signers.is_empty() {
        return Err(NoteError::NoSigners);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            count: signers.len(),
        });
    }
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed {
            reason: "the text does not end in a newline",
        });
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed {
            reason: "contains a control character other than newline",
        });
    }
    let mut note = String::with_capacity(text.len() + 1 + 128 * signers.len());
    note.push_str(text);
    note.push('\n');
    for signer in signers {
        note.push_str(&signer.signature_line(text));
    }
    Ok(note)
}

/// Parse `note` and verify it against `verifiers` ([`Note::parse`] then [`Note::verify`]).
pub fn open(note: &str, verifiers: &[VerifierKey]) -> Result<Opened, NoteError> {
    Note::parse(note)?.verify(verifiers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        for good in ["a", "example.com/log", "PeterNeumann", "é"] {
            assert!(is_valid_name(good), "{good:?}");
        }
        for bad in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{1}b",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn key_ids_are_exactly_eight_hex_digits() {
        assert_eq!(parse_key_id("c74f20a3"), Some(0xc74f_20a3));
        assert_eq!(parse_key_id("C74F20A3"), Some(0xc74f_20a3));
        for bad in ["+74f20a3", "c74f20a", "c74f20a33", "0xc74f20", "c74f20g3"] {
            assert_eq!(parse_key_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signer_debug_hides_the_key() {
        let signer = Signer::from_seed("k", &[9; 32]).unwrap();
        let debug = format!("{signer:?}");
        assert!(debug.contains("\"k\""), "{debug}");
        let seed = STANDARD.encode([9_u8; 32]);
        assert!(!debug.contains(&seed[..10]), "{debug}");
    }
}
