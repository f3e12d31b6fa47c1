#!/usr/bin/env bash
# The measurements behind docs/CAPACITY_PLANNING.md and docs/PERFORMANCE_TUNING.md,
# each a capacity search against a throwaway PostgreSQL on this machine:
#
#   (a) pool size sweep: the read path with 5 ms of server time per query (pg_sleep
#       standing in for the seed's heavier statements), pool 5 / 10 / 25 / 50: the
#       highest rate within p95 < 100 ms and < 1 % errors for each;
#   (b) flush-interval sweep: soakd's buffered writer (the seed's event write path,
#       UNNEST upserts into user_goal_progress), flush every 0.5 / 1 / 2 / 5 s: the
#       highest event rate with < 1 % of events refused by a full buffer, and at a
#       common rate the E2E (accept -> commit) p95, flushes/s and rows/flush.
#
#   scripts/capacity-sweeps.sh        # writes docs/capacity/sweeps.md (about 15 minutes)
source "$(dirname "$0")/bench/lib.sh"

OUT=${OUT:-$ROOT/docs/capacity}
EACH=${EACH:-10s}
WARMUP=${WARMUP:-3s}
# Flush windows must hold several flushes of the longest interval.
FLUSH_EACH=${FLUSH_EACH:-20s}
FLUSH_WARMUP=${FLUSH_WARMUP:-5s}
POOLS=${POOLS:-"5 10 25 50"}
INTERVALS=${INTERVALS:-"500ms 1s 2s 5s"}
COMMON_EPS=${COMMON_EPS:-5000}
build_soakd
(cd "$ROOT" && cargo build --release --locked -q --example pgcluster)
"$CARGO_TARGET_DIR/release/examples/pgcluster" > "$WORK/pgurl" &
PGPID=$!
CLEANUP+=("kill $PGPID 2>/dev/null; sleep 1")
for _ in $(seq 100); do [ -s "$WORK/pgurl" ] && break; sleep 0.2; done
URL=$(cat "$WORK/pgurl")
RESULTS="$OUT/sweeps-results"
mkdir -p "$RESULTS"

search() {  # search NAME YAML: runs a search to the end, prints its run id
  printf '%s\n' "$2" > "$WORK/$1.yaml"
  RUST_LOG=info "$SOAKD" run --config "$WORK/$1.yaml" --listen 127.0.0.1:0 --exit-after-search \
    2> "$WORK/$1.log" || { tail -20 "$WORK/$1.log" >&2; exit 1; }
  grep -E "capacity level " "$WORK/$1.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c 28- | cut -c 1-160 >&2
  "$SOAKD" report --results-dir "$RESULTS" --list | awk -F'\t' -v n="$1" '$2==n{print $1; exit}'
}

common="
listen: 127.0.0.1:0
shutdown_grace: 10s
fixtures: {user: {file: $ROOT/fixtures/users.json}, stat: {file: $ROOT/fixtures/stats.json}}
results: {dir: $RESULTS}"

