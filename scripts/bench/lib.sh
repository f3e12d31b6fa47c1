# Shared helpers for the benchmark scripts (sourced, not run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/soakd/target}"
SOAKD="$CARGO_TARGET_DIR/release/soakd"
WORK="$(mktemp -d /tmp/soakd-bench.XXXXXX)"
trap 'cleanup' EXIT
# A kill or ^C runs the cleanup too (bash skips the EXIT trap on a fatal signal), so no
# server or throwaway PostgreSQL outlives the script.
trap 'exit 130' INT TERM
CLEANUP=()
cleanup() {
  for c in "${CLEANUP[@]:-}"; do [ -n "$c" ] && eval "$c" || true; done
  rm -rf "$WORK"
}

free_port() {  # a free loopback port (bound and released)
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

need_apt() {  # need_apt COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

build_soakd() {
  (cd "$ROOT" && cargo build --release --locked -q)
}

# start_pgcluster: a throwaway PostgreSQL (examples/pgcluster.rs, removed at exit);
# sets PG_URL.
start_pgcluster() {
  (cd "$ROOT" && cargo build --release --locked -q --example pgcluster)
  "$CARGO_TARGET_DIR/release/examples/pgcluster" > "$WORK/pgurl" &
  local pid=$!
  CLEANUP+=("kill $pid 2>/dev/null; sleep 1")
  for _ in $(seq 100); do [ -s "$WORK/pgurl" ] && break; sleep 0.2; done
  PG_URL=$(cat "$WORK/pgurl")
  [ -n "$PG_URL" ] || { echo "the throwaway PostgreSQL did not start" >&2; exit 1; }
}

# start_nginx PORT [TLS_PORT [H2C_PORT]]: one worker answering `200 ok`, no logs; with
# TLS_PORT also over TLS 1.2/1.3 with HTTP/2 by ALPN there, on a self-signed certificate
# made here; with H2C_PORT also plaintext HTTP/2 with prior knowledge (h2c) there.
start_nginx() {
  local port=$1 tls_port=${2:-} h2c_port=${3:-} tls="" h2c=""
  need_apt nginx nginx
  mkdir -p "$WORK/nginx"
  if [ -n "$tls_port" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" 2>/dev/null
    tls="server {
    listen 127.0.0.1:$tls_port ssl http2 backlog=4096;
    ssl_certificate $WORK/nginx/cert.pem;
    ssl_certificate_key $WORK/nginx/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { return 200 \"ok\"; }
  }"
  fi
  [ -n "$h2c_port" ] && h2c="server {
    listen 127.0.0.1:$h2c_port http2 backlog=4096;
    location / { return 200 \"ok\"; }
  }"
  cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { return 200 "ok"; }
  }
  $tls
  $h2c
}
CONF
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"
  CLEANUP+=("kill \$(cat $WORK/nginx/nginx.pid) 2>/dev/null")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/" >/dev/null && return; sleep 0.1; done
  echo "nginx did not start" >&2; exit 1
}

# cpu_run OUT.json CMD...: runs CMD, writes {"wall","user","sys"} seconds of it and its children.
cpu_run() {
  local out=$1; shift
  python3 - "$out" "$@" <<'PY'
import json, resource, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t = time.monotonic()
p = subprocess.run(cmd, stdout=subprocess.PIPE)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.buffer.write(p.stdout)
json.dump({"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "rc": p.returncode}, open(out, "w"))
PY
}

# soakd_config FILE URL RATE_STAGE_YAML MAX_IN_FLIGHT [MAX_CONNECTIONS] [TARGET_KEYS]
# (TARGET_KEYS default `version: http1`)
soakd_config() {
  local conns="" keys=${6:-"version: http1"}
  [ -n "${5:-}" ] && conns=", max_connections: $5"
  cat > "$1" <<YAML
listen: 127.0.0.1:0
quantile_window: 1m
shutdown_grace: 5s
targets: {t: {type: http, base_url: "$2", $keys$conns}}
scenarios:
  s:
    target: t
    max_in_flight: $4
    timeout: 5s
    schedule: $3
    ops: {get: {http: {path: /}}}
YAML
}

# events_config FILE ADMIN_PORT DATABASE_URL RATE FLUSH_CONNECTIONS: the seed's event
# write path (random users and stat codes, 2 rows per event) on the buffered writer,
# 1 s flushes, a buffer large enough that only the database limits it.
events_config() {
  cat > "$1" <<YAML
listen: 127.0.0.1:$2
shutdown_grace: 10s
fixtures:
  user: {file: $ROOT/fixtures/users.json}
  stat: {file: $ROOT/fixtures/stats.json}
targets:
  db: {type: postgres, url: "$3", max_connections: 4, bootstrap: true, stats: {enabled: false}}
scenarios:
  events:
    target: db
    max_in_flight: 5000
    buffer: {size_limit: 1000000, flush_interval: 1s, max_batch: 200000, flush_connections: $5}
    schedule: {hold: {rate: $4/s}}
    ops:
      stat: {event: {user: "{{user.id}}", stat_code: "{{stat.code}}", value: "{{rand_int 1 60}}"}}
YAML
}

machine() {
  echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
}
