#!/usr/bin/env bash
# HTTP generator benchmark (not a test): soakd versus oha and wrk against a local nginx
# (one worker, `return 200 "ok"`), all in one run on this machine.
#
#   (a) fixed RATE (default 5000/s) for DURATION (default 20 s): achieved rate, p50/p99,
#       generator CPU seconds per 1,000 requests; ROUNDS (default 3) alternating runs
#       of soakd and oha, medians reported (CPU on a shared VM varies by ~20 % run to
#       run). wrk has no rate control: it runs closed-loop with the same connection
#       count, as a throughput reference.
#   (b) the highest rate each sustains: rates stepped up, STEP_SECS (default 10) each.
#       The common criterion: achieved >= 99 % of offered (and, for soakd, dropped < 1 %).
#       soakd also reports a stricter one that oha cannot: fewer than 1 % of operations
#       started more than 10 ms after their intended time (oha's latency correction folds
#       lateness into latency without reporting it). wrk reports its closed-loop maximum.
#       STEPS_ONLY=1 skips (a).
#
# Installs nginx and wrk (apt) and oha (cargo install) when missing. Results go to
# stdout as Markdown for docs/BENCHMARKS.md.
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-5000}
DURATION=${DURATION:-20}
STEP_SECS=${STEP_SECS:-10}
STEPS=${STEPS:-"5000 10000 20000 30000 40000 50000 60000 70000 80000 90000 100000"}
CONNS=${CONNS:-100}
ROUNDS=${ROUNDS:-3}

need_apt wrk wrk
command -v oha >/dev/null 2>&1 || { echo "installing oha" >&2; cargo install oha --locked -q; }
build_soakd
PORT=$(free_port)
start_nginx "$PORT"
URL="http://127.0.0.1:$PORT/"

# soakd_once RATE SECS -> writes $WORK/soakd-RATE.{json,cpu}
soakd_once() {
  soakd_config "$WORK/s-$1.yaml" "http://127.0.0.1:$PORT" "{hold: {rate: $1/s}}" 4096 "$CONNS"
  RUST_LOG=warn cpu_run "$WORK/soakd-$1.cpu" "$SOAKD" run --config "$WORK/s-$1.yaml" \
    --duration "${2}s" --summary > "$WORK/soakd-$1.json"
}

# oha_once RATE SECS -> writes $WORK/oha-RATE.{json,cpu}
oha_once() {
  cpu_run "$WORK/oha-$1.cpu" oha -z "${2}s" -q "$1" -c "$CONNS" --latency-correction \
    --no-tui --output-format json "$URL" > "$WORK/oha-$1.json"
}

wrk_once() {
  cpu_run "$WORK/wrk.cpu" wrk -t1 -c"$CONNS" -d"${1}s" --latency "$URL" > "$WORK/wrk.txt"
}

report() {
  python3 - "$WORK" "$RATE" "$@" <<'PY'
import json, re, sys
work, rate = sys.argv[1], int(sys.argv[2])
def cpu(p):
    c = json.load(open(p)); return c["user"] + c["sys"], c["wall"]
def soakd(r):
    s = json.load(open(f"{work}/soakd-{r}.json"))["scenarios"][0]
    c, wall = cpu(f"{work}/soakd-{r}.cpu")
    return dict(rate=s["completed"] / s_dur(r), req=s["completed"], p50=s["p50_seconds"], p99=s["p99_seconds"],
                cpu=c, dropped=s["dropped"], late=s["late"], started=s["started"])
def s_dur(r):
    return json.load(open(f"{work}/soakd-{r}.json"))["duration_seconds"]
def oha(r):
    o = json.load(open(f"{work}/oha-{r}.json"))
    c, wall = cpu(f"{work}/oha-{r}.cpu")
    sm = o["summary"]; total = sum(o["statusCodeDistribution"].values())
    lp = o["latencyPercentiles"]
    return dict(rate=sm["requestsPerSec"], req=total, p50=lp["p50"], p99=lp["p99"], cpu=c,
                ok=sm["successRate"])
def wrk():
    t = open(f"{work}/wrk.txt").read()
    c, wall = cpu(f"{work}/wrk.cpu")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    req = int(re.search(r"(\d+) requests in", t).group(1))
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t)
        v, u = float(m.group(1)), m.group(2)
        return v * {"us": 1e-6, "ms": 1e-3, "s": 1}[u]
    return dict(rate=rps, req=req, p50=lat(50), p99=lat(99), cpu=c)
