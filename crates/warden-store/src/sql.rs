//! Building multi-row statements portably. sqlx's `QueryBuilder` writes `?` placeholders
//! under the `Any` driver, which PostgreSQL refuses; `$n` works on both backends.

/// How many rows one multi-row statement carries at most (SQLite allows 32,766 parameters,
/// PostgreSQL 65,535; 500 rows of up to 20 columns stays under both).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `($1, $2, $3), ($4, $5, $6)` for `rows` rows of `cols` columns, numbering from `$first`.
pub(crate) fn values_placeholders(rows: usize, cols: usize, first: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
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
            s.push('$');
            s.push_str(&n.to_string());
            n += 1;
        }
        s.push(')');
    }
    s
}

/// `$first, $first+1, …` for an `IN (…)` list of `count` values.
pub(crate) fn list_placeholders(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_from_the_given_start() {
        assert_eq!(super::values_placeholders(2, 2, 3), "($3, $4), ($5, $6)");
        assert_eq!(super::list_placeholders(3, 2), "$2, $3, $4");
    }
}
