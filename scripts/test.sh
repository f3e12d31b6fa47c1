#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (Debian
# packages) where it is missing, then runs every unit and integration test.
#
#   scripts/test.sh            # from the repository root
#
# Builds go to $CARGO_TARGET_DIR (default: ~/.cache/soakd/target, outside the clone,
# so repeated runs stay warm).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/soakd/target}"

need=()
# promtool lints /metrics (and, later, checks the rules).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# Server binaries for the throwaway clusters the PostgreSQL tests start.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# amtool checks the Alertmanager config.
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# The compatibility test runs the real postgres_exporter beside soakd.
command -v prometheus-postgres-exporter >/dev/null 2>&1 || need+=(prometheus-postgres-exporter)
# The OpenMetrics exposition is checked with the reference parser (tests/native.rs).
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || need+=(python3-prometheus-client)
# The dashboard's browser tests drive Debian's headless Chromium (tests/dashboard.rs).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The page's modules are type-checked by TypeScript from npm (tests/contract.rs).
command -v npm >/dev/null 2>&1 || need+=(npm)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Every unit and integration test (examples and benches are built too). The last line
# totals the per-binary results, so the run closes on what it actually ran.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# The compose and Kubernetes schema checks (scripts/check-compose.py, check-k8s.py) use
# PyYAML and jsonschema.
python3 -c 'import yaml, jsonschema' 2>/dev/null || python3 -m pip install --quiet pyyaml jsonschema
# The Kubernetes manifests' core kinds are checked against Kubernetes' schemas
# (scripts/check-k8s.py, tests/stack.rs).
python3 -c 'import kubernetes_validate' 2>/dev/null || python3 -m pip install --quiet kubernetes-validate==1.37.0
# The TypeScript web/package-lock.json pins, for `tsc -p web` (tests/contract.rs).
[ -x web/node_modules/.bin/tsc ] || npm ci --prefix web --no-audit --no-fund --silent
cargo test --locked --all-targets 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\n%d passed, %d failed\n", p, f }' "$log"
exit "$status"
