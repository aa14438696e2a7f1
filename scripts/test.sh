#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests against real MariaDB and
# Redis. Starts what it needs (including two extra Redis masters on 6380/6381 for Redlock) and
# stops what it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
bash scripts/services.sh

# Test data: each test makes its own qgt_* database and qgt* Redis key prefix. Dropped before
# the run (leftovers of an interrupted run) and again when it ends, passed or failed. Only
# names with the qgt_ prefix (and plain [A-Za-z0-9_] characters) are ever dropped.
drop_test_data() {
  mariadb -h127.0.0.1 -uroot -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'qgt\\_%'" \
    | while read -r db; do
        case "$db" in
          qgt_*[!A-Za-z0-9_]*) echo "[test] not dropping database with odd name: $db" >&2 ;;
          qgt_*) mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`$db\`" ;;
        esac
      done
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern 'qgt*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null
}

pids=()
tmp=$(mktemp -d)
# Set once this run holds 6380/6381, so that a second run refused there (another one is in
# progress) leaves that run's data alone.
owns_test_data=0
cleanup() {
  if [ "$owns_test_data" -eq 1 ]; then
    drop_test_data || echo "[test] warning: could not drop all qgt_* test databases / qgt* Redis keys" >&2
  fi
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  # Wait for them to exit so the ports are free for the next run.
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in 6380 6381; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "[test] port $port is taken; stop whatever listens there first" >&2
    exit 1
  fi
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$tmp" \
    --logfile "$tmp/redis-$port.log" &
  pids+=("$!")
done
for port in 6380 6381; do
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
export QG_TEST_REDLOCK_URLS="redis://127.0.0.1:6379,redis://127.0.0.1:6380,redis://127.0.0.1:6381"

# Test data left by earlier runs.
owns_test_data=1
drop_test_data

# Each stage prints its name and how long it took; the summary at the end lists them all.
timings=()
run_started=$SECONDS
stage() {
  local name=$1 started=$SECONDS
  shift
  echo "[test] ── $name"
  "$@"
  timings+=("$(printf '%5d s  %s' $((SECONDS - started)) "$name")")
  echo "[test] ── $name: $((SECONDS - started)) s"
}

ulimit -n 16384 2>/dev/null || true
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --locked --all-targets -- -D warnings
stage "cargo test (unit + integration, real MariaDB and Redis)" cargo test --locked -- --test-threads=4
stage "queue on Redis Cluster and Sentinel, failovers" bash scripts/topology-tests.sh
stage "alert rules (promtool check + unit tests)" bash scripts/alerts-test.sh
stage "shipped nginx logs carry no tokens" bash scripts/nginx-log-check.sh
stage "contract fuzzing (schemathesis against /openapi.json)" bash scripts/contract.sh
stage "the README's curl walk-through, pasted into a shell" bash scripts/readme-walkthrough.sh --serve
echo "[test] e2e: CI=${CI:-unset}, QG_E2E_REQUIRED=${QG_E2E_REQUIRED:-unset} (with either set, a missing browser fails the run)"
stage "end to end in headless Chromium" bash scripts/e2e.sh
stage "the compose topology run natively (scripts/stack-test.sh)" env STACK_PROFILE=debug bash scripts/stack-test.sh

echo "[test] all stages passed in $((SECONDS - run_started)) s:"
printf '[test] %s\n' "${timings[@]}"
