//! `warden audit verify`: an NDJSON export, or a receipt, checked offline.
//!
//! The export is read line by line into [`Verifier`], so memory stays flat however large
//! the file; the report follows AWS CloudTrail's `validate-logs` (what range was checked,
//! how many entries and checkpoints are valid, and which keys were trusted). A file whose
//! first line is `c2sp.org/tlog-proof@v1` is a receipt instead: it proves one entry
//! (`--entry`) is in a log signed by pinned keys (`--key`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use warden_ledger::export::{KeysSource, Report, Verifier, VerifyOptions};
use warden_ledger::hash::to_base64;
use warden_ledger::tlog_proof::{self, HEADER, Leaf, TlogProofError};

use super::progress::Progress;
use super::{entry_leaf, read_keys_file};
use crate::args::UsageError;
use crate::commands::{out, print_json};

/// What `warden audit verify` was given.
#[derive(Debug)]
pub struct VerifyArgs {
    /// The export or receipt.
    pub file: PathBuf,
    /// Signed checkpoints kept from elsewhere.
    pub checkpoints: Vec<PathBuf>,
    /// Pinned verifier keys.
    pub key: Option<PathBuf>,
    /// The entry a receipt proves.
    pub entry: Option<PathBuf>,
    /// Print the report as JSON.
    pub json: bool,
}

/// Read buffer: big enough that a line rarely spans two reads.
const READ_BUFFER: usize = 256 * 1024;

/// `warden audit verify`.
pub fn run(args: &VerifyArgs) -> Result<()> {
    let file =
        File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER, file);
    let mut first = Vec::new();
    reader
        .read_until(b'\n', &mut first)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if first.strip_suffix(b"\n").unwrap_or(&first) == HEADER.as_bytes() {
        let mut rest = String::new();
        reader
            .read_to_string(&mut rest)
            .with_context(|| format!("{} is not UTF-8 text", args.file.display()))?;
        let text = String::from_utf8(first)? + &rest;
        return receipt(args, &text);
    }
    export(args, reader, first)
}

/// The failure of a verification: the JSON report on stdout with `--json`, and the
/// error (which names the entry or checkpoint) for stderr and exit 1.
fn failure(args: &VerifyArgs, kind: &str, error: &str, lines_read: Option<u64>) -> anyhow::Error {
    if args.json {
        // The error below is what matters; a closed stdout must not hide it.
        let _ = print_json(&json!({
            "valid": false, "file": args.file.display().to_string(), "kind": kind,
            "error": error, "lines_read": lines_read,
        }));
    }
    anyhow!("{} does not verify: {error}", args.file.display())
}

/// Whether a line is (probably) an entry: only for the progress count; the verifier
/// decides for real.
fn looks_like_entry(line: &str) -> bool {
    line.contains("\"seq\":")
}

fn export(args: &VerifyArgs, mut reader: BufReader<File>, first_line: Vec<u8>) -> Result<()> {
    if args.entry.is_some() {
        return Err(UsageError(format!(
            "--entry is for receipts, and {} is an export (its first line is not {HEADER})",
            args.file.display()
        ))
        .into());
    }
    let pinned = args.key.as_deref().map(read_keys_file).transpose()?;
    let extra_checkpoints = args
        .checkpoints
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the checkpoint {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut verifier = Verifier::new(VerifyOptions {
        pinned_keys: pinned,
        extra_checkpoints,
    })
    .map_err(|e| failure(args, "export", &e.to_string(), Some(0)))?;
    let mut progress = Progress::new("verifying");
    let (mut lines, mut entries, mut bytes) = (0u64, 0u64, 0u64);
    let mut buf = first_line;
    loop {
        if buf.is_empty() {
            reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("cannot read {}", args.file.display()))?;
            if buf.is_empty() {
                break;
            }
        }
        lines += 1;
        bytes += buf.len() as u64;
        let line = std::str::from_utf8(&buf).map_err(|_| {
            failure(
                args,
                "export",
                &format!("line {lines}: not UTF-8"),
                Some(lines),
            )
        })?;
        entries += u64::from(looks_like_entry(line));
        verifier
            .feed_line(line)
            .map_err(|e| failure(args, "export", &e.to_string(), Some(lines)))?;
        progress.update(Some(entries), bytes);
        buf.clear();
    }
    progress.finish();
    let report = verifier
        .finish()
        .map_err(|e| failure(args, "export", &e.to_string(), Some(lines)))?;
    print_report(args, &report)
}

