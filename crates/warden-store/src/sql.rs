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

/// One value of a row of an [`Insert`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A multi-row `INSERT`, built row by row and run in the shape each backend runs fastest,
/// in statements of at most [`ROWS_PER_STATEMENT`] rows.
///
/// - SQLite: `INSERT INTO t (…) VALUES (?, …), …` (anonymous placeholders, see
///   [`for_backend`]).
/// - PostgreSQL, several rows: `INSERT INTO t (…) SELECT * FROM unnest($1::text::T1[], …)`,
///   each column bound as one array literal (a single row: `VALUES ($1, …)`). A 500-row `VALUES` list is 9,000 parameters that
///   PostgreSQL binds, plans and evaluates one expression at a time, and a new statement
///   text for every row count; the arrays are one parameter per column and one statement
///   text whatever the count. Measured on the `jobs` table (500 rows of 18 columns,
///   committed): 19.5 ms with `VALUES`, 14.1 ms with `unnest`. One statement for a whole
///   10,000-job batch was tried and not kept: its multi-megabyte literals stayed in
///   glibc's arenas and raised the server's RSS by some 40 MiB (docs/BENCHMARKS.md).
///
/// The `sqlx` `Any` driver binds no arrays, hence text literals cast by the server
/// (`array_in`, then each element's input function): exact for every type used here.
/// Callers with large inputs build one `Insert` per chunk of [`ROWS_PER_STATEMENT`] rows,
/// so the per-row texts they make are not all alive at once.
#[derive(Debug)]
pub(crate) struct Insert<'a> {
    into: &'static str,
    types: &'static [&'static str],
    suffix: &'static str,
    values: Vec<Value<'a>>,
}

impl<'a> Insert<'a> {
    /// `into` is `table (col, …)`; `types` the PostgreSQL type of each column, in order.
    pub(crate) fn new(into: &'static str, types: &'static [&'static str]) -> Self {
        Insert {
            into,
            types,
            suffix: "",
            values: Vec::new(),
        }
    }

    /// How many columns a row has (the parameters of its PostgreSQL statement).
    pub(crate) fn columns(&self) -> usize {
        self.types.len()
    }

    /// Whether no row was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A clause after the rows: `ON CONFLICT …`, `RETURNING …`.
    pub(crate) fn suffix(mut self, suffix: &'static str) -> Self {
        self.suffix = suffix;
        self
    }

    /// Room for `rows` rows.
    pub(crate) fn with_capacity(mut self, rows: usize) -> Self {
        self.values.reserve(rows * self.types.len());
        self
    }

    /// Add one row: exactly one value per column.
    pub(crate) fn row<const N: usize>(&mut self, row: [Value<'a>; N]) {
        assert_eq!(N, self.types.len(), "one value per column of {}", self.into);
        self.values.extend(row);
    }

    /// The PostgreSQL statement for all rows, parameters numbered from `$first`: one
    /// `VALUES` row for a single row, else `unnest` of one array per column — the same
    /// text for any number of rows above one, so it is prepared once per connection. For
    /// composing into a larger statement (a data-modifying CTE) with [`Insert::pg_arrays`]
    /// and [`Insert::bind_pg`].
    pub(crate) fn pg_sql(&self, first: usize) -> String {
        self.pg_sql_for(self.values.len() / self.types.len(), first)
    }

    /// A single row is bound as plain parameters: parsing one-element arrays cost a
    /// single audited action 7–10 % of its median on PostgreSQL (the cancel bench).
    fn pg_sql_for(&self, rows: usize, first: usize) -> String {
        let mut sql = if rows == 1 {
            format!(
                "INSERT INTO {} VALUES {}",
                self.into,
                values_placeholders(1, self.types.len(), first)
            )
        } else {
            format!(
                "INSERT INTO {} SELECT * FROM unnest({})",
                self.into,
                self.unnest_args(first)
            )
        };
        if !self.suffix.is_empty() {
            sql.push(' ');
            sql.push_str(self.suffix);
        }
        sql
    }

    /// The array literals [`Insert::pg_sql`] binds (none for a single row).
    pub(crate) fn pg_arrays(&self) -> Vec<String> {
        self.arrays_of(&self.values)
    }

    /// Bind all rows for [`Insert::pg_sql`], with `arrays` from [`Insert::pg_arrays`].
    pub(crate) fn bind_pg<'q>(&'q self, q: AnyQuery<'q>, arrays: &'q [String]) -> AnyQuery<'q> {
        bind_rows(q, &self.values, arrays)
    }

