#!/usr/bin/env bash
# Long soak (a benchmark, not a test): the full demo workload for hours, with soakd and
# the demo target as separate processes so that each one's memory is its own.
#
#   - a throwaway PostgreSQL (examples/pgcluster.rs), its progress table filled to its
#     final size first (every user x goal; PREFILL=0 starts it empty);
#   - `soakd target` with the gRPC event handler and its buffered writer into PostgreSQL;
#   - `soakd run` on fixtures/demo.yaml: HTTP with the claim flow, gRPC events, the SQL
#     read path, pg statistics, and a short capacity search (two levels of the event
#     path, then back to the schedule) at the start;
#   - every INTERVAL seconds, per process: RSS, the allocator's committed bytes, the live
#     heap (bytes allocated and not freed: jemalloc's statistics, or the `heap-count`
#     build's counter),
#     open fds, threads, series on /metrics and operations so far (CSV);
#   - at the end, per process: the least-squares slope of RSS and of committed heap after
#     WARMUP_MINUTES, in % of the post-warm-up level per hour and per day (with a 95 %
#     interval) and in KiB per million operations, against the criterion: below 1 % per
#     day.
#
# Two modes:
#   MODE=plain        the demo's own rates (20/s API, 100/s events, 40/s reads): what a
#                     staging soak does all week;
#   MODE=accelerated  every rate x FACTOR (default 5, about 770 operations/s: an hour
#                     is five hours of the plain rates; on 2 cores x10 already overloads
#                     the target's database path)
#
#   MODE=accelerated MINUTES=60 scripts/bench/longsoak.sh
#   MODE=plain MINUTES=150 scripts/bench/longsoak.sh
#   OUT=/tmp/ls scripts/bench/longsoak.sh      # keep the CSV, configs and logs there
#
# Latency spikes: STALL_EVERY_S and STALL_FOR_S make the target stall every request for
# STALL_FOR_S seconds every STALL_EVERY_S seconds (its stall knob); in-flight operations
# and connections pile up and drain, so the run shows whether a burst leaves memory
# behind in either process:
#   MODE=plain STALL_EVERY_S=300 STALL_FOR_S=5 scripts/bench/longsoak.sh
#
# Builds: the release build by default (jemalloc: heap_kib is its stats.mapped and
# live_kib its stats.allocated); PROFILE=mimalloc for the allocator soakd had before
# (heap_kib mimalloc's committed bytes, no live heap), PROFILE=heap-count for mimalloc
# wrapped in a counter of live bytes (live_kib):
#   PROFILE=mimalloc MODE=accelerated MINUTES=120 scripts/bench/longsoak.sh
#
# Heap attribution: PROFILE=dhat runs the `dhat-heap` build (dhat instead of jemalloc,
# several times slower) and STOP_AFTER_OPS stops soakd after that many operations; both
# processes then write dhat profiles to OUT, summarised by scripts/bench/dhat-top.py:
#   PROFILE=dhat STOP_AFTER_OPS=1000000 OUT=/tmp/d1 scripts/bench/longsoak.sh
# PROFILE=jemalloc-prof runs jemalloc with its sampling heap profiler (an allocation every
# 2^LG_PROF_SAMPLE bytes on average, default 128 KiB: cheap enough for hours): both
# processes write a profile every 2^LG_PROF_INTERVAL bytes allocated (default 16 GiB,
# about every 40 s at FACTOR=10) to OUT, jeprof.csv says after how many
# operations each was written, and scripts/bench/jeprof-top.py names the live bytes in the
# profiles nearest given counts (needs jeprof: apt-get install libjemalloc-dev):
#   PROFILE=jemalloc-prof FACTOR=10 MINUTES=115 OUT=/tmp/jp scripts/bench/longsoak.sh
#   scripts/bench/jeprof-top.py /tmp/jp 1000000 10000000
source "$(dirname "$0")/lib.sh"

MODE=${MODE:-accelerated}
case "$MODE" in
  plain) FACTOR=${FACTOR:-1} ;;
  accelerated) FACTOR=${FACTOR:-5} ;;
  *) echo "MODE must be plain or accelerated, not $MODE" >&2; exit 2 ;;
