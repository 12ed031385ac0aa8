//! Each tenant's Merkle log in the store (DESIGN.md §4, decision 0008).
//!
//! - Every append extends the tenant's compact range (`audit_heads.frontier`) in the same
//!   transaction as the entries, so the root is always that of the committed log.
//! - Completed interior nodes are stored at every [`NODE_STRIDE`]th level; a proof node in
//!   between is recomputed from at most 2^(stride−1) stored nodes (or leaves) below it.
//!   Proofs therefore cost one statement of O(log n) small range reads, and the ledger
//!   writes about one node row per fifteen entries instead of one per entry.
//! - Checkpoints are cut from the frontier, signed by the caller (the server holds the
//!   key), and kept for ever; like entries, leaves and nodes, the database refuses to
//!   change them.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use warden_core::names::TenantId;
use warden_core::reason::ReasonCode;
use warden_core::time::Timestamp;
use warden_ledger::hash::{Hash, node_hash};
use warden_ledger::proof;
use warden_ledger::tree::{CompactRange, NodeId, ids_for_size};

use crate::sql::Insert;
use crate::{Backend, Store, StoreError, StoreResult, row};

/// Interior nodes are stored at the levels that are multiples of this.
pub const NODE_STRIDE: u8 = 4;

fn is_stored(level: u8) -> bool {
    level > 0 && level.is_multiple_of(NODE_STRIDE)
}

/// A log's size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerHead {
    /// Entries in the log (the next `seq`).
    pub size: u64,
    /// RFC 9162 root of `[0, size)`.
    pub root: Hash,
}

/// Where retention stands for one log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionStatus {
    /// Bodies of entries with `seq` below this are archived (their leaves stay).
    pub archived_upto: u64,
    /// When retention last moved anything.
    pub last_run_at: Timestamp,
    /// How many bodies that run moved.
    pub last_moved: u64,
    /// The archive file it wrote (its name, not its directory).
    pub last_file: Option<String>,
}

/// What a self-check found wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelfCheckProblem {
    /// An entry's body no longer hashes to its stored leaf.
    #[error("entry seq {seq}: its body does not hash to its stored leaf")]
    Leaf {
        /// The entry.
        seq: u64,
    },
    /// An entry under the checkpoint is gone.
    #[error("entry seq {seq} is missing")]
    Missing {
        /// The first missing entry.
        seq: u64,
    },
    /// The stored tree and leaves no longer give the checkpoint's root.
    #[error(
        "entries {from}..{size}: the stored tree no longer gives the root of the checkpoint of size {size}"
    )]
    Root {
        /// First entry checked.
        from: u64,
        /// The checkpoint's size.
        size: u64,
    },
}

/// An entry as an export reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedEntry {
    /// Its leaf index.
    pub seq: u64,
    /// The RFC 8785 text exactly as hashed.
    pub canonical: String,
    /// `SHA-256(0x00 ‖ canonical)`.
    pub leaf_hash: Hash,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The tree size it commits to.
    pub size: u64,
    /// The root at that size.
    pub root: Hash,
    /// The C2SP signed note (checkpoint body and signature lines).
    pub note: String,
    /// When it was cut.
    pub created_at: Timestamp,
}

