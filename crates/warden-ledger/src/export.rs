//! The offline verifier of Warden's NDJSON audit export (`warden audit verify`), and the
//! helpers that write its non-entry lines.
//!
//! # Format
//!
//! One JSON object per line (blank lines are skipped). Each line is one of:
//!
//! - **an entry**: an object with an `"id"` key and an integer `"seq"` — the audit entry as
//!   `GET /api/v1/audit/{id}` serves it. Its leaf hash is
//!   `SHA-256(0x00 ‖ JCS(entry))` over the object *without* its derived `"leaf_hash"`
//!   field, if it has one. Entries come in `seq` order with no gaps; `seq` is the leaf
//!   index.
//! - `{"compact_range": {"size": a, "hashes": [base64, …]}}` — optional, at most one, before
//!   any entry: the compact range ([`CompactRange`]) of the leaves `[0, a)` whose bodies are
//!   not in the export (retention archived them, or the export starts later). The first
//!   entry must then have `seq` = `a`; without it, `seq` 0.
//! - `{"consistency": {"from": b, "to": n, "hashes": [base64, …]}}` — optional, any number
//!   (one per `to`): the RFC 9162 consistency proof that the tree after the last exported
//!   entry (size `b`) is a prefix of the tree of the checkpoint of size `n`.
//! - `{"checkpoint": "<signed note>"}` — one or more: a C2SP checkpoint signed as a note.
//! - `{"keys": ["<verifier key>", …]}` — at most one: the server's checkpoint verifier keys
//!   in Go `sumdb/note` form, used when the caller pins none.
//!
//! The recommended order, which lets every check run as soon as its line is read, is:
//! `keys`, `compact_range`, the checkpoints, the entries, the consistency lines — so an
//! exporter writes the checkpoint it exports up to *before* the entries it covers. The
//! [`keys_line`], [`compact_range_line`], [`checkpoint_line`] and [`consistency_line`]
//! helpers write the non-entry lines; an entry line is the entry's JSON object as the API
//! serves it (its leaf is computed from its canonical form, see [`entry_leaf_hash`]).
//!
//! # What is checked
//!
//! Every line parses (strictly: a JSON object with a repeated key is refused, since a
//! reader could see one value while the hash covers the other); `seq` runs on with no gap
//! (a gap names the first missing `seq`); every checkpoint's signature verifies with the
//! pinned keys, or else with the export's `keys` line ([`Report::keys_source`] says which);
//! all checkpoints share one origin; every checkpoint whose size lies in the exported range
//! has exactly the root recomputed from the entries at that size — so any two of them are
//! consistent with each other; a checkpoint beyond the last entry needs a `consistency`
//! line from the last entry's tree to it; and at least one checkpoint must cover the last
//! entry, so no entry goes unauthenticated.
//!
//! # Decisions
//!
//! - **Streaming, bounded memory.** The verifier keeps a [`CompactRange`] (O(log n)) and, per
//!   checkpoint, a size and a root — never the entries. So a checkpoint's root is checked
//!   when the tree *reaches* its size: a checkpoint line must come before the entry that
//!   takes the tree past its size (right after its last entry is fine — per-entry
//!   checkpoints work); a later one is refused as [`VerifyError::LateCheckpoint`] unless a
//!   checkpoint of the same size was already checked. Checkpoints read before the `keys`
//!   line are held (parsed, unverified) until it arrives.
//! - **Naming the altered entry.** A root cannot say which leaf changed. The first
//!   checkpoint (in size order) whose root does not match bounds it: the altered entry lies
//!   after the previous matching checkpoint and before that size, and
//!   [`VerifyError::EntriesAltered`] names that `seq` range — a single `seq` when the export
//!   has per-entry checkpoints. If an entry carries a `leaf_hash` field that disagrees with
//!   its content, that entry is named at once ([`VerifyError::LeafHashMismatch`]); a
//!   consistent forgery of both is still caught by the roots.
//! - **Checkpoints inside the pruned prefix** (size below the `compact_range` size) cannot
//!   be checked against entries that are not there; their signature is still verified, they
//!   count in [`Report::checkpoints_total`] but not in [`Report::checkpoints_valid`].
//! - **Nothing unauthenticated passes.** Entries after the largest checkable checkpoint are
//!   an error ([`VerifyError::UncoveredEntries`]), and so is an export with no checkpoint
//!   that can be checked against it ([`VerifyError::NoCheckpoint`]): an export that proves
//!   nothing does not "verify". A consistency line no checkpoint needs is refused too.
//! - **Trust is the caller's.** The export's own `keys` line only shows the export is
//!   self-consistent (anyone can sign a forged log with a fresh key), so the report says
//!   which keys were used; and the origin is reported, not compared with an expectation —
//!   one Warden key signs every tenant's log, so the caller checks [`Report::origin`] is
//!   the log it meant.
//! - **Fail fast.** The first failure is returned and the verifier is spent: later calls
//!   return [`VerifyError::AlreadyFailed`].
//! - The export is verified at the level of JSON values: whitespace, key order and string
//!   escapes may differ from the canonical text, because JCS maps them to the same bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::canonical::{canonical_members, to_canonical_vec};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::hash::{Hash, from_base64, leaf_hash, to_base64};
use crate::note::{Note, NoteError, VerifierKey};
use crate::proof::{ProofError, verify_consistency};
use crate::tree::CompactRange;

