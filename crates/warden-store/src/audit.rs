//! The audit log: gapless per-tenant `seq`, canonical bodies and leaf hashes written in the
//! caller's transaction; keyset listing newest first; stats.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use warden_core::audit::{AuditDraft, AuditEntry, EncodedDraft, Outcome, leaf_hash};
use warden_core::events::AuditEvent;
use warden_core::names::{AuditId, TenantId};
use warden_core::time::Timestamp;

use crate::sql::{Insert, ROWS_PER_STATEMENT, list_placeholders};

/// A statement with its bound values, under the `Any` driver.
use crate::{Store, StoreError, StoreResult, ledger, outbox, row};

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
    /// Full text over reason, ticket and metadata: every word must occur (see
    /// [`search_words`]). Entries are searchable about a second after they are written.
    pub q: Option<String>,
}

/// The words of a search: runs of letters and digits, lowercased. `TICKET-123` is the
/// words `ticket` and `123`, found next to each other or not.
pub fn search_words(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The text an entry is searched by: its reason, its ticket and every string, number and
/// key in its metadata.
fn search_document(entry: &AuditEntry) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push(' ');
                out.push_str(s);
            }
            serde_json::Value::Number(n) => {
                out.push(' ');
                out.push_str(&n.to_string());
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(m) => m.iter().for_each(|(k, x)| {
                out.push(' ');
                out.push_str(k);
                walk(x, out);
            }),
            _ => {}
        }
    }
    let mut out = String::new();
    for s in [&entry.operator_reason, &entry.operator_ticket]
        .into_iter()
        .flatten()
    {
        out.push(' ');
        out.push_str(s);
    }
    walk(&entry.metadata, &mut out);
    out
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

/// A tenant's log, locked for the rest of the transaction by [`lock_log`]: the instant
/// to stamp the action and its entries with, and the tree's compact range as it stands.
pub(crate) struct LockedLog {
    tenant: TenantId,
    /// When the action happens: its own rows and its entries carry this time.
    pub(crate) now: Timestamp,
    frontier: warden_ledger::tree::CompactRange,
}

/// Take the tenant's log lock for this transaction and read its head. Audited
/// transactions call this first: appends of one tenant serialise here (the head row's
/// lock on PostgreSQL; the single writer on SQLite), so `created_at` never goes backwards
/// as `seq` goes up, and the action and its entry share one time. One statement when the
/// log exists (the lock and the read are the same `SELECT … FOR UPDATE`).
pub(crate) async fn lock_log(
    conn: &mut AnyConnection,
    tenant: &TenantId,
) -> StoreResult<LockedLog> {
    let frontier = ledger::load_frontier(conn, tenant).await?;
    Ok(LockedLog {
        tenant: tenant.clone(),
        now: Timestamp::now(),
        frontier,
    })
}

/// Append `drafts` (all of `log`'s tenant) to the log inside the caller's transaction,
/// which took the log's lock with [`lock_log`]; `seq` is gapless. The head row holds the
/// next seq and the tree's compact range; extending both here keeps the root that of the
/// committed log (decision 0008).
pub(crate) async fn append_in_tx(
    conn: &mut AnyConnection,
    drafts: Vec<AuditDraft>,
    log: LockedLog,
) -> StoreResult<Vec<AuditEntry>> {
    append_encoded_in_tx(conn, encode(drafts)?, log).await
}

/// Encode `drafts` as new entries, ahead of [`append_encoded_in_tx`]: done before the log
/// is locked, this work does not hold the lock (or SQLite's writer).
pub(crate) fn encode(drafts: Vec<AuditDraft>) -> StoreResult<Vec<EncodedDraft>> {
    Ok(drafts
        .into_iter()
        .map(|d| d.encode(AuditId::new()))
        .collect::<Result<_, _>>()?)
}

