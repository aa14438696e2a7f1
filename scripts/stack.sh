#!/usr/bin/env bash
# The docker-compose.yml topology, run natively on loopback from Debian packages (no containers):
#
#   scripts/stack.sh up            install what is missing, build, start, wait until ready
#   scripts/stack.sh status        what runs, where; replication and readiness (exit 3 if anything is down)
#   scripts/stack.sh down [--purge]  stop everything it started, by PID (--purge: delete the run dir)
#
# It runs the same configuration files that the compose file mounts (deploy/nginx/nginx.conf,
# deploy/prometheus/prometheus.yml + alerts.yml, deploy/alertmanager/alertmanager.yml,
# deploy/mysql/primary-init.sql) and takes the services' flags and the gateways' environment from
# docker-compose.yml itself; only hosts, ports and paths are replaced (copies go to the run
# directory). MariaDB stands in for MySQL 8.4: the replica is set up by
# deploy/mysql/replica-init.mariadb.sql, and the MySQL-only server flags are translated (see
# docs/DEPLOY.md, "The stack on one machine").
#
# Everything lives in one run directory, STACK_DIR (default ${XDG_RUNTIME_DIR:-/tmp}/queuegate-stack):
# data, logs, generated configs and one pid file per process. Ports (all on 127.0.0.1):
#   STACK_NGINX_PORT=8088 (the front door)   STACK_PROMETHEUS_PORT=9090   STACK_ALERTMANAGER_PORT=9093
#   STACK_GATEWAY1_PORT=18081  STACK_GATEWAY2_PORT=18082
#   STACK_GATEWAY_SHOP_PORT=18090 (gateway mode)  STACK_SHOP_PORT=18091 (the shop behind it)
#   STACK_MYSQL_PRIMARY_PORT=13306  STACK_MYSQL_REPLICA_PORT=13307
#   STACK_REDIS_QUEUE_PORT=16379  STACK_REDIS_LOCK1_PORT=16380  STACK_REDIS_LOCK2_PORT=16381
#   STACK_REDIS_LOCK3_PORT=16382
# Other knobs: CARGO_TARGET_DIR (default ~/.cache/queuegate-target), STACK_SKIP_BUILD=1 (use the
# binary already built there), STACK_READY_TIMEOUT (seconds per readiness wait, default 90), and
# the compose file's own variables (JWT_SECRET, ADMIN_TOKEN, QUEUE_*, RUST_LOG, ...).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh

STACK_DIR=${STACK_DIR:-${XDG_RUNTIME_DIR:-/tmp}/queuegate-stack}
HOST=127.0.0.1
P_NGINX=${STACK_NGINX_PORT:-8088}
P_PROM=${STACK_PROMETHEUS_PORT:-9090}
P_AM=${STACK_ALERTMANAGER_PORT:-9093}
P_GW1=${STACK_GATEWAY1_PORT:-18081}
P_GW2=${STACK_GATEWAY2_PORT:-18082}
P_GWSHOP=${STACK_GATEWAY_SHOP_PORT:-18090}
P_SHOP=${STACK_SHOP_PORT:-18091}
P_PRIMARY=${STACK_MYSQL_PRIMARY_PORT:-13306}
P_REPLICA=${STACK_MYSQL_REPLICA_PORT:-13307}
P_RQ=${STACK_REDIS_QUEUE_PORT:-16379}
P_RL1=${STACK_REDIS_LOCK1_PORT:-16380}
P_RL2=${STACK_REDIS_LOCK2_PORT:-16381}
P_RL3=${STACK_REDIS_LOCK3_PORT:-16382}
READY_TIMEOUT=${STACK_READY_TIMEOUT:-90}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
# STACK_PROFILE=debug reuses the test build (the test command); operators get release.
STACK_PROFILE=${STACK_PROFILE:-release}
case "$STACK_PROFILE" in release | debug) ;; *) echo "STACK_PROFILE must be release or debug" >&2; exit 2 ;; esac
BIN_DIR="$CARGO_TARGET_DIR/$STACK_PROFILE"

PIDS="$STACK_DIR/pids"
LOGS="$STACK_DIR/logs"
MARKER="$STACK_DIR/.queuegate-stack"

