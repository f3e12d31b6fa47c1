#!/usr/bin/env bash
# Event -> API visibility against the flush interval (docs/PERFORMANCE_TUNING.md, "Buffer
# Flush Interval", the end-to-end column): the M2 spec's Scenario 5, measured through
# the API as a user sees it.
#
# For each flush interval: `soakd target` with its buffered writer into a throwaway
# PostgreSQL flushing at that interval, and `soakd run` on fixtures/scenario5.yaml with
# the background events at a fixed EVENTS_PER_S and PROBES_PER_S visibility probes (a
# stat update over gRPC, then GET /v1/challenges every 50 ms until the goal shows it).
# Prints per interval: probes, visibility p50 / p95 / p99 / p99.9 and mean (exact, from
# soakd_visibility_quantile_seconds over the whole run), not visible, polls per probe,
# and the writer's flush p95 (soakd target's own buffer histogram).
#
#   scripts/bench/visibility.sh                       # 0.5 s, 1 s, 2 s; 90 s each
#   INTERVALS="1s" SECONDS_EACH=300 scripts/bench/visibility.sh
source "$(dirname "$0")/lib.sh"

INTERVALS=${INTERVALS:-"500ms 1s 2s"}
SECONDS_EACH=${SECONDS_EACH:-90}
EVENTS_PER_S=${EVENTS_PER_S:-1000}
PROBES_PER_S=${PROBES_PER_S:-10}
build_soakd
start_pgcluster

echo "| flush interval | events/s | probes | p50 | p95 | p99 | p99.9 | mean | not visible | polls per probe | flush p95 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for iv in $INTERVALS; do
  TPORT=$(free_port); GPORT=$(free_port); APORT=$(free_port)
  RUST_LOG=warn "$SOAKD" target --listen "127.0.0.1:$TPORT" --grpc-listen "127.0.0.1:$GPORT" \
    --database-url "$PG_URL" --flush-interval "$iv" 2> "$WORK/target-$iv.log" &
  TPID=$!
  CLEANUP+=("kill -INT $TPID 2>/dev/null")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$TPORT/metrics" >/dev/null && break; sleep 0.2; done
  # Scenario 5 at a fixed rate for the whole run, quantiles over all of it.
  python3 - "$ROOT/fixtures/scenario5.yaml" "$WORK/s5-$iv.yaml" "$EVENTS_PER_S" "$PROBES_PER_S" "$APORT" <<'PY'
import os, sys, yaml
src, dst, eps, pps, port = sys.argv[1:]
cfg = yaml.safe_load(open(src))
# PyYAML reads YAML 1.1, where `on` is a boolean; soakd's `trace:` takes the word.
for t in cfg["targets"].values():
    if isinstance(t.get("trace"), bool):
        t["trace"] = "on" if t["trace"] else "off"
base = os.path.dirname(os.path.abspath(src))
for f in cfg["fixtures"].values():
    f["file"] = os.path.join(base, f["file"])
cfg["listen"] = f"127.0.0.1:{port}"
cfg["quantile_window"] = "1h"
cfg["scenarios"]["events"]["schedule"] = {"hold": {"rate": f"{eps}/s"}}
cfg["scenarios"]["visibility"]["schedule"] = {"hold": {"rate": f"{pps}/s"}}
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY
  SOAKD_DEMO_HTTP_URL="http://127.0.0.1:$TPORT" SOAKD_DEMO_GRPC_URL="http://127.0.0.1:$GPORT" RUST_LOG=warn \
    "$SOAKD" run --config "$WORK/s5-$iv.yaml" --duration "$((SECONDS_EACH + 5))s" 2> "$WORK/soakd-$iv.log" &
  SPID=$!
  CLEANUP+=("kill $SPID 2>/dev/null")
  sleep "$SECONDS_EACH"
  curl -sf "http://127.0.0.1:$APORT/metrics" > "$WORK/m-$iv.txt" \
    || { echo "soakd is not answering:" >&2; tail -20 "$WORK/soakd-$iv.log" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$TPORT/metrics" > "$WORK/t-$iv.txt"
  wait "$SPID" || { tail -20 "$WORK/soakd-$iv.log" >&2; exit 1; }
  kill -INT "$TPID"; wait "$TPID" || true
  python3 - "$WORK/m-$iv.txt" "$WORK/t-$iv.txt" "$iv" "$EVENTS_PER_S" <<'PY'
import re, sys
m, t, iv, eps = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
def val(text, name, labels=""):
    for line in text.splitlines():
        if line.startswith(name + "{") and all(l in line for l in labels.split(",") if l):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")
sel = 'op="stat_to_api",scenario="visibility"'
q = {k: val(m, "soakd_visibility_quantile_seconds", f'{sel},quantile="{k}"') for k in ("0.5", "0.95", "0.99", "0.999")}
n = val(m, "soakd_visibility_quantile_seconds_count", sel)
mean = val(m, "soakd_visibility_quantile_seconds_sum", sel) / n
missed = val(m, "soakd_request_errors_total", 'kind="not_visible",' + sel)
missed = 0 if missed != missed else missed
polls = val(m, "soakd_visibility_polls_total", sel)
visible = val(m, "soakd_visibility_seconds_count", sel)
# The writer's flush p95 from its classic buckets (linear within the bucket).
b = [(float("inf") if le == "+Inf" else float(le), float(v)) for le, v in
     re.findall(r'^soakd_buffer_flush_duration_seconds_bucket\{[^}]*le="([^"]+)"\} (\S+)', t, re.M)]
b.sort()
total = b[-1][1] if b else 0
fp95, prev = float("nan"), (0.0, 0.0)
for le, c in b:
    if total and c >= 0.95 * total:
        lo, lc = prev
        fp95 = lo + (le - lo) * ((0.95 * total - lc) / max(c - lc, 1e-9)) if le != float("inf") else lo
        break
    prev = (le, c)
ms = lambda s: f"{s * 1000:,.0f} ms"
print(f"| {iv} | {eps}/s | {int(n):,} | {ms(q['0.5'])} | {ms(q['0.95'])} | {ms(q['0.99'])} | {ms(q['0.999'])} "
      f"| {ms(mean)} | {int(missed)} | {polls / max(visible + missed, 1):.1f} | {ms(fp95)} |")
PY
done
