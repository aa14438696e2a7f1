#!/usr/bin/env bash
# Syntax-checks every k6 script with Node (no k6 needed): each .js is copied to a temporary
# .mjs file so Node parses it as an ES module. Imports ('k6/http', './lib.js') are not
# resolved, only parsed. Then runs check-callbacks.mjs, which runs every script against
# stand-ins of k6 and of a healthy gateway and checks what each request would count in
# http_req_failed. Exit 1 if any script fails to parse or fails that check.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v node >/dev/null 2>&1 || { echo "check-syntax: node is required" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

status=0
count=0
shopt -s nullglob
for script in "$here"/*.js; do
  name="$(basename "$script" .js)"
  cp "$script" "$tmp/$name.mjs"
  count=$((count + 1))
  if out="$(node --check "$tmp/$name.mjs" 2>&1)"; then
    echo "ok    k6/$name.js"
  else
    echo "FAIL  k6/$name.js"
    printf '%s\n' "$out" | sed "s#$tmp/$name.mjs#k6/$name.js#g" | sed 's/^/      /'
    status=1
  fi
done
if [ "$count" -eq 0 ]; then
  echo "check-syntax: no scripts found in $here" >&2
  exit 1
fi
echo "$count scripts checked"
[ "$status" -eq 0 ] || exit "$status"
node "$here/check-callbacks.mjs"
