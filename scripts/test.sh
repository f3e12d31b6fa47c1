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
# The compatibility test runs the real postgres_exporter beside soakd.
command -v prometheus-postgres-exporter >/dev/null 2>&1 || need+=(prometheus-postgres-exporter)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo test --locked --all-targets
