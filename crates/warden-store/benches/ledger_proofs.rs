//! Inclusion and consistency proofs from a log of 10,000,000 entries (issue [3/3]: p99 <
//! 5 ms, both backends). Results and method: `docs/BENCHMARKS.md`.
//!
//! Appending ten million entries would take hours, so the tree is written straight into
//! the ledger's tables, exactly as the store would have left it: leaf `i` is
//! `SHA-256(0x00 ‖ i as 8 bytes big-endian)` in `audit_leaves`; the nodes
//! [`CompactRange::append`] completes at the stored levels (4, 8, 12, …) in `audit_nodes`;
//! the head row `audit_heads (tenant, next_seq, frontier)` last. Entry bodies are not
//! needed for proofs and are not written. PostgreSQL computes the leaves itself
//! (`sha256('\x00' || int8send(g))` over `generate_series`); SQLite gets them bound from
//! here. The planner statistics are refreshed, as the server's leader does.
//!
//! Then the real [`Store::inclusion_proof`] and [`Store::consistency_proof`] run one call at
//! a time, `WARDEN_BENCH_CALLS` (default 2,000) of each of four kinds, interleaved, after
//! 200 unmeasured warm-up calls:
//!
//! - inclusion of a random leaf in the tree of a random size;
//! - inclusion of a random leaf in the whole tree (the newest checkpoint's size);
//! - consistency between two random sizes;
//! - consistency from a random size to the whole tree.
//!
//! A reused (kept) database is measured twice: as found, and again after its ledger tables
//! and indexes have been read once (the VM this was written on pages out page-cache pages
//! left idle for a minute, so "as found" means read from disk). A freshly seeded one is
//! measured once, hot. Every proof is then verified with `warden_ledger::proof` against
//! roots recomputed here from the leaves (one pass over the ten million), and the store's
//! head root must equal the root of all of them.
//!
//! ```sh
//! cargo bench -p warden-store --bench ledger_proofs                        # both backends
//! WARDEN_BENCH_KEEP=1 WARDEN_BENCH_ONLY=sqlite cargo bench -p warden-store --bench ledger_proofs
//! ```
//!
//! `WARDEN_BENCH_LEAVES` sets the size (default 10,000,000). `WARDEN_BENCH_KEEP=1` keeps the
//! seeded databases (SQLite: `$TMPDIR/warden-bench-proofs-<size>/warden.db`; PostgreSQL:
//! database `warden_bench_proofs_<size>` next to `WARDEN_TEST_DATABASE_URL`'s) and reuses
//! them on the next run with the same setting; without it each run seeds a fresh temp
//! file or schema and drops it.

use std::time::{Duration, Instant};

use sqlx::{Connection as _, Executor as _};
use warden_core::names::TenantId;
use warden_ledger::hash::{Hash, leaf_hash};
use warden_ledger::proof::{consistency, inclusion, verify_consistency, verify_inclusion};
use warden_ledger::tree::CompactRange;
use warden_store::testing::TestDb;
use warden_store::testing::{Rng, postgres_url as pg_admin_url, with_database};
use warden_store::{Backend, Store, StoreOptions, sqlx};

/// The allocator the `warden` binary ships with (decision 0013), so these numbers are its.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TENANT: &str = "acme";
const WARMUP: usize = 200;

/// Leaf `i` of the seeded log.
fn leaf(i: u64) -> Hash {
    leaf_hash(&i.to_be_bytes())
}

// ---------------------------------------------------------------------------------------
// Where the seeded log lives

/// The database under test, and what to do with it afterwards.
enum Place {
    /// Dropped with the value.
    Temp(TestDb),
    /// Kept: a file under the temp dir.
    KeptSqlite { url: String },
    /// Kept: a database next to the admin URL's.
    KeptPostgres { url: String },
}

impl Place {
    fn url(&self) -> &str {
        match self {
            Self::Temp(db) => &db.url,
            Self::KeptSqlite { url } | Self::KeptPostgres { url } => url,
        }
    }
}