/// [`append_in_tx`] of drafts already [`encode`]d: each gets its `seq` and the log's time
/// spliced in, and its leaf hash.
pub(crate) async fn append_encoded_in_tx(
    conn: &mut AnyConnection,
    drafts: Vec<EncodedDraft>,
    log: LockedLog,
) -> StoreResult<Vec<AuditEntry>> {
    let LockedLog {
        tenant,
        now,
        mut frontier,
    } = log;
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    debug_assert!(
        drafts.iter().all(|d| d.tenant() == tenant.as_str()),
        "one tenant per append"
    );
    let base = frontier.size();

    let mut entries = Vec::with_capacity(drafts.len());
    let mut encoded = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.into_iter().enumerate() {
        let (entry, canonical) = draft.place(base + i as u64, now)?;
        let hash = leaf_hash(canonical.as_bytes());
        encoded.push((canonical, hash));
        entries.push(entry);
    }

    // The tree first, in memory: the nodes it completes and the new head are known before
    // anything is written.
    let leaves: Vec<[u8; 32]> = encoded.iter().map(|(_, h)| *h).collect();
    let nodes = ledger::extend(&mut frontier, &leaves);
    ledger::store_nodes(conn, &tenant, &nodes).await?;
    // Chunk by chunk, so a large append holds one statement's worth of bound text. On
    // PostgreSQL each chunk's entries and leaves are one statement (data-modifying CTEs),
    // the last one with the head's update: a single audited action makes one round trip
    // for its entry, as it would without the ledger.
    let sqlite = conn.backend_name() == "SQLite";
    let chunks = entries.len().div_ceil(ROWS_PER_STATEMENT);
    for (i, (chunk_entries, chunk_encoded)) in entries
        .chunks(ROWS_PER_STATEMENT)
        .zip(encoded.chunks(ROWS_PER_STATEMENT))
        .enumerate()
    {
        let ids: Vec<String> = chunk_entries.iter().map(|e| e.id.to_string()).collect();
        let mut bodies = Insert::new(
            "audit_entries (tenant, seq, id, created_at, actor, action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical)",
            &[
                "text", "bigint", "text", "bigint", "text", "text", "text", "text", "text",
                "text", "text", "text",
            ],
        )
        .with_capacity(chunk_entries.len());
        let mut leaves = Insert::new(
            "audit_leaves (tenant, seq, leaf_hash)",
            &["text", "bigint", "bytea"],
        )
        .with_capacity(chunk_entries.len());
        for ((e, (canonical, hash)), id) in chunk_entries.iter().zip(chunk_encoded).zip(&ids) {
            bodies.row([
                e.tenant.as_str().into(),
                (e.seq as i64).into(),
                id.into(),
                e.created_at.as_micros().into(),
                e.actor.as_str().into(),
                e.action.as_str().into(),
                e.target_kind.as_deref().into(),
                e.target_id.as_deref().into(),
                e.outcome.as_str().into(),
                e.reason_code.map(|c| c.as_str()).into(),
                e.operator_ticket.as_deref().into(),
                canonical.into(),
            ]);
            leaves.row([
                e.tenant.as_str().into(),
                (e.seq as i64).into(),
                hash.as_slice().into(),
            ]);
        }
        if sqlite {
            bodies.execute(conn).await?;
            leaves.execute(conn).await?;
            continue;
        }
        let (bodies_sql, leaves_sql) = (bodies.pg_sql(1), leaves.pg_sql(13));
        let (bodies_arrays, leaves_arrays) = (bodies.pg_arrays(), leaves.pg_arrays());
        let last = i + 1 == chunks;
        let sql = if last {
            format!(
                "WITH e AS ({bodies_sql}), l AS ({leaves_sql}) \
                 UPDATE audit_heads SET next_seq = $16, frontier = $17 WHERE tenant = $18"
            )
        } else {
            format!("WITH e AS ({bodies_sql}) {leaves_sql}")
        };
        let mut q = leaves.bind_pg(
            bodies.bind_pg(sqlx::query(&sql), &bodies_arrays),
            &leaves_arrays,
        );
        if last {
            q = q
                .bind(frontier.size() as i64)
                .bind(ledger::frontier_bytes(&frontier))
                .bind(tenant.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    if sqlite {
        ledger::store_frontier(conn, &tenant, &frontier).await?;
    }
    count_in_tx(conn, &entries).await?;
    let events: Vec<AuditEvent> = entries.iter().map(AuditEvent::from_entry).collect();
    outbox::enqueue_events(conn, "audit", &events, now).await?;
    Ok(entries)
}

/// An hour in microseconds: the bucket of `audit_counts`.
const HOUR_MICROS: i64 = 3_600_000_000;

/// (action, outcome, actor): the dimensions `audit_counts` keeps per hour.
type CountKey = (String, String, String);

/// Entries of one key: how many, the oldest and the newest time.
#[derive(Debug, Clone, Copy)]
struct Tally {
    n: i64,
    first_at: i64,
    last_at: i64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.n += other.n;
        self.first_at = self.first_at.min(other.first_at);
        self.last_at = self.last_at.max(other.last_at);
    }
}

/// Add `entries` (of one tenant) to the hourly counters, in the append's transaction.
async fn count_in_tx(conn: &mut AnyConnection, entries: &[AuditEntry]) -> StoreResult<()> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let mut tallies: BTreeMap<(i64, CountKey), Tally> = BTreeMap::new();
    for e in entries {
        let at = e.created_at.as_micros();
        let key = (
            at.div_euclid(HOUR_MICROS),
            (
                e.action.clone(),
                e.outcome.as_str().to_owned(),
                e.actor.clone(),
            ),
        );
        let t = Tally {
            n: 1,
            first_at: at,
            last_at: at,
        };
        tallies.entry(key).and_modify(|x| x.merge(t)).or_insert(t);
    }
    let rows: Vec<_> = tallies.into_iter().collect();
    let mut insert = Insert::new(
        "audit_counts (tenant, hour, action, outcome, actor, n, first_at, last_at)",
        &[
            "text", "bigint", "text", "text", "text", "bigint", "bigint", "bigint",
        ],
    )
    .suffix(
        "ON CONFLICT (tenant, hour, action, outcome, actor) DO UPDATE SET n = audit_counts.n + excluded.n, \
         first_at = CASE WHEN excluded.first_at < audit_counts.first_at THEN excluded.first_at ELSE audit_counts.first_at END, \
         last_at = CASE WHEN excluded.last_at > audit_counts.last_at THEN excluded.last_at ELSE audit_counts.last_at END",
    );
    for ((hour, (action, outcome, actor)), t) in &rows {
        insert.row([
            first.tenant.as_str().into(),
            (*hour).into(),
            action.into(),
            outcome.into(),
            actor.into(),
            t.n.into(),
            t.first_at.into(),
            t.last_at.into(),
        ]);
    }
    insert.execute(conn).await?;
    Ok(())
}

/// Fold per-key tallies into the stats document.
fn stats_from_tallies(tallies: BTreeMap<CountKey, Tally>) -> AuditStats {
    let mut total = 0;
    let mut by_action = BTreeMap::new();
    let mut by_outcome = BTreeMap::new();
    let mut by_actor: BTreeMap<String, i64> = BTreeMap::new();
    let mut first_at: Option<i64> = None;
    let mut last_at: Option<i64> = None;
    for ((action, outcome, actor), t) in tallies {
        total += t.n;
        *by_action.entry(action).or_insert(0) += t.n;
        *by_outcome.entry(outcome).or_insert(0) += t.n;
        *by_actor.entry(actor).or_insert(0) += t.n;
        first_at = Some(first_at.map_or(t.first_at, |f| f.min(t.first_at)));
        last_at = Some(last_at.map_or(t.last_at, |l| l.max(t.last_at)));
    }
    let mut top_actors: Vec<ActorCount> = by_actor
        .into_iter()
        .map(|(actor, count)| ActorCount { actor, count })
        .collect();
    // Most entries first; ties by name, byte-wise (the order the scan uses).
    top_actors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.actor.cmp(&b.actor)));
    top_actors.truncate(10);
    AuditStats {
        total,
        by_action,
        by_outcome,
        top_actors,
        first_at: first_at.map(Timestamp::from_micros),
        last_at: last_at.map(Timestamp::from_micros),
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -(-a).div_euclid(b)
}