# Start order; `down` stops in reverse.
COMPONENTS=(mysql-primary mysql-replica redis-queue redis-lock-1 redis-lock-2 redis-lock-3
  gateway-1 gateway-2 shop gateway-shop nginx alertmanager prometheus)

port_of() {
  case $1 in
    mysql-primary) echo "$P_PRIMARY" ;; mysql-replica) echo "$P_REPLICA" ;;
    redis-queue) echo "$P_RQ" ;; redis-lock-1) echo "$P_RL1" ;; redis-lock-2) echo "$P_RL2" ;;
    redis-lock-3) echo "$P_RL3" ;; gateway-1) echo "$P_GW1" ;; gateway-2) echo "$P_GW2" ;;
    shop) echo "$P_SHOP" ;; gateway-shop) echo "$P_GWSHOP" ;;
    nginx) echo "$P_NGINX" ;; alertmanager) echo "$P_AM" ;; prometheus) echo "$P_PROM" ;;
  esac
}

# compose host:port -> where this stack runs it (the only change made to URLs and targets).
SUBS=(
  --sub "mysql-primary:3306=$HOST:$P_PRIMARY" --sub "mysql-replica:3306=$HOST:$P_REPLICA"
  --sub "redis-queue:6379=$HOST:$P_RQ" --sub "redis-lock-1:6379=$HOST:$P_RL1"
  --sub "redis-lock-2:6379=$HOST:$P_RL2" --sub "redis-lock-3:6379=$HOST:$P_RL3"
  --sub "shop:80=$HOST:$P_SHOP"
)

log() { printf '[stack] %s\n' "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

STAGE_NAME="" STAGE_T0="" UP_T0=""
stage() {
  stage_end
  STAGE_NAME=$1 STAGE_T0=$(now)
  log "── $1"
}
stage_end() {
  if [ -n "$STAGE_NAME" ]; then log "   $STAGE_NAME: $(elapsed "$STAGE_T0") s"; fi
  STAGE_NAME=""
}

python_yaml() {
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' 2>/dev/null; then
      echo "$py"
      return 0
    fi
  done
  return 1
}
helper() { "$PY" "$ROOT/scripts/stack_helper.py" "$@"; }

# lines ARRAY CMD...: ARRAY = the output lines of CMD (empty lines kept); fails when CMD fails.
lines() {
  local -n _into=$1
  local out
  shift
  out=$("$@") || fail "failed: $*"
  _into=()
  [ -z "$out" ] || mapfile -t _into <<<"$out"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# wait_for WHAT CMD...: polls CMD every 0.2 s until it succeeds, at most READY_TIMEOUT seconds.
wait_for() {
  local what=$1 t0 deadline
  shift
  t0=$(now)
  deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      fail "$what not ready after ${READY_TIMEOUT}s (logs: $LOGS/)"
    fi
    sleep 0.2
  done
  log "   ready: $what ($(elapsed "$t0") s)"
}

# ------------------------------------------------------------------ processes by PID
# pids/NAME.pid holds "PID EXE": the process id and the executable it must be running, so a
# recycled PID is never mistaken for ours.

pid_of() {
  local f="$PIDS/$1.pid" pid exe
  [ -f "$f" ] || return 1
  read -r pid exe <"$f" || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  # A zombie has exited.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
  echo "$pid"
}
running() { pid_of "$1" >/dev/null; }

# start NAME EXE CMD...: runs CMD in its own session (so it outlives this script and a ^C in
# its terminal), output appended to logs/NAME.log. EXE is the program CMD ends up executing
# (CMD may be `env VAR=... EXE ...`); the pid file records both.
start() {
  local name=$1 exe
  exe=$(readlink -f "$(command -v "$2")") || fail "$2 not found"
  shift 2
  if running "$name"; then
    log "   $name already running (pid $(pid_of "$name"))"
    return 0
  fi
  local port
  port=$(port_of "$name")
  if port_open "$port"; then
    fail "port $HOST:$port (for $name) is taken by another process; set STACK_*_PORT"
  fi
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo "$! $exe" >"$PIDS/$name.pid"
  log "   started $name (pid $!, port $port)"
}

# stop NAME TIMEOUT: SIGTERM, wait until gone (bounded), then SIGKILL.
stop() {
  local name=$1 timeout=$2 pid
  pid=$(pid_of "$name") || { rm -f "$PIDS/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while running "$name"; do
    if [ $SECONDS -ge $deadline ]; then
      log "   $name (pid $pid) still running after ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  rm -f "$PIDS/$name.pid"
  log "   stopped $name (pid $pid)"
}

# ------------------------------------------------------------------ MariaDB

sql() { # sql NAME [mariadb args...]: root over the server's socket
  local name=$1
  shift
  mariadb --no-defaults --socket="$STACK_DIR/$name/mysqld.sock" -uroot "$@"
}

# The server flags of the compose service, translated for MariaDB 10.11:
#   --gtid-mode, --enforce-gtid-consistency   MySQL only (MariaDB always writes GTIDs): dropped
#   --log-replica-updates                      MariaDB's name: --log-slave-updates
mariadb_flags() {
  local arg raw
  lines raw helper compose-command "$1"
  for arg in "${raw[@]}"; do
    case $arg in
      --gtid-mode=* | --enforce-gtid-consistency=*) ;;
      --log-replica-updates=*) echo "--log-slave-updates=${arg#*=}" ;;
      *) echo "$arg" ;;
    esac
  done
}

