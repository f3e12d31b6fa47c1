#!/usr/bin/env bash
# HTTP generator benchmark (not a test): soakd versus oha and wrk against a local nginx
# (one worker, `return 200 "ok"`), all in one run on this machine, per SECTION:
#
#   http1   plain HTTP/1.1
#   https   HTTP/1.1 over TLS 1.3 (nginx with a self-signed certificate made for the
#           run; soakd `tls_skip_verify`, oha `--insecure`)
#   h2      HTTP/2 over TLS 1.3 by ALPN: soakd `version: http2` with H2_CONNS connections
#           (default 10), oha `--http2 -c H2_CONNS -p CONNS/H2_CONNS` (the same streams)
#   h2c     HTTP/2 with prior knowledge over plain TCP, as h2
#
# In each section:
#   (a) fixed RATE (default 5000/s) for DURATION (default 20 s): achieved rate, p50/p99,
#       generator CPU seconds per 1,000 requests; ROUNDS (default 3) alternating runs
#       of each tool, medians reported (CPU on a shared VM varies by ~20 % run to
#       run). wrk has no rate control: it runs closed-loop with the same connection
#       count, as a throughput reference.
#   (b) the highest rate each sustains: rates stepped up, STEP_SECS (default 10) each.
#       The common criterion: achieved >= 99 % of offered (and, for soakd, dropped < 1 %).
#       soakd also reports a stricter one that oha cannot: fewer than 1 % of operations
#       started more than 10 ms after their intended time (oha's latency correction folds
#       lateness into latency without reporting it). wrk reports its closed-loop maximum.
#       STEPS_ONLY=1 skips (a).
#   (c) far past capacity: MAX_RATE (default 150000/s) offered for STEP_SECS, achieved/s.
#
# soakd runs with `trace: on` (TRACE=off to leave it off): a traceparent on every
# request and exemplars on the latency buckets, besides the phases it always measures.
# BEFORE=/path/to/soakd adds an earlier soakd build to every table (same config, without
# the keys it does not know), so a change can be measured against what it changed:
#
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release)
#   BEFORE=$CARGO_TARGET_DIR/release/soakd-before scripts/bench/http.sh
#
# BEFORE_NAME names that build in the tables, and BEFORE_KEYS=same gives it soakd's own
# keys (`connections`, `trace`) — for comparing two builds of the same code, e.g. one
# with rustls on aws-lc-rs instead of ring.
#
# WRK2=/path/to/wrk (giltene/wrk2, built with `make`; not packaged) adds wrk2 — the
# open-model, coordinated-omission-correcting reference — to the HTTP/1.1 sections
# (http1, https; it speaks no HTTP/2): `-t2 -c CONNS -R rate --latency`, its corrected
# p50/p99. wrk2 spends its first 10 s calibrating, so its runs last at least 20 s.
#
# Installs nginx and wrk (apt) and oha (cargo install) when missing. Results go to
# stdout as Markdown for docs/BENCHMARKS.md.
source "$(dirname "$0")/lib.sh"

RATE=${RATE:-5000}
DURATION=${DURATION:-20}
STEP_SECS=${STEP_SECS:-10}
STEPS=${STEPS:-"5000 10000 20000 30000 40000 50000 60000 70000 80000 90000 100000"}
MAX_RATE=${MAX_RATE:-150000}
CONNS=${CONNS:-100}
ROUNDS=${ROUNDS:-3}
SECTIONS=${SECTIONS:-"http1 https h2 h2c"}
H2_CONNS=${H2_CONNS:-10}
TRACE=${TRACE:-on}
BEFORE=${BEFORE:-}
export BEFORE_NAME=${BEFORE_NAME:-soakd before}
BEFORE_KEYS=${BEFORE_KEYS:-}
WRK2=${WRK2:-}

need_apt wrk wrk
need_apt h2load nghttp2-client
command -v oha >/dev/null 2>&1 || { echo "installing oha" >&2; cargo install oha --locked -q; }
build_soakd
PORT=$(free_port)
TLS_PORT=$(free_port)
H2C_PORT=$(free_port)
start_nginx "$PORT" "$TLS_PORT" "$H2C_PORT"

