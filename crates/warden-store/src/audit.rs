//! The audit log: gapless per-tenant `seq`, canonical bodies and leaf hashes written in the
//! caller's transaction; keyset listing newest first; stats.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use warden_core::audit::{AuditDraft, AuditEntry, Outcome, leaf_hash};
use warden_core::events::AuditEvent;
use warden_core::names::{AuditId, TenantId};
use warden_core::time::Timestamp;

use crate::sql::{ROWS_PER_STATEMENT, values_placeholders};
use crate::{Store, StoreError, StoreResult, outbox, row};

/// An entry as stored: the entry plus its leaf hash.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    /// The entry, decoded from its canonical text.
    pub entry: AuditEntry,
    /// `SHA-256(0x00 ‖ canonical)`.
    pub leaf_hash: [u8; 32],
}

/// Filters of `GET /api/v1/audit` (all optional, combined with AND; repeated actors or
/// actions are OR-ed among themselves).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// `client:ops-bot`, …
    pub actors: Vec<String>,
    /// `job.cancel`, …
    pub actions: Vec<String>,
    /// The target's id or name.
    pub target: Option<String>,
    /// The warrant ticket.
    pub ticket: Option<String>,
    /// Allowed or rejected.
    pub outcome: Option<Outcome>,
    /// Inclusive lower time bound.
    pub since: Option<Timestamp>,
    /// Exclusive upper time bound.
    pub until: Option<Timestamp>,
}

/// `GET /api/v1/audit/stats`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditStats {
    /// Entries in range.
    pub total: i64,
    /// Count per action.
    pub by_action: BTreeMap<String, i64>,
    /// Count per outcome.
    pub by_outcome: BTreeMap<String, i64>,
    /// The ten most frequent actors.
    pub top_actors: Vec<ActorCount>,
    /// The oldest entry's time.
    pub first_at: Option<Timestamp>,
    /// The newest entry's time.
    pub last_at: Option<Timestamp>,
}

/// One row of `top_actors`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActorCount {
    /// The actor.
    pub actor: String,
    /// Its entries.
    pub count: i64,
}

/// Take the tenant's log lock for this transaction and return the instant to stamp the
/// action and its entry with. Audited transactions call this first: appends of one tenant
/// serialise here (the head row's lock on PostgreSQL; the single writer on SQLite), so
/// `created_at` never goes backwards as `seq` goes up, and the action and its entry share
/// one time.
pub(crate) async fn lock_log(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    dialect: crate::Dialect,
) -> StoreResult<Timestamp> {
    if dialect.backend == crate::Backend::Postgres {
        sqlx::query("INSERT INTO audit_heads (tenant, next_seq) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING")
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT next_seq FROM audit_heads WHERE tenant = $1 FOR UPDATE")
            .bind(tenant.as_str())
            .fetch_one(&mut *conn)
            .await?;
    }
    Ok(Timestamp::now())
}

