#!/usr/bin/env bash
# The engine benchmark end to end: build Warden in release, run warden-bench on SQLite and
# on PostgreSQL, run the same workloads on graphile-worker (default and perf-test settings)
# and pg-boss 10, then print one table with medians, ranges and the ratios Warden / peer.
#
#   bash bench/run.sh
#
# Environment (all optional):
#   RUNS=3                 runs per system (medians and min–max over them)
#   JOBS=50000             jobs of the enqueue and processing workloads
#   BATCH_SIZE=5000        jobs per batch enqueue request
#   ENQUEUE_CONCURRENCY=4  batch requests in flight
#   WORKERS=4              worker processes
#   RATE=200 LATENCY_SECS=15   the latency workload
#   WARDEN_CONCURRENCY=256 jobs each Warden worker process runs at once
#   SYSTEMS="warden-sqlite warden-postgres graphile-default graphile-perf pgboss"
#   BENCH_PG_ADMIN_URL=postgres://postgres@127.0.0.1:5432/postgres
#                          (each workload of each run gets a fresh database there)
#   BENCH_OUT=target/bench/engine-<UTC time>   where the JSON results, logs and table go
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
JOBS=${JOBS:-50000}
BATCH_SIZE=${BATCH_SIZE:-5000}
ENQUEUE_CONCURRENCY=${ENQUEUE_CONCURRENCY:-4}
WORKERS=${WORKERS:-4}
RATE=${RATE:-200}
LATENCY_SECS=${LATENCY_SECS:-15}
WARDEN_CONCURRENCY=${WARDEN_CONCURRENCY:-256}
SYSTEMS=${SYSTEMS:-"warden-sqlite warden-postgres graphile-default graphile-perf pgboss"}
export BENCH_PG_ADMIN_URL=${BENCH_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
OUT=${BENCH_OUT:-target/bench/engine-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

echo "== engine benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, results in $OUT" >&2
echo "== building warden and warden-bench (release)" >&2
cargo build --release -p warden-cli -p warden-bench >&2
if [[ " $SYSTEMS " == *" graphile"* || " $SYSTEMS " == *" pgboss "* ]]; then
  echo "== installing the peers (npm ci)" >&2
  (cd bench/peers && npm ci --no-audit --no-fund --loglevel=error) >&2
fi

common=(--runs "$RUNS" --jobs "$JOBS" --batch-size "$BATCH_SIZE"
  --enqueue-concurrency "$ENQUEUE_CONCURRENCY" --workers "$WORKERS"
  --rate "$RATE" --latency-secs "$LATENCY_SECS")
failed=()
for system in $SYSTEMS; do
  echo "== $system" >&2
  case $system in
    warden-sqlite | warden-postgres)
      cmd=(target/release/warden-bench run --backend "${system#warden-}"
        --warden-bin target/release/warden --pg-admin-url "$BENCH_PG_ADMIN_URL"
        --concurrency "$WARDEN_CONCURRENCY" "${common[@]}" --json "$OUT/$system.json")
      ;;
    graphile-default | graphile-perf | pgboss)
      cmd=(node bench/peers/bench.js --system "$system" --admin-url "$BENCH_PG_ADMIN_URL"
        "${common[@]}" --json "$OUT/$system.json")
      ;;
    *)
      echo "unknown system $system" >&2
      exit 2
      ;;
  esac
  if ! "${cmd[@]}" > /dev/null 2> >(tee "$OUT/$system.log" >&2); then
    echo "!! $system failed; see $OUT/$system.log" >&2
    failed+=("$system")
    rm -f "$OUT/$system.json"
  fi
done

shopt -s nullglob
results=("$OUT"/*.json)
failed_list=$(IFS=,; echo "${failed[*]:-}")
echo >&2
node bench/table.js "${results[@]}" --failed "$failed_list" | tee "$OUT/table.md"