ALL_TOOLS=(soakd oha)
[ -n "$BEFORE" ] && ALL_TOOLS=(soakd before oha)

# section_vars SECTION: sets URL, TARGET_KEYS (soakd's target), OHA_FLAGS.
section_vars() {
  case "$1" in
    http1) URL="http://127.0.0.1:$PORT/"; TARGET_KEYS="version: http1"; OHA_FLAGS=() ;;
    https) URL="https://127.0.0.1:$TLS_PORT/"; TARGET_KEYS="version: http1, tls_skip_verify: true"
           OHA_FLAGS=(--insecure) ;;
    h2) URL="https://127.0.0.1:$TLS_PORT/"
        TARGET_KEYS="version: http2, tls_skip_verify: true, connections: $H2_CONNS"
        OHA_FLAGS=(--insecure --http2 -p $((CONNS / H2_CONNS))) ;;
    h2c) URL="http://127.0.0.1:$H2C_PORT/"; TARGET_KEYS="version: http2, connections: $H2_CONNS"
         OHA_FLAGS=(--http2 -p $((CONNS / H2_CONNS))) ;;
    *) echo "unknown section $1" >&2; exit 1 ;;
  esac
}

# run_once TOOL RATE SECS -> $WORK/TOOL-RATE.{json,cpu}
run_once() {
  local tool=$1 rate=$2 secs=$3 bin=$SOAKD keys=$TARGET_KEYS conns=$CONNS
  case "$SECTION" in h2|h2c) conns=$H2_CONNS ;; esac
  case "$tool" in
    wrk2)
      # Its first 10 s calibrate: at least 20 s, or it falls short of any rate.
      [ "$secs" -lt 20 ] && secs=20
      cpu_run "$WORK/wrk2-$rate.cpu" "$WRK2" -t2 -c"$conns" -d"${secs}s" -R"$rate" --latency "$URL" \
        > "$WORK/wrk2-$rate.txt"
      # Its text, as the JSON the reports read: rate, requests, corrected p50/p99, errors.
      python3 - "$WORK/wrk2-$rate.txt" "$secs" > "$WORK/wrk2-$rate.json" <<'PY2'
import json, re, sys
t, secs = open(sys.argv[1]).read(), float(sys.argv[2])
def lat(p):
    m = re.search(rf"^\s*{p}\.000%\s+([\d.]+)(us|ms|s|m)\s*$", t, re.M)
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[m.group(2)] if m else None
req = int(re.search(r"(\d+) requests in", t).group(1))
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
print(json.dumps({"rate": rate, "req": req, "p50": lat(50), "p99": lat(99),
                  "errors": errs + (int(non2xx.group(1)) if non2xx else 0)}))
PY2
      return ;;
    oha)
      cpu_run "$WORK/oha-$rate.cpu" oha -z "${secs}s" -q "$rate" -c "$conns" --latency-correction \
        --no-tui --output-format json "${OHA_FLAGS[@]}" "$URL" > "$WORK/oha-$rate.json"
      return ;;
    # An earlier build knows no `connections` for HTTP targets (it used reqwest's pool).
    before) bin=$BEFORE
            if [ "$BEFORE_KEYS" = same ]; then [ "$TRACE" = on ] && keys="$keys, trace: on"
            else keys=${keys/, connections: $H2_CONNS/}; fi ;;
    soakd) [ "$TRACE" = on ] && keys="$keys, trace: on" ;;
  esac
  soakd_config "$WORK/$tool-$rate.yaml" "${URL%/}" "{hold: {rate: $rate/s}}" 4096 "$CONNS" "$keys"
  RUST_LOG=warn cpu_run "$WORK/$tool-$rate.cpu" "$bin" run --config "$WORK/$tool-$rate.yaml" \
    --duration "${secs}s" --summary > "$WORK/$tool-$rate.json"
}

