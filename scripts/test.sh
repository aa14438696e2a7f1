#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests against real MariaDB and
# Redis. Starts what it needs (including two extra Redis masters on 6380/6381 for Redlock) and
# stops what it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
bash scripts/services.sh

pids=()
tmp=$(mktemp -d)
cleanup() {
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

# Test databases from earlier runs (each test makes its own qgt_* database).
mariadb -h127.0.0.1 -uroot -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'qgt\\_%'" \
  | while read -r db; do mariadb -h127.0.0.1 -uroot -e "DROP DATABASE \`$db\`"; done

redis-cli -p 6379 --scan --pattern 'qgt*' | xargs -r -n 500 redis-cli -p 6379 del >/dev/null

echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "[test] cargo test"
ulimit -n 16384 2>/dev/null || true
cargo test --locked -- --test-threads=4

echo "[test] contract fuzzing (schemathesis against /openapi.json)"
bash scripts/contract.sh

echo "[test] end to end in headless Chromium"
bash scripts/e2e.sh
