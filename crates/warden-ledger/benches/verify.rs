//! `warden audit verify` speed (issue [3/3]: ≥ 500,000 entries/s on one core), and where
//! the time goes. Results and method: `docs/BENCHMARKS.md`.
//!
//! Builds a synthetic NDJSON export in memory first — 1,000,000 entries shaped like the
//! server's (every audit field, the canonical text with its `leaf_hash` appended, exactly
//! as `GET /api/v1/audit/export` writes them), a `keys` line, and a checkpoint signed with
//! a test key after every 10,000th entry as the server's checkpoint timer leaves them —
//! then times, on one thread:
//!
//! - `verify`: [`Verifier::feed_line`] over every line, then [`Verifier::finish`];
//! - the floor: SHA-256 over the same bytes in one stream;
//! - `stream:` the verifier's per-entry path rebuilt from the crate's public parts, growing
//!   stage by stage (the canonical check of the line without its `leaf_hash`; + leaf hash
//!   and comparison with the claimed one; + tree append) over every entry line;
//! - `fallback:` parse and RFC 8785 re-serialization, the path of a line that is not
//!   canonical;
//! - `part:` each piece alone, over a working set of 1,000 entries repeated up to n
//!   (the verifier handles each line while it is in cache).
//!
//! ```sh
//! cargo bench -p warden-ledger --bench verify
//! WARDEN_BENCH_ENTRIES=100000 WARDEN_BENCH_RUNS=3 cargo bench -p warden-ledger --bench verify
//! ```
//!
//! Every measurement runs `WARDEN_BENCH_RUNS` times (default 5), round-robin with the
//! others so that drift on a shared machine hits all alike; the median and the range are
//! printed. `WARDEN_BENCH_EXPORT_FILE=PATH` also writes the export to a file, to time the
//! real command on it (`time warden audit verify PATH`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_ledger::canonical::{canonical_members, to_canonical_string, to_canonical_vec};
use warden_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use warden_ledger::export::{Verifier, VerifyOptions, checkpoint_line, keys_line};
use warden_ledger::hash::{from_base64, leaf_hash, to_base64};
use warden_ledger::note::Signer;
use warden_ledger::tree::CompactRange;

const ORIGIN: &str = "bench.warden.example/audit/acme";

/// An entry line as the server writes it, split into its canonical body (without the
/// closing brace) and the base64 of its trailing `leaf_hash` member.
fn split_claim(line: &str) -> (&str, &str) {
    const CLAIM: &str = ",\"leaf_hash\":\"";
    let at = line.rfind(CLAIM).expect("a trailing leaf_hash");
    (&line[..at], &line[at + CLAIM.len()..line.len() - 2])
}
const CHECKPOINT_EVERY: u64 = 10_000;

