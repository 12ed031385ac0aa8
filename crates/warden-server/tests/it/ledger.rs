//! The ledger over HTTP: signed checkpoints that verify with the published key (checked
//! here by hand, following the C2SP signed-note spec, not only by our own verifier),
//! inclusion and consistency proofs, and exports that verify offline and catch one
//! changed character.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use warden_core::audit::{Actor, AuditDraft, Outcome};
use warden_core::names::TenantId;
use warden_ledger::canonical::to_canonical_vec;
use warden_ledger::export::{Verifier, VerifyOptions};
use warden_ledger::hash::{Hash, leaf_hash};
use warden_ledger::proof::{verify_consistency, verify_inclusion};
use warden_ledger::tree::root_from_leaves;

use crate::helpers::{TestApp, apps};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Append `n` entries to `tenant`'s log through the store (the same append path as every
/// action), so a test can have hundreds without hundreds of requests.
async fn fill(app: &TestApp, tenant: &str, n: usize) {
    let drafts = (0..n)
        .map(|i| AuditDraft {
            tenant: TenantId::parse(tenant).unwrap(),
            actor: Actor::client("ops-bot"),
            action: "job.cancel".into(),
            target: None,
            outcome: Outcome::Allowed,
            reason_code: None,
            operator_reason: Some(format!("reason {i}")),
            operator_ticket: Some("OPS-7".into()),
            scope: None,
            source_ip: None,
            request_id: None,
            token_id: None,
            metadata: json!({"i": i}),
        })
        .collect();
    app.store.append_audit_batch(drafts).await.unwrap();
}

/// The size of `tenant`'s log.
async fn log_size(app: &TestApp, tenant: &str) -> u64 {
    app.store
        .ledger_head(&TenantId::parse(tenant).unwrap())
        .await
        .unwrap()
        .size
}

