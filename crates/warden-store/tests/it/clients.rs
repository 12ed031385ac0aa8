//! OAuth clients (audited create, revoke, rotate), tenants and signing keys.

use warden_core::audit::{Actor, ActorKind, Outcome};
use warden_core::names::{ClientId, ClientName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::scopes::Role;
use warden_core::time::Timestamp;
use warden_store::audit::AuditFilter;
use warden_store::tenants::SigningKeyRecord;
use warden_store::testing::TestDb;

use crate::{all_entries, assert_rejected, audit_size, tenant};

fn cli(name: &str) -> Actor {
    Actor {
        kind: ActorKind::Cli,
        name: name.to_owned(),
    }
}

fn name(s: &str) -> ClientName {
    ClientName::parse(s).unwrap()
}

#[tokio::test]
async fn create_client_stores_it_and_writes_a_client_create_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        assert!(!store.tenant_exists(&t).await.unwrap(), "[{b:?}]");
        let c = store
            .create_client(
                &t,
                &name("ops-bot"),
                &[Role::Operator, Role::Viewer],
                [7; 32],
                &cli("alice"),
            )
            .await
            .unwrap();
        assert!(
            store.tenant_exists(&t).await.unwrap(),
            "[{b:?}] tenant created with it"
        );
        assert_eq!(c.tenant, t, "[{b:?}]");
        assert_eq!(c.revoked_at, None, "[{b:?}]");
        let got = store.get_client(c.id).await.unwrap();
        assert_eq!(got.as_ref(), Some(&c), "[{b:?}] get_client round-trips");
        assert_eq!(
            store.get_client(ClientId::new()).await.unwrap(),
            None,
            "[{b:?}]"
        );
        assert_eq!(
            store.list_clients(&t).await.unwrap(),
            vec![c.clone()],
            "[{b:?}]"
        );

        let entries = all_entries(&store, &t, &AuditFilter::default()).await;
        assert_eq!(entries.len(), 1, "[{b:?}]");
        let e = &entries[0].entry;
        assert_eq!(e.action, "client.create", "[{b:?}]");
        assert_eq!(e.actor, "cli:alice", "[{b:?}]");
        assert_eq!(e.actor_kind, "cli", "[{b:?}]");
        assert_eq!(e.outcome, Outcome::Allowed, "[{b:?}]");
        assert_eq!(e.target_kind.as_deref(), Some("client"), "[{b:?}]");
        assert_eq!(e.target_id.as_deref(), Some("ops-bot"), "[{b:?}]");
        assert_eq!(e.metadata["client_id"], c.id.to_string(), "[{b:?}]");
        assert_eq!(
            e.metadata["roles"],
            serde_json::json!(["Orch.Operator", "Orch.Viewer"]),
            "[{b:?}]"
        );
        // Clients are never in the event stream's targets.
        let events = store.outbox_peek(10).await.unwrap();
        assert_eq!(events.len(), 1, "[{b:?}]");
        assert!(
            !events[0].payload.contains("ops-bot"),
            "[{b:?}] {}",
            events[0].payload
        );
    }
}

#[tokio::test]
async fn a_duplicate_client_name_is_refused_within_a_tenant_only() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        store
            .create_client(
                &t,
                &name("ops-bot"),
                &[Role::Viewer],
                [1; 32],
                &cli("alice"),
            )
            .await
            .unwrap();
        let r = store
            .create_client(
                &t,
                &name("ops-bot"),
                &[Role::Admin],
                [2; 32],
                &cli("mallory"),
            )
            .await;
        assert_rejected(b, r, ReasonCode::ValidationFailed);
        assert_eq!(
            audit_size(&store, &t).await,
            1,
            "[{b:?}] no entry for the refusal"
        );
        assert_eq!(store.list_clients(&t).await.unwrap().len(), 1, "[{b:?}]");
        // Another tenant may use the name.
        let other = store
            .create_client(
                &tenant("globex"),
                &name("ops-bot"),
                &[Role::Viewer],
                [3; 32],
                &cli("bob"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.list_clients(&tenant("globex")).await.unwrap(),
            vec![other],
            "[{b:?}]"
        );
        // And a client of the reserved tenant round-trips.
        let sys = store
            .create_client(
                &TenantId::system(),
                &name("aggregator"),
                &[],
                [4; 32],
                &cli("root"),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get_client(sys.id).await.unwrap(),
            Some(sys),
            "[{b:?}]"
        );
        let e = all_entries(&store, &TenantId::system(), &AuditFilter::default())
            .await
            .remove(0)
            .entry;
        assert_eq!(
            e.metadata["roles"],
            serde_json::json!([]),
            "[{b:?}] no roles, no \"\""
        );
    }
}

