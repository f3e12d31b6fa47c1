#!/usr/bin/env bash
# A level soakd cannot drive is never the target's limit (issue 14, item 6) — a benchmark,
# not a test: a capacity search against a local nginx (1 worker) with an SLO of p95 50 ms
# and two levels, 1,000/s (easy) and 400,000/s (far above what soakd drives on this
# machine), once with unlimited connections and once with `max_connections: 50`. Each
# run's levels are printed with their verdicts and reasons: the 400,000/s level must be
# **invalid** with the generator's evidence (soakd's CPU share, its runtime's scheduling
# delay, time queued for its own connection slots), never **fail**. wrk's closed-loop
# maximum against the same nginx, measured in the same run, says what the server itself
# serves.
#
#   scripts/bench/generator-limit.sh
#   EACH=20s WARMUP=5s scripts/bench/generator-limit.sh
source "$(dirname "$0")/lib.sh"

EACH=${EACH:-20s}
WARMUP=${WARMUP:-5s}
need_apt wrk wrk
build_soakd
PORT=$(free_port)
start_nginx "$PORT"

echo "== wrk, closed loop, 1 thread x 64 connections, 10 s"
wrk -t1 -c64 -d10s "http://127.0.0.1:$PORT/" | grep -E "Requests/sec|Latency"

for conns in unlimited 50; do
  dir="$WORK/$conns"
  mkdir -p "$dir"
  limit=""
  [ "$conns" = unlimited ] || limit=", max_connections: $conns"
  cat > "$dir/search.yaml" <<YAML
listen: 127.0.0.1:$(free_port)
targets:
  nginx: {type: http, base_url: "http://127.0.0.1:$PORT"$limit}
scenarios:
  get:
    target: nginx
    max_in_flight: 2000
    timeout: 5s
    slo: {p95: 50ms}
    schedule: {hold: {rate: 10/s}}
    ops: {root: {http: {path: /}}}
search:
  name: generator-limit
  each: $EACH
  warmup: $WARMUP
  scenarios:
    get: {levels: [1000/s, 400000/s]}
results: {dir: "$dir/results"}
YAML
  echo "== soakd search, connections: $conns"
  RUST_LOG=warn "$SOAKD" run --config "$dir/search.yaml" --exit-after-search 2> "$dir/soakd.log" || true
  "$SOAKD" report --results-dir "$dir/results" --run latest --json | python3 -c '
import json, sys
run = json.load(sys.stdin)
for l in run["levels"]:
    s = l["scenarios"][0]
    p95 = 1000 * (s["latency"]["p95"] or 0)
    cpu = l["soakd"]["cpu_percent"] or 0
    delay = 1000 * (l["soakd"].get("runtime_delay_p99") or 0)
    print("%9.0f/s offered, %9.0f/s achieved, p95 %.1f ms, soakd CPU %.0f %%, runtime delay p99 %.1f ms: %s: %s"
          % (s["offered_rate"], s["achieved_rate"], p95, cpu, delay, l["verdict"].upper(), l["reason"]))
'
done
echo "Machine: $(machine). nginx $(nginx -v 2>&1 | cut -d/ -f2), 1 worker; soakd $($SOAKD --version | awk '{print $2}'). Command: \`scripts/bench/generator-limit.sh\`."
