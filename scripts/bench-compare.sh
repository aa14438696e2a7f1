#!/usr/bin/env bash
# Runs the same load scenarios against two gateway binaries, in A B B A order, each on a fresh
# database and key prefix, and prints every summary: before/after figures from one run.
#
#   scripts/bench-compare.sh OLD_BINARY NEW_BINARY [scenario …]   (default: baseline poll join)
#
# Both run as shipped (request log on, written to a file; default rate limits); BENCH_ENV adds
# settings to both. The load tool is this checkout's release build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [scenario …]" >&2; exit 2; }
old=$1 new=$2
shift 2
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(baseline poll join)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
bash scripts/services.sh
cargo build --release --locked --bin queuegate-load
load="$CARGO_TARGET_DIR/release/queuegate-load"
export ADMIN_TOKEN="bench-admin-token-0123456789" JWT_SECRET="bench-secret-bench-secret-bench-secret"
port="${BENCH_PORT:-18085}"
export QG_ADDR="127.0.0.1:$port"
ulimit -n 20000 2>/dev/null || true

run() { # label binary
  local label=$1 bin=$2 db="qgcmp_$$_$RANDOM" prefix="qgcmp$$$RANDOM" log
  log=$(mktemp -t "queuegate-cmp-$label-XXXX.log")
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
  # shellcheck disable=SC2086
  env DATABASE_URL="mysql://root@127.0.0.1:3306/$db" LISTEN_ADDR="$QG_ADDR" REDIS_KEY_PREFIX="$prefix" \
    ${BENCH_ENV:-} "$bin" serve 2>"$log" &
  local gw=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  echo "## $label: $bin (pid $gw)"
  for s in "${scenarios[@]}"; do
    # shellcheck disable=SC2086
    "$load" "$s" --gateway-pid "$gw" --database-url "mysql://root@127.0.0.1:3306/$db" ${LOAD_ARGS:-} \
      | grep -E "^==|req/s|latency|RSS|verdict" || true
  done
  kill "$gw"; wait "$gw" 2>/dev/null || true
  redis-cli --scan --pattern "$prefix*" | xargs -r -n 1000 redis-cli del >/dev/null || true
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db"
  rm -f "$log"
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, commit $(git rev-parse --short HEAD), extra env: ${BENCH_ENV:-none}"
run A-old "$old"; run B-new "$new"; run B-new "$new"; run A-old "$old"
