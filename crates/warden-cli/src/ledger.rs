//! The ledger commands of `warden audit`: `keys`, `checkpoint`, `export` and `receipt`
//! fetch from the server and check what they fetch; `verify` works offline; `watch` and
//! `tail` run until stopped. The maths is `warden_ledger`'s: this module only moves bytes
//! and says what was proven.
//!
//! # Layout
//! - this file: the fetching commands and the helpers they share (keys files, entry
//!   leaves, atomic writes).
//! - [`verify`]: `warden audit verify`, of an NDJSON export or of a receipt.
//! - [`watch`]: `warden audit watch`, the monitor that keeps the last trusted checkpoint.
//! - [`tail`]: `warden audit tail`, following the Server-Sent Events stream.
//! - [`progress`]: the progress line shown on a terminal.

pub mod progress;
pub mod tail;
pub mod verify;
pub mod watch;

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use reqwest::Method;
use serde_json::{Map, Value, json};
use warden_ledger::canonical::to_canonical_vec;
use warden_ledger::checkpoint::SignedCheckpoint;
use warden_ledger::hash::{Hash, from_base64, leaf_hash, to_base64};
use warden_ledger::note::VerifierKey;
use warden_ledger::proof::verify_inclusion;
use warden_ledger::tlog_proof::{self, Leaf, TlogProof};

use crate::args::{ConnArgs, ExportFormat, UsageError};
use crate::client::{Client, Need, problem};
use crate::commands::{out, print_json};
use progress::Progress;

/// Verifier keys from text with one key per line (blank lines and `#` comments skipped);
/// `source` names the text in errors.
pub fn parse_keys(text: &str, source: &str) -> Result<Vec<VerifierKey>> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = VerifierKey::parse(line)
            .with_context(|| format!("{source}, line {}: not a verifier key", n + 1))?;
        keys.push(key);
    }
    ensure!(!keys.is_empty(), "{source} holds no verifier key");
    Ok(keys)
}

/// The keys of a `--key` file.
pub fn read_keys_file(path: &Path) -> Result<Vec<VerifierKey>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key file {}", path.display()))?;
    parse_keys(&text, &path.display().to_string())
}

/// The server's checkpoint keys, as `GET /api/v1/audit/keys` serves them (no token).
pub async fn fetch_keys_text(base: &str) -> Result<String> {
    let base = base.trim_end_matches('/');
    let response = reqwest::get(format!("{base}/api/v1/audit/keys"))
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if !response.status().is_success() {
        return Err(problem(response).await);
    }
    Ok(response.text().await?)
}

/// The keys to check a fresh checkpoint with: the pinned file, else the server's.
async fn keys_for(base: &str, pinned: Option<&Path>) -> Result<Vec<VerifierKey>> {
    match pinned {
        Some(path) => read_keys_file(path),
        None => parse_keys(&fetch_keys_text(base).await?, "the server's key list"),
    }
}

/// The newest signed checkpoint note of the caller's log, opened with `keys`.
async fn fetch_checkpoint(
    client: &Client,
    keys: &[VerifierKey],
) -> Result<(String, SignedCheckpoint)> {
    let note = client.get_text("/api/v1/audit/checkpoint", &[]).await?;
    let signed = SignedCheckpoint::open(&note, keys)
        .context("the server's checkpoint does not verify with the keys")?;
    Ok((note, signed))
}

/// The names of the keys that signed a checkpoint, for messages.
fn signers(signed: &SignedCheckpoint) -> Vec<String> {
    signed
        .verified_by
        .iter()
        .map(|k| format!("{}+{:08x}", k.name(), k.key_id()))
        .collect()
}

/// An entry's leaf hash, `SHA-256(0x00 ‖ JCS(entry without leaf_hash))`, and the
/// `leaf_hash` the entry claims, if it carries one.
pub fn entry_leaf(entry: &Value) -> Result<(Hash, Option<Hash>)> {
    let Value::Object(object) = entry else {
        bail!("the entry is not a JSON object");
    };
    let mut object: Map<String, Value> = object.clone();
    let claimed = match object.remove("leaf_hash") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(from_base64)
                .context("the entry's leaf_hash is not base64 of 32 bytes")?,
        ),
    };
    let canonical = to_canonical_vec(&Value::Object(object))
        .context("the entry cannot be canonicalized (RFC 8785)")?;
    Ok((leaf_hash(&canonical), claimed))
}

/// `path` with `suffix` appended to its file name (`a.tlog-proof` → `a.tlog-proof.entry.json`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// A temporary path beside `path`, on the same file system so a rename is atomic.
fn temp_beside(path: &Path) -> PathBuf {
    with_suffix(path, &format!(".tmp-{}", std::process::id()))
}