/// A checkpoint note split into (origin, size, root) after checking its signature by hand:
/// key hash = SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[..4]; signature over the text.
fn open_by_hand(note: &str, key_line: &str) -> (String, u64, Hash) {
    let mut parts = key_line.splitn(3, '+');
    let (name, hex, vkey) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let vkey = B64.decode(vkey).unwrap();
    assert_eq!(vkey[0], 0x01, "Ed25519 algorithm byte");
    let public: [u8; 32] = vkey[1..].try_into().unwrap();
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(&vkey);
    let key_hash: [u8; 4] = h.finalize()[..4].try_into().unwrap();
    assert_eq!(hex, format!("{:08x}", u32::from_be_bytes(key_hash)));

    let (text, sigs) = note
        .split_once("\n\n")
        .expect("text, blank line, signatures");
    let text = format!("{text}\n");
    let line = sigs
        .lines()
        .find(|l| l.starts_with(&format!("— {name} ")))
        .expect("a signature by the published key");
    let raw = B64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(raw[..4], key_hash, "signature names the key");
    let sig = Signature::from_slice(&raw[4..]).unwrap();
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify_strict(text.as_bytes(), &sig)
        .expect("checkpoint signature verifies");
    let mut lines = text.lines();
    let origin = lines.next().unwrap().to_owned();
    let size = lines.next().unwrap().parse().unwrap();
    let root = B64
        .decode(lines.next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    (origin, size, root)
}

/// Leaf hashes of an NDJSON export's entries, computed independently of the server's own
/// `leaf_hash` field: the entry object without that field, canonicalized, hashed.
fn leaves_of_export(ndjson: &str) -> Vec<Hash> {
    ndjson
        .lines()
        .filter_map(|l| {
            let mut v: Map<String, Value> = serde_json::from_str(l).unwrap();
            v.contains_key("seq").then(|| {
                v.remove("leaf_hash");
                leaf_hash(&to_canonical_vec(&Value::Object(v)).unwrap())
            })
        })
        .collect()
}

#[tokio::test]
async fn a_checkpoint_is_signed_by_the_published_key_and_commits_to_every_entry() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let job = app.enqueue(&t.token, "emails").await;
        let id = job["id"].as_str().unwrap();
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        fill(&app, "acme", 40).await;

        let keys = app
            .http
            .get(format!("{}/api/v1/audit/keys", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(keys.status(), StatusCode::OK, "[{b:?}] keys need no token");
        let keys = keys.text().await.unwrap();
        let key_line = keys.lines().next().unwrap().to_owned();

        let c = app.get("/api/v1/audit/checkpoint", &t.token).await;
        assert_eq!(c.status, StatusCode::OK, "[{b:?}] {:?}", c.body);
        assert!(
            c.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "[{b:?}]"
        );
        let note = c.body.as_str().unwrap().to_owned();
        let (origin, size, root) = open_by_hand(&note, &key_line);
        assert!(origin.ends_with("/audit/acme"), "[{b:?}] {origin}");
        let entries = app.audit(&t.token, "").await;
        assert_eq!(
            size as usize,
            entries.len(),
            "[{b:?}] every entry is covered"
        );
        let mut leaves: Vec<(u64, Hash)> = entries
            .iter()
            .map(|e| {
                let h = B64.decode(e["leaf_hash"].as_str().unwrap()).unwrap();
                (e["seq"].as_u64().unwrap(), h.try_into().unwrap())
            })
            .collect();
        leaves.sort();
        let leaves: Vec<Hash> = leaves.into_iter().map(|(_, h)| h).collect();
        assert_eq!(root, root_from_leaves(&leaves), "[{b:?}]");

        // Inclusion of several entries, and consistency from an older checkpoint.
        for seq in [0, 1, size / 2, size - 1] {
            let p = app
                .get(
                    &format!("/api/v1/audit/proof/inclusion?seq={seq}"),
                    &t.token,
                )
                .await;
            assert_eq!(p.status, StatusCode::OK, "[{b:?}] {:?}", p.body);
            assert_eq!(p.body["tree_size"], size, "[{b:?}] default: the checkpoint");
            let hashes: Vec<Hash> = p.body["hashes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
                .collect();
            verify_inclusion(&leaves[seq as usize], seq, size, &hashes, &root)
                .unwrap_or_else(|e| panic!("[{b:?}] seq {seq}: {e}"));
        }
        fill(&app, "acme", 25).await;
        let c2 = app.get("/api/v1/audit/checkpoint", &t.token).await;
        let (_, size2, root2) = open_by_hand(c2.body.as_str().unwrap(), &key_line);
        assert_eq!(
            size2,
            size + 25,
            "[{b:?}] a grown log gets a new checkpoint"
        );
        let p = app
            .get(
                &format!("/api/v1/audit/proof/consistency?from={size}&to={size2}"),
                &t.token,
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "[{b:?}] {:?}", p.body);
        let hashes: Vec<Hash> = p.body["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect();
        verify_consistency(size, size2, &hashes, &root, &root2)
            .unwrap_or_else(|e| panic!("[{b:?}] {e}"));

        // Another tenant's log is its own.
        let g = app.tenant("globex").await;
        let c = app.get("/api/v1/audit/checkpoint", &g.token).await;
        let (origin, gsize, _) = open_by_hand(c.body.as_str().unwrap(), &key_line);
        assert!(origin.ends_with("/audit/globex"), "[{b:?}] {origin}");
        assert!(
            gsize < size,
            "[{b:?}] globex's log holds only its own entries"
        );
    }
}

#[tokio::test]
async fn proof_requests_out_of_range_are_validation_errors_naming_the_field() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        fill(&app, "acme", 10).await;
        let size = log_size(&app, "acme").await;
        for (query, field) in [
            (format!("inclusion?seq={size}&tree_size={size}"), "seq"),
            (
                format!("inclusion?seq=0&tree_size={}", size + 1),
                "tree_size",
            ),
            ("inclusion?tree_size=3".to_owned(), "seq"),
            ("inclusion?seq=-1".to_owned(), "seq"),
            ("inclusion?seq=0&bogus=1".to_owned(), "bogus"),
            ("consistency?from=0&to=3".to_owned(), "from"),
            ("consistency?from=4&to=3".to_owned(), "from"),
            (format!("consistency?from=1&to={}", size + 1), "to"),
        ] {
            let a = app
                .get(&format!("/api/v1/audit/proof/{query}"), &t.token)
                .await;
            assert_eq!(
                a.status,
                StatusCode::BAD_REQUEST,
                "[{b:?}] {query}: {:?}",
                a.body
            );
            assert_eq!(a.code(), "VALIDATION_FAILED", "[{b:?}] {query}");
            assert_eq!(
                a.body["errors"][0]["field"], field,
                "[{b:?}] {query}: {:?}",
                a.body
            );
        }
        let a = app
            .send(
                reqwest::Method::DELETE,
                "/api/v1/audit/checkpoint",
                Some(&t.token),
                None,
            )
            .await;
        assert_eq!(a.code(), "IMMUTABLE", "[{b:?}]");
    }
}

#[tokio::test]
async fn an_ndjson_export_verifies_offline_and_one_changed_character_is_named() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        fill(&app, "acme", 120).await;
        let a = app.get("/api/v1/audit/export", &t.token).await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}]");
        assert_eq!(a.headers["content-type"], "application/x-ndjson", "[{b:?}]");
        let export = a.body.as_str().unwrap().to_owned();

        let verify = |text: &str| {
            let mut v = Verifier::new(VerifyOptions::default()).unwrap();
            for line in text.lines() {
                v.feed_line(line)?;
            }
            v.finish()
        };
        let report = verify(&export).unwrap_or_else(|e| panic!("[{b:?}] {e}"));
        let size = log_size(&app, "acme").await;
        assert_eq!(report.entries, size, "[{b:?}]");

        // Independently: canonicalize each entry (without leaf_hash), hash, compare roots.
        let checkpoint_line = export
            .lines()
            .rev()
            .find(|l| l.starts_with("{\"checkpoint\""))
            .unwrap();
        let note: Value = serde_json::from_str(checkpoint_line).unwrap();
        let keys = app.get("/api/v1/audit/keys", &t.token).await;
        let key_line = keys
            .body
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned();
        let (_, csize, root) = open_by_hand(note["checkpoint"].as_str().unwrap(), &key_line);
        let leaves = leaves_of_export(&export);
        assert_eq!(csize as usize, leaves.len(), "[{b:?}]");
        assert_eq!(root, root_from_leaves(&leaves), "[{b:?}] independent root");

        // One character of one entry's body changed: refused, naming that entry.
        let target = export
            .lines()
            .position(|l| l.contains("\"reason 57\""))
            .unwrap();
        let tampered: Vec<String> = export
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == target {
                    l.replace("reason 57", "reason 58")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let err = verify(&tampered.join("\n")).expect_err("a changed entry must fail");
        let seq = export.lines().nth(target).map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        });
        assert!(
            err.to_string().contains(&format!("seq {}", seq.unwrap())),
            "[{b:?}] names the entry: {err}"
        );
    }
}