/// Append `drafts` (all of one tenant) to that tenant's log inside the caller's
/// transaction. The head row's update serialises appends per tenant (a row lock on
/// PostgreSQL; the single writer on SQLite), so `seq` is gapless.
pub(crate) async fn append_in_tx(
    conn: &mut AnyConnection,
    drafts: Vec<AuditDraft>,
    now: Timestamp,
) -> StoreResult<Vec<AuditEntry>> {
    let Some(first) = drafts.first() else {
        return Ok(Vec::new());
    };
    let tenant = first.tenant.clone();
    debug_assert!(
        drafts.iter().all(|d| d.tenant == tenant),
        "one tenant per append"
    );
    let count = drafts.len() as i64;
    sqlx::query(
        "INSERT INTO audit_heads (tenant, next_seq) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING",
    )
    .bind(tenant.as_str())
    .execute(&mut *conn)
    .await?;
    let end: i64 = sqlx::query(
        "UPDATE audit_heads SET next_seq = next_seq + $2 WHERE tenant = $1 RETURNING next_seq",
    )
    .bind(tenant.as_str())
    .bind(count)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let base = end - count;

    let mut entries = Vec::with_capacity(drafts.len());
    let mut encoded = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.into_iter().enumerate() {
        let entry = draft.into_entry(AuditId::new(), (base + i as i64) as u64, now);
        let canonical = entry.canonical()?;
        let hash = leaf_hash(canonical.as_bytes());
        encoded.push((canonical, hash));
        entries.push(entry);
    }

    for (chunk_entries, chunk_encoded) in entries
        .chunks(ROWS_PER_STATEMENT)
        .zip(encoded.chunks(ROWS_PER_STATEMENT))
    {
        let sql = format!(
            "INSERT INTO audit_entries (tenant, seq, id, created_at, actor, action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical) VALUES {}",
            values_placeholders(chunk_entries.len(), 12, 1)
        );
        let sql = crate::sql::for_backend(conn, sql);
        let mut q = sqlx::query(&sql);
        for (e, (canonical, _)) in chunk_entries.iter().zip(chunk_encoded) {
            q = q
                .bind(e.tenant.clone())
                .bind(e.seq as i64)
                .bind(e.id.to_string())
                .bind(e.created_at.as_micros())
                .bind(e.actor.clone())
                .bind(e.action.clone())
                .bind(e.target_kind.clone())
                .bind(e.target_id.clone())
                .bind(e.outcome.as_str())
                .bind(e.reason_code.map(|c| c.as_str()))
                .bind(e.operator_ticket.clone())
                .bind(canonical.clone());
        }
        q.execute(&mut *conn).await?;

        let sql = format!(
            "INSERT INTO audit_leaves (tenant, seq, leaf_hash) VALUES {}",
            values_placeholders(chunk_entries.len(), 3, 1)
        );
        let sql = crate::sql::for_backend(conn, sql);
        let mut q = sqlx::query(&sql);
        for (e, (_, hash)) in chunk_entries.iter().zip(chunk_encoded) {
            q = q
                .bind(e.tenant.clone())
                .bind(e.seq as i64)
                .bind(hash.to_vec());
        }
        q.execute(&mut *conn).await?;
    }
    let events: Vec<AuditEvent> = entries.iter().map(AuditEvent::from_entry).collect();
    outbox::enqueue_audit_events(conn, &events, now).await?;
    Ok(entries)
}

fn decode_stored(r: &AnyRow) -> StoreResult<StoredEntry> {
    let canonical = row::text(r, "canonical")?;
    let entry = row::parse("audit_entries", &canonical, AuditEntry::from_canonical)?;
    let hash: Vec<u8> = r.try_get("leaf_hash")?;
    let leaf_hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| StoreError::corrupt("audit_leaves", "leaf hash is not 32 bytes"))?;
    Ok(StoredEntry { entry, leaf_hash })
}

