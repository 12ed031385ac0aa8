//! Each tenant's Merkle log: the root follows every append, proofs from stored nodes verify
//! with the ledger crate's verifier, checkpoints are cut once per size, and a log written
//! before the ledger existed is rebuilt from its leaves.

use warden_ledger::hash::Hash;
use warden_ledger::proof::{verify_consistency, verify_inclusion};
use warden_ledger::tree::root_from_leaves;
use warden_store::audit::AuditFilter;
use warden_store::testing::TestDb;
use warden_store::{Store, StoreError};

use crate::{all_entries, draft, tenant};

/// Leaf hashes of the tenant's log in seq order.
async fn leaves(store: &Store, t: &str) -> Vec<Hash> {
    let mut all = all_entries(store, &tenant(t), &AuditFilter::default()).await;
    all.sort_by_key(|s| s.entry.seq);
    all.iter().map(|s| s.leaf_hash).collect()
}

/// Append `n` entries to `t` in one transaction.
async fn append(store: &Store, t: &str, n: usize) {
    store
        .append_audit_batch((0..n).map(|_| draft(&tenant(t), "job.cancel")).collect())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_root_follows_every_append_and_every_proof_from_stored_nodes_verifies() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let head = store.ledger_head(&tenant("acme")).await.unwrap();
        assert_eq!(head.size, 0, "[{b:?}]");
        assert_eq!(head.root, root_from_leaves(&[]), "[{b:?}] empty tree");
        // Batches of odd sizes, past 256 leaves so level-8 nodes are stored and used.
        let mut sizes = Vec::new();
        for n in [1, 2, 13, 16, 1, 100, 130, 37] {
            append(&store, "acme", n).await;
            let all = leaves(&store, "acme").await;
            let head = store.ledger_head(&tenant("acme")).await.unwrap();
            assert_eq!(head.size, all.len() as u64, "[{b:?}]");
            assert_eq!(
                head.root,
                root_from_leaves(&all),
                "[{b:?}] root at {}",
                all.len()
            );
            sizes.push(all.len() as u64);
        }
        let all = leaves(&store, "acme").await;
        assert_eq!(all.len(), 300, "[{b:?}]");
        for &size in &sizes {
            let root = root_from_leaves(&all[..size as usize]);
            for index in (0..size).step_by(7).chain([size - 1]) {
                let proof = store
                    .inclusion_proof(&tenant("acme"), index, size)
                    .await
                    .unwrap();
                verify_inclusion(&all[index as usize], index, size, &proof, &root)
                    .unwrap_or_else(|e| panic!("[{b:?}] inclusion {index}/{size}: {e}"));
            }
            let range = store.compact_range_at(&tenant("acme"), size).await.unwrap();
            assert_eq!(range.root(), root, "[{b:?}] compact range at {size}");
            for &to in sizes.iter().filter(|&&to| to >= size) {
                let proof = store
                    .consistency_proof(&tenant("acme"), size, to)
                    .await
                    .unwrap();
                let root2 = root_from_leaves(&all[..to as usize]);
                verify_consistency(size, to, &proof, &root, &root2)
                    .unwrap_or_else(|e| panic!("[{b:?}] consistency {size}->{to}: {e}"));
            }
        }
        // Out of range is a rejection, not a corrupt read.
        let r = store.inclusion_proof(&tenant("acme"), 300, 300).await;
        assert!(matches!(r, Err(StoreError::Rejected(_))), "[{b:?}] {r:?}");
        let r = store.consistency_proof(&tenant("acme"), 10, 5).await;
        assert!(matches!(r, Err(StoreError::Rejected(_))), "[{b:?}] {r:?}");
    }
}

#[tokio::test]
async fn tenants_have_separate_trees() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        append(&store, "acme", 20).await;
        append(&store, "globex", 3).await;
        append(&store, "acme", 1).await;
        for (t, n) in [("acme", 21), ("globex", 3)] {
            let all = leaves(&store, t).await;
            assert_eq!(all.len(), n, "[{b:?}]");
            let head = store.ledger_head(&tenant(t)).await.unwrap();
            assert_eq!(head.root, root_from_leaves(&all), "[{b:?}] {t}");
        }
    }
}

#[tokio::test]
async fn a_checkpoint_is_cut_once_per_size_and_only_when_the_log_grew() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        assert!(
            store.latest_checkpoint(&t).await.unwrap().is_none(),
            "[{b:?}]"
        );
        append(&store, "acme", 5).await;
        assert_eq!(
            store.tenants_due_a_checkpoint().await.unwrap(),
            vec![t.clone()],
            "[{b:?}] a grown log is due"
        );
        let sign = |size: u64, root: &Hash| format!("o\n{size}\n{}\n", root[0]);
        let (c, stored) = store.cut_checkpoint(&t, sign).await.unwrap();
        assert!(stored, "[{b:?}]");
        assert_eq!(c.size, 5, "[{b:?}]");
        assert_eq!(
            c.root,
            root_from_leaves(&leaves(&store, "acme").await),
            "[{b:?}]"
        );
        assert_eq!(
            c.note,
            sign(5, &c.root),
            "[{b:?}] the note is what the signer made"
        );
        assert!(
            store.tenants_due_a_checkpoint().await.unwrap().is_empty(),
            "[{b:?}]"
        );
        let (again, stored) = store.cut_checkpoint(&t, sign).await.unwrap();
        assert!(!stored, "[{b:?}] nothing new to commit to");
        assert_eq!(again, c, "[{b:?}]");
        append(&store, "acme", 2).await;
        let (c2, stored) = store.cut_checkpoint(&t, sign).await.unwrap();
        assert!(stored && c2.size == 7, "[{b:?}] {c2:?}");
        assert_eq!(
            store.latest_checkpoint(&t).await.unwrap(),
            Some(c2.clone()),
            "[{b:?}]"
        );
        let all = store.checkpoints(&t, 0, u64::MAX, 10).await.unwrap();
        assert_eq!(all, vec![c, c2], "[{b:?}] oldest first");
        assert!(
            store
                .latest_checkpoint(&tenant("globex"))
                .await
                .unwrap()
                .is_none(),
            "[{b:?}] another tenant's log has none"
        );
    }
}

#[tokio::test]
async fn a_log_written_before_the_ledger_is_rebuilt_from_its_leaves() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        append(&store, "acme", 40).await;
        let before = store.ledger_head(&tenant("acme")).await.unwrap();
        // As a database migrated from before the ledger looks: no frontier, no nodes.
        // (The nodes cannot be deleted, so a fresh tenant's are compared below instead.)
        store
            .execute_raw("UPDATE audit_heads SET frontier = NULL")
            .await
            .unwrap();
        let rebuilt = store.ledger_head(&tenant("acme")).await.unwrap();
        assert_eq!(rebuilt, before, "[{b:?}]");
        store
            .execute_raw("UPDATE audit_heads SET frontier = NULL")
            .await
            .unwrap();
        append(&store, "acme", 3).await;
        let all = leaves(&store, "acme").await;
        assert_eq!(
            store.ledger_head(&tenant("acme")).await.unwrap().root,
            root_from_leaves(&all),
            "[{b:?}] an append rebuilds too"
        );
    }
}
