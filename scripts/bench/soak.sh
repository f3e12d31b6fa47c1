#!/usr/bin/env bash
# Soak benchmark (not a test): soakd at RATE (default 2000/s) for MINUTES (default 30)
# against a local nginx, sampling its RSS and open file descriptors every 10 s into a
# CSV. After the first WARMUP_MINUTES (default 5), RSS must not grow by more than 2 %:
# bounded histograms and windows are the point.
#
#   scripts/bench/soak.sh                # 30 minutes
#   MINUTES=10 scripts/bench/soak.sh     # shorter
#   CSV=/tmp/soak.csv scripts/bench/soak.sh
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-2000}
MINUTES=${MINUTES:-30}
WARMUP_MINUTES=${WARMUP_MINUTES:-5}
CSV=${CSV:-$WORK/soak.csv}
CONNS=${CONNS:-100}  # the target's max_connections, as oha's and wrk's -c in http.sh

build_soakd
PORT=$(free_port)
start_nginx "$PORT"
ADMIN=$(free_port)
soakd_config "$WORK/soak.yaml" "http://127.0.0.1:$PORT" "{hold: {rate: $RATE/s}}" 2000 "$CONNS"
RUST_LOG=warn "$SOAKD" run --config "$WORK/soak.yaml" --listen "127.0.0.1:$ADMIN" \
  --duration "${MINUTES}m" --summary > "$WORK/summary.json" &
PID=$!
CLEANUP+=("kill $PID 2>/dev/null")

echo "elapsed_s,rss_kib,open_fds,requests_total" > "$CSV"
start=$(date +%s)
while kill -0 "$PID" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  rss=$(awk '/VmRSS/{print $2}' "/proc/$PID/status" 2>/dev/null || true)
  fds=$(ls "/proc/$PID/fd" 2>/dev/null | wc -l)
  reqs=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^soakd_requests_total/{s+=$2} END{printf "%d", s}' || true)
  [ -n "$rss" ] && echo "$now,$rss,$fds,${reqs:-0}" >> "$CSV"
  sleep 10
done
wait "$PID" || true

python3 - "$CSV" "$WORK/summary.json" "$WARMUP_MINUTES" "$RATE" "$MINUTES" <<'PY'
import csv, json, sys
rows = [r for r in csv.DictReader(open(sys.argv[1]))]
summ = json.load(open(sys.argv[2]))["scenarios"][0]
warm = int(sys.argv[3]) * 60
rate, minutes = int(sys.argv[4]), int(sys.argv[5])
after = [r for r in rows if int(r["elapsed_s"]) >= warm]
base = int(after[0]["rss_kib"])
peak = max(int(r["rss_kib"]) for r in after)
last = int(after[-1]["rss_kib"])
fds = sorted({int(r["open_fds"]) for r in rows})
growth = (peak - base) / base * 100
end_growth = (last - base) / base * 100
# Least-squares slope of RSS after the warm-up, in % of the base per hour: a leak shows
# as a steady slope; a burst of connections (latency spike) as a transient peak.
xs = [int(r["elapsed_s"]) for r in after]; ys = [int(r["rss_kib"]) for r in after]
n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(sum((x - mx) ** 2 for x in xs), 1)
slope_pct_h = slope * 3600 / base * 100
print(f"## Soak: {rate}/s for {minutes} min\n")
print("| | value |")
print("|---|---|")
print(f"| samples | {len(rows)} (every 10 s) |")
print(f"| RSS at start / at {warm//60} min / peak after / at end | {int(rows[0]['rss_kib'])/1024:.1f} / {base/1024:.1f} / {peak/1024:.1f} / {last/1024:.1f} MiB |")
print(f"| RSS growth after {warm//60} min: peak vs {warm//60}-min mark | {growth:+.2f} % (limit 2 %) -> {'PASS' if growth <= 2 else 'FAIL'} |")
print(f"| RSS growth after {warm//60} min: end vs {warm//60}-min mark | {end_growth:+.2f} % -> {'PASS' if end_growth <= 2 else 'FAIL'} |")
print(f"| RSS trend after {warm//60} min (least squares) | {slope_pct_h:+.2f} % per hour |")
print(f"| open fds (min..max) | {fds[0]}..{fds[-1]} |")
print(f"| requests completed | {summ['completed']} ({summ['completed']/(minutes*60):.1f}/s), dropped {summ['dropped']}, late {summ['late']}, errors {summ['errors']} |")
print(f"| p50 / p99 (last window) | {summ['p50_seconds']*1000:.2f} / {summ['p99_seconds']*1000:.2f} ms |")
PY
echo
echo "CSV: $CSV"