/// The entries of an export page from its three aggregated lists (see
/// [`Store::export_entries`]).
fn split_page(seqs: &str, docs: &str, leaves: &str) -> StoreResult<Vec<ExportedEntry>> {
    let corrupt = |m: String| StoreError::corrupt("audit_entries", m);
    let seqs: Vec<u64> = seqs
        .split(',')
        .map(|s| s.parse().map_err(|_| corrupt(format!("seq {s:?}"))))
        .collect::<StoreResult<_>>()?;
    let docs: Vec<&str> = docs.split('\n').collect();
    if docs.len() != seqs.len() || leaves.len() != seqs.len() * 64 {
        return Err(corrupt(format!(
            "an export page of {} seqs has {} texts and {} hex digits of leaf hashes",
            seqs.len(),
            docs.len(),
            leaves.len()
        )));
    }
    let mut out = Vec::with_capacity(seqs.len());
    for ((seq, doc), hex) in seqs.into_iter().zip(docs).zip(leaves.as_bytes().chunks(64)) {
        let mut leaf_hash = [0u8; 32];
        for (b, pair) in leaf_hash.iter_mut().zip(hex.chunks(2)) {
            let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            *b = match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => hi << 4 | lo,
                _ => return Err(corrupt(format!("leaf hash of seq {seq} is not hex"))),
            };
        }
        out.push(ExportedEntry {
            seq,
            canonical: doc.to_owned(),
            leaf_hash,
        });
    }
    if !out.is_sorted_by_key(|e| e.seq) {
        out.sort_unstable_by_key(|e| e.seq);
    }
    Ok(out)
}

fn hash_from(bytes: &[u8], table: &'static str) -> StoreResult<Hash> {
    bytes
        .try_into()
        .map_err(|_| StoreError::corrupt(table, format!("hash of {} bytes", bytes.len())))
}

pub(crate) fn frontier_bytes(range: &CompactRange) -> Vec<u8> {
    range
        .hashes()
        .iter()
        .flat_map(|h| h.iter().copied())
        .collect()
}

fn frontier_from(size: u64, bytes: &[u8]) -> StoreResult<CompactRange> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StoreError::corrupt("audit_heads", "frontier length"));
    }
    let hashes = bytes
        .chunks(32)
        .map(|c| hash_from(c, "audit_heads"))
        .collect::<StoreResult<Vec<_>>>()?;
    CompactRange::from_parts(size, hashes).map_err(|e| StoreError::corrupt("audit_heads", e))
}

