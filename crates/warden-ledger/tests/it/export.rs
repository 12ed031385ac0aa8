//! The NDJSON audit export verifier, on exports built here: entries as JSON objects,
//! checkpoints signed with Go's test key.

use serde_json::{Value, json};
use warden_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use warden_ledger::export::{
    KeysSource, Location, Report, Verifier, VerifyError, VerifyOptions, checkpoint_line,
    compact_range_line, consistency_line, entry_leaf_hash, keys_line,
};
use warden_ledger::hash::{Hash, to_base64};
use warden_ledger::note::{NoteError, Signer, VerifierKey};
use warden_ledger::proof::consistency;
use warden_ledger::tree::CompactRange;

use crate::{StoredTree, peter, peter_key};

const ORIGIN: &str = "warden.example/audit/acme";

/// A tenant's log: its entries and the tree over their leaves.
struct Log {
    entries: Vec<Value>,
    tree: StoredTree,
}

impl Log {
    fn new(n: u64) -> Self {
        let entries: Vec<Value> = (0..n).map(entry).collect();
        let leaves = entries
            .iter()
            .map(|e| entry_leaf_hash(e.as_object().unwrap()).unwrap())
            .collect();
        Self {
            entries,
            tree: StoredTree::from_leaves(leaves),
        }
    }

    /// The signed checkpoint note of the tree at `size`, by `signer`.
    fn checkpoint_by(&self, size: u64, signer: &Signer) -> String {
        let checkpoint = Checkpoint::new(ORIGIN, size, self.tree.root(size));
        SignedCheckpoint::sign(&checkpoint, &[signer]).unwrap()
    }

    /// The `checkpoint` line for the tree at `size`, signed by Peter.
    fn checkpoint(&self, size: u64) -> String {
        checkpoint_line(&self.checkpoint_by(size, &peter()))
    }

    /// The entry lines `seq` in `range`.
    fn entry_lines(&self, range: std::ops::Range<u64>) -> Vec<String> {
        range
            .map(|seq| self.entries[seq as usize].to_string())
            .collect()
    }

    /// keys, one checkpoint of the whole log, every entry.
    fn export(&self) -> Vec<String> {
        let n = self.entries.len() as u64;
        let mut lines = vec![keys_line(&[peter_key()]), self.checkpoint(n)];
        lines.extend(self.entry_lines(0..n));
        lines
    }
}

/// An audit entry like the API's (see API.md), for `seq`.
fn entry(seq: u64) -> Value {
    json!({
        "id": format!("019a0000-0000-7000-8000-{seq:012}"),
        "seq": seq,
        "tenant": "acme",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "actor": "client:ops-bot",
        "actor_kind": "client",
        "action": "job.cancel",
        "target_id": format!("job-{seq}"),
        "target_kind": "job",
        "outcome": "allowed",
        "reason_code": null,
        "operator_reason": "maintenance",
        "operator_ticket": "TICKET-123",
        "scope": "orch:operate",
        "source_ip": "127.0.0.1",
        "request_id": null,
        "token_id": null,
        "metadata": {"state_before": "available", "n": seq},
    })
}

fn verify_with(options: VerifyOptions, lines: &[String]) -> Result<Report, VerifyError> {
    let mut verifier = Verifier::new(options)?;
    for line in lines {
        verifier.feed_line(line)?;
    }
    verifier.finish()
}

fn verify(lines: &[String]) -> Result<Report, VerifyError> {
    verify_with(VerifyOptions::default(), lines)
}

fn pinned(keys: Vec<VerifierKey>) -> VerifyOptions {
    VerifyOptions {
        pinned_keys: Some(keys),
        extra_checkpoints: Vec::new(),
    }
}

/// Change one character of entry `seq`'s line: "maintenance" becomes "maintenancE".
fn alter(lines: &mut [String], seq: u64) {
    let needle = format!("\"seq\":{seq},");
    let line = lines
        .iter_mut()
        .find(|l| l.contains(&needle))
        .expect("the entry is in the export");
    *line = line.replacen("maintenance", "maintenancE", 1);
}