#[tokio::test]
async fn a_time_bounded_export_carries_what_it_needs_to_verify() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        fill(&app, "acme", 30).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let middle = warden_core::time::Timestamp::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        fill(&app, "acme", 30).await;
        let since = middle.to_rfc3339();
        let a = app
            .get(&format!("/api/v1/audit/export?since={since}"), &t.token)
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        let export = a.body.as_str().unwrap();
        assert!(export.contains("\"compact_range\""), "[{b:?}]");
        let mut v = Verifier::new(VerifyOptions::default()).unwrap();
        for line in export.lines() {
            v.feed_line(line).unwrap_or_else(|e| panic!("[{b:?}] {e}"));
        }
        let r = v.finish().unwrap_or_else(|e| panic!("[{b:?}] {e}"));
        assert_eq!(r.entries, 30, "[{b:?}] only the later entries");

        let a = app
            .get(&format!("/api/v1/audit/export?until={since}"), &t.token)
            .await;
        let export = a.body.as_str().unwrap();
        assert!(export.contains("\"consistency\""), "[{b:?}] {export}");
        let mut v = Verifier::new(VerifyOptions::default()).unwrap();
        for line in export.lines() {
            v.feed_line(line).unwrap_or_else(|e| panic!("[{b:?}] {e}"));
        }
        let r = v.finish().unwrap_or_else(|e| panic!("[{b:?}] {e}"));
        assert!(
            r.entries >= 30,
            "[{b:?}] the earlier entries: {}",
            r.entries
        );
    }
}

#[tokio::test]
async fn csv_and_json_exports_hold_every_entry() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        fill(&app, "acme", 5).await;
        let size = log_size(&app, "acme").await;
        let a = app.get("/api/v1/audit/export?format=json", &t.token).await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        assert_eq!(
            a.body["items"].as_array().unwrap().len() as u64,
            size,
            "[{b:?}]"
        );
        assert!(
            a.body["checkpoint"]
                .as_str()
                .unwrap()
                .contains("/audit/acme"),
            "[{b:?}]"
        );
        let a = app.get("/api/v1/audit/export?format=csv", &t.token).await;
        let csv = a.body.as_str().unwrap();
        assert!(csv.starts_with("seq,id,created_at,actor"), "[{b:?}] {csv}");
        assert_eq!(
            csv.lines().count() as u64,
            size + 1,
            "[{b:?}] header and rows"
        );
        let a = app.get("/api/v1/audit/export?format=xml", &t.token).await;
        assert_eq!(a.code(), "VALIDATION_FAILED", "[{b:?}]");
    }
}