/// Lock the tenant's head (creating it for a tenant's first entry) and return its size
/// and compact range, rebuilding the range from the stored leaves for a log written
/// before the ledger existed (once; the caller stores it).
pub(crate) async fn load_frontier(
    conn: &mut AnyConnection,
    tenant: &TenantId,
) -> StoreResult<CompactRange> {
    let lock = if conn.backend_name() == "SQLite" {
        ""
    } else {
        " FOR UPDATE"
    };
    let select = format!("SELECT next_seq, frontier FROM audit_heads WHERE tenant = $1{lock}");
    let found = sqlx::query(&select)
        .bind(tenant.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let r = match found {
        Some(r) => r,
        // A tenant's first entry: create its head (a concurrent first append may win the
        // insert; either way the row exists and the second read locks it).
        None => {
            sqlx::query("INSERT INTO audit_heads (tenant, next_seq) VALUES ($1, 0) ON CONFLICT (tenant) DO NOTHING")
                .bind(tenant.as_str())
                .execute(&mut *conn)
                .await?;
            sqlx::query(&select)
                .bind(tenant.as_str())
                .fetch_one(&mut *conn)
                .await?
        }
    };
    let size = row::int(&r, "next_seq")? as u64;
    match r.try_get::<Option<Vec<u8>>, _>("frontier")? {
        Some(bytes) => frontier_from(size, &bytes),
        None => rebuild(conn, tenant, size).await,
    }
}

/// Replay the stored leaves of `[0, size)` into a compact range, storing the nodes.
async fn rebuild(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    size: u64,
) -> StoreResult<CompactRange> {
    let mut range = CompactRange::new();
    let mut after = -1_i64;
    while range.size() < size {
        let rows = sqlx::query(
            "SELECT seq, leaf_hash FROM audit_leaves WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT 10000",
        )
        .bind(tenant.as_str())
        .bind(after)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Err(StoreError::corrupt(
                "audit_leaves",
                format!("{} leaves for a log of {size}", range.size()),
            ));
        }
        let mut leaves = Vec::with_capacity(rows.len());
        for r in &rows {
            let seq = row::int(r, "seq")?;
            if seq as u64 != range.size() + leaves.len() as u64 {
                return Err(StoreError::corrupt(
                    "audit_leaves",
                    format!("gap before seq {seq}"),
                ));
            }
            leaves.push(hash_from(
                &r.try_get::<Vec<u8>, _>("leaf_hash")?,
                "audit_leaves",
            )?);
            after = seq;
        }
        // Nodes a rebuild finds already stored (the frontier was lost, not the nodes)
        // are kept: they can be neither replaced nor inserted twice.
        for (id, hash) in extend(&mut range, &leaves) {
            sqlx::query(
                "INSERT INTO audit_nodes (tenant, level, idx, hash) SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM audit_nodes WHERE tenant = $1 AND level = $2 AND idx = $3)",
            )
            .bind(tenant.as_str())
            .bind(i64::from(id.level))
            .bind(id.index as i64)
            .bind(hash.to_vec())
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(range)
}

/// Store completed interior nodes of a tenant's tree.
pub(crate) async fn store_nodes(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    nodes: &[(NodeId, Hash)],
) -> StoreResult<()> {
    let mut insert = Insert::new(
        "audit_nodes (tenant, level, idx, hash)",
        &["text", "smallint", "bigint", "bytea"],
    )
    .with_capacity(nodes.len());
    for (id, hash) in nodes {
        insert.row([
            tenant.as_str().into(),
            i64::from(id.level).into(),
            (id.index as i64).into(),
            hash.as_slice().into(),
        ]);
    }
    insert.execute(conn).await?;
    Ok(())
}

/// Append `leaves` to `range`: the completed nodes at the stored levels, for
/// [`store_nodes`].
pub(crate) fn extend(range: &mut CompactRange, leaves: &[Hash]) -> Vec<(NodeId, Hash)> {
    let mut nodes = Vec::new();
    for leaf in leaves {
        nodes.extend(
            range
                .append(*leaf)
                .into_iter()
                .filter(|(id, _)| is_stored(id.level)),
        );
    }
    nodes
}

/// Store the new head: size and compact range together.
pub(crate) async fn store_frontier(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    range: &CompactRange,
) -> StoreResult<()> {
    sqlx::query("UPDATE audit_heads SET next_seq = $2, frontier = $3 WHERE tenant = $1")
        .bind(tenant.as_str())
        .bind(range.size() as i64)
        .bind(frontier_bytes(range))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Where a perfect node's hash comes from: a run of stored nodes (or leaves) to fold.
struct Source {
    /// 0 = leaves, otherwise a stored level.
    level: u8,
    first: u64,
    count: u64,
}

fn source_of(id: NodeId) -> Source {
    let base = id.level - id.level % NODE_STRIDE;
    let shift = id.level - base;
    Source {
        level: base,
        first: id.index << shift,
        count: 1 << shift,
    }
}

/// Fold a power-of-two run of sibling hashes into their subtree's root.
fn fold(mut hashes: Vec<Hash>) -> Hash {
    while hashes.len() > 1 {
        hashes = hashes.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    hashes[0]
}

/// The hashes of perfect nodes, in the order asked, read in one statement.
async fn read_nodes(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    ids: &[NodeId],
) -> StoreResult<Vec<Hash>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sources: Vec<Source> = ids.iter().copied().map(source_of).collect();
    let mut parts = Vec::with_capacity(sources.len());
    let mut n = 2;
    for (k, s) in sources.iter().enumerate() {
        if s.level == 0 {
            parts.push(format!(
                "SELECT {k} AS k, seq AS i, leaf_hash AS h FROM audit_leaves WHERE tenant = $1 AND seq >= ${} AND seq < ${}",
                n,
                n + 1
            ));
        } else {
            parts.push(format!(
                "SELECT {k} AS k, idx AS i, hash AS h FROM audit_nodes WHERE tenant = $1 AND level = {} AND idx >= ${} AND idx < ${}",
                s.level,
                n,
                n + 1
            ));
        }
        n += 2;
    }
    let sql = crate::sql::for_backend(conn, parts.join(" UNION ALL "));
    let mut q = sqlx::query(&sql).bind(tenant.as_str());
    for s in &sources {
        q = q.bind(s.first as i64).bind((s.first + s.count) as i64);
    }
    let rows: Vec<AnyRow> = q.fetch_all(&mut *conn).await?;
    let mut runs: Vec<Vec<(i64, Hash)>> = sources
        .iter()
        .map(|s| Vec::with_capacity(s.count as usize))
        .collect();
    for r in &rows {
        let k = row::int(r, "k")? as usize;
        let h = hash_from(&r.try_get::<Vec<u8>, _>("h")?, "audit_nodes")?;
        runs[k].push((row::int(r, "i")?, h));
    }
    runs.into_iter()
        .zip(&sources)
        .map(|(mut run, s)| {
            if run.len() as u64 != s.count {
                return Err(StoreError::corrupt(
                    "audit_nodes",
                    format!(
                        "{} of {} hashes at level {} from {}",
                        run.len(),
                        s.count,
                        s.level,
                        s.first
                    ),
                ));
            }
            run.sort_unstable_by_key(|(i, _)| *i);
            Ok(fold(run.into_iter().map(|(_, h)| h).collect()))
        })
        .collect()
}

fn out_of_range(e: proof::ProofError) -> StoreError {
    StoreError::rejected(ReasonCode::ValidationFailed, e.to_string())
}

fn decode_checkpoint(r: &AnyRow) -> StoreResult<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        size: row::int(r, "size")? as u64,
        root: hash_from(&r.try_get::<Vec<u8>, _>("root")?, "audit_checkpoints")?,
        note: row::text(r, "note")?,
        created_at: Timestamp::from_micros(row::int(r, "created_at")?),
    })
}