/// Where the verifier was given the input an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line of the export, counted from 1.
    Line(u64),
    /// One of [`VerifyOptions::extra_checkpoints`], counted from 1.
    ExtraCheckpoint(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::ExtraCheckpoint(n) => write!(f, "extra checkpoint {n}"),
        }
    }
}

/// Why an export did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A line is not JSON (or repeats a key).
    #[error("{location}: not valid JSON: {source}")]
    Json {
        /// Where.
        location: Location,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A line is JSON but not a line of this format.
    #[error("{location}: {reason}")]
    Malformed {
        /// Where.
        location: Location,
        /// What is wrong.
        reason: String,
    },
    /// An entry is missing.
    #[error("entry seq {missing} is missing: the next entry in the export has seq {next}")]
    Gap {
        /// The first missing seq.
        missing: u64,
        /// The seq found instead.
        next: u64,
    },
    /// An entry repeats or goes back.
    #[error("entry seq {found} is out of order: seq {expected} was expected")]
    OutOfOrder {
        /// The seq that should come next.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// An entry's content does not match its own `leaf_hash` field.
    #[error("entry seq {seq} was altered: its content does not match its leaf_hash field")]
    LeafHashMismatch {
        /// The entry.
        seq: u64,
    },
    /// The roots show that an entry in `first_seq..=last_seq` was altered.
    #[error("{}", altered_message(*checkpoint_size, *first_seq, *last_seq, *compact_range_suspect))]
    EntriesAltered {
        /// The smallest checkpoint size whose root does not match.
        checkpoint_size: u64,
        /// The altered entry is at this seq or after (the previous matching checkpoint).
        first_seq: u64,
        /// … and at this seq or before.
        last_seq: u64,
        /// No checkpoint matched at or after the pruned prefix, so the `compact_range` line
        /// itself may be what was altered.
        compact_range_suspect: bool,
    },
    /// The `compact_range` line does not give the root of the checkpoint of its size.
    #[error(
        "the compact_range line (size {size}) was altered: it does not give the root of the signed checkpoint of that size"
    )]
    CompactRangeMismatch {
        /// The compact range's size.
        size: u64,
    },
    /// A signed checkpoint of size 0 with another root than the empty tree's.
    #[error("the signed checkpoint of size 0 does not have the empty tree's root")]
    EmptyTreeRoot,
    /// A checkpoint line is malformed.
    #[error("{location}: {source}")]
    Checkpoint {
        /// Where.
        location: Location,
        /// What is wrong.
        #[source]
        source: CheckpointError,
    },
    /// A checkpoint's signature is refused.
    #[error("{location}: checkpoint of size {size}: {source}")]
    Signature {
        /// Where.
        location: Location,
        /// The checkpoint's tree size.
        size: u64,
        /// Why the note was refused.
        #[source]
        source: NoteError,
    },
    /// Checkpoints from two logs.
    #[error("{location}: checkpoint of log {found:?}, but the export is of log {expected:?}")]
    OriginMismatch {
        /// Where.
        location: Location,
        /// The origin of the first checkpoint.
        expected: String,
        /// This checkpoint's origin.
        found: String,
    },
    /// Two signed checkpoints of one size with different roots.
    #[error(
        "two signed checkpoints of size {size} have different roots: the log was forked or a checkpoint forged"
    )]
    Forked {
        /// The size.
        size: u64,
    },
    /// A checkpoint arrived after the entries beyond its size.
    #[error(
        "{location}: checkpoint of size {size} comes after the tree reached size {tree_size}; a checkpoint must come before the entries past its size"
    )]
    LateCheckpoint {
        /// Where.
        location: Location,
        /// The checkpoint's size.
        size: u64,
        /// The tree size when it was read.
        tree_size: u64,
    },
    /// A checkpoint covers entries the export does not have, and nothing proves the rest.
    #[error(
        "checkpoint of size {size} is beyond the exported entries (tree size {tree_size}) and no consistency line proves it: the export may be truncated"
    )]
    CheckpointBeyondEntries {
        /// The checkpoint's size.
        size: u64,
        /// Entries (and pruned leaves) in the export.
        tree_size: u64,
    },
    /// A consistency line starts elsewhere than at the end of the exported entries.
    #[error(
        "the consistency line to size {to} starts at size {from}, but the exported entries end at size {tree_size}"
    )]
    ConsistencyFrom {
        /// The line's `from`.
        from: u64,
        /// The line's `to`.
        to: u64,
        /// Where the entries end.
        tree_size: u64,
    },
    /// A consistency proof does not verify.
    #[error(
        "the consistency proof from size {from} to the checkpoint of size {to} does not verify: {source}"
    )]
    Consistency {
        /// The exported tree's size.
        from: u64,
        /// The checkpoint's size.
        to: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
    /// A consistency line that no checkpoint beyond the entries uses.
    #[error("the consistency line to size {to} matches no checkpoint beyond the exported entries")]
    UnusedConsistency {
        /// The line's `to`.
        to: u64,
    },
    /// A record that may appear once appeared again.
    #[error("{location}: a second {record} line")]
    Duplicate {
        /// Where.
        location: Location,
        /// Which record.
        record: &'static str,
    },
    /// The `compact_range` line came after an entry.
    #[error("{location}: the compact_range line must come before the first entry")]
    CompactRangeAfterEntries {
        /// Where.
        location: Location,
    },
    /// No keys to verify signatures with.
    #[error("no verifier keys: pin the server's keys, or export with its keys line")]
    NoKeys,
    /// Nothing signed covers the entries.
    #[error("the export has no checkpoint that can be checked against its entries")]
    NoCheckpoint,
    /// Entries after the largest checkpoint.
    #[error("entries seq {first_seq}..={last_seq} are not covered by any signed checkpoint")]
    UncoveredEntries {
        /// The first uncovered entry.
        first_seq: u64,
        /// The last entry.
        last_seq: u64,
    },
    /// The verifier already returned an error.
    #[error("the verifier already failed; start a new one")]
    AlreadyFailed,
}

