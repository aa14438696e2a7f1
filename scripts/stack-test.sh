#!/usr/bin/env bash
# The stack, run for real. Stages:
#   0. alert rules: promtool check + unit tests (scripts/alerts-test.sh);
#   1. scripts/stack.sh up on a fresh run directory;
#   2. the load tool's `flow` scenario through nginx, sampling the replica's lag meanwhile; then
#      a little of the other traffic kinds (event streams, a one-seat rush, fans leaving);
#   3. listings are served by the replica: seat-map reads move the replica's statement counters
#      and not the primary's (each compared with an idle window of the same length);
#   4. faults, each stopped by PID, and the alerts they must fire (in Prometheus and in
#      Alertmanager): one lock master -> QueuegateRedlockMasterDown; a second one, with a small
#      sale that must still pass -> QueuegateRedlockQuorumLost, QueuegateLockFallbackInUse; in
#      gateway mode, an admitted visitor reaches the demo shop through gateway-shop, then the
#      shop stops -> 502s and QueuegateOriginFailing; the primary for a moment (holds answer
#      5xx), after which `stack.sh up` restarts what is down;
#   5. every PromQL expression of grafana/dashboards/*.json sent to Prometheus: each must
#      return data;
#   6. scripts/stack.sh down, and no process it started is left, no port open.
# Prints each stage's time and a summary. Exit 0 only when every check passed. About 6 minutes
# on 2 cores once the binaries are built (the alerts' `for:` durations are half of it).
#
# Environment: STACK_DIR (default ${XDG_RUNTIME_DIR:-/tmp}/queuegate-stack-test), the STACK_*
# ports of scripts/stack.sh, FLOW_USERS (default 1000), LISTING_READS (default 3000),
# ALERT_TIMEOUT (seconds to wait for an alert, default 240), KEEP_STACK=1 (leave it running).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

export STACK_DIR=${STACK_DIR:-${XDG_RUNTIME_DIR:-/tmp}/queuegate-stack-test}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
HOST=127.0.0.1
P_NGINX=${STACK_NGINX_PORT:-8088}
P_PROM=${STACK_PROMETHEUS_PORT:-9090}
P_AM=${STACK_ALERTMANAGER_PORT:-9093}
P_PRIMARY=${STACK_MYSQL_PRIMARY_PORT:-13306}
PROM="http://$HOST:$P_PROM"
FLOW_USERS=${FLOW_USERS:-1000}
LISTING_READS=${LISTING_READS:-3000}
ALERT_TIMEOUT=${ALERT_TIMEOUT:-240}
ADMIN_TOKEN=${ADMIN_TOKEN:-queuegate-demo-admin-token}
JWT_SECRET=${JWT_SECRET:-queuegate-demo-jwt-secret-0123456789abcdef}
export ADMIN_TOKEN JWT_SECRET
# Every mode the dashboards show runs here (gateway mode as gateway-shop, whose visitor comes
# before stage 5), so no panel may be empty: none is excused as "mode off". (Gateway mode's
# upstream histogram was excused once, and so hid that it recorded nothing.)
MODE_OFF_METRICS=""

log() { printf '[stack-test] %s\n' "$*"; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)
STAGE="" STAGE_T0=""
TIMES=()
stage() {
  stage_end
  STAGE=$1 STAGE_T0=$(now)
  printf '\n[stack-test] ==== %s\n' "$1"
}
stage_end() {
  if [ -n "$STAGE" ]; then
    local t
    t=$(elapsed "$STAGE_T0")
    TIMES+=("$(printf '%7.1f s  %s' "$t" "$STAGE")")
    log "---- $STAGE: $t s"
  fi
  STAGE=""
}
FAILURES=()
check() { # check DESCRIPTION CONDITION...: records a failure instead of stopping
  local what=$1
  shift
  if "$@"; then log "PASS  $what"; else log "FAIL  $what"; FAILURES+=("$what"); fi
}
sql() { mariadb --no-defaults --socket="$STACK_DIR/$1/mysqld.sock" -uroot -N -B -e "$2"; }
prom_value() { # prom_value EXPR: the first sample's value, or empty
  curl -fsS -m 5 "$PROM/api/v1/query" --data-urlencode "query=$1" | jq -r '.data.result[0].value[1] // empty'
}
PY=/usr/bin/python3
/usr/bin/python3 -c 'import yaml' 2>/dev/null || PY=python3
helper() { "$PY" "$ROOT/scripts/stack_helper.py" "$@"; }