impl Store {
    /// The tenant's log size and current root (an empty log for a tenant with none).
    pub async fn ledger_head(&self, tenant: &TenantId) -> StoreResult<LedgerHead> {
        let r = sqlx::query("SELECT next_seq, frontier FROM audit_heads WHERE tenant = $1")
            .bind(tenant.as_str())
            .fetch_optional(self.read_pool())
            .await?;
        let Some(r) = r else {
            return Ok(LedgerHead {
                size: 0,
                root: CompactRange::new().root(),
            });
        };
        let size = row::int(&r, "next_seq")? as u64;
        let range = match r.try_get::<Option<Vec<u8>>, _>("frontier")? {
            Some(bytes) => frontier_from(size, &bytes)?,
            // A log from before the ledger: build its range now (the next append would).
            None => {
                let mut tx = self.begin_write().await?;
                let range = load_frontier(&mut tx, tenant).await?;
                store_frontier(&mut tx, tenant, &range).await?;
                tx.commit().await?;
                range
            }
        };
        Ok(LedgerHead {
            size: range.size(),
            root: range.root(),
        })
    }

    /// The RFC 9162 inclusion proof of leaf `index` in the tree of `size` (which the
    /// caller has checked is no larger than the log).
    pub async fn inclusion_proof(
        &self,
        tenant: &TenantId,
        index: u64,
        size: u64,
    ) -> StoreResult<Vec<Hash>> {
        self.prove(tenant, proof::inclusion(index, size)).await
    }

    /// The RFC 9162 consistency proof from the tree of `from` to the tree of `to`.
    pub async fn consistency_proof(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
    ) -> StoreResult<Vec<Hash>> {
        self.prove(tenant, proof::consistency(from, to)).await
    }

