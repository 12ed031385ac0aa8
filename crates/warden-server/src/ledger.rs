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
    signer: Arc<Signer>,
    verifiers: Vec<VerifierKey>,
    host: String,
}

impl Ledger {
    /// Load the checkpoint keys from the store, creating the first on first start.
    pub async fn load(store: &Store, config: &Config) -> Result<Self, ServerError> {
        let host = config.ledger_host();
        let mut records = store.signing_keys(CHECKPOINT_KEY_PURPOSE).await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            let seed = warden_authority::SigningKey::generate()
                .map_err(|e| ServerError::Keys(e.to_string()))?
                .secret_bytes();
            let signer = Signer::from_seed(&host, &seed)
                .map_err(|e| ServerError::Keys(format!("ledger host {host:?}: {e}")))?;
            store
                .insert_signing_key_if_none(&SigningKeyRecord {
                    kid: format!("{:08x}", signer.key_id()),
                    purpose: CHECKPOINT_KEY_PURPOSE.into(),
                    secret: seed.to_vec(),
                    created_at: Timestamp::now(),
                    retired_at: None,
                })
                .await?;
            records = store.signing_keys(CHECKPOINT_KEY_PURPOSE).await?;
        }
        let mut verifiers = Vec::new();
        let mut active = None;
        for r in &records {
            let seed: [u8; 32] = r.secret.as_slice().try_into().map_err(|_| {
                ServerError::Keys(format!("checkpoint key {} is not 32 bytes", r.kid))
            })?;
            let signer = Signer::from_seed(&host, &seed)
                .map_err(|e| ServerError::Keys(format!("ledger host {host:?}: {e}")))?;
            verifiers.push(signer.verifier_key());
            if r.retired_at.is_none() {
                active = Some(signer);
            }
        }
        let signer = active.ok_or_else(|| ServerError::Keys("no active checkpoint key".into()))?;
        Ok(Self {
            signer: Arc::new(signer),
            verifiers,
            host,
        })
    }

    /// The checkpoint origin of a tenant's log: `<host>/audit/<tenant>`.
    pub fn origin(&self, tenant: &TenantId) -> String {
        format!("{}/audit/{}", self.host, tenant.as_str())
    }

    /// Every key a checkpoint of ours may be signed with (current and retired), in the
    /// note verifier key form.
    pub fn verifier_keys(&self) -> &[VerifierKey] {
        &self.verifiers
    }

    fn sign(&self, tenant: &TenantId, size: u64, root: &Hash) -> String {
        let body = Checkpoint::new(self.origin(tenant), size, *root);
        SignedCheckpoint::sign(&body, &[&self.signer])
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

    /// Publish a new checkpoint on the event bus and count it. The event is metadata
    /// only (DESIGN.md §6): its size and root, not whose log it is.
    fn checkpoint_cut(&self, c: &StoredCheckpoint) {
        self.metrics
            .add("warden_ledger_checkpoints_total", Vec::new(), 1);
        let event = serde_json::json!({
            "type": "checkpoint",
            "timestamp": c.created_at,
            "size": c.size,
            "root": warden_ledger::hash::to_base64(&c.root),
        });
        let _ = self.events.send(event.to_string());
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
                    state.raise_alert(crate::alerts::Alert {
                        rule: "ledger.self_check".into(),
                        fired_at: Timestamp::now(),
                        tenant: tenant.as_str().to_owned(),
                        actor: None,
                        count: seq,
                        detail: p.to_string(),
                    });
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
