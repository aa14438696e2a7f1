#!/usr/bin/env bash
# How long one big admission tick holds the line's Redis shard: USERS fans wait (default
# 30,000), then the operator sets admit_per_tick to ADMIT (default 25,000) with room for all of
# them; once they are in, Redis's SLOWLOG says how long the longest script call took and how
# many calls took over 1 ms and over 10 ms. Every other command of the shard (every poll and
# join of every line on it) waits while a call runs.
#
# Usage: scripts/tick-stall.sh [users] [admit]   (needs a release build: scripts/bench.sh
# builds one; GATEWAY_BIN=<file> measures another build of the gateway, as in cpu-split.sh)
#
# It changes the shared Redis's slowlog settings for the run (threshold 1 ms, 1,024 entries)
# and puts the defaults back (10 ms, 128) when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}/release"
gateway_bin="${GATEWAY_BIN:-$bin/queuegate}"
users=${1:-30000}
admit=${2:-25000}
port=${BENCH_PORT:-18096}
export ADMIN_TOKEN="bench-admin-token-0123456789" JWT_SECRET="bench-secret-bench-secret-bench-secret" QG_ADDR=127.0.0.1:$port
db=queuegate_stall
prefix="qgstall$$"
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
work=$(mktemp -d -t queuegate-stall-XXXX)
env DATABASE_URL="mysql://root@127.0.0.1:3306/$db" LISTEN_ADDR=$QG_ADDR REDIS_KEY_PREFIX=$prefix \
  "$gateway_bin" serve 2>"$work/gateway.log" &
gw=$!
cleanup() {
  kill $gw 2>/dev/null
  wait $gw 2>/dev/null
  redis-cli CONFIG SET slowlog-log-slower-than 10000 >/dev/null
  redis-cli CONFIG SET slowlog-max-len 128 >/dev/null
  redis-cli --scan --pattern "$prefix*" | xargs -r -n 1000 redis-cli del >/dev/null
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
concert=$("$bin/queuegate-load" waiting --users "$users" --out "$work/tokens" |
  awk '/^waiting: concert/ { print $3 }')
[ -n "$concert" ] || { echo "tick-stall: could not fill the line" >&2; exit 1; }
admin() {
  curl -fsS -X "$1" "http://$QG_ADDR/v1/admin/concerts/$concert/queue" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' ${2:+-d "$2"}
}
redis-cli CONFIG SET slowlog-log-slower-than 1000 >/dev/null
redis-cli CONFIG SET slowlog-max-len 1024 >/dev/null
redis-cli SLOWLOG RESET >/dev/null
started=$(date +%s%N)
admin PUT "{\"admit_per_tick\": $admit, \"max_active\": $((admit * 2))}" >/dev/null
admitted=0
for _ in $(seq 1 600); do
  admitted=$(admin GET | grep -oE '"admitted":[0-9]+' | grep -oE '[0-9]+')
  [ "$admitted" -ge "$admit" ] && break
  sleep 0.1
done
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "commit $(git rev-parse --short HEAD), gateway $gateway_bin"
echo "$users waiting, admit_per_tick $admit: $admitted admitted within $took_ms ms of the change"
# One line per slow call: id,time,µs,"command",args… — this run's script calls only.
# This run's script calls from the SLOWLOG (redis-cli flattens its nested entries onto one line,
# so they are read with lua-bench.py's RESP client).
python3 - "$prefix" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("lua_bench", "scripts/lua-bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
prefix = sys.argv[1].encode()
entries = bench.Redis(6379).call("SLOWLOG", "GET", 1024)
calls = [int(e[2]) for e in entries if e[3][0].lower() == b"evalsha" and any(prefix in a for a in e[3])]
print("script calls over 1 ms: %d (over 10 ms: %d), %.1f ms in all; longest %.2f ms"
      % (len(calls), sum(c > 10000 for c in calls), sum(calls) / 1000, max(calls, default=0) / 1000))
PY
[ "$admitted" -ge "$admit" ]
