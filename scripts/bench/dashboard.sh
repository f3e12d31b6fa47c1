#!/usr/bin/env bash
# The dashboard's cost (not a test), in one run on this machine:
#
#   (a) soakd at a fixed RATE (default 5000/s) against a local nginx for DURATION
#       (default 20 s), with the dashboard closed and open in headless Chromium (the page
#       polls every second), ROUNDS (default 3) alternating: soakd's CPU seconds per
#       1,000 requests and achieved rate, medians. The browser's own CPU is not soakd's
#       and is not counted.
#   (b) the highest rate soakd sustains, closed and open: rates stepped up, STEP_SECS
#       (default 10) each; passing = achieved >= 99 % of offered and dropped < 1 %.
#   (c) serving an hour of history for 10 scenarios: the size and build+encode time of
#       a whole-hour /api/v1/history response and of one incremental poll
#       (examples/history_serve.rs).
#
# Installs nginx and chromium (apt) when missing. Results to stdout as Markdown.
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-5000}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
STEP_SECS=${STEP_SECS:-10}
STEPS=${STEPS:-"40000 60000 80000 100000 120000"}
CONNS=${CONNS:-100}

need_apt chromium chromium
build_soakd
(cd "$ROOT" && cargo build --release --locked -q --example history_serve)
NGINX=$(free_port)
start_nginx "$NGINX"

# run_once MODE RATE SECS TAG: soakd on a known admin port; with MODE=open a headless
# Chromium holds the page open for the whole run.
run_once() {
  local mode=$1 rate=$2 secs=$3 tag=$4 port
  port=$(free_port)
  soakd_config "$WORK/$tag.yaml" "http://127.0.0.1:$NGINX" "{hold: {rate: $rate/s}}" 4096 "$CONNS"
  local browser=""
  if [ "$mode" = open ]; then
    # Started first; the page retries until soakd answers, then polls every second.
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$WORK/chrome-$tag" --remote-debugging-port=0 --window-size=1400,1000 \
      "http://127.0.0.1:$port/" >/dev/null 2>&1 &
    browser=$!
    sleep 1
  fi
  RUST_LOG=warn cpu_run "$WORK/$tag.cpu" "$SOAKD" run --config "$WORK/$tag.yaml" \
    --listen "127.0.0.1:$port" --duration "${secs}s" --summary > "$WORK/$tag.json"
  if [ -n "$browser" ]; then kill "$browser" 2>/dev/null; wait "$browser" 2>/dev/null || true; fi
}

echo "## Dashboard open vs closed ($(machine))"
echo
for r in $(seq "$ROUNDS"); do
  run_once closed "$RATE" "$DURATION" "closed-$r"
  run_once open "$RATE" "$DURATION" "open-$r"
done
for s in $STEPS; do
  run_once closed "$s" "$STEP_SECS" "step-closed-$s"
  run_once open "$s" "$STEP_SECS" "step-open-$s"
done
python3 - "$WORK" "$RATE" "$ROUNDS" "$STEPS" <<'PY'
import json, statistics, sys
work, rate, rounds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
def one(tag):
    s = json.load(open(f"{work}/{tag}.json"))
    c = json.load(open(f"{work}/{tag}.cpu"))
    sc = s["scenarios"][0]
    return dict(rate=sc["completed"] / s["duration_seconds"], req=sc["completed"], cpu=c["user"] + c["sys"],
                dropped=sc["dropped"], started=sc["started"], p99=sc["p99_seconds"])
def med(mode):
    runs = [one(f"{mode}-{r}") for r in range(1, rounds + 1)]
    per = [x["cpu"] / x["req"] * 1000 for x in runs]
    return statistics.median(per), statistics.median(x["rate"] for x in runs), per
print(f"### (a) Fixed {rate}/s, {rounds} alternating rounds\n")
print("| dashboard | CPU s per 1,000 req (median) | each round | achieved req/s (median) |")
print("|---|---|---|---|")
res = {}
for mode in ["closed", "open"]:
    m, r, per = med(mode)
    res[mode] = m
    print(f"| {mode} | {m:.4f} | {', '.join(f'{p:.4f}' for p in per)} | {r:.0f} |")
print(f"\nRatio open/closed CPU per request: **{res['open']/res['closed']:.2f}**.\n")
print("### (b) Highest sustained rate (achieved >= 99 %, dropped < 1 %)\n")
print("| offered | closed: achieved, dropped | open: achieved, dropped |")
print("|---|---|---|")
best = {"closed": 0, "open": 0}
failed = {"closed": False, "open": False}
for s in steps:
    cells = []
    for mode in ["closed", "open"]:
        x = one(f"step-{mode}-{s}")
        ok = x["rate"] >= 0.99 * int(s) and x["dropped"] < 0.01 * max(x["started"] + x["dropped"], 1)
        # The highest step passed with every lower one passed too.
        if ok and not failed[mode]:
            best[mode] = int(s)
        failed[mode] |= not ok
        cells.append(f"{x['rate']:.0f}, {x['dropped']}{' (pass)' if ok else ''}")
    print(f"| {s} | {cells[0]} | {cells[1]} |")
print(f"\nHighest passing step: closed **{best['closed']}**/s, open **{best['open']}**/s.\n")
PY
echo "### (c) Serving an hour of history"
echo
"$CARGO_TARGET_DIR/release/examples/history_serve" 10 | sed 's/^/- /'