    /// The PostgreSQL statement for all rows as `unnest` of one array per column, also
    /// for a single row, inserting them only if `condition` holds: for an insert that a
    /// check in the same statement may call off. Bind with [`Insert::pg_arrays_always`].
    pub(crate) fn pg_sql_if(&self, first: usize, condition: &str) -> String {
        format!(
            "INSERT INTO {} SELECT * FROM unnest({}) WHERE {condition}",
            self.into,
            self.unnest_args(first)
        )
    }

    /// `$first::text::T1[], …`: each column's array parameter, cast.
    pub(crate) fn unnest_args(&self, first: usize) -> String {
        self.cast_params(first, true)
    }

    /// `$first::T1, …`: the parameters of one row, cast, for a `VALUES` row in place of
    /// [`Insert::unnest_args`] when there is one row; bind with [`Insert::bind_pg`] and no
    /// arrays. PostgreSQL re-plans a statement that takes arrays at every execution (the
    /// generic plan cannot know their lengths, so a custom plan always looks cheaper:
    /// 0.23 ms of a single enqueue's 0.37 ms in the database), and switches a statement of
    /// scalar parameters to its generic plan after five (0.03 ms).
    pub(crate) fn values_args(&self, first: usize) -> String {
        self.cast_params(first, false)
    }

