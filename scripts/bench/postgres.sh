#!/usr/bin/env bash
# PostgreSQL benchmark (not a test), against a throwaway cluster on this machine
# (fsync on), in one run:
#
#   (a) select-only closed-loop maximum with 16 connections: pgbench -S -c 16 versus
#       soakd with `arrival: closed` and 16 workers on a pool of 16; transactions/s
#       and CPU per 1,000 (pgbench's own process, not the runuser wrapper).
#   (b) fixed 2,000/s select-only for DURATION: latency percentiles measured from the
#       intended start in both (pgbench: latency + schedule lag from its per-
#       transaction log; soakd: its own summary).
#   (c) the buffered writer: events/s accepted with 1 s flushes, at rising rates, with
#       the flush duration (p95 from soakd_buffer_flush_duration_seconds) at each.
#
#   scripts/bench/postgres.sh              # DURATION=20 by default
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-20}
EVENT_RATES=${EVENT_RATES:-"25000 50000 75000 100000"}
FLUSH_CONNECTIONS=${FLUSH_CONNECTIONS:-1}  # statements per flush (buffer.flush_connections)
build_soakd
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/pgbench" ] || need_apt pgbench postgresql

start_pgcluster
URL=$PG_URL
PORT=$(echo "$URL" | sed -E 's|.*:([0-9]+)/.*|\1|')
PGB=(runuser -u postgres -- "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres)
[ "$(id -u)" -eq 0 ] || PGB=("$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres)
"${PGB[@]}" -i -s 10 -q postgres > "$WORK/init.log" 2>&1
chmod 777 "$WORK"

pg_cfg() {  # pg_cfg FILE RATE MAX_IN_FLIGHT [ARRIVAL]
  cat > "$1" <<YAML
listen: 127.0.0.1:0
shutdown_grace: 5s
targets:
  db: {type: postgres, url: "$URL", max_connections: 16, min_connections: 16, stats: {enabled: false}}
scenarios:
  select:
    target: db
    max_in_flight: $3
    arrival: ${4:-uniform}
    timeout: 5s
    schedule: {hold: {rate: $2/s}}
    ops:
      select_only:
        sql:
          query: "SELECT abalance FROM pgbench_accounts WHERE aid = \$1"
          params: [{value: "{{rand_int 1 1000000}}", type: int4}]
YAML
}

# (a) closed-loop maximum
"${PGB[@]}" -S -c 16 -j 2 -T "$DURATION" -n postgres > "$WORK/pgb-max.txt" 2>&1 &
PGB_PID=$!
python3 - "$PGB_PID" "$WORK/pgb-max.cpu" <<'PY' &
import sys, time, os
pid, out = int(sys.argv[1]), sys.argv[2]
def stat(p):
    try:
        return open(f"/proc/{p}/stat").read().split(")")[-1].split()
    except Exception:
        return None
def cpu(p):
    f = stat(p)
    return None if f is None else (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
# pgbench runs under runuser when root: count the wrapper and its children.
seen = {}
while stat(pid) is not None:
    kids = [int(d) for d in os.listdir("/proc") if d.isdigit() and (stat(d) or ["", "0"])[1] == str(pid)]
    for k in [pid] + kids:
        c = cpu(k)
        if c is not None: seen[k] = c
    time.sleep(0.2)
last = sum(seen.values())
open(out, "w").write(str(last))
PY
wait "$PGB_PID"; sleep 0.5
pg_cfg "$WORK/max.yaml" 1 16 closed
RUST_LOG=warn cpu_run "$WORK/soakd-max.cpu" "$SOAKD" run --config "$WORK/max.yaml" --duration "${DURATION}s" --summary > "$WORK/soakd-max.json"

# (b) fixed 2,000/s
( cd "$WORK" && "${PGB[@]}" -S -c 16 -j 2 -T "$DURATION" -R 2000 -n -l --log-prefix="$WORK/pgblog" postgres > "$WORK/pgb-fixed.txt" 2>&1 )
pg_cfg "$WORK/fixed.yaml" 2000 256
RUST_LOG=warn cpu_run "$WORK/soakd-fixed.cpu" "$SOAKD" run --config "$WORK/fixed.yaml" --duration "${DURATION}s" --summary > "$WORK/soakd-fixed.json"

# (c) buffered writer
for r in $EVENT_RATES; do
  ADMIN=$(free_port)
  events_config "$WORK/ev-$r.yaml" "$ADMIN" "$URL" "$r" "${FLUSH_CONNECTIONS:-1}"
  RUST_LOG=warn "$SOAKD" run --config "$WORK/ev-$r.yaml" --duration "${DURATION}s" --summary > "$WORK/ev-$r.json" &
  SPID=$!
  sleep $((DURATION - 2))
  curl -sf "http://127.0.0.1:$ADMIN/metrics" > "$WORK/ev-$r.metrics" || true
  wait "$SPID"
done

python3 - "$WORK" "$DURATION" "$EVENT_RATES" <<'PY'
import json, re, sys
work, dur, rates = sys.argv[1], float(sys.argv[2]), sys.argv[3].split()
def cpu(p):
    c = json.load(open(p)); return c["user"] + c["sys"]
def tps(p):
    return float(re.search(r"tps = ([\d.]+)", open(p).read()).group(1))
def summ(p):
    return json.load(open(p))["scenarios"][0], json.load(open(p))["duration_seconds"]
# (a)
pg_tps = tps(f"{work}/pgb-max.txt"); pg_cpu = float(open(f"{work}/pgb-max.cpu").read())
s, sd = summ(f"{work}/soakd-max.json"); s_tps = (s["completed"] - s["errors"]) / sd; s_cpu = cpu(f"{work}/soakd-max.cpu")
print("### (a) Select-only, closed-loop maximum, 16 connections\n")
print("| tool | transactions/s | CPU s per 1,000 |")
print("|---|---|---|")
print(f"| pgbench -S -c 16 -j 2 | {pg_tps:.0f} | {pg_cpu / (pg_tps*dur) * 1000:.4f} |")
print(f"| soakd (arrival: closed, 16 workers, pool 16) | {s_tps:.0f} | {s_cpu / s['completed'] * 1000:.4f} |")
s_err = s["errors"]
print(f"\nRatio soakd/pgbench throughput: **{s_tps/pg_tps:.2f}** (soakd errors: {s_err})\n")
# (b)
lat = []
import glob
for f in glob.glob(f"{work}/pgblog*"):
    for line in open(f):
        p = line.split()
        # client tx_no latency_us script epoch epoch_us schedule_lag_us
        if len(p) >= 7:
            lat.append((int(p[2]) + int(p[6])) / 1e6)
lat.sort()
q = lambda v, x: v[min(len(v)-1, int(x*len(v)))] if v else float("nan")
s, sd = summ(f"{work}/soakd-fixed.json")
ms = lambda v: f"{v*1000:.2f} ms"
print("### (b) Select-only at a fixed 2,000/s (latency from intended start)\n")
print("| tool | achieved/s | p50 | p99 |")
print("|---|---|---|---|")
print(f"| pgbench -R 2000 (latency + schedule lag) | {len(lat)/dur:.0f} | {ms(q(lat,0.5))} | {ms(q(lat,0.99))} |")
print(f"| soakd hold 2000/s | {s['completed']/sd:.0f} | {ms(s['p50_seconds'])} | {ms(s['p99_seconds'])} |\n")
# (c)
print("### (c) Buffered writer, 1 s flushes, 2 rows per event (10,000 users x 250 stat codes)\n")
print("| offered events/s | accepted events/s | dropped (buffer full) | flushes | flush p95 | rows committed/s |")
print("|---|---|---|---|---|---|")
def hist_q(text, name, qv):
    b = [(float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), float(m.group(2)))
         for m in re.finditer(rf'{name}_bucket{{[^}}]*le="([^"]+)"}} (\S+)', text)]
    if not b or b[-1][1] == 0: return float("nan")
    tot = b[-1][1]
    for le, c in b:
        if c >= qv * tot: return le
    return float("inf")
for r in rates:
    s, sd = summ(f"{work}/ev-{r}.json")
    try:
        m = open(f"{work}/ev-{r}.metrics").read()
    except FileNotFoundError:
        m = ""
    flushes = re.search(r'soakd_buffer_flush_duration_seconds_count{[^}]*} (\S+)', m)
    flushed = re.search(r'soakd_buffer_flushed_events_total{[^}]*} (\S+)', m)
    p95 = hist_q(m, "soakd_buffer_flush_duration_seconds", 0.95)
    accepted = (s["completed"] - s["errors"]) / sd
    print(f"| {int(r):,} | {accepted:,.0f} | {s['errors']:,} | {flushes.group(1) if flushes else '?'} | <= {p95} s | {float(flushed.group(1))/(sd-2):,.0f} |" if flushed else f"| {r} | {accepted:.0f} | {s['errors']} | ? | ? | ? |")
PY
