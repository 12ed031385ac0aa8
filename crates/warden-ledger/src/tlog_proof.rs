//! The C2SP `tlog-proof` file: an offline-verifiable proof that one entry is in a log.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 opaque data>        (optional)
//! index <leaf index, decimal>
//! <base64 inclusion proof hash>      (zero or more, leaf's sibling first)
//!
//! <the signed checkpoint note, verbatim>
//! ```
//!
//! # Decisions
//!
//! - **Parsing does not verify**: [`TlogProof::parse`] checks the syntax and keeps the
//!   checkpoint note verbatim; [`verify`] opens that note with the caller's keys and checks
//!   the inclusion proof against its root. The `extra` data is returned but, as the spec
//!   says, is not authenticated by anything.
//! - Strict as the other formats: the index is canonical decimal, each hash canonical
//!   base64 of 32 bytes, the hash lines end at the first empty line, and the checkpoint
//!   must be there.
//! - [`verify`] returns the signed checkpoint; the caller must check its `origin` (one
//!   Warden key signs every tenant's log, so a valid signature alone does not say *which*
//!   log the entry is in).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::{CheckpointError, SignedCheckpoint, parse_decimal};
use crate::hash::{Hash, from_base64, leaf_hash, to_base64};
use crate::note::VerifierKey;
use crate::proof::{ProofError, verify_inclusion};

/// The first line of every proof file.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Why a proof file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlogProofError {
    /// The file's syntax is wrong.
    #[error("malformed tlog-proof: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The checkpoint was refused.
    #[error("tlog-proof checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not verify against the checkpoint.
    #[error("tlog-proof inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
}

/// A parsed `tlog-proof` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated application data, if the file has an `extra` line.
    pub extra: Option<Vec<u8>>,
    /// The entry's leaf index.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The file's text.
    pub fn format(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&STANDARD.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.hashes {
            out.push_str(&to_base64(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parse a proof file (without verifying it).
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        let malformed = |reason| TlogProofError::Malformed { reason };
        let (header, mut rest) = text.split_once('\n').ok_or(malformed("no header line"))?;
        if header != HEADER {
            return Err(malformed("the first line is not c2sp.org/tlog-proof@v1"));
        }
        let mut next_line = || -> Result<&str, TlogProofError> {
            let (line, after) = rest
                .split_once('\n')
                .ok_or(malformed("ends before the checkpoint"))?;
            rest = after;
            Ok(line)
        };
        let mut line = next_line()?;
        let extra = match line.strip_prefix("extra ") {
            Some(encoded) => {
                let extra = STANDARD
                    .decode(encoded)
                    .map_err(|_| malformed("extra data is not base64"))?;
                line = next_line()?;
                Some(extra)
            }
            None => None,
        };
        let index = line
            .strip_prefix("index ")
            .ok_or(malformed("missing the index line"))?;
        let index = parse_decimal(index).ok_or(malformed(
            "the index is not a decimal number without leading zeros",
        ))?;
        let mut hashes = Vec::new();
        loop {
            let line = next_line()?;
            if line.is_empty() {
                break;
            }
            hashes.push(
                from_base64(line).ok_or(malformed("a proof hash is not base64 of 32 bytes"))?,
            );
        }
        if rest.is_empty() {
            return Err(malformed("no checkpoint after the proof"));
        }
        Ok(Self {
            extra,
            index,
            hashes,
            checkpoint: rest.to_owned(),
        })
    }
}

/// The entry a proof is checked for: its bytes, or its leaf hash already computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf<'a> {
    /// The entry's bytes (for Warden, its RFC 8785 canonical JSON); hashed as a leaf here.
    Data(&'a [u8]),
    /// The entry's leaf hash.
    Hash(Hash),
}

/// What a verified proof establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The entry's leaf index.
    pub index: u64,
    /// The unauthenticated extra data, if any.
    pub extra: Option<Vec<u8>>,
    /// The checkpoint the entry is included in; check its origin.
    pub checkpoint: SignedCheckpoint,
}

/// Parse `proof_file`, verify its checkpoint with `verifiers` and check that `leaf` is
/// included at its index.
pub fn verify(
    proof_file: &str,
    leaf: Leaf<'_>,
    verifiers: &[VerifierKey],
) -> Result<VerifiedProof, TlogProofError> {
    let proof = TlogProof::parse(proof_file)?;
    let checkpoint = SignedCheckpoint::open(&proof.checkpoint, verifiers)?;
    let leaf = match leaf {
        Leaf::Data(data) => leaf_hash(data),
        Leaf::Hash(hash) => hash,
    };
    verify_inclusion(
        &leaf,
        proof.index,
        checkpoint.checkpoint.size,
        &proof.hashes,
        &checkpoint.checkpoint.root,
    )?;
    Ok(VerifiedProof {
        index: proof.index,
        extra: proof.extra,
        checkpoint,
    })
}