# The closed-loop reference: wrk for HTTP/1.1, h2load (nghttp2) for HTTP/2, with the
# same connections and streams.
wrk_once() {
  rm -f "$WORK/wrk.txt" "$WORK/h2load.txt"
  case "$SECTION" in
    h2|h2c) cpu_run "$WORK/wrk.cpu" h2load -D "$1" -c "$H2_CONNS" -m $((CONNS / H2_CONNS)) "$URL" \
              > "$WORK/h2load.txt" ;;
    *) cpu_run "$WORK/wrk.cpu" wrk -t1 -c"$CONNS" -d"${1}s" --latency "$URL" > "$WORK/wrk.txt" ;;
  esac
}

# report MODE ...: Markdown from the run's files.
report() {
  python3 - "$WORK" "$RATE" "$SECTION" "$@" <<'PY'
import json, os, re, shutil, statistics, sys
work, rate, section, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
NAMES = {"soakd": "soakd", "before": os.environ["BEFORE_NAME"], "oha": "oha", "wrk2": "wrk2 (-R, corrected latency)"}
def cpu(p):
    c = json.load(open(p)); return c["user"] + c["sys"]
def result(tool, r):
    c = cpu(f"{work}/{tool}-{r}.cpu")
    if tool == "wrk2":
        w = json.load(open(f"{work}/wrk2-{r}.json"))
        return dict(rate=w["rate"], req=w["req"], p50=w["p50"], p99=w["p99"], cpu=c)
    if tool == "oha":
        o = json.load(open(f"{work}/oha-{r}.json"))
        sm, lp = o["summary"], o["latencyPercentiles"]
        return dict(rate=sm["requestsPerSec"], req=sum(o["statusCodeDistribution"].values()),
                    p50=lp["p50"], p99=lp["p99"], cpu=c)
    s = json.load(open(f"{work}/{tool}-{r}.json"))
    sc = s["scenarios"][0]
    return dict(rate=sc["completed"] / s["duration_seconds"], req=sc["completed"],
                p50=sc["p50_seconds"], p99=sc["p99_seconds"], cpu=c, dropped=sc["dropped"],
                late=sc["late"], started=sc["started"])
def wrk():
    import os
    c = cpu(f"{work}/wrk.cpu")
    if os.path.exists(f"{work}/h2load.txt"):
        t = open(f"{work}/h2load.txt").read()
        rps = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", t).group(1))
        req = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", t).group(1))
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", t)
        m = float(mean.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1}[mean.group(2)]
        # h2load gives no percentiles: its mean stands in both columns.
        return dict(name="h2load (closed loop, mean latency)", rate=rps, req=req, p50=m, p99=m, cpu=c)
    t = open(f"{work}/wrk.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    req = int(re.search(r"(\d+) requests in", t).group(1))
    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t)
        return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1}[m.group(2)]
    return dict(name="wrk (closed loop, no rate control)", rate=rps, req=req, p50=lat(50), p99=lat(99), cpu=c)