/// Read the stream until an `audit` event arrives (at most `within`): (id, data).
async fn next_event(
    resp: &mut reqwest::Response,
    buf: &mut String,
    within: std::time::Duration,
) -> Option<(u64, Value)> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                return Some((id, data));
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.ok()?;
        buf.push_str(std::str::from_utf8(&chunk.unwrap()?).unwrap());
    }
}

#[tokio::test]
async fn the_live_tail_delivers_a_new_entry_within_a_second_and_resumes() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        let g = app.tenant("globex").await;
        let open = |token: String, last: Option<u64>| {
            let mut req = app
                .http
                .get(format!("{}/api/v1/audit/stream", app.url))
                .bearer_auth(token);
            if let Some(l) = last {
                req = req.header("last-event-id", l.to_string());
            }
            req.send()
        };
        let mut stream = open(t.token.clone(), None).await.unwrap();
        assert_eq!(stream.status(), StatusCode::OK, "[{b:?}]");
        assert_eq!(
            stream.headers()["content-type"],
            "text/event-stream",
            "[{b:?}]"
        );
        let mut other = open(g.token.clone(), None).await.unwrap();
        let mut buf = String::new();
        let mut other_buf = String::new();

        let job = app.enqueue(&t.token, "emails").await;
        let id = job["id"].as_str().unwrap();
        let a = app
            .post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}]");
        let (seq, entry) = next_event(&mut stream, &mut buf, std::time::Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("[{b:?}] no event within a second"));
        assert_eq!(entry["action"], "job.cancel", "[{b:?}]");
        assert_eq!(entry["target_id"], id, "[{b:?}]");
        assert_eq!(entry["seq"], seq, "[{b:?}] the event id is the seq");
        assert!(
            next_event(
                &mut other,
                &mut other_buf,
                std::time::Duration::from_millis(600)
            )
            .await
            .is_none(),
            "[{b:?}] another tenant's tail sees nothing of it"
        );

        // Resume after an earlier entry: everything since is sent again, in order.
        fill(&app, "acme", 3).await;
        let mut resumed = open(t.token.clone(), Some(seq)).await.unwrap();
        let mut buf = String::new();
        for want in seq + 1..seq + 4 {
            let (got, _) = next_event(&mut resumed, &mut buf, std::time::Duration::from_secs(1))
                .await
                .unwrap_or_else(|| panic!("[{b:?}] no event {want}"));
            assert_eq!(got, want, "[{b:?}]");
        }
        let bad = app
            .http
            .get(format!("{}/api/v1/audit/stream", app.url))
            .bearer_auth(&t.token)
            .header("last-event-id", "x")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "[{b:?}]");
    }
}

