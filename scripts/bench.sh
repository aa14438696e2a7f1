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
#
# `proxy` (gateway mode, explicit only) also starts an nginx origin on port+2 serving a static
# page and a gateway-mode instance on port+1 in front of it (same settings and BENCH_ENV as the
# main gateway, its log beside the main one), and compares the two; nginx as a plain reverse
# proxy on port+3, in front of the same origin, is measured beside them as a yardstick.
# BENCH_ORIGIN_TLS=1 has the gateway-mode instance reach that origin over https (port+6, a CA
# made for the run) while the direct and reference rounds stay on plain HTTP.
#
# `tunnel` (gateway mode's WebSockets, explicit only) starts a gateway-mode instance on port+5
# whose origin is the load tool itself (a WebSocket echo on port+4).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
bash scripts/services.sh
cargo build --release --locked --bin queuegate --bin queuegate-load
bin="$CARGO_TARGET_DIR/release"
# GATEWAY_BIN measures another build of the gateway (e.g. an older commit's) with this load tool.
gateway_bin="${GATEWAY_BIN:-$bin/queuegate}"

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
env LISTEN_ADDR="$QG_ADDR" REDIS_KEY_PREFIX="$prefix" ${BENCH_ENV:-} "$gateway_bin" serve 2>"$log_file" &
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
  if [ "${BENCH_REDIS:-single}" = cluster ]; then bash scripts/redis-topology.sh down cluster || true; fi
  echo "gateway log: $log_file ($(wc -l <"$log_file") lines)"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, gateway pid $gw, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), queue Redis ${BENCH_REDIS:-single}, extra env: ${BENCH_ENV:-none}"
# Gateway mode's scenarios (`proxy`, `tunnel`) each run a gateway-mode instance of their own
# beside the main gateway (same database, key prefix and BENCH_ENV), guarding a new concert.
ports_free() {
  local what=$1 p
  shift
  for p in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "bench: $what needs 127.0.0.1:$p, which is taken (set BENCH_PORT)" >&2
      return 1
    fi
  done
}
# Prints the id of a new concert named $1.
bench_concert() {
  curl -fsS -X POST "http://$QG_ADDR/v1/admin/concerts" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\": \"$1\", \"schedules\": [{\"starts_at\": \"2031-06-01T19:30:00Z\", \"price\": 100}]}" |
    sed -E 's/.*"concert_id":([0-9]+).*/\1/'
}
# start_gateway_mode PORT ORIGIN_URL PATHS CONCERT LOG [CA_FILE]: its PID in GATEWAY_MODE_PID,
# stopped with the rest.
start_gateway_mode() {
  # shellcheck disable=SC2086
  env LISTEN_ADDR="127.0.0.1:$1" REDIS_KEY_PREFIX="$prefix" AUTO_MIGRATE=false \
    UPSTREAM_URL="$2" UPSTREAM_PATHS="$3" UPSTREAM_CONCERT_ID="$4" ${6:+UPSTREAM_CA_FILE="$6"} \
    UPSTREAM_IDENTITY_KEY="bench-identity-key-0123456789abcdef" ${BENCH_ENV:-} \
    "$gateway_bin" serve 2>"$5" &
  GATEWAY_MODE_PID=$!
  proxy_pids+=("$GATEWAY_MODE_PID")
}
# Waits until every given port answers.
wait_ports() {
  local p up
  for _ in $(seq 1 100); do
    up=1
    for p in "$@"; do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || up=0; done
    [ "$up" = 1 ] && return 0
    sleep 0.2
  done
}

