#!/usr/bin/env bash
# The deploy judge's accuracy on deploys whose truth is known (examples/deploy_accuracy.rs),
# over blocks recorded from a real soakd run (examples/deploy_record.rs): soakd at 50/s
# each against nginx, the demo target (its HTTP API over PostgreSQL) and PostgreSQL
# itself, one block a minute per op.
#   - A/A: a "deploy" at every minute of the recording where 30 min before, 2 min settle
#     and 30 min after fit, nothing changed: how often is it called `regressed`?
#   - the same windows with every latency after the deploy ×1.10 (p95 +10 %), or with
#     the error ratio raised from 0.1 % to 0.5 %: how often is it found?
#   - side by side with the naive rule "p95 after > p95 before × 1.1";
#   - then again with the two PostgreSQL-backed targets each judged relative to the
#     other as its control (deploys.controls: demo=db, db=demo; nginx has no target
#     like it, so it stays alone), which cancels the drift of the machine they share.
# The drift check (deploys.history) needs the day before each deploy: the recording is
# extended back 24 h by reflection (HISTORY_HOURS=0 judges without the check;
# HISTORY_FROM=OTHER.jsonl reflects another recording instead, out of sample).
# On a shared machine pin the recording to one core and everything else to the other
# (taskset -c 0 scripts/bench/deploys.sh; taskset -c 1 cargo …): soakd sets aside the
# minutes its own runtime is delayed, and a compile on the same core delays it.
#
#   scripts/bench/deploys.sh                     # records MINUTES=100, then judges
#   RECORDING=/path/blocks.jsonl scripts/bench/deploys.sh   # judges a kept recording
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MINUTES="${MINUTES:-100}"
(cd "$ROOT" && cargo build --release --locked -q --example deploy_record --example deploy_accuracy)
EX="$CARGO_TARGET_DIR/release/examples"
if [ -z "${RECORDING:-}" ]; then
  build_soakd
  start_pgcluster
  NPORT=$(free_port); TPORT=$(free_port)
  start_nginx "$NPORT"
  RUST_LOG=warn "$SOAKD" target --listen "127.0.0.1:$TPORT" --database-url "$PG_URL" \
    > "$WORK/target.log" 2>&1 &
  tpid=$!
  CLEANUP+=("kill $tpid 2>/dev/null")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$TPORT/healthz" >/dev/null && break; sleep 0.1; done
  cat > "$WORK/record.yaml" <<YAML
fixtures:
  user: {file: $ROOT/fixtures/users.json}
targets:
  nginx: {type: http, base_url: "http://127.0.0.1:$NPORT"}
  demo:
    type: http
    base_url: "http://127.0.0.1:$TPORT"
    headers: {Authorization: "Bearer {{user.token}}"}
  db: {type: postgres, url: "$PG_URL", max_connections: 4, bootstrap: true}
soak: {enabled: false}
scenarios:
  static:
    target: nginx
    schedule: {hold: {rate: 50/s}}
    ops: {get: {http: {path: /}}}
  api:
    target: demo
    schedule: {hold: {rate: 50/s}}
    ops: {list: {http: {path: /v1/challenges}}}
  reads:
    target: db
    schedule: {hold: {rate: 50/s}}
    ops:
      progress:
        sql:
          query: SELECT goal_id, progress, status FROM user_goal_progress WHERE user_id = \$1
          params: ["{{user.id}}"]
YAML
  RECORDING="${OUT:-$WORK}/blocks.jsonl"
  echo "recording $MINUTES min of blocks to $RECORDING" >&2
  RUST_LOG=warn "$EX/deploy_record" "$WORK/record.yaml" "$RECORDING" "$MINUTES"
fi
echo "## Each target alone"
env -u CONTROLS "$EX/deploy_accuracy" "$RECORDING"
echo
echo "## Each target relative to a control (deploys.controls)"
CONTROLS="${CONTROLS:-demo=db,db=demo}" "$EX/deploy_accuracy" "$RECORDING"