fn merge_tally_rows(rows: &[AnyRow], into: &mut BTreeMap<CountKey, Tally>) -> StoreResult<()> {
    for r in rows {
        let key = (
            row::text(r, "action")?,
            row::text(r, "outcome")?,
            row::text(r, "actor")?,
        );
        let t = Tally {
            n: row::int(r, "n")?,
            first_at: row::int(r, "first_at")?,
            last_at: row::int(r, "last_at")?,
        };
        into.entry(key).and_modify(|x| x.merge(t)).or_insert(t);
    }
    Ok(())
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

    /// Only entries whose search document holds every word of `q`.
    fn search(mut self, q: Option<&str>, backend: crate::Backend) -> Self {
        let Some(q) = q else { return self };
        let words = search_words(q);
        if words.is_empty() {
            // Nothing to look for finds nothing (the API refuses such a `q` first).
            self.clause.push_str(" AND 1 = 0");
            return self;
        }
        let n = self.next();
        match backend {
            crate::Backend::Sqlite => {
                // Each word a quoted FTS5 string: no operator or column filter gets in.
                let expr: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                self.clause.push_str(&format!(
                    " AND e.seq IN (SELECT seq FROM audit_search WHERE audit_search MATCH ${n} AND tenant = $1)"
                ));
                self.binds.push(Bind::Text(expr.join(" ")));
            }
            crate::Backend::Postgres => {
                self.clause.push_str(&format!(
                    " AND e.seq IN (SELECT seq FROM audit_search WHERE tenant = $1 AND doc @@ plainto_tsquery('simple', ${n}))"
                ));
                self.binds.push(Bind::Text(words.join(" ")));
            }
        }
        self
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
            // A literal from a closed set, not a bind: the partial index `audit_rejected`
            // is usable only when the planner sees the value.
            self.clause
                .push_str(&format!(" AND e.outcome = '{}'", o.as_str()));
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

/// One entry as alert rules see it: who did which action when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSeen {
    /// The entry's position in the log.
    pub seq: u64,
    /// When it was written.
    pub created_at: Timestamp,
    /// Who acted.
    pub actor: String,
    /// What they did.
    pub action: String,
}

impl Store {
    /// The entries of `tenant` with `seq` in `[from, to)` whose action is one of `actions`,
    /// oldest first, at most `limit`; and the seq to continue from (`to` when the range was
    /// read to its end). Reads four narrow columns through the `(tenant, action, seq)`
    /// index: alert rules run every second, and reading whole entries (bodies, leaves, a
    /// JSON parse each) competed with the very bulk replays they watch.
    pub async fn actions_seen(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
        actions: &[&str],
        limit: u32,
    ) -> StoreResult<(Vec<ActionSeen>, u64)> {
        if actions.is_empty() || from >= to {
            return Ok((Vec::new(), to.max(from)));
        }
        let sql = format!(
            "SELECT seq, created_at, actor, action FROM audit_entries \
             WHERE tenant = $1 AND seq >= $2 AND seq < $3 AND action IN ({}) \
             ORDER BY seq LIMIT {limit}",
            list_placeholders(actions.len(), 4)
        );
        let mut q = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(from as i64)
            .bind(to.min(i64::MAX as u64) as i64);
        for a in actions {
            q = q.bind(*a);
        }
        let rows = q.fetch_all(self.read_pool()).await?;
        let seen = rows
            .iter()
            .map(|r| {
                Ok(ActionSeen {
                    seq: row::int(r, "seq")? as u64,
                    created_at: Timestamp::from_micros(row::int(r, "created_at")?),
                    actor: row::text(r, "actor")?,
                    action: row::text(r, "action")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let next = match seen.last() {
            Some(last) if seen.len() == limit as usize => last.seq + 1,
            _ => to,
        };
        Ok((seen, next))
    }

    /// Append one entry in its own transaction (rejections, token issuance, `_system`).
    pub async fn append_audit(&self, draft: AuditDraft) -> StoreResult<AuditEntry> {
        let mut tx = self.begin_write().await?;
        let log = lock_log(&mut tx, &draft.tenant).await?;
        let mut entries = append_in_tx(&mut tx, vec![draft], log).await?;
        tx.commit().await?;
        Ok(entries.remove(0))
    }

    /// Append many entries of one tenant in one transaction (imports and benchmark seeding;
    /// operator actions append inside their own transactions instead).
    pub async fn append_audit_batch(
        &self,
        drafts: Vec<AuditDraft>,
    ) -> StoreResult<Vec<AuditEntry>> {
        let Some(tenant) = drafts.first().map(|d| d.tenant.clone()) else {
            return Ok(Vec::new());
        };
        let mut tx = self.begin_write().await?;
        let log = lock_log(&mut tx, &tenant).await?;
        let entries = append_in_tx(&mut tx, drafts, log).await?;
        tx.commit().await?;
        Ok(entries)
    }

    /// Index up to `batch` entries of each log for search (the leader calls this every
    /// second): returns how many were indexed.
    pub async fn index_audit_search(&self, batch: u32) -> StoreResult<u64> {
        let rows = sqlx::query(
            "SELECT h.tenant, h.next_seq, COALESCE(p.next_seq, 0) AS done FROM audit_heads h LEFT JOIN audit_search_progress p ON p.tenant = h.tenant WHERE h.next_seq > COALESCE(p.next_seq, 0)",
        )
        .fetch_all(self.read_pool())
        .await?;
        let mut indexed = 0;
        for r in &rows {
            let tenant = row::text(r, "tenant")?;
            let from = row::int(r, "done")?;
            let page = sqlx::query(
                "SELECT seq, canonical FROM audit_entries WHERE tenant = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            )
            .bind(tenant.as_str())
            .bind(from)
            .bind(i64::from(batch))
            .fetch_all(self.read_pool())
            .await?;
            let Some(last) = page.last() else { continue };
            let next = row::int(last, "seq")? + 1;
            let mut docs = Vec::with_capacity(page.len());
            for p in &page {
                let entry = row::parse(
                    "audit_entries",
                    &row::text(p, "canonical")?,
                    AuditEntry::from_canonical,
                )?;
                // Indexed as our own words, so both backends split text exactly as a
                // query is split (PostgreSQL's parser reads `INC-4711` as `inc`, `-4711`).
                let words = search_words(&search_document(&entry));
                docs.push((row::int(p, "seq")?, words.join(" ")));
            }
            let doc_expr = |n: usize| match self.backend() {
                crate::Backend::Sqlite => format!("${n}"),
                crate::Backend::Postgres => format!("to_tsvector('simple', ${n})"),
            };
            let mut tx = self.begin_write().await?;
            // Whoever indexed this range first wins; a second indexer (a leader change
            // mid-pass) finds the progress moved and stops.
            let moved = sqlx::query("SELECT next_seq FROM audit_search_progress WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| row::int(&r, "next_seq"))
                .transpose()?
                .unwrap_or(0);
            if moved != from {
                continue;
            }
            for chunk in docs.chunks(ROWS_PER_STATEMENT) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| format!("(${}, ${}, {})", 3 * i + 1, 3 * i + 2, doc_expr(3 * i + 3)))
                    .collect();
                let sql = crate::sql::for_backend(
                    &tx,
                    format!(
                        "INSERT INTO audit_search (tenant, seq, doc) VALUES {}",
                        values.join(", ")
                    ),
                );
                let mut q = sqlx::query(&sql);
                for (seq, doc) in chunk {
                    q = q.bind(tenant.as_str()).bind(*seq).bind(doc.as_str());
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO audit_search_progress (tenant, next_seq) VALUES ($1, $2) ON CONFLICT (tenant) DO UPDATE SET next_seq = excluded.next_seq",
            )
            .bind(tenant.as_str())
            .bind(next)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            indexed += docs.len() as u64;
        }
        Ok(indexed)
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
        let mut w = Where::new(tenant)
            .filter(filter)
            .search(filter.q.as_deref(), self.backend());
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

    /// Counts over a time range: the whole hours inside `[since, until)` come from the
    /// hourly counters, the partial hours at either edge (under an hour each) from the
    /// entries themselves. Filters the counters do not keep (target, ticket) scan entries.
    pub async fn audit_stats(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> StoreResult<AuditStats> {
        if filter.target.is_some() || filter.ticket.is_some() {
            return self.audit_stats_scan(tenant, filter).await;
        }
        // Hours [lo, hi) lie wholly inside the range.
        let lo = filter.since.map(|s| ceil_div(s.as_micros(), HOUR_MICROS));
        let hi = filter.until.map(|u| u.as_micros().div_euclid(HOUR_MICROS));
        let mut tallies = BTreeMap::new();
        if let (Some(l), Some(h)) = (lo, hi)
            && l >= h
        {
            self.tally_entries(tenant, filter, &mut tallies).await?;
            return Ok(stats_from_tallies(tallies));
        }
        self.tally_counts(tenant, filter, lo, hi, &mut tallies)
            .await?;
        if let (Some(since), Some(l)) = (filter.since, lo)
            && since.as_micros() < l * HOUR_MICROS
        {
            let edge = AuditFilter {
                until: Some(Timestamp::from_micros(l * HOUR_MICROS)),
                ..filter.clone()
            };
            self.tally_entries(tenant, &edge, &mut tallies).await?;
        }
        if let (Some(until), Some(h)) = (filter.until, hi)
            && h * HOUR_MICROS < until.as_micros()
        {
            let edge = AuditFilter {
                since: Some(Timestamp::from_micros(h * HOUR_MICROS)),
                ..filter.clone()
            };
            self.tally_entries(tenant, &edge, &mut tallies).await?;
        }
        Ok(stats_from_tallies(tallies))
    }

    /// The same counts by scanning the entries: the fallback for filters the counters do
    /// not keep, and the reference the counters are tested against.
    pub async fn audit_stats_scan(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
    ) -> StoreResult<AuditStats> {
        let mut tallies = BTreeMap::new();
        self.tally_entries(tenant, filter, &mut tallies).await?;
        Ok(stats_from_tallies(tallies))
    }

    async fn tally_entries(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        into: &mut BTreeMap<CountKey, Tally>,
    ) -> StoreResult<()> {
        let w = Where::new(tenant)
            .filter(filter)
            .search(filter.q.as_deref(), self.backend());
        self.tally(
            &w,
            "COUNT(*)",
            "e.created_at",
            "e.created_at",
            "audit_entries",
            into,
        )
        .await
    }

    /// Tallies per (action, outcome, actor) from `table e` under `w`, merged into `into`.
    async fn tally(
        &self,
        w: &Where,
        n: &str,
        first: &str,
        last: &str,
        table: &str,
        into: &mut BTreeMap<CountKey, Tally>,
    ) -> StoreResult<()> {
        let sql = format!(
            "SELECT e.action AS action, e.outcome AS outcome, e.actor AS actor, {n} AS n, MIN({first}) AS first_at, MAX({last}) AS last_at FROM {table} e WHERE {} GROUP BY e.action, e.outcome, e.actor",
            w.clause
        );
        let rows = w
            .bind(sqlx::query(&sql))
            .fetch_all(self.read_pool())
            .await?;
        merge_tally_rows(&rows, into)
    }

    async fn tally_counts(
        &self,
        tenant: &TenantId,
        filter: &AuditFilter,
        lo: Option<i64>,
        hi: Option<i64>,
        into: &mut BTreeMap<CountKey, Tally>,
    ) -> StoreResult<()> {
        let mut w = Where::new(tenant).filter(&AuditFilter {
            since: None,
            until: None,
            ..filter.clone()
        });
        if let Some(l) = lo {
            w.cmp_int("e.hour", ">=", l);
        }
        if let Some(h) = hi {
            w.cmp_int("e.hour", "<", h);
        }
        self.tally(
            &w,
            "CAST(SUM(e.n) AS BIGINT)",
            "e.first_at",
            "e.last_at",
            "audit_counts",
            into,
        )
        .await
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
