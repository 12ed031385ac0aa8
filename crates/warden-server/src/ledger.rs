//! The server's side of the ledger: the checkpoint signing key (kept in the store, so
//! every node signs with the same one), origins, and cutting checkpoints (on a timer while
//! a log grows, and on demand). The maths is `warden-ledger`'s, the storage
//! `warden_store::ledger`'s.

use std::sync::Arc;

use warden_core::names::TenantId;
use warden_core::time::Timestamp;
use warden_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use warden_ledger::hash::Hash;
use warden_ledger::note::{Signer, VerifierKey};
use warden_store::Store;
use warden_store::ledger::StoredCheckpoint;
use warden_store::tenants::SigningKeyRecord;

use crate::config::Config;
use crate::{AppState, ServerError};

/// `signing_keys.purpose` of checkpoint keys.
pub const CHECKPOINT_KEY_PURPOSE: &str = "checkpoint";

/// Checkpoint keys and origins.
#[derive(Debug)]
pub struct Ledger {
    keys: std::sync::RwLock<Arc<LedgerKeys>>,
    host: String,
}

/// The key that signs checkpoints now, and every key that ever did.
#[derive(Debug)]
struct LedgerKeys {
    signer: Signer,
    verifiers: Vec<VerifierKey>,
}

/// A fresh checkpoint key for the ledger host `host` (its key id depends on the name).
pub fn new_checkpoint_key(host: &str) -> Result<SigningKeyRecord, ServerError> {
    let seed = warden_authority::SigningKey::generate()
        .map_err(|e| ServerError::Keys(e.to_string()))?
        .secret_bytes();
    let signer = Signer::from_seed(host, &seed)
        .map_err(|e| ServerError::Keys(format!("ledger host {host:?}: {e}")))?;
    Ok(SigningKeyRecord {
        kid: format!("{:08x}", signer.key_id()),
        purpose: CHECKPOINT_KEY_PURPOSE.into(),
        secret: seed.to_vec(),
        created_at: Timestamp::now(),
        retired_at: None,
    })
}

impl Ledger {
    /// Load the checkpoint keys from the store, creating the first on first start.
    pub async fn load(store: &Store, config: &Config) -> Result<Self, ServerError> {
        let host = config.ledger_host();
        let mut records = store.signing_keys(CHECKPOINT_KEY_PURPOSE).await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            store
                .insert_signing_key_if_none(&new_checkpoint_key(&host)?)
                .await?;
            records = store.signing_keys(CHECKPOINT_KEY_PURPOSE).await?;
        }
        let keys = Self::keys_from_records(&host, &records)?;
        Ok(Self {
            keys: std::sync::RwLock::new(Arc::new(keys)),
            host,
        })
    }

    /// Take up a key rotated in the store (by `warden keys rotate`, maybe on another
    /// node). Returns whether anything changed.
    pub async fn reload_keys(&self, store: &Store) -> Result<bool, ServerError> {
        let records = store.signing_keys(CHECKPOINT_KEY_PURPOSE).await?;
        let keys = Self::keys_from_records(&self.host, &records)?;
        let current = self.current();
        if keys.signer.key_id() == current.signer.key_id() && keys.verifiers == current.verifiers {
            return Ok(false);
        }
        *self.keys.write().expect("lock") = Arc::new(keys);
        Ok(true)
    }

    fn current(&self) -> Arc<LedgerKeys> {
        self.keys.read().expect("lock").clone()
    }

    fn keys_from_records(
        host: &str,
        records: &[SigningKeyRecord],
    ) -> Result<LedgerKeys, ServerError> {
        let mut verifiers = Vec::new();
        let mut active = None;
        for r in records {
            let seed: [u8; 32] = r.secret.as_slice().try_into().map_err(|_| {
                ServerError::Keys(format!("checkpoint key {} is not 32 bytes", r.kid))
            })?;
            let signer = Signer::from_seed(host, &seed)
                .map_err(|e| ServerError::Keys(format!("ledger host {host:?}: {e}")))?;
            verifiers.push(signer.verifier_key());
            if r.retired_at.is_none() {
                active = Some(signer);
            }
        }
        let signer = active.ok_or_else(|| ServerError::Keys("no active checkpoint key".into()))?;
        Ok(LedgerKeys { signer, verifiers })
    }

    /// The checkpoint origin of a tenant's log: `<host>/audit/<tenant>`.
    pub fn origin(&self, tenant: &TenantId) -> String {
        format!("{}/audit/{}", self.host, tenant.as_str())
    }

    /// Every key a checkpoint of ours may be signed with (current and retired), in the
    /// note verifier key form.
    pub fn verifier_keys(&self) -> Vec<VerifierKey> {
        self.current().verifiers.clone()
    }

    fn sign(&self, tenant: &TenantId, size: u64, root: &Hash) -> String {
        let body = Checkpoint::new(self.origin(tenant), size, *root);
        SignedCheckpoint::sign(&body, &[&self.current().signer])
            .expect("our checkpoint bodies are valid notes")
    }
}

impl AppState {
    /// The tenant's newest checkpoint, cut now if the log has grown since the last one.
    pub async fn current_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> Result<StoredCheckpoint, warden_store::StoreError> {
        let (c, stored) = self
            .store
            .cut_checkpoint(tenant, |size, root| self.ledger.sign(tenant, size, root))
            .await?;
        if stored {
            self.checkpoint_cut(&c);
        }
        Ok(c)
    }

