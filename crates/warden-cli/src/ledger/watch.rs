//! `warden audit watch`: a monitor that remembers the last checkpoint it trusted, on the
//! operator's disk, and makes the server prove every newer one extends it.
//!
//! Each round fetches the newest checkpoint, verifies its signature with the keys trusted
//! on first use, and checks it against the state: the same size and root is unchanged; a
//! larger size needs an RFC 9162 consistency proof from the trusted size; a smaller size
//! is a ROLLBACK, and a proof that fails (or another root at the same size) a FORK. An
//! alarm leaves the state as it was, saves the server's checkpoint beside it as
//! evidence, and exits 1; otherwise the state moves forward, written whole or not at all.
//!
//! The state's `size` and `root` are what is trusted; its `checkpoint` note is kept as
//! the signed evidence behind them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_core::time::Timestamp;
use warden_ledger::checkpoint::Checkpoint;
use warden_ledger::hash::{Hash, from_base64, to_base64};
use warden_ledger::note::Note;
use warden_ledger::proof::verify_consistency;

use super::{fetch_keys_text, parse_keys, with_suffix, write_atomically};
use crate::args::ConnArgs;
use crate::client::{Client, HttpError, Need};
use crate::commands::{out, print_json};

/// What `warden audit watch` was given.
#[derive(Debug)]
pub struct WatchArgs {
    /// The state file; `None` for the default, one per origin.
    pub state: Option<PathBuf>,
    /// Time between rounds.
    pub interval: Duration,
    /// One round only.
    pub once: bool,
    /// Keys to trust on first use instead of the server's.
    pub key: Option<PathBuf>,
}

/// The state file: what this monitor trusts about one log.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// The log (checkpoint origin), so one file is never used for two logs.
    origin: String,
    /// The trusted tree size.
    size: u64,
    /// The trusted root, base64.
    root: String,
    /// The signed note the size and root were taken from: evidence, should the log later
    /// contradict it.
    checkpoint: String,
    /// The verifier keys trusted on first use (or pinned with --key), in note form.
    keys: Vec<String>,
    /// When the keys were first trusted.
    trusted_since: String,
    /// When the trusted checkpoint last moved.
    updated_at: String,
}

/// What a round found.
enum Outcome {
    /// No state yet: the keys and the checkpoint are now trusted.
    FirstUse,
    /// The same checkpoint as last time.
    Unchanged,
    /// A larger tree, proven to extend the trusted one.
    Grew {
        /// The trusted size before.
        from: u64,
    },
}

/// Evidence that the log cannot be trusted: loud, exit 1, state untouched.
#[derive(Debug)]
struct Alarm {
    /// `ROLLBACK`, `FORK` or `UNTRUSTED SIGNATURE`.
    kind: &'static str,
    /// The log.
    origin: String,
    /// The state file.
    state: PathBuf,
    /// The trusted size and root.
    trusted: (u64, String),
    /// The server's size and root (unverified for a signature alarm).
    served: (u64, String),
    /// What exactly does not hold.
    reason: String,
    /// Where the server's signed checkpoint was saved.
    evidence: Option<PathBuf>,
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} detected in log {}: {}",
            self.kind, self.origin, self.reason
        )
    }
}

impl std::error::Error for Alarm {}

impl Alarm {
    /// The alarm, on stderr in capitals (and as JSON on stdout with `--json`).
    fn shout(&self, json: bool) -> Result<()> {
        if json {
            print_json(&json!({
                "status": self.kind.to_lowercase().replace(' ', "_"), "origin": self.origin,
                "state": self.state.display().to_string(),
                "trusted": {"size": self.trusted.0, "root": self.trusted.1},
                "served": {"size": self.served.0, "root": self.served.1},
                "reason": self.reason,
                "evidence": self.evidence.as_ref().map(|p| p.display().to_string()),
            }))?;
        }
        let bar = "!".repeat(78);
        let mut text = format!(
            "{bar}\n!!! {}: the log {} cannot be trusted\n!!! trusted: size {}, root {} ({})\n!!! served:  size {}, root {}\n!!! {}\n",
            self.kind,
            self.origin,
            self.trusted.0,
            self.trusted.1,
            self.state.display(),
            self.served.0,
            self.served.1,
            self.reason,
        );
        if let Some(evidence) = &self.evidence {
            text.push_str(&format!(
                "!!! the server's signed checkpoint is saved in {}\n",
                evidence.display()
            ));
        }
        text.push_str(
            "!!! The state was not changed. Keep it and the evidence; do not trust this log\n!!! until the operators of the server explain it.\n",
        );
        text.push_str(&bar);
        eprintln!("{text}");
        Ok(())
    }
}