#[tokio::test]
async fn revoke_client_sets_revoked_at_and_writes_a_client_revoke_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let n = name("ops-bot");
        let c = store
            .create_client(&t, &n, &[Role::Worker], [1; 32], &cli("alice"))
            .await
            .unwrap();
        let before = Timestamp::now();
        let revoked = store.revoke_client(&t, &n, &cli("bob")).await.unwrap();
        let at = revoked.revoked_at.expect("revoked");
        assert!(at >= before, "[{b:?}]");
        assert_eq!(
            store.get_client(c.id).await.unwrap().unwrap().revoked_at,
            Some(at),
            "[{b:?}]"
        );
        let e = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0)
            .entry;
        assert_eq!(e.action, "client.revoke", "[{b:?}]");
        assert_eq!(e.actor, "cli:bob", "[{b:?}]");
        assert_eq!(e.metadata["client_id"], c.id.to_string(), "[{b:?}]");

        let r = store.revoke_client(&t, &n, &cli("bob")).await;
        assert_rejected(b, r, ReasonCode::InvalidStateTransition);
        let r = store
            .rotate_client_secret(&t, &n, [9; 32], &cli("bob"))
            .await;
        assert_rejected(b, r, ReasonCode::InvalidStateTransition);
        let r = store
            .revoke_client(&tenant("globex"), &n, &cli("bob"))
            .await;
        assert_rejected(b, r, ReasonCode::ValidationFailed);
        assert_eq!(
            audit_size(&store, &t).await,
            2,
            "[{b:?}] no entries for refusals"
        );
        assert_eq!(
            store.get_client(c.id).await.unwrap().unwrap().secret_digest,
            [1; 32],
            "[{b:?}] a revoked client's secret is not rotated"
        );
    }
}

#[tokio::test]
async fn rotate_client_secret_replaces_the_digest_and_writes_a_client_rotate_entry() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        let n = name("ops-bot");
        let c = store
            .create_client(&t, &n, &[Role::Worker], [1; 32], &cli("alice"))
            .await
            .unwrap();
        let rotated = store
            .rotate_client_secret(&t, &n, [2; 32], &cli("carol"))
            .await
            .unwrap();
        assert_eq!(rotated.secret_digest, [2; 32], "[{b:?}]");
        let stored = store.get_client(c.id).await.unwrap().unwrap();
        assert_eq!(
            stored.secret_digest, [2; 32],
            "[{b:?}] stored digest changed"
        );
        assert_eq!(stored.revoked_at, None, "[{b:?}]");
        assert_eq!(stored.roles, vec![Role::Worker], "[{b:?}]");
        let e = all_entries(&store, &t, &AuditFilter::default())
            .await
            .remove(0)
            .entry;
        assert_eq!(e.action, "client.rotate", "[{b:?}]");
        assert_eq!(e.actor, "cli:carol", "[{b:?}]");
        assert_eq!(audit_size(&store, &t).await, 2, "[{b:?}]");
    }
}

#[tokio::test]
async fn ensure_tenant_is_idempotent() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        assert!(!store.tenant_exists(&t).await.unwrap(), "[{b:?}]");
        store.ensure_tenant(&t).await.unwrap();
        store.ensure_tenant(&t).await.unwrap();
        assert!(store.tenant_exists(&t).await.unwrap(), "[{b:?}]");
    }
}