POOL_RUNS=()
for pool in $POOLS; do
  echo "== pool $pool" >&2
  POOL_RUNS+=("$(search "pool-$pool" "$common
targets:
  db: {type: postgres, url: \"$URL\", max_connections: $pool, acquire_timeout: 2s, bootstrap: true}
scenarios:
  read:
    target: db
    max_in_flight: 5000
    timeout: 5s
    slo: {p95: 100ms, error_rate: 1%}
    schedule: {hold: {rate: 10/s}}
    ops:
      progress_by_user:
        sql:
          query: SELECT goal_id, progress, status, pg_sleep(0.005) FROM user_goal_progress WHERE user_id = \$1 UNION ALL SELECT NULL, NULL, NULL, pg_sleep(0.005) LIMIT 1
          params: ['{{user.id}}']
search:
  name: pool-$pool
  each: $EACH
  warmup: $WARMUP
  refine: 2
  postgres: db
  scenarios:
    read: {levels: [250/s, 500/s, 1000/s, 2000/s, 4000/s, 8000/s]}")")
done

PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
FLUSH_RUNS=()
for iv in $INTERVALS; do
  echo "== flush every $iv" >&2
  # Every interval starts from an empty table: a table grown by the previous run (and
  # its dead tuples) would make later intervals look slower than they are.
  "$PGBIN/psql" "$URL" -X -q -c "DROP TABLE IF EXISTS user_goal_progress; DELETE FROM _sqlx_migrations WHERE version < 1000" 2>/dev/null || true
  "$PGBIN/psql" "$URL" -X -q -c "CHECKPOINT" 2>/dev/null || true
  FLUSH_RUNS+=("$(search "flush-$iv" "$common
targets:
  db: {type: postgres, url: \"$URL\", max_connections: 10, bootstrap: true}
scenarios:
  events:
    target: db
    max_in_flight: 5000
    timeout: 2s
    slo: {error_rate: 1%}
    buffer: {size_limit: 100000, flush_interval: $iv, max_batch: 100000, namespace: test}
    schedule: {hold: {rate: 10/s}}
    ops:
      stat_update:
        event: {user: '{{user.id}}', stat_code: '{{stat.code}}', value: '{{rand_int 1 60}}'}
search:
  name: flush-$iv
  each: $FLUSH_EACH
  warmup: $FLUSH_WARMUP
  refine: 2
  postgres: db
  scenarios:
    events: {levels: [$COMMON_EPS/s, 10000/s, 20000/s, 40000/s, 80000/s]}")")
done

for id in "${POOL_RUNS[@]}" "${FLUSH_RUNS[@]}"; do
  "$SOAKD" report --results-dir "$RESULTS" --run "$id" --json > "$WORK/$id.json"
done
python3 - "$WORK" "$OUT/sweeps.md" "$COMMON_EPS" "$(cat /proc/cpuinfo | grep -m1 'model name' | cut -d: -f2)" \
  "${POOL_RUNS[*]}" "${FLUSH_RUNS[*]}" <<'PY'
import json, sys
work, out, common, cpu, pool_ids, flush_ids = sys.argv[1:7]
common = float(common)
def load(i): return json.load(open(f"{work}/{i}.json"))
def ms(s): return "–" if s is None else (f"{s*1e3:.1f} ms" if s < 1 else f"{s:.2f} s")
def best(run, sc):
    ok = [l for l in run["levels"] if l["verdict"] == "pass"]
    bad = [l for l in run["levels"] if l["verdict"] != "pass"]
    m = max((l["scenarios"][0]["offered_rate"] for l in ok), default=None)
    f = min((l["scenarios"][0]["offered_rate"] for l in bad), default=None)
    return m, f, next((l for l in ok if l["scenarios"][0]["offered_rate"] == m), None), \
        next((l for l in bad if l["scenarios"][0]["offered_rate"] == f), None)
lines = ["# Capacity sweeps", "",
         f"Generated by `scripts/capacity-sweeps.sh` on a 2-CPU machine ({cpu.strip()}), soakd and a throwaway PostgreSQL 15 sharing it. Raw runs: `sweeps-results/` (`soakd report --results-dir docs/capacity/sweeps-results --run ID`).", "",
         "## Pool size (read path, 5 ms server time per query)", "",
         "| Pool | Max sustainable | p95 there | Pool peak | Acquire p95 there | First failure | Why | Little's law bound (pool / 5 ms) |",
         "|---|---|---|---|---|---|---|---|"]
for i in pool_ids.split():
    r = load(i); pool = r["record"]["name"].split("-")[1]
    m, f, lo, hi = best(r, "read")
    s = lo["scenarios"][0] if lo else None
    lines.append(f"| {pool} | {m and f'{m:.0f}/s'} | {ms(s and s['latency']['p95'])} | {s and s['pool'] and str(s['pool']['in_use_peak'])+'/'+str(s['pool']['max'])} | {ms(s and s['pool'] and s['pool']['acquire_p95'])} | {f and f'{f:.0f}/s'} | {hi['reason'] if hi else 'no level failed'} | {int(pool)/0.005:.0f}/s |")
lines += ["", "## Flush interval (buffered writer: each event upserts its goals' progress rows, 2 per stat code)", "",
          f"| Flush interval | Max sustainable events/s | First failure | E2E p95 at {common:.0f}/s | Flush p95 at {common:.0f}/s | Flushes/s at {common:.0f}/s | DB transactions/s at {common:.0f}/s | Rows per flush at {common:.0f}/s |",
          "|---|---|---|---|---|---|---|---|"]
for i in flush_ids.split():
    r = load(i); name = r["record"]["name"].split("-", 1)[1]
    m, f, lo, hi = best(r, "events")
    at = next((l for l in r["levels"] if l["scenarios"][0]["offered_rate"] == common), None)
    b = at and at["scenarios"][0]["buffer"]
    win = at and at["window_seconds"]
    fps = b and b["flushes"] / win
    tps = at and at["postgres"] and at["postgres"]["transactions_per_second"]
    rows = b and b["flushes"] and b["flushed_events"] / b["flushes"]
    lines.append(f"| {name} | {m and f'{m:.0f}/s'} | {f and f'{f:.0f}/s'} ({hi['reason'] if hi else 'none'}) | {ms(b and b['e2e_p95'])} | {ms(b and b['flush_p95'])} | {fps and f'{fps:.2f}'} | {tps and f'{tps:.0f}'} | {rows and f'{rows:.0f}'} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

# The seed's index checks, on the rows the last flush run wrote.
{
  echo
  echo "## Index usage (EXPLAIN ANALYZE on the table the last flush run filled)"
  echo
  echo "Rows in user_goal_progress: $("$PGBIN/psql" "$URL" -X -A -t -c 'SELECT count(*) FROM user_goal_progress')"
  for q in "SELECT * FROM user_goal_progress WHERE user_id = 'user-000123'" \
           "SELECT goal_id FROM user_goal_progress WHERE user_id = 'user-000123' AND status = 'completed' AND claimed_at IS NULL LIMIT 1"; do
    echo
    echo '```'
    echo "$q;"
    "$PGBIN/psql" "$URL" -X -A -t -c "ANALYZE user_goal_progress" > /dev/null
    "$PGBIN/psql" "$URL" -X -A -t -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING ON) $q"
    echo '```'
  done
} >> "$OUT/sweeps.md"
tail -30 "$OUT/sweeps.md"
