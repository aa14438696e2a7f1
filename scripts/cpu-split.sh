#!/usr/bin/env bash
# CPU share per process during one load scenario: gateway, Redis, MariaDB, load tool.
# Usage: scripts/cpu-split.sh <scenario> [queuegate-load options], e.g.
#   scripts/cpu-split.sh poll --requests 400000
# Samples /proc/<pid>/stat over 4 s in the middle of the run (needs a release build:
# scripts/bench.sh builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}/release"
export ADMIN_TOKEN="bench-admin-token-0123456789" JWT_SECRET="bench-secret-bench-secret-bench-secret" QG_ADDR=127.0.0.1:18080
db=queuegate_cpu
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
DATABASE_URL="mysql://root@127.0.0.1:3306/$db" LISTEN_ADDR=$QG_ADDR REDIS_KEY_PREFIX="qgcpu$$" QUEUE_IDLE_SECS=3600 \
  RUST_LOG=warn RATE_JOIN_PER_MIN=0 RATE_CHARGE_PER_MIN=0 RATE_HOLD_PER_MIN=0 "$bin/queuegate" serve &
gw=$!
trap 'kill $gw; wait $gw 2>/dev/null; redis-cli --scan --pattern "qgcpu$$*" | xargs -r -n 1000 redis-cli del >/dev/null' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.2; done
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
redis=$(pgrep -x redis-server | head -1)
maria=$(pgrep -x mariadbd | head -1)
out=$(mktemp)
"$bin/queuegate-load" "$@" > "$out" &
lt=$!
sleep 2.5
g0=$(ticks $gw); r0=$(ticks "$redis"); m0=$(ticks "$maria"); l0=$(ticks $lt)
sleep 4
g1=$(ticks $gw); r1=$(ticks "$redis"); m1=$(ticks "$maria"); l1=$(ticks $lt)
wait $lt || true
echo "cpu % of one core over 4 s: gateway $(( (g1-g0)/4 ))  redis $(( (r1-r0)/4 ))  mariadb $(( (m1-m0)/4 ))  load $(( (l1-l0)/4 ))"
grep -E "req/s|latency" "$out"
rm -f "$out"
