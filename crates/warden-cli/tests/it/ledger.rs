//! The ledger commands against the real server: `export` then `verify` offline, the
//! signed `checkpoint`, `receipt`s, the `watch` monitor and the live `tail`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_ledger::checkpoint::SignedCheckpoint;
use warden_ledger::note::{Signer, VerifierKey};

use super::{Server, creds, run, stderr, warden};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A server with a tenant log of a few entries, a viewer's credentials, and a scratch
/// directory for exports, receipts and state files.
struct Log {
    /// Declared first so it stops before its data directory is removed.
    server: Server,
    id: String,
    secret: String,
    dir: tempfile::TempDir,
}

impl Log {
    /// A log of `1 + extra` entries: each `clients create` is audited `client.create`.
    fn with_entries(extra: usize) -> Self {
        Self::new(extra, None)
    }

    /// Likewise, with the server on `listen` if given.
    fn new(extra: usize, listen: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = match listen {
            Some(listen) => Server::start_at(&dir.path().join("data"), listen),
            None => Server::start(&dir.path().join("data")),
        };
        let mut log = Self {
            server,
            id: String::new(),
            secret: String::new(),
            dir,
        };
        (log.id, log.secret) = creds(&log.data(), "default", "auditor", "Orch.Viewer");
        for n in 0..extra {
            log.add_entry(&format!("bot-{n}"));
        }
        log
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// A path in the scratch directory.
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// One more entry in the log: a client created on the store (works while the server
    /// is down too).
    fn add_entry(&self, client_name: &str) {
        creds(&self.data(), "default", client_name, "Orch.Viewer");
    }

    /// `warden <args>` as the viewer.
    fn warden(&self, args: &[&str]) -> Output {
        run(
            args,
            &[
                ("WARDEN_URL", self.server.url.as_str()),
                ("WARDEN_CLIENT_ID", self.id.as_str()),
                ("WARDEN_CLIENT_SECRET", self.secret.as_str()),
            ],
        )
    }

    /// `warden <args>`, which must exit 0.
    fn ok(&self, args: &[&str]) -> Output {
        let o = self.warden(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "warden {args:?}\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        o
    }

    /// `warden audit export --out <name>`, returning the file's path.
    fn export(&self, name: &str) -> String {
        let path = self.path(name);
        self.ok(&["audit", "export", "--out", &path]);
        path
    }

    /// The served keys, saved with `warden audit keys --out`.
    fn keys(&self) -> String {
        let path = self.path("keys.txt");
        self.ok(&["audit", "keys", "--out", &path]);
        path
    }
}

/// `warden audit verify <args>` (offline: no URL, no credentials).
fn verify(args: &[&str]) -> Output {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    run(&all, &[])
}

/// The seq of an export line, if it is an entry.
fn seq_of(line: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(line).ok()?;
    v.get("id")?;
    v.get("seq")?.as_u64()
}

/// The export with `edit` applied to the entry line of `seq`.
fn edit_entry(export: &str, seq: u64, edit: impl Fn(&str) -> String) -> String {
    let mut found = false;
    let mut out = String::new();
    for line in export.lines() {
        if seq_of(line) == Some(seq) {
            found = true;
            out.push_str(&edit(line));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(found, "no entry of seq {seq}");
    out
}

/// The export's entry lines without their (derived) `leaf_hash` field.
fn without_leaf_hashes(export: &str) -> String {
    let mut out = String::new();
    for line in export.lines() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if seq_of(line).is_some() {
            v.as_object_mut().unwrap().remove("leaf_hash");
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// One character changed: `client.create` becomes `client.creatE`.
fn one_character_changed(line: &str) -> String {
    assert!(line.contains(r#""action":"client.create""#), "{line}");
    line.replacen(
        r#""action":"client.create""#,
        r#""action":"client.creatE""#,
        1,
    )
}

fn write(path: &str, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn verify_passes_an_untouched_export_and_names_the_seq_of_one_changed_character() {
    let log = Log::with_entries(4);
    let export = log.export("audit.ndjson");
    let o = verify(&[&export]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "",
        "no progress line when stderr is not a terminal"
    );
    let report = stdout(&o);
    assert!(
        report.starts_with("Results for ") && report.contains("/audit/default, entries 0–4:"),
        "{report}"
    );
    assert!(report.contains("5/5 entries valid"), "{report}");
    assert!(
        report.contains("keys: from the export (not independently trusted"),
        "{report}"
    );
    let o = verify(&[&export, "--json"]);
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["entries"], 5);
    assert_eq!(json["last_seq"], 4);
    assert_eq!(json["keys"], "export");

    let text = std::fs::read_to_string(&export).unwrap();
    let altered = log.path("altered.ndjson");
    write(&altered, &edit_entry(&text, 2, one_character_changed));
    let o = verify(&[&altered]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("entry seq 2 was altered"),
        "{}",
        stderr(&o)
    );
    let o = verify(&[&altered, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["valid"], false);
    assert!(json["error"].as_str().unwrap().contains("seq 2"), "{json}");

    // A forger who also drops the leaf hashes is caught by the signed root.
    let forged = log.path("forged.ndjson");
    write(
        &forged,
        &edit_entry(&without_leaf_hashes(&text), 2, one_character_changed),
    );
    let o = verify(&[&forged]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("was altered") && stderr(&o).contains("does not match the signed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn verify_with_the_served_key_pins_it_and_with_a_wrong_key_fails() {
    let log = Log::with_entries(2);
    let export = log.export("audit.ndjson");
    let keys = log.keys();
    let o = verify(&[&export, "--key", &keys]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("keys: pinned ({keys})")),
        "{}",
        stdout(&o)
    );

    // A key of the same name, but not the server's.
    let served = VerifierKey::parse(std::fs::read_to_string(&keys).unwrap().trim()).unwrap();
    let impostor = Signer::from_seed(served.name(), &[7; 32]).unwrap();
    let wrong = log.path("wrong-keys.txt");
    write(&wrong, &format!("{}\n", impostor.verifier_key()));
    let o = verify(&[&export, "--key", &wrong]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("checkpoint of size"), "{}", stderr(&o));

    let o = verify(&[&export, "--key", &log.path("missing.txt")]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_truncated_export_fails_and_a_kept_checkpoint_catches_a_cut_at_a_checkpoint() {
    let log = Log::with_entries(2);
    // A checkpoint cut now (size 3) is interleaved in the export after entry seq 2.
    let early = log.path("early.note");
    log.ok(&["audit", "checkpoint", "--out", &early]);
    log.add_entry("late-1");
    log.add_entry("late-2");
    let export = log.export("audit.ndjson");
    let late = log.path("late.note");
    log.ok(&["audit", "checkpoint", "--out", &late]);
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // Without its last line (the newest checkpoint) the last entries prove nothing.
    let cut = log.path("cut.ndjson");
    write(&cut, &(lines[..lines.len() - 1].join("\n") + "\n"));
    let o = verify(&[&cut]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not covered by any signed checkpoint"),
        "{}",
        stderr(&o)
    );

    // Cut in the middle of a line.
    let half = log.path("half.ndjson");
    write(&half, &text[..text.len() - 40]);
    let o = verify(&[&half]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // Cut right after an older checkpoint, the export is a valid shorter log, and says
    // so; a checkpoint kept from later shows the entries that are missing.
    let boundary = lines
        .iter()
        .position(|l| l.starts_with(r#"{"checkpoint""#) && l.contains(r"\n3\n"))
        .expect("the checkpoint of size 3 is in the export");
    let short = log.path("short.ndjson");
    write(&short, &(lines[..=boundary].join("\n") + "\n"));
    let o = verify(&[&short, "--checkpoint", &early]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("entries 0–2:"), "{}", stdout(&o));
    let o = verify(&[&short, "--checkpoint", &late]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("beyond the exported entries"),
        "{}",
        stderr(&o)
    );
    // The whole export agrees with both kept checkpoints.
    let o = verify(&[&export, "--checkpoint", &early, "--checkpoint", &late]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn export_to_stdout_or_to_a_file_verifies_and_other_formats_stream_too() {
    let log = Log::with_entries(3);
    let file = log.export("audit.ndjson");
    let o = log.ok(&[
        "audit",
        "export",
        "--out",
        &log.path("again.ndjson"),
        "--json",
    ]);
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(json["bytes"].as_u64().unwrap() > 0, "{json}");
    let left: Vec<_> = std::fs::read_dir(log.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "no temporary file is left: {left:?}");
    let o = log.ok(&["audit", "export"]);
    let piped = log.path("piped.ndjson");
    std::fs::write(&piped, &o.stdout).unwrap();
    for export in [&file, &piped] {
        let o = verify(&[export.as_str()]);
        assert_eq!(o.status.code(), Some(0), "{export}: {}", stderr(&o));
        assert!(stdout(&o).contains("4/4 entries valid"), "{}", stdout(&o));
    }
    let o = log.ok(&["audit", "export", "--format", "csv"]);
    let csv = stdout(&o);
    assert!(csv.starts_with("seq,id,created_at,"), "{csv}");
    assert_eq!(csv.lines().count(), 5, "a header and four rows: {csv}");
    // A refused request names the server's reason code and leaves no file.
    let o = log.warden(&[
        "audit",
        "export",
        "--since",
        "yesterday",
        "--out",
        &log.path("bad.ndjson"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("VALIDATION_FAILED"), "{}", stderr(&o));
    assert!(!Path::new(&log.path("bad.ndjson")).exists());
}

#[test]
fn checkpoint_out_writes_a_signed_note_that_verifies_with_the_served_keys() {
    let log = Log::with_entries(1);
    let note_path = log.path("checkpoint.note");
    let o = log.ok(&["audit", "checkpoint", "--out", &note_path, "--json"]);
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["size"], 2);
    let note = std::fs::read_to_string(&note_path).unwrap();
    assert_eq!(json["note"], note.as_str());
    let keys: Vec<VerifierKey> = std::fs::read_to_string(log.keys())
        .unwrap()
        .lines()
        .map(|l| VerifierKey::parse(l).unwrap())
        .collect();
    let signed = SignedCheckpoint::open(&note, &keys).unwrap();
    assert_eq!(signed.checkpoint.size, 2);
    assert!(signed.checkpoint.origin.ends_with("/audit/default"));
    assert_eq!(json["origin"], signed.checkpoint.origin.as_str());
    // Human form: the note on stdout (redirectable), size and root on stderr.
    let o = log.ok(&["audit", "checkpoint"]);
    assert_eq!(stdout(&o), note, "nothing grew, so the same checkpoint");
    assert!(
        stderr(&o).contains("size 2, root ") && stderr(&o).contains("signature verified"),
        "{}",
        stderr(&o)
    );
}

/// The id of the entry of `seq`, from the audit list.
fn entry_id(log: &Log, seq: u64) -> String {
    let o = log.ok(&["audit", "list", "--json"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["seq"] == seq)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_receipt_verifies_offline_and_fails_for_a_changed_entry() {
    let log = Log::with_entries(4);
    let keys = log.keys();
    let id = entry_id(&log, 3);
    let receipt = log.path("entry3.tlog-proof");
    let o = log.ok(&["audit", "receipt", &id, "--out", &receipt]);
    assert!(stdout(&o).contains("(seq 3)"), "{}", stdout(&o));
    let text = std::fs::read_to_string(&receipt).unwrap();
    assert!(
        text.starts_with("c2sp.org/tlog-proof@v1\nindex 3\n"),
        "{text}"
    );
    let entry = format!("{receipt}.entry.json");
    let o = verify(&[&receipt, "--entry", &entry, "--key", &keys]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("entry seq 3") && stdout(&o).contains("keys: pinned"),
        "{}",
        stdout(&o)
    );

    // Offline there is nothing else to trust: the keys and the entry are required.
    let o = verify(&[&receipt, "--entry", &entry]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--key"), "{}", stderr(&o));
    let o = verify(&[&receipt, "--key", &keys]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--entry"), "{}", stderr(&o));

    // One character of the entry changed: its own leaf_hash gives it away, and without
    // that field the inclusion proof does.
    let original = std::fs::read_to_string(&entry).unwrap();
    let changed = original.replacen("client.create", "client.creatE", 1);
    assert_ne!(changed, original);
    let altered = log.path("altered.entry.json");
    write(&altered, &changed);
    let o = verify(&[&receipt, "--entry", &altered, "--key", &keys]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("was altered"), "{}", stderr(&o));
    let mut bare: Value = serde_json::from_str(&changed).unwrap();
    bare.as_object_mut().unwrap().remove("leaf_hash");
    write(&altered, &bare.to_string());
    let o = verify(&[&receipt, "--entry", &altered, "--key", &keys]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("not the entry this receipt proves"),
        "{}",
        stderr(&o)
    );
    // Another entry does not pass for this one either.
    let other = log.path("other.tlog-proof");
    log.ok(&["audit", "receipt", &entry_id(&log, 1), "--out", &other]);
    let o = verify(&[
        &receipt,
        "--entry",
        &format!("{other}.entry.json"),
        "--key",
        &keys,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // The id names a file: anything but an id is refused before any request.
    let o = log.warden(&["audit", "receipt", "../../etc/x"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // The default file name is receipt-<id>.tlog-proof, in the working directory.
    let mut cmd = warden();
    cmd.args(["audit", "receipt", &id])
        .current_dir(log.dir.path())
        .env("WARDEN_URL", &log.server.url)
        .env("WARDEN_CLIENT_ID", &log.id)
        .env("WARDEN_CLIENT_SECRET", &log.secret);
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let default = log.dir.path().join(format!("receipt-{id}.tlog-proof"));
    assert!(default.exists() && Path::new(&format!("{}.entry.json", default.display())).exists());
}

fn watch(log: &Log, state: &str) -> Output {
    log.warden(&["audit", "watch", "--once", "--state", state])
}

fn read_state(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn watch_once_passes_across_growth_then_detects_a_rollback_and_a_fork() {
    let log = Log::with_entries(1);
    let state = log.path("watch/state.json");
    let o = watch(&log, &state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("trusting on first use: size 2"),
        "{}",
        stdout(&o)
    );
    let first = read_state(&state);
    assert_eq!(first["size"], 2);
    assert!(first["keys"].as_array().is_some_and(|k| k.len() == 1));

    let o = watch(&log, &state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("size 2 unchanged"), "{}", stdout(&o));

    log.add_entry("grow-1");
    log.add_entry("grow-2");
    let o = watch(&log, &state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("size 2 → 4, consistent"),
        "{}",
        stdout(&o)
    );
    let trusted = std::fs::read_to_string(&state).unwrap();
    assert_eq!(read_state(&state)["size"], 4);

    let tamper = |edit: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&trusted).unwrap();
        edit(&mut v);
        let text = serde_json::to_string_pretty(&v).unwrap();
        write(&state, &text);
        text
    };

    // The state says the log was larger: the server rolled it back.
    let edited = tamper(&|v| v["size"] = Value::from(104));
    let o = watch(&log, &state);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("ROLLBACK") && stderr(&o).contains("from 104 to 4"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        edited,
        "an alarm leaves the state as it was"
    );

    // Another root at the trusted size: a fork.
    let zero_root = "A".repeat(43) + "=";
    tamper(&|v| v["root"] = Value::from(zero_root.as_str()));
    let o = log.warden(&["audit", "watch", "--once", "--state", &state, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("FORK"), "{}", stderr(&o));
    let alarm: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(alarm["status"], "fork");
    let evidence = alarm["evidence"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(evidence)
            .unwrap()
            .contains("/audit/default\n4\n")
    );

    // A tree that grew from another root: its consistency proof cannot verify.
    log.add_entry("grow-3");
    let o = watch(&log, &state);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("FORK") && stderr(&o).contains("consistency proof from size 4 to 5"),
        "{}",
        stderr(&o)
    );

    // Restored, the state follows the log again.
    write(&state, &trusted);
    let o = watch(&log, &state);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("size 4 → 5, consistent"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn watch_keeps_one_state_file_per_log_under_xdg_state_home() {
    let log = Log::with_entries(0);
    let xdg = log.path("xdg");
    let o = run(
        &["audit", "watch", "--once", "--json"],
        &[
            ("WARDEN_URL", log.server.url.as_str()),
            ("WARDEN_CLIENT_ID", log.id.as_str()),
            ("WARDEN_CLIENT_SECRET", log.secret.as_str()),
            ("XDG_STATE_HOME", xdg.as_str()),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["status"], "first_use");
    let files: Vec<PathBuf> = std::fs::read_dir(Path::new(&xdg).join("warden"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].to_str(), report["state"].as_str());
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("%2Faudit%2Fdefault.json"), "{name}");
}

/// Lines of a child's pipe, delivered through a channel so a test can wait with a
/// deadline.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `warden audit tail --json`, with its stdout and stderr as line channels.
struct Tail {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

impl Tail {
    fn start(log: &Log, url: &str) -> Self {
        let mut child = warden()
            .args(["audit", "tail", "--json"])
            .env("WARDEN_URL", url)
            .env("WARDEN_CLIENT_ID", &log.id)
            .env("WARDEN_CLIENT_SECRET", &log.secret)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Self { child, out, err }
    }

    /// Wait for a stderr line containing `text`.
    fn wait_for_stderr(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.err.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no stderr line with {text:?} within {within:?}; saw {seen:?}");
    }

    /// The next entry printed, within `within`.
    fn next_entry(&self, within: Duration) -> Value {
        let line = self
            .out
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("no entry printed within {within:?}"));
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tail_prints_a_new_entry_within_a_second() {
    let log = Log::with_entries(1);
    let tail = Tail::start(&log, &log.server.url);
    tail.wait_for_stderr("tail: following", Duration::from_secs(10));
    log.add_entry("tail-probe");
    let written = Instant::now();
    let entry = tail.next_entry(Duration::from_secs(1));
    assert!(written.elapsed() < Duration::from_secs(1));
    assert_eq!(entry["action"], "client.create");
    assert_eq!(entry["target_id"], "tail-probe");
    assert_eq!(entry["seq"], 2, "only new entries, not the log before");
    assert!(entry["leaf_hash"].is_string());
}

/// A free port below Linux's ephemeral range, so no client socket takes it while the
/// server is down.
fn pick_port() -> u16 {
    let offset = std::process::id() % 10_000;
    (0..10_000u32)
        .map(|i| u16::try_from(20_000 + (offset + i) % 10_000).unwrap())
        .find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in 20000..30000")
}

#[test]
fn tail_resumes_after_a_dropped_connection_without_losing_or_repeating_entries() {
    // The server on a known address, so it can be restarted where the tail expects it.
    let listen = format!("127.0.0.1:{}", pick_port());
    let mut log = Log::new(0, Some(&listen));
    let tail = Tail::start(&log, &log.server.url);
    tail.wait_for_stderr("tail: following", Duration::from_secs(10));
    log.add_entry("before-drop");
    assert_eq!(
        tail.next_entry(Duration::from_secs(2))["target_id"],
        "before-drop"
    );

    // The connection drops hard; an entry is written while no server runs.
    log.server.child.kill().unwrap();
    log.server.child.wait().unwrap();
    tail.wait_for_stderr("reconnecting", Duration::from_secs(10));
    log.add_entry("while-down");
    log.server = Server::start_at(&log.dir.path().join("data"), &listen);
    let resumed = tail.wait_for_stderr("tail: following", Duration::from_secs(20));
    assert!(resumed.contains("after seq 1"), "{resumed}");
    log.add_entry("after-restart");
    let names: Vec<Value> = (0..2)
        .map(|_| tail.next_entry(Duration::from_secs(5))["target_id"].clone())
        .collect();
    assert_eq!(names, ["while-down", "after-restart"]);
    assert!(
        tail.out.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing is printed twice"
    );
}

/// The keys `/api/v1/audit/keys` serves right now.
fn served_keys(log: &Log) -> Vec<VerifierKey> {
    std::fs::read_to_string(log.keys())
        .unwrap()
        .lines()
        .map(|l| VerifierKey::parse(l).unwrap())
        .collect()
}

#[test]
fn a_rotated_checkpoint_key_signs_what_follows_and_what_it_signed_still_verifies() {
    let log = Log::with_entries(1);
    let data = log.data();
    let old_note = log.path("old.note");
    log.ok(&["audit", "checkpoint", "--out", &old_note]);
    let old_keys = served_keys(&log);
    assert_eq!(old_keys.len(), 1);

    let rotate = |extra: &[&str]| {
        let mut args = vec![
            "keys",
            "rotate",
            "--purpose",
            "checkpoint",
            "--data-dir",
            &data,
        ];
        args.extend_from_slice(extra);
        run(&args, &[])
    };

    // An operator command: no warrant, no rotation (exit 2, before the store is touched);
    // a ticket that does not match the pattern is refused too.
    let o = rotate(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = rotate(&["--reason", "yearly", "--ticket", "not a ticket"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("ticket pattern"), "{}", stderr(&o));

    // Rotated on the store while the server runs.
    let o = rotate(&["--reason", "yearly rotation", "--ticket", "OPS-7", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    let old_kid = format!("{:08x}", old_keys[0].key_id());
    assert_eq!(rotated["retired"], serde_json::json!([old_kid]));
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    // The server takes the new key up within seconds and serves both.
    let deadline = Instant::now() + Duration::from_secs(20);
    let keys = loop {
        let keys = served_keys(&log);
        if keys.len() == 2 {
            break keys;
        }
        assert!(
            Instant::now() < deadline,
            "the server never took up the rotated key"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let new_key: Vec<VerifierKey> = keys
        .iter()
        .filter(|k| format!("{:08x}", k.key_id()) == new_kid)
        .cloned()
        .collect();
    assert_eq!(new_key.len(), 1, "{keys:?}");

    // What follows is signed by the new key alone; what came before still verifies.
    log.add_entry("after-rotation");
    let new_note = log.path("new.note");
    log.ok(&["audit", "checkpoint", "--out", &new_note]);
    let new_note = std::fs::read_to_string(&new_note).unwrap();
    let old_text = std::fs::read_to_string(&old_note).unwrap();
    assert!(SignedCheckpoint::open(&new_note, &new_key).is_ok());
    assert!(SignedCheckpoint::open(&new_note, &old_keys).is_err());
    assert!(SignedCheckpoint::open(&old_text, &keys).is_ok());
    let export = log.export("after.ndjson");
    let keys_path = log.keys();
    let o = verify(&[&export, "--key", &keys_path, "--checkpoint", &old_note]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let o = run(
        &[
            "keys",
            "list",
            "--purpose",
            "checkpoint",
            "--json",
            "--data-dir",
            &data,
        ],
        &[],
    );
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let status: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kid"].as_str().unwrap(), k["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [(old_kid.as_str(), "retired"), (new_kid.as_str(), "active")]
    );
    assert!(!String::from_utf8_lossy(&o.stdout).contains("secret"));
}