fn altered_message(size: u64, first: u64, last: u64, compact_range_suspect: bool) -> String {
    let what = match (first == last, compact_range_suspect) {
        (true, false) => format!("entry seq {first} was altered"),
        (false, false) => format!("an entry in seq {first}..={last} was altered"),
        (true, true) => format!("entry seq {first}, or the compact_range line, was altered"),
        (false, true) => {
            format!("an entry in seq {first}..={last}, or the compact_range line, was altered")
        }
    };
    let mut message = format!(
        "{what}: the root recomputed at tree size {size} does not match the signed checkpoint of that size"
    );
    if first > 0 && !compact_range_suspect {
        message.push_str(&format!(" (the checkpoint of size {first} matches)"));
    }
    message
}

/// What the caller trusts.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Checkpoint keys to trust; `None` trusts the export's own `keys` line (which only
    /// proves the export is self-consistent, not who signed it).
    pub pinned_keys: Option<Vec<VerifierKey>>,
    /// Signed checkpoint notes kept from elsewhere (`--checkpoint` files): each must be
    /// consistent with the export like its own checkpoints.
    pub extra_checkpoints: Vec<String>,
}

/// Which keys verified the checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysSource {
    /// The caller's pinned keys.
    Pinned,
    /// The export's own `keys` line.
    Export,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries read and hashed.
    pub entries: u64,
    /// Leaves covered only by the `compact_range` line (0 without one).
    pub pruned: u64,
    /// Checkpoints whose signature verified and whose root matched the entries (directly,
    /// or through a consistency proof).
    pub checkpoints_valid: usize,
    /// Checkpoints read, from the export and the options.
    pub checkpoints_total: usize,
    /// The first entry's seq, if any.
    pub first_seq: Option<u64>,
    /// The last entry's seq, if any.
    pub last_seq: Option<u64>,
    /// The log's origin, from its checkpoints.
    pub origin: String,
    /// Which keys verified the signatures.
    pub keys_source: KeysSource,
}