#[test]
fn a_whole_log_export_verifies_with_its_own_keys() {
    let log = Log::new(100);
    let report = verify(&log.export()).unwrap();
    assert_eq!(
        report,
        Report {
            entries: 100,
            pruned: 0,
            checkpoints_valid: 1,
            checkpoints_total: 1,
            first_seq: Some(0),
            last_seq: Some(99),
            origin: ORIGIN.into(),
            keys_source: KeysSource::Export,
        }
    );
}

#[test]
fn pinned_keys_are_used_and_reported() {
    let log = Log::new(10);
    let lines = log.export();
    let report = verify_with(pinned(vec![peter_key()]), &lines).unwrap();
    assert_eq!(report.keys_source, KeysSource::Pinned);
    // Without the export's keys line too.
    assert_eq!(
        verify_with(pinned(vec![peter_key()]), &lines[1..])
            .unwrap()
            .entries,
        10
    );
}

#[test]
fn line_order_is_flexible_where_it_can_be() {
    let log = Log::new(20);
    // Checkpoint right after its last entry, keys line at the end, blank lines, CRLF.
    let mut lines = log.entry_lines(0..20);
    lines.push(log.checkpoint(20));
    lines.push(String::new());
    lines.push(format!("{}\r\n", keys_line(&[peter_key()])));
    // Whitespace and key order inside an entry do not change its canonical bytes.
    lines[3] = serde_json::to_string_pretty(&log.entries[3])
        .unwrap()
        .replace('\n', " ");
    assert_eq!(verify(&lines).unwrap().entries, 20);
}

#[test]
fn one_altered_character_is_located_between_checkpoints() {
    let log = Log::new(100);

    // One checkpoint: the whole log is suspect.
    let mut lines = log.export();
    alter(&mut lines, 41);
    let err = verify(&lines).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EntriesAltered {
                checkpoint_size: 100,
                first_seq: 0,
                last_seq: 99,
                compact_range_suspect: false
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("an entry in seq 0..=99 was altered"),
        "{err}"
    );

    // A checkpoint every ten entries narrows it to ten.
    let mut lines = vec![keys_line(&[peter_key()])];
    lines.extend((1..=10).map(|k| log.checkpoint(k * 10)));
    lines.extend(log.entry_lines(0..100));
    alter(&mut lines, 41);
    let err = verify(&lines).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EntriesAltered {
                checkpoint_size: 50,
                first_seq: 40,
                last_seq: 49,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("the checkpoint of size 40 matches"),
        "{err}"
    );

    // Per-entry checkpoints name the entry.
    let mut lines = vec![keys_line(&[peter_key()])];
    for seq in 0..100 {
        lines.extend(log.entry_lines(seq..seq + 1));
        lines.push(log.checkpoint(seq + 1));
    }
    alter(&mut lines, 41);
    let err = verify(&lines).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EntriesAltered {
                checkpoint_size: 42,
                first_seq: 41,
                last_seq: 41,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("entry seq 41 was altered"),
        "{err}"
    );
}

#[test]
fn a_leaf_hash_field_is_checked_and_names_the_entry_at_once() {
    let log = Log::new(60);
    let mut lines = log.export();
    for (seq, line) in lines[2..].iter_mut().enumerate() {
        let mut entry = log.entries[seq].clone();
        entry["leaf_hash"] = json!(to_base64(&log.tree.leaves[seq]));
        *line = entry.to_string();
    }
    assert_eq!(verify(&lines).unwrap().entries, 60);
    alter(&mut lines, 41);
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::LeafHashMismatch { seq: 41 })
    ));
}

#[test]
fn a_missing_entry_is_reported_as_a_gap() {
    let log = Log::new(100);
    let mut lines = log.export();
    lines.remove(2 + 57);
    let err = verify(&lines).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Gap {
                missing: 57,
                next: 58
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "entry seq 57 is missing: the next entry in the export has seq 58"
    );

    let mut lines = log.export();
    let dup = lines[2 + 10].clone();
    lines.insert(2 + 11, dup);
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::OutOfOrder {
            expected: 11,
            found: 10
        })
    ));
}

