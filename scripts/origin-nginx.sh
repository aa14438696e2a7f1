#!/usr/bin/env bash
# Runs Debian's nginx in the foreground as a static origin for gateway mode (e2e, benchmarks):
# one process (no master, no privilege drop), listening on 127.0.0.1:PORT, serving ROOT, with a
# generated configuration and every file it writes kept in STATE_DIR. The script execs nginx, so
# `$!` of `bash scripts/origin-nginx.sh … &` is nginx's PID: stop it with `kill <pid>`.
# Installs nginx with apt-get when it is missing.
#
# With --proxy it runs nginx instead as a plain reverse proxy in front of UPSTREAM (HOST:PORT),
# for `scripts/bench.sh proxy` to measure beside the gateway: what forwarding alone costs on
# this machine. It gets what the gateway has: one worker process per core (the master's PID is
# `$!`; killing it stops the workers), pooled keep-alive connections to the origin, and an
# access log written in batches.
#
# In static mode, ORIGIN_WS=HOST:PORT also passes /shop/live to that WebSocket server (the shop's
# live socket, as a shop's nginx would in front of its app): the e2e's browser reaches it
# through queuegate's tunnel. ORIGIN_TLS_PORT=PORT also serves the same site over https on that
# port, with a certificate for 127.0.0.1 from a CA made here with openssl (STATE_DIR/ca.pem: give
# it to the gateway as UPSTREAM_CA_FILE).
#
# Usage: scripts/origin-nginx.sh PORT ROOT STATE_DIR
#        scripts/origin-nginx.sh --proxy PORT UPSTREAM STATE_DIR
set -euo pipefail
mode=static
if [ "${1:-}" = --proxy ]; then
  mode=proxy
  shift
fi
if [ $# -ne 3 ]; then
  echo "usage: $0 PORT ROOT STATE_DIR | --proxy PORT UPSTREAM STATE_DIR" >&2
  exit 2
fi
port=$1
if [ "$mode" = proxy ]; then upstream=$2; else root=$(cd "$2" && pwd); fi
state=$(mkdir -p "$3" && cd "$3" && pwd)

nginx_bin=$(command -v nginx || true)
[ -n "$nginx_bin" ] || [ ! -x /usr/sbin/nginx ] || nginx_bin=/usr/sbin/nginx
if [ -z "$nginx_bin" ]; then
  echo "[origin-nginx] installing nginx with apt-get" >&2
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nginx >/dev/null
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
fi

mkdir -p "$state/tmp"
if [ "$mode" = proxy ]; then
  processes="master_process on;
worker_processes $(nproc);"
  log="access_log $state/access.log combined buffer=64k flush=1s;"
  site="upstream origin { server $upstream; keepalive 512; }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
else
  processes="master_process off;
worker_processes 1;"
  log="access_log off;"
  live=""
  if [ -n "${ORIGIN_WS:-}" ]; then
    live="location = /shop/live {
            proxy_pass http://$ORIGIN_WS;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_read_timeout 1h;
        }"
  fi
  tls_listen=""
  if [ -n "${ORIGIN_TLS_PORT:-}" ]; then
    # A CA and a certificate for 127.0.0.1 it signs (ECDSA P-256, two days).
    (
      cd "$state"
      ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
      openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=origin test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
      openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile server.ext 2>/dev/null
    )
    tls_listen="listen 127.0.0.1:$ORIGIN_TLS_PORT ssl;
        ssl_certificate $state/server.pem;
        ssl_certificate_key $state/server.key;
        ssl_session_cache shared:tls:1m;"
  fi
  site="server {
        listen 127.0.0.1:$port;
        $tls_listen
        root $root;
        location / { }
        $live
    }"
fi
cat >"$state/nginx.conf" <<CONF
daemon off;
$processes
pid $state/nginx.pid;
error_log $state/error.log warn;
events { worker_connections 4096; }
http {
    $log
    client_body_temp_path $state/tmp/body;
    proxy_temp_path $state/tmp/proxy;
    fastcgi_temp_path $state/tmp/fastcgi;
    uwsgi_temp_path $state/tmp/uwsgi;
    scgi_temp_path $state/tmp/scgi;
    types { text/html html; text/css css; application/javascript js; image/svg+xml svg; application/octet-stream bin; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    $site
}
CONF
exec "$nginx_bin" -p "$state" -c "$state/nginx.conf" -e "$state/error.log"