    /// One parameter per column from `$first`, cast to the column's type, or for
    /// `arrays` to an array of it from its text literal.
    fn cast_params(&self, first: usize, arrays: bool) -> String {
        self.types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if arrays {
                    format!("${}::text::{t}[]", first + i)
                } else {
                    format!("${}::{t}", first + i)
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The array literals [`Insert::pg_sql_if`] binds.
    pub(crate) fn pg_arrays_always(&self) -> Vec<String> {
        self.columns_as_arrays(&self.values)
    }

    /// One array literal per column of `values` (whole rows); none for a single row.
    fn arrays_of(&self, values: &[Value<'_>]) -> Vec<String> {
        if values.len() == self.types.len() {
            return Vec::new();
        }
        self.columns_as_arrays(values)
    }

    /// One array literal per column of `values` (whole rows).
    fn columns_as_arrays(&self, values: &[Value<'_>]) -> Vec<String> {
        let cols = self.types.len();
        let rows = values.len() / cols;
        let mut arrays: Vec<String> = (0..cols)
            .map(|_| String::with_capacity(2 + rows * 8))
            .collect();
        for (i, v) in values.iter().enumerate() {
            let a = &mut arrays[i % cols];
            a.push(if a.is_empty() { '{' } else { ',' });
            push_array_element(a, *v);
        }
        for a in &mut arrays {
            if a.is_empty() {
                a.push('{');
            }
            a.push('}');
        }
        arrays
    }

    /// SQLite's statement for all rows (at most [`ROWS_PER_STATEMENT`]), with
    /// anonymous placeholders, to compose into a multi-statement call with
    /// [`Insert::bind_sqlite`].
    pub(crate) fn sqlite_sql(&self) -> String {
        let rows = self.values.len() / self.types.len();
        assert!(rows <= ROWS_PER_STATEMENT, "one statement's rows");
        self.values_sql(rows)
    }

    /// Bind all rows for [`Insert::sqlite_sql`].
    pub(crate) fn bind_sqlite<'q>(&'q self, q: AnyQuery<'q>) -> AnyQuery<'q> {
        bind_values(q, &self.values)
    }

    /// SQLite's statement for `rows` rows.
    fn values_sql(&self, rows: usize) -> String {
        let mut sql = format!(
            "INSERT INTO {} VALUES {}",
            self.into,
            values_placeholders(rows, self.types.len(), 1)
        );
        if !self.suffix.is_empty() {
            sql.push(' ');
            sql.push_str(self.suffix);
        }
        positional(&sql).unwrap_or(sql)
    }

    /// The rows in statements of at most [`ROWS_PER_STATEMENT`]: each statement's values
    /// (and, on PostgreSQL, its arrays) are built when it runs, so a large batch never
    /// holds more than one statement's worth of bound text.
    fn statement_rows(&self) -> std::slice::Chunks<'_, Value<'a>> {
        self.values.chunks(ROWS_PER_STATEMENT * self.types.len())
    }

    /// Each statement: its text, its rows, and (on PostgreSQL, for several rows) its
    /// arrays, made when the statement is reached.
    fn statements(
        &self,
        sqlite: bool,
    ) -> impl Iterator<Item = (String, &[Value<'a>], Vec<String>)> {
        let cols = self.types.len();
        self.statement_rows().map(move |rows| {
            if sqlite {
                (self.values_sql(rows.len() / cols), rows, Vec::new())
            } else {
                (
                    self.pg_sql_for(rows.len() / cols, 1),
                    rows,
                    self.arrays_of(rows),
                )
            }
        })
    }

    /// Run the insert; the rows it affected.
    pub(crate) async fn execute(&self, conn: &mut sqlx::AnyConnection) -> sqlx::Result<u64> {
        let mut affected = 0;
        for (sql, rows, arrays) in self.statements(conn.backend_name() == "SQLite") {
            let q = bind_rows(sqlx::query(&sql), rows, &arrays);
            affected += q.execute(&mut *conn).await?.rows_affected();
        }
        Ok(affected)
    }

    /// Run the insert and return the rows of its `RETURNING` clause.
    pub(crate) async fn fetch_all(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> sqlx::Result<Vec<sqlx::any::AnyRow>> {
        let mut out = Vec::new();
        for (sql, rows, arrays) in self.statements(conn.backend_name() == "SQLite") {
            let q = bind_rows(sqlx::query(&sql), rows, &arrays);
            out.extend(q.fetch_all(&mut *conn).await?);
        }
        Ok(out)
    }
}

pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind rows as they are, or as `arrays` when there are any.
fn bind_rows<'q>(q: AnyQuery<'q>, rows: &'q [Value<'q>], arrays: &'q [String]) -> AnyQuery<'q> {
    if arrays.is_empty() {
        bind_values(q, rows)
    } else {
        bind_arrays(q, arrays)
    }
}

/// Bind PostgreSQL array literals, in order.
fn bind_arrays<'q>(mut q: AnyQuery<'q>, arrays: &'q [String]) -> AnyQuery<'q> {
    for a in arrays {
        q = q.bind(a.as_str());
    }
    q
}

fn bind_values<'q>(mut q: AnyQuery<'q>, values: &'q [Value<'q>]) -> AnyQuery<'q> {
    for v in values {
        q = match *v {
            Value::Null => q.bind(None::<&str>),
            Value::Bool(b) => q.bind(b),
            Value::Int(i) => q.bind(i),
            Value::Text(t) => q.bind(t),
            Value::Bytes(b) => q.bind(b),
        };
    }
    q
}

/// One element of a PostgreSQL array literal (`{…}`): `NULL`, or the value's text form
/// double-quoted with `"` and `\` escaped by a backslash (the array input rules), bytes in
/// `bytea`'s hex form.
fn push_array_element(out: &mut String, v: Value<'_>) {
    use std::fmt::Write;
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Bool(b) => out.push(if b { 't' } else { 'f' }),
        Value::Int(i) => write!(out, "{i}").expect("writing to a String cannot fail"),
        Value::Text(t) => {
            out.push('"');
            let mut last = 0;
            for (i, b) in t.bytes().enumerate() {
                if b == b'"' || b == b'\\' {
                    // Both are ASCII, so `i` is a character boundary.
                    out.push_str(&t[last..i]);
                    out.push('\\');
                    last = i;
                }
            }
            out.push_str(&t[last..]);
            out.push('"');
        }
        Value::Bytes(b) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\"\\\\x");
            for byte in b {
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 15)] as char);
            }
            out.push('"');
        }
    }
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
/// locked (a finish's jobs) address them with [`locator_eq`]; a lease picks and updates
/// its jobs in one statement, by `ctid` too. On PostgreSQL that is a TID scan, right
/// whatever the statistics say: by `(tenant, id)`, a fresh bulk-loaded table with no statistics got a bitmap scan of the
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

