//! C2SP `tlog-checkpoint` bodies, and checkpoints signed as notes.
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 root hash>
//! [extension lines]
//! ```
//!
//! # Decisions
//!
//! - **Strict parsing.** At least three lines, every line non-empty, the text ending in a
//!   newline; the size is ASCII decimal without sign or leading zeros ("0" alone for the
//!   empty tree) that fits a `u64`; the root is canonical padded base64 of exactly 32
//!   bytes. Anything else is refused rather than read leniently, so one checkpoint has one
//!   spelling.
//! - **The origin is opaque** beyond being non-empty and free of control characters: the
//!   spec says clients must not assume it is a URL. Callers compare it with the origin they
//!   expect — a valid signature only says the key signed *some* log's checkpoint, and one
//!   Warden key signs every tenant's log.
//! - **Signing checks the body first**: [`SignedCheckpoint::sign`] refuses a
//!   [`Checkpoint`] whose fields would not parse back to itself (an origin with a newline,
//!   an empty extension line), so a malformed checkpoint can never be signed.

use crate::hash::{Hash, from_base64, to_base64};
use crate::note::{self, NoteError, Signer, VerifierKey};

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The body's syntax is wrong.
    #[error("malformed checkpoint: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The signed note around it was refused.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
}

/// A log's tree head: which log, how many leaves, and their root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `warden.example/audit/acme`.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 9162 root hash of those leaves.
    pub root: Hash,
    /// Opaque extra lines (discouraged by the spec; Warden writes none).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: `origin\nsize\nbase64(root)\n` then one line per extension.
    pub fn to_body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            to_base64(&self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parse a checkpoint body (a note's text).
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let malformed = |reason| CheckpointError::Malformed { reason };
        let body = body
            .strip_suffix('\n')
            .ok_or(malformed("does not end in a newline"))?;
        if body.chars().any(|c| c < ' ' && c != '\n') {
            return Err(malformed("contains a control character"));
        }
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        let (Some(size), Some(root)) = (lines.next(), lines.next()) else {
            return Err(malformed("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(malformed("empty origin"));
        }
        let size = parse_decimal(size).ok_or(malformed(
            "tree size is not a decimal number without leading zeros",
        ))?;
        let root = from_base64(root).ok_or(malformed("root is not base64 of 32 bytes"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(malformed("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// ASCII decimal with no sign and no leading zeros (but "0"), fitting a `u64`.
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// A checkpoint whose note signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed body.
    pub checkpoint: Checkpoint,
    /// The known keys that signed it.
    pub verified_by: Vec<VerifierKey>,
}

impl SignedCheckpoint {
    /// Sign `checkpoint` as a note with every signer; refuses a checkpoint whose fields
    /// would not survive a round trip through its body.
    pub fn sign(checkpoint: &Checkpoint, signers: &[&Signer]) -> Result<String, CheckpointError> {
        let body = checkpoint.to_body();
        if Checkpoint::parse(&body).as_ref() != Ok(checkpoint) {
            return Err(CheckpointError::Malformed {
                reason: "its fields do not round-trip through the body (newline in the origin or an empty extension?)",
            });
        }
        Ok(note::sign(&body, signers)?)
    }

    /// Verify a signed checkpoint note against `verifiers` and parse its body.
    pub fn open(signed_note: &str, verifiers: &[VerifierKey]) -> Result<Self, CheckpointError> {
        let opened = note::open(signed_note, verifiers)?;
        Ok(Self {
            checkpoint: Checkpoint::parse(&opened.text)?,
            verified_by: opened.verified_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_canonical() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("20852163"), Some(20_852_163));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "18446744073709551616",
            "1e3",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
