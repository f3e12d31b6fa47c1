#!/usr/bin/env bash
# gRPC benchmark (not a test): calls/s and generator CPU seconds per 1,000 calls against
# the demo target's event handler (in-memory progress), with the seed's setting of 500
# calls in flight over one HTTP/2 connection. soakd runs open-model with a rate far
# above capacity and max_in_flight 500 (closed-loop in effect); the baseline is
# examples/grpc_loop.rs, a minimal loop of 500 tonic clients on one channel (ghz is a
# Go binary that the reachable registries do not carry). ROUNDS (default 3) alternating
# runs of DURATION (default 20) seconds; medians reported.
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
build_soakd
(cd "$ROOT" && cargo build --release --locked -q --example grpc_loop)
LOOP="$CARGO_TARGET_DIR/release/examples/grpc_loop"
HTTP=$(free_port); GRPC=$(free_port)
RUST_LOG=warn "$SOAKD" target --listen "127.0.0.1:$HTTP" --grpc-listen "127.0.0.1:$GRPC" &
TPID=$!
CLEANUP+=("kill $TPID 2>/dev/null")
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/healthz" >/dev/null && break; sleep 0.1; done

cat > "$WORK/grpc.yaml" <<YAML
listen: 127.0.0.1:0
shutdown_grace: 5s
targets:
  ev: {type: grpc, endpoint: "http://127.0.0.1:$GRPC", connections: 1}
scenarios:
  events:
    target: ev
    max_in_flight: 500
    timeout: 10s
    schedule: {hold: {rate: 200000/s}}
    ops:
      stat:
        grpc:
          method: social.statistic.v1.StatisticStatItemUpdatedService/OnMessage
          message: {id: "{{seq}}", namespace: test, userId: "user-{{rand_int 1 10000}}",
                    payload: {userId: "user-{{rand_int 1 10000}}", statCode: wins_ranked, latestValue: "{{rand_int 1 60}}", inc: 1}}
YAML

for i in $(seq "$ROUNDS"); do
  RUST_LOG=warn cpu_run "$WORK/s$i.cpu" "$SOAKD" run --config "$WORK/grpc.yaml" --duration "${DURATION}s" --summary > "$WORK/s$i.json"
  cpu_run "$WORK/l$i.cpu" "$LOOP" "http://127.0.0.1:$GRPC" 500 "$DURATION" > "$WORK/l$i.json"
done

python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, n = sys.argv[1], int(sys.argv[2])
def cpu(p):
    c = json.load(open(p)); return c["user"] + c["sys"]
s_rate, s_cpu, l_rate, l_cpu, s_err = [], [], [], [], []
for i in range(1, n + 1):
    d = json.load(open(f"{work}/s{i}.json")); sc = d["scenarios"][0]
    ok = sc["completed"] - sc["errors"]
    s_rate.append(ok / d["duration_seconds"]); s_cpu.append(cpu(f"{work}/s{i}.cpu") / ok * 1000); s_err.append(sc["errors"])
    l = json.load(open(f"{work}/l{i}.json"))
    l_rate.append(l["calls_per_second"]); l_cpu.append(cpu(f"{work}/l{i}.cpu") / l["calls"] * 1000)
m = statistics.median
print("### gRPC: 500 calls in flight over one connection, demo target's stat-update OnMessage\n")
print("| generator | calls/s | CPU s per 1,000 calls |")
print("|---|---|---|")
print(f"| soakd (dynamic messages from templates) | {m(s_rate):.0f} | {m(s_cpu):.4f} |")
print(f"| minimal tonic loop (generated client, 500 tasks) | {m(l_rate):.0f} | {m(l_cpu):.4f} |")
print(f"\nRatios (medians of {n} alternating runs): soakd/loop calls/s **{m(s_rate)/m(l_rate):.2f}**, CPU per call **{m(s_cpu)/m(l_cpu):.2f}**. Per run: soakd {[round(x) for x in s_rate]} calls/s, loop {[round(x) for x in l_rate]}; soakd errors {s_err}.\n")
PY