esac
MINUTES=${MINUTES:-60}
WARMUP_MINUTES=${WARMUP_MINUTES:-10}
INTERVAL=${INTERVAL:-15}
OUT=${OUT:-$WORK}
PROFILE=${PROFILE:-}
JE_CONF=
STOP_AFTER_OPS=${STOP_AFTER_OPS:-0}
STALL_EVERY_S=${STALL_EVERY_S:-0}
STALL_FOR_S=${STALL_FOR_S:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CSV="$OUT/longsoak.csv"

if [ "$PROFILE" = dhat ]; then
  # Line tables, so the profile names functions (inlined ones too).
  (cd "$ROOT" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --locked -q \
    --features dhat-heap --target-dir "$CARGO_TARGET_DIR/dhat")
  SOAKD="$CARGO_TARGET_DIR/dhat/release/soakd"
else
  case "${PROFILE:-release}" in
    release|jemalloc)
      # What ships: jemalloc, its statistics as committed and live bytes.
      build_soakd ;;
    mimalloc|heap-count)
      # mimalloc, plain or with the live-heap counter (soakd_allocator_live_bytes).
      (cd "$ROOT" && cargo build --release --locked -q --features "$PROFILE" \
        --target-dir "$CARGO_TARGET_DIR/$PROFILE")
      SOAKD="$CARGO_TARGET_DIR/$PROFILE/release/soakd" ;;
    jemalloc-prof)
      # The shipped allocator with its profiler compiled in (the same target directory:
      # only jemalloc and soakd rebuild); a copy of the binary stays in OUT for jeprof.
      (cd "$ROOT" && cargo build --release --locked -q --features jemalloc-prof)
      cp "$CARGO_TARGET_DIR/release/soakd" "$OUT/soakd"
      SOAKD="$OUT/soakd"
      JE_CONF="prof:true,lg_prof_sample:${LG_PROF_SAMPLE:-17},lg_prof_interval:${LG_PROF_INTERVAL:-34}"
      echo "elapsed_s,component,ops,profile" > "$OUT/jeprof.csv" ;;
    *) echo "PROFILE must be release, jemalloc-prof, mimalloc, heap-count or dhat, not $PROFILE" >&2; exit 2 ;;
  esac
fi
start_pgcluster
TPORT=$(free_port); GPORT=$(free_port); APORT=$(free_port)
_RJEM_MALLOC_CONF="${JE_CONF:+$JE_CONF,prof_prefix:$OUT/jeprof-target}" \
SOAKD_DHAT_FILE="$OUT/dhat-target.json" RUST_LOG=warn "$SOAKD" target --listen "127.0.0.1:$TPORT" --grpc-listen "127.0.0.1:$GPORT" \
  --database-url "$PG_URL" --stall-every-ms $((STALL_EVERY_S * 1000)) \
  --stall-for-ms $((STALL_FOR_S * 1000)) 2> "$OUT/target.log" &
TPID=$!
CLEANUP+=("kill -INT $TPID 2>/dev/null; sleep 2")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$TPORT/metrics" >/dev/null && break; sleep 0.2; done

# The target's table at its final size before the run (PREFILL=0 leaves it empty). The
# events upsert a row per (user, goal) they touch, so an empty table grows for hours
# toward users x goals (10,000 x 500 = 5 M rows, about 1 GB): the 2-hour jemalloc run's
# accelerated table went 1.79 -> 3.04 M rows between minutes 43 and 98, its queries
# slowed, and both processes held ever more connections (soakd's fds 33 -> 61 in 20-minute
# medians) and the memory that goes with them. Every pair is written with the progress
# the target makes up for a goal nobody has touched — a copy of `synthetic` in
# src/demo/store.rs (FNV-1a of user and goal id; change both together) — so the API and
# the claims answer exactly as they would without the row.
if [ "${PREFILL:-1}" = 1 ]; then
  command -v psql >/dev/null || { echo "PREFILL needs psql (postgresql-client)" >&2; exit 1; }
  echo "prefilling user_goal_progress (users x goals) ..." >&2
  python3 - "$ROOT/fixtures/users.json" "$ROOT/fixtures/challenges.json" <<'PY' |
