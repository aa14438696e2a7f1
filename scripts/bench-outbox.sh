#!/usr/bin/env bash
# What the outbox relay costs: the `flow` scenario against a fresh release gateway with the relay
# on and off (OUTBOX_RELAY), alternating, ROUNDS times each, in one run. The outbox rows are
# written either way; only carrying them out (revoke + publish) is switched off. After each run
# with the relay on, the outbox is waited for until empty and `queuegate check` verifies the
# events stream against the database (one payment.completed per payment, one reservation.held
# per reservation, …). After each run with the relay off, the gateway is restarted with the
# relay on and the backlog's drain is timed (the relay's throughput and CPU cost on its own).
#
# Usage: scripts/bench-outbox.sh [ROUNDS]   (default 3; extra queuegate-load options in LOAD_ARGS)
# Each gateway gets its own database, key prefix and free port, and is stopped by its PID; the
# database and keys are removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
bash scripts/services.sh
cargo build --release --locked --bin queuegate --bin queuegate-load
bin="$CARGO_TARGET_DIR/release"
rounds="${1:-3}"

export ADMIN_TOKEN="bench-admin-token-0123456789"
export JWT_SECRET="bench-secret-bench-secret-bench-secret"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export QG_ADDR="127.0.0.1:$port"
ulimit -n 20000 2>/dev/null || true

gw="" db="" prefix=""
stop_gateway() {
  if [ -n "$gw" ]; then
    kill "$gw" 2>/dev/null || true
    wait "$gw" 2>/dev/null || true
    gw=""
  fi
  if [ -n "$db" ]; then
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$db\`" || true
    db=""
  fi
  if [ -n "$prefix" ]; then
    for pattern in "$prefix:*" "{$prefix:events}*"; do
      redis-cli --scan --pattern "$pattern" | xargs -r -n 1000 redis-cli del >/dev/null || true
    done
    prefix=""
  fi
}
trap stop_gateway EXIT

results=() drains=()
run() {
  local relay=$1 round=$2
  db="qg_bench_outbox_$$_${round}_$relay"
  prefix="qgbo$$r$round$relay"
  export DATABASE_URL="mysql://root@127.0.0.1:3306/$db"
  LISTEN_ADDR="$QG_ADDR" REDIS_KEY_PREFIX="$prefix" OUTBOX_RELAY="$relay" QUEUE_IDLE_SECS=3600 \
    RUST_LOG=warn RATE_JOIN_PER_MIN=0 RATE_CHARGE_PER_MIN=0 RATE_HOLD_PER_MIN=0 \
    DATABASE_MAX_CONNECTIONS=40 "$bin/queuegate" serve &
  gw=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  echo "## round $round, OUTBOX_RELAY=$relay (gateway pid $gw)"
  local out
  # shellcheck disable=SC2086
  out=$("$bin/queuegate-load" flow --gateway-pid "$gw" ${LOAD_ARGS:-}) || true
  echo "$out"
  local line
  line=$(grep '^journeys' <<<"$out" || echo "journeys ? = ? journeys/s")
  results+=("$relay round $round: $line")
  if [ "$relay" = on ]; then
    local waiting=1
    for _ in $(seq 1 300); do
      waiting=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT COUNT(*) FROM \`$db\`.outbox WHERE relayed_at IS NULL")
      [ "$waiting" = 0 ] && break
      sleep 0.2
    done
    echo "outbox after the run: $waiting events waiting"
    REDIS_KEY_PREFIX="$prefix" "$bin/queuegate" check
  else
    drain
  fi
  stop_gateway
  echo
}

# After a run with the relay off, its events all wait in the outbox: restart the gateway with
# the relay on and time how long they take to go out, and the gateway's CPU time meanwhile.
drain() {
  kill "$gw" 2>/dev/null || true
  wait "$gw" 2>/dev/null || true
  local waiting
  waiting=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT COUNT(*) FROM \`$db\`.outbox WHERE relayed_at IS NULL")
  LISTEN_ADDR="$QG_ADDR" REDIS_KEY_PREFIX="$prefix" OUTBOX_RELAY=on RUST_LOG=warn \
    "$bin/queuegate" serve &
  gw=$!
  local cpu0 t0 left=1
  cpu0=$(awk '{print $14 + $15}' "/proc/$gw/stat")
  t0=$(date +%s.%N)
  for _ in $(seq 1 600); do
    left=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT COUNT(*) FROM \`$db\`.outbox WHERE relayed_at IS NULL" 2>/dev/null || echo 1)
    [ "$left" = 0 ] && break
    sleep 0.05
  done
  local secs cpu
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  cpu=$(awk -v c0="$cpu0" -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 - c0) / hz}' "/proc/$gw/stat")
  # The relay's own pace, from its marks: the events marked after its first batch's commit,
  # over the time from that commit to the last.
  local pace
  pace=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT CONCAT(COUNT(*), ' events in ',
      ROUND(TIMESTAMPDIFF(MICROSECOND, f.t, MAX(o.relayed_at)) / 1e6, 3), ' s = ',
      ROUND(COUNT(*) / (TIMESTAMPDIFF(MICROSECOND, f.t, MAX(o.relayed_at)) / 1e6)), ' events/s')
    FROM \`$db\`.outbox o, (SELECT MIN(relayed_at) AS t FROM \`$db\`.outbox) f
    WHERE o.relayed_at > f.t")
  echo "drain: $waiting waiting events relayed ${secs} s after the gateway was started (left: $left);" \
    "gateway CPU ${cpu} s, start-up included; the relay's pace after its first batch: $pace"
  drains+=("round $round: $waiting events out ${secs} s after start, CPU ${cpu} s; pace $pace")
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
# ABBA order (on, off, off, on, …) so a machine getting busier or quieter during the run does
# not favour one side.
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    run on "$round"
    run off "$round"
  else
    run off "$round"
    run on "$round"
  fi
done
echo "== summary =="
printf '%s\n' "${results[@]}"
echo "== backlog drains (the events of a relay-off run, relayed by a fresh gateway) =="
printf '%s\n' "${drains[@]}"
