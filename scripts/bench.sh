#!/usr/bin/env bash
# Runs load scenarios against a fresh release gateway on 127.0.0.1:18080 and prints each
# summary. Usage: scripts/bench.sh [scenario ...]   (default: baseline poll join rush-one
# rush-many flow sse; add `scale` explicitly, it joins a million users).
# Extra options for queuegate-load go in LOAD_ARGS, e.g. LOAD_ARGS="--connections 128".
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
export QG_ADDR="127.0.0.1:18080"
ulimit -n 20000 2>/dev/null || true

LISTEN_ADDR="$QG_ADDR" REDIS_KEY_PREFIX="$prefix" QUEUE_IDLE_SECS=3600 RUST_LOG=warn \
  RATE_JOIN_PER_MIN=0 RATE_CHARGE_PER_MIN=0 RATE_HOLD_PER_MIN=0 \
  DATABASE_MAX_CONNECTIONS=40 "$bin/queuegate" serve &
gw=$!
cleanup() {
  kill "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  redis-cli --scan --pattern "$prefix*" | xargs -r -n 1000 redis-cli del >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break
  sleep 0.2
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, gateway pid $gw, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
status=0
for s in "${scenarios[@]}"; do
  # shellcheck disable=SC2086
  "$bin/queuegate-load" "$s" --gateway-pid "$gw" ${LOAD_ARGS:-} || status=1
  echo
done
exit $status
