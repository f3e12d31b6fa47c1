#!/usr/bin/env bash
# Regenerates docs/img/dashboard.png (and dashboard-phone.png): `soakd demo` runs for a
# while so every chart has a history, then headless Chromium photographs the page.
#
#   scripts/screenshot.sh            # WAIT=150 seconds of demo first by default
set -euo pipefail
source "$(dirname "$0")/bench/lib.sh"
WAIT="${WAIT:-150}"
need_apt chromium chromium
build_soakd
port=$(free_port)
"$SOAKD" demo --listen "127.0.0.1:$port" > "$WORK/demo.log" 2>&1 &
demo=$!
CLEANUP+=("kill -INT $demo 2>/dev/null; wait $demo 2>/dev/null")
echo "soakd demo on http://127.0.0.1:$port/ for ${WAIT}s" >&2
sleep "$WAIT"
shoot() {  # shoot FILE WIDTH HEIGHT [extra chromium flags]
  local out=$1 w=$2 h=$3; shift 3
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/chrome" --hide-scrollbars --window-size="$w,$h" "$@" \
    --virtual-time-budget=6000 --screenshot="$out" "http://127.0.0.1:$port/" 2>/dev/null
}
shoot "$ROOT/docs/img/dashboard.png" 1400 2050
shoot "$ROOT/docs/img/dashboard-phone.png" 390 2400 --force-device-scale-factor=1
ls -la "$ROOT/docs/img/"