fn verify_with(export: &str, checkpoints: Vec<String>) -> Result<(), String> {
    let mut v = Verifier::new(VerifyOptions {
        extra_checkpoints: checkpoints,
        ..VerifyOptions::default()
    })
    .map_err(|e| e.to_string())?;
    for line in export.lines() {
        v.feed_line(line).map_err(|e| e.to_string())?;
    }
    v.finish().map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_row_changed_behind_the_servers_back_is_caught_by_verify_and_the_self_check() {
    for app in apps().await {
        let b = app.backend;
        let t = app.tenant("acme").await;
        fill(&app, "acme", 50).await;
        let older = app.get("/api/v1/audit/checkpoint", &t.token).await;
        let older = older.body.as_str().unwrap().to_owned();
        assert!(
            warden_server::ledger::self_check(&app.app_state)
                .await
                .is_empty(),
            "[{b:?}] an untouched log passes"
        );

        // A database administrator drops the guard and edits one entry's body.
        let (drop_entries, drop_leaves) = match b {
            warden_store::Backend::Sqlite => (
                "DROP TRIGGER audit_entries_refuse_update",
                "DROP TRIGGER audit_leaves_refuse_update",
            ),
            warden_store::Backend::Postgres => (
                "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_refuse_change",
                "ALTER TABLE audit_leaves DISABLE TRIGGER audit_leaves_refuse_change",
            ),
        };
        app.store.execute_raw(drop_entries).await.unwrap();
        let changed = app
            .store
            .execute_raw(
                "UPDATE audit_entries SET canonical = replace(canonical, 'reason 17', 'reason 71') WHERE canonical LIKE '%\"reason 17\"%'",
            )
            .await
            .unwrap();
        assert_eq!(changed, 1, "[{b:?}]");
        let entry = app
            .audit(&t.token, "")
            .await
            .into_iter()
            .find(|e| e["operator_reason"] == "reason 71")
            .unwrap();
        let seq = entry["seq"].as_u64().unwrap();

        let problems = warden_server::ledger::self_check(&app.app_state).await;
        assert_eq!(problems.len(), 1, "[{b:?}] {problems:?}");
        assert!(
            problems[0].1.to_string().contains(&format!("seq {seq}")),
            "[{b:?}] {problems:?}"
        );
        let metrics = app
            .http
            .get(format!("{}/metrics", app.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("warden_alerts_total{rule=\"ledger.self_check\"}"),
            "[{b:?}] the alert is counted"
        );
        let export = app.get("/api/v1/audit/export", &t.token).await;
        let err = verify_with(export.body.as_str().unwrap(), vec![older.clone()]).unwrap_err();
        assert!(
            err.contains(&format!("seq {seq}")),
            "[{b:?}] names the entry: {err}"
        );

        // A more careful one rewrites the leaf too: the roots give it away.
        app.store.execute_raw(drop_leaves).await.unwrap();
        let mut body: Map<String, Value> = serde_json::from_value(entry.clone()).unwrap();
        body.remove("leaf_hash");
        let leaf = leaf_hash(&to_canonical_vec(&Value::Object(body)).unwrap());
        let hex: String = leaf.iter().map(|x| format!("{x:02x}")).collect();
        let literal = match b {
            warden_store::Backend::Sqlite => format!("X'{hex}'"),
            warden_store::Backend::Postgres => format!("'\\x{hex}'::bytea"),
        };
        app.store
            .execute_raw(&format!(
                "UPDATE audit_leaves SET leaf_hash = {literal} WHERE tenant = 'acme' AND seq = {seq}"
            ))
            .await
            .unwrap();
        let problems = warden_server::ledger::self_check(&app.app_state).await;
        assert_eq!(problems.len(), 1, "[{b:?}] {problems:?}");
        assert!(
            problems[0].1.to_string().contains("root"),
            "[{b:?}] {problems:?}"
        );
        let export = app.get("/api/v1/audit/export", &t.token).await;
        let err = verify_with(export.body.as_str().unwrap(), vec![older]).unwrap_err();
        assert!(
            err.contains("seq"),
            "[{b:?}] against the older checkpoint: {err}"
        );
    }
}

/// A one-shot HTTP receiver: the body of the first POST it gets.
async fn webhook_receiver() -> (String, tokio::sync::oneshot::Receiver<Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tx.send(serde_json::from_str(&body[..len]).unwrap());
                    return;
                }
            }
        }
    });
    (url, rx)
}

#[tokio::test]
async fn replaying_past_a_rules_threshold_raises_an_alert_on_the_webhook() {
    for db in warden_store::testing::TestDb::all().await {
        let (url, hook) = webhook_receiver().await;
        let app = TestApp::spawn_with(db, |c| {
            c.alerts.webhook_url = Some(url);
            c.alerts.rules[0].threshold = 3;
        })
        .await;
        let b = app.backend;
        let t = app.tenant("acme").await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let job = app.enqueue(&t.token, "emails").await;
            let id = job["id"].as_str().unwrap().to_owned();
            let a = app
                .post(&format!("/api/v1/jobs/{id}/cancel"), &t.operator, None)
                .await;
            assert_eq!(a.status, StatusCode::OK, "[{b:?}]");
            ids.push(id);
        }
        let a = app
            .post(
                "/api/v1/jobs/replay",
                &t.operator,
                Some(json!({"ids": ids})),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "[{b:?}] {:?}", a.body);
        let alert = tokio::time::timeout(std::time::Duration::from_secs(5), hook)
            .await
            .unwrap_or_else(|_| panic!("[{b:?}] no webhook within 5 s"))
            .unwrap();
        assert_eq!(alert["rule"], "bulk-replay", "[{b:?}]");
        assert_eq!(alert["tenant"], "acme", "[{b:?}]");
        assert_eq!(alert["count"], 3, "[{b:?}]");
        assert!(
            alert["actor"].as_str().unwrap().starts_with("client:"),
            "[{b:?}]"
        );
    }
}

