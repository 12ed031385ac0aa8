//! Audited appends per second with and without the ledger (issue [3/3]: "the ledger may
//! cost at most 15 % over the same actions without it"). Results and method:
//! `docs/BENCHMARKS.md`.
//!
//! The ledger cannot be switched off in the store, so the bench carries a replica of the
//! store's append transaction (`audit.rs` `append_in_tx` with `lock_log`, `ledger.rs`
//! `load_frontier`/`extend`/`store_frontier`, `outbox.rs`): the same statements, in the
//! same order, through the same `sqlx::Any` driver with the same connection settings, on
//! the same migrated schema. Four variants, each in its own fresh database:
//!
//! - `store`: the real [`Store::append_audit_batch`] / [`Store::append_audit`];
//! - `ledger`: the replica with the ledger — leaf hash, `audit_leaves` insert, frontier
//!   read (`FOR UPDATE` on PostgreSQL) and update, `audit_nodes` inserts. It must time like
//!   `store` (the check that the replica is faithful), and the tree it writes must give
//!   proofs that verify (checked at the end through the real store). Since `09aefa4` the
//!   store writes PostgreSQL rows as `unnest` arrays (`sql::Insert`) while the replicas
//!   keep `VALUES` lists: on PostgreSQL `store` may now time faster than `ledger`, and
//!   the ledger's cost is what the replicas measure against each other;
//! - `leaves`: the replica as it was before the tree (commit `996451d^`): leaf hash and
//!   `audit_leaves`, `seq` from `UPDATE … RETURNING`, no frontier, no nodes;
//! - `none`: no ledger at all: neither leaves nor tree, `seq` from `UPDATE … RETURNING`.
//!
//! Ledger cost = `ledger` / `none` − 1 (the tree alone: `ledger` / `leaves` − 1). Variants
//! are interleaved batch by batch, rotating which goes first, so drift on the shared
//! machine hits them alike; each database is first given `WARDEN_BENCH_PRESEED` entries
//! (default 100,000) through its own path. The replica `ledger` also times every statement
//! of its transaction, to show where an append's time goes.
//!
//! ```sh
//! cargo bench -p warden-store --bench ledger_append                         # both backends
//! WARDEN_BENCH_ONLY=sqlite,bulk cargo bench -p warden-store --bench ledger_append
//! ```
//!
//! Selection words in `WARDEN_BENCH_ONLY`: backends `sqlite`, `postgres`; modes `bulk`
//! (batches of 1,000, `WARDEN_BENCH_ROUNDS` measured per variant, default 100) and `single`
//! (one entry per transaction, `WARDEN_BENCH_SINGLES` per variant, default 2,000).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor as _, Row as _};
use warden_core::audit::{AuditDraft, AuditEntry};
use warden_core::events::AuditEvent;
use warden_core::names::{AuditId, TenantId};
use warden_core::time::Timestamp;
use warden_ledger::hash::{Hash, leaf_hash};
use warden_ledger::proof::{verify_consistency, verify_inclusion};
use warden_ledger::tree::{CompactRange, root_from_leaves};
use warden_store::testing::TestDb;
use warden_store::testing::{Rng, bench_draft as draft};
use warden_store::{Backend, Store, sqlx};

/// The allocator the `warden` binary ships with (decision 0013), so these numbers are its.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BATCH: usize = 1_000;
const ROWS_PER_STATEMENT: usize = 500;
const HOUR_MICROS: i64 = 3_600_000_000;
const VARIANTS: [Variant; 4] = [
    Variant::Store,
    Variant::Ledger,
    Variant::Leaves,
    Variant::None,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Store,
    Ledger,
    Leaves,
    None,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Ledger => "ledger",
            Self::Leaves => "leaves",
            Self::None => "none",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The replica of the store's append transaction

/// Time spent per step of the replica's transactions, summed.
#[derive(Default, Clone)]
struct Phases(BTreeMap<&'static str, Duration>);

impl Phases {
    fn add(&mut self, name: &'static str, since: &mut Instant) {
        let now = Instant::now();
        *self.0.entry(name).or_default() += now - *since;
        *since = now;
    }
}

/// The write pool the store would open on this URL (`lib.rs` `Store::open`).
async fn write_pool(db: &TestDb) -> R<AnyPool> {
    sqlx::any::install_default_drivers();
    let opts = AnyPoolOptions::new().max_connections(1).min_connections(1);
    Ok(match db.backend {
        Backend::Sqlite => {
            let pragmas = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                 PRAGMA temp_store = MEMORY; PRAGMA cache_size = -32768; \
                 PRAGMA wal_autocheckpoint = 4000;";
            opts.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(sqlx::raw_sql(pragmas)).await?;
                    Ok(())
                })
            })
            .connect(&db.url)
            .await?
        }
        Backend::Postgres => opts.connect(&db.url).await?,
    })
}