# mariadbd refuses to run as root unless told; the data stays in the run directory either way.
mariadb_user() { if [ "$(id -u)" -eq 0 ]; then echo --user=root; fi; }

# A new data directory (root over the socket only); nothing when it exists.
init_datadir() {
  local name=$1 dir="$STACK_DIR/$1" user
  user=$(mariadb_user)
  # Its own temporary directory: two bootstraps run at once, and a temporary file another
  # process removes from a shared /tmp aborts one (seen once in CI: "Error on delete of
  # '/tmp/#sql-temptable-…'").
  mkdir -p "$dir/tmp"
  [ ! -d "$dir/data/mysql" ] || return 0
  # shellcheck disable=SC2086 # $user is one option or nothing
  mariadb-install-db --no-defaults --datadir="$dir/data" --tmpdir="$dir/tmp" $user \
    --auth-root-authentication-method=socket --skip-test-db >>"$LOGS/$name.log" 2>&1
}

start_mariadb() {
  local name=$1 port=$2 dir="$STACK_DIR/$1" user=()
  [ "$(id -u)" -ne 0 ] || user=(--user=root)
  local flags
  lines flags mariadb_flags "$name"
  start "$name" /usr/sbin/mariadbd /usr/sbin/mariadbd --no-defaults "${user[@]}" --datadir="$dir/data" \
    --tmpdir="$dir/tmp" --bind-address="$HOST" --port="$port" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
    "${flags[@]}"
}

replica_threads_running() {
  [ "$(sql mysql-replica -e 'SHOW REPLICA STATUS\G' | grep -cE '(Slave|Replica)_(IO|SQL)_Running: Yes')" = 2 ]
}

# ------------------------------------------------------------------ up

gateway_env() { # gateway_env NAME PORT: the compose environment of the service, for this stack
  helper compose-env "$1" "${SUBS[@]}" | sed "s#^LISTEN_ADDR=.*#LISTEN_ADDR=$HOST:$2#"
}

readyz_ok() { curl -fsS -m 2 "http://$HOST:$1/readyz" >/dev/null; }
http_ok() { curl -fsS -m 2 "$1" >/dev/null; }
targets_up() {
  local n
  n=$(curl -fsS -m 2 "http://$HOST:$P_PROM/api/v1/query" --data-urlencode 'query=sum(up{job="queuegate"})' |
    jq -r '.data.result[0].value[1] // 0')
  [ "$n" = 3 ]
}