fn print_report(args: &VerifyArgs, r: &Report) -> Result<()> {
    let keys = match r.keys_source {
        KeysSource::Pinned => "pinned",
        KeysSource::Export => "export",
    };
    if args.json {
        return print_json(&json!({
            "valid": true, "file": args.file.display().to_string(), "kind": "export",
            "origin": r.origin, "first_seq": r.first_seq, "last_seq": r.last_seq,
            "entries": r.entries, "pruned": r.pruned,
            "checkpoints_valid": r.checkpoints_valid, "checkpoints_total": r.checkpoints_total,
            "keys": keys,
        }));
    }
    let range = match (r.first_seq, r.last_seq) {
        (Some(first), Some(last)) => format!("entries {first}–{last}"),
        _ => "no entries".to_owned(),
    };
    let mut text = format!(
        "Results for {}, {range}:\n{n}/{n} entries valid\n",
        r.origin,
        n = r.entries
    );
    if r.pruned > 0 {
        text.push_str(&format!(
            "entries 0–{} pruned: covered by the compact range, not checked one by one\n",
            r.pruned - 1
        ));
    }
    text.push_str(&format!(
        "{}/{} checkpoints valid",
        r.checkpoints_valid, r.checkpoints_total
    ));
    let unverifiable = r.checkpoints_total - r.checkpoints_valid;
    if unverifiable > 0 {
        text.push_str(&format!(
            " ({unverifiable} inside the pruned range: signature valid, root not checkable)"
        ));
    }
    text.push('\n');
    text.push_str(&match (r.keys_source, &args.key) {
        (KeysSource::Pinned, Some(file)) => format!("keys: pinned ({})", file.display()),
        (KeysSource::Pinned, None) => "keys: pinned".to_owned(),
        (KeysSource::Export, _) => {
            "keys: from the export (not independently trusted: pin them with --key)".to_owned()
        }
    });
    out(&text)
}

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

fn receipt(args: &VerifyArgs, text: &str) -> Result<()> {
    let file = args.file.display();
    if !args.checkpoints.is_empty() {
        return Err(usage(format!(
            "--checkpoint is for exports, and {file} is a receipt ({HEADER})"
        )));
    }
    let Some(entry_path) = &args.entry else {
        return Err(usage(format!(
            "{file} is a receipt ({HEADER}): give the entry it proves with --entry ENTRY.json"
        )));
    };
    let Some(key_path) = &args.key else {
        return Err(usage(format!(
            "{file} is a receipt: verifying it needs --key FILE, since offline the pinned keys are the only thing to trust"
        )));
    };
    let keys = read_keys_file(key_path)?;
    let entry = read_entry(entry_path)?;
    let fail = |error: String| failure(args, "receipt", &error, None);
    let (leaf, claimed) = entry_leaf(&entry).map_err(|e| fail(format!("{e:#}")))?;
    if claimed.is_some_and(|c| c != leaf) {
        return Err(fail(format!(
            "the entry in {} was altered: its content does not match its leaf_hash field",
            entry_path.display()
        )));
    }
    let verified = tlog_proof::verify(text, Leaf::Hash(leaf), &keys).map_err(|e| {
        fail(match e {
            TlogProofError::Inclusion(_) => format!(
                "the entry in {} is not the entry this receipt proves (one of them was altered): {e}",
                entry_path.display()
            ),
            other => other.to_string(),
        })
    })?;
    let c = &verified.checkpoint.checkpoint;
    let seq = entry.get("seq").and_then(Value::as_u64);
    if seq.is_some_and(|s| s != verified.index) {
        return Err(fail(format!(
            "the entry says seq {}, but the receipt proves leaf {}",
            seq.unwrap_or_default(),
            verified.index
        )));
    }
    // One key signs every tenant's log: the origin must be the entry's own tenant's.
    if let Some(tenant) = entry.get("tenant").and_then(Value::as_str)
        && !c.origin.ends_with(&format!("/audit/{tenant}"))
    {
        return Err(fail(format!(
            "the entry is of tenant {tenant}, but the receipt's checkpoint is of log {}",
            c.origin
        )));
    }
    let signed_by: Vec<String> = verified
        .checkpoint
        .verified_by
        .iter()
        .map(|k| format!("{}+{:08x}", k.name(), k.key_id()))
        .collect();
    let id = entry.get("id").and_then(Value::as_str).unwrap_or("-");
    if args.json {
        return print_json(&json!({
            "valid": true, "file": args.file.display().to_string(), "kind": "receipt",
            "origin": c.origin, "id": id, "seq": verified.index, "tree_size": c.size,
            "root": to_base64(&c.root), "signed_by": signed_by, "keys": "pinned",
        }));
    }
    out(&format!(
        "Results for {}, entry seq {} ({id}):\nentry included in the checkpoint of size {}, root {}\ncheckpoint signature valid ({})\nkeys: pinned ({})",
        c.origin,
        verified.index,
        c.size,
        to_base64(&c.root),
        signed_by.join(", "),
        key_path.display()
    ))
}

/// The entry file's JSON, refusing a repeated key as the export verifier does: a reader
/// could see one value while the leaf covers the other.
fn read_entry(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the entry {}", path.display()))?;
    serde_json::from_str::<NoRepeatedKeys>(&text)
        .with_context(|| format!("{} is not JSON without repeated keys", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Deserializes any JSON and fails on an object that repeats a key.
struct NoRepeatedKeys;

impl<'de> serde::Deserialize<'de> for NoRepeatedKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoRepeatedKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoRepeatedKeys {
    type Value = NoRepeatedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoRepeatedKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("repeated key {key:?}")));
            }
            map.next_value::<NoRepeatedKeys>()?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_files_with_a_repeated_key_are_refused() {
        assert!(serde_json::from_str::<NoRepeatedKeys>(r#"{"a":[1,{"b":null}],"c":"x"}"#).is_ok());
        for bad in [r#"{"a":1,"a":2}"#, r#"{"m":{"k":true,"k":false}}"#] {
            let err = serde_json::from_str::<NoRepeatedKeys>(bad).err().unwrap();
            assert!(err.to_string().contains("repeated key"), "{bad}: {err}");
        }
    }
}
