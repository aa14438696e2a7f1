#!/usr/bin/env bash
# Runs the README's curl walk-through against a live gateway, exactly as a reader would paste it:
# the fenced block that follows the `<!-- readme-walkthrough … -->` marker in README.md, under
# `bash -euo pipefail`, with BASE set to the gateway's address. Exit status: the block's.
#
#   scripts/readme-walkthrough.sh [BASE_URL]   against a running gateway (default http://127.0.0.1:8080)
#   scripts/readme-walkthrough.sh --serve      starts its own: the debug binary (built if missing)
#                                              with run.sh's settings, a fresh database and Redis
#                                              key prefix, `migrate` + `seed`; stopped (by PID)
#                                              and cleaned up afterwards
#   scripts/readme-walkthrough.sh --print      only prints the extracted block
#
# The gateway must have a concert on sale with at least two free seats on its first date at
# the demo price (what `queuegate seed` creates) and admit users (the default settings do).
set -euo pipefail
cd "$(dirname "$0")/.."

print_only=0
serve=0
case "${1:-}" in
  --print) print_only=1; shift ;;
  --serve) serve=1; shift ;;
esac
base="${1:-${BASE:-http://127.0.0.1:8080}}"
base="${base%/}"

# The first fenced block after the marker line, without its fences.
block=$(awk '
  /^<!-- readme-walkthrough/ { marked = 1; next }
  marked && !inside && /^```/ { inside = 1; next }
  inside && /^```/ { exit }
  inside { print }
' README.md)
if [ -z "$block" ]; then
  echo "[walkthrough] no fenced block after a '<!-- readme-walkthrough' marker in README.md" >&2
  exit 1
fi
if [ "$print_only" -eq 1 ]; then
  printf '%s\n' "$block"
  exit 0
fi

for cmd in curl python3; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "[walkthrough] $cmd is required" >&2; exit 1; }
done

if [ "$serve" -eq 1 ]; then
  target="${CARGO_TARGET_DIR:-$HOME/.cache/queuegate-target}"
  bin="$target/debug/queuegate"
  [ -x "$bin" ] || CARGO_TARGET_DIR="$target" cargo build --bin queuegate
  port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  port=18097
  while port_open "$port"; do port=$((port + 1)); done
  db="qgwalk_$$"
  prefix="qgwalk$$"
  tmp=$(mktemp -d)
  gw=""
  cleanup() {
    if [ -n "$gw" ]; then
      kill "$gw" 2>/dev/null || true
      wait "$gw" 2>/dev/null || true
    fi
    redis-cli --scan --pattern "${prefix}*" | xargs -r -n 500 redis-cli del >/dev/null 2>&1 || true
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db" 2>/dev/null || true
    rm -rf "$tmp"
  }
  trap cleanup EXIT
  export LISTEN_ADDR="127.0.0.1:$port" DATABASE_URL="mysql://root@127.0.0.1:3306/$db" \
    REDIS_KEY_PREFIX="$prefix" RUST_LOG="${RUST_LOG:-warn}"
  # From the temp dir, so a developer's .env cannot change the settings.
  (cd "$tmp" && "$bin" migrate >/dev/null && "$bin" seed >/dev/null)
  (cd "$tmp" && exec "$bin" serve) >"$tmp/gateway.log" 2>&1 &
  gw=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -fs "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
fi
if ! curl -fsS -m 5 "$base/healthz" >/dev/null; then
  echo "[walkthrough] no gateway answers at $base/healthz" >&2
  exit 1
fi

echo "[walkthrough] running the README's curl walk-through against $base" >&2
set +e
BASE="$base" timeout 180 bash -euo pipefail -c "$block"
status=$?
set -e
if [ "$status" -eq 0 ]; then
  echo "[walkthrough] passed" >&2
else
  echo "[walkthrough] FAILED (exit $status)" >&2
  if [ "$serve" -eq 1 ]; then
    echo "[walkthrough] gateway log (last 20 lines):" >&2
    tail -n 20 "$tmp/gateway.log" >&2 || true
  fi
fi
exit "$status"