    /// Read a proof plan's nodes in one statement and combine them into the proof.
    async fn prove(
        &self,
        tenant: &TenantId,
        plan: Result<proof::ProofPlan, proof::ProofError>,
    ) -> StoreResult<Vec<Hash>> {
        let plan = plan.map_err(out_of_range)?;
        let mut conn = self.read_pool().acquire().await?;
        let hashes = read_nodes(&mut conn, tenant, plan.ids()).await?;
        plan.rehash(&hashes)
            .map_err(|e| StoreError::corrupt("audit_nodes", e))
    }

    /// The compact range of the first `size` leaves (an export that starts after them
    /// carries it, so the verifier can go on from there).
    pub async fn compact_range_at(
        &self,
        tenant: &TenantId,
        size: u64,
    ) -> StoreResult<CompactRange> {
        let ids = ids_for_size(size);
        let mut conn = self.read_pool().acquire().await?;
        let hashes = read_nodes(&mut conn, tenant, &ids).await?;
        CompactRange::from_parts(size, hashes).map_err(|e| StoreError::corrupt("audit_nodes", e))
    }

    /// The newest checkpoint of the tenant's log, if one was cut.
    pub async fn latest_checkpoint(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Option<StoredCheckpoint>> {
        let r = sqlx::query(
            "SELECT size, root, note, created_at FROM audit_checkpoints WHERE tenant = $1 ORDER BY size DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.read_pool())
        .await?;
        r.as_ref().map(decode_checkpoint).transpose()
    }

    /// The checkpoints of the tenant's log with `size` in `[from, to]`, oldest first, at
    /// most `limit`.
    pub async fn checkpoints(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let rows = sqlx::query(
            "SELECT size, root, note, created_at FROM audit_checkpoints WHERE tenant = $1 AND size >= $2 AND size <= $3 ORDER BY size LIMIT $4",
        )
        .bind(tenant.as_str())
        .bind(from as i64)
        .bind(to.min(i64::MAX as u64) as i64)
        .bind(i64::from(limit))
        .fetch_all(self.read_pool())
        .await?;
        rows.iter().map(decode_checkpoint).collect()
    }

    /// Cut a checkpoint of the log as it is now, unless the newest one already covers it:
    /// `sign(size, root)` makes the signed note. Several nodes cutting at once agree (the
    /// note of one size is the same whoever signs it with the shared key). Returns the
    /// newest checkpoint and whether this call stored it.
    pub async fn cut_checkpoint(
        &self,
        tenant: &TenantId,
        sign: impl FnOnce(u64, &Hash) -> String,
    ) -> StoreResult<(StoredCheckpoint, bool)> {
        let head = self.ledger_head(tenant).await?;
        if let Some(latest) = self.latest_checkpoint(tenant).await?
            && latest.size >= head.size
        {
            return Ok((latest, false));
        }
        let note = sign(head.size, &head.root);
        let now = Timestamp::now();
        let mut tx = self.begin_write().await?;
        // Look first: on SQLite a second insert of one size is refused by a trigger (no
        // REPLACE may rewrite a checkpoint), and the writer lock makes look-then-insert
        // safe; on PostgreSQL two nodes may still race, and the conflict clause settles it.
        let exists = sqlx::query("SELECT 1 FROM audit_checkpoints WHERE tenant = $1 AND size = $2")
            .bind(tenant.as_str())
            .bind(head.size as i64)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let stored = !exists
            && sqlx::query(
            "INSERT INTO audit_checkpoints (tenant, size, root, note, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, size) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(head.size as i64)
        .bind(head.root.to_vec())
        .bind(note)
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if stored {
            // Published through the outbox with the checkpoint itself: no bus outage
            // loses it.
            let event = warden_core::events::CheckpointEvent {
                timestamp: now,
                size: head.size,
                root: warden_ledger::hash::to_base64(&head.root),
            };
            let payload = serde_json::to_string(&event).expect("events serialize");
            crate::outbox::enqueue(&mut tx, "checkpoint", &payload, now).await?;
        }
        let r = sqlx::query(
            "SELECT size, root, note, created_at FROM audit_checkpoints WHERE tenant = $1 AND size = $2",
        )
        .bind(tenant.as_str())
        .bind(head.size as i64)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((decode_checkpoint(&r)?, stored))
    }

    /// Entries with `seq` in `[from, to)`, oldest first, at most `limit`, as exported: the
    /// canonical text exactly as hashed and the leaf hash. (The range is stated on both
    /// tables: with it on the entries only, PostgreSQL chose a merge join that read every
    /// leaf from the start of the log on each page — 162 ms a page half-way through a
    /// million entries, 2.2 ms with it.)
    ///
    /// The page comes back as one row: the seqs, the canonical texts and the hex leaf
    /// hashes each aggregated into one value. Read row by row, the drivers' per-value work
    /// (a copy of every column, hand-offs between threads) was most of an export's time.
    /// Canonical JSON never holds a raw newline (RFC 8785 escapes control characters), so
    /// a newline separates the texts; the three lists must agree in length. The aggregates
    /// carry no `ORDER BY` (on SQLite each would build a sorter, a third of the page's
    /// cost): one pass feeds all three, so they agree with each other, and the entries are
    /// sorted by `seq` afterwards should a backend not keep the subquery's order.
    pub async fn export_entries(
        &self,
        tenant: &TenantId,
        from: u64,
        to: u64,
        limit: u32,
    ) -> StoreResult<Vec<ExportedEntry>> {
        let page = "SELECT e.seq, e.canonical, l.leaf_hash FROM audit_entries e \
             JOIN audit_leaves l ON l.tenant = e.tenant AND l.seq = e.seq \
             WHERE e.tenant = $1 AND e.seq >= $2 AND e.seq < $3 AND l.seq >= $2 AND l.seq < $3 \
             ORDER BY e.seq LIMIT $4";
        let sql = match self.backend() {
            Backend::Postgres => format!(
                "SELECT string_agg(CAST(p.seq AS TEXT), ',') AS seqs, \
                 string_agg(p.canonical, chr(10)) AS docs, \
                 string_agg(encode(p.leaf_hash, 'hex'), '') AS leaves FROM ({page}) AS p"
            ),
            _ => format!(
                "SELECT group_concat(p.seq, ',') AS seqs, \
                 group_concat(p.canonical, char(10)) AS docs, \
                 group_concat(hex(p.leaf_hash), '') AS leaves FROM ({page}) AS p"
            ),
        };
        let r = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(from as i64)
            .bind(to.min(i64::MAX as u64) as i64)
            .bind(i64::from(limit))
            .fetch_one(self.read_pool())
            .await?;
        let (Some(seqs), Some(docs), Some(leaves)) = (
            row::opt_text(&r, "seqs")?,
            row::opt_text(&r, "docs")?,
            row::opt_text(&r, "leaves")?,
        ) else {
            return Ok(Vec::new());
        };
        split_page(&seqs, &docs, &leaves)
    }

    /// The first `seq` written at or after `at` (the log's size when there is none): the
    /// boundary of a time-bounded export (`created_at` never goes back as `seq` grows).
    pub async fn first_seq_at(&self, tenant: &TenantId, at: Timestamp) -> StoreResult<u64> {
        let r = sqlx::query(
            "SELECT MIN(seq) AS seq FROM audit_entries WHERE tenant = $1 AND created_at >= $2",
        )
        .bind(tenant.as_str())
        .bind(at.as_micros())
        .fetch_one(self.read_pool())
        .await?;
        match row::opt_int(&r, "seq")? {
            Some(seq) => Ok(seq as u64),
            None => Ok(self.ledger_head(tenant).await?.size),
        }
    }

    /// Where retention stands for the tenant's log (`None`: nothing archived yet).
    pub async fn retention_status(
        &self,
        tenant: &TenantId,
    ) -> StoreResult<Option<RetentionStatus>> {
        let r = sqlx::query(
            "SELECT upto, last_run_at, last_moved, last_file FROM audit_archived WHERE tenant = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(self.read_pool())
        .await?;
        r.map(|r| {
            Ok(RetentionStatus {
                archived_upto: row::int(&r, "upto")? as u64,
                last_run_at: Timestamp::from_micros(row::int(&r, "last_run_at")?),
                last_moved: row::int(&r, "last_moved")? as u64,
                last_file: row::opt_text(&r, "last_file")?,
            })
        })
        .transpose()
    }

    /// Move the bodies of entries `[old watermark, upto)` out of the log (the caller has
    /// written and synced their archive `file`), raising the watermark, dropping their
    /// search rows, and appending `entry` (the run's own `audit.retention` entry) — all in
    /// one transaction. Returns how many bodies moved.
    pub async fn archive_bodies(
        &self,
        tenant: &TenantId,
        upto: u64,
        file: &str,
        entry: warden_core::audit::AuditDraft,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let log = crate::audit::lock_log(&mut tx, tenant).await?;
        let now = log.now;
        let old = sqlx::query("SELECT upto FROM audit_archived WHERE tenant = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| row::int(&r, "upto"))
            .transpose()?
            .unwrap_or(0) as u64;
        if upto <= old {
            return Ok(0);
        }
        sqlx::query(
            "INSERT INTO audit_archived (tenant, upto, last_run_at, last_moved, last_file) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant) DO UPDATE SET upto = excluded.upto, last_run_at = excluded.last_run_at, last_moved = excluded.last_moved, last_file = excluded.last_file",
        )
        .bind(tenant.as_str())
        .bind(upto as i64)
        .bind(now.as_micros())
        .bind((upto - old) as i64)
        .bind(file)
        .execute(&mut *tx)
        .await?;
        let moved =
            sqlx::query("DELETE FROM audit_entries WHERE tenant = $1 AND seq >= $2 AND seq < $3")
                .bind(tenant.as_str())
                .bind(old as i64)
                .bind(upto as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("DELETE FROM audit_search WHERE tenant = $1 AND seq >= $2 AND seq < $3")
            .bind(tenant.as_str())
            .bind(old as i64)
            .bind(upto as i64)
            .execute(&mut *tx)
            .await?;
        crate::audit::append_in_tx(&mut tx, vec![entry], log).await?;
        tx.commit().await?;
        Ok(moved)
    }

    /// Every log and its size.
    pub async fn ledger_sizes(&self) -> StoreResult<Vec<(TenantId, u64)>> {
        let rows = sqlx::query("SELECT tenant, next_seq FROM audit_heads ORDER BY tenant")
            .fetch_all(self.read_pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    row::parse(
                        "audit_heads",
                        &row::text(r, "tenant")?,
                        TenantId::parse_including_reserved,
                    )?,
                    row::int(r, "next_seq")? as u64,
                ))
            })
            .collect()
    }

    /// Re-verify the last `window` entries under the tenant's newest checkpoint against
    /// the stored tree: each body must hash to its stored leaf, and the stored nodes
    /// before the window plus those leaves must give the checkpoint's root. Reads
    /// O(window + log n) rows. Returns how many entries were checked and the first
    /// problem found, if any.
    pub async fn self_check(
        &self,
        tenant: &TenantId,
        window: u64,
    ) -> StoreResult<(u64, Option<SelfCheckProblem>)> {
        let Some(c) = self.latest_checkpoint(tenant).await? else {
            return Ok((0, None));
        };
        let archived = self
            .retention_status(tenant)
            .await?
            .map_or(0, |r| r.archived_upto);
        let from = c.size.saturating_sub(window).max(archived.min(c.size));
        let mut range = self.compact_range_at(tenant, from).await?;
        let mut next = from;
        while next < c.size {
            let page = self.export_entries(tenant, next, c.size, 2_000).await?;
            if page.is_empty() {
                return Ok((next - from, Some(SelfCheckProblem::Missing { seq: next })));
            }
            for e in &page {
                if e.seq != next {
                    return Ok((next - from, Some(SelfCheckProblem::Missing { seq: next })));
                }
                if warden_ledger::hash::leaf_hash(e.canonical.as_bytes()) != e.leaf_hash {
                    return Ok((next - from, Some(SelfCheckProblem::Leaf { seq: e.seq })));
                }
                range.append(e.leaf_hash);
                next += 1;
            }
        }
        if range.root() != c.root {
            return Ok((
                c.size - from,
                Some(SelfCheckProblem::Root { from, size: c.size }),
            ));
        }
        Ok((c.size - from, None))
    }

    /// Tenants whose log has grown past its newest checkpoint (or has none yet).
    pub async fn tenants_due_a_checkpoint(&self) -> StoreResult<Vec<TenantId>> {
        let rows = sqlx::query(
            "SELECT h.tenant FROM audit_heads h WHERE h.next_seq > COALESCE((SELECT MAX(c.size) FROM audit_checkpoints c WHERE c.tenant = h.tenant), 0) ORDER BY h.tenant",
        )
        .fetch_all(self.read_pool())
        .await?;
        rows.iter()
            .map(|r| {
                row::parse(
                    "audit_heads",
                    &row::text(r, "tenant")?,
                    TenantId::parse_including_reserved,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_page_splits_into_entries_and_refuses_lists_that_disagree() {
        let (a, b) = ([0xabu8; 32], [0x01u8; 32]);
        let hex: String = a.iter().chain(&b).map(|x| format!("{x:02X}")).collect();
        let page = split_page("7,9", "{\"a\":1}\n{\"b\":\"x\\ny\"}", &hex).unwrap();
        let swapped: String = b.iter().chain(&a).map(|x| format!("{x:02x}")).collect();
        let reordered = split_page("9,7", "{\"b\":\"x\\ny\"}\n{\"a\":1}", &swapped).unwrap();
        assert_eq!(
            reordered, page,
            "entries come back in seq order, each with its own text and hash"
        );
        assert_eq!(page.len(), 2);
        assert_eq!((page[0].seq, page[0].canonical.as_str()), (7, "{\"a\":1}"));
        assert_eq!(page[1].canonical, "{\"b\":\"x\\ny\"}");
        assert_eq!((page[0].leaf_hash, page[1].leaf_hash), (a, b));
        assert_eq!(
            split_page("7", "{}", &hex.to_lowercase()[..64]).unwrap()[0].leaf_hash,
            a
        );
        // A raw newline inside a text, a missing hash, a bad digit: corrupt, not misread.
        assert!(split_page("7,9", "{\"a\":\"x\ny\"}\n{}", &hex).is_err());
        assert!(split_page("7,9", "{}\n{}", &hex[..64]).is_err());
        assert!(split_page("7", "{}", &"zz".repeat(32)).is_err());
        assert!(split_page("x", "{}", &hex[..64]).is_err());
    }

    #[test]
    fn a_node_between_stored_levels_folds_from_the_level_below() {
        let s = source_of(NodeId::new(6, 3));
        assert_eq!((s.level, s.first, s.count), (4, 12, 4));
        let s = source_of(NodeId::new(3, 5));
        assert_eq!((s.level, s.first, s.count), (0, 40, 8));
        let s = source_of(NodeId::new(8, 2));
        assert_eq!((s.level, s.first, s.count), (8, 2, 1));
        let s = source_of(NodeId::new(0, 9));
        assert_eq!((s.level, s.first, s.count), (0, 9, 1));
    }

    #[test]
    fn folding_siblings_gives_their_subtree_root() {
        let leaves: Vec<Hash> = (0..8u8)
            .map(|i| warden_ledger::hash::leaf_hash(&[i]))
            .collect();
        assert_eq!(
            fold(leaves.clone()),
            warden_ledger::tree::root_from_leaves(&leaves)
        );
    }
}