cmd_up() {
  UP_T0=$(now)
  mkdir -p "$PIDS" "$LOGS"
  touch "$MARKER"

  # Every port this stack needs must be free, unless our own process holds it (a second `up`).
  local c busy=()
  for c in "${COMPONENTS[@]}"; do
    if ! running "$c" && port_open "$(port_of "$c")"; then busy+=("$c:$(port_of "$c")"); fi
  done
  [ ${#busy[@]} -eq 0 ] || fail "ports taken by other processes: ${busy[*]} (set STACK_*_PORT)"

  stage "packages"
  local pkgs=()
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || pkgs+=(mariadb-server)
  command -v mariadb >/dev/null 2>&1 || pkgs+=(mariadb-client)
  command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
  [ -x /usr/sbin/nginx ] || pkgs+=(nginx)
  command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
  command -v prometheus-alertmanager >/dev/null 2>&1 || pkgs+=(prometheus-alertmanager)
  command -v curl >/dev/null 2>&1 || pkgs+=(curl)
  command -v jq >/dev/null 2>&1 || pkgs+=(jq)
  python_yaml >/dev/null || pkgs+=(python3 python3-yaml)
  if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; else log "   all present"; fi
  PY=$(python_yaml) || fail "no python3 with PyYAML"

  stage "build"
  if [ "${STACK_SKIP_BUILD:-0}" = 1 ]; then
    log "   STACK_SKIP_BUILD=1: using $BIN_DIR/queuegate"
  else
    command -v cargo >/dev/null 2>&1 || fail "cargo is required: install Rust from your distribution or rustup"
    if [ "$STACK_PROFILE" = release ]; then
      cargo build --release --locked --bin queuegate --bin queuegate-load
    else
      cargo build --locked --bin queuegate --bin queuegate-load
    fi
  fi
  [ -x "$BIN_DIR/queuegate" ] || fail "no $BIN_DIR/queuegate"

  stage "datastores: MariaDB primary + replica, queue Redis, 3 lock masters"
  local name
  local -a args
  for name in redis-queue redis-lock-1 redis-lock-2 redis-lock-3; do
    mkdir -p "$STACK_DIR/$name"
    lines args helper compose-command "$name"
    # compose: redis-server <flags>; here the same flags plus where to listen and keep data.
    start "$name" "${args[0]}" "${args[@]}" --bind "$HOST" --port "$(port_of "$name")" \
      --dir "$STACK_DIR/$name" --daemonize no --logfile ""
  done
  # Both data directories at once (the slowest step of a first start).
  local w1 w2
  init_datadir mysql-primary &
  w1=$!
  init_datadir mysql-replica &
  w2=$!
  wait "$w1" || fail "mariadb-install-db for mysql-primary failed (see $LOGS/mysql-primary.log)"
  wait "$w2" || fail "mariadb-install-db for mysql-replica failed (see $LOGS/mysql-replica.log)"
  start_mariadb mysql-primary "$P_PRIMARY"
  start_mariadb mysql-replica "$P_REPLICA"
  wait_for "mysql-primary" sql mysql-primary -e 'SELECT 1'
  wait_for "mysql-replica" sql mysql-replica -e 'SELECT 1'
  for name in redis-queue redis-lock-1 redis-lock-2 redis-lock-3; do
    wait_for "$name" redis-cli -h "$HOST" -p "$(port_of "$name")" ping
  done

  stage "replication (deploy/mysql/primary-init.sql, replica-init.mariadb.sql)"
  if [ ! -f "$STACK_DIR/mysql-primary/.initialized" ]; then
    sql mysql-primary <deploy/mysql/primary-init.sql
    touch "$STACK_DIR/mysql-primary/.initialized"
    log "   primary: ran deploy/mysql/primary-init.sql"
  fi
  if [ ! -f "$STACK_DIR/mysql-replica/.initialized" ]; then
    helper render deploy/mysql/replica-init.mariadb.sql "$STACK_DIR/mysql-replica/replica-init.sql" \
      "MASTER_HOST = 'mysql-primary'" "MASTER_HOST = '$HOST'" 1 \
      "MASTER_PORT = 3306," "MASTER_PORT = $P_PRIMARY," 1
    sql mysql-replica <"$STACK_DIR/mysql-replica/replica-init.sql"
    touch "$STACK_DIR/mysql-replica/.initialized"
    log "   replica: ran deploy/mysql/replica-init.mariadb.sql (host and port replaced)"
  fi
  wait_for "replication threads" replica_threads_running

  stage "seed (migrations + demo concert, as the compose 'seed' service)"
  local -a genv
  lines genv gateway_env seed "$P_GW1"
  env "${genv[@]}" "$BIN_DIR/queuegate" seed >"$STACK_DIR/seed.out" 2>>"$LOGS/seed.log" ||
    fail "queuegate seed failed (see $LOGS/seed.log)"
  local concert
  concert=$(grep -oE '[0-9]+' "$STACK_DIR/seed.out" | tail -n1 || true)
  echo "$concert" >"$STACK_DIR/demo-concert-id"
  log "   demo concert: ${concert:-?}"
  # The replica must have the schema before listings are read from it.
  local pos
  pos=$(sql mysql-primary -N -e 'SELECT @@gtid_binlog_pos')
  [ "$(sql mysql-replica -N -e "SELECT MASTER_GTID_WAIT('$pos', $READY_TIMEOUT)")" = 0 ] ||
    fail "the replica did not reach the primary's GTID position $pos"
  log "   replica caught up to GTID $pos"

  stage "gateways"
  ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  local i port
  for i in 1 2; do
    port=$(port_of "gateway-$i")
    lines genv gateway_env "gateway-$i" "$port"
    start "gateway-$i" "$BIN_DIR/queuegate" env "${genv[@]}" "$BIN_DIR/queuegate" serve
  done
  for i in 1 2; do wait_for "gateway-$i /readyz" readyz_ok "$(port_of "gateway-$i")"; done

  stage "gateway mode: the demo shop and the line in front of it"
  # The shop: Debian's nginx serving e2e/origin-site (the compose 'shop' service's pages).
  start shop /usr/sbin/nginx bash scripts/origin-nginx.sh "$P_SHOP" "$ROOT/e2e/origin-site" "$STACK_DIR/shop"
  wait_for "shop" http_ok "http://$HOST:$P_SHOP/shop/index.html"
  # Its line is the seeded demo concert's (compose: SHOP_CONCERT_ID, 1 on a fresh database).
  local shop_concert
  shop_concert=$(cat "$STACK_DIR/demo-concert-id" 2>/dev/null || true)
  lines genv gateway_env gateway-shop "$P_GWSHOP"
  start gateway-shop "$BIN_DIR/queuegate" env "${genv[@]}" \
    "UPSTREAM_CONCERT_ID=${shop_concert:-1}" "$BIN_DIR/queuegate" serve
  wait_for "gateway-shop /readyz" readyz_ok "$P_GWSHOP"

  stage "nginx, Alertmanager, Prometheus"
  mkdir -p "$STACK_DIR/nginx" "$STACK_DIR/prometheus/data" "$STACK_DIR/alertmanager/data"
  helper render deploy/nginx/nginx.conf "$STACK_DIR/nginx/nginx.conf" \
    "server gateway-1:8080 " "server $HOST:$P_GW1 " 1 \
    "server gateway-2:8080 " "server $HOST:$P_GW2 " 1 \
    "^(\s*)listen 8080 " "\1listen $HOST:$P_NGINX " 1 \
    "^pid /tmp/nginx\.pid;" "pid $STACK_DIR/nginx/nginx.pid;" 1
  nginx -q -t -e "$LOGS/nginx.log" -p "$STACK_DIR/nginx" -c "$STACK_DIR/nginx/nginx.conf" ||
    fail "nginx -t failed for $STACK_DIR/nginx/nginx.conf"
  start nginx /usr/sbin/nginx /usr/sbin/nginx -e "$LOGS/nginx.log" -p "$STACK_DIR/nginx" \
    -c "$STACK_DIR/nginx/nginx.conf" -g 'daemon off;'

  lines args helper compose-command alertmanager \
    --path "/etc/alertmanager/alertmanager.yml=$ROOT/deploy/alertmanager/alertmanager.yml" \
    --path "/alertmanager=$STACK_DIR/alertmanager/data"
  start alertmanager prometheus-alertmanager prometheus-alertmanager "${args[@]}" --web.listen-address="$HOST:$P_AM"

  helper render deploy/prometheus/prometheus.yml "$STACK_DIR/prometheus/prometheus.yml" \
    "gateway-1:8080" "$HOST:$P_GW1" 1 "gateway-2:8080" "$HOST:$P_GW2" 1 \
    "gateway-shop:8080" "$HOST:$P_GWSHOP" 1 \
    "alertmanager:9093" "$HOST:$P_AM" 1 "localhost:9090" "$HOST:$P_PROM" 1
  # The rule file is copied unchanged, next to the config that names it.
  cp deploy/prometheus/alerts.yml "$STACK_DIR/prometheus/alerts.yml"
  lines args helper compose-command prometheus \
    --path "/etc/prometheus/prometheus.yml=$STACK_DIR/prometheus/prometheus.yml" \
    --path "/prometheus=$STACK_DIR/prometheus/data"
  start prometheus prometheus prometheus "${args[@]}" --web.listen-address="$HOST:$P_PROM"

  wait_for "nginx (front door)" http_ok "http://$HOST:$P_NGINX/nginx-health"
  wait_for "gateway through nginx" http_ok "http://$HOST:$P_NGINX/readyz"
  wait_for "alertmanager" http_ok "http://$HOST:$P_AM/-/ready"
  wait_for "prometheus" http_ok "http://$HOST:$P_PROM/-/ready"
  wait_for "prometheus scraping the three gateways" targets_up
  stage_end

  local total
  total=$(elapsed "$UP_T0")
  echo "$total" >"$STACK_DIR/startup-seconds"
  cat <<EOF

queuegate stack is up in ${total} s (run dir $STACK_DIR)
  front door (nginx)   http://$HOST:$P_NGINX/          demo concert: http://$HOST:$P_NGINX/concerts/${concert:-1}
  gateways (direct)    http://$HOST:$P_GW1/  http://$HOST:$P_GW2/   (/metrics, /readyz)
  gateway mode         http://$HOST:$P_GWSHOP/shop/   (the line in front of the demo shop on :$P_SHOP)
  Prometheus           http://$HOST:$P_PROM/          (alerts: http://$HOST:$P_PROM/alerts)
  Alertmanager         http://$HOST:$P_AM/
  MariaDB primary      mysql://queuegate:queuegate@$HOST:$P_PRIMARY/queuegate
  MariaDB replica      mysql://queuegate:queuegate@$HOST:$P_REPLICA/queuegate
  queue Redis          redis://$HOST:$P_RQ     lock masters  redis://$HOST:$P_RL1 :$P_RL2 :$P_RL3
  admin token          \$ADMIN_TOKEN as in docker-compose.yml (default queuegate-demo-admin-token)
  logs                 $LOGS/
  stop                 scripts/stack.sh down   (add --purge to delete the data)
EOF
}

# ------------------------------------------------------------------ down, status

cmd_down() {
  local purge=0
  [ "${1:-}" = --purge ] && purge=1
  if [ ! -d "$PIDS" ]; then
    log "nothing to stop in $STACK_DIR"
  else
    local i name timeout
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
      name=${COMPONENTS[$i]}
      case $name in
        gateway-*) timeout=20 ;; # SHUTDOWN_DRAIN_MS + SHUTDOWN_GRACE_SECS, with room
        mysql-*) timeout=60 ;;
        *) timeout=15 ;;
      esac
      stop "$name" "$timeout"
    done
  fi
  if [ $purge = 1 ] && [ -f "$MARKER" ]; then
    rm -rf "$STACK_DIR"
    log "deleted $STACK_DIR"
  fi
}

