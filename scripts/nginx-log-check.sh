#!/usr/bin/env bash
# Checks that the shipped nginx config keeps event-stream credentials out of nginx's logs.
#
#   bash scripts/nginx-log-check.sh [CONFIG]      (default: deploy/nginx/nginx.conf)
#   NGINX_LOG_CHECK_VERBOSE=1 bash scripts/nginx-log-check.sh     (also print both logs)
#
# Starts nginx from a copy of CONFIG in a temporary folder: the upstreams gateway-1/gateway-2
# become 127.0.0.1 ports (one served by a tiny python http.server, one where nothing listens,
# so both a proxied answer and an upstream connect failure are logged), the listen port, pid,
# access log, error log and temp paths move into the folder. It then sends
# GET /v1/queue/events with ?ticket=SECRET… and ?token=SECRET… (plain, with extra parameters,
# with a doubled slash and with a percent-encoded path), stops nginx (by PID), and fails when
# a secret appears in the access log or the error log, when no access log line was written for
# those requests, or when an access log line is not JSON. Installs nginx with apt-get when
# missing. Stops everything it started by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-deploy/nginx/nginx.conf}"

log() { printf '[nginx-log-check] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ -f "$CONFIG" ] || die "no config at $CONFIG"
NGINX="$(command -v nginx || true)"
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; }
if [ -z "$NGINX" ]; then
  log "installing nginx with apt-get"
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nginx >/dev/null
  NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is required (the stand-in upstream)"
command -v curl >/dev/null 2>&1 || die "curl is required"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # first free port from $1
  local p=$1
  while port_open "$p"; do p=$((p + 1)); done
  echo "$p"
}

TMP=$(mktemp -d)
chmod 755 "$TMP" # nginx workers (nobody) use the temp paths in here
NGINX_PID=""
UPSTREAM_PID=""
cleanup() {
  local status=$?
  for pid in "$NGINX_PID" "$UPSTREAM_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=$(free_port 18480)
UP_LIVE=$(free_port $((PORT + 1)))
UP_DEAD=$(free_port $((UP_LIVE + 1)))

# The stand-in upstream: answers every request (404 from an empty folder is fine).
mkdir -p "$TMP/www"
python3 -m http.server "$UP_LIVE" --bind 127.0.0.1 --directory "$TMP/www" >"$TMP/upstream.log" 2>&1 &
UPSTREAM_PID=$!

# The config under test, pointed at this machine and this folder; everything else as shipped.
conf="$TMP/nginx.conf"
sed -e "s#server gateway-1:8080#server 127.0.0.1:$UP_LIVE#" \
    -e "s#server gateway-2:8080#server 127.0.0.1:$UP_DEAD#" \
    -e "s#^\([[:space:]]*\)listen 8080[^;]*;#\1listen 127.0.0.1:$PORT;#" \
    -e "s#^pid [^;]*;#pid $TMP/nginx.pid;#" \
    -e "s#^worker_processes [^;]*;#worker_processes 1;#" \
    -e "/^worker_rlimit_nofile /d" \
    -e "s#access_log /dev/stdout#access_log $TMP/access.log#" \
    -e "s#error_log /dev/stderr#error_log $TMP/error.log#" \
    -e "s#^http {#http {\n    client_body_temp_path $TMP/body;\n    proxy_temp_path $TMP/proxy;\n    fastcgi_temp_path $TMP/fastcgi;\n    uwsgi_temp_path $TMP/uwsgi;\n    scgi_temp_path $TMP/scgi;#" \
    "$CONFIG" >"$conf"
grep -q "127.0.0.1:$UP_LIVE" "$conf" || die "could not point upstream gateway-1 at 127.0.0.1 (config changed?)"
grep -q "listen 127.0.0.1:$PORT;" "$conf" || die "could not move the listen port (config changed?)"
grep -q "access_log $TMP/access.log" "$conf" || die "could not move the access log (config changed?)"

"$NGINX" -t -q -p "$TMP/" -e "$TMP/error.log" -c "$conf" || die "nginx -t rejects the config"
"$NGINX" -p "$TMP/" -e "$TMP/error.log" -c "$conf" -g 'daemon off;' &
NGINX_PID=$!
for _ in $(seq 1 50); do
  port_open "$PORT" && port_open "$UP_LIVE" && break
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited at start: $(tail -n 5 "$TMP/error.log" 2>/dev/null)"
  sleep 0.1
done
port_open "$PORT" || die "nginx is not listening on $PORT"
port_open "$UP_LIVE" || die "the stand-in upstream is not listening on $UP_LIVE"

SECRETS=(SECRET123 SECRET456)
paths=(
  "/v1/queue/events?ticket=SECRET123"
  "/v1/queue/events?token=SECRET456"
  "/v1/queue/events?x=1&ticket=SECRET123&y=2"
  "/v1/queue//events?token=SECRET456"
  "/v1/queue/%65vents?ticket=SECRET123"
)
# Twice over: least_conn tries both upstreams, so the dead one's connect failures are logged too.
for _ in 1 2; do
  for path in "${paths[@]}"; do
    code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -H 'Accept: text/event-stream' "http://127.0.0.1:$PORT$path" || true)
    log "GET $path -> $code"
  done
done

# Stop nginx (graceful) so that every log line is written before reading the logs.
kill -QUIT "$NGINX_PID" 2>/dev/null || true
wait "$NGINX_PID" 2>/dev/null || true
NGINX_PID=""

if [ -n "${NGINX_LOG_CHECK_VERBOSE:-}" ]; then
  log "access log:"; cat "$TMP/access.log" >&2 || true
  log "error log:"; cat "$TMP/error.log" >&2 || true
fi

leaks=0
for secret in "${SECRETS[@]}"; do
  for f in access.log error.log; do
    [ -f "$TMP/$f" ] || continue
    if grep -F -n "$secret" "$TMP/$f" >&2; then
      log "secret $secret is in nginx's $f (lines above)"
      leaks=$((leaks + 1))
    fi
  done
done
[ "$leaks" -eq 0 ] || die "$leaks leak(s) of an event-stream credential into nginx's logs ($CONFIG)"
sent=$((2 * ${#paths[@]}))
lines=$(grep -c '"uri":"/v1/queue/' "$TMP/access.log" || true)
[ "$lines" -ge "$sent" ] || die "expected $sent access log lines for /v1/queue/events, found $lines: $(head -c 600 "$TMP/access.log")"
python3 -c '
import json, sys
for n, line in enumerate(open(sys.argv[1]), 1):
    try:
        json.loads(line)
    except ValueError as e:
        sys.exit(f"access log line {n} is not JSON ({e}): {line[:200]}")
' "$TMP/access.log" || die "the access log is not one JSON object per line"

statuses=$(grep -o '"upstream_status":"[^"]*"' "$TMP/access.log" | sed 's/.*:"\(.*\)"/\1/' | sort | uniq -c | awk '{c=$1; $1=""; printf "%s%s x%s", (NR>1?", ":""), substr($0,2), c}')
log "ok: $lines access log lines for /v1/queue/events (upstream answers: $statuses); neither secret in the access or error log ($CONFIG)"