/// Write `bytes` to `path` whole or not at all: a temporary file, synced, then renamed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// `warden audit keys`.
pub async fn keys(out_file: Option<&Path>, conn: &ConnArgs) -> Result<()> {
    let text = fetch_keys_text(&conn.url).await?;
    let keys = parse_keys(&text, "the server's key list")?;
    let lines: Vec<String> = keys.iter().map(ToString::to_string).collect();
    if let Some(path) = out_file {
        write_atomically(path, format!("{}\n", lines.join("\n")).as_bytes())?;
    }
    if conn.json {
        return print_json(&json!({
            "keys": lines,
            "out": out_file.map(|p| p.display().to_string()),
        }));
    }
    match out_file {
        Some(path) => out(&format!(
            "saved {} verifier key(s) to {}",
            lines.len(),
            path.display()
        )),
        None => out(&lines.join("\n")),
    }
}

/// `warden audit checkpoint`.
pub async fn checkpoint(
    out_file: Option<&Path>,
    pinned: Option<&Path>,
    conn: &ConnArgs,
) -> Result<()> {
    let client = Client::connect(conn, Need::Default).await?;
    let keys = keys_for(client.base(), pinned).await?;
    let (note, signed) = fetch_checkpoint(&client, &keys).await?;
    if let Some(path) = out_file {
        write_atomically(path, note.as_bytes())?;
    }
    let c = &signed.checkpoint;
    let root = to_base64(&c.root);
    if conn.json {
        return print_json(&json!({
            "origin": c.origin, "size": c.size, "root": root,
            "signed_by": signers(&signed), "note": note,
            "out": out_file.map(|p| p.display().to_string()),
        }));
    }
    let summary = format!(
        "checkpoint of {}: size {}, root {root} (signature verified: {})",
        c.origin,
        c.size,
        signers(&signed).join(", ")
    );
    match out_file {
        Some(path) => out(&format!("{summary}\nsaved to {}", path.display())),
        None => {
            // stdout carries the note alone, so it can be redirected into a file.
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(note.as_bytes())?;
            stdout.flush()?;
            eprintln!("{summary}");
            Ok(())
        }
    }
}

/// `warden audit export`: the body goes chunk by chunk to the file or stdout.
pub async fn export(
    format: ExportFormat,
    since: Option<String>,
    until: Option<String>,
    out_file: Option<&Path>,
    conn: &ConnArgs,
) -> Result<()> {
    let client = Client::connect(conn, Need::Default).await?;
    let mut query = vec![("format", format.as_str().to_owned())];
    query.extend(since.map(|s| ("since", s)));
    query.extend(until.map(|u| ("until", u)));
    let mut response = client
        .send(
            client
                .request(Method::GET, "/api/v1/audit/export")
                .query(&query),
        )
        .await?;
    let (mut bytes, mut lines) = (0u64, 0u64);
    let Some(path) = out_file else {
        // On a terminal the body itself shows progress; a line on top would garble it.
        let mut progress = if std::io::stdout().is_terminal() {
            Progress::hidden("exporting")
        } else {
            Progress::new("exporting")
        };
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = response.chunk().await.context("the export was cut off")? {
            stdout.write_all(&chunk)?;
            bytes += chunk.len() as u64;
            progress.update(None, bytes);
        }
        stdout.flush()?;
        return Ok(());
    };
    let mut progress = Progress::new("exporting");
    // A partial download never takes the file's name: write beside it, rename at the end.
    let tmp = temp_beside(path);
    let written = async {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?,
        );
        while let Some(chunk) = response.chunk().await.context("the export was cut off")? {
            file.write_all(&chunk)?;
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            progress.update(None, bytes);
        }
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        anyhow::Ok(())
    }
    .await;
    progress.finish();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("cannot export to {}", path.display())));
    }
    if conn.json {
        return print_json(&json!({
            "out": path.display().to_string(), "format": format.as_str(),
            "bytes": bytes, "lines": lines,
        }));
    }
    out(&format!(
        "exported {lines} lines ({}) to {}",
        progress::human_bytes(bytes),
        path.display()
    ))?;
    if format == ExportFormat::Ndjson {
        out(&format!(
            "verify it offline: warden audit verify {} --key KEYS",
            path.display()
        ))?;
    }
    Ok(())
}