#[test]
fn checkpoints_signed_by_another_key_are_refused() {
    let log = Log::new(10);
    let stranger = Signer::from_seed("warden.example", &[7; 32]).unwrap();

    // Pinned keys that did not sign.
    let err = verify_with(pinned(vec![stranger.verifier_key()]), &log.export()).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Signature {
                size: 10,
                source: NoteError::NoKnownSignature { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("PeterNeumann+c74f20a3"), "{err}");

    // A checkpoint signed by someone else than the export's keys line names.
    let mut lines = log.export();
    lines[1] = checkpoint_line(&log.checkpoint_by(10, &stranger));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::Signature {
            location: Location::Line(2),
            ..
        })
    ));

    // A forged checkpoint signed with the stranger's key, with the stranger's keys line:
    // fine on its own terms — which is why keys should be pinned.
    lines[0] = keys_line(&[stranger.verifier_key()]);
    assert_eq!(verify(&lines).unwrap().keys_source, KeysSource::Export);
    assert!(verify_with(pinned(vec![peter_key()]), &lines).is_err());
}

#[test]
fn a_truncated_export_needs_a_consistency_proof() {
    let log = Log::new(100);
    let mut lines = log.export();
    lines.truncate(2 + 60);
    let err = verify(&lines).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CheckpointBeyondEntries {
                size: 100,
                tree_size: 60
            }
        ),
        "{err:?}"
    );

    // With the consistency proof from 60 to 100, the prefix verifies.
    let proof = log.tree.prove(&consistency(60, 100).unwrap());
    lines.push(consistency_line(60, 100, &proof));
    let report = verify(&lines).unwrap();
    assert_eq!((report.entries, report.checkpoints_valid), (60, 1));

    // A wrong proof, or one from the wrong size, is refused.
    let mut bad = proof.clone();
    bad[0][0] ^= 1;
    lines.pop();
    lines.push(consistency_line(60, 100, &bad));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::Consistency {
            from: 60,
            to: 100,
            ..
        })
    ));
    lines.pop();
    lines.push(consistency_line(59, 100, &proof));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::ConsistencyFrom { from: 59, .. })
    ));
    // A consistency line no checkpoint needs is refused too.
    let mut lines = log.export();
    lines.push(consistency_line(100, 120, &proof));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::UnusedConsistency { to: 120 })
    ));
}

#[test]
fn an_export_with_a_compact_range_prefix_verifies() {
    let log = Log::new(100);
    let mut prefix = CompactRange::new();
    for leaf in &log.tree.leaves[..30] {
        prefix.append(*leaf);
    }
    let mut lines = vec![
        keys_line(&[peter_key()]),
        compact_range_line(&prefix),
        log.checkpoint(20), // inside the pruned prefix: signature only
        log.checkpoint(30),
        log.checkpoint(100),
    ];
    lines.extend(log.entry_lines(30..100));
    let report = verify(&lines).unwrap();
    assert_eq!(report.entries, 70);
    assert_eq!(report.pruned, 30);
    assert_eq!((report.first_seq, report.last_seq), (Some(30), Some(99)));
    assert_eq!((report.checkpoints_valid, report.checkpoints_total), (2, 3));

    // An altered compact range is caught by the checkpoint at its size ...
    let mut forged = prefix.hashes().to_vec();
    forged[0][0] ^= 1;
    let forged = CompactRange::from_parts(30, forged).unwrap();
    let mut bad = lines.clone();
    bad[1] = compact_range_line(&forged);
    assert!(matches!(
        verify(&bad),
        Err(VerifyError::CompactRangeMismatch { size: 30 })
    ));
    // ... or, without one, by the next checkpoint, which says the range is suspect.
    bad.remove(3);
    let err = verify(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EntriesAltered {
                checkpoint_size: 100,
                first_seq: 30,
                last_seq: 99,
                compact_range_suspect: true
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("or the compact_range line"),
        "{err}"
    );

    // Without the compact range, a late start is a gap from 0.
    let mut lines = vec![keys_line(&[peter_key()]), log.checkpoint(100)];
    lines.extend(log.entry_lines(30..100));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::Gap {
            missing: 0,
            next: 30
        })
    ));
}

#[test]
fn the_compact_range_must_come_first_and_once() {
    let log = Log::new(4);
    let mut lines = log.export();
    lines.push(compact_range_line(&CompactRange::new()));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::CompactRangeAfterEntries { .. })
    ));
    let mut lines = log.export();
    lines.insert(1, compact_range_line(&CompactRange::new()));
    lines.insert(1, compact_range_line(&CompactRange::new()));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::Duplicate {
            record: "compact_range",
            ..
        })
    ));
}

