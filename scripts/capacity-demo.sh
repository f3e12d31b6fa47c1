#!/usr/bin/env bash
# Reproduces docs/capacity/: capacity searches against the demo target and a throwaway
# PostgreSQL on this machine, then `soakd report` for each run.
#
#   scripts/capacity-demo.sh                 # writes docs/capacity/ (about 15 minutes)
#   OUT=/tmp/cap SEARCH_EACH=6s SEARCH_WARMUP=2s scripts/capacity-demo.sh   # a quick look
#
# The demo target runs as its own process (`soakd target`) with its capacity knobs:
# 5-15 ms of added latency per request and at most CONCURRENCY requests served at once,
# so the API's designed limit is about CONCURRENCY / 10 ms. Goal progress lives in the
# throwaway PostgreSQL (the target's buffered writer), which soakd also reads directly.
source "$(dirname "$0")/bench/lib.sh"

OUT=${OUT:-$ROOT/docs/capacity}
CONCURRENCY=${CONCURRENCY:-8}
build_soakd
start_pgcluster
export DATABASE_URL=$PG_URL

HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
"$SOAKD" target --listen "127.0.0.1:$HTTP_PORT" --grpc-listen "127.0.0.1:$GRPC_PORT" \
  --database-url "$DATABASE_URL" --latency-ms 5-15 --concurrency-limit "$CONCURRENCY" \
  > "$WORK/target.log" 2>&1 &
TPID=$!
CLEANUP+=("kill $TPID 2>/dev/null; sleep 1")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null && break; sleep 0.1; done

export SOAKD_DEMO_HTTP_URL="http://127.0.0.1:$HTTP_PORT"
export SOAKD_DEMO_GRPC_URL="http://127.0.0.1:$GRPC_PORT"
export SOAKD_RESULTS_DIR="$OUT/results"
mkdir -p "$SOAKD_RESULTS_DIR"

for cfg in capacity-demo capacity-combined; do
  echo "== $cfg" >&2
  RUST_LOG=${RUST_LOG:-info} "$SOAKD" run --config "$ROOT/fixtures/$cfg.yaml" \
    --listen 127.0.0.1:0 --exit-after-search 2> "$WORK/$cfg.log" || { tail -20 "$WORK/$cfg.log" >&2; exit 1; }
  grep -E "capacity (level|search)" "$WORK/$cfg.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c 28- >&2
done

# The newest run of each search, rendered.
runs=$("$SOAKD" report --results-dir "$SOAKD_RESULTS_DIR" --list)
iso=$(echo "$runs" | awk -F'\t' '$2=="demo-isolated"{print $1; exit}')
comb=$(echo "$runs" | awk -F'\t' '$2=="demo-combined"{print $1; exit}')
"$SOAKD" report --results-dir "$SOAKD_RESULTS_DIR" --run "$iso" --out "$OUT"
"$SOAKD" report --results-dir "$SOAKD_RESULTS_DIR" --run "$comb" --out "$OUT/combined"
echo "report: $OUT/report.md and $OUT/combined/report.md" >&2