    /// Count a new checkpoint (the store published its event through the outbox).
    fn checkpoint_cut(&self, _c: &StoredCheckpoint) {
        self.metrics
            .add("warden_ledger_checkpoints_total", Vec::new(), 1);
    }
}

/// One pass of the checkpoint timer: a checkpoint for every log that grew.
pub(crate) async fn cut_due_checkpoints(state: &AppState) {
    let due = match state.store.tenants_due_a_checkpoint().await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not list logs due a checkpoint; will retry");
            return;
        }
    };
    for tenant in due {
        if let Err(e) = state.current_checkpoint(&tenant).await {
            tracing::warn!(error = %e, "could not cut a checkpoint; will retry");
        }
    }
}

/// One self-check pass: every log's most recent entries re-verified against the stored
/// tree and the newest checkpoint; a mismatch raises the `ledger.self_check` alert.
/// Returns the problems found (for tests and operators' tooling).
pub async fn self_check(
    state: &AppState,
) -> Vec<(TenantId, warden_store::ledger::SelfCheckProblem)> {
    let mut found = Vec::new();
    let logs = match state.store.ledger_sizes().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "ledger self-check could not list the logs; will retry");
            return found;
        }
    };
    for (tenant, _) in logs {
        match state
            .store
            .self_check(&tenant, state.config.ledger.self_check_entries)
            .await
        {
            Ok((checked, problem)) => {
                state.metrics.add(
                    "warden_ledger_self_check_entries_total",
                    Vec::new(),
                    checked,
                );
                if let Some(p) = problem {
                    tracing::error!(tenant = %tenant.as_str(), problem = %p, "ledger self-check failed");
                    let seq = match &p {
                        warden_store::ledger::SelfCheckProblem::Leaf { seq }
                        | warden_store::ledger::SelfCheckProblem::Missing { seq } => *seq,
                        warden_store::ledger::SelfCheckProblem::Root { size, .. } => *size,
                    };
                    state
                        .raise_alert(crate::alerts::Alert {
                            rule: "ledger.self_check".into(),
                            fired_at: Timestamp::now(),
                            tenant: tenant.as_str().to_owned(),
                            actor: None,
                            count: seq,
                            detail: p.to_string(),
                        })
                        .await;
                    found.push((tenant, p));
                }
            }
            Err(e) => {
                tracing::error!(tenant = %tenant.as_str(), error = %e, "ledger self-check could not read the log");
            }
        }
    }
    found
}

/// One retention pass: for every log whose oldest bodies are older than its period, write
/// those entries (under the newest checkpoint) to a verifiable NDJSON archive file, sync
/// it, then move the bodies out in one transaction with the run's own `audit.retention`
/// entry. Leaves, nodes and checkpoints stay, so proofs and exports still verify.
/// Returns (tenant, entries moved) for each log it archived.
pub async fn run_retention(state: &AppState) -> Result<Vec<(TenantId, u64)>, ServerError> {
    let cfg = &state.config.ledger;
    let dir = cfg
        .archive_dir
        .clone()
        .unwrap_or_else(|| state.config.data_dir.join("audit-archive"));
    let mut done = Vec::new();
    for (tenant, _) in state.store.ledger_sizes().await? {
        let period = cfg
            .retention_secs_per_tenant
            .get(tenant.as_str())
            .copied()
            .unwrap_or(cfg.retention_secs);
        if period == 0 {
            continue;
        }
        let cutoff = Timestamp::from_micros(
            Timestamp::now().as_micros() - (period as i64).saturating_mul(1_000_000),
        );
        let last = state.current_checkpoint(&tenant).await?;
        let from = state
            .store
            .retention_status(&tenant)
            .await?
            .map_or(0, |r| r.archived_upto);
        let upto = state
            .store
            .first_seq_at(&tenant, cutoff)
            .await?
            .min(last.size);
        if upto <= from {
            continue;
        }
        let tenant_dir = dir.join(tenant.as_str());
        std::fs::create_dir_all(&tenant_dir)?;
        let name = format!("{}-{from:012}-{upto:012}.ndjson", tenant.as_str());
        let path = tenant_dir.join(&name);
        let partial = tenant_dir.join(format!("{name}.partial"));
        {
            let file = std::fs::File::create(&partial)?;
            let mut out = std::io::BufWriter::new(file);
            crate::routes::ledger::write_ndjson(state, &tenant, from, upto, &last, &mut out)
                .await?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        std::fs::rename(&partial, &path)?;
        let actor = warden_core::audit::Actor {
            kind: warden_core::audit::ActorKind::System,
            name: "retention".into(),
        };
        let entry = warden_core::audit::AuditDraft {
            target: Some(warden_core::audit::Target::new("log", tenant.as_str())),
            metadata: serde_json::json!({
                "archived_from": from.to_string(),
                "archived_to": upto.to_string(),
                "file": name,
                "cutoff": cutoff.to_rfc3339(),
                "retention_secs": period.to_string(),
            }),
            ..warden_core::audit::AuditDraft::new(tenant.clone(), actor, "audit.retention")
        };
        let moved = state
            .store
            .archive_bodies(&tenant, upto, &name, entry)
            .await?;
        tracing::info!(tenant = %tenant.as_str(), moved, file = %path.display(), "retention archived audit entry bodies");
        state
            .metrics
            .add("warden_audit_retention_archived_total", Vec::new(), moved);
        done.push((tenant, moved));
    }
    state.metrics.set_gauge(
        "warden_audit_retention_last_run_timestamp_seconds",
        Vec::new(),
        Timestamp::now().as_micros() as f64 / 1e6,
    );
    Ok(done)
}