/// Checkpoints of one size still waiting for the tree to reach it.
#[derive(Debug)]
struct Pending {
    /// Their (common) root.
    root: Hash,
    /// How many were read, so those that end up in the pruned prefix are counted.
    count: usize,
}

/// A consistency line, kept until the end of the export.
#[derive(Debug)]
struct ConsistencyLine {
    /// The size the proof starts from.
    from: u64,
    /// The proof.
    hashes: Vec<Hash>,
}

/// A checkpoint read before any key was known.
#[derive(Debug)]
struct Unverified {
    /// Where it was read.
    location: Location,
    /// Its size, for messages.
    size: u64,
    /// The parsed note.
    note: Note,
}

/// The streaming verifier: feed it every line, then [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    /// Keys to verify with, once known.
    keys: Option<Vec<VerifierKey>>,
    /// Where the keys come from.
    keys_source: KeysSource,
    /// Whether a `keys` line was read.
    keys_line_seen: bool,
    /// Lines fed so far.
    line: u64,
    /// Set by the first error.
    failed: bool,
    /// The tree of the leaves so far.
    tree: CompactRange,
    /// Whether the tree's start (0, or the compact range) is fixed.
    started: bool,
    /// Leaves covered by the compact range only.
    pruned: u64,
    /// Entries read.
    entries: u64,
    /// The first entry's seq.
    first_seq: Option<u64>,
    /// The log's origin, from the first checkpoint.
    origin: Option<String>,
    /// Checkpoint roots by size, for sizes the tree has not reached yet.
    pending: BTreeMap<u64, Pending>,
    /// Roots checked against the tree, by size.
    checked: BTreeMap<u64, Hash>,
    /// Roots of checkpoints inside the pruned prefix (signature checked only), by size.
    prefix_roots: BTreeMap<u64, Hash>,
    /// Checkpoints waiting for the `keys` line.
    unverified: Vec<Unverified>,
    /// Consistency lines by target size.
    consistency: BTreeMap<u64, ConsistencyLine>,
    /// Checkpoints read.
    checkpoints_total: usize,
    /// Checkpoints inside the pruned prefix, which cannot be checked against entries.
    checkpoints_unverifiable: usize,
    /// Scratch for an entry's canonical text (reused line after line).
    scratch: String,
}

impl Verifier {
    /// A verifier trusting `options`; the extra checkpoints are read (and, with pinned
    /// keys, verified) at once.
    pub fn new(options: VerifyOptions) -> Result<Self, VerifyError> {
        let keys_source = if options.pinned_keys.is_some() {
            KeysSource::Pinned
        } else {
            KeysSource::Export
        };
        let mut verifier = Self {
            keys: options.pinned_keys,
            keys_source,
            keys_line_seen: false,
            line: 0,
            failed: false,
            tree: CompactRange::new(),
            started: false,
            pruned: 0,
            entries: 0,
            first_seq: None,
            origin: None,
            pending: BTreeMap::new(),
            checked: BTreeMap::new(),
            prefix_roots: BTreeMap::new(),
            unverified: Vec::new(),
            consistency: BTreeMap::new(),
            checkpoints_total: 0,
            checkpoints_unverifiable: 0,
            scratch: String::new(),
        };
        for (i, note) in options.extra_checkpoints.iter().enumerate() {
            verifier.checkpoint(Location::ExtraCheckpoint(i + 1), note)?;
        }
        Ok(verifier)
    }