#[tokio::test]
async fn retention_moves_old_bodies_to_a_verifiable_archive_and_proofs_still_hold() {
    for db in warden_store::testing::TestDb::all().await {
        let archive = tempfile::tempdir().unwrap();
        let dir = archive.path().to_path_buf();
        let app = TestApp::spawn_with(db, |c| {
            c.ledger.retention_secs_per_tenant.insert("acme".into(), 1);
            c.ledger.archive_dir = Some(dir);
            c.ledger.retention_interval_secs = 3_600;
        })
        .await;
        let b = app.backend;
        let t = app.tenant("acme").await;
        let g = app.tenant("globex").await;
        fill(&app, "acme", 40).await;
        fill(&app, "globex", 5).await;
        let before = app.audit(&t.token, "").await;
        let old_id = before.last().unwrap()["id"].as_str().unwrap().to_owned();
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        fill(&app, "acme", 3).await;

        let moved = warden_server::ledger::run_retention(&app.app_state)
            .await
            .unwrap();
        assert_eq!(
            moved.len(),
            1,
            "[{b:?}] only acme's period is short: {moved:?}"
        );
        let archived = moved[0].1;
        assert_eq!(
            archived as usize,
            before.len(),
            "[{b:?}] every entry older than 1 s"
        );

        // The archive file verifies on its own.
        let files: Vec<_> = std::fs::read_dir(archive.path().join("acme"))
            .unwrap()
            .collect();
        assert_eq!(files.len(), 1, "[{b:?}]");
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        let mut v = Verifier::new(VerifyOptions::default()).unwrap();
        for line in text.lines() {
            v.feed_line(line)
                .unwrap_or_else(|e| panic!("[{b:?}] archive: {e}"));
        }
        assert_eq!(v.finish().unwrap().entries, archived, "[{b:?}]");

        // The log: bodies gone, the rest exports and verifies, proofs still hold.
        let a = app.get(&format!("/api/v1/audit/{old_id}"), &t.token).await;
        assert_eq!(a.code(), "UNKNOWN_AUDIT_ID", "[{b:?}]");
        let export = app.get("/api/v1/audit/export", &t.token).await;
        let export = export.body.as_str().unwrap();
        assert!(export.contains("\"compact_range\""), "[{b:?}]");
        verify_with(export, Vec::new()).unwrap_or_else(|e| panic!("[{b:?}] {e}"));
        let p = app
            .get("/api/v1/audit/proof/inclusion?seq=0", &t.token)
            .await;
        assert_eq!(p.status, StatusCode::OK, "[{b:?}] {:?}", p.body);
        assert!(
            warden_server::ledger::self_check(&app.app_state)
                .await
                .is_empty(),
            "[{b:?}] the self-check skips archived bodies"
        );
        let r = app.get("/api/v1/audit/retention", &t.token).await;
        assert_eq!(r.body["archived_upto"], archived, "[{b:?}] {:?}", r.body);
        assert_eq!(r.body["last_moved"], archived, "[{b:?}]");
        assert_eq!(r.body["retention_secs"], 1, "[{b:?}]");
        assert!(r.body["last_run_at"].is_string(), "[{b:?}]");
        let runs = app.audit(&t.token, "action=audit.retention").await;
        assert_eq!(runs.len(), 1, "[{b:?}] the run is audited");
        assert_eq!(
            runs[0]["metadata"]["archived_to"],
            archived.to_string(),
            "[{b:?}]"
        );
        // A second run finds nothing new; the other tenant keeps everything.
        assert!(
            warden_server::ledger::run_retention(&app.app_state)
                .await
                .unwrap()
                .is_empty(),
            "[{b:?}]"
        );
        let r = app.get("/api/v1/audit/retention", &g.token).await;
        assert_eq!(r.body["archived_upto"], 0, "[{b:?}]");
        // Below the watermark is the only place a body may be deleted.
        let r = app
            .store
            .execute_raw("DELETE FROM audit_entries WHERE tenant = 'globex'")
            .await;
        assert!(r.is_err(), "[{b:?}] {r:?}");
    }
}