/// `($1, …), …` on PostgreSQL; `(?, …), …` on SQLite, as `sql::for_backend` sends it.
fn values(backend: Backend, rows: usize, cols: usize, first: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = first;
    for r in 0..rows {
        s.push_str(if r > 0 { ", (" } else { "(" });
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            match backend {
                Backend::Sqlite => s.push('?'),
                Backend::Postgres => {
                    s.push('$');
                    s.push_str(&n.to_string());
                }
            }
            n += 1;
        }
        s.push(')');
    }
    s
}

fn frontier_from(size: u64, bytes: &[u8]) -> CompactRange {
    let hashes = bytes
        .chunks(32)
        .map(|c| c.try_into().expect("32-byte hashes"))
        .collect();
    CompactRange::from_parts(size, hashes).expect("a consistent frontier")
}

/// One append transaction of `drafts` the way the store runs it, with the ledger parts
/// that `variant` keeps.
async fn replica_append(
    pool: &AnyPool,
    backend: Backend,
    variant: Variant,
    drafts: Vec<AuditDraft>,
    phases: &mut Phases,
) -> R<Vec<Hash>> {
    let mut at = Instant::now();
    let begin = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut tx = pool.begin_with(begin).await?;
    let conn: &mut AnyConnection = &mut tx;
    let tenant = drafts[0].tenant.clone();
    // `lock_log`: the log's lock and its head in one statement. The head rows exist (each
    // variant's database was given entries first), so the store's insert-if-missing never
    // runs. Without the ledger the lock is the same `SELECT … FOR UPDATE` without the
    // frontier; on SQLite (the single writer is the lock) `seq` then comes from the head's
    // `UPDATE … RETURNING`.
    let pg = backend == Backend::Postgres;
    let lock = if pg { " FOR UPDATE" } else { "" };
    let count = drafts.len();
    let mut frontier = None;
    let base = if variant == Variant::Ledger {
        let r: AnyRow = sqlx::query(&format!(
            "SELECT next_seq, frontier FROM audit_heads WHERE tenant = $1{lock}"
        ))
        .bind(tenant.as_str())
        .fetch_one(&mut *conn)
        .await?;
        let size = r.try_get::<i64, _>("next_seq")? as u64;
        let bytes: Option<Vec<u8>> = r.try_get("frontier")?;
        frontier = Some(match bytes {
            Some(b) => frontier_from(size, &b),
            None if size == 0 => CompactRange::new(),
            None => return Err("the ledger replica needs a frontier".into()),
        });
        phases.add("begin + log lock (L: with the frontier)", &mut at);
        size as i64
    } else if pg {
        let size: i64 =
            sqlx::query("SELECT next_seq FROM audit_heads WHERE tenant = $1 FOR UPDATE")
                .bind(tenant.as_str())
                .fetch_one(&mut *conn)
                .await?
                .try_get(0)?;
        phases.add("begin + log lock (L: with the frontier)", &mut at);
        size
    } else {
        let end: i64 = sqlx::query(
            "UPDATE audit_heads SET next_seq = next_seq + $2 WHERE tenant = $1 RETURNING next_seq",
        )
        .bind(tenant.as_str())
        .bind(count as i64)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
        phases.add("seq: UPDATE … RETURNING", &mut at);
        end - count as i64
    };
    let now = Timestamp::now();

    let mut entries = Vec::with_capacity(count);
    let mut canonical = Vec::with_capacity(count);
    for (i, d) in drafts.into_iter().enumerate() {
        let e = d.into_entry(AuditId::new(), (base + i as i64) as u64, now);
        canonical.push(e.canonical()?);
        entries.push(e);
    }
    phases.add("number + canonicalize", &mut at);
    let leaves: Vec<Hash> = if variant == Variant::None {
        Vec::new()
    } else {
        let l = canonical.iter().map(|c| leaf_hash(c.as_bytes())).collect();
        phases.add("L: leaf hashes", &mut at);
        l
    };
    // `ledger::extend` and `store_nodes`: the tree in memory first, then its completed nodes
    // at levels 4, 8, 12, …
    if let Some(frontier) = frontier.as_mut() {
        let mut nodes = Vec::new();
        for leaf in &leaves {
            nodes.extend(
                frontier
                    .append(*leaf)
                    .into_iter()
                    .filter(|(id, _)| id.level > 0 && id.level % 4 == 0),
            );
        }
        phases.add("L: tree maths", &mut at);
        for chunk in nodes.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO audit_nodes (tenant, level, idx, hash) VALUES {}",
                values(backend, chunk.len(), 4, 1)
            );
            let mut q = sqlx::query(&sql);
            for (id, hash) in chunk {
                q = q
                    .bind(tenant.as_str())
                    .bind(i64::from(id.level))
                    .bind(id.index as i64)
                    .bind(hash.to_vec());
            }
            q.execute(&mut *conn).await?;
        }
        phases.add("L: nodes insert", &mut at);
    }
    let frontier_bytes =
        |f: &CompactRange| -> Vec<u8> { f.hashes().iter().flatten().copied().collect() };

    // The rows: on PostgreSQL each chunk is one statement (data-modifying CTEs), the last
    // one carrying the head's update, as in the store; on SQLite one statement per table.
    let chunks = count.div_ceil(ROWS_PER_STATEMENT);
    for (k, (chunk, texts)) in entries
        .chunks(ROWS_PER_STATEMENT)
        .zip(canonical.chunks(ROWS_PER_STATEMENT))
        .enumerate()
    {
        let n = chunk.len();
        let with_leaves = variant != Variant::None;
        let last = k + 1 == chunks;
        let insert_entries = format!(
            "INSERT INTO audit_entries (tenant, seq, id, created_at, actor, action, target_kind, target_id, outcome, reason_code, operator_ticket, canonical) VALUES {}",
            values(backend, n, 12, 1)
        );
        let insert_leaves = format!(
            "INSERT INTO audit_leaves (tenant, seq, leaf_hash) VALUES {}",
            values(backend, n, 3, if pg { 12 * n + 1 } else { 1 })
        );
        let chunk_leaves = if with_leaves {
            &leaves[k * ROWS_PER_STATEMENT..k * ROWS_PER_STATEMENT + n]
        } else {
            &[][..]
        };
        if pg {
            let next = if with_leaves { 15 * n + 1 } else { 12 * n + 1 };
            let head = match (last, &frontier) {
                (false, _) => None,
                (true, Some(_)) => Some(format!(
                    "UPDATE audit_heads SET next_seq = ${next}, frontier = ${} WHERE tenant = ${}",
                    next + 1,
                    next + 2
                )),
                (true, None) => Some(format!(
                    "UPDATE audit_heads SET next_seq = ${next} WHERE tenant = ${}",
                    next + 1
                )),
            };
            let sql = match (with_leaves, head) {
                (true, Some(h)) => {
                    format!("WITH e AS ({insert_entries}), l AS ({insert_leaves}) {h}")
                }
                (true, None) => format!("WITH e AS ({insert_entries}) {insert_leaves}"),
                (false, Some(h)) => format!("WITH e AS ({insert_entries}) {h}"),
                (false, None) => insert_entries,
            };
            let mut q = bind_leaves(
                bind_entries(sqlx::query(&sql), chunk, texts),
                chunk,
                chunk_leaves,
            );
            if last {
                q = q.bind(base + count as i64);
                if let Some(f) = &frontier {
                    q = q.bind(frontier_bytes(f));
                }
                q = q.bind(tenant.as_str().to_owned());
            }
            q.execute(&mut *conn).await?;
            phases.add(
                "rows: entries (L: + leaves) (+ head) in one statement",
                &mut at,
            );
        } else {
            bind_entries(sqlx::query(&insert_entries), chunk, texts)
                .execute(&mut *conn)
                .await?;
            phases.add("entries insert", &mut at);
            if with_leaves {
                bind_leaves(sqlx::query(&insert_leaves), chunk, chunk_leaves)
                    .execute(&mut *conn)
                    .await?;
                phases.add("L: leaves insert", &mut at);
            }
        }
    }
    if let (false, Some(f)) = (pg, &frontier) {
        sqlx::query("UPDATE audit_heads SET next_seq = $2, frontier = $3 WHERE tenant = $1")
            .bind(tenant.as_str())
            .bind(f.size() as i64)
            .bind(frontier_bytes(f))
            .execute(&mut *conn)
            .await?;
        phases.add("L: frontier update", &mut at);
    }
    count_in_tx(conn, backend, &entries).await?;
    phases.add("hourly counters upsert", &mut at);
    let mut payload = String::with_capacity(entries.len() * 160);
    for e in &entries {
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(&serde_json::to_string(&AuditEvent::from_entry(e))?);
    }
    sqlx::query("INSERT INTO outbox (created_at, topic, payload) VALUES ($1, $2, $3)")
        .bind(now.as_micros())
        .bind("audit")
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    phases.add("outbox insert", &mut at);
    tx.commit().await?;
    phases.add("commit", &mut at);
    Ok(leaves)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// `audit.rs` `bind_entries`: the columns of `entries` with their canonical texts.
