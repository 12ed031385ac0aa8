//! The database itself refuses to rewrite or remove audit entries and leaf hashes, whatever
//! SQL reaches it.

use warden_store::audit::AuditFilter;
use warden_store::testing::TestDb;
use warden_store::{Backend, Store};

use crate::{all_entries, audit_size, draft, tenant};

/// Statements that try to change the log; every one must fail.
fn tampering(backend: Backend) -> Vec<&'static str> {
    let mut sql = vec![
        "UPDATE audit_entries SET actor = 'x'",
        "UPDATE audit_entries SET canonical = '{}' WHERE seq = 0",
        "DELETE FROM audit_entries",
        "DELETE FROM audit_entries WHERE seq = 2",
        "UPDATE audit_leaves SET leaf_hash = leaf_hash || leaf_hash",
        "DELETE FROM audit_leaves",
        "DELETE FROM audit_leaves WHERE seq = 1",
        "UPDATE audit_checkpoints SET note = 'x'",
        "DELETE FROM audit_checkpoints",
        "UPDATE audit_nodes SET hash = hash || hash",
        "DELETE FROM audit_nodes",
    ];
    match backend {
        Backend::Sqlite => sql.extend([
            // REPLACE deletes the old row without firing delete triggers (unless
            // recursive_triggers is on): the log must refuse it all the same.
            "INSERT OR REPLACE INTO audit_entries SELECT tenant, seq, id, created_at, 'client:x', action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical FROM audit_entries WHERE seq = 0",
            "REPLACE INTO audit_leaves (tenant, seq, leaf_hash) SELECT tenant, seq, X'00' FROM audit_leaves WHERE seq = 0",
            "INSERT INTO audit_entries SELECT tenant, seq, id, created_at, actor, action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical FROM audit_entries WHERE seq = 0 ON CONFLICT DO UPDATE SET actor = 'x'",
            "REPLACE INTO audit_checkpoints (tenant, size, root, note, created_at) SELECT tenant, size, root, 'forged', created_at FROM audit_checkpoints",
            "REPLACE INTO audit_nodes (tenant, level, idx, hash) SELECT tenant, level, idx, X'00' FROM audit_nodes",
        ]),
        Backend::Postgres => sql.extend([
            "TRUNCATE audit_entries",
            "TRUNCATE audit_leaves",
            "TRUNCATE audit_entries, audit_leaves",
            "TRUNCATE audit_checkpoints",
            "TRUNCATE audit_nodes",
            "INSERT INTO audit_entries SELECT * FROM audit_entries WHERE seq = 0 ON CONFLICT (tenant, seq) DO UPDATE SET actor = 'x'",
            "INSERT INTO audit_leaves SELECT * FROM audit_leaves WHERE seq = 0 ON CONFLICT (tenant, seq) DO UPDATE SET leaf_hash = '\\x00'",
        ]),
    }
    sql
}

async fn snapshot(store: &Store) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for t in ["acme", "globex"] {
        for s in all_entries(store, &tenant(t), &AuditFilter::default()).await {
            out.push((s.entry.canonical().unwrap(), s.leaf_hash.to_vec()));
        }
        // The ledger's stored nodes and checkpoints are as immutable as the entries.
        let size = store.ledger_head(&tenant(t)).await.unwrap().size;
        let range = store.compact_range_at(&tenant(t), size).await.unwrap();
        out.push((format!("range {size}"), range.root().to_vec()));
        for c in store
            .checkpoints(&tenant(t), 0, u64::MAX, 100)
            .await
            .unwrap()
        {
            out.push((c.note, c.root.to_vec()));
        }
    }
    out
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_audit_entries_and_leaves() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        for _ in 0..3 {
            store
                .append_audit(draft(&tenant("acme"), "job.cancel"))
                .await
                .unwrap();
        }
        store
            .append_audit(draft(&tenant("globex"), "job.cancel"))
            .await
            .unwrap();
        // Enough entries for stored interior nodes (level 4 = 16 leaves), and a checkpoint.
        store
            .append_audit_batch(
                (0..16)
                    .map(|_| draft(&tenant("acme"), "job.cancel"))
                    .collect(),
            )
            .await
            .unwrap();
        store
            .cut_checkpoint(&tenant("acme"), |size, _| {
                format!("example.com/audit/acme\n{size}\n")
            })
            .await
            .unwrap();
        let before = snapshot(&store).await;
        assert_eq!(
            before.len(),
            19 + 3 + 1,
            "[{b:?}] entries, ranges, a checkpoint"
        );
        for sql in tampering(b) {
            let r = store.execute_raw(sql).await;
            assert!(r.is_err(), "[{b:?}] `{sql}` must fail, got {r:?}");
            assert_eq!(
                snapshot(&store).await,
                before,
                "[{b:?}] `{sql}` changed the log"
            );
        }
        // The log still grows normally afterwards.
        let e = store
            .append_audit(draft(&tenant("acme"), "job.cancel"))
            .await
            .unwrap();
        assert_eq!(e.seq, 19, "[{b:?}]");
        assert_eq!(audit_size(&store, &tenant("acme")).await, 20, "[{b:?}]");
    }
}

#[tokio::test]
async fn an_entry_whose_seq_or_id_is_taken_cannot_be_inserted() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        store
            .append_audit(draft(&tenant("acme"), "job.cancel"))
            .await
            .unwrap();
        let before = snapshot(&store).await;
        for sql in [
            "INSERT INTO audit_entries SELECT tenant, seq, id || 'x', created_at, actor, action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical FROM audit_entries",
            "INSERT INTO audit_entries SELECT tenant, seq + 1, id, created_at, actor, action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical FROM audit_entries",
            "INSERT INTO audit_leaves SELECT tenant, seq, leaf_hash FROM audit_leaves",
        ] {
            let r = store.execute_raw(sql).await;
            assert!(r.is_err(), "[{b:?}] `{sql}` must fail, got {r:?}");
        }
        assert_eq!(snapshot(&store).await, before, "[{b:?}]");
    }
}