import json, sys
users = json.load(open(sys.argv[1]))
goals = [(c["id"], g["id"], g["target"]) for c in json.load(open(sys.argv[2])) for g in c["goals"]]
M = (1 << 64) - 1
out = sys.stdout
for u in users:
    uid, ns = u["id"], u.get("namespace", "test")
    ub = uid.encode()
    for cid, gid, target in goals:
        h = 0xCBF29CE484222325
        for b in ub + gid.encode():
            h = ((h ^ b) * 0x100000001B3) & M
        p = min(h % (target * 3 // 2 + 1), target)
        status = "completed" if p >= target else ("in_progress" if p else "not_started")
        done = "now" if p >= target else ""
        out.write(f"{uid},{gid},{cid},{ns},{p},{status},{done},now\n")
PY
  psql "$PG_URL" -qX -v ON_ERROR_STOP=1 \
    -c "\\copy user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, updated_at) from pstdin with (format csv)" \
    -c "vacuum analyze user_goal_progress" >&2
  echo "prefilled: $(psql "$PG_URL" -qAtX -c "select count(*) from user_goal_progress") rows" >&2
fi

# fixtures/demo.yaml with absolute fixture paths, every rate x FACTOR, and a two-level
# search of the event path at the start. The database read path's leaderboard aggregate
# is left out (see below).
python3 - "$ROOT/fixtures/demo.yaml" "$OUT/longsoak.yaml" "$FACTOR" "$APORT" <<'PY'
import re, sys, yaml, os
src, dst, factor, port = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
cfg = yaml.safe_load(open(src))
# PyYAML reads YAML 1.1, where `on` and `off` are booleans; soakd's `trace:` takes the
# words (`on`, `off`, `sampled`), so put them back.
for t in cfg["targets"].values():
    if isinstance(t.get("trace"), bool):
        t["trace"] = "on" if t["trace"] else "off"
base = os.path.dirname(os.path.abspath(src))
cfg["listen"] = f"127.0.0.1:{port}"
cfg.pop("control_token", None)
for f in cfg["fixtures"].values():
    f["file"] = os.path.join(base, f["file"])
def scale(r):
    n, unit = re.fullmatch(r"([0-9.]+)(/\w+)", str(r)).groups()
    v = float(n) * factor
    return f"{v:g}{unit}"
for sc in cfg["scenarios"].values():
    sc["max_in_flight"] = int(sc["max_in_flight"] * max(factor, 1))
    for st in sc["schedule"]["stages"]:
        if "ramp" in st:
            st["ramp"]["from"] = scale(st["ramp"]["from"]); st["ramp"]["to"] = scale(st["ramp"]["to"])
        if "hold" in st:
            st["hold"]["rate"] = scale(st["hold"]["rate"])
        if "levels" in st:
            st["levels"]["rates"] = [scale(r) for r in st["levels"]["rates"]]
# The leaderboard aggregate scans user_goal_progress, which the writer grows toward
# users x goals rows: 601 ms a query at 868,000 rows after 95 minutes of the plain mode,
# more than the machine's CPUs at 2/s. That is the demo's point (a read path that fills
# the pool), but it makes an hours-long run non-stationary: the database saturates and
# every later burst is its doing. A soak of soakd's memory keeps the read path's per-user
# queries and the claim and drops the aggregate.
reads = cfg["scenarios"]["db-reads"]["ops"]
reads.pop("leaderboard", None)
cfg["search"] = {
    "name": "longsoak", "each": "1m", "warmup": "10s", "refine": 0, "postgres": "db",
    "scenarios": {"events": {"levels": [scale("100/s"), scale("200/s")]}},
}
cfg["results"] = {"dir": os.path.join(os.path.dirname(os.path.abspath(dst)), "results")}
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY

SOAKD_DEMO_HTTP_URL="http://127.0.0.1:$TPORT" SOAKD_DEMO_GRPC_URL="http://127.0.0.1:$GPORT" \
_RJEM_MALLOC_CONF="${JE_CONF:+$JE_CONF,prof_prefix:$OUT/jeprof-soakd}" \
DATABASE_URL="$PG_URL" SOAKD_DHAT_FILE="$OUT/dhat-soakd.json" RUST_LOG=warn "$SOAKD" run --config "$OUT/longsoak.yaml" \
  --duration "${MINUTES}m" --summary > "$OUT/summary.json" 2> "$OUT/soakd.log" &
SPID=$!
CLEANUP+=("kill $SPID 2>/dev/null")

# sample PID METRICS_URL OPS_REGEX: rss_kib,anon_kib,heap_kib,fds,threads,series,ops,areas,live_kib
# (areas: soakd_memory_bytes by area, as area=KiB separated by spaces)
sample() {
  local pid=$1 url=$2 re=$3 rss anon thr fds m
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
  # RSS less the file-backed pages (the binary's text, which the kernel may drop and
  # fault back in — DAMON reclaim does on this machine): the process's own memory.
  anon=$(awk '/^RssAnon/{print $2}' "/proc/$pid/status" 2>/dev/null)
  thr=$(awk '/^Threads/{print $2}' "/proc/$pid/status" 2>/dev/null)
  fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
  m=$(curl -sf --max-time 5 "$url" || true)
  awk -v rss="$rss" -v anon="$anon" -v thr="$thr" -v fds="$fds" -v re="$re" '
    /^#/ || NF == 0 { next }
    { series++ }
    /^soakd_allocator_committed_bytes / { heap = $2 / 1024 }
    /^soakd_allocator_live_bytes / { live = $2 / 1024 }
    /^soakd_memory_bytes[{]/ { split($1, a, "\""); areas = areas sprintf("%s%s=%d", areas == "" ? "" : " ", a[2], $2 / 1024) }
    $0 ~ re { ops += $NF }
    END { printf "%s,%s,%d,%s,%s,%d,%d,%s,%s", rss, anon, heap, fds, thr, series, ops, areas, live == "" ? "" : sprintf("%d", live) }' <<< "$m"
}

# The target's database, once a minute: the workload is only stationary if its tables
# stop growing (the leaderboard aggregate's did not; see docs/BENCHMARKS.md), and a
# database slowing down shows in both processes as connection bursts.
DB_CSV="$OUT/db.csv"
db_sample() {
  command -v psql >/dev/null || return 0
  psql "$PG_URL" -qAtX -F, -c "select $1, coalesce(sum(n_live_tup), 0), coalesce(sum(n_dead_tup), 0),
    (coalesce(sum(pg_total_relation_size(relid)), 0) / 1024)::bigint, (select count(*) from pg_stat_activity
    where backend_type = 'client backend') from pg_stat_user_tables" >> "$DB_CSV" 2>/dev/null || true
}
echo "elapsed_s,live_rows,dead_rows,tables_kib,connections" > "$DB_CSV"

echo "elapsed_s,component,rss_kib,anon_kib,heap_kib,fds,threads,series,ops,areas_kib,live_kib" > "$CSV"
start=$(date +%s)
db_next=0
while kill -0 "$SPID" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  if [ "$now" -ge "$db_next" ]; then db_sample "$now"; db_next=$((now + 60)); fi
  s=$(sample "$SPID" "http://127.0.0.1:$APORT/metrics" '^soakd_requests_total[{]') && echo "$now,soakd,$s" >> "$CSV"
  t=$(sample "$TPID" "http://127.0.0.1:$TPORT/metrics" '^demo_(http|grpc)_requests_total[{]') && echo "$now,target,$t" >> "$CSV"
  ops=$(cut -d, -f7 <<< "${s:-0,0,0,0,0,0,0}")
  if [ "$PROFILE" = jemalloc-prof ]; then
    # Profiles written since the last sample, with the operations so far.
    tops=$(cut -d, -f7 <<< "${t:-0,0,0,0,0,0,0}")
    for f in "$OUT"/jeprof-soakd.*.heap "$OUT"/jeprof-target.*.heap; do
      [ -e "$f" ] && ! grep -qF ",$(basename "$f")" "$OUT/jeprof.csv" || continue
      case "$f" in *jeprof-soakd.*) echo "$now,soakd,$ops,$(basename "$f")" ;;
                   *) echo "$now,target,$tops,$(basename "$f")" ;; esac >> "$OUT/jeprof.csv"
    done
  fi
  if [ "$STOP_AFTER_OPS" -gt 0 ] && [ "${ops:-0}" -ge "$STOP_AFTER_OPS" ]; then
    echo "stopping after $ops operations" >&2
    kill -INT "$SPID"
    break
  fi
  sleep "$INTERVAL" & wait $!  # (in the background: a kill is handled at once)
done
status=0; wait "$SPID" || status=$?
# soakd stops cleanly on the duration or STOP_AFTER_OPS's SIGINT; anything else is a
# failure, and a report over what it left would look like a result.
if [ "$status" -ne 0 ]; then
  echo "soakd exited with status $status:" >&2
  cat "$OUT/soakd.log" >&2
  exit 1
fi
if [ "$PROFILE" = dhat ]; then
  kill -INT "$TPID"; wait "$TPID" || true
  python3 "$ROOT/scripts/bench/dhat-top.py" "$OUT/dhat-soakd.json"
  python3 "$ROOT/scripts/bench/dhat-top.py" "$OUT/dhat-target.json"
fi

python3 "$ROOT/scripts/bench/longsoak-report.py" "$CSV" --warmup-minutes "$WARMUP_MINUTES" --mode "$MODE" \
  --factor "$FACTOR" --minutes "$MINUTES" --stall-every "$STALL_EVERY_S" --stall-for "$STALL_FOR_S" \
  --db "$DB_CSV"
echo
echo "CSV: $CSV (the database: $DB_CSV)"
