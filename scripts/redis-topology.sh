#!/usr/bin/env bash
# Starts and stops throw-away Redis topologies on loopback for tests: a 6-node Redis Cluster
# (3 masters, 3 replicas) and a Sentinel group (1 master, 1 replica, 3 sentinels).
#
#   scripts/redis-topology.sh up cluster|sentinel|all   start (or complete) and wait until healthy
#   scripts/redis-topology.sh down [cluster|sentinel|all]
#                                                      stop exactly the processes we started
#   scripts/redis-topology.sh status [cluster|sentinel|all]
#                                                      who runs, who is master / replica
#   scripts/redis-topology.sh env [cluster|sentinel]   REDIS_URL values, for `eval "$(...)"`
#   scripts/redis-topology.sh wait cluster|sentinel    wait until the topology serves again
#                                                      (after a failover); prints how long
#   scripts/redis-topology.sh kill-master-of SLOT|KEY  SIGKILL the cluster master owning a slot
#                                                      (a number 0-16383) or a key's slot
#                                                      (`--key K` forces K to be read as a key)
#   scripts/redis-topology.sh kill-sentinel-master     SIGKILL the master the sentinels name
#   scripts/redis-topology.sh restart PORT [--no-wait] start a stopped node again with its old
#                                                      config (it rejoins as a replica)
#
# Every process is a daemonized redis-server with its own directory, config, log and pid file
# under one run dir; `down` signals exactly those PIDs and waits until they are gone. Ports that
# are taken by anything else make `up` refuse. Settings (environment):
#
#   QG_TOPO_DIR                 run dir (default ${TMPDIR:-/tmp}/queuegate-redis-topology)
#   QG_CLUSTER_PORTS            six ports (default "7000 7001 7002 7003 7004 7005"); each also
#                               needs PORT+10000 free for the cluster bus
#   QG_CLUSTER_NODE_TIMEOUT     cluster-node-timeout in ms (default 2000)
#   QG_CLUSTER_FULL_COVERAGE    cluster-require-full-coverage (default yes, as Redis)
#   QG_SENTINEL_MASTER_PORT     default 6390
#   QG_SENTINEL_REPLICA_PORT    default 6391
#   QG_SENTINEL_PORTS           three ports (default "26379 26380 26381")
#   QG_SENTINEL_SERVICE         service name (default qgmaster)
#   QG_SENTINEL_DOWN_AFTER      down-after-milliseconds (default 1000)
#   QG_SENTINEL_FAILOVER_TIMEOUT failover-timeout in ms (default 3000)
#   QG_TOPO_WAIT_SECS           bound of every wait (default 60)
set -euo pipefail

RUN_DIR=${QG_TOPO_DIR:-${TMPDIR:-/tmp}/queuegate-redis-topology}
read -r -a CLUSTER_PORTS <<<"${QG_CLUSTER_PORTS:-7000 7001 7002 7003 7004 7005}"
NODE_TIMEOUT=${QG_CLUSTER_NODE_TIMEOUT:-2000}
FULL_COVERAGE=${QG_CLUSTER_FULL_COVERAGE:-yes}
S_MASTER_PORT=${QG_SENTINEL_MASTER_PORT:-6390}
S_REPLICA_PORT=${QG_SENTINEL_REPLICA_PORT:-6391}
read -r -a SENTINEL_PORTS <<<"${QG_SENTINEL_PORTS:-26379 26380 26381}"
SERVICE=${QG_SENTINEL_SERVICE:-qgmaster}
DOWN_AFTER=${QG_SENTINEL_DOWN_AFTER:-1000}
FAILOVER_TIMEOUT=${QG_SENTINEL_FAILOVER_TIMEOUT:-3000}
WAIT_SECS=${QG_TOPO_WAIT_SECS:-60}
HOST=127.0.0.1

log() { printf '[redis-topology] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

now_ms() { date +%s%3N; }
# stage NAME START_MS: prints how long a stage took.
stage() { log "$1: $(($(now_ms) - $2)) ms"; }

# ---------------------------------------------------------------------------------------------
# Tools

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_tools() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  log "installing redis-server and redis-tools with apt-get"
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server redis-tools >/dev/null
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after apt-get"
}