    /// Read one line of the export (a trailing newline is ignored).
    pub fn feed_line(&mut self, line: &str) -> Result<(), VerifyError> {
        if self.failed {
            return Err(VerifyError::AlreadyFailed);
        }
        self.line += 1;
        let result = self.read_line(line);
        self.failed = result.is_err();
        result
    }

    /// Finish: resolve checkpoints beyond the entries and report.
    pub fn finish(mut self) -> Result<Report, VerifyError> {
        if self.failed {
            return Err(VerifyError::AlreadyFailed);
        }
        if !self.started {
            // Nothing but metadata: the export is of the empty tree.
            self.start(CompactRange::new())?;
        }
        if !self.unverified.is_empty() {
            return Err(VerifyError::NoKeys);
        }
        let tree_size = self.tree.size();
        let root = self.tree.root();
        for (size, pending) in std::mem::take(&mut self.pending) {
            let proof = self
                .consistency
                .remove(&size)
                .ok_or(VerifyError::CheckpointBeyondEntries { size, tree_size })?;
            if proof.from != tree_size {
                return Err(VerifyError::ConsistencyFrom {
                    from: proof.from,
                    to: size,
                    tree_size,
                });
            }
            verify_consistency(tree_size, size, &proof.hashes, &root, &pending.root).map_err(
                |source| VerifyError::Consistency {
                    from: tree_size,
                    to: size,
                    source,
                },
            )?;
            self.checked.insert(size, pending.root);
        }
        if let Some(&to) = self.consistency.keys().next() {
            return Err(VerifyError::UnusedConsistency { to });
        }
        let (Some(origin), Some((&covered, _))) = (self.origin, self.checked.last_key_value())
        else {
            return Err(VerifyError::NoCheckpoint);
        };
        if covered < tree_size {
            return Err(VerifyError::UncoveredEntries {
                first_seq: covered,
                last_seq: tree_size - 1,
            });
        }
        Ok(Report {
            entries: self.entries,
            pruned: self.pruned,
            checkpoints_valid: self.checkpoints_total - self.checkpoints_unverifiable,
            checkpoints_total: self.checkpoints_total,
            first_seq: self.first_seq,
            last_seq: self.first_seq.map(|_| tree_size - 1),
            origin,
            keys_source: self.keys_source,
        })
    }