/// `warden audit receipt`: the entry, the checkpoint and the inclusion proof between
/// them, checked here, then saved as a tlog-proof file and the entry beside it.
pub async fn receipt(
    id: &str,
    out_file: Option<PathBuf>,
    pinned: Option<&Path>,
    conn: &ConnArgs,
) -> Result<()> {
    // The id names the default file: it must be an id, not a path.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(UsageError(format!("{id:?} is not an audit entry id (a UUID)")).into());
    }
    let client = Client::connect(conn, Need::Default).await?;
    let (_, entry) = client
        .call(Method::GET, &format!("/api/v1/audit/{id}"), &[], None)
        .await?;
    let seq = entry["seq"]
        .as_u64()
        .context("the server's entry has no seq")?;
    let (leaf, claimed) = entry_leaf(&entry)?;
    ensure!(
        claimed.is_none_or(|c| c == leaf),
        "the server's entry does not match its own leaf_hash"
    );
    let keys = keys_for(client.base(), pinned).await?;
    let (note, signed) = fetch_checkpoint(&client, &keys).await?;
    let c = &signed.checkpoint;
    ensure!(
        seq < c.size,
        "entry seq {seq} is not in the newest checkpoint yet (size {}); try again in a second",
        c.size
    );
    let (_, proof) = client
        .call(
            Method::GET,
            "/api/v1/audit/proof/inclusion",
            &[("seq", seq.to_string()), ("tree_size", c.size.to_string())],
            None,
        )
        .await?;
    ensure!(
        proof["leaf_index"].as_u64() == Some(seq) && proof["tree_size"].as_u64() == Some(c.size),
        "the server answered a proof for another leaf or size: {proof}"
    );
    let hashes = proof["hashes"]
        .as_array()
        .context("the inclusion proof has no hashes")?
        .iter()
        .map(|h| h.as_str().and_then(from_base64))
        .collect::<Option<Vec<Hash>>>()
        .context("an inclusion proof hash is not base64 of 32 bytes")?;
    verify_inclusion(&leaf, seq, c.size, &hashes, &c.root)
        .context("the server's inclusion proof does not verify")?;
    let receipt = TlogProof {
        extra: None,
        index: seq,
        hashes,
        checkpoint: note,
    }
    .format();
    // What we write must verify as `verify` will read it.
    tlog_proof::verify(&receipt, Leaf::Hash(leaf), &keys)
        .context("the receipt does not verify after formatting")?;
    let path = out_file.unwrap_or_else(|| PathBuf::from(format!("receipt-{id}.tlog-proof")));
    let entry_path = with_suffix(&path, ".entry.json");
    write_atomically(&path, receipt.as_bytes())?;
    write_atomically(
        &entry_path,
        format!("{}\n", serde_json::to_string_pretty(&entry)?).as_bytes(),
    )?;
    if conn.json {
        return print_json(&json!({
            "id": id, "seq": seq, "origin": c.origin, "tree_size": c.size,
            "root": to_base64(&c.root), "signed_by": signers(&signed),
            "receipt": path.display().to_string(), "entry": entry_path.display().to_string(),
        }));
    }
    out(&format!(
        "entry {id} (seq {seq}) is in {}: included in the checkpoint of size {}, root {} (signature verified: {})\nsaved {} and {}\nverify it offline: warden audit verify {} --entry {} --key KEYS",
        c.origin,
        c.size,
        to_base64(&c.root),
        signers(&signed).join(", "),
        path.display(),
        entry_path.display(),
        path.display(),
        entry_path.display(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_skip_comments_and_name_the_bad_line() {
        let signer = warden_ledger::note::Signer::from_seed("log.example", &[7; 32]).unwrap();
        let line = signer.verifier_key().to_string();
        let keys = parse_keys(&format!("# pinned 2026-01-01\n\n{line}\n"), "k.txt").unwrap();
        assert_eq!(keys, [signer.verifier_key()]);
        let err = parse_keys(&format!("{line}\nnot-a-key\n"), "k.txt").unwrap_err();
        assert!(format!("{err:#}").contains("k.txt, line 2"), "{err:#}");
        assert!(parse_keys("# nothing\n", "k.txt").is_err());
    }

    #[test]
    fn entry_leaf_ignores_key_order_and_the_leaf_hash_field() {
        let a = json!({"id": "x", "seq": 3, "metadata": {"b": 1, "a": true}});
        let b: Value =
            serde_json::from_str(r#"{"metadata":{"a":true,"b":1},"seq":3,"id":"x"}"#).unwrap();
        let (leaf_a, none) = entry_leaf(&a).unwrap();
        assert_eq!(none, None);
        assert_eq!(entry_leaf(&b).unwrap().0, leaf_a);
        let mut with_hash = a.clone();
        with_hash["leaf_hash"] = json!(to_base64(&leaf_a));
        assert_eq!(entry_leaf(&with_hash).unwrap(), (leaf_a, Some(leaf_a)));
        let expected = leaf_hash(br#"{"id":"x","metadata":{"a":true,"b":1},"seq":3}"#);
        assert_eq!(leaf_a, expected);
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