/// A small deterministic generator (xorshift64*), so every run builds the same export.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A UUIDv7-shaped string: a millisecond time prefix, then random bits.
    fn uuid7(&mut self, millis: u64) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
            millis >> 16,
            millis & 0xffff,
            a & 0xfff,
            0x8000 | ((a >> 12) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

const ACTIONS: [&str; 6] = [
    "job.cancel",
    "job.replay",
    "queue.pause",
    "queue.resume",
    "token.issue",
    "job.bulk_replay",
];

/// One audit entry as the API serves it (`warden_core::audit::AuditEntry`'s fields), with
/// the values the control-plane benchmark seeds: 3 % rejected, 50 actors, 10,000 tickets.
fn entry(seq: u64, rng: &mut Rng) -> Value {
    // One entry every 10 ms from 2026-11-23T00:00:00Z.
    let micros = 1_795_392_000_000_000 + seq * 10_000;
    let millis = micros / 1000;
    let secs = micros / 1_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let day = 23 + (secs - 1_795_392_000) / 86_400;
    let created_at = format!(
        "2026-11-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
        micros % 1_000_000
    );
    let action = ACTIONS[rng.below(ACTIONS.len() as u64) as usize];
    let rejected = rng.below(100) < 3;
    let (target_kind, target_id) = match action {
        "queue.pause" | "queue.resume" => ("queue", format!("queue-{}", rng.below(20))),
        "token.issue" => ("token", rng.uuid7(millis)),
        "job.bulk_replay" => ("bulk", rng.uuid7(millis)),
        _ => ("job", rng.uuid7(millis)),
    };
    json!({
        "id": rng.uuid7(millis),
        "seq": seq,
        "tenant": "acme",
        "created_at": created_at,
        "actor": format!("client:bot-{}", rng.below(50)),
        "actor_kind": "client",
        "action": action,
        "target_id": target_id,
        "target_kind": target_kind,
        "outcome": if rejected { "rejected" } else { "allowed" },
        "reason_code": if rejected { Value::from("INVALID_STATE_TRANSITION") } else { Value::Null },
        "operator_reason": "routine maintenance for the benchmark",
        "operator_ticket": format!("OPS-{}", rng.below(10_000)),
        "scope": "orch:operate",
        "source_ip": "127.0.0.1",
        "request_id": format!("bench-{:016x}", rng.next()),
        "token_id": rng.uuid7(millis),
        "metadata": {"state_before": "available", "dependents_canceled": 0},
    })
}

/// The export and its entry lines' byte ranges.
struct Export {
    ndjson: String,
    entry_lines: Vec<(usize, usize)>,
}

fn build(n: u64) -> Export {
    let signer = Signer::from_seed("bench.warden.example", &[7; 32]).expect("a valid key name");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut tree = CompactRange::new();
    let mut ndjson = String::with_capacity(n as usize * 720);
    ndjson.push_str(&keys_line(&[signer.verifier_key()]));
    ndjson.push('\n');
    let mut entry_lines = Vec::with_capacity(n as usize);
    for seq in 0..n {
        let text = to_canonical_string(&entry(seq, &mut rng)).expect("entries canonicalize");
        let leaf = leaf_hash(text.as_bytes());
        tree.append(leaf);
        // As the server writes it (`routes/ledger.rs` `entry_json`).
        let start = ndjson.len();
        ndjson.push_str(&text[..text.len() - 1]);
        ndjson.push_str(",\"leaf_hash\":\"");
        ndjson.push_str(&to_base64(&leaf));
        ndjson.push_str("\"}");
        entry_lines.push((start, ndjson.len()));
        ndjson.push('\n');
        let size = seq + 1;
        if size % CHECKPOINT_EVERY == 0 || size == n {
            let note =
                SignedCheckpoint::sign(&Checkpoint::new(ORIGIN, size, tree.root()), &[&signer])
                    .expect("checkpoints sign");
            ndjson.push_str(&checkpoint_line(&note));
            ndjson.push('\n');
        }
    }
    Export {
        ndjson,
        entry_lines,
    }
}

/// A named measurement: one call does the work for all `n` entries.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Run every case `runs` times, round-robin (so drift on a shared machine hits all alike),
/// and return each one's sorted timings.
fn measure_all(runs: usize, cases: &mut [Case<'_>]) -> Vec<Vec<Duration>> {
    let mut times = vec![Vec::with_capacity(runs); cases.len()];
    for _ in 0..runs {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            let t = Instant::now();
            f();
            times[i].push(t.elapsed());
        }
    }
    for t in &mut times {
        t.sort();
    }
    times
}

/// The entry lines parsed, without their `leaf_hash` (what is canonicalized).
fn parse_entry(line: &str) -> (Value, Option<Value>) {
    let mut v: Value = serde_json::from_str(line).expect("JSON");
    let claimed = v.as_object_mut().and_then(|m| m.remove("leaf_hash"));
    (v, claimed)
}

fn main() {
    let n: u64 = std::env::var("WARDEN_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("WARDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let t = Instant::now();
    let export = build(n);
    let lines = export.ndjson.lines().count();
    eprintln!(
        "built an export of {n} entries, {lines} lines, {:.1} MB in {:.1} s (not measured)",
        export.ndjson.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    if let Ok(path) = std::env::var("WARDEN_BENCH_EXPORT_FILE") {
        std::fs::write(&path, &export.ndjson).expect("write the export file");
        eprintln!("wrote the export to {path} (for timing `warden audit verify` on it)");
    }
    let entry_lines: Vec<&str> = export
        .entry_lines
        .iter()
        .map(|&(a, b)| &export.ndjson[a..b])
        .collect();
    // The parts alone run over a working set of HOT entries, repeated to make n: the
    // verifier handles each line while it is in cache, and 1,000,000 parsed values would
    // not be (with 10,000 the parts still summed to more than the whole).
    const HOT: usize = 1_000;
    let hot = HOT.min(entry_lines.len());
    let repeats = (n as usize).div_ceil(hot);
    let hot_lines = &entry_lines[..hot];
    let hot_parsed: Vec<(Value, Option<Value>)> =
        hot_lines.iter().map(|l| parse_entry(l)).collect();
    let hot_canonical: Vec<Vec<u8>> = hot_parsed
        .iter()
        .map(|(v, _)| to_canonical_vec(v).expect("canonical"))
        .collect();

    let mut cases: Vec<Case<'_>> = vec![
        (
            "verify: Verifier::feed_line on every line + finish",
            Box::new(|| {
                let mut v = Verifier::new(VerifyOptions::default()).expect("no extra checkpoints");
                for line in export.ndjson.lines() {
                    v.feed_line(line).expect("the export verifies");
                }
                assert_eq!(v.finish().expect("the export verifies").entries, n);
            }),
        ),
        (
            "floor: SHA-256 of the whole NDJSON in one stream",
            Box::new(|| {
                let mut h = Sha256::new();
                h.update(export.ndjson.as_bytes());
                black_box(h.finalize());
            }),
        ),
        (
            "stream: canonical check (split leaf_hash, canonical_members)",
            Box::new(|| {
                let mut scratch = String::new();
                for line in &entry_lines {
                    let (body, _) = split_claim(line);
                    scratch.clear();
                    scratch.push_str(body);
                    scratch.push('}');
                    black_box(canonical_members(&scratch).expect("canonical"));
                }
            }),
        ),
        (
            "stream: the same + leaf hash + compare",
            Box::new(|| {
                let mut scratch = String::new();
                for line in &entry_lines {
                    let (body, claimed) = split_claim(line);
                    scratch.clear();
                    scratch.push_str(body);
                    scratch.push('}');
                    black_box(canonical_members(&scratch).expect("canonical"));
                    let leaf = leaf_hash(scratch.as_bytes());
                    assert_eq!(from_base64(claimed), Some(leaf));
                }
            }),
        ),
        (
            "stream: the same + CompactRange::append",
            Box::new(|| {
                let mut scratch = String::new();
                let mut tree = CompactRange::new();
                for line in &entry_lines {
                    let (body, claimed) = split_claim(line);
                    scratch.clear();
                    scratch.push_str(body);
                    scratch.push('}');
                    black_box(canonical_members(&scratch).expect("canonical"));
                    let leaf = leaf_hash(scratch.as_bytes());
                    assert_eq!(from_base64(claimed), Some(leaf));
                    tree.append(leaf);
                }
                black_box(tree.root());
            }),
        ),
        (
            "fallback: parse + canonicalize (lines not canonical)",
            Box::new(|| {
                for line in &entry_lines {
                    let (v, _) = parse_entry(line);
                    black_box(to_canonical_vec(&v).expect("canonical"));
                }
            }),
        ),
        (
            "part: JSON parse into serde_json::Value (+ drop)",
            Box::new(|| {
                for _ in 0..repeats {
                    for line in hot_lines {
                        black_box(serde_json::from_str::<Value>(line).expect("JSON"));
                    }
                }
            }),
        ),
        (
            "part: JSON tokenize only (IgnoredAny, no allocation)",
            Box::new(|| {
                for _ in 0..repeats {
                    for line in hot_lines {
                        black_box(
                            serde_json::from_str::<serde::de::IgnoredAny>(line).expect("JSON"),
                        );
                    }
                }
            }),
        ),
        (
            "part: canonicalize a parsed entry (RFC 8785)",
            Box::new(|| {
                for _ in 0..repeats {
                    for (v, _) in &hot_parsed {
                        black_box(to_canonical_vec(v).expect("canonical"));
                    }
                }
            }),
        ),
        (
            "part: leaf hash of the canonical body",
            Box::new(|| {
                for _ in 0..repeats {
                    for c in &hot_canonical {
                        black_box(leaf_hash(c));
                    }
                }
            }),
        ),
        (
            "part: base64-decode the claimed leaf_hash",
            Box::new(|| {
                for _ in 0..repeats {
                    for (_, claimed) in &hot_parsed {
                        black_box(
                            claimed
                                .as_ref()
                                .and_then(Value::as_str)
                                .and_then(from_base64),
                        );
                    }
                }
            }),
        ),
        (
            "part: CompactRange::append",
            Box::new(|| {
                let mut tree = CompactRange::new();
                let leaf = leaf_hash(b"x");
                for _ in 0..n {
                    black_box(tree.append(leaf));
                }
            }),
        ),
    ];
    let times = measure_all(runs, &mut cases);
    let names: Vec<&str> = cases.iter().map(|(k, _)| *k).collect();
    drop(cases);

    println!();
    println!(
        "command: WARDEN_BENCH_ENTRIES={n} WARDEN_BENCH_RUNS={runs} cargo bench -p warden-ledger --bench verify"
    );
    println!(
        "export: {n} entries, {} bytes ({:.0} bytes per entry line), a signed checkpoint every {CHECKPOINT_EVERY}; one thread; median of {runs} interleaved runs, entries/s range = slowest..fastest run",
        export.ndjson.len(),
        export.entry_lines.iter().map(|(a, b)| b - a).sum::<usize>() as f64 / n as f64
    );
    println!(
        "{:<54} {:>9} {:>11} {:>23} {:>10} {:>9}",
        "measurement", "time s", "entries/s", "(range)", "µs/entry", "MB/s"
    );
    let med = |i: usize| times[i][runs / 2].as_secs_f64();
    for (i, name) in names.iter().enumerate() {
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "{:<54} {:>9.3} {:>11.0} {:>23} {:>10.3} {:>9.1}",
            name,
            med(i),
            n as f64 / med(i),
            format!(
                "({:.0}..{:.0})",
                rate(times[i][runs - 1]),
                rate(times[i][0])
            ),
            med(i) * 1e6 / n as f64,
            export.ndjson.len() as f64 / med(i) / 1e6,
        );
    }
    let get = |prefix: &str| {
        med(names
            .iter()
            .position(|k| k.starts_with(prefix))
            .expect("measured"))
    };
    let verify = get("verify");
    println!();
    println!(
        "target >= 500,000 entries/s: {:.0} entries/s -> {}",
        n as f64 / verify,
        if n as f64 / verify >= 500_000.0 {
            "MET"
        } else {
            "MISSED"
        }
    );
    println!(
        "verify takes {:.1}x the time of SHA-256 over the same bytes ({:.0} entries/s at SHA-256 speed)",
        verify / get("floor: SHA-256"),
        n as f64 / get("floor: SHA-256")
    );
    // Where the time goes: the growth from one stream stage to the next (each stage works
    // on a line while it is in cache, as the verifier does).
    let check = get("stream: canonical check");
    let hash = get("stream: the same + leaf hash");
    let tree = get("stream: the same + CompactRange");
    println!(
        "of the verify time: canonical check {:.0} %, leaf hash + compare {:.0} %, tree append {:.0} %, the verifier's own work (seq and line handling, checkpoints) {:.0} %",
        100.0 * check / verify,
        100.0 * (hash - check) / verify,
        100.0 * (tree - hash) / verify,
        100.0 * (verify - tree) / verify,
    );
    println!(
        "a line that is not canonical takes the parse-and-re-serialize path: {:.2} µs for that part alone",
        get("fallback:") * 1e6 / n as f64
    );
}
