#!/usr/bin/env bash
# The queue tests again on a Redis Cluster (3 masters + 3 replicas) and a Sentinel group
# (1 master, 1 replica, 3 sentinels), then the failover tests: started on loopback by
# scripts/redis-topology.sh and stopped by PID when this ends. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
log() { printf '[topology-tests] %s\n' "$*" >&2; }

trap 'bash scripts/redis-topology.sh down all >/dev/null 2>&1 || true' EXIT
bash scripts/redis-topology.sh up all
eval "$(bash scripts/redis-topology.sh env)"

# One test matrix: the same queue tests, with the queue store named by QG_TEST_REDIS_URL.
for topology in cluster sentinel; do
  url_var="REDIS_URL_${topology^^}"
  log "queue tests on Redis ${topology}"
  QG_TEST_REDIS_URL="${!url_var}" cargo test --locked --test queue --test first_hour -- --test-threads=4
  # Gateway mode's tunnels and remembered grants: the admission-end notices travel over this
  # topology's pub/sub.
  QG_TEST_REDIS_URL="${!url_var}" cargo test --locked --test gateway -- tunnel remembered --test-threads=4
done

log "failover tests (one at a time: each kills a master)"
QG_TEST_REDIS_URL_CLUSTER="$REDIS_URL_CLUSTER" QG_TEST_REDIS_URL_SENTINEL="$REDIS_URL_SENTINEL" \
  cargo test --locked --test failover -- --ignored --test-threads=1 --nocapture