async fn place(backend: Backend, n: u64, keep: bool, fresh: bool) -> R<Option<Place>> {
    match (backend, keep) {
        (Backend::Sqlite, false) => Ok(Some(Place::Temp(TestDb::sqlite()))),
        (Backend::Postgres, false) => Ok(TestDb::postgres().await.map(Place::Temp)),
        (Backend::Sqlite, true) => {
            let dir = std::env::temp_dir().join(format!("warden-bench-proofs-{n}"));
            if fresh && dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::create_dir_all(&dir)?;
            Ok(Some(Place::KeptSqlite {
                url: format!("sqlite://{}/warden.db?mode=rwc", dir.display()),
            }))
        }
        (Backend::Postgres, true) => {
            let admin = pg_admin_url();
            let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
                return Ok(None);
            };
            let name = format!("warden_bench_proofs_{n}");
            if fresh {
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
            }
            let exists =
                sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut conn)
                    .await?
                    .is_some();
            if !exists {
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await?;
            }
            conn.close().await?;
            Ok(Some(Place::KeptPostgres {
                url: with_database(&admin, &name),
            }))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeding

/// The size of the seeded log if it is complete (the head row is written last).
async fn seeded_size(store: &Store, tenant: &TenantId) -> R<u64> {
    Ok(store.audit_size(tenant).await?)
}

/// The nodes the store keeps for the tree of leaves `[0, n)`, and its compact range.
fn tree_nodes(n: u64) -> (Vec<(i16, i64, Vec<u8>)>, CompactRange) {
    let mut range = CompactRange::new();
    let mut nodes = Vec::with_capacity(n as usize / 15 + 64);
    for i in 0..n {
        for (id, hash) in range.append(leaf(i)) {
            if id.level > 0 && id.level % 4 == 0 {
                nodes.push((i16::from(id.level), id.index as i64, hash.to_vec()));
            }
        }
    }
    (nodes, range)
}

async fn seed(backend: Backend, url: &str, n: u64) -> R<()> {
    let t = Instant::now();
    let (nodes, range) = tree_nodes(n);
    eprintln!(
        "[{backend:?}] computed {} stored nodes of the tree of {n} in {:.1} s",
        nodes.len(),
        t.elapsed().as_secs_f64()
    );
    let frontier: Vec<u8> = range.hashes().iter().flatten().copied().collect();
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            conn.execute("SET synchronous_commit = off").await?;
            let step = 1_000_000;
            let mut lo = 0;
            while lo < n {
                let hi = (lo + step).min(n) - 1;
                conn.execute(
                    format!(
                        "INSERT INTO audit_leaves (tenant, seq, leaf_hash) \
                         SELECT '{TENANT}', g, sha256('\\x00'::bytea || int8send(g)) FROM generate_series({lo}::bigint, {hi}::bigint) AS g"
                    )
                    .as_str(),
                )
                .await?;
                lo = hi + 1;
                eprintln!(
                    "[{backend:?}] {lo} leaves after {:.0} s",
                    t.elapsed().as_secs_f64()
                );
            }
            for chunk in nodes.chunks(100_000) {
                let (levels, rest): (Vec<i16>, Vec<(i64, Vec<u8>)>) =
                    chunk.iter().map(|(l, i, h)| (*l, (*i, h.clone()))).unzip();
                let (idx, hashes): (Vec<i64>, Vec<Vec<u8>>) = rest.into_iter().unzip();
                sqlx::query(&format!(
                    "INSERT INTO audit_nodes (tenant, level, idx, hash) \
                     SELECT '{TENANT}', l, i, h FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[]) AS t(l, i, h)"
                ))
                .bind(levels)
                .bind(idx)
                .bind(hashes)
                .execute(&mut conn)
                .await?;
            }
            sqlx::query("INSERT INTO audit_heads (tenant, next_seq, frontier) VALUES ($1, $2, $3)")
                .bind(TENANT)
                .bind(n as i64)
                .bind(frontier)
                .execute(&mut conn)
                .await?;
            conn.execute("ANALYZE audit_leaves; ANALYZE audit_nodes; ANALYZE audit_heads")
                .await?;
            conn.close().await?;
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            conn.execute("PRAGMA synchronous = OFF; PRAGMA cache_size = -262144")
                .await?;
            let rows = 500;
            let leaves_sql = format!(
                "INSERT INTO audit_leaves (tenant, seq, leaf_hash) VALUES {}",
                vec![format!("('{TENANT}', ?, ?)"); rows].join(", ")
            );
            let mut i = 0;
            while i < n {
                let end = (i + 1_000_000).min(n);
                let mut tx = conn.begin().await?;
                while i < end {
                    let k = (end - i).min(rows as u64);
                    let sql = if k == rows as u64 {
                        leaves_sql.clone()
                    } else {
                        format!(
                            "INSERT INTO audit_leaves (tenant, seq, leaf_hash) VALUES {}",
                            vec![format!("('{TENANT}', ?, ?)"); k as usize].join(", ")
                        )
                    };
                    let mut q = sqlx::query(&sql);
                    for s in i..i + k {
                        q = q.bind(s as i64).bind(leaf(s).to_vec());
                    }
                    q.execute(&mut *tx).await?;
                    i += k;
                }
                tx.commit().await?;
                eprintln!(
                    "[{backend:?}] {i} leaves after {:.0} s",
                    t.elapsed().as_secs_f64()
                );
            }
            let mut tx = conn.begin().await?;
            for chunk in nodes.chunks(rows) {
                let sql = format!(
                    "INSERT INTO audit_nodes (tenant, level, idx, hash) VALUES {}",
                    vec![format!("('{TENANT}', ?, ?, ?)"); chunk.len()].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (l, idx, h) in chunk {
                    q = q.bind(*l).bind(*idx).bind(h.clone());
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO audit_heads (tenant, next_seq, frontier) VALUES (?, ?, ?)")
                .bind(TENANT)
                .bind(n as i64)
                .bind(frontier)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            conn.execute("ANALYZE").await?;
            conn.close().await?;
        }
    }
    eprintln!(
        "[{backend:?}] seeded {n} leaves in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Measuring

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    InclusionRandom,
    InclusionLatest,
    ConsistencyRandom,
    ConsistencyLatest,
}

const KINDS: [Kind; 4] = [
    Kind::InclusionRandom,
    Kind::InclusionLatest,
    Kind::ConsistencyRandom,
    Kind::ConsistencyLatest,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::InclusionRandom => "inclusion, random (index, size)",
            Self::InclusionLatest => "inclusion, random index, size = n",
            Self::ConsistencyRandom => "consistency, random (from, to)",
            Self::ConsistencyLatest => "consistency, random from, to = n",
        }
    }

    /// (a, b): (index, size) or (from, to).
    fn pick(self, rng: &mut Rng, n: u64) -> (u64, u64) {
        match self {
            Self::InclusionRandom => {
                let size = rng.between(1, n);
                (rng.between(0, size - 1), size)
            }
            Self::InclusionLatest => (rng.between(0, n - 1), n),
            Self::ConsistencyRandom => {
                let to = rng.between(1, n);
                (rng.between(1, to), to)
            }
            Self::ConsistencyLatest => (rng.between(1, n), n),
        }
    }
}

async fn call(store: &Store, tenant: &TenantId, kind: Kind, a: u64, b: u64) -> R<Vec<Hash>> {
    Ok(match kind {
        Kind::InclusionRandom | Kind::InclusionLatest => {
            store.inclusion_proof(tenant, a, b).await?
        }
        Kind::ConsistencyRandom | Kind::ConsistencyLatest => {
            store.consistency_proof(tenant, a, b).await?
        }
    })
}

/// What the store reads for a proof: the shape of its one statement (the stored level each
/// planned node is folded from, which is what makes the SQL text differ) and the rows read.
fn plan_shape(kind: Kind, a: u64, b: u64) -> (Vec<u8>, u64) {
    let plan = match kind {
        Kind::InclusionRandom | Kind::InclusionLatest => inclusion(a, b),
        Kind::ConsistencyRandom | Kind::ConsistencyLatest => consistency(a, b),
    }
    .expect("a valid proof");
    let shape = plan
        .ids()
        .iter()
        .map(|id| id.level - id.level % 4)
        .collect();
    let rows = plan.ids().iter().map(|id| 1_u64 << (id.level % 4)).sum();
    (shape, rows)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e3
}

/// The roots of the trees of every size in `sizes` (sorted, deduplicated), from one pass
/// over the leaves.
fn roots_at(sizes: &[u64]) -> Vec<Hash> {
    let mut range = CompactRange::new();
    let mut out = Vec::with_capacity(sizes.len());
    let mut next = 0;
    for &s in sizes {
        while next < s {
            range.append(leaf(next));
            next += 1;
        }
        out.push(range.root());
    }
    out
}

type Done = Vec<(Kind, u64, u64, Vec<Hash>)>;

/// `calls` proofs of each kind, interleaved, after the warm-up calls.
async fn measure(
    store: &Store,
    tenant: &TenantId,
    n: u64,
    calls: usize,
    rng: &mut Rng,
) -> R<(Vec<Vec<Duration>>, Done, Duration)> {
    for i in 0..WARMUP {
        let kind = KINDS[i % KINDS.len()];
        let (a, b) = kind.pick(rng, n);
        call(store, tenant, kind, a, b).await?;
    }
    let mut lat: Vec<Vec<Duration>> = vec![Vec::with_capacity(calls); KINDS.len()];
    let mut done: Done = Vec::with_capacity(calls * KINDS.len());
    let started = Instant::now();
    for _ in 0..calls {
        for (k, &kind) in KINDS.iter().enumerate() {
            let (a, b) = kind.pick(rng, n);
            let t = Instant::now();
            let proof = call(store, tenant, kind, a, b).await?;
            lat[k].push(t.elapsed());
            done.push((kind, a, b, proof));
        }
    }
    Ok((lat, done, started.elapsed()))
}

/// Read the ledger's tables and indexes once, so their pages are in the OS page cache.
async fn prewarm(backend: Backend, url: &str) -> R<()> {
    match backend {
        Backend::Sqlite => {
            let path = url
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
                .ok_or("a sqlite:// URL")?;
            for file in [path.to_owned(), format!("{path}-wal")] {
                if let Ok(mut f) = std::fs::File::open(&file) {
                    std::io::copy(&mut f, &mut std::io::sink())?;
                }
            }
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
                .await?;
            for rel in [
                "audit_leaves",
                "audit_leaves_pkey",
                "audit_nodes",
                "audit_nodes_pkey",
            ] {
                sqlx::query("SELECT pg_prewarm($1::regclass, 'read')")
                    .bind(rel)
                    .execute(&mut conn)
                    .await?;
            }
            conn.close().await?;
        }
    }
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "a report of one measurement")]
fn print_table(
    backend: Backend,
    n: u64,
    phase: &str,
    seeded: Option<Duration>,
    calls: usize,
    wall: Duration,
    lat: &[Vec<Duration>],
    done: &Done,
) {
    println!();
    println!(
        "== {backend:?}: proofs from a log of {n} leaves{}: {phase} ==",
        match seeded {
            Some(d) => format!(" (seeded in {:.0} s)", d.as_secs_f64()),
            None => String::new(),
        }
    );
    println!(
        "{calls} calls of each kind, interleaved, one at a time, after {WARMUP} warm-up calls; {:.1} s in all; load average {}",
        wall.as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<36} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>7}  target p99 < 5 ms",
        "kind", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms", "hashes", "rows", "shapes"
    );
    for (k, kind) in KINDS.iter().enumerate() {
        let mut v = lat[k].clone();
        v.sort();
        let mut shapes = std::collections::HashSet::new();
        let (mut rows, mut hashes, mut count) = (0, 0, 0);
        for (x, a, b, proof) in done {
            if x == kind {
                let (shape, r) = plan_shape(*kind, *a, *b);
                shapes.insert(shape);
                rows += r;
                hashes += proof.len();
                count += 1;
            }
        }
        let p99 = pct(&v, 99.0);
        println!(
            "{:<36} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7.1} {:>6.1} {:>7}  {}",
            kind.name(),
            pct(&v, 50.0),
            pct(&v, 90.0),
            p99,
            pct(&v, 100.0),
            v.iter().sum::<Duration>().as_secs_f64() * 1e3 / v.len() as f64,
            hashes as f64 / count as f64,
            rows as f64 / count as f64,
            shapes.len(),
            if p99 < 5.0 { "MET" } else { "MISSED" }
        );
    }
    println!(
        "hashes: proof length; rows: rows read per proof (mean); shapes: distinct SQL texts among the calls (sqlx caches 100 prepared statements per connection)"
    );
}