fn bind_entries<'q>(mut q: AnyQuery<'q>, entries: &[AuditEntry], texts: &[String]) -> AnyQuery<'q> {
    for (e, c) in entries.iter().zip(texts) {
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
            .bind(c.clone());
    }
    q
}

/// `audit.rs` `bind_leaves` (no rows for the `none` variant).
fn bind_leaves<'q>(mut q: AnyQuery<'q>, entries: &[AuditEntry], leaves: &[Hash]) -> AnyQuery<'q> {
    for (e, leaf) in entries.iter().zip(leaves) {
        q = q
            .bind(e.tenant.clone())
            .bind(e.seq as i64)
            .bind(leaf.to_vec());
    }
    q
}

/// `audit.rs` `count_in_tx`: the hourly counters, upserted.
async fn count_in_tx(conn: &mut AnyConnection, backend: Backend, entries: &[AuditEntry]) -> R<()> {
    type Key = (i64, (String, String, String));
    let mut tallies: BTreeMap<Key, (i64, i64, i64)> = BTreeMap::new();
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
        let t = tallies.entry(key).or_insert((0, at, at));
        t.0 += 1;
        t.1 = t.1.min(at);
        t.2 = t.2.max(at);
    }
    let rows: Vec<_> = tallies.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO audit_counts (tenant, hour, action, outcome, actor, n, first_at, last_at) VALUES {} \
             ON CONFLICT (tenant, hour, action, outcome, actor) DO UPDATE SET n = audit_counts.n + excluded.n, \
             first_at = CASE WHEN excluded.first_at < audit_counts.first_at THEN excluded.first_at ELSE audit_counts.first_at END, \
             last_at = CASE WHEN excluded.last_at > audit_counts.last_at THEN excluded.last_at ELSE audit_counts.last_at END",
            values(backend, chunk.len(), 8, 1)
        );
        let mut q = sqlx::query(&sql);
        for ((hour, (action, outcome, actor)), (n, first, last)) in chunk {
            q = q
                .bind(entries[0].tenant.clone())
                .bind(*hour)
                .bind(action.clone())
                .bind(outcome.clone())
                .bind(actor.clone())
                .bind(*n)
                .bind(*first)
                .bind(*last);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The variants side by side

/// One variant's database and how to append to it.
struct Subject {
    variant: Variant,
    _db: TestDb,
    store: Option<Store>,
    pool: Option<AnyPool>,
    backend: Backend,
    tenant: TenantId,
    phases: Phases,
    /// Every leaf the `ledger` replica wrote, to check its tree at the end.
    leaves: Vec<Hash>,
}

impl Subject {
    async fn open(variant: Variant, backend: Backend) -> R<Option<Self>> {
        let db = match backend {
            Backend::Sqlite => TestDb::sqlite(),
            Backend::Postgres => match TestDb::postgres().await {
                Some(db) => db,
                None => return Ok(None),
            },
        };
        let store = db.open().await;
        let (store, pool) = if variant == Variant::Store {
            (Some(store), None)
        } else {
            // The schema is migrated; the replica writes through its own pool, to a log
            // whose head row exists (the store creates it with a tenant's first entry).
            store.close().await;
            let pool = write_pool(&db).await?;
            sqlx::query("INSERT INTO audit_heads (tenant, next_seq) VALUES ('acme', 0)")
                .execute(&pool)
                .await?;
            (None, Some(pool))
        };
        Ok(Some(Self {
            variant,
            _db: db,
            store,
            pool,
            backend,
            tenant: TenantId::parse("acme")?,
            phases: Phases::default(),
            leaves: Vec::new(),
        }))
    }

    async fn append(&mut self, drafts: Vec<AuditDraft>) -> R<()> {
        match (&self.store, &self.pool) {
            (Some(store), _) if drafts.len() == 1 => {
                store
                    .append_audit(drafts.into_iter().next().expect("one"))
                    .await?;
            }
            (Some(store), _) => {
                store.append_audit_batch(drafts).await?;
            }
            (None, Some(pool)) => {
                let leaves =
                    replica_append(pool, self.backend, self.variant, drafts, &mut self.phases)
                        .await?;
                if self.variant == Variant::Ledger {
                    self.leaves.extend(leaves);
                }
            }
            (None, None) => unreachable!("a target has a store or a pool"),
        }
        Ok(())
    }

    /// The `ledger` replica's tree, read back through the real store: its root and proofs
    /// must match the leaves it was given.
    async fn check_tree(&self) -> R<()> {
        if self.variant != Variant::Ledger {
            return Ok(());
        }
        self.pool.as_ref().expect("a replica").close().await;
        let store = self._db.open().await;
        let n = self.leaves.len() as u64;
        let head = store.ledger_head(&self.tenant).await?;
        if head.size != n || head.root != root_from_leaves(&self.leaves) {
            return Err(format!(
                "replica tree: head {} does not match its {n} leaves",
                head.size
            )
            .into());
        }
        let mut rng = Rng(42);
        for _ in 0..50 {
            let size = 1 + rng.below(n);
            let index = rng.below(size);
            let root = root_from_leaves(&self.leaves[..size as usize]);
            let proof = store.inclusion_proof(&self.tenant, index, size).await?;
            verify_inclusion(&self.leaves[index as usize], index, size, &proof, &root)?;
            let from = 1 + rng.below(size);
            let proof = store.consistency_proof(&self.tenant, from, size).await?;
            let root1 = root_from_leaves(&self.leaves[..from as usize]);
            verify_consistency(from, size, &proof, &root1, &root)?;
        }
        store.close().await;
        Ok(())
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

async fn run(
    backend: Backend,
    modes: &[&str],
    preseed: usize,
    rounds: usize,
    singles: usize,
) -> R<()> {
    let mut targets = Vec::new();
    for v in VARIANTS {
        match Subject::open(v, backend).await? {
            Some(t) => targets.push(t),
            None => {
                eprintln!("SKIPPED {backend:?}: PostgreSQL unreachable");
                return Ok(());
            }
        }
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let tenant = targets[0].tenant.clone();
    let t0 = Instant::now();
    for t in &mut targets {
        let mut done = 0;
        while done < preseed {
            let k = BATCH.min(preseed - done);
            let drafts = (0..k).map(|_| draft(&tenant, &mut rng)).collect();
            t.append(drafts).await?;
            done += k;
        }
    }
    eprintln!(
        "[{backend:?}] preseeded {preseed} entries in each of {} databases in {:.1} s",
        targets.len(),
        t0.elapsed().as_secs_f64()
    );

    for &mode in modes {
        let (size, count, warmup) = match mode {
            "bulk" => (BATCH, rounds, 3),
            _ => (1, singles, 20),
        };
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
        let mut totals = vec![Duration::ZERO; targets.len()];
        // Blocks of single appends keep each database's pages warm as a steady stream would.
        let block = if size == 1 { 20 } else { 1 };
        let mut round = 0;
        while round < warmup + count {
            if round == warmup {
                for t in &mut targets {
                    t.phases = Phases::default();
                }
            }
            let k = block.min(warmup + count - round);
            for j in 0..targets.len() {
                // Rotate which variant goes first.
                let i = (j + round / block) % targets.len();
                let t = &mut targets[i];
                for r in round..round + k {
                    let drafts = (0..size).map(|_| draft(&tenant, &mut rng)).collect();
                    let s = Instant::now();
                    t.append(drafts).await?;
                    let dt = s.elapsed();
                    if r >= warmup {
                        times[i].push(dt);
                        totals[i] += dt;
                    }
                }
            }
            round += k;
        }
        println!();
        println!(
            "== {backend:?}, {mode}: {count} transactions of {size} entr{} per variant (after {warmup} warm-up), {preseed} entries preseeded ==",
            if size == 1 { "y" } else { "ies" }
        );
        println!(
            "{:<8} {:>12} {:>12} {:>12} {:>16} {:>16}",
            "variant", "median ms", "p90 ms", "p99 ms", "entries/s (med)", "entries/s (all)"
        );
        let mut med = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let m = median(&mut times[i]);
            med.push(m);
            println!(
                "{:<8} {:>12.3} {:>12.3} {:>12.3} {:>16.0} {:>16.0}",
                t.variant.name(),
                m.as_secs_f64() * 1e3,
                pct(&mut times[i], 90.0).as_secs_f64() * 1e3,
                pct(&mut times[i], 99.0).as_secs_f64() * 1e3,
                size as f64 / m.as_secs_f64(),
                (size * count) as f64 / totals[i].as_secs_f64(),
            );
        }
        let at = |v: Variant| {
            med[VARIANTS.iter().position(|x| *x == v).expect("a variant")].as_secs_f64()
        };
        let cost = at(Variant::Ledger) / at(Variant::None) - 1.0;
        println!(
            "ledger cost (ledger/none - 1, medians): {:+.1} %  -> target <= 15 %: {}",
            100.0 * cost,
            if cost <= 0.15 { "MET" } else { "MISSED" }
        );
        println!(
            "the tree alone (ledger/leaves - 1): {:+.1} %; leaves alone (leaves/none - 1): {:+.1} %; replica vs store (ledger/store - 1): {:+.1} %",
            100.0 * (at(Variant::Ledger) / at(Variant::Leaves) - 1.0),
            100.0 * (at(Variant::Leaves) / at(Variant::None) - 1.0),
            100.0 * (at(Variant::Ledger) / at(Variant::Store) - 1.0),
        );
        for t in &targets {
            if t.variant != Variant::Ledger && t.variant != Variant::None {
                continue;
            }
            let total: Duration = t.phases.0.values().sum();
            let ledger: Duration = t
                .phases
                .0
                .iter()
                .filter(|(k, _)| k.starts_with("L:"))
                .map(|(_, d)| *d)
                .sum();
            println!(
                "where the time goes, replica `{}` (mean per transaction; L: = ledger){}",
                t.variant.name(),
                if t.variant == Variant::Ledger {
                    format!(
                        " — ledger statements and maths: {:.1} % of the transaction",
                        100.0 * ledger.as_secs_f64() / total.as_secs_f64()
                    )
                } else {
                    String::new()
                }
            );
            let mut parts: Vec<_> = t.phases.0.iter().collect();
            parts.sort_by(|a, b| b.1.cmp(a.1));
            for (k, d) in parts {
                println!(
                    "    {:<28} {:>9.3} ms  {:>5.1} %",
                    k,
                    d.as_secs_f64() * 1e3 / count as f64,
                    100.0 * d.as_secs_f64() / total.as_secs_f64()
                );
            }
        }
    }
    for t in &targets {
        t.check_tree().await?;
    }
    println!(
        "[{backend:?}] the ledger replica's tree gives the same root and verifying proofs through the store: ok"
    );
    for t in &targets {
        if let Some(s) = &t.store {
            s.close().await;
        }
        if let Some(p) = &t.pool {
            p.close().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> R<()> {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let preseed = env("WARDEN_BENCH_PRESEED", 100_000);
    let rounds = env("WARDEN_BENCH_ROUNDS", 100).max(1);
    let singles = env("WARDEN_BENCH_SINGLES", 2_000).max(1);
    let only: Vec<String> = std::env::var("WARDEN_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|w| w.trim().to_owned())
        .filter(|w| !w.is_empty())
        .collect();
    let pick = |group: &[&'static str]| -> Vec<&'static str> {
        let chosen: Vec<_> = group
            .iter()
            .copied()
            .filter(|g| only.iter().any(|o| o == g))
            .collect();
        if chosen.is_empty() {
            group.to_vec()
        } else {
            chosen
        }
    };
    println!(
        "command: WARDEN_BENCH_ONLY={} WARDEN_BENCH_PRESEED={preseed} WARDEN_BENCH_ROUNDS={rounds} WARDEN_BENCH_SINGLES={singles} cargo bench -p warden-store --bench ledger_append",
        only.join(",")
    );
    let modes = pick(&["bulk", "single"]);
    for backend in pick(&["sqlite", "postgres"]) {
        let backend = if backend == "sqlite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        run(backend, &modes, preseed, rounds, singles).await?;
    }
    Ok(())
}
