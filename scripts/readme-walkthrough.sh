#!/usr/bin/env bash
# Runs the README's curl walk-through against a live gateway, exactly as a reader would paste it:
# the fenced block that follows the `<!-- readme-walkthrough … -->` marker in README.md, under
# `bash -euo pipefail`, with BASE set to the gateway's address. Exit status: the block's.
#
#   scripts/readme-walkthrough.sh [BASE_URL]      (default http://127.0.0.1:8080)
#
# The gateway must have a concert on sale with at least two free seats on its first date at
# the demo price (what `queuegate seed` creates) and admit users (the default settings do).
# With --print, only prints the extracted block.
set -euo pipefail
cd "$(dirname "$0")/.."

print_only=0
if [ "${1:-}" = "--print" ]; then
  print_only=1
  shift
fi
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
fi
exit "$status"
