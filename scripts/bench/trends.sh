#!/usr/bin/env bash
# The soak judge's accuracy on series whose truth is known (examples/trend_accuracy.rs):
# false `growing` episodes per simulated month on flat and sawtooth series, time to
# detect and slope error on leaks of 0.5-5 %/day, steps and plateaus — beside least
# squares on the raw samples — and the judge's cost for 1,000 series. The noise is taken
# from the recorded soakd runs in docs/bench/longsoak-*.csv.
#
#   scripts/bench/trends.sh            # REPS=10 simulated months per case, each noise
set -euo pipefail
source "$(dirname "$0")/lib.sh"
REPS="${REPS:-10}"
(cd "$ROOT" && cargo build --release --locked -q --example trend_accuracy)
bin="$CARGO_TARGET_DIR/release/examples/trend_accuracy"
for noise in steady rough; do
  echo "### noise: $noise"
  echo
  "$bin" "$REPS" "$noise"
  echo
done
# Change points on stationary noise as large as their goal names (3 %), shaped like RSS.
echo "### noise: steady3 (change points)"
echo
SECTION=changepoints "$bin" "$REPS" steady3