/// `warden audit watch`.
pub async fn run(args: WatchArgs, conn: &ConnArgs) -> Result<()> {
    let mut client = Client::connect(conn, Need::Default).await?;
    loop {
        match round(&client, &args).await {
            Ok((outcome, state, path)) => report(&outcome, &state, &path, conn.json)?,
            Err(e) => {
                if let Some(alarm) = e.downcast_ref::<Alarm>() {
                    alarm.shout(conn.json)?;
                    return Err(e);
                }
                if args.once {
                    return Err(e);
                }
                eprintln!(
                    "watch: this round failed; next try in {} s: {e:#}",
                    args.interval.as_secs()
                );
                // Tokens expire; a long-running monitor asks for a new one.
                let expired = e
                    .downcast_ref::<HttpError>()
                    .is_some_and(|h| h.status == StatusCode::UNAUTHORIZED);
                if expired && let Ok(fresh) = Client::connect(conn, Need::Default).await {
                    client = fresh;
                }
            }
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(args.interval).await;
    }
}

fn report(outcome: &Outcome, state: &State, path: &Path, json: bool) -> Result<()> {
    let now = Timestamp::now().to_rfc3339();
    let (status, previous) = match outcome {
        Outcome::FirstUse => ("first_use", None),
        Outcome::Unchanged => ("unchanged", Some(state.size)),
        Outcome::Grew { from } => ("consistent", Some(*from)),
    };
    if json {
        return print_json(&json!({
            "status": status, "at": now, "origin": state.origin, "size": state.size,
            "root": state.root, "previous_size": previous,
            "state": path.display().to_string(),
        }));
    }
    let what = match outcome {
        Outcome::FirstUse => format!(
            "trusting on first use: size {}, root {}, keys {} (state {})",
            state.size,
            state.root,
            state.keys.join(" "),
            path.display()
        ),
        Outcome::Unchanged => format!("size {} unchanged, root {}", state.size, state.root),
        Outcome::Grew { from } => format!(
            "size {from} → {}, consistent, root {}",
            state.size, state.root
        ),
    };
    out(&format!("{now} {}: {what}", state.origin))
}

/// The default directory of state files: `$XDG_STATE_HOME/warden`, else
/// `~/.local/state/warden`.
fn default_state_dir() -> Result<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = absolute("XDG_STATE_HOME") {
        return Ok(dir.join("warden"));
    }
    let home = absolute("HOME").context("no HOME or XDG_STATE_HOME: give --state FILE")?;
    Ok(home.join(".local/state/warden"))
}

/// A file name for an origin: every byte but `[A-Za-z0-9.-]` percent-encoded, so two
/// origins never share a file.
fn state_file_name(origin: &str) -> String {
    let mut name = String::with_capacity(origin.len() + 8);
    for b in origin.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    // A leading dot would hide the file; "." and ".." are not names.
    if name.starts_with('.') {
        name.replace_range(0..1, "%2E");
    }
    name.push_str(".json");
    name
}

fn load(path: &Path) -> Result<Option<State>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("the state file {} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save(path: &Path, state: &State) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_atomically(
        path,
        format!("{}\n", serde_json::to_string_pretty(state)?).as_bytes(),
    )
}

/// Save the server's checkpoint beside the state, as evidence for an alarm.
fn keep_evidence(path: &Path, note: &str) -> Option<PathBuf> {
    let evidence = with_suffix(
        path,
        &format!(".rejected-{}.note", Timestamp::now().as_micros()),
    );
    write_atomically(&evidence, note.as_bytes())
        .ok()
        .map(|()| evidence)
}

