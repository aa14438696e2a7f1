#!/usr/bin/env bash
# The gateway's own work per request, in instructions: the same scenario as cpu-split.sh, with
# the gateway run under valgrind's callgrind, counting only while the load tool measures.
#
# Usage: scripts/instr-split.sh <scenario> [queuegate-load options], e.g.
#   scripts/instr-split.sh baseline --requests 20000
#   scripts/instr-split.sh poll --requests 20000 --users 2000
#   scripts/instr-split.sh join --users 5000
#   scripts/instr-split.sh proxy --connections 16 --duration 6
#
# `proxy` runs the gateway in gateway mode in front of an nginx origin (scripts/origin-nginx.sh)
# guarding concert 1 of its fresh database, and counts per forwarded request: the load tool's
# proxy scenario alternates direct and gated phases, so the count covers the requests the
# gateway answered with route "gateway" while counting was on (from its access log).
# Why: CPU time on a shared or virtualised 2-core machine moves by a quarter between two runs of
# the same build, which hides a change of a few per cent. callgrind counts the instructions the
# gateway's process executes in user space — the same count for the same build and requests,
# whatever else the machine does — so two builds are compared exactly (`GATEWAY_BIN`, as in
# cpu-split.sh). It does not see the kernel (system calls, wake-ups), nor Redis: those are what
# cpu-split.sh's microseconds add. Under callgrind the gateway runs ~50× slower, so keep the
# counts small; its two worker threads take turns, so coalesced batches run larger than natively.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "instr-split needs valgrind (apt-get install valgrind)" >&2; exit 2; }
bin="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}/release"
gateway_bin="${GATEWAY_BIN:-$bin/queuegate}"
port=${BENCH_PORT:-18094}
export ADMIN_TOKEN="bench-admin-token-0123456789" JWT_SECRET="bench-secret-bench-secret-bench-secret" QG_ADDR=127.0.0.1:$port
db=queuegate_instr
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
work=$(mktemp -d -t queuegate-instr-XXXX)
origin=""
gateway_env=()
load_args=("$@")
if [ "${1:-}" = proxy ]; then
  origin_port=$((port + 2))
  mkdir -p "$work/www/shop"
  printf '<!doctype html><title>Shop</title><p>%s</p>\n' "$(printf 'A small static shop page. %.0s' $(seq 1 20))" >"$work/www/shop/index.html"
  bash scripts/origin-nginx.sh "$origin_port" "$work/www" "$work/nginx" &
  origin=$!
  # The database is fresh, so the first concert made below is concert 1.
  gateway_env=(UPSTREAM_URL="http://127.0.0.1:$origin_port" UPSTREAM_PATHS=/shop UPSTREAM_CONCERT_ID=1
    UPSTREAM_IDENTITY_KEY="bench-identity-key-0123456789abcdef")
  load_args+=(--origin "127.0.0.1:$origin_port" --concert 1 --path /shop/index.html)
fi
# Defaults as shipped (request log on, to a file), as in cpu-split.sh; BENCH_ENV="KEY=value …"
# changes them (e.g. BENCH_ENV="UPSTREAM_GRANT_CACHE_MS=0").
# shellcheck disable=SC2086
env DATABASE_URL="mysql://root@127.0.0.1:3306/$db" LISTEN_ADDR=$QG_ADDR REDIS_KEY_PREFIX="qginstr$$" "${gateway_env[@]}" ${BENCH_ENV:-} \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
  "$gateway_bin" serve 2>"$work/gateway.log" &
gw=$!
trap 'kill $gw $origin 2>/dev/null; wait $gw $origin 2>/dev/null; redis-cli --scan --pattern "qginstr$$*" | xargs -r -n 1000 redis-cli del >/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
if [ -n "$origin" ]; then
  curl -fsS -X POST "http://$QG_ADDR/v1/admin/concerts" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' \
    -d '{"name": "proxy instr", "schedules": [{"starts_at": "2031-06-01T19:30:00Z", "price": 100}]}' >/dev/null
fi
forwards() { grep -c 'route="gateway"' "$work/gateway.log" || true; }
out="$work/load.txt"
"$bin/queuegate-load" "${load_args[@]}" >"$out" &
lt=$!
# Count from the moment the load tool starts its measured phase to the moment it ends.
for _ in $(seq 1 6000); do
  grep -q "^measuring" "$out" && break
  kill -0 $lt 2>/dev/null || break
  sleep 0.1
done
callgrind_control -i on $gw >/dev/null 2>&1
forwarded_before=$(forwards)
# (proxy's verdict fails under callgrind's slowness: only the counts matter here.)
wait $lt || [ -n "$origin" ] || { cat "$out" >&2; exit 1; }
callgrind_control -i off $gw >/dev/null 2>&1
callgrind_control -d $gw >/dev/null 2>&1
if [ -n "$origin" ]; then
  # Access lines reach the file within milliseconds (the log's gather time): count once the
  # count has stopped growing.
  counted=-1
  while [ "$counted" != "$(forwards)" ]; do counted=$(forwards); sleep 0.2; done
  requests=$((counted - forwarded_before))
else
  requests=$(grep -oE "^requests [0-9]+" "$out" | grep -oE "[0-9]+" | head -1)
fi
# The dump holds what was counted while instrumentation was on (nothing is counted before).
instr=$(cat "$work"/callgrind.out* | awk '/^totals:/ {s += $2} END {print s + 0}')
grep -E "req/s|latency|status" "$out"
awk -v i="$instr" -v r="$requests" 'BEGIN { printf "gateway user-space instructions: %d over %d requests = %.0f per request\n", i, r, i / r }'
# INSTR_KEEP=<file> keeps the profile (callgrind_annotate it, or compare two scenarios' files).
[ -z "${INSTR_KEEP:-}" ] || cp "$(ls "$work"/callgrind.out* | tail -1)" "$INSTR_KEEP"
if [ -n "${INSTR_TOP:-}" ]; then
  callgrind_annotate --inclusive=no "$(ls "$work"/callgrind.out* | tail -1)" 2>/dev/null | sed -n 1,"$((INSTR_TOP + 25))"p
fi
