#!/usr/bin/env bash
# CPU share per process during one load scenario: gateway, Redis, MariaDB, load tool.
# Usage: scripts/cpu-split.sh <scenario> [queuegate-load options], e.g.
#   scripts/cpu-split.sh poll --requests 400000
# The measured phase must outlast the 4 s sample plus a second (e.g. join --users 200000).
# Samples /proc/<pid>/stat over 4 s in the middle of the run (needs a release build:
# scripts/bench.sh builds one).
#
# `scripts/cpu-split.sh wrk-poll` measures the status poll with a second, independent client:
# the load tool's `waiting` scenario makes WRK_USERS (default 1,000) waiting users, then
# `wrk -t1 -c64` polls /v1/queue/status for 12 s rotating through their queue tokens.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}/release"
# GATEWAY_BIN measures another build of the gateway (e.g. an older commit's) with this load tool.
gateway_bin="${GATEWAY_BIN:-$bin/queuegate}"
export ADMIN_TOKEN="bench-admin-token-0123456789" JWT_SECRET="bench-secret-bench-secret-bench-secret" QG_ADDR=127.0.0.1:${BENCH_PORT:-18090}
db=queuegate_cpu
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
# Defaults as shipped (request log on, to a file); BENCH_ENV="KEY=value …" adds settings.
log_file=$(mktemp -t queuegate-cpu-XXXX.log)
# shellcheck disable=SC2086
env DATABASE_URL="mysql://root@127.0.0.1:3306/$db" LISTEN_ADDR=$QG_ADDR REDIS_KEY_PREFIX="qgcpu$$" \
  ${BENCH_ENV:-} "$gateway_bin" serve 2>"$log_file" &
gw=$!
trap 'kill $gw; wait $gw 2>/dev/null; redis-cli --scan --pattern "qgcpu$$*" | xargs -r -n 1000 redis-cli del >/dev/null' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/${BENCH_PORT:-18090}") 2>/dev/null && break; sleep 0.2; done
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
# The gateway's user ticks, system ticks and minor page faults (stat fields 14, 15, 10), and its
# threads' context switches: on a guest where a page fault or a wake-up is dear, these explain
# CPU time that instruction counts do not.
detail() {
  awk '{printf "%d %d %d ", $14, $15, $10}' "/proc/$1/stat"
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n}'
}
# The servers the gateway talks to: Redis on 6379 and MariaDB on 3306 (not any other).
redis=$(redis-cli -p 6379 info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
maria=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT @@pid_file" 2>/dev/null | xargs -r cat 2>/dev/null || pgrep -xo mariadbd)
out=$(mktemp)
if [ "${1:-}" = wrk-poll ]; then
  command -v wrk >/dev/null || { echo "wrk-poll needs wrk (apt-get install wrk)" >&2; exit 2; }
  tokens=$(mktemp) lua=$(mktemp --suffix .lua)
  "$bin/queuegate-load" waiting --users "${WRK_USERS:-1000}" --out "$tokens" | grep -E "^waiting|verdict"
  cat >"$lua" <<LUA
local tokens, i = {}, 0
for line in io.lines("$tokens") do tokens[#tokens + 1] = line end
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/v1/queue/status", { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
  wrk -t1 -c64 -d12s --latency -s "$lua" "http://$QG_ADDR" > "$out" &
  lt=$!
else
  "$bin/queuegate-load" "$@" > "$out" &
  lt=$!
fi
# Sample only the measured phase, not the scenario's setup: the load tool prints "measuring"
# when it starts (wrk starts measuring at once); skip its first second (connections opening).
for _ in $(seq 1 3000); do
  { [ "${1:-}" = wrk-poll ] || grep -q "^measuring" "$out"; } && break
  kill -0 $lt 2>/dev/null || break
  sleep 0.1
done
sleep 1
gd0=$(detail $gw); g0=$(ticks $gw); r0=$(ticks "$redis"); m0=$(ticks "$maria"); l0=$(ticks $lt)
# PERF_OUT=<file>: also sample the gateway (user and kernel) during the 4 s, with the software
# clock (perf's hardware counters are often missing in a guest); read it with `perf report -i`.
# PERF_OPTS replaces the sampling options, e.g. "-F 499 --call-graph dwarf" for whole stacks
# (the release build has no frame pointers, so plain -g stacks stop at the first frame).
if [ -n "${PERF_OUT:-}" ]; then
  # shellcheck disable=SC2086
  perf record -q -e cpu-clock ${PERF_OPTS:--F 2999 -g} -p $gw -o "$PERF_OUT" -- sleep 4 2>/dev/null
else
  sleep 4
fi
if ! kill -0 $lt 2>/dev/null; then
  cat "$out" >&2
  echo "cpu-split: the load ended before the 4 s sample did; give it more --requests or --users" >&2
  exit 1
fi
gd1=$(detail $gw); g1=$(ticks $gw); r1=$(ticks "$redis"); m1=$(ticks "$maria"); l1=$(ticks $lt)
wait $lt || true
echo "cpu % of one core over 4 s: gateway $(( (g1-g0)/4 ))  redis $(( (r1-r0)/4 ))  mariadb $(( (m1-m0)/4 ))  load $(( (l1-l0)/4 ))"
read -r gu0 gs0 gf0 gc0 <<<"$gd0"; read -r gu1 gs1 gf1 gc1 <<<"$gd1"
echo "gateway over 4 s: user $((gu1-gu0)) system $((gs1-gs0)) ticks, minor faults $((gf1-gf0)), context switches $((gc1-gc0))"
grep -E "req/s|Requests/sec|latency|Latency|99%|Non-2xx" "$out"
rm -f "$out"