/// One round: fetch, verify, compare, and move the state forward.
async fn round(client: &Client, args: &WatchArgs) -> Result<(Outcome, State, PathBuf)> {
    let note_text = client.get_text("/api/v1/audit/checkpoint", &[]).await?;
    let note = Note::parse(&note_text).context("the server's checkpoint is not a signed note")?;
    // Read (not yet trusted) only to find which state file is this log's.
    let origin = Checkpoint::parse(note.text())
        .context("the server's checkpoint is malformed")?
        .origin;
    let path = match &args.state {
        Some(p) => p.clone(),
        None => default_state_dir()?.join(state_file_name(&origin)),
    };
    let now = Timestamp::now().to_rfc3339();
    let Some(state) = load(&path)? else {
        let keys_text = match &args.key {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the key file {}", file.display()))?,
            None => fetch_keys_text(client.base()).await?,
        };
        let keys = parse_keys(&keys_text, "the keys to trust")?;
        let opened = note
            .verify(&keys)
            .context("the server's checkpoint does not verify with the keys to trust")?;
        let checkpoint = Checkpoint::parse(&opened.text)?;
        let state = State {
            origin,
            size: checkpoint.size,
            root: to_base64(&checkpoint.root),
            checkpoint: note_text,
            keys: keys.iter().map(ToString::to_string).collect(),
            trusted_since: now.clone(),
            updated_at: now,
        };
        save(&path, &state)?;
        return Ok((Outcome::FirstUse, state, path));
    };
    if state.origin != origin {
        bail!(
            "{} watches the log {}, but the server's checkpoint is of {origin}: give another --state",
            path.display(),
            state.origin
        );
    }
    let keys = parse_keys(&state.keys.join("\n"), "the state file's keys")?;
    let trusted_root: Hash = from_base64(&state.root)
        .with_context(|| format!("{}: root is not base64 of 32 bytes", path.display()))?;
    let alarm = |kind, served: (u64, String), reason: String| Alarm {
        kind,
        origin: origin.clone(),
        state: path.clone(),
        trusted: (state.size, state.root.clone()),
        served,
        reason,
        evidence: keep_evidence(&path, &note_text),
    };
    let opened = match note.verify(&keys) {
        Ok(opened) => opened,
        Err(e) => {
            let unverified = Checkpoint::parse(note.text())?;
            return Err(alarm(
                "UNTRUSTED SIGNATURE",
                (unverified.size, to_base64(&unverified.root)),
                format!(
                    "the checkpoint does not verify with the keys trusted since {}: {e}",
                    state.trusted_since
                ),
            )
            .into());
        }
    };
    let served = Checkpoint::parse(&opened.text)?;
    let served_pair = (served.size, to_base64(&served.root));
    if served.size < state.size {
        return Err(alarm(
            "ROLLBACK",
            served_pair,
            format!(
                "the log shrank from {} to {} entries: a log only grows",
                state.size, served.size
            ),
        )
        .into());
    }
    if served.size == state.size {
        if served.root == trusted_root {
            return Ok((Outcome::Unchanged, state, path));
        }
        return Err(alarm(
            "FORK",
            served_pair,
            format!(
                "two signed roots for the same size {}: the log was rewritten",
                served.size
            ),
        )
        .into());
    }
    // The empty tree is a prefix of every tree; any other size needs a proof.
    if state.size > 0 {
        let proof = consistency_proof(client, state.size, served.size).await?;
        if let Err(e) =
            verify_consistency(state.size, served.size, &proof, &trusted_root, &served.root)
        {
            return Err(alarm(
                "FORK",
                served_pair,
                format!(
                    "the consistency proof from size {} to {} does not verify ({e}): the new tree does not extend the trusted one",
                    state.size, served.size
                ),
            )
            .into());
        }
    }
    let from = state.size;
    let state = State {
        size: served.size,
        root: served_pair.1,
        checkpoint: note_text,
        updated_at: now,
        ..state
    };
    save(&path, &state)?;
    Ok((Outcome::Grew { from }, state, path))
}

/// The server's consistency proof between two sizes, checked for shape.
async fn consistency_proof(client: &Client, from: u64, to: u64) -> Result<Vec<Hash>> {
    let (_, proof) = client
        .call(
            Method::GET,
            "/api/v1/audit/proof/consistency",
            &[("from", from.to_string()), ("to", to.to_string())],
            None,
        )
        .await?;
    if proof["from"].as_u64() != Some(from) || proof["to"].as_u64() != Some(to) {
        return Err(anyhow!(
            "the server answered a consistency proof between other sizes: {proof}"
        ));
    }
    proof["hashes"]
        .as_array()
        .context("the consistency proof has no hashes")?
        .iter()
        .map(|h| h.as_str().and_then(from_base64))
        .collect::<Option<Vec<Hash>>>()
        .context("a consistency proof hash is not base64 of 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_names_are_safe_and_distinct() {
        assert_eq!(
            state_file_name("warden.example:8080/audit/acme"),
            "warden.example%3A8080%2Faudit%2Facme.json"
        );
        assert_ne!(state_file_name("a/b"), state_file_name("a_b"));
        assert_ne!(state_file_name("a/b"), state_file_name("a%2Fb"));
        assert_eq!(state_file_name("../x"), "%2E.%2Fx.json");
        assert!(!state_file_name("..").starts_with('.'));
    }
}