mode = sys.argv[3]
def median_round(kind, n):
    import shutil, statistics
    runs = []
    for i in range(1, n + 1):
        shutil.copy(f"{work}/r{i}-{kind}.json", f"{work}/{kind}-{rate}.json")
        shutil.copy(f"{work}/r{i}-{kind}.cpu", f"{work}/{kind}-{rate}.cpu")
        runs.append(soakd(rate) if kind == "soakd" else oha(rate))
    per = sorted(runs, key=lambda x: x["cpu"] / x["req"])
    m = dict(per[len(per) // 2])
    m["all"] = [round(x["cpu"] / x["req"] * 1000, 4) for x in runs]
    m["rate"] = statistics.median(x["rate"] for x in runs)
    m["p50"] = statistics.median(x["p50"] for x in runs)
    m["p99"] = statistics.median(x["p99"] for x in runs)
    return m
if mode == "fixed":
    n = int(sys.argv[4])
    s, o, w = median_round("soakd", n), median_round("oha", n), wrk()
    ms = lambda v: f"{v*1000:.2f} ms"
    per = lambda x: x["cpu"] / x["req"] * 1000
    print(f"### (a) Fixed {rate}/s\n")
    print("| tool | achieved req/s | achieved / target | p50 | p99 | CPU s per 1,000 req |")
    print("|---|---|---|---|---|---|")
    print(f"| soakd | {s['rate']:.0f} | {s['rate']/rate:.4f} | {ms(s['p50'])} | {ms(s['p99'])} | {per(s):.4f} |")
    print(f"| oha | {o['rate']:.0f} | {o['rate']/rate:.4f} | {ms(o['p50'])} | {ms(o['p99'])} | {per(o):.4f} |")
    print(f"| wrk (closed loop, no rate control) | {w['rate']:.0f} | – | {ms(w['p50'])} | {ms(w['p99'])} | {per(w):.4f} |")
    print(f"\nMedians of {n} alternating runs; CPU s per 1,000 in each run: soakd {s['all']}, oha {o['all']}.")
    print(f"Ratios: soakd/oha CPU per request **{per(s)/per(o):.2f}**, achieved rate **{s['rate']/o['rate']:.4f}**; soakd dropped {s['dropped']}, late (>10 ms) {s['late']} of {s['started']} started (median run).\n")
else:
    best = json.loads(sys.argv[4])
    w = wrk()
    print("### (b) Highest sustained rate\n")
    print("| tool | highest passing step | note |")
    print("|---|---|---|")
    print(f"| soakd | {best['soakd']} req/s | achieved >= 99 %, dropped < 1 % (the common criterion) |")
    print(f"| soakd, strict | {best['soakd_strict']} req/s | also < 1 % of starts more than 10 ms late |")
    print(f"| oha | {best['oha']} req/s | achieved >= 99 % |")
    print(f"| wrk | {w['rate']:.0f} req/s | closed-loop maximum, {w['cpu']/w['req']*1000:.4f} CPU s per 1,000 req |")
    if best["oha"]:
        print(f"\nRatio soakd/oha highest sustained rate: {best['soakd']/best['oha']:.2f}\n")
    print("Steps:\n")
    for line in best["log"]:
        print(f"- {line}")
PY
}

passes() {  # passes TOOL RATE SECS
  python3 - "$WORK" "$1" "$2" "$3" <<'PY'
import json, sys
work, tool, rate, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if tool == "soakd":
    s = json.load(open(f"{work}/soakd-{rate}.json"))
    sc = s["scenarios"][0]
    offered = rate * s["duration_seconds"]
    achieved = sc["completed"] / s["duration_seconds"]
    ok = achieved >= 0.99 * rate and sc["dropped"] / max(offered, 1) < 0.01
    strict = ok and sc["late"] / max(offered, 1) < 0.01
    print(f"soakd {rate}/s: achieved {achieved:.0f}/s, dropped {sc['dropped']}, late {sc['late']} ({sc['late']/max(offered,1):.2%}) -> {'pass' if ok else 'fail'}{', strict pass' if strict else ', strict fail'}")
else:
    o = json.load(open(f"{work}/oha-{rate}.json"))
    achieved = o["summary"]["requestsPerSec"]
    ok = achieved >= 0.99 * rate and o["summary"]["successRate"] >= 0.99
    print(f"oha {rate}/s: achieved {achieved:.0f}/s -> {'pass' if ok else 'fail'}")
sys.exit(0 if ok else 1)
PY
}

echo "## HTTP: soakd vs oha vs wrk" 
echo
echo "Machine: $(machine). nginx $(nginx -v 2>&1 | cut -d/ -f2), 1 worker; $CONNS connections for oha and wrk; $(oha --version); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); soakd $($SOAKD --version | awk '{print $2}'). Command: \`scripts/bench/http.sh\`."
echo

[ "${STEPS_ONLY:-0}" = 1 ] || for i in $(seq "$ROUNDS"); do
  soakd_once "$RATE" "$DURATION"; cp "$WORK/soakd-$RATE.json" "$WORK/r$i-soakd.json"; cp "$WORK/soakd-$RATE.cpu" "$WORK/r$i-soakd.cpu"
  oha_once "$RATE" "$DURATION"; cp "$WORK/oha-$RATE.json" "$WORK/r$i-oha.json"; cp "$WORK/oha-$RATE.cpu" "$WORK/r$i-oha.cpu"
done
if [ "${STEPS_ONLY:-0}" != 1 ]; then
  wrk_once "$DURATION"
  report fixed "$ROUNDS"
fi

LOG=()
best_s=0; best_o=0; best_strict=0; strict_ok=1
for r in $STEPS; do
  soakd_once "$r" "$STEP_SECS"
  line=$(passes soakd "$r" "$STEP_SECS") && ok=1 || ok=0
  LOG+=("$line")
  # The strict level is the highest step reached with every step so far strict.
  case "$line" in *"strict pass"*) [ $strict_ok = 1 ] && best_strict=$r ;; *) strict_ok=0 ;; esac
  [ $ok = 1 ] && best_s=$r || break
done
for r in $STEPS; do
  oha_once "$r" "$STEP_SECS"
  line=$(passes oha "$r" "$STEP_SECS") && ok=1 || ok=0
  LOG+=("$line")
  [ $ok = 1 ] && best_o=$r || break
done
wrk_once "$STEP_SECS"
LOGJSON=$(printf '%s\n' "${LOG[@]}" | python3 -c 'import json,sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')
report steps "{\"soakd\": $best_s, \"soakd_strict\": $best_strict, \"oha\": $best_o, \"log\": $LOGJSON}"
