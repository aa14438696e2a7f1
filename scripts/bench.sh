#!/usr/bin/env bash
# Runs load scenarios against a fresh release gateway on 127.0.0.1:18080 and prints each
# summary. Usage: scripts/bench.sh [scenario ...]   (default: baseline poll join rush-one
# rush-many flow sse; add `scale`, `eta`, `sale-open` explicitly: they take minutes).
#
# The gateway runs as a user runs it by default: request log on (written to a file, as a
# service manager would), rate limits as shipped. Extra gateway settings go in the
# environment as BENCH_ENV="KEY=value …" (e.g. BENCH_ENV="RUST_LOG=warn" to measure without
# the request log); extra options for queuegate-load in LOAD_ARGS.
#
# BENCH_REDIS=cluster runs the queue store on a 3+3 Redis Cluster started on loopback by
# scripts/redis-topology.sh (stopped afterwards), e.g. BENCH_REDIS=cluster scripts/bench.sh shards poll
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
bash scripts/services.sh
cargo build --release --locked --bin queuegate --bin queuegate-load
bin="$CARGO_TARGET_DIR/release"

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(baseline poll join rush-one rush-many flow sse)

db="queuegate_bench"
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
prefix="qgbench$$"
export ADMIN_TOKEN="bench-admin-token-0123456789"
export JWT_SECRET="bench-secret-bench-secret-bench-secret"
export DATABASE_URL="mysql://root@127.0.0.1:3306/$db"
port="${BENCH_PORT:-18080}"
export QG_ADDR="127.0.0.1:$port"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "bench: 127.0.0.1:$port is taken (set BENCH_PORT)" >&2
  exit 1
fi
ulimit -n 20000 2>/dev/null || true

redis_args=()
if [ "${BENCH_REDIS:-single}" = cluster ]; then
  bash scripts/redis-topology.sh up cluster
  eval "$(bash scripts/redis-topology.sh env cluster)"
  export REDLOCK_URLS="redis://127.0.0.1:6379"
  redis_args=(--redis-url "$REDIS_URL")
fi
log_file="${BENCH_LOG:-$(mktemp -t queuegate-bench-XXXX.log)}"
# shellcheck disable=SC2086
env LISTEN_ADDR="$QG_ADDR" REDIS_KEY_PREFIX="$prefix" ${BENCH_ENV:-} "$bin/queuegate" serve 2>"$log_file" &
gw=$!
cleanup() {
  kill "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  redis-cli --scan --pattern "$prefix*" | xargs -r -n 1000 redis-cli del >/dev/null || true
  if [ "${BENCH_REDIS:-single}" = cluster ]; then bash scripts/redis-topology.sh down cluster || true; fi
  echo "gateway log: $log_file ($(wc -l <"$log_file") lines)"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, gateway pid $gw, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), queue Redis ${BENCH_REDIS:-single}, extra env: ${BENCH_ENV:-none}"
status=0
for s in "${scenarios[@]}"; do
  # shellcheck disable=SC2086
  "$bin/queuegate-load" "$s" --gateway-pid "$gw" "${redis_args[@]}" ${LOAD_ARGS:-} || status=1
  echo
done
exit $status