async fn run(backend: Backend, n: u64, calls: usize, keep: bool, fresh: bool) -> R<()> {
    let Some(place) = place(backend, n, keep, fresh).await? else {
        eprintln!("SKIPPED {backend:?}: PostgreSQL unreachable");
        return Ok(());
    };
    let tenant = TenantId::parse(TENANT)?;
    let store = Store::open(&StoreOptions::new(place.url())).await?;
    let have = seeded_size(&store, &tenant).await?;
    let seeded = if have == n {
        eprintln!(
            "[{backend:?}] reusing the seeded log of {n} ({})",
            warden_store::redact_url(place.url())
        );
        None
    } else if have == 0 {
        store.close().await;
        let t = Instant::now();
        seed(backend, place.url(), n).await.map_err(|e| {
            format!("{backend:?}: seeding failed: {e} (a kept database seeded only in part: set WARDEN_BENCH_FRESH=1)")
        })?;
        Some(t.elapsed())
    } else {
        return Err(format!("{backend:?}: the kept database holds a log of {have}, not {n}; set WARDEN_BENCH_FRESH=1").into());
    };
    let store = Store::open(&StoreOptions::new(place.url())).await?;
    let head = store.ledger_head(&tenant).await?;
    if head.size != n {
        return Err(format!("head size {} != {n}", head.size).into());
    }

    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let mut all_done = Vec::new();
    // First the database as found: right after seeding everything is in the OS page cache;
    // a reused one is as cold as the machine left it (this VM pages out page-cache pages
    // idle for a minute). Then again after reading the tables and indexes once.
    let mut phases = vec![if seeded.is_some() {
        "just seeded"
    } else {
        "as found (reused database, OS cache as the machine left it)"
    }];
    if seeded.is_none() {
        phases.push("after reading the tables and indexes once (warm OS cache)");
    }
    for (p, phase) in phases.iter().enumerate() {
        if p > 0 {
            let t = Instant::now();
            prewarm(backend, place.url()).await?;
            eprintln!(
                "[{backend:?}] read the ledger tables in {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
        let (lat, done, wall) = measure(&store, &tenant, n, calls, &mut rng).await?;
        print_table(backend, n, phase, seeded, calls, wall, &lat, &done);
        all_done.extend(done);
    }

    // Verify every proof against roots recomputed from the leaves.
    let t = Instant::now();
    let mut sizes: Vec<u64> = all_done
        .iter()
        .flat_map(|(kind, a, b, _)| match kind {
            Kind::InclusionRandom | Kind::InclusionLatest => vec![*b],
            _ => vec![*a, *b],
        })
        .chain([n])
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let roots = roots_at(&sizes);
    let root = |s: u64| roots[sizes.binary_search(&s).expect("a planned size")];
    if head.root != root(n) {
        return Err("the seeded frontier's root differs from the leaves' root".into());
    }
    for (kind, a, b, proof) in &all_done {
        match kind {
            Kind::InclusionRandom | Kind::InclusionLatest => {
                verify_inclusion(&leaf(*a), *a, *b, proof, &root(*b))
                    .map_err(|e| format!("inclusion {a} in {b}: {e}"))?;
            }
            _ => verify_consistency(*a, *b, proof, &root(*a), &root(*b))
                .map_err(|e| format!("consistency {a} -> {b}: {e}"))?,
        }
    }
    println!(
        "all {} proofs verified against roots recomputed from the leaves ({:.1} s); the head's root is the root of all {n}",
        all_done.len(),
        t.elapsed().as_secs_f64()
    );
    store.close().await;
    if let Place::KeptSqlite { url } | Place::KeptPostgres { url } = &place {
        eprintln!("[{backend:?}] kept {}", warden_store::redact_url(url));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> R<()> {
    let n: u64 = std::env::var("WARDEN_BENCH_LEAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let calls: usize = std::env::var("WARDEN_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let flag = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0");
    let keep = flag("WARDEN_BENCH_KEEP");
    let fresh = flag("WARDEN_BENCH_FRESH");
    let only = std::env::var("WARDEN_BENCH_ONLY").unwrap_or_default();
    println!(
        "command: WARDEN_BENCH_LEAVES={n} WARDEN_BENCH_CALLS={calls}{}{} cargo bench -p warden-store --bench ledger_proofs",
        if keep { " WARDEN_BENCH_KEEP=1" } else { "" },
        if only.is_empty() {
            String::new()
        } else {
            format!(" WARDEN_BENCH_ONLY={only}")
        }
    );
    for (word, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
        if !only.is_empty() && !only.split(',').any(|w| w.trim() == word) {
            continue;
        }
        run(backend, n, calls, keep, fresh).await?;
    }
    Ok(())
}
