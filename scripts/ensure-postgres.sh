#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers; start the local cluster if it does not.
# Under CI=true, failing to reach it is an error; otherwise a loud warning.
set -uo pipefail
url="${WARDEN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

reachable() { psql "$url" -Atqc 'select 1' >/dev/null 2>&1; }

if reachable; then
  echo "PostgreSQL reachable at ${url%%@*}@…"
  exit 0
fi

echo "PostgreSQL not reachable; trying to start the local cluster"
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>&1 || true
  done
fi
for _ in $(seq 1 30); do
  reachable && { echo "PostgreSQL started"; exit 0; }
  sleep 1
done

if [ "${CI:-}" = "true" ]; then
  echo "error: PostgreSQL at $url is unreachable and CI=true: the PostgreSQL tests cannot be skipped" >&2
  exit 1
fi
echo "WARNING: PostgreSQL at $url is unreachable: the PostgreSQL half of the suite will be SKIPPED" >&2
exit 0
