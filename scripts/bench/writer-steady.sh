#!/usr/bin/env bash
# The buffered writer in steady state (a benchmark, not a test).
#
# postgres.sh's part (c) starts from an empty table, so most of its rows are inserts. An
# always-on soak is past that within minutes: the seed's fixtures can only produce
# 10,000 users x 500 goals = 5,000,000 (user, goal) rows, and once they exist every flush
# updates rows scattered over the whole table. This script measures that state:
#
#   1. a throwaway cluster with the seed's postgresql-tuning.conf settings (shared_buffers
#      2GB, max_wal_size 4GB, ..., pg_stat_statements), the seed's table filled with all
#      5,000,000 rows in random order, checkpointed — built once, then copied per rate;
#   2. for each rate in EVENT_RATES, soakd's event scenario for DURATION seconds on a fresh
#      copy; over the second half (after the cache has warmed): flushes, mean and p95
#      flush time, rows committed/s, events refused because the buffer was full, and the
#      server's own execution time per UPSERT from pg_stat_statements (reset at half time).
#
#   scripts/bench/writer-steady.sh     # DURATION=120, EVENT_RATES="15000 25000 35000 50000"
#                                      # FLUSH_CONNECTIONS=2; about 10 minutes in all
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-120}
EVENT_RATES=${EVENT_RATES:-"15000 25000 35000 50000"}
FLUSH_CONNECTIONS=${FLUSH_CONNECTIONS:-2}
build_soakd
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || { need_apt pg_config postgresql; PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1); }
chmod 777 "$WORK"
AS=()
[ "$(id -u)" -eq 0 ] && AS=(runuser -u postgres --)
PORT=$(free_port)
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
# The seed's postgresql-tuning.conf, as server options.
SETTINGS=$(tr -s ' \n' ' ' <<< "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$WORK
  -c shared_buffers=2GB -c effective_cache_size=6GB -c maintenance_work_mem=512MB -c work_mem=10MB
  -c checkpoint_completion_target=0.9 -c wal_buffers=16MB -c min_wal_size=1GB -c max_wal_size=4GB
  -c default_statistics_target=100 -c random_page_cost=1.1 -c effective_io_concurrency=200
  -c max_connections=200 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all")  # one line: pg_ctl passes it through sh -c
pg() { "${AS[@]}" "$PGBIN/pg_ctl" -D "$1" -l "$1/server.log" -o "$SETTINGS" "${@:2}" >/dev/null; }
psql_() { "$PGBIN/psql" "$URL" -X -q -v ON_ERROR_STOP=1 "$@"; }

# 1. The prefilled cluster.
"${AS[@]}" "$PGBIN/initdb" -D "$WORK/tmpl" -U postgres -A trust >/dev/null
pg "$WORK/tmpl" start -w
CLEANUP+=("pg $WORK/tmpl stop -m immediate 2>/dev/null")
psql_ -f "$ROOT/migrations/0001_user_goal_progress.sql"
python3 - "$ROOT/fixtures/users.json" "$ROOT/fixtures/challenges.json" > "$WORK/prefill.sql" <<'PY'
import json, sys
users = [u["id"] for u in json.load(open(sys.argv[1]))]
goals = [(g["id"], c["id"]) for c in json.load(open(sys.argv[2])) for g in c["goals"]]
q = lambda s: "'" + s.replace("'", "''") + "'"
print("INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, updated_at)")
print("SELECT u.id, g.id, g.c, 'test', 1, 'in_progress', now()")
print("FROM unnest(ARRAY[" + ",".join(q(u) for u in users) + "]::text[]) AS u(id),")
print("     (VALUES " + ",".join(f"({q(g)}, {q(c)})" for g, c in goals) + ") AS g(id, c)")
print("ORDER BY random();")
PY
echo "prefilling 5,000,000 rows (about a minute)" >&2
psql_ -f "$WORK/prefill.sql"
psql_ -c "VACUUM ANALYZE user_goal_progress" -c "CHECKPOINT"
ROWS=$(psql_ -At -c "SELECT count(*) FROM user_goal_progress")
pg "$WORK/tmpl" stop -m fast

# 2. One run per rate, each on its own copy.
for r in $EVENT_RATES; do
  D="$WORK/data-$r"
  cp -a "$WORK/tmpl" "$D"
  pg "$D" start -w
  CLEANUP+=("pg $D stop -m immediate 2>/dev/null")
  psql_ -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
  ADMIN=$(free_port)
  events_config "$WORK/ev-$r.yaml" "$ADMIN" "$URL" "$r" "$FLUSH_CONNECTIONS"
  RUST_LOG=warn "$SOAKD" run --config "$WORK/ev-$r.yaml" --duration "${DURATION}s" --summary > "$WORK/ev-$r.json" &
  SPID=$!
  CLEANUP+=("kill $SPID 2>/dev/null")
  HALF=$((DURATION / 2))
  sleep "$HALF"
  curl -sf "http://127.0.0.1:$ADMIN/metrics" > "$WORK/ev-$r.m1" || true
  psql_ -c "SELECT pg_stat_statements_reset()" >/dev/null
  date +%s.%N > "$WORK/ev-$r.t1"
  sleep $((DURATION - HALF - 2))
  curl -sf "http://127.0.0.1:$ADMIN/metrics" > "$WORK/ev-$r.m2" || true
  date +%s.%N > "$WORK/ev-$r.t2"
  psql_ -At -F ' ' -c "SELECT calls, total_exec_time / 1000, rows FROM pg_stat_statements
                        WHERE query LIKE 'INSERT INTO user_goal_progress%'" > "$WORK/ev-$r.pgss"
  wait "$SPID"
  pg "$D" stop -m fast
  rm -rf "$D"
done

echo "## Buffered writer, steady state: $ROWS rows in the table, $(machine)"
echo
python3 - "$WORK" "$EVENT_RATES" "$FLUSH_CONNECTIONS" <<'PY'
import re, sys
work, rates, fc = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def metrics(path):
    try:
        text = open(path).read()
    except FileNotFoundError:
        return None
    one = lambda n: float((re.search(rf"^{n}(?:{{[^}}]*}})? (\S+)", text, re.M) or [0, 0])[1])
    buckets = {(float(le) if le != "+Inf" else float("inf")): float(c) for le, c in
               re.findall(r'soakd_buffer_flush_duration_seconds_bucket{[^}]*le="([^"]+)"} (\S+)', text)}
    return {"count": one("soakd_buffer_flush_duration_seconds_count"),
            "sum": one("soakd_buffer_flush_duration_seconds_sum"),
            "flushed": one("soakd_buffer_flushed_events_total"),
            "refused": one("soakd_buffer_dropped_events_total"), "buckets": buckets}
print(f"`flush_connections: {fc}`; second half of each run.\n")
print("| offered events/s | flushes | mean flush | flush p95 | server time per UPSERT (rows) | rows committed/s | refused (buffer full) |")
print("|---|---|---|---|---|---|---|")
for r in rates:
    a, b = metrics(f"{work}/ev-{r}.m1"), metrics(f"{work}/ev-{r}.m2")
    if not a or not b:
        print(f"| {int(r):,} | ? | ? | ? | ? | ? | ? |"); continue
    secs = float(open(f"{work}/ev-{r}.t2").read()) - float(open(f"{work}/ev-{r}.t1").read())
    n = b["count"] - a["count"]
    d = sorted((le, b["buckets"][le] - a["buckets"].get(le, 0)) for le in b["buckets"])
    p95 = next((le for le, c in d if c >= 0.95 * n), float("nan")) if n else float("nan")
    try:
        calls, t, rows = open(f"{work}/ev-{r}.pgss").read().split()
        server = f"{float(t) / int(calls):.2f} s ({int(rows) // int(calls):,})"
    except (FileNotFoundError, ValueError):
        server = "?"
    mean = (b["sum"] - a["sum"]) / n if n else float("nan")
    print(f"| {int(r):,} | {n:.0f} | {mean:.2f} s | ≤ {p95} s | {server} | "
          f"{(b['flushed'] - a['flushed']) / secs:,.0f} | {b['refused'] - a['refused']:,.0f} |")
PY