SAMPLER=""
STARTED_SESSIONS=()
cleanup() {
  [ -z "$SAMPLER" ] || kill "$SAMPLER" 2>/dev/null || true
  [ -z "${SHOP_LOAD:-}" ] || kill "$SHOP_LOAD" 2>/dev/null || true
  if [ "${KEEP_STACK:-0}" != 1 ] && [ -d "$STACK_DIR/pids" ] && [ -z "${DOWN_DONE:-}" ]; then
    log "cleaning up: scripts/stack.sh down"
    bash scripts/stack.sh down || true
  fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ 0. alert rules
stage "alert rules (scripts/alerts-test.sh)"
check "promtool check + test rules" bash scripts/alerts-test.sh

# ------------------------------------------------------------------ 1. up
stage "stack.sh up (fresh run dir $STACK_DIR)"
if [ -d "$STACK_DIR/pids" ]; then
  log "a stack is left in $STACK_DIR: stopping it first"
  bash scripts/stack.sh down --purge
fi
bash scripts/stack.sh up
STARTUP=$(cat "$STACK_DIR/startup-seconds")
for f in "$STACK_DIR"/pids/*.pid; do
  read -r pid _ <"$f"
  STARTED_SESSIONS+=("$pid")
done
log "started ${#STARTED_SESSIONS[@]} processes (session leaders): ${STARTED_SESSIONS[*]}"

# ------------------------------------------------------------------ 2. flow through nginx
stage "flow scenario through nginx ($FLOW_USERS users), replica lag sampled"
# Lag sampler: Seconds_Behind_Master and how many transactions the replica's applied GTID is
# behind the primary's binlog, every 0.25 s.
lag_file="$STACK_DIR/replica-lag.tsv"
(
  while :; do
    sbm=$(mariadb --no-defaults --socket="$STACK_DIR/mysql-replica/mysqld.sock" -uroot -e 'SHOW REPLICA STATUS\G' 2>/dev/null |
      awk -F': ' '/Seconds_Behind_Master/ {print $2}')
    p=$(sql mysql-primary 'SELECT @@gtid_binlog_pos' 2>/dev/null)
    r=$(sql mysql-replica 'SELECT @@gtid_slave_pos' 2>/dev/null)
    printf '%s\t%s\t%s\n' "${sbm:-NULL}" "${p##*-}" "${r##*-}"
    sleep 0.25
  done
) >"$lag_file" &
SAMPLER=$!
flow_ok=1
"$CARGO_TARGET_DIR/${STACK_PROFILE:-release}/queuegate-load" flow --addr "$HOST:$P_NGINX" --users "$FLOW_USERS" \
  --admin-token "$ADMIN_TOKEN" \
  --database-url "mysql://queuegate:queuegate@$HOST:$P_PRIMARY/queuegate" | tee "$STACK_DIR/flow.out" || flow_ok=0
# How long the replica needs to apply what the primary wrote during the flow.
ct0=$(now)
pos=$(sql mysql-primary 'SELECT @@gtid_binlog_pos')
sql mysql-replica "SELECT MASTER_GTID_WAIT('$pos', 120)" >/dev/null
CATCHUP=$(elapsed "$ct0")
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
SAMPLER=""
check "flow scenario passes (every fan paid, invariants hold)" [ $flow_ok = 1 ]
read -r LAG_MAX_S LAG_MAX_TX LAG_SAMPLES < <(awk -F'\t' '
  { n++; if ($1 != "NULL" && $1 + 0 > s) s = $1 + 0; d = $2 - $3; if ($2 != "" && $3 != "" && d > t) t = d }
  END { printf "%d %d %d\n", s, t, n }' "$lag_file")
check "replica lag was measured (Seconds_Behind_Master sampled)" grep -qvP '^NULL\t' "$lag_file"
log "replica lag during the flow: max Seconds_Behind_Master ${LAG_MAX_S} s, max ${LAG_MAX_TX} transactions behind ($LAG_SAMPLES samples); caught up ${CATCHUP} s after the flow ended"
FLOW_LINE=$(grep -E '^journeys' "$STACK_DIR/flow.out" || true)
# The gateways' own view, once they export it (a metric being added in src/).
sleep 5
PROM_LAG=$(prom_value 'max(max_over_time(queuegate_db_replica_lag_seconds[5m]))')
[ -z "$PROM_LAG" ] || log "queuegate_db_replica_lag_seconds: max $PROM_LAG s over the flow"

# A few more kinds of traffic, so that panels about them have data: fans leaving the line,
# event streams (the sse scenario), a rush on one seat (seat-board rejections).
"$CARGO_TARGET_DIR/${STACK_PROFILE:-release}/queuegate-load" sse --addr "$HOST:$P_NGINX" --users 200 --duration 3 \
  --admin-token "$ADMIN_TOKEN" --jwt-secret "$JWT_SECRET" >"$STACK_DIR/sse.out" 2>&1 ||
  log "note: sse scenario did not pass (see $STACK_DIR/sse.out)"
"$CARGO_TARGET_DIR/${STACK_PROFILE:-release}/queuegate-load" rush-one --addr "$HOST:$P_NGINX" --users 200 \
  --admin-token "$ADMIN_TOKEN" --jwt-secret "$JWT_SECRET" >"$STACK_DIR/rush.out" 2>&1 ||
  log "note: rush-one scenario did not pass (see $STACK_DIR/rush.out)"
concert=$(cat "$STACK_DIR/demo-concert-id")
for i in 1 2 3; do
  tok=$(curl -fsS -X POST "http://$HOST:$P_NGINX/v1/users" -H 'Content-Type: application/json' \
    -d "{\"name\":\"leaver $i\"}" | jq -r .user_token)
  qt=$(curl -fsS -X POST "http://$HOST:$P_NGINX/v1/queue" -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/json' -d "{\"concert_id\":$concert}" | jq -r .queue_token)
  curl -fsS -o /dev/null -X DELETE "http://$HOST:$P_NGINX/v1/queue" -H "Authorization: Bearer $qt"
done
# A path no route matches (counted as route="unmatched").
curl -s -o /dev/null "http://$HOST:$P_NGINX/no-such-page"
# Let Prometheus scrape the last of it (scrape interval 5 s).
sleep 6

# ------------------------------------------------------------------ 3. listings on the replica
stage "listings are served by the replica ($LISTING_READS seat-map reads)"
COUNTERS="'Com_select','Com_stmt_execute','Questions'"
snapshot() { # snapshot FILE: "server counter value" lines for both servers
  local s
  for s in mysql-primary mysql-replica; do
    sql "$s" "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ($COUNTERS)" |
      sed "s/^/$s /"
  done >"$1"
}
delta() { # delta BEFORE AFTER: "server counter delta" lines
  join <(awk '{print $1"/"$2, $3}' "$1" | sort) <(awk '{print $1"/"$2, $3}' "$2" | sort) |
    awk '{split($1, k, "/"); print k[1], k[2], $3 - $2}'
}
prep=$(helper listings --addr "$HOST:$P_NGINX" --concert "$concert" --requests 0 --connections 1)
snapshot "$STACK_DIR/c0"
lt0=$(now)
listing_ok=1
helper listings --addr "$HOST:$P_NGINX" --concert "$concert" --requests "$LISTING_READS" \
  --connections 8 --skip-setup "$prep" >"$STACK_DIR/listings.out" || listing_ok=0
load_secs=$(elapsed "$lt0")
snapshot "$STACK_DIR/c1"
# The idle window: the same length, no listing traffic (background work of both gateways only).
sleep "$load_secs"
snapshot "$STACK_DIR/c2"
delta "$STACK_DIR/c0" "$STACK_DIR/c1" >"$STACK_DIR/d-load"
delta "$STACK_DIR/c1" "$STACK_DIR/c2" >"$STACK_DIR/d-idle"
cat "$STACK_DIR/listings.out"
check "all $LISTING_READS seat-map reads answered 200" [ $listing_ok = 1 ]
printf '%-14s %-17s %12s %12s %12s\n' server counter "load window" "idle window" "net"
join <(awk '{print $1"/"$2, $3}' "$STACK_DIR/d-load" | sort) <(awk '{print $1"/"$2, $3}' "$STACK_DIR/d-idle" | sort) |
  awk '{split($1, k, "/"); printf "%-14s %-17s %12d %12d %12d\n", k[1], k[2], $2, $3, $2 - $3}' |
  tee "$STACK_DIR/listing-counters"
net() { awk -v s="$1" -v c="$2" '$1 == s && $2 == c {print $5}' "$STACK_DIR/listing-counters"; }
R_SELECT=$(net mysql-replica com_select)
P_SELECT=$(net mysql-primary com_select)
R_Q=$(net mysql-replica questions)
P_Q=$(net mysql-primary questions)
# Each seat-map read is one SELECT on the pool it uses. Fair check: the replica's net count (load
# minus idle window) must account for at least 90 % of the reads, the primary's for at most 5 %.
check "replica executed >= 90% of $LISTING_READS listing SELECTs (net $R_SELECT)" \
  [ "$R_SELECT" -ge $((LISTING_READS * 9 / 10)) ]
check "primary executed <= 5% of $LISTING_READS listing SELECTs (net $P_SELECT)" \
  [ "$P_SELECT" -le $((LISTING_READS / 20)) ]
check "primary's statement count (Questions) did not move by the load (net $P_Q <= 5%)" \
  [ "$P_Q" -le $((LISTING_READS / 20)) ]

# ------------------------------------------------------------------ 4. faults and the alerts they fire
# wait_alert NAME...: waits (at most ALERT_TIMEOUT from the fault at $FAULT_T0) until every
# named alert is firing in Prometheus and listed by Alertmanager; records the times.
declare -A ALERT_TIMES=()
wait_alert() {
  local deadline=$((SECONDS + ALERT_TIMEOUT)) name st am
  declare -A seen_pending=() seen_firing=() seen_am=()
  while [ $SECONDS -lt $deadline ]; do
    st=$(curl -fsS -m 5 "$PROM/api/v1/alerts" | jq -r '.data.alerts[] | "\(.labels.alertname) \(.state)"' | sort -u)
    am=$(curl -fsS -m 5 "http://$HOST:$P_AM/api/v2/alerts?active=true" | jq -r '.[].labels.alertname' | sort -u)
    local all=1
    for name in "$@"; do
      if [ -z "${seen_pending[$name]:-}" ] && grep -q "^$name " <<<"$st"; then
        seen_pending[$name]=$(elapsed "$FAULT_T0")
        log "$name pending after ${seen_pending[$name]} s"
      fi
      if [ -z "${seen_firing[$name]:-}" ] && grep -q "^$name firing" <<<"$st"; then
        seen_firing[$name]=$(elapsed "$FAULT_T0")
        log "$name firing after ${seen_firing[$name]} s"
      fi
      if [ -z "${seen_am[$name]:-}" ] && grep -qx "$name" <<<"$am"; then
        seen_am[$name]=$(elapsed "$FAULT_T0")
        log "$name received by Alertmanager after ${seen_am[$name]} s"
      fi
      [ -n "${seen_am[$name]:-}" ] && [ -n "${seen_firing[$name]:-}" ] || all=0
    done
    [ $all = 0 ] || break
    sleep 1
  done
  for name in "$@"; do
    ALERT_TIMES[$name]="pending after ${seen_pending[$name]:-never} s, firing after ${seen_firing[$name]:-never} s, in Alertmanager after ${seen_am[$name]:-never} s"
    check "$name firing within ${ALERT_TIMEOUT}s and received by Alertmanager" \
      test -n "${seen_firing[$name]:-}" -a -n "${seen_am[$name]:-}"
  done
}
stop_component() { # stop_component NAME: SIGTERM by the PID in its pid file, after checking it is ours
  local pid exe
  read -r pid exe <"$STACK_DIR/pids/$1.pid"
  if [ "$(readlink "/proc/$pid/exe")" != "$exe" ]; then
    log "$1: pid $pid is not ours"
    return 1
  fi
  kill -TERM "$pid"
  local deadline=$((SECONDS + 60))
  while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
  done
  log "stopped $1 (pid $pid)"
}
firing_now() {
  curl -fsS -m 5 "$PROM/api/v1/alerts" | jq -r '[.data.alerts[] | select(.state == "firing") | .labels.alertname] | unique | join(" ")'
}

stage "lock master redis-lock-1 stopped by PID: QueuegateRedlockMasterDown"
check "no alert firing before the faults (firing: $(firing_now))" [ -z "$(firing_now)" ]
FAULT_T0=$(now)
stop_component redis-lock-1
wait_alert QueuegateRedlockMasterDown

stage "second lock master stopped: quorum lost, holds on the database-only path"
FAULT_T0=$(now)
stop_component redis-lock-2
# A small sale while the quorum is lost: every hold takes the database-only path, and the flow
# still has to pass (each fan pays for exactly one seat, the invariants hold).
fb_ok=1
"$CARGO_TARGET_DIR/${STACK_PROFILE:-release}/queuegate-load" flow --addr "$HOST:$P_NGINX" --users 40 \
  --admin-token "$ADMIN_TOKEN" \
  --database-url "mysql://queuegate:queuegate@$HOST:$P_PRIMARY/queuegate" >"$STACK_DIR/flow-fallback.out" 2>&1 || fb_ok=0
grep -E '^(journeys|invariants|verdict)' "$STACK_DIR/flow-fallback.out" || true
check "flow passes on the database-only lock path" [ $fb_ok = 1 ]
FALLBACKS=$(for p in "${STACK_GATEWAY1_PORT:-18081}" "${STACK_GATEWAY2_PORT:-18082}"; do
  curl -fsS -m 5 "http://$HOST:$p/metrics" | awk '$1 == "queuegate_lock_fallback_total" {print $2}'
done | awk '{s += $1} END {print s + 0}')
check "holds took the database-only path ($FALLBACKS)" [ "$FALLBACKS" -gt 0 ]
log "database-only holds counted: ${FALLBACKS:-?}"
wait_alert QueuegateRedlockQuorumLost QueuegateLockFallbackInUse
helper alerts --prom "$PROM" --alertmanager "http://$HOST:$P_AM" || true

stage "gateway mode: a visitor reaches the shop; the shop stopped by PID: QueuegateOriginFailing"
SHOP_PAGE="http://$HOST:${STACK_GATEWAY_SHOP_PORT:-18090}/shop/index.html"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H 'Accept: application/json' "$SHOP_PAGE")
check "an API client without a grant gets 403 from gateway-shop (got $code)" [ "$code" = 403 ]
# A visitor of the demo concert's line, admitted through gateway-shop's own API.
visitor=$(helper listings --addr "$HOST:${STACK_GATEWAY_SHOP_PORT:-18090}" --concert "$concert" --requests 0 --connections 1)
visitor_token=$(jq -r .access <<<"$visitor")
page=$(curl -fsS -m 5 -H "Authorization: Bearer $visitor_token" "$SHOP_PAGE" || true)
check "the admitted visitor gets the shop's page through the gateway" grep -q 'data-testid="shop-heading"' <<<"$page"
# Another visitor, whose grant gateway-shop now remembers, leaves through the main gateways
# (another process): the announcement makes gateway-shop refuse the very next requests.
leaver=$(helper listings --addr "$HOST:${STACK_GATEWAY_SHOP_PORT:-18090}" --concert "$concert" --requests 0 --connections 1)
leaver_token=$(jq -r .access <<<"$leaver")
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $leaver_token" "$SHOP_PAGE")
check "a second admitted visitor gets the shop's page (got $code)" [ "$code" = 200 ]
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X DELETE -H "Authorization: Bearer $(jq -r .queue_token <<<"$leaver")" "http://$HOST:$P_NGINX/v1/queue")
check "the visitor leaves through the main gateways (got $code)" [ "$code" = 204 ]
lt0=$(date +%s%N)
code=200
while [ "$code" = 200 ] && [ $(( ($(date +%s%N) - lt0) / 1000000 )) -lt 2000 ]; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $leaver_token" "$SHOP_PAGE")
done
left_ms=$(( ($(date +%s%N) - lt0) / 1000000 ))
log "gateway-shop refused the leaver's grant $left_ms ms after the leave answered (code $code)"
check "gateway-shop stops forwarding for the leaver at once (got $code after $left_ms ms)" [ "$code" = 403 ]
FAULT_T0=$(now)
stop_component shop
# Visitors keep asking while the shop is down: each gets 502 with Retry-After, nobody passes.
(while :; do
  curl -s -o /dev/null -m 5 -H "Authorization: Bearer $visitor_token" "$SHOP_PAGE"
  sleep 0.2
done) &
SHOP_LOAD=$!
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 -H "Authorization: Bearer $visitor_token" "$SHOP_PAGE")
check "with the shop down the visitor gets 502 (got $code)" [ "$code" = 502 ]
wait_alert QueuegateOriginFailing
kill "$SHOP_LOAD" 2>/dev/null || true
wait "$SHOP_LOAD" 2>/dev/null || true
SHOP_LOAD=""

stage "primary database stopped for a moment: 503s and hold errors; then stack.sh up restarts what is down"
stop_component mysql-primary
ready_codes=""
for i in 1 2 3 4; do
  ready_codes+="$(curl -s -o /dev/null -w '%{http_code}' -m 10 "http://$HOST:$P_NGINX/readyz") "
done
token=$(jq -r .access <<<"$prep")
schedule=$(jq -r '.schedules[0]' <<<"$prep")
hold_codes=""
for seat in 41 42 43; do
  hold_codes+="$(curl -s -o /dev/null -w '%{http_code}' -m 20 -X POST "http://$HOST:$P_NGINX/v1/reservations" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"schedule_id\":$schedule,\"seat_no\":$seat}") "
done
log "with the primary down: /readyz -> $ready_codes; holds -> $hold_codes"
check "holds answer 5xx while the primary is down (got $hold_codes)" grep -qE '^(5[0-9][0-9] ?)+$' <<<"$hold_codes"
rt0=$(now)
STACK_SKIP_BUILD=1 bash scripts/stack.sh up >"$STACK_DIR/restart.out" 2>&1 || { cat "$STACK_DIR/restart.out"; check "stack.sh up restarts the stopped components" false; }
RESTART_SECS=$(elapsed "$rt0")
log "stack.sh up brought back mysql-primary, redis-lock-1, redis-lock-2, shop in $RESTART_SECS s"
check "gateways ready again after the restart" curl -fsS -m 5 -o /dev/null "http://$HOST:$P_NGINX/readyz"
for f in "$STACK_DIR"/pids/*.pid; do
  read -r pid _ <"$f"
  [[ " ${STARTED_SESSIONS[*]} " == *" $pid "* ]] || STARTED_SESSIONS+=("$pid")
done
# Let Prometheus scrape the last of it (scrape interval 5 s).
sleep 6

# ------------------------------------------------------------------ 5. dashboards
stage "every dashboard query against Prometheus"
dash_ok=1
helper dashboards --prom "$PROM" --mode-off "$MODE_OFF_METRICS" \
  --range "$(awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%ds", b - a + 60 }')" \
  --rate-interval 1m | tee "$STACK_DIR/dashboards.out" || dash_ok=0
check "every dashboard query returns data" [ $dash_ok = 1 ]
DASH_SUMMARY=$(grep -E '^[0-9]+ queries' "$STACK_DIR/dashboards.out" || true)

# ------------------------------------------------------------------ 6. down
stage "stack.sh down; nothing left"
if [ "${KEEP_STACK:-0}" = 1 ]; then
  log "KEEP_STACK=1: leaving the stack up in $STACK_DIR"
else
  bash scripts/stack.sh down
  DOWN_DONE=1
  # Anything still alive in one of the sessions this stack started (each process was started
  # as a session leader, so nginx workers and any child are in its session).
  left=()
  sids=" ${STARTED_SESSIONS[*]} "
  for st in /proc/[0-9]*/stat; do
    rest=$(sed 's/^.*) //' "$st" 2>/dev/null) || continue
    # Fields after "(comm) ": state ppid pgrp session ...
    read -r state _ _ session _ <<<"$rest"
    if [[ $sids == *" $session "* ]] && [ "$state" != Z ]; then
      pid=${st#/proc/}
      left+=("${pid%/stat}")
    fi
  done
  check "no process started by the stack is left (${#STARTED_SESSIONS[@]} sessions checked)" [ ${#left[@]} -eq 0 ]
  [ ${#left[@]} -eq 0 ] || log "left: ${left[*]}"
  ports_left=()
  for p in "$P_NGINX" "$P_PROM" "$P_AM" "$P_PRIMARY" "${STACK_MYSQL_REPLICA_PORT:-13307}" \
    "${STACK_GATEWAY1_PORT:-18081}" "${STACK_GATEWAY2_PORT:-18082}" "${STACK_REDIS_QUEUE_PORT:-16379}" \
    "${STACK_REDIS_LOCK1_PORT:-16380}" "${STACK_REDIS_LOCK2_PORT:-16381}" "${STACK_REDIS_LOCK3_PORT:-16382}"; do
    if (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then ports_left+=("$p"); fi
  done
  check "every stack port is closed again" [ ${#ports_left[@]} -eq 0 ]
fi
stage_end

# ------------------------------------------------------------------ summary
total=$(elapsed "$T0")
cat <<EOF

==================== stack test summary ====================
stage times:
$(printf '  %s\n' "${TIMES[@]}")
  total ${total} s

startup (stack.sh up, incl. build check)  ${STARTUP} s
flow                                      ${FLOW_LINE:-?}
replica lag during the flow               max Seconds_Behind_Master ${LAG_MAX_S} s, max ${LAG_MAX_TX} transactions behind, caught up ${CATCHUP} s after the flow${PROM_LAG:+; queuegate_db_replica_lag_seconds max $PROM_LAG s}
dashboard queries                         ${DASH_SUMMARY:-?}
listings on the replica                   replica Com_select net +${R_SELECT} (Questions +${R_Q}), primary Com_select net ${P_SELECT} (Questions ${P_Q}) for ${LISTING_READS} reads
flow on the database-only lock path       $(grep -E '^journeys' "$STACK_DIR/flow-fallback.out" 2>/dev/null || echo '?'); database-only holds ${FALLBACKS:-?}
restart after the faults (stack.sh up)    ${RESTART_SECS:-?} s
alerts (time from the fault):
$(for k in "${!ALERT_TIMES[@]}"; do printf '  %-34s %s\n' "$k" "${ALERT_TIMES[$k]}"; done | sort)
EOF
if [ ${#FAILURES[@]} -gt 0 ]; then
  printf '\nFAILED:\n'
  printf '  %s\n' "${FAILURES[@]}"
  echo "logs and outputs: $STACK_DIR"
  exit 1
fi
echo
echo "all checks passed"
if [ "${KEEP_STACK:-0}" != 1 ] && [ -f "$STACK_DIR/.queuegate-stack" ]; then rm -rf "$STACK_DIR"; fi