/// Append placeholders and binds for a filter; returns the WHERE clause (after `tenant = $1`).
struct Where {
    clause: String,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl Where {
    fn new(tenant: &TenantId) -> Self {
        Self {
            clause: "e.tenant = $1".into(),
            binds: vec![Bind::Text(tenant.as_str().to_owned())],
        }
    }

    fn next(&self) -> usize {
        self.binds.len() + 1
    }

    fn eq_any(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let mut parts = Vec::new();
        for v in values {
            parts.push(format!("{column} = ${}", self.next()));
            self.binds.push(Bind::Text(v.clone()));
        }
        self.clause
            .push_str(&format!(" AND ({})", parts.join(" OR ")));
    }

    fn cmp_int(&mut self, column: &str, op: &str, value: i64) {
        self.clause
            .push_str(&format!(" AND {column} {op} ${}", self.next()));
        self.binds.push(Bind::Int(value));
    }

    fn filter(mut self, f: &AuditFilter) -> Self {
        self.eq_any("e.actor", &f.actors);
        self.eq_any("e.action", &f.actions);
        if let Some(t) = &f.target {
            self.eq_any("e.target_id", std::slice::from_ref(t));
        }
        if let Some(t) = &f.ticket {
            self.eq_any("e.operator_ticket", std::slice::from_ref(t));
        }
        if let Some(o) = f.outcome {
            self.eq_any("e.outcome", &[o.as_str().to_owned()]);
        }
        if let Some(s) = f.since {
            self.cmp_int("e.created_at", ">=", s.as_micros());
        }
        if let Some(u) = f.until {
            self.cmp_int("e.created_at", "<", u.as_micros());
        }
        self
    }

    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for b in &self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.as_str()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

impl Store {
    /// Append one entry in its own transaction (rejections, token issuance, `_system`).
    pub async fn append_audit(&self, draft: AuditDraft) -> StoreResult<AuditEntry> {
        let mut tx = self.begin_write().await?;
        let now = lock_log(&mut tx, &draft.tenant, self.dialect()).await?;
        let mut entries = append_in_tx(&mut tx, vec![draft], now).await?;
        tx.commit().await?;
        Ok(entries.remove(0))
    }

    /// Append many entries of one tenant in one transaction (imports and benchmark seeding;
    /// operator actions append inside their own transactions instead).
    pub async fn append_audit_batch(
        &self,
        drafts: Vec<AuditDraft>,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut tx = self.begin_write().await?;
        let now = match drafts.first() {
            Some(d) => lock_log(&mut tx, &d.tenant, self.dialect()).await?,
            None => Timestamp::now(),
        };
        let entries = append_in_tx(&mut tx, drafts, now).await?;
        tx.commit().await?;
        Ok(entries)
    }

    /// Entries newest first, after the keyset `cursor` (a `seq`), at most `limit`.
    /// Returns the page and whether more follow.
    pub async fn list_audit(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        before_seq: Option<u64>,
        limit: u32,
    ) -> StoreResult<(Vec<StoredEntry>, bool)> {
        let mut w = Where::new(tenant).filter(filter);
        if let Some(c) = before_seq {
            w.cmp_int("e.seq", "<", c as i64);
        }
        let sql = format!(
            "SELECT e.canonical, l.leaf_hash FROM audit_entries e JOIN audit_leaves l ON l.tenant = e.tenant AND l.seq = e.seq WHERE {} ORDER BY e.seq DESC LIMIT {}",
            w.clause,
            limit as u64 + 1
        );
        let rows = w
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        let more = rows.len() > limit as usize;
        let items = rows
            .iter()
            .take(limit as usize)
            .map(decode_stored)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((items, more))
    }

    /// One entry by id, in the caller's tenant only.
    pub async fn get_audit(
        &self,
        tenant: &TenantId,
        id: AuditId,
    ) -> StoreResult<Option<StoredEntry>> {
        let row = sqlx::query(
            "SELECT e.canonical, l.leaf_hash FROM audit_entries e JOIN audit_leaves l ON l.tenant = e.tenant AND l.seq = e.seq WHERE e.tenant = $1 AND e.id = $2",
        )
        .bind(tenant.as_str())
        .bind(id.to_string())
        .fetch_optional(self.read_pool())
        .await?;
        row.as_ref().map(decode_stored).transpose()
    }

    /// Counts over a time range.
    pub async fn audit_stats(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> StoreResult<AuditStats> {
        let w = Where::new(tenant).filter(filter);
        let grouped = |col: &str, extra: &str| {
            format!(
                "SELECT {col} AS k, COUNT(*) AS n FROM audit_entries e WHERE {} GROUP BY {col} {extra}",
                w.clause
            )
        };
        let pool = self.read_pool();
        let mut by_action = BTreeMap::new();
        let mut total = 0;
        for r in w
            .bind(sqlx::query(&grouped("e.action", "")))
            .fetch_all(pool)
            .await?
        {
            let n = row::int(&r, "n")?;
            total += n;
            by_action.insert(row::text(&r, "k")?, n);
        }
        let mut by_outcome = BTreeMap::new();
        for r in w
            .bind(sqlx::query(&grouped("e.outcome", "")))
            .fetch_all(pool)
            .await?
        {
            by_outcome.insert(row::text(&r, "k")?, row::int(&r, "n")?);
        }
        let mut top_actors = Vec::new();
        let sql = grouped("e.actor", "ORDER BY n DESC, k ASC LIMIT 10");
        for r in w.bind(sqlx::query(&sql)).fetch_all(pool).await? {
            top_actors.push(ActorCount {
                actor: row::text(&r, "k")?,
                count: row::int(&r, "n")?,
            });
        }
        let sql = format!(
            "SELECT MIN(e.created_at) AS a, MAX(e.created_at) AS b FROM audit_entries e WHERE {}",
            w.clause
        );
        let r = w.bind(sqlx::query(&sql)).fetch_one(pool).await?;
        Ok(AuditStats {
            total,
            by_action,
            by_outcome,
            top_actors,
            first_at: row::opt_int(&r, "a")?.map(Timestamp::from_micros),
            last_at: row::opt_int(&r, "b")?.map(Timestamp::from_micros),
        })
    }

    /// How many entries the tenant's log holds (its next `seq`).
    pub async fn audit_size(&self, tenant: &TenantId) -> StoreResult<u64> {
        let r = sqlx::query("SELECT next_seq FROM audit_heads WHERE tenant = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.read_pool())
            .await?;
        Ok(match r {
            Some(r) => row::int(&r, "next_seq")? as u64,
            None => 0,
        })
    }
}
