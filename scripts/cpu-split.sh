#!/usr/bin/env bash
# CPU share per process during one load scenario: gateway, Redis, MariaDB, load tool.
# Usage: scripts/cpu-split.sh <scenario> [queuegate-load options], e.g.
#   scripts/cpu-split.sh poll --requests 400000
# Samples /proc/<pid>/stat over 4 s in the middle of the run (needs a release build:
# scripts/bench.sh builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}/release"
export ADMIN_TOKEN="bench-admin-token-0123456789" JWT_SECRET="bench-secret-bench-secret-bench-secret" QG_ADDR=127.0.0.1:${BENCH_PORT:-18090}
db=queuegate_cpu
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
# Defaults as shipped (request log on, to a file); BENCH_ENV="KEY=value …" adds settings.
log_file=$(mktemp -t queuegate-cpu-XXXX.log)
# shellcheck disable=SC2086
env DATABASE_URL="mysql://root@127.0.0.1:3306/$db" LISTEN_ADDR=$QG_ADDR REDIS_KEY_PREFIX="qgcpu$$" \
  ${BENCH_ENV:-} "$bin/queuegate" serve 2>"$log_file" &
gw=$!
trap 'kill $gw; wait $gw 2>/dev/null; redis-cli --scan --pattern "qgcpu$$*" | xargs -r -n 1000 redis-cli del >/dev/null' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${BENCH_PORT:-18090}") 2>/dev/null && break; sleep 0.2; done
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The servers the gateway talks to: Redis on 6379 and MariaDB on 3306 (not any other).
redis=$(redis-cli -p 6379 info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
maria=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT @@pid_file" 2>/dev/null | xargs -r cat 2>/dev/null || pgrep -xo mariadbd)
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
