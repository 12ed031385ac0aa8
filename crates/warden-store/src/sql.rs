//! Building multi-row statements portably. sqlx's `QueryBuilder` writes `?` placeholders
//! under the `Any` driver, which PostgreSQL refuses; `$n` works on both backends.

/// How many rows one multi-row statement carries at most (SQLite allows 32,766 parameters,
/// PostgreSQL 65,535; 500 rows of up to 20 columns stays under both).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2, $3), ($4, $5, $6)` for `rows` rows of `cols` columns, numbering from `$first`.
/// Written straight into one buffer: a bulk statement has up to 9,000 of them, and a
/// `String` per number was a measurable share of a bulk replay's CPU.
pub(crate) fn values_placeholders(rows: usize, cols: usize, first: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(rows * cols * 7);
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            write!(s, "${n}").expect("writing to a String cannot fail");
            n += 1;
        }
        s.push(')');
    }
    s
}

/// `$first, $first+1, …` for an `IN (…)` list of `count` values.
pub(crate) fn list_placeholders(count: usize, first: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(count * 7);
    for n in first..first + count {
        if n > first {
            s.push_str(", ");
        }
        write!(s, "${n}").expect("writing to a String cannot fail");
    }
    s
}

/// `cols` of the rows of `table` whose `id` is one of `count` values `$2…`, in tenant `$1`,
/// optionally locked (`lock`: "" or a `FOR UPDATE` clause), in the shape each backend plans
/// well. On PostgreSQL an `IN` list of hundreds of ids is costed from table statistics, which
/// lag a bulk load by up to a minute; with stale ones the planner picked a bitmap scan of the
/// whole tenant (76 ms for 500 ids instead of 2 ms). One primary-key probe per id, through a
/// `LATERAL … LIMIT 1` the planner cannot flatten, is right whatever the statistics say.
pub(crate) fn select_by_ids(
    conn: &sqlx::AnyConnection,
    table: &str,
    cols: &str,
    count: usize,
    lock: &str,
) -> String {
    if conn.backend_name() == "SQLite" {
        let sql = format!(
            "SELECT {cols} FROM {table} WHERE tenant = $1 AND id IN ({}){lock}",
            list_placeholders(count, 2)
        );
        return for_backend(conn, sql);
    }
    let values = (2..2 + count)
        .map(|n| format!("(${n})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT j.* FROM (VALUES {values}) AS v(id) CROSS JOIN LATERAL \
         (SELECT {cols} FROM {table} WHERE tenant = $1 AND id = v.id LIMIT 1{lock}) AS j"
    )
}

/// The expression that locates a row of a table the current transaction has locked, as
/// text: its `ctid` on PostgreSQL, its `id` on SQLite. Updates of rows already read and
/// locked (a lease's claimed jobs, a finish's jobs) address them with [`locator_in`] or
/// [`locator_eq`]. On PostgreSQL that is a TID scan, right whatever the statistics say: by
/// `(tenant, id)`, a fresh bulk-loaded table with no statistics got a bitmap scan of the
/// whole tenant (240–480 ms for a 256-job lease at 20,000 queued jobs, the `engine_path`
/// bench). A locked row's `ctid` cannot change until the transaction ends: no other
/// transaction may update it, and `VACUUM FULL` waits for the lock. On SQLite (one
/// writer) the primary key is what it plans well.
pub(crate) fn locator(conn: &sqlx::AnyConnection) -> &'static str {
    if conn.backend_name() == "SQLite" {
        "id"
    } else {
        "CAST(ctid AS TEXT)"
    }
}

/// The filter for `count` rows of tenant `$tenant` by [`locator`] values `$first…`. The
/// tenant check stays (a defect must not touch another tenant's row), on PostgreSQL as
/// `IS NOT DISTINCT FROM`, which no index can serve: a `tenant = $n` that looks selective
/// without statistics is what the planner chose over the TID scan.
pub(crate) fn locator_in(
    conn: &sqlx::AnyConnection,
    tenant: usize,
    count: usize,
    first: usize,
) -> String {
    if conn.backend_name() == "SQLite" {
        return format!(
            "tenant = ${tenant} AND id IN ({})",
            list_placeholders(count, first)
        );
    }
    let list = (first..first + count)
        .map(|n| format!("CAST(${n} AS tid)"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("ctid IN ({list}) AND tenant IS NOT DISTINCT FROM ${tenant}")
}

/// The join of `table`'s rows of tenant `$tenant` with a `VALUES` list `v` carrying
/// [`locator`] values in its column `loc` (the tenant check as in [`locator_in`]). Each
/// backend gets a redundant `IN`/`ANY` over `v` too: without it SQLite 3.46, with bound
/// parameters, walked every job of the tenant, and PostgreSQL hash-joined `v` with a
/// sequential scan of the table; with it both search by locator.
pub(crate) fn locator_eq(conn: &sqlx::AnyConnection, table: &str, tenant: usize) -> String {
    if conn.backend_name() == "SQLite" {
        format!(
            "{table}.tenant = ${tenant} AND {table}.id = v.loc AND {table}.id IN (SELECT loc FROM v)"
        )
    } else {
        format!(
            "{table}.ctid = CAST(v.loc AS tid) AND {table}.ctid = ANY (ARRAY(SELECT CAST(loc AS tid) FROM v)) \
             AND {table}.tenant IS NOT DISTINCT FROM ${tenant}"
        )
    }
}

/// The statement as the connection's backend runs it fastest. SQLite keeps numbered
/// parameters (`$n`, `?n`) in a list it searches linearly for each one bound, so a 500-row
/// insert with 9,000 of them costs O(n²); anonymous `?` parameters skip that list. When a
/// statement's placeholders are exactly `$1, $2, …, $n` in order, SQLite gets `?` instead.
pub(crate) fn for_backend(conn: &sqlx::AnyConnection, sql: String) -> String {
    if conn.backend_name() != "SQLite" {
        return sql;
    }
    positional(&sql).unwrap_or(sql)
}

/// `$1 … $n` in order → `?`; `None` when numbers repeat or come out of order.
fn positional(sql: &str) -> Option<String> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let (mut expected, mut i, mut last) = (1usize, 0usize, 0usize);
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit() {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            let n: usize = sql[start..end].parse().ok()?;
            if n != expected {
                return None;
            }
            expected += 1;
            out.push_str(&sql[last..i]);
            out.push('?');
            last = end;
            i = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sequential_placeholders_become_anonymous_for_sqlite() {
        assert_eq!(
            super::positional("INSERT INTO t VALUES ($1, $2), ($3, $4)").as_deref(),
            Some("INSERT INTO t VALUES (?, ?), (?, ?)")
        );
        assert_eq!(
            super::positional("SELECT $1 WHERE a = $1"),
            None,
            "a repeated number keeps its name"
        );
        assert_eq!(super::positional("SELECT $2, $1"), None);
        assert_eq!(
            super::positional("SELECT '$x' FROM t").as_deref(),
            Some("SELECT '$x' FROM t")
        );
    }

    #[test]
    fn placeholders_number_from_the_given_start() {
        assert_eq!(super::values_placeholders(2, 2, 3), "($3, $4), ($5, $6)");
        assert_eq!(super::list_placeholders(3, 2), "$2, $3, $4");
    }
}