# cli PORT ARGS...: one redis-cli call with a hard deadline (a stopped server must not hang us).
cli() {
  local port=$1
  shift
  timeout 5 redis-cli -h "$HOST" -p "$port" "$@" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Processes: every node lives in $RUN_DIR/<topology>/<port>/ with redis.conf, redis.pid, redis.log

node_dir() { printf '%s/%s/%s' "$RUN_DIR" "$1" "$2"; }

# topology_of PORT: which topology a port belongs to (empty if none).
topology_of() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do [ "$p" = "$1" ] && { echo cluster; return; }; done
  for p in "$S_MASTER_PORT" "$S_REPLICA_PORT" "${SENTINEL_PORTS[@]}"; do
    [ "$p" = "$1" ] && { echo sentinel; return; }
  done
  echo ""
}

# alive PID: the process exists and is not a zombie (PID 1 here may not reap).
alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] && [ "$state" != X ]
}

# our_pid TOPOLOGY PORT: prints the PID of our live redis process for that port, or fails.
# A PID only counts when the process still is a redis serving that port (PIDs get reused).
our_pid() {
  local f pid cmd
  f="$(node_dir "$1" "$2")/redis.pid"
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  alive "$pid" || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case "$cmd " in
    *redis*:"$2"[!0-9]*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

# start_node TOPOLOGY PORT [--sentinel|""] [EXTRA ARGS...]: starts a daemonized redis-server from
# the node's config (extra arguments override it) and waits for its pid file (redis writes it
# after forking) and its port.
start_node() {
  local topo=$1 port=$2 mode=${3:-} dir pid
  shift 3 2>/dev/null || shift $#
  dir=$(node_dir "$topo" "$port")
  rm -f "$dir/redis.pid"
  if [ "$mode" = --sentinel ]; then
    (cd "$dir" && redis-server "$dir/redis.conf" --sentinel "$@" >>"$dir/redis.log" 2>&1)
  else
    (cd "$dir" && redis-server "$dir/redis.conf" "$@" >>"$dir/redis.log" 2>&1)
  fi || die "redis-server on port $port did not start (see $dir/redis.log)"
  local deadline=$((SECONDS + WAIT_SECS))
  until pid=$(our_pid "$topo" "$port") && [ "$(cli "$port" PING)" = PONG ]; do
    [ $SECONDS -lt $deadline ] || die "port $port did not come up (see $dir/redis.log)"
    sleep 0.05
  done
  log "started $topo node $port (pid $pid)"
}

# stop_pid PID SIGNAL WHAT: signals one PID and waits until it is gone.
stop_pid() {
  local pid=$1 sig=$2 what=$3 deadline=$((SECONDS + 20))
  kill "-$sig" "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      log "$what (pid $pid) still alive after SIG$sig; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      sig=KILL
    fi
    sleep 0.05
  done
}

# check_free TOPOLOGY PORT...: every port (and cluster bus port) is free or ours; else refuse.
check_free() {
  local topo=$1 port busy=()
  shift
  for port in "$@"; do
    our_pid "$topo" "$port" >/dev/null && continue
    port_open "$port" && busy+=("$port")
    if [ "$topo" = cluster ] && port_open $((port + 10000)); then busy+=("$((port + 10000)) (cluster bus of $port)"); fi
  done
  if [ ${#busy[@]} -gt 0 ]; then
    log "refusing: port(s) ${busy[*]} are in use by a process this script did not start"
    if command -v ss >/dev/null 2>&1; then
      for port in "${busy[@]}"; do ss -ltnpH "sport = :${port%% *}" >&2 2>/dev/null || true; done
    fi
    log "stop that process, or choose other ports (QG_CLUSTER_PORTS, QG_SENTINEL_*_PORT(S))"
    exit 2
  fi
}

# ---------------------------------------------------------------------------------------------
# Cluster

write_cluster_conf() {
  local port=$1 dir
  dir=$(node_dir cluster "$port")
  mkdir -p "$dir"
  cat >"$dir/redis.conf" <<EOF
port $port
bind $HOST
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $NODE_TIMEOUT
cluster-require-full-coverage $FULL_COVERAGE
# A replica always tries to take over, however long it was cut off (tests kill masters often).
cluster-replica-validity-factor 0
save ""
appendonly no
repl-diskless-sync yes
repl-diskless-sync-delay 0
EOF
}

# cluster_myself PORT: the "myself" line of CLUSTER NODES on that node.
cluster_myself() { cli "$1" CLUSTER NODES | awk '$3 ~ /myself/'; }

# cluster_healthy STRICT: every live node says cluster_state:ok with all slots ok and every slot's
# owner is live; STRICT also wants all 6 nodes up, 3 masters and each master a synced replica.
cluster_healthy() {
  local strict=$1 port info nodes live=0 masters replicas
  for port in "${CLUSTER_PORTS[@]}"; do
    our_pid cluster "$port" >/dev/null || { [ "$strict" = 1 ] && return 1; continue; }
    live=$((live + 1))
    info=$(cli "$port" CLUSTER INFO) || return 1
    grep -q '^cluster_state:ok' <<<"$info" || return 1
    grep -q '^cluster_slots_ok:16384' <<<"$info" || return 1
  done
  [ "$live" -gt 0 ] || return 1
  port=$(first_live_cluster_port) || return 1
  nodes=$(cli "$port" CLUSTER NODES) || return 1
  # Masters that own slots must be alive (ours, answering) and not flagged fail / pfail.
  if awk '$3 ~ /master/ && NF > 8 && $3 ~ /fail/' <<<"$nodes" | grep -q .; then return 1; fi
  local owner
  # shellcheck disable=SC2013 # one port per line, no spaces
  for owner in $(awk '$3 ~ /master/ && NF > 8 {a = $2; sub(/@.*/, "", a); sub(/.*:/, "", a); print a}' <<<"$nodes"); do
    our_pid cluster "$owner" >/dev/null || return 1
    [ "$(cli "$owner" PING)" = PONG ] || return 1
  done
  [ "$strict" = 1 ] || return 0
  masters=$(awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 {print $1}' <<<"$nodes")
  [ "$(wc -l <<<"$masters")" -eq 3 ] || return 1
  local m
  for m in $masters; do
    replicas=$(awk -v m="$m" '$3 ~ /slave/ && $3 !~ /fail/ && $4 == m' <<<"$nodes" | wc -l)
    [ "$replicas" -ge 1 ] || return 1
  done
  # Replicas have finished their first sync (otherwise a failover test could lose writes).
  for port in "${CLUSTER_PORTS[@]}"; do
    info=$(cli "$port" INFO replication) || return 1
    if grep -q '^role:slave' <<<"$info"; then
      grep -q '^master_link_status:up' <<<"$info" || return 1
    fi
  done
}

first_live_cluster_port() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    our_pid cluster "$port" >/dev/null && [ "$(cli "$port" PING)" = PONG ] && { echo "$port"; return 0; }
  done
  return 1
}

wait_until() {
  local what=$1 deadline=$((SECONDS + WAIT_SECS))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${WAIT_SECS}s waiting for: $what"
    sleep 0.1
  done
}

cluster_up() {
  [ ${#CLUSTER_PORTS[@]} -eq 6 ] || die "QG_CLUSTER_PORTS must name six ports"
  local t0 t port running=0 missing=()
  t0=$(now_ms)
  for port in "${CLUSTER_PORTS[@]}"; do
    if our_pid cluster "$port" >/dev/null; then running=$((running + 1)); else missing+=("$port"); fi
  done
  check_free cluster "${CLUSTER_PORTS[@]}"

  if [ "$running" -eq 6 ]; then
    log "cluster: all 6 nodes already running"
  elif [ "$running" -gt 0 ]; then
    # Part of an earlier cluster is alive: bring back the others with their old nodes.conf.
    log "cluster: $running of 6 nodes running; restarting ${missing[*]} with their old config"
    for port in "${missing[@]}"; do start_node cluster "$port"; done
  else
    t=$(now_ms)
    rm -rf "$RUN_DIR/cluster"
    for port in "${CLUSTER_PORTS[@]}"; do write_cluster_conf "$port"; done
    for port in "${CLUSTER_PORTS[@]}"; do start_node cluster "$port"; done
    stage "cluster: start 6 nodes" "$t"
    t=$(now_ms)
    local addrs=()
    for port in "${CLUSTER_PORTS[@]}"; do addrs+=("$HOST:$port"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
      >"$RUN_DIR/cluster/create.log" 2>&1 || {
      cat "$RUN_DIR/cluster/create.log" >&2
      die "redis-cli --cluster create failed"
    }
    stage "cluster: redis-cli --cluster create" "$t"
  fi
  t=$(now_ms)
  wait_until "cluster_state:ok, all slots, a synced replica per master" cluster_healthy 1
  stage "cluster: wait for state ok + replicas synced" "$t"
  stage "cluster: up" "$t0"
}

# slot_master_port SLOT: port of the live master owning SLOT.
slot_master_port() {
  local slot=$1 port
  port=$(first_live_cluster_port) || die "no cluster node is running"
  cli "$port" CLUSTER NODES | awk -v s="$slot" '
    $3 ~ /master/ && $3 !~ /fail/ {
      for (i = 9; i <= NF; i++) {
        if ($i ~ /^\[/) continue                      # migrating/importing markers
        n = split($i, r, "-"); lo = r[1]; hi = (n > 1) ? r[2] : r[1]
        if (s + 0 >= lo + 0 && s + 0 <= hi + 0) {
          addr = $2; sub(/@.*/, "", addr); sub(/.*:/, "", addr); print addr; exit
        }
      }
    }'
}

kill_master_of() {
  local arg=${1:-} slot port pid t
  [ -n "$arg" ] || die "usage: kill-master-of SLOT|KEY|--key KEY"
  if [ "$arg" = --key ]; then
    arg=${2:-}
    [ -n "$arg" ] || die "usage: kill-master-of --key KEY"
    slot=""
  elif [[ "$arg" =~ ^[0-9]+$ ]] && [ "$arg" -lt 16384 ]; then
    slot=$arg
  else
    slot=""
  fi
  if [ -z "$slot" ]; then
    port=$(first_live_cluster_port) || die "no cluster node is running"
    slot=$(cli "$port" CLUSTER KEYSLOT "$arg") || die "CLUSTER KEYSLOT failed"
  fi
  port=$(slot_master_port "$slot")
  [ -n "$port" ] || die "no live master owns slot $slot"
  pid=$(our_pid cluster "$port") || die "master $port of slot $slot is not a process of ours"
  t=$(now_ms)
  stop_pid "$pid" KILL "cluster master $port"
  log "SIGKILLed cluster master $port (pid $pid, slot $slot) in $(($(now_ms) - t)) ms"
  echo "killed_port=$port killed_pid=$pid slot=$slot"
}

# ---------------------------------------------------------------------------------------------
# Sentinel

write_data_conf() {
  local port=$1 replicaof=${2:-} dir
  dir=$(node_dir sentinel "$port")
  mkdir -p "$dir"
  cat >"$dir/redis.conf" <<EOF
port $port
bind $HOST
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
save ""
appendonly no
repl-diskless-sync yes
repl-diskless-sync-delay 0
EOF
  [ -z "$replicaof" ] || echo "replicaof $HOST $replicaof" >>"$dir/redis.conf"
}

write_sentinel_conf() {
  local port=$1 dir
  dir=$(node_dir sentinel "$port")
  mkdir -p "$dir"
  # Sentinel rewrites this file (state, known replicas and sentinels): it must stay writable.
  cat >"$dir/redis.conf" <<EOF
port $port
bind $HOST
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
sentinel resolve-hostnames no
sentinel monitor $SERVICE $HOST $S_MASTER_PORT 2
sentinel down-after-milliseconds $SERVICE $DOWN_AFTER
sentinel failover-timeout $SERVICE $FAILOVER_TIMEOUT
sentinel parallel-syncs $SERVICE 1
EOF
}

# sentinel_master_port: the master port all live sentinels agree on (fails if they disagree).
sentinel_master_port() {
  local port addr agreed="" n=0
  for port in "${SENTINEL_PORTS[@]}"; do
    our_pid sentinel "$port" >/dev/null || continue
    addr=$(cli "$port" SENTINEL GET-MASTER-ADDR-BY-NAME "$SERVICE" | sed -n 2p) || return 1
    [ -n "$addr" ] || return 1
    if [ -z "$agreed" ]; then agreed=$addr; elif [ "$agreed" != "$addr" ]; then return 1; fi
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] && echo "$agreed"
}

# field NAME: value of NAME in a flat "name\nvalue\n..." reply on stdin.
field() { awk -v k="$1" 'NR % 2 == 1 && $0 == k { getline; print; exit }'; }

# sentinel_healthy STRICT: live sentinels agree on a live master that says role:master;
# STRICT also wants 3 sentinels that see each other and the master's replica, synced.
sentinel_healthy() {
  local strict=$1 master port m info live=0 links flags
  master=$(sentinel_master_port) || return 1
  [ "$(topology_of "$master")" = sentinel ] || return 1
  our_pid sentinel "$master" >/dev/null || return 1
  cli "$master" INFO replication | grep -q '^role:master' || return 1
  for port in "${SENTINEL_PORTS[@]}"; do
    our_pid sentinel "$port" >/dev/null || { [ "$strict" = 1 ] && return 1; continue; }
    live=$((live + 1))
    m=$(cli "$port" SENTINEL MASTER "$SERVICE") || return 1
    case "$(field flags <<<"$m")" in *down*) return 1 ;; esac
    if [ "$strict" = 1 ]; then
      [ "$(field num-slaves <<<"$m")" -ge 1 ] || return 1
      [ "$(field num-other-sentinels <<<"$m")" -ge 2 ] || return 1
      # The replica as this sentinel sees it: not down, link to master up.
      info=$(cli "$port" SENTINEL REPLICAS "$SERVICE") || return 1
      links=$(awk 'prev == "master-link-status" {print} {prev = $0}' <<<"$info")
      flags=$(awk 'prev == "flags" {print} {prev = $0}' <<<"$info")
      [ -n "$links" ] || return 1
      if grep -qv '^ok$' <<<"$links" || grep -q down <<<"$flags"; then return 1; fi
    fi
  done
  [ "$live" -ge 2 ] || return 1
  if [ "$strict" = 1 ]; then
    for port in "$S_MASTER_PORT" "$S_REPLICA_PORT"; do
      [ "$port" = "$master" ] && continue
      info=$(cli "$port" INFO replication) || return 1
      grep -q '^master_link_status:up' <<<"$info" || return 1
    done
  fi
  return 0
}

sentinel_up() {
  [ ${#SENTINEL_PORTS[@]} -eq 3 ] || die "QG_SENTINEL_PORTS must name three ports"
  local t0 t port running=0 missing=() all=("$S_MASTER_PORT" "$S_REPLICA_PORT" "${SENTINEL_PORTS[@]}")
  t0=$(now_ms)
  for port in "${all[@]}"; do
    if our_pid sentinel "$port" >/dev/null; then running=$((running + 1)); else missing+=("$port"); fi
  done
  check_free sentinel "${all[@]}"

  if [ "$running" -eq 5 ]; then
    log "sentinel: all 5 processes already running"
  elif [ "$running" -gt 0 ]; then
    log "sentinel: $running of 5 processes running; restarting ${missing[*]} with their old config"
    for port in "${missing[@]}"; do
      if [[ " ${SENTINEL_PORTS[*]} " == *" $port "* ]]; then start_node sentinel "$port" --sentinel; else start_node sentinel "$port"; fi
    done
  else
    t=$(now_ms)
    rm -rf "$RUN_DIR/sentinel"
    write_data_conf "$S_MASTER_PORT"
    write_data_conf "$S_REPLICA_PORT" "$S_MASTER_PORT"
    for port in "${SENTINEL_PORTS[@]}"; do write_sentinel_conf "$port"; done
    start_node sentinel "$S_MASTER_PORT"
    start_node sentinel "$S_REPLICA_PORT"
    stage "sentinel: start master + replica" "$t"
    t=$(now_ms)
    for port in "${SENTINEL_PORTS[@]}"; do start_node sentinel "$port" --sentinel; done
    stage "sentinel: start 3 sentinels" "$t"
  fi
  t=$(now_ms)
  wait_until "sentinels agree on the master and see the replica and each other" sentinel_healthy 1
  stage "sentinel: wait for agreement (master, replica, 2 other sentinels each)" "$t"
  stage "sentinel: up" "$t0"
}

kill_sentinel_master() {
  local master pid t
  master=$(sentinel_master_port) || die "the sentinels do not agree on a master (or none runs)"
  pid=$(our_pid sentinel "$master") || die "master $master is not a process of ours"
  t=$(now_ms)
  stop_pid "$pid" KILL "sentinel master $master"
  log "SIGKILLed sentinel master $master (pid $pid) in $(($(now_ms) - t)) ms"
  echo "killed_port=$master killed_pid=$pid"
}

# ---------------------------------------------------------------------------------------------
# Commands

topologies() {
  case "${1:-all}" in
    cluster) echo cluster ;;
    sentinel) echo sentinel ;;
    all) echo cluster sentinel ;;
    *) die "unknown topology '$1' (cluster, sentinel or all)" ;;
  esac
}

cmd_up() {
  [ $# -ge 1 ] || die "usage: up cluster|sentinel|all"
  ensure_tools
  mkdir -p "$RUN_DIR"
  local t
  for t in $(topologies "$1"); do "${t}_up"; done
}

cmd_down() {
  local t f pid port n t0
  for t in $(topologies "${1:-all}"); do
    t0=$(now_ms)
    n=0
    [ -d "$RUN_DIR/$t" ] || continue
    for f in "$RUN_DIR/$t"/*/redis.pid; do
      [ -e "$f" ] || continue
      port=$(basename "$(dirname "$f")")
      if pid=$(our_pid "$t" "$port"); then
        stop_pid "$pid" TERM "$t node $port"
        n=$((n + 1))
      fi
      rm -f "$f"
    done
    # Keep the logs for a failed test to look at; drop the state so the next `up` starts clean.
    find "$RUN_DIR/$t" -type f ! -name '*.log' -delete 2>/dev/null || true
    stage "$t: stopped $n process(es)" "$t0"
  done
}

cmd_status() {
  local t port pid nodes line role
  for t in $(topologies "${1:-all}"); do
    if [ "$t" = cluster ]; then
      echo "cluster (node timeout ${NODE_TIMEOUT} ms):"
      nodes=""
      if port=$(first_live_cluster_port); then nodes=$(cli "$port" CLUSTER NODES); fi
      for port in "${CLUSTER_PORTS[@]}"; do
        if pid=$(our_pid cluster "$port"); then
          line=$(cluster_myself "$port")
          role=$(awk '{r = ($3 ~ /master/) ? "master" : "replica"; s = ""; for (i = 9; i <= NF; i++) s = s " " $i; print r s}' <<<"$line")
          if [[ "$role" == replica* ]]; then
            local mid mport
            mid=$(awk '{print $4}' <<<"$line")
            mport=$(awk -v m="$mid" '$1 == m {a = $2; sub(/@.*/, "", a); sub(/.*:/, "", a); print a}' <<<"$nodes")
            role="replica of $mport"
          fi
          printf '  %s  pid %-7s %s\n' "$port" "$pid" "$role"
        else
          printf '  %s  down\n' "$port"
        fi
      done
      if [ -n "$nodes" ]; then
        printf '  state: %s\n' "$(cli "$(first_live_cluster_port)" CLUSTER INFO | tr -d '\r' | grep '^cluster_state' | cut -d: -f2)"
      fi
    else
      echo "sentinel (service $SERVICE):"
      for port in "$S_MASTER_PORT" "$S_REPLICA_PORT"; do
        if pid=$(our_pid sentinel "$port"); then
          local info
          info=$(cli "$port" INFO replication | tr -d '\r')
          role=$(grep '^role:' <<<"$info" | cut -d: -f2)
          if [ "$role" = slave ]; then
            role="replica of $(grep '^master_port:' <<<"$info" | cut -d: -f2) (link $(grep '^master_link_status:' <<<"$info" | cut -d: -f2))"
          fi
          printf '  %s  pid %-7s %s\n' "$port" "$pid" "$role"
        else
          printf '  %s  down\n' "$port"
        fi
      done
      for port in "${SENTINEL_PORTS[@]}"; do
        if pid=$(our_pid sentinel "$port"); then
          local addr
          addr=$(cli "$port" SENTINEL GET-MASTER-ADDR-BY-NAME "$SERVICE" | paste -sd: -)
          printf '  %s  pid %-7s sentinel, master is %s\n' "$port" "$pid" "${addr:-?}"
        else
          printf '  %s  down\n' "$port"
        fi
      done
    fi
  done
}

cluster_url() {
  local url="redis-cluster://$HOST:${CLUSTER_PORTS[0]}" sep='?' p
  for p in "${CLUSTER_PORTS[@]:1}"; do url+="${sep}node=$HOST:$p"; sep='&'; done
  echo "$url"
}

sentinel_url() {
  local url="redis-sentinel://$HOST:${SENTINEL_PORTS[0]}/0?" p
  for p in "${SENTINEL_PORTS[@]:1}"; do url+="node=$HOST:$p&"; done
  echo "${url}sentinelServiceName=$SERVICE"
}

cmd_env() {
  case "${1:-}" in
    cluster) echo "export REDIS_URL='$(cluster_url)'" ;;
    sentinel) echo "export REDIS_URL='$(sentinel_url)'" ;;
    "" | all)
      echo "export REDIS_URL_CLUSTER='$(cluster_url)'"
      echo "export REDIS_URL_SENTINEL='$(sentinel_url)'"
      ;;
    *) die "usage: env [cluster|sentinel]" ;;
  esac
}

