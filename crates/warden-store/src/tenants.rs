//! Tenants, OAuth clients (secrets stored as SHA-256 digests) and signing keys.

use sqlx::Row;
use warden_core::audit::{Actor, AuditDraft, Target};
use warden_core::names::{ClientId, ClientName, TenantId};
use warden_core::reason::ReasonCode;
use warden_core::scopes::Role;
use warden_core::time::Timestamp;

use crate::{Store, StoreError, StoreResult, audit, row, sealing};

/// A client as the authority sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The OAuth `client_id`.
    pub id: ClientId,
    /// Its tenant.
    pub tenant: TenantId,
    /// Unique per tenant.
    pub name: ClientName,
    /// SHA-256 of the secret.
    pub secret_digest: [u8; 32],
    /// What it may ask for.
    pub roles: Vec<Role>,
    /// When created.
    pub created_at: Timestamp,
    /// When revoked; its tokens stop working at once.
    pub revoked_at: Option<Timestamp>,
}

/// A stored signing key (tokens or checkpoints).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id.
    pub kid: String,
    /// `token` or `checkpoint`.
    pub purpose: String,
    /// The Ed25519 secret key bytes.
    pub secret: Vec<u8>,
    /// When created.
    pub created_at: Timestamp,
    /// When it stopped signing (it still verifies).
    pub retired_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("purpose", &self.purpose)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn decode_client(r: &sqlx::any::AnyRow) -> StoreResult<ClientRecord> {
    let roles_text = row::text(r, "roles")?;
    let roles = roles_text
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| {
            Role::parse(s)
                .ok_or_else(|| StoreError::corrupt("clients", format!("unknown role {s}")))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let digest: Vec<u8> = r.try_get("secret_digest")?;
    Ok(ClientRecord {
        id: row::parse("clients", &row::text(r, "id")?, ClientId::parse)?,
        tenant: row::parse(
            "clients",
            &row::text(r, "tenant")?,
            TenantId::parse_including_reserved,
        )?,
        name: row::parse("clients", &row::text(r, "name")?, ClientName::parse)?,
        secret_digest: digest
            .try_into()
            .map_err(|_| StoreError::corrupt("clients", "digest is not 32 bytes"))?,
        roles,
        created_at: Timestamp::from_micros(row::int(r, "created_at")?),
        revoked_at: row::opt_int(r, "revoked_at")?.map(Timestamp::from_micros),
    })
}

const CLIENT_COLUMNS: &str = "id, tenant, name, secret_digest, roles, created_at, revoked_at";

fn cli_draft(
    tenant: &TenantId,
    actor: &Actor,
    action: &str,
    client: &ClientName,
    metadata: serde_json::Value,
) -> AuditDraft {
    AuditDraft {
        target: Some(Target::new("client", client.as_str())),
        metadata,
        ..AuditDraft::new(tenant.clone(), actor.clone(), action)
    }
}

impl Store {
    /// Create the tenant if it does not exist yet.
    pub async fn ensure_tenant(&self, tenant: &TenantId) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(Timestamp::now().as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether the tenant exists.
    pub async fn tenant_exists(&self, tenant: &TenantId) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.read_pool())
            .await?
            .is_some())
    }

    /// Create a client (and its tenant if new), audited `client.create` by `actor`.
    pub async fn create_client(
        &self,
        tenant: &TenantId,
        name: &ClientName,
        roles: &[Role],
        secret_digest: [u8; 32],
        actor: &Actor,
    ) -> StoreResult<ClientRecord> {
        let id = ClientId::new();
        let roles_text = roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        sqlx::query(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        let exists = sqlx::query("SELECT 1 FROM clients WHERE tenant = $1 AND name = $2")
            .bind(tenant.as_str())
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let duplicate = || {
            StoreError::Rejected(crate::Rejection::field(
                "name",
                format!("a client named {name} already exists in tenant {tenant}"),
            ))
        };
        if exists.is_some() {
            return Err(duplicate());
        }
        let inserted = sqlx::query("INSERT INTO clients (id, tenant, name, secret_digest, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id.to_string())
            .bind(tenant.as_str())
            .bind(name.as_str())
            .bind(secret_digest.to_vec())
            .bind(roles_text.clone())
            .bind(now.as_micros())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from);
        match inserted {
            // A concurrent create of the same name committed between the check and the
            // insert (PostgreSQL; SQLite serialises writers).
            Err(e) if e.is_unique_violation() => return Err(duplicate()),
            other => other?,
        };
        let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let metadata = serde_json::json!({"client_id": id.to_string(), "roles": role_names});
        audit::append_in_tx(
            &mut tx,
            vec![cli_draft(tenant, actor, "client.create", name, metadata)],
            log,
        )
        .await?;
        tx.commit().await?;
        Ok(ClientRecord {
            id,
            tenant: tenant.clone(),
            name: name.clone(),
            secret_digest,
            roles: roles.to_vec(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// A client by its id (revoked ones too; the caller decides).
    pub async fn get_client(&self, id: ClientId) -> StoreResult<Option<ClientRecord>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1");
        let r = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(self.read_pool())
            .await?;
        r.as_ref().map(decode_client).transpose()
    }

    /// A tenant's clients, by name.
    pub async fn list_clients(&self, tenant: &TenantId) -> StoreResult<Vec<ClientRecord>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 ORDER BY name");
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .fetch_all(self.read_pool())
            .await?;
        rows.iter().map(decode_client).collect()
    }

    async fn client_change(
        &self,
        tenant: &TenantId,
        name: &ClientName,
        actor: &Actor,
        action: &str,
        change: ClientChange,
    ) -> StoreResult<ClientRecord> {
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let sql = format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 AND name = $2{}",
            self.dialect().for_update()
        );
        let current = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current.as_ref().map(decode_client).transpose()? else {
            return Err(StoreError::rejected(
                ReasonCode::ValidationFailed,
                format!("no client named {name} in tenant {tenant}"),
            ));
        };
        if current.revoked_at.is_some() {
            return Err(StoreError::rejected(
                ReasonCode::InvalidStateTransition,
                format!("client {name} is revoked"),
            ));
        }
        let mut updated = current.clone();
        match change {
            ClientChange::Revoke => {
                sqlx::query("UPDATE clients SET revoked_at = $1 WHERE id = $2")
                    .bind(now.as_micros())
                    .bind(current.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                updated.revoked_at = Some(now);
            }
            ClientChange::Rotate(digest) => {
                sqlx::query("UPDATE clients SET secret_digest = $1 WHERE id = $2")
                    .bind(digest.to_vec())
                    .bind(current.id.to_string())
                    .execute(&mut *tx)
                    .await?;
                updated.secret_digest = digest;
            }
        }
        let metadata = serde_json::json!({"client_id": current.id.to_string()});
        audit::append_in_tx(
            &mut tx,
            vec![cli_draft(tenant, actor, action, name, metadata)],
            log,
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Revoke a client, audited `client.revoke`. Its tokens stop working at once.
    pub async fn revoke_client(
        &self,
        tenant: &TenantId,
        name: &ClientName,
        actor: &Actor,
    ) -> StoreResult<ClientRecord> {
        self.client_change(tenant, name, actor, "client.revoke", ClientChange::Revoke)
            .await
    }

    /// Replace a client's secret digest, audited `client.rotate`.
    pub async fn rotate_client_secret(
        &self,
        tenant: &TenantId,
        name: &ClientName,
        digest: [u8; 32],
        actor: &Actor,
    ) -> StoreResult<ClientRecord> {
        self.client_change(
            tenant,
            name,
            actor,
            "client.rotate",
            ClientChange::Rotate(digest),
        )
        .await
    }

    /// Signing keys for `purpose`, oldest first, their secrets opened with the master key
    /// if they are sealed.
    pub async fn signing_keys(&self, purpose: &str) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query("SELECT kid, purpose, secret, created_at, retired_at FROM signing_keys WHERE purpose = $1 ORDER BY created_at, kid")
            .bind(purpose)
            .fetch_all(self.read_pool())
            .await?;
        rows.iter()
            .map(|r| {
                let kid = row::text(r, "kid")?;
                let stored: Vec<u8> = r.try_get("secret")?;
                Ok(SigningKeyRecord {
                    secret: sealing::open(self.inner.master_key.as_ref(), purpose, &kid, &stored)?,
                    kid,
                    purpose: row::text(r, "purpose")?,
                    created_at: Timestamp::from_micros(row::int(r, "created_at")?),
                    retired_at: row::opt_int(r, "retired_at")?.map(Timestamp::from_micros),
                })
            })
            .collect()
    }

    /// The secret of `key` as it is stored: sealed when a master key is configured.
    fn stored_secret(&self, key: &SigningKeyRecord) -> Vec<u8> {
        match &self.inner.master_key {
            Some(m) => m.seal(&key.purpose, &key.kid, &key.secret),
            None => key.secret.clone(),
        }
    }

    /// Seal every signing key with `new` instead of the current master key (or instead of
    /// nothing, for keys stored in the clear), with a `key.reseal` entry in the `_system`
    /// log, in one transaction. Afterwards the store opens only with `new`. Returns how
    /// many keys were resealed.
    pub async fn reseal_signing_keys(
        &self,
        new: &sealing::MasterKey,
        warrant: &LocalWarrant,
    ) -> StoreResult<u64> {
        let system = TenantId::system();
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, &system).await?;
        let rows = sqlx::query("SELECT kid, purpose, secret FROM signing_keys ORDER BY kid")
            .fetch_all(&mut *tx)
            .await?;
        for r in &rows {
            let (kid, purpose) = (row::text(r, "kid")?, row::text(r, "purpose")?);
            let stored: Vec<u8> = r.try_get("secret")?;
            let secret = sealing::open(self.inner.master_key.as_ref(), &purpose, &kid, &stored)?;
            sqlx::query("UPDATE signing_keys SET secret = $1 WHERE kid = $2 AND purpose = $3")
                .bind(new.seal(&purpose, &kid, &secret))
                .bind(kid.as_str())
                .bind(purpose.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let mut draft = AuditDraft::new(system, warrant.actor.clone(), "key.reseal");
        draft.operator_reason = Some(warrant.reason.clone());
        draft.operator_ticket = Some(warrant.ticket.clone());
        draft.metadata = serde_json::json!({"keys": rows.len()});
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// With a master key configured, seal every signing key still stored in the clear (a
    /// store from before the master key was set), each with its purpose and id; a sealed
    /// key that does not open with it stops the start. Returns how many were sealed.
    pub(crate) async fn seal_plain_signing_keys(&self) -> StoreResult<u64> {
        let Some(master) = &self.inner.master_key else {
            return Ok(0);
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query("SELECT kid, purpose, secret FROM signing_keys")
            .fetch_all(&mut *tx)
            .await?;
        let mut sealed = 0;
        for r in &rows {
            let (kid, purpose) = (row::text(r, "kid")?, row::text(r, "purpose")?);
            let stored: Vec<u8> = r.try_get("secret")?;
            if sealing::is_sealed(&stored) {
                sealing::open(Some(master), &purpose, &kid, &stored)?;
                continue;
            }
            sqlx::query("UPDATE signing_keys SET secret = $1 WHERE kid = $2 AND purpose = $3")
                .bind(master.seal(&purpose, &kid, &stored))
                .bind(kid.as_str())
                .bind(purpose.as_str())
                .execute(&mut *tx)
                .await?;
            sealed += 1;
        }
        tx.commit().await?;
        if sealed > 0 {
            tracing::info!(keys = sealed, "sealed signing keys with the master key");
        }
        Ok(sealed)
    }

    /// Store a new signing key unless one for `purpose` is already active (several nodes
    /// starting at once agree on the first one). Returns whether it was stored.
    pub async fn insert_signing_key_if_none(&self, key: &SigningKeyRecord) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7254322)")
                .execute(&mut *tx)
                .await?;
        }
        let active =
            sqlx::query("SELECT 1 FROM signing_keys WHERE purpose = $1 AND retired_at IS NULL")
                .bind(key.purpose.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if active.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, purpose, secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(key.kid.as_str())
        .bind(key.purpose.as_str())
        .bind(self.stored_secret(key))
        .bind(key.created_at.as_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// A warrant for a change made from the command line on the store directly: who, why,
/// under which ticket.
#[derive(Debug, Clone)]
pub struct LocalWarrant {
    /// Who ran the command.
    pub actor: Actor,
    /// Why.
    pub reason: String,
    /// Under which ticket.
    pub ticket: String,
}

impl Store {
    /// Retire the active signing key of `new.purpose` and make `new` the one that signs,
    /// with a `key.rotate` entry in the `_system` log, in one transaction. Retired keys
    /// keep verifying (they stay in the JWKS and in `/api/v1/audit/keys`). Returns the
    /// retired key ids.
    pub async fn rotate_signing_key(
        &self,
        new: &SigningKeyRecord,
        warrant: &LocalWarrant,
    ) -> StoreResult<Vec<String>> {
        let system = TenantId::system();
        let mut tx = self.begin_write().await?;
        let log = audit::lock_log(&mut tx, &system).await?;
        let now = log.now;
        if self.backend() == crate::Backend::Postgres {
            // The same lock a first start takes, so a rotation and a start never both
            // leave an active key.
            sqlx::query("SELECT pg_advisory_xact_lock(7254322)")
                .execute(&mut *tx)
                .await?;
        }
        let retired: Vec<String> = sqlx::query(
            "SELECT kid FROM signing_keys WHERE purpose = $1 AND retired_at IS NULL ORDER BY kid",
        )
        .bind(new.purpose.as_str())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| row::text(r, "kid"))
        .collect::<StoreResult<_>>()?;
        if retired.iter().any(|k| k == &new.kid) {
            return Err(StoreError::rejected(
                ReasonCode::ValidationFailed,
                format!("key {} is already the active {} key", new.kid, new.purpose),
            ));
        }
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE purpose = $2 AND retired_at IS NULL",
        )
        .bind(now.as_micros())
        .bind(new.purpose.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, purpose, secret, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(new.kid.as_str())
        .bind(new.purpose.as_str())
        .bind(self.stored_secret(new))
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        let mut draft = AuditDraft::new(system, warrant.actor.clone(), "key.rotate");
        draft.target = Some(Target::new("key", new.kid.clone()));
        draft.operator_reason = Some(warrant.reason.clone());
        draft.operator_ticket = Some(warrant.ticket.clone());
        draft.metadata = serde_json::json!({"purpose": new.purpose, "retired": retired});
        audit::append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(retired)
    }
}

enum ClientChange {
    Revoke,
    Rotate([u8; 32]),
}
