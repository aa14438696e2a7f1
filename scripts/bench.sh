#!/usr/bin/env bash
# Runs load scenarios against a fresh release gateway on 127.0.0.1:18080 and prints each
# summary. Usage: scripts/bench.sh [scenario ...]   (default: baseline poll join rush-one
# rush-many flow sse; add `scale` explicitly, it joins a million users).
# Extra options for queuegate-load go in LOAD_ARGS, e.g. LOAD_ARGS="--connections 128".
# `proxy` (gateway mode, explicit only) also starts an nginx origin on 127.0.0.1:18082 serving a
# static page and a gateway-mode instance on 127.0.0.1:18081 in front of it, and compares the two.
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
proxy_pids=()
cleanup() {
  for p in "${proxy_pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  [ -z "${proxy_tmp:-}" ] || rm -rf "$proxy_tmp"
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
# Gateway mode for `proxy`: a static origin, a concert whose line guards /shop, and a second
# instance (same database and key prefix) with UPSTREAM_URL in front of the origin.
start_proxy() {
  proxy_tmp=$(mktemp -d)
  mkdir -p "$proxy_tmp/www/shop"
  {
    echo '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>'
    for i in $(seq 1 12); do echo "<p>Row $i of a small static shop page served by nginx.</p>"; done
    echo '</body></html>'
  } >"$proxy_tmp/www/shop/index.html"
  bash scripts/origin-nginx.sh 18082 "$proxy_tmp/www" "$proxy_tmp/nginx" &
  proxy_pids+=($!)
  local concert
  concert=$(curl -fsS -X POST "http://$QG_ADDR/v1/admin/concerts" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"name": "proxy bench", "schedules": [{"starts_at": "2031-06-01T19:30:00Z", "price": 100}]}' |
    sed -E 's/.*"concert_id":([0-9]+).*/\1/')
  LISTEN_ADDR=127.0.0.1:18081 REDIS_KEY_PREFIX="$prefix" QUEUE_IDLE_SECS=3600 RUST_LOG=warn \
    AUTO_MIGRATE=false DATABASE_MAX_CONNECTIONS=10 \
    UPSTREAM_URL=http://127.0.0.1:18082 UPSTREAM_PATHS=/shop UPSTREAM_CONCERT_ID="$concert" \
    UPSTREAM_IDENTITY_KEY="bench-identity-key-0123456789abcdef" "$bin/queuegate" serve &
  proxy_pids+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/18081) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/18082) 2>/dev/null && break
    sleep 0.2
  done
  PROXY_ARGS=(--addr 127.0.0.1:18081 --origin 127.0.0.1:18082 --concert "$concert" --path /shop/index.html)
  echo "# proxy: nginx pid ${proxy_pids[0]} on 18082, gateway-mode pid ${proxy_pids[1]} on 18081, concert $concert"
}

status=0
for s in "${scenarios[@]}"; do
  if [ "$s" = proxy ]; then
    [ -n "${proxy_tmp:-}" ] || start_proxy
    # shellcheck disable=SC2086
    "$bin/queuegate-load" proxy "${PROXY_ARGS[@]}" --gateway-pid "${proxy_pids[1]}" ${LOAD_ARGS:-} || status=1
    echo
    continue
  fi
  # shellcheck disable=SC2086
  "$bin/queuegate-load" "$s" --gateway-pid "$gw" ${LOAD_ARGS:-} || status=1
  echo
done
exit $status
