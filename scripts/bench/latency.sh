#!/usr/bin/env bash
# Latency under a realistic mix and against offered load (k6), and the latency-vs-load plot.
#
# What: latency percentiles per endpoint under loadtest/load.js (the realistic mix at a
# constant LOAD_RATE arrival rate) and whether its thresholds hold; then, under
# loadtest/stress.js (validations only, a staircase of arrival rates STRESS_STEPS), the
# completed rate and latency of each step, and dropped iterations.
#
# How: a throwaway redis-server and sessiond (rate limiters off); k6 run against it, its
# summaries written as JSON; scripts/plot_latency.py draws the stress steps (and, when
# BENCH_OUT holds scale.json from scripts/bench/scale.sh, the wrk connection sweep) into
# PLOT_OUT. The plot needs a python with matplotlib (PYTHON, python3 or /usr/bin/python3;
# apt-get install -y python3-matplotlib); without one it is skipped.
#
# Knobs: LOAD_RATE (300), LOAD_DURATION (30s), STRESS_STEPS (250,500,1000,1500,2000,3000),
# STRESS_RAMP (2s), STRESS_HOLD (8s), PLOT_OUT (docs/latency-vs-load.png), PYTHON, and those of
# scripts/bench/lib.sh.
#
# Output (BENCH_OUT): k6-load.txt, k6-load-summary.json, k6-load.rc, k6-stress.txt,
# k6-stress-summary.json, k6-stress.rc, plot.txt; summary keys k6_load, k6_stress.
#
#   scripts/bench/latency.sh
#   STRESS_STEPS=200,400 STRESS_HOLD=3s LOAD_DURATION=5s PLOT_OUT=/tmp/plot.png scripts/bench/latency.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init latency k6
defaults LOAD_RATE=300 LOAD_DURATION=30s STRESS_STEPS=250,500,1000,1500,2000,3000 STRESS_RAMP=2s STRESS_HOLD=8s \
  PLOT_OUT=docs/latency-vs-load.png
PLOT_PY=""
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import matplotlib' 2>/dev/null; then
    PLOT_PY=$candidate
    break
  fi
done

ensure_built sessiond
phase start-latency
start_stack

phase k6-load
k6_rc=0
k6_run -e BASE_URL="$API" -e RATE="$LOAD_RATE" -e DURATION="$LOAD_DURATION" \
  -e SUMMARY_JSON="$OUT/k6-load-summary.json" loadtest/load.js >"$OUT/k6-load.txt" 2>&1 || k6_rc=$?
echo "$k6_rc" >"$OUT/k6-load.rc"
say "  k6 load.js exit code $k6_rc (99: a threshold was breached)"
grep -E "FAILED|^  http_req_duration\{endpoint:(profile|login)\}" "$OUT/k6-load.txt" | tee -a "$LOG" || true

phase k6-stress
stress_rc=0
k6_run -e BASE_URL="$API" -e STEPS="$STRESS_STEPS" -e RAMP="$STRESS_RAMP" -e HOLD="$STRESS_HOLD" \
  -e SUMMARY_JSON="$OUT/k6-stress-summary.json" loadtest/stress.js >"$OUT/k6-stress.txt" 2>&1 || stress_rc=$?
echo "$stress_rc" >"$OUT/k6-stress.rc"
say "  k6 stress.js exit code $stress_rc"
if [ -n "$PLOT_PY" ]; then
  scale=()
  [ -e "$OUT/scale.json" ] && scale=(--scale "$OUT/scale.json")
  if "$PLOT_PY" scripts/plot_latency.py "$OUT/k6-stress-summary.json" "${scale[@]}" -o "$PLOT_OUT" >"$OUT/plot.txt" 2>&1; then
    tee -a "$LOG" <"$OUT/plot.txt"
  else
    say "  plot failed: $(tail -1 "$OUT/plot.txt")"
  fi
else
  say "  no python with matplotlib: plot skipped (apt-get install -y python3-matplotlib)"
fi

finish_scenario
