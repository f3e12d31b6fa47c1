#!/usr/bin/env bash
# The dashboard's cost (not a test), in one run on this machine:
#
#   (a) soakd at a fixed RATE (default 5000/s) against a local nginx for DURATION
#       (default 20 s), ROUNDS (default 3) alternating three ways: the dashboard closed;
#       "polled" — what an open page asks of the server (status and 1 s history every
#       second, 1 min history every 30 s) by curl, without a browser; and open in
#       headless Chromium. soakd's CPU seconds per 1,000 requests and achieved rate,
#       medians, and the browser's own CPU (its whole process tree), which on this
#       2-core machine competes with nginx and soakd.
#   (b) the highest rate soakd sustains in each mode: rates stepped up, STEP_SECS
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
STEPS=${STEPS:-"10000 12500 15000 17500 20000 25000"}
CONNS=${CONNS:-100}

need_apt chromium chromium
need_apt wrk wrk
build_soakd
(cd "$ROOT" && cargo build --release --locked -q --example history_serve)
NGINX=$(free_port)
start_nginx "$NGINX"

# tree_cpu PID: CPU seconds (user + system) of PID and all its descendants.
tree_cpu() {
  python3 - "$1" <<'PY'
import os, sys
tick, root = os.sysconf("SC_CLK_TCK"), sys.argv[1]
stat = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        stat[pid] = (f[1], (int(f[11]) + int(f[12])) / tick)
    except OSError:
        pass
tree, grew = {root}, True
while grew:
    grew = False
    for pid, (ppid, _) in stat.items():
        if ppid in tree and pid not in tree:
            tree.add(pid); grew = True
print(f"{sum(stat[p][1] for p in tree if p in stat):.2f}")
PY
}

# run_once MODE RATE SECS TAG: soakd on a known admin port; MODE=polled runs an open
# page's requests with curl, MODE=open holds the page open in headless Chromium.
run_once() {
  local mode=$1 rate=$2 secs=$3 tag=$4 port
  port=$(free_port)
  soakd_config "$WORK/$tag.yaml" "http://127.0.0.1:$NGINX" "{hold: {rate: $rate/s}}" 4096 "$CONNS"
  local side=""
  if [ "$mode" = open ]; then
    # Started first; the page retries until soakd answers, then polls every second.
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$WORK/chrome-$tag" --remote-debugging-port=0 --window-size=1400,1000 \
      "http://127.0.0.1:$port/" >/dev/null 2>&1 &
    side=$!
    sleep 1
  elif [ "$mode" = polled ]; then
    (
      n=0
      while :; do
        since=$(( $(date +%s%3N) - 2000 ))
        curl -s "http://127.0.0.1:$port/api/v1/status" >/dev/null || true
        curl -s "http://127.0.0.1:$port/api/v1/history?resolution=1s&since=$since" >/dev/null || true
        [ $((n % 30)) -eq 0 ] && { curl -s "http://127.0.0.1:$port/api/v1/history?resolution=1m&since=0" >/dev/null || true; }
        n=$((n + 1))
        sleep 1
      done
    ) &
    side=$!
  fi
  RUST_LOG=warn cpu_run "$WORK/$tag.cpu" "$SOAKD" run --config "$WORK/$tag.yaml" \
    --listen "127.0.0.1:$port" --duration "${secs}s" --summary > "$WORK/$tag.json"
  if [ -n "$side" ]; then
    [ "$mode" = open ] && tree_cpu "$side" > "$WORK/$tag.browser"
    kill "$side" 2>/dev/null; wait "$side" 2>/dev/null || true
  fi
}

echo "## Dashboard open vs closed ($(machine))"
echo
for r in $(seq "$ROUNDS"); do
  for mode in closed polled open; do run_once "$mode" "$RATE" "$DURATION" "$mode-$r"; done
done
for s in $STEPS; do
  for mode in closed polled open; do run_once "$mode" "$s" "$STEP_SECS" "step-$mode-$s"; done
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
print("| dashboard | soakd CPU s per 1,000 req (median) | each round | achieved req/s (median) | browser CPU, % of a core |")
print("|---|---|---|---|---|")
res = {}
for mode in ["closed", "polled", "open"]:
    m, r, per = med(mode)
    res[mode] = m
    b = "–"
    if mode == "open":
        cores = [float(open(f"{work}/open-{i}.browser").read()) / json.load(open(f"{work}/open-{i}.json"))["duration_seconds"]
                 for i in range(1, rounds + 1)]
        b = f"{statistics.median(cores) * 100:.0f} %"
    print(f"| {mode} | {m:.4f} | {', '.join(f'{p:.4f}' for p in per)} | {r:.0f} | {b} |")
print(f"\nRatios of soakd's CPU per request: polled/closed **{res['polled']/res['closed']:.2f}**, open/closed **{res['open']/res['closed']:.2f}**.\n")
print("### (b) Highest sustained rate (achieved >= 99 %, dropped < 1 %)\n")
print("| offered | closed: achieved, dropped | polled | open in Chromium |")
print("|---|---|---|---|")
modes = ["closed", "polled", "open"]
best = {m: 0 for m in modes}
failed = {m: False for m in modes}
for s in steps:
    cells = []
    for mode in modes:
        x = one(f"step-{mode}-{s}")
        ok = x["rate"] >= 0.99 * int(s) and x["dropped"] < 0.01 * max(x["started"] + x["dropped"], 1)
        # The highest step passed with every lower one passed too.
        if ok and not failed[mode]:
            best[mode] = int(s)
        failed[mode] |= not ok
        cells.append(f"{x['rate']:.0f}, {x['dropped']}{' (pass)' if ok else ''}")
    print(f"| {s} | {' | '.join(cells)} |")
print(f"\nHighest passing step: closed **{best['closed']}**/s, polled **{best['polled']}**/s, open in Chromium **{best['open']}**/s.\n")
PY
# The ceiling of this nginx on this machine, for reading (b): wrk's closed loop.
wrk -t1 -c"$CONNS" -d10s "http://127.0.0.1:$NGINX/" > "$WORK/wrk.txt"
echo "Reference: wrk closed loop against the same nginx, $CONNS connections: $(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt") req/s (the target's ceiling in this run)."
echo
echo "### (c) Serving an hour of history"
echo
"$CARGO_TARGET_DIR/release/examples/history_serve" 10 | sed 's/^/- /'
