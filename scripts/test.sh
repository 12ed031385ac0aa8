#!/usr/bin/env bash
# Run Warden's whole test suite: the README's second command, and what CI runs.
#
# Needs PostgreSQL (WARDEN_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
# The script starts the local cluster if it is down. Under CI=true an unreachable
# PostgreSQL fails the run; on a developer machine the Postgres half of each test is
# skipped with a loud SKIPPED line.
set -euo pipefail
cd "$(dirname "$0")/.."

export WARDEN_TEST_DATABASE_URL="${WARDEN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

scripts/ensure-postgres.sh

echo "== independent implementations for the acceptance checks (PyJWT)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r tests/acceptance/requirements.txt

echo "== warden-core and warden-authority stay free of I/O crates"
for crate in warden-core warden-authority; do
  if cargo tree -p "$crate" -e normal --prefix none | grep -E '^(tokio|sqlx|axum|clap|hyper|reqwest) ' ; then
    echo "error: $crate depends on an I/O crate (see STYLE.md)" >&2
    exit 1
  fi
done

echo "== formatting"
cargo fmt --all -- --check

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests (SQLite and PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