    fn read_line(&mut self, line: &str) -> Result<(), VerifyError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Ok(());
        }
        let location = Location::Line(self.line);
        if let Some((seq, hashed)) = self.canonical_entry(line, location) {
            return self.entry(seq, hashed);
        }
        let malformed = |reason: &str| VerifyError::Malformed {
            location,
            reason: reason.to_owned(),
        };
        let StrictValue(value) =
            serde_json::from_str(line).map_err(|source| VerifyError::Json { location, source })?;
        let Value::Object(mut object) = value else {
            return Err(malformed("not a JSON object"));
        };
        if object.contains_key("id") && object.contains_key("seq") {
            let seq = object["seq"]
                .as_u64()
                .ok_or_else(|| malformed("the entry's seq is not a non-negative integer"))?;
            let claimed = object.remove("leaf_hash");
            let hashed = to_canonical_vec(&Value::Object(object))
                .map_err(|e| malformed(&e.to_string()))
                .and_then(|canonical| {
                    let claimed = claimed
                        .map(|c| {
                            c.as_str()
                                .and_then(from_base64)
                                .ok_or_else(bad_leaf_hash(location))
                        })
                        .transpose()?;
                    Ok((leaf_hash(&canonical), claimed))
                });
            return self.entry(seq, hashed);
        }
        let kind = match object.len() {
            1 => object.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let body = object.remove(&kind).unwrap_or(Value::Null);
        let record = |reason: &str| malformed(&format!("{kind}: {reason}"));
        match kind.as_str() {
            "checkpoint" => {
                let Value::String(note) = body else {
                    return Err(record("not a string"));
                };
                self.checkpoint(location, &note)
            }
            "keys" => {
                let keys: Vec<String> =
                    serde_json::from_value(body).map_err(|e| record(&e.to_string()))?;
                self.keys_line(location, &keys)
            }
            "compact_range" => {
                let CompactRangeRecord { size, hashes } =
                    serde_json::from_value(body).map_err(|e| record(&e.to_string()))?;
                let hashes = decode_hashes(&hashes)
                    .ok_or_else(|| record("a hash is not base64 of 32 bytes"))?;
                let range =
                    CompactRange::from_parts(size, hashes).map_err(|e| record(&e.to_string()))?;
                if self.started {
                    return Err(if self.entries > 0 {
                        VerifyError::CompactRangeAfterEntries { location }
                    } else {
                        VerifyError::Duplicate {
                            location,
                            record: "compact_range",
                        }
                    });
                }
                self.start(range)
            }
            "consistency" => {
                let ConsistencyRecord { from, to, hashes } =
                    serde_json::from_value(body).map_err(|e| record(&e.to_string()))?;
                let hashes = decode_hashes(&hashes)
                    .ok_or_else(|| record("a hash is not base64 of 32 bytes"))?;
                if self.consistency.contains_key(&to) {
                    return Err(VerifyError::Duplicate {
                        location,
                        record: "consistency (to the same size)",
                    });
                }
                self.consistency
                    .insert(to, ConsistencyLine { from, hashes });
                Ok(())
            }
            _ => Err(malformed(
                "neither an audit entry (with \"id\" and \"seq\") nor a compact_range, consistency, checkpoint or keys record",
            )),
        }
    }

    /// The fast path for an entry line the server wrote: its text without the trailing
    /// `leaf_hash` member already canonical, so its bytes are hashed as they are, with no
    /// parse and re-serialization. `None` for any line it cannot prove canonical (the
    /// caller then takes the general path, which decides and reports): the leaf is the
    /// same either way.
    #[allow(clippy::type_complexity)]
    fn canonical_entry(
        &mut self,
        line: &str,
        location: Location,
    ) -> Option<(u64, Result<(Hash, Option<Hash>), VerifyError>)> {
        const CLAIM: &str = ",\"leaf_hash\":\"";
        let (body, claimed) = match line.rfind(CLAIM) {
            Some(at) if line.ends_with("\"}") => {
                let b64 = &line[at + CLAIM.len()..line.len() - 2];
                if b64.contains('"') {
                    return None;
                }
                (&line[..at], Some(b64))
            }
            _ => (line.strip_suffix('}')?, None),
        };
        self.scratch.clear();
        self.scratch.push_str(body);
        self.scratch.push('}');
        let members = canonical_members(&self.scratch)?;
        let mut seq = None;
        let mut id = false;
        for (key, value) in members {
            match key {
                b"seq" => seq = Some(std::str::from_utf8(value).ok()?.parse::<u64>().ok()?),
                b"id" => id = true,
                b"leaf_hash" => return None,
                _ => {}
            }
        }
        let seq = seq.filter(|_| id)?;
        let claimed = claimed
            .map(|c| from_base64(c).ok_or_else(bad_leaf_hash(location)))
            .transpose();
        Some((
            seq,
            claimed.map(|claimed| (leaf_hash(self.scratch.as_bytes()), claimed)),
        ))
    }

    /// Append the entry of `seq` whose leaf (and the `leaf_hash` it claims, if any) is
    /// `hashed`.
    fn entry(
        &mut self,
        seq: u64,
        hashed: Result<(Hash, Option<Hash>), VerifyError>,
    ) -> Result<(), VerifyError> {
        if !self.started {
            self.start(CompactRange::new())?;
        }
        let expected = self.tree.size();
        if seq > expected {
            return Err(VerifyError::Gap {
                missing: expected,
                next: seq,
            });
        }
        if seq < expected {
            return Err(VerifyError::OutOfOrder {
                expected,
                found: seq,
            });
        }
        let (leaf, claimed) = hashed?;
        if claimed.is_some_and(|claimed| claimed != leaf) {
            return Err(VerifyError::LeafHashMismatch { seq });
        }
        self.tree.append(leaf);
        self.entries += 1;
        self.first_seq.get_or_insert(seq);
        self.reached()
    }

    fn keys_line(&mut self, location: Location, keys: &[String]) -> Result<(), VerifyError> {
        if self.keys_line_seen {
            return Err(VerifyError::Duplicate {
                location,
                record: "keys",
            });
        }
        self.keys_line_seen = true;
        let keys = keys
            .iter()
            .map(|k| VerifierKey::parse(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| VerifyError::Malformed {
                location,
                reason: format!("keys: {e}"),
            })?;
        if self.keys_source == KeysSource::Pinned {
            return Ok(());
        }
        for waiting in std::mem::take(&mut self.unverified) {
            waiting
                .note
                .verify(&keys)
                .map_err(|source| VerifyError::Signature {
                    location: waiting.location,
                    size: waiting.size,
                    source,
                })?;
        }
        self.keys = Some(keys);
        Ok(())
    }

    fn checkpoint(&mut self, location: Location, text: &str) -> Result<(), VerifyError> {
        let checkpoint_error =
            |source: CheckpointError| VerifyError::Checkpoint { location, source };
        let note = Note::parse(text).map_err(|e| checkpoint_error(e.into()))?;
        let checkpoint = Checkpoint::parse(note.text()).map_err(checkpoint_error)?;
        self.checkpoints_total += 1;
        let size = checkpoint.size;
        match &self.keys {
            Some(keys) => {
                note.verify(keys).map_err(|source| VerifyError::Signature {
                    location,
                    size,
                    source,
                })?;
            }
            None => self.unverified.push(Unverified {
                location,
                size,
                note,
            }),
        }
        match &self.origin {
            None => self.origin = Some(checkpoint.origin),
            Some(expected) if *expected != checkpoint.origin => {
                return Err(VerifyError::OriginMismatch {
                    location,
                    expected: expected.clone(),
                    found: checkpoint.origin,
                });
            }
            Some(_) => {}
        }
        self.place(location, size, checkpoint.root)
    }

    /// Check a checkpoint's root now if the tree is at its size, or keep it until it is.
    fn place(&mut self, location: Location, size: u64, root: Hash) -> Result<(), VerifyError> {
        let known = self
            .checked
            .get(&size)
            .or_else(|| self.prefix_roots.get(&size))
            .or_else(|| self.pending.get(&size).map(|p| &p.root));
        if let Some(known) = known {
            if *known != root {
                return Err(VerifyError::Forked { size });
            }
            if self.prefix_roots.contains_key(&size) {
                self.checkpoints_unverifiable += 1;
            } else if let Some(pending) = self.pending.get_mut(&size) {
                pending.count += 1;
            }
            return Ok(());
        }
        if self.started {
            if size < self.pruned {
                self.prefix_roots.insert(size, root);
                self.checkpoints_unverifiable += 1;
                return Ok(());
            }
            let tree_size = self.tree.size();
            if size < tree_size {
                return Err(VerifyError::LateCheckpoint {
                    location,
                    size,
                    tree_size,
                });
            }
        }
        self.pending.insert(size, Pending { root, count: 1 });
        if self.started { self.reached() } else { Ok(()) }
    }

    /// Fix where the tree starts: at the compact range, or at 0.
    fn start(&mut self, range: CompactRange) -> Result<(), VerifyError> {
        self.started = true;
        self.pruned = range.size();
        self.tree = range;
        // Checkpoints inside the pruned prefix cannot be checked against entries.
        let reachable = self.pending.split_off(&self.pruned);
        for (size, pending) in std::mem::replace(&mut self.pending, reachable) {
            self.checkpoints_unverifiable += pending.count;
            self.prefix_roots.insert(size, pending.root);
        }
        self.reached()
    }

    /// The tree just reached its current size: check the checkpoints waiting for it.
    fn reached(&mut self) -> Result<(), VerifyError> {
        let size = self.tree.size();
        let Some(pending) = self.pending.remove(&size) else {
            return Ok(());
        };
        if pending.root == self.tree.root() {
            self.checked.insert(size, pending.root);
            return Ok(());
        }
        Err(self.mismatch(size))
    }

    /// The error for a checkpoint of `size` whose root the tree does not reproduce.
    fn mismatch(&self, size: u64) -> VerifyError {
        if size == 0 {
            return VerifyError::EmptyTreeRoot;
        }
        if size == self.pruned {
            return VerifyError::CompactRangeMismatch { size };
        }
        let last_good = self.checked.range(..size).next_back().map(|(s, _)| *s);
        // Checked sizes are never below the pruned prefix; with none, the compact range
        // itself is as suspect as any entry.
        VerifyError::EntriesAltered {
            checkpoint_size: size,
            first_seq: last_good.unwrap_or(self.pruned),
            last_seq: size - 1,
            compact_range_suspect: self.pruned > 0 && last_good.is_none(),
        }
    }
}