#[test]
fn checkpoints_must_agree_on_origin_and_root() {
    let log = Log::new(10);

    let other = Checkpoint::new("warden.example/audit/globex", 10, log.tree.root(10));
    let mut lines = log.export();
    lines.insert(
        2,
        checkpoint_line(&SignedCheckpoint::sign(&other, &[&peter()]).unwrap()),
    );
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::OriginMismatch { .. })
    ));

    // Two signed roots for one size: a fork, whatever the entries say.
    let forked = Checkpoint::new(ORIGIN, 10, log.tree.root(9));
    let mut lines = log.export();
    lines.insert(
        2,
        checkpoint_line(&SignedCheckpoint::sign(&forked, &[&peter()]).unwrap()),
    );
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::Forked { size: 10 })
    ));
}

#[test]
fn a_checkpoint_must_come_before_the_entries_past_its_size() {
    let log = Log::new(50);
    let mut lines = log.export();
    lines.push(log.checkpoint(10));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::LateCheckpoint {
            size: 10,
            tree_size: 50,
            ..
        })
    ));
    // A late copy of a checkpoint already checked is fine.
    let mut lines = log.export();
    lines.push(log.checkpoint(50));
    assert_eq!(verify(&lines).unwrap().checkpoints_total, 2);
}

#[test]
fn extra_checkpoints_are_checked_like_the_exports_own() {
    let log = Log::new(50);
    let options = |notes: Vec<String>| VerifyOptions {
        pinned_keys: Some(vec![peter_key()]),
        extra_checkpoints: notes,
    };
    let report = verify_with(
        options(vec![
            log.checkpoint_by(20, &peter()),
            log.checkpoint_by(50, &peter()),
        ]),
        &log.export(),
    )
    .unwrap();
    assert_eq!((report.checkpoints_valid, report.checkpoints_total), (3, 3));

    // A kept checkpoint from a different history (another log of 20 entries) is caught.
    let mut other = Log::new(20);
    other.entries[5]["action"] = json!("job.retry");
    let other = Log {
        tree: StoredTree::from_leaves(
            other
                .entries
                .iter()
                .map(|e| entry_leaf_hash(e.as_object().unwrap()).unwrap())
                .collect(),
        ),
        entries: other.entries,
    };
    let err = verify_with(
        options(vec![other.checkpoint_by(20, &peter())]),
        &log.export(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::EntriesAltered {
                checkpoint_size: 20,
                ..
            }
        ),
        "{err:?}"
    );

    // A malformed kept checkpoint is refused up front, naming it.
    let err = Verifier::new(options(vec!["not a note".into()])).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Checkpoint {
                location: Location::ExtraCheckpoint(1),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn every_entry_must_be_covered_by_a_checkpoint() {
    let log = Log::new(60);
    let mut lines = vec![keys_line(&[peter_key()]), log.checkpoint(50)];
    lines.extend(log.entry_lines(0..60));
    assert!(matches!(
        verify(&lines),
        Err(VerifyError::UncoveredEntries {
            first_seq: 50,
            last_seq: 59
        })
    ));
    assert!(matches!(
        verify(&log.entry_lines(0..60)),
        Err(VerifyError::NoCheckpoint)
    ));
    // Checkpoints but no key to check them with.
    assert!(matches!(
        verify(&log.export()[1..]),
        Err(VerifyError::NoKeys)
    ));
}

#[test]
fn an_empty_log_verifies_against_its_empty_checkpoint() {
    let log = Log::new(0);
    let report = verify(&log.export()).unwrap();
    assert_eq!(
        (report.entries, report.first_seq, report.last_seq),
        (0, None, None)
    );
    // A size-0 checkpoint with another root is refused.
    let bogus = Checkpoint::new(ORIGIN, 0, [1; 32]);
    let lines = vec![
        keys_line(&[peter_key()]),
        checkpoint_line(&SignedCheckpoint::sign(&bogus, &[&peter()]).unwrap()),
    ];
    assert!(matches!(verify(&lines), Err(VerifyError::EmptyTreeRoot)));
}

#[test]
fn malformed_lines_are_named_and_spend_the_verifier() {
    let log = Log::new(3);
    for (bad, what) in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (r#"{"something": "else"}"#, "neither an audit entry"),
        (
            r#"{"id": "x", "seq": -1}"#,
            "seq is not a non-negative integer",
        ),
        (r#"{"id":"x","seq":3,"seq":4}"#, "repeated key"),
        (r#"{"checkpoint": 5}"#, "checkpoint: not a string"),
        (r#"{"keys": ["nope"]}"#, "malformed verifier key"),
        (r#"{"consistency": {"from": 1, "to": 2}}"#, "missing field"),
        (
            r#"{"compact_range": {"size": 1, "hashes": []}}"#,
            "has 1 hashes, got 0",
        ),
        (
            r#"{"compact_range": {"size": 1, "hashes": ["AAAA"]}}"#,
            "not base64 of 32 bytes",
        ),
    ] {
        let mut verifier = Verifier::new(VerifyOptions::default()).unwrap();
        verifier.feed_line(&log.export()[1]).unwrap();
        let err = verifier.feed_line(bad).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("line 2: "), "{bad}: {message}");
        assert!(message.contains(what), "{bad}: {message}");
        assert!(matches!(
            verifier.feed_line(&log.export()[0]),
            Err(VerifyError::AlreadyFailed)
        ));
        assert!(matches!(verifier.finish(), Err(VerifyError::AlreadyFailed)));
    }
}

#[test]
fn entry_leaf_hash_ignores_the_leaf_hash_field() {
    let mut e = entry(3);
    let plain = entry_leaf_hash(e.as_object().unwrap()).unwrap();
    e["leaf_hash"] = json!("anything");
    assert_eq!(entry_leaf_hash(e.as_object().unwrap()).unwrap(), plain);
    let canonical = warden_ledger::canonical::to_canonical_vec(&entry(3)).unwrap();
    let want: Hash = warden_ledger::hash::leaf_hash(&canonical);
    assert_eq!(plain, want);
}

/// The entry line as the server writes it: the canonical text, then its `leaf_hash`.
fn server_line(entry: &Value, leaf: &Hash) -> String {
    let canonical = warden_ledger::canonical::to_canonical_string(entry).unwrap();
    format!(
        "{},\"leaf_hash\":\"{}\"}}",
        canonical.strip_suffix('}').unwrap(),
        to_base64(leaf)
    )
}

#[test]
fn server_written_lines_and_lines_needing_a_reparse_verify_alike_and_catch_the_same_edits() {
    let log = Log::new(40);
    let n = log.entries.len();
    // Server-shaped lines (hashed as they are), and the same entries written in ways that
    // are not canonical (spaces, an escaped letter, the leaf_hash member first): the
    // verifier must parse and re-serialize those, and reach the same leaves.
    let mut fast = log.export();
    let mut slow = log.export();
    for seq in 0..n {
        let (entry, leaf) = (&log.entries[seq], &log.tree.leaves[seq]);
        fast[2 + seq] = server_line(entry, leaf);
        slow[2 + seq] = match seq % 3 {
            0 => server_line(entry, leaf).replacen(',', ", ", 3),
            1 => server_line(entry, leaf).replacen("maintenance", "m\\u0061intenance", 1),
            _ => format!(
                "{{\"leaf_hash\":\"{}\",{}",
                to_base64(leaf),
                &entry.to_string()[1..]
            ),
        };
    }
    let report = verify(&fast).unwrap();
    assert_eq!(report.entries, 40);
    assert_eq!(verify(&slow).unwrap(), report);
    for seq in [0, 1, 2, 39] {
        for lines in [&mut fast.clone(), &mut slow.clone()] {
            let line = &mut lines[2 + seq as usize];
            *line = line.replacen("TICKET-123", "TICKET-124", 1);
            assert!(
                matches!(verify(lines), Err(VerifyError::LeafHashMismatch { seq: s }) if s == seq),
                "seq {seq}"
            );
        }
    }
    // A forged leaf_hash on an untouched line is caught on the fast path too.
    let mut forged = fast.clone();
    forged[2 + 7] = server_line(&log.entries[7], &log.tree.leaves[8]);
    assert!(matches!(
        verify(&forged),
        Err(VerifyError::LeafHashMismatch { seq: 7 })
    ));
    // And without leaf_hash members, an altered canonical line changes the root.
    let mut bare = log.export();
    alter(&mut bare, 12);
    assert!(verify(&bare).is_err());
}