cmd_status() {
  local name pid state code=0
  printf '%-14s %-8s %-7s %s\n' component pid state port
  for name in "${COMPONENTS[@]}"; do
    if pid=$(pid_of "$name"); then state=running; else pid=- state=stopped code=3; fi
    printf '%-14s %-8s %-7s %s:%s\n' "$name" "$pid" "$state" "$HOST" "$(port_of "$name")"
  done
  if running mysql-replica; then
    echo
    sql mysql-replica -e 'SHOW REPLICA STATUS\G' 2>/dev/null |
      grep -E '(Slave|Replica)_(IO|SQL)_Running:|Seconds_Behind_Master|Gtid_IO_Pos|Last_(IO|SQL)_Error:' |
      sed 's/^ */replica  /'
  fi
  local g
  for g in gateway-1 gateway-2 gateway-shop; do
    if running "$g"; then
      printf '%s /readyz  %s\n' "$g" "$(curl -sS -m 2 "http://$HOST:$(port_of "$g")/readyz" 2>&1)"
    fi
  done
  if running prometheus; then
    printf 'alerts    %s\n' "$(curl -sS -m 2 "http://$HOST:$P_PROM/api/v1/alerts" |
      jq -r '[.data.alerts[] | "\(.labels.alertname)=\(.state)"] | if length == 0 then "none" else join(" ") end' 2>/dev/null)"
  fi
  return $code
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