per = lambda x: x["cpu"] / x["req"] * 1000
def median_round(tool, n):
    runs = []
    for i in range(1, n + 1):
        for ext in ("json", "cpu"):
            shutil.copy(f"{work}/r{i}-{tool}.{ext}", f"{work}/{tool}-{rate}.{ext}")
        runs.append(result(tool, rate))
    m = dict(sorted(runs, key=per)[len(runs) // 2])
    m["all"] = [round(per(x), 4) for x in runs]
    for k in ("rate", "p50", "p99"):
        m[k] = statistics.median(x[k] for x in runs)
    return m
if mode == "fixed":
    n, tools = int(sys.argv[5]), sys.argv[6].split()
    res = {t: median_round(t, n) for t in tools}
    w = wrk()
    ms = lambda v: f"{v*1000:.2f} ms"
    print(f"#### {section} (a) Fixed {rate}/s\n")
    print("| tool | achieved req/s | achieved / target | p50 | p99 | CPU s per 1,000 req |")
    print("|---|---|---|---|---|---|")
    for t in tools:
        x = res[t]
        print(f"| {NAMES[t]} | {x['rate']:.0f} | {x['rate']/rate:.4f} | {ms(x['p50'])} | {ms(x['p99'])} | {per(x):.4f} |")
    print(f"| {w['name']} | {w['rate']:.0f} | – | {ms(w['p50'])} | {ms(w['p99'])} | {per(w):.4f} |")
    print(f"\nMedians of {n} alternating runs; CPU s per 1,000 in each run: " +
          "; ".join(f"{NAMES[t]} {res[t]['all']}" for t in tools) + ".")
    s, o = res["soakd"], res["oha"]
    line = f"Ratios: soakd/oha CPU per request **{per(s)/per(o):.2f}**, achieved rate **{s['rate']/o['rate']:.4f}**"
    if "before" in res:
        b = res["before"]
        line += f"; soakd/{NAMES['before']} CPU per request **{per(s)/per(b):.2f}**"
    if "wrk2" in res:
        line += f"; soakd/wrk2 CPU per request **{per(s)/per(res['wrk2']):.2f}**"
    print(line + f"; soakd dropped {s['dropped']}, late (>10 ms) {s['late']} of {s['started']} started (median run).\n")
elif mode == "steps":
    best = json.loads(sys.argv[5])
    w = wrk()
    print(f"#### {section} (b) Highest sustained rate ({best['secs']} s steps)\n")
    print("| tool | highest passing step | note |")
    print("|---|---|---|")
    for t in best["tools"]:
        print(f"| {NAMES[t]} | {best[t]} req/s | achieved >= 99 %{', dropped < 1 %' if t not in ('oha', 'wrk2') else ''} |")
        if t not in ("oha", "wrk2"):
            print(f"| {NAMES[t]}, strict | {best[t + '_strict']} req/s | also < 1 % of starts more than 10 ms late |")
    print(f"| {w['name'].split(' ')[0]} | {w['rate']:.0f} req/s | closed-loop maximum, {per(w):.4f} CPU s per 1,000 req |")
    if best.get("wrk2"):
        print(f"\nRatio soakd/wrk2 highest sustained rate: **{best['soakd']/best['wrk2']:.2f}**")
    if best["oha"]:
        print(f"\nRatio soakd/oha highest sustained rate: **{best['soakd']/best['oha']:.2f}**" +
              (f"; soakd/{NAMES['before']}: **{best['soakd']/best['before']:.2f}**" if best.get("before") else "") + "\n")
    print("Steps:\n")
    for line in best["log"]:
        print(f"- {line}")
    print()
else:  # max
    r, tools = int(sys.argv[5]), sys.argv[6].split()
    print(f"#### {section} (c) Offered {r}/s\n")
    print("| tool | achieved req/s | CPU s per 1,000 req |")
    print("|---|---|---|")
    res = {t: result(t, r) for t in tools}
    for t in tools:
        print(f"| {NAMES[t]} | {res[t]['rate']:.0f} | {per(res[t]):.4f} |")
    line = f"\nRatio soakd/oha achieved: **{res['soakd']['rate']/res['oha']['rate']:.2f}**"
    if "wrk2" in res:
        line += f"; soakd/wrk2: **{res['soakd']['rate']/res['wrk2']['rate']:.2f}**"
    if "before" in res:
        line += f"; soakd/{NAMES['before']}: **{res['soakd']['rate']/res['before']['rate']:.2f}**"
    print(line + "\n")
PY
}

passes() {  # passes TOOL RATE
  python3 - "$WORK" "$1" "$2" <<'PY'
import json, os, sys
work, tool, rate = sys.argv[1], sys.argv[2], int(sys.argv[3])
name = os.environ["BEFORE_NAME"] if tool == "before" else tool
if tool == "wrk2":
    w = json.load(open(f"{work}/wrk2-{rate}.json"))
    ok = w["rate"] >= 0.99 * rate and w["errors"] < 0.01 * w["req"]
    print(f"wrk2 {rate}/s: achieved {w['rate']:.0f}/s, errors {w['errors']} -> {'pass' if ok else 'fail'}")
elif tool == "oha":
    o = json.load(open(f"{work}/oha-{rate}.json"))
    achieved = o["summary"]["requestsPerSec"]
    ok = achieved >= 0.99 * rate and o["summary"]["successRate"] >= 0.99
    print(f"oha {rate}/s: achieved {achieved:.0f}/s -> {'pass' if ok else 'fail'}")
else:
    s = json.load(open(f"{work}/{tool}-{rate}.json"))
    sc = s["scenarios"][0]
    offered = rate * s["duration_seconds"]
    achieved = sc["completed"] / s["duration_seconds"]
    errors = sum(sc.get("errors", {}).values()) if isinstance(sc.get("errors"), dict) else 0
    ok = achieved >= 0.99 * rate and sc["dropped"] / max(offered, 1) < 0.01 and errors / max(offered, 1) < 0.01
    strict = ok and sc["late"] / max(offered, 1) < 0.01
    print(f"{name} {rate}/s: achieved {achieved:.0f}/s, dropped {sc['dropped']}, late {sc['late']} ({sc['late']/max(offered,1):.2%}) -> {'pass' if ok else 'fail'}{', strict pass' if strict else ', strict fail'}")
sys.exit(0 if ok else 1)
PY
}

echo "## HTTP: soakd vs oha vs wrk"
echo
echo "Machine: $(machine). nginx $(nginx -v 2>&1 | cut -d/ -f2), 1 worker; HTTP/1.1: $CONNS connections for every tool; HTTP/2: $H2_CONNS connections × $((CONNS / H2_CONNS)) streams; $(h2load --version | head -1); $(oha --version); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); soakd $($SOAKD --version | awk '{print $2}') (trace: $TRACE)${BEFORE:+; $BEFORE_NAME: $BEFORE}${WRK2:+; wrk2 (giltene/wrk2) $WRK2, runs of at least 20 s}. Command: \`SECTIONS=\"$SECTIONS\"${BEFORE:+ BEFORE=...} scripts/bench/http.sh\`."
echo

for SECTION in $SECTIONS; do
  section_vars "$SECTION"
  TOOLS=("${ALL_TOOLS[@]}")
  case "$SECTION" in http1|https) [ -n "$WRK2" ] && TOOLS+=(wrk2) ;; esac
  echo "### $SECTION ($URL)"
  echo
  if [ "${STEPS_ONLY:-0}" != 1 ]; then
    for i in $(seq "$ROUNDS"); do
      for t in "${TOOLS[@]}"; do
        run_once "$t" "$RATE" "$DURATION"
        cp "$WORK/$t-$RATE.json" "$WORK/r$i-$t.json"; cp "$WORK/$t-$RATE.cpu" "$WORK/r$i-$t.cpu"
      done
    done
    wrk_once "$DURATION"
    report fixed "$ROUNDS" "${TOOLS[*]}"
  fi
  LOG=()
  declare -A BEST=()
  for t in "${TOOLS[@]}"; do
    BEST[$t]=0; BEST[${t}_strict]=0; strict_ok=1
    for r in $STEPS; do
      run_once "$t" "$r" "$STEP_SECS"
      line=$(passes "$t" "$r") && ok=1 || ok=0
      LOG+=("$line")
      # The strict level is the highest step reached with every step so far strict.
      case "$line" in *"strict pass"*) [ $strict_ok = 1 ] && BEST[${t}_strict]=$r ;; *) strict_ok=0 ;; esac
      [ $ok = 1 ] && BEST[$t]=$r || break
    done
  done
  wrk_once "$STEP_SECS"
  BESTJSON=$(for k in "${!BEST[@]}"; do echo "$k ${BEST[$k]}"; done | python3 -c '
import json, sys
d = {k: int(v) for k, v in (l.split() for l in sys.stdin)}
print(json.dumps(d))')
  LOGJSON=$(printf '%s\n' "${LOG[@]}" | python3 -c 'import json,sys; print(json.dumps([l.strip() for l in sys.stdin if l.strip()]))')
  TOOLSJSON=$(printf '%s\n' "${TOOLS[@]}" | python3 -c 'import json,sys; print(json.dumps([l.strip() for l in sys.stdin]))')
  report steps "$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); d['log']=json.loads(sys.argv[2]); d['tools']=json.loads(sys.argv[3]); d['secs']=$STEP_SECS; print(json.dumps(d))" "$BESTJSON" "$LOGJSON" "$TOOLSJSON")"
  for t in "${TOOLS[@]}"; do run_once "$t" "$MAX_RATE" "$STEP_SECS"; done
  report max "$MAX_RATE" "${TOOLS[*]}"
  unset BEST
done