# `proxy`: a static nginx origin, the gateway-mode instance in front of it, and nginx as a plain
# reverse proxy in front of the same origin (the yardstick).
start_proxy() {
  local gw_port=$((port + 1)) origin_port=$((port + 2)) reference_port=$((port + 3)) origin_pid reference_pid concert
  ports_free proxy "$gw_port" "$origin_port" "$reference_port" || return 1
  proxy_tmp=$(mktemp -d)
  mkdir -p "$proxy_tmp/www/shop"
  {
    echo '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body>'
    for i in $(seq 1 12); do echo "<p>Row $i of a small static shop page served by nginx.</p>"; done
    echo '</body></html>'
  } >"$proxy_tmp/www/shop/index.html"
  # BENCH_ORIGIN_TLS=1: the gateway reaches the same nginx over https on port+6 (the load tool
  # and the reference proxy still use its plain port), to measure what TLS to the origin costs.
  local origin_url="http://127.0.0.1:$origin_port" tls_port=$((port + 6)) ca=""
  if [ "${BENCH_ORIGIN_TLS:-0}" = 1 ]; then
    ports_free "proxy (https origin)" "$tls_port" || return 1
    ORIGIN_TLS_PORT=$tls_port bash scripts/origin-nginx.sh "$origin_port" "$proxy_tmp/www" "$proxy_tmp/nginx" &
    origin_url="https://127.0.0.1:$tls_port" ca="$proxy_tmp/nginx/ca.pem"
  else
    bash scripts/origin-nginx.sh "$origin_port" "$proxy_tmp/www" "$proxy_tmp/nginx" &
  fi
  origin_pid=$!
  proxy_pids+=("$origin_pid")
  # (The gateway reads the origin's CA at start: the origin must be up, its CA written.)
  [ -z "$ca" ] || wait_ports "$tls_port"
  bash scripts/origin-nginx.sh --proxy "$reference_port" "127.0.0.1:$origin_port" "$proxy_tmp/reference" &
  reference_pid=$!
  proxy_pids+=("$reference_pid")
  concert=$(bench_concert "proxy bench")
  start_gateway_mode "$gw_port" "$origin_url" /shop "$concert" "$log_file.proxy" "$ca"
  PROXY_GW_PID=$GATEWAY_MODE_PID
  PROXY_REFERENCE_PID=$reference_pid
  wait_ports "$gw_port" "$origin_port" "$reference_port"
  PROXY_ARGS=(--addr "127.0.0.1:$gw_port" --origin "127.0.0.1:$origin_port" --reference "127.0.0.1:$reference_port"
    --concert "$concert" --path /shop/index.html)
  echo "# proxy: nginx pid $origin_pid on $origin_port (the gateway's origin: $origin_url), reference proxy (nginx) pid $reference_pid on $reference_port, gateway-mode pid $PROXY_GW_PID on $gw_port (log $log_file.proxy), concert $concert"
}

# `tunnel`: the load tool itself is the origin (a WebSocket echo on BENCH_PORT + 4), behind a
# gateway-mode instance on BENCH_PORT + 5 guarding /live.
start_tunnel() {
  local gw_port=$((port + 5)) concert
  TUNNEL_ORIGIN="127.0.0.1:$((port + 4))"
  ports_free tunnel "$gw_port" "$((port + 4))" || return 1
  concert=$(bench_concert "tunnel bench")
  start_gateway_mode "$gw_port" "http://$TUNNEL_ORIGIN" /live "$concert" "$log_file.tunnel"
  TUNNEL_PID=$GATEWAY_MODE_PID
  wait_ports "$gw_port"
  TUNNEL_ARGS=(--addr "127.0.0.1:$gw_port" --origin "$TUNNEL_ORIGIN" --concert "$concert" --path /live)
  echo "# tunnel: gateway-mode pid $TUNNEL_PID on $gw_port (log $log_file.tunnel), echo origin (the load tool) on $TUNNEL_ORIGIN, concert $concert"
}

status=0
for s in "${scenarios[@]}"; do
  if [ "$s" = tunnel ]; then
    [ -n "${TUNNEL_PID:-}" ] || start_tunnel || { status=1; continue; }
    # shellcheck disable=SC2086
    "$bin/queuegate-load" tunnel "${TUNNEL_ARGS[@]}" --gateway-pid "$TUNNEL_PID" "${redis_args[@]}" ${LOAD_ARGS:-} || status=1
    echo
    continue
  fi
  if [ "$s" = proxy ]; then
    [ -n "${proxy_tmp:-}" ] || start_proxy || { status=1; continue; }
    # shellcheck disable=SC2086
    "$bin/queuegate-load" proxy "${PROXY_ARGS[@]}" --gateway-pid "$PROXY_GW_PID" --reference-pid "$PROXY_REFERENCE_PID" "${redis_args[@]}" ${LOAD_ARGS:-} || status=1
    echo
    continue
  fi
  # shellcheck disable=SC2086
  "$bin/queuegate-load" "$s" --gateway-pid "$gw" "${redis_args[@]}" ${LOAD_ARGS:-} || status=1
  echo
done
exit $status
