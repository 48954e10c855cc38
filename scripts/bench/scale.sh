#!/usr/bin/env bash
# The scale curve: validation throughput and latency against the number of connections.
#
# What: req/s, p50 and p99 of GET /v1/profile (bearer) at sessiond and at the bare axum
# baseline, at each of SCALE_CONNECTIONS connections.
#
# How: a throwaway redis-server, sessiond (rate limiters off) and the baseline; for each
# connection count, SCALE_DURATION seconds of wrk (loadtest/wrk/profile.lua) at sessiond, then
# (SCALE_BASELINE=1) at the baseline.
#
# Knobs: SCALE_CONNECTIONS ("1 8 64 256"), SCALE_DURATION (8), SCALE_BASELINE (1), WRK_THREADS
# (2), and those of scripts/bench/lib.sh (SKIP_BUILD, BENCH_OUT, CARGO_TARGET_DIR, ...).
#
# Output (BENCH_OUT): scale-{sessiond,baseline}-c<N>.{json,txt} and scale.json (read by
# scripts/bench/latency.sh for the plot's second panel); summary key scale.
#
#   scripts/bench/scale.sh
#   SCALE_CONNECTIONS="16 128" scripts/bench/scale.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init scale wrk
defaults SCALE_CONNECTIONS="1 8 64 256" SCALE_DURATION=8 SCALE_BASELINE=1

ensure_built sessiond baseline
phase start-scale
start_stack baseline

phase scale
for c in $SCALE_CONNECTIONS; do
  run_wrk "scale-sessiond-c$c" "$c" "$SCALE_DURATION" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"
  if [ "$SCALE_BASELINE" = 1 ]; then
    run_wrk "scale-baseline-c$c" "$c" "$SCALE_DURATION" "$BASE" loadtest/wrk/profile.lua TOKEN="$TOKEN"
  fi
done
"$PY" - "$OUT" "$SCALE_CONNECTIONS" <<'PY'
import json, os, sys
out, conns = sys.argv[1], [int(c) for c in sys.argv[2].split()]
rows = []
for c in conns:
    row = {"connections": c}
    for target in ("sessiond", "baseline"):
        path = f"{out}/scale-{target}-c{c}.json"
        row[target] = json.load(open(path)) if os.path.exists(path) else None
    rows.append(row)
json.dump(rows, open(f"{out}/scale.json", "w"), indent=2)
PY

finish_scenario