/// Hashes from base64 strings; `None` if any is not base64 of 32 bytes.
fn decode_hashes(encoded: &[String]) -> Option<Vec<Hash>> {
    encoded.iter().map(|h| from_base64(h)).collect()
}

/// The body of a `compact_range` line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactRangeRecord {
    /// Leaves covered.
    size: u64,
    /// The frontier hashes, biggest subtree first.
    hashes: Vec<String>,
}

/// The body of a `consistency` line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyRecord {
    /// The exported tree's size.
    from: u64,
    /// The checkpoint's size.
    to: u64,
    /// The proof.
    hashes: Vec<String>,
}

/// A JSON value parsed like `serde_json::Value`, except that an object repeating a key is
/// an error instead of silently keeping the last value.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

/// Builds a [`Value`], refusing repeated keys.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("repeated key {key:?}")));
            }
            let StrictValue(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The `compact_range` line for the leaves of `range` whose bodies the export leaves out.
pub fn compact_range_line(range: &CompactRange) -> String {
    let hashes: Vec<String> = range.hashes().iter().map(to_base64).collect();
    serde_json::json!({"compact_range": {"size": range.size(), "hashes": hashes}}).to_string()
}

/// The `consistency` line proving the tree of `from` leaves is a prefix of that of `to`.
pub fn consistency_line(from: u64, to: u64, proof: &[Hash]) -> String {
    let hashes: Vec<String> = proof.iter().map(to_base64).collect();
    serde_json::json!({"consistency": {"from": from, "to": to, "hashes": hashes}}).to_string()
}

/// The `checkpoint` line carrying a signed checkpoint note.
pub fn checkpoint_line(signed_note: &str) -> String {
    serde_json::json!({ "checkpoint": signed_note }).to_string()
}

/// The `keys` line carrying the server's checkpoint verifier keys.
pub fn keys_line(keys: &[VerifierKey]) -> String {
    let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// The error for an entry whose `leaf_hash` field is not a hash.
fn bad_leaf_hash(location: Location) -> impl FnOnce() -> VerifyError {
    move || VerifyError::Malformed {
        location,
        reason: "the entry's leaf_hash is not base64 of 32 bytes".to_owned(),
    }
}

/// The leaf hash of an entry line's object: `SHA-256(0x00 ‖ JCS(entry))` without its
/// `leaf_hash` field, as the verifier computes it.
pub fn entry_leaf_hash(
    entry: &Map<String, Value>,
) -> Result<Hash, crate::canonical::CanonicalError> {
    let mut entry = entry.clone();
    entry.remove("leaf_hash");
    Ok(leaf_hash(&to_canonical_vec(&Value::Object(entry))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing_refuses_repeated_keys_at_any_depth() {
        let ok: StrictValue = serde_json::from_str(r#"{"a":[1,{"b":null}],"c":-2.5}"#).unwrap();
        assert_eq!(ok.0, serde_json::json!({"a": [1, {"b": null}], "c": -2.5}));
        for bad in [
            r#"{"a":1,"a":1}"#,
            r#"{"x":{"b":1,"b":2}}"#,
            r#"[{"k":1,"k":1}]"#,
        ] {
            let err = serde_json::from_str::<StrictValue>(bad).err().unwrap();
            assert!(err.to_string().contains("repeated key"), "{bad}: {err}");
        }
    }

    #[test]
    fn altered_messages_name_the_range() {
        assert_eq!(
            altered_message(42, 41, 41, false),
            "entry seq 41 was altered: the root recomputed at tree size 42 does not match the signed checkpoint of that size (the checkpoint of size 41 matches)"
        );
        assert!(
            altered_message(100, 0, 99, false).starts_with("an entry in seq 0..=99 was altered")
        );
        assert!(altered_message(100, 50, 99, true).contains("or the compact_range line"));
    }
}