cmd_wait() {
  local t0
  t0=$(now_ms)
  case "${1:-}" in
    cluster) wait_until "the cluster serves every slot from a live master" cluster_healthy 0 ;;
    sentinel) wait_until "the sentinels agree on a live master" sentinel_healthy 0 ;;
    *) die "usage: wait cluster|sentinel" ;;
  esac
  stage "$1: serving" "$t0"
}

cmd_restart() {
  local port=${1:-} nowait=${2:-} topo t0 master pid
  [ -n "$port" ] || die "usage: restart PORT [--no-wait]"
  topo=$(topology_of "$port")
  [ -n "$topo" ] || die "port $port is not part of any topology"
  [ -f "$(node_dir "$topo" "$port")/redis.conf" ] || die "no config for $topo node $port (was it ever up?)"
  if pid=$(our_pid "$topo" "$port"); then
    log "$topo node $port is already running (pid $pid)"
    return 0
  fi
  check_free "$topo" "$port"
  t0=$(now_ms)
  if [[ " ${SENTINEL_PORTS[*]} " == *" $port "* ]] && [ "$topo" = sentinel ]; then
    start_node sentinel "$port" --sentinel
  elif [ "$topo" = sentinel ] && master=$(sentinel_master_port) && [ "$master" != "$HOST:$port" ] \
    && [ "${master##*:}" != "$port" ]; then
    # A former master left alone comes back as a master and waits ~10-20 s for the sentinels
    # to turn it into a replica; start it as a replica of the current master instead (the
    # sentinels then simply see their replica again).
    start_node sentinel "$port" "" --replicaof "$HOST" "${master##*:}"
  else
    start_node "$topo" "$port"
  fi
  stage "$topo: restart $port" "$t0"
  [ "$nowait" = --no-wait ] && return 0
  t0=$(now_ms)
  if [ "$topo" = cluster ]; then
    wait_until "node $port to rejoin the cluster" cluster_healthy 1
  else
    wait_until "node $port to rejoin the sentinel group" sentinel_healthy 1
  fi
  stage "$topo: $port rejoined, topology complete" "$t0"
}

main() {
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    wait) cmd_wait "$@" ;;
    kill-master-of) kill_master_of "$@" ;;
    kill-sentinel-master) kill_sentinel_master ;;
    restart) cmd_restart "$@" ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
      exit 64
      ;;
  esac
}

main "$@"