#[tokio::test]
async fn only_the_first_signing_key_for_a_purpose_is_stored() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let key = |kid: &str, purpose: &str, byte: u8| SigningKeyRecord {
            kid: kid.into(),
            purpose: purpose.into(),
            secret: vec![byte; 32],
            created_at: Timestamp::now(),
            retired_at: None,
        };
        assert!(
            store.signing_keys("token").await.unwrap().is_empty(),
            "[{b:?}]"
        );
        let first = key("k1", "token", 1);
        assert!(
            store.insert_signing_key_if_none(&first).await.unwrap(),
            "[{b:?}] stored"
        );
        assert!(
            !store
                .insert_signing_key_if_none(&key("k2", "token", 2))
                .await
                .unwrap(),
            "[{b:?}] a second active key is not stored"
        );
        let keys = store.signing_keys("token").await.unwrap();
        assert_eq!(keys, vec![first], "[{b:?}] the first key, secret intact");
        assert!(
            store.signing_keys("checkpoint").await.unwrap().is_empty(),
            "[{b:?}]"
        );
        assert!(
            store
                .insert_signing_key_if_none(&key("c1", "checkpoint", 3))
                .await
                .unwrap(),
            "[{b:?}] purposes are independent"
        );
        assert_eq!(
            store.signing_keys("checkpoint").await.unwrap().len(),
            1,
            "[{b:?}]"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_starting_at_once_agree_on_one_signing_key() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .insert_signing_key_if_none(&SigningKeyRecord {
                            kid: format!("k{i}"),
                            purpose: "token".into(),
                            secret: vec![i; 32],
                            created_at: Timestamp::now(),
                            retired_at: None,
                        })
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() {
                stored += 1;
            }
        }
        assert_eq!(stored, 1, "[{b:?}] exactly one node stores its key");
        assert_eq!(
            store.signing_keys("token").await.unwrap().len(),
            1,
            "[{b:?}]"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_client_name_make_one_client_and_refuse_the_rest() {
    for db in TestDb::all().await {
        let store = db.open().await;
        let b = db.backend;
        let t = tenant("acme");
        // A new tenant (its row is created by the first create) and an existing one.
        for (round, client) in ["first", "second", "third"].into_iter().enumerate() {
            let tasks: Vec<_> = (0..8u8)
                .map(|i| {
                    let (store, t) = (store.clone(), t.clone());
                    tokio::spawn(async move {
                        store
                            .create_client(
                                &t,
                                &name(client),
                                &[Role::Viewer],
                                [i; 32],
                                &cli("alice"),
                            )
                            .await
                    })
                })
                .collect();
            let mut ok = 0;
            for task in tasks {
                match task.await.unwrap() {
                    Ok(_) => ok += 1,
                    r => {
                        assert_rejected(b, r, ReasonCode::ValidationFailed);
                    }
                }
            }
            assert_eq!(ok, 1, "[{b:?}] one create of {client} wins");
            assert_eq!(
                store.list_clients(&t).await.unwrap().len(),
                round + 1,
                "[{b:?}]"
            );
            assert_eq!(
                audit_size(&store, &t).await,
                round as u64 + 1,
                "[{b:?}] one entry each"
            );
        }
    }
}

#[tokio::test]
async fn with_a_master_key_signing_keys_are_sealed_at_rest_and_open_only_with_it() {
    use base64::Engine as _;
    use warden_store::sealing::{MasterKey, SealingError};
    use warden_store::{Store, StoreError, StoreOptions};
    let master = |byte: u8| {
        MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([byte; 32]))
            .unwrap()
    };
    let open = |db: &TestDb, key: Option<MasterKey>| {
        let mut options = StoreOptions::new(db.url.clone());
        options.master_key = key;
        async move { Store::open(&options).await }
    };
    let key = |kid: &str, byte: u8| SigningKeyRecord {
        kid: kid.into(),
        purpose: "token".into(),
        secret: vec![byte; 32],
        created_at: Timestamp::now(),
        retired_at: None,
    };
    // What a copy of the database holds, read around the store.
    let raw_secrets = |url: String| async move {
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let rows = sqlx::query("SELECT secret FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.iter()
            .map(|r| sqlx::Row::try_get::<Vec<u8>, _>(r, "secret").unwrap())
            .collect::<Vec<_>>()
    };
    for db in TestDb::all().await {
        let b = db.backend;
        // A store from before the master key: its key is in the clear…
        let plain = db.open().await;
        plain
            .insert_signing_key_if_none(&key("k1", 1))
            .await
            .unwrap();
        assert_eq!(
            raw_secrets(db.url.clone()).await,
            vec![vec![1u8; 32]],
            "[{b:?}]"
        );
        // …and sealed the first time the store is opened with one.
        let sealed = open(&db, Some(master(7))).await.unwrap();
        let stored = raw_secrets(db.url.clone()).await;
        assert_eq!(stored[0].len(), 64, "[{b:?}]");
        assert!(!stored[0].windows(32).any(|w| w == [1u8; 32]), "[{b:?}]");
        // A rotation stores the new key sealed too; both read back in the clear.
        let warrant = warden_store::tenants::LocalWarrant {
            actor: Actor::client("key-admin"),
            reason: "rotation".into(),
            ticket: "OPS-1".into(),
        };
        sealed
            .rotate_signing_key(&key("k2", 2), &warrant)
            .await
            .unwrap();
        let stored = raw_secrets(db.url.clone()).await;
        assert!(stored.iter().all(|s| s.len() == 64), "[{b:?}]");
        let keys = sealed.signing_keys("token").await.unwrap();
        let secrets: Vec<Vec<u8>> = keys.iter().map(|k| k.secret.clone()).collect();
        assert_eq!(secrets, vec![vec![1u8; 32], vec![2u8; 32]], "[{b:?}]");

        // Without the master key the keys cannot be read; with another one the store does
        // not even open.
        let without = db.open().await;
        assert!(
            matches!(
                without.signing_keys("token").await,
                Err(StoreError::Sealing(SealingError::NoMasterKey { .. }))
            ),
            "[{b:?}]"
        );
        let wrong = open(&db, Some(master(8))).await;
        assert!(
            matches!(
                wrong,
                Err(StoreError::Sealing(SealingError::WrongMasterKey { .. }))
            ),
            "[{b:?}] {wrong:?}"
        );
    }
}