/// The join of `table`'s rows of tenant `$tenant` with a `VALUES` list `v` carrying
/// [`locator`] values in its column `loc`. The tenant check stays (a defect must not touch
/// another tenant's row), on PostgreSQL as `IS NOT DISTINCT FROM`, which no index can
/// serve: a `tenant = $n` that looks selective without statistics is what the planner
/// chose over the TID scan. Each backend gets a redundant `IN`/`ANY` over `v` too: without
/// it SQLite 3.46, with bound parameters, walked every job of the tenant, and PostgreSQL
/// hash-joined `v` with a sequential scan of the table; with it both search by locator.
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
    fn postgres_rows_become_one_array_literal_per_column() {
        use super::{Insert, Value};
        let mut insert = Insert::new("t (a, b, c, d)", &["text", "bigint", "bytea", "boolean"])
            .suffix("ON CONFLICT DO NOTHING");
        insert.row([
            Value::Text(r#"say "hi" \ {x},y"#),
            Value::Int(-7),
            Value::Bytes(&[0, 0xab]),
            Value::Bool(true),
        ]);
        insert.row([
            Value::Text("NULL"),
            Value::Null,
            Value::Null,
            Value::Bool(false),
        ]);
        let (sql, arrays) = (insert.pg_sql(3), insert.pg_arrays());
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c, d) SELECT * FROM unnest($3::text::text[], \
             $4::text::bigint[], $5::text::bytea[], $6::text::boolean[]) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            arrays,
            [
                r#"{"say \"hi\" \\ {x},y","NULL"}"#,
                "{-7,NULL}",
                r#"{"\\x00ab",NULL}"#,
                "{t,f}",
            ]
        );
    }

    #[test]
    fn a_single_postgres_row_is_bound_as_plain_parameters() {
        use super::{Insert, Value};
        let mut insert = Insert::new("t (a, b)", &["text", "bigint"]).suffix("RETURNING a");
        insert.row([Value::Text("x"), Value::Int(1)]);
        assert_eq!(
            insert.pg_sql(4),
            "INSERT INTO t (a, b) VALUES ($4, $5) RETURNING a"
        );
        assert!(insert.pg_arrays().is_empty(), "no arrays for one row");
    }

    #[test]
    fn rows_go_in_statements_of_at_most_500() {
        use super::{Insert, Value};
        let mut insert = Insert::new("t (a, b)", &["bigint", "text"]);
        for i in 0..1_001 {
            insert.row([Value::Int(i), Value::Null]);
        }
        let statements: Vec<_> = insert.statement_rows().collect();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0].len(), 1_000, "500 rows of 2 values");
        assert_eq!(statements[2].len(), 2);
        assert_eq!(insert.values_sql(1), "INSERT INTO t (a, b) VALUES (?, ?)");
    }

    #[test]
    fn placeholders_number_from_the_given_start() {
        assert_eq!(super::values_placeholders(2, 2, 3), "($3, $4), ($5, $6)");
        assert_eq!(super::list_placeholders(3, 2), "$2, $3, $4");
    }
}
