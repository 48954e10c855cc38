#!/usr/bin/env bash
# Cold start: how long a restarted sessiond takes to serve at full speed again.
#
# What: under a constant closed-loop validation load (cache on, sessiond's defaults), sessiond
# is stopped (SIGTERM) and started again on the same port; for each restart: the time from
# the new process's start until its throughput is back to COLD_THRESHOLD (90 %) of the steady
# throughput before the restart — per second (the first trailing one-second window at >= 90 %)
# and per 100 ms (the first 100 ms at >= 90 % from which the next second also averages
# >= 90 %) —, and on the way: the old process's shutdown time, the new one's time to /readyz,
# to its first 2xx, and the whole gap in service (SIGTERM to first 2xx).
#
# How: a throwaway redis-server and sessiond (rate limiters off); one user logged in;
# bench/load-probe (a small closed-loop HTTP/1.1 client that reconnects when the server goes
# away and counts 2xx answers per 100 ms) sends GET /v1/profile with the bearer token over
# COLD_CONNECTIONS connections. After COLD_BEFORE seconds, COLD_RESTARTS times: SIGTERM, wait
# for the exit, start a new sessiond on the same ports, wait COLD_AFTER seconds. The steady
# throughput of a restart is the mean over the COLD_STEADY_WINDOW seconds before its SIGTERM.
# The same window at the end of the COLD_AFTER seconds is reported beside it: when that one
# is below the threshold too, the machine's load moved during the run, not the restart.
# The script's timestamps and the probe's buckets use the same wall clock.
#
# Knobs: COLD_CONNECTIONS (64), COLD_BEFORE (8), COLD_AFTER (8), COLD_RESTARTS (3),
# COLD_STEADY_WINDOW (4), COLD_THRESHOLD (0.9), COLD_PROBE_THREADS (1), and those of
# scripts/bench/lib.sh (LOAD_PROBE_BIN among them).
#
# Output (BENCH_OUT): cold-start-buckets.csv (start_unix_s,ok,other,errors per 100 ms),
# cold-start-events.txt (restart term_at exited_at start_at ready_at), cold-start.json
# (the knobs); summary key cold_start.
#
#   scripts/bench/cold-start.sh
#   COLD_RESTARTS=1 COLD_BEFORE=5 COLD_AFTER=5 scripts/bench/cold-start.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init cold-start
defaults COLD_CONNECTIONS=64 COLD_BEFORE=8 COLD_AFTER=8 COLD_RESTARTS=3 COLD_STEADY_WINDOW=4 \
  COLD_THRESHOLD=0.9 COLD_PROBE_THREADS=1
((COLD_STEADY_WINDOW < COLD_BEFORE && COLD_STEADY_WINDOW < COLD_AFTER)) ||
  die "COLD_STEADY_WINDOW must be shorter than COLD_BEFORE and COLD_AFTER"

ensure_built sessiond load-probe
phase start-cold-start
start_stack
printf '{"connections": %s, "before_s": %s, "after_s": %s, "restarts": %s, "steady_window_s": %s, "threshold": %s, "bucket_ms": 100}\n' \
  "$COLD_CONNECTIONS" "$COLD_BEFORE" "$COLD_AFTER" "$COLD_RESTARTS" "$COLD_STEADY_WINDOW" "$COLD_THRESHOLD" >"$OUT/cold-start.json"

phase cold-start
STOP_FILE="$OUT/cold-start.stop"
rm -f "$STOP_FILE"
# Long enough for every restart with 10 s of downtime each; the stop file ends it earlier.
"$LOAD_PROBE_BIN" --url "$API/v1/profile" --header "authorization: Bearer $TOKEN" \
  --connections "$COLD_CONNECTIONS" --threads "$COLD_PROBE_THREADS" --bucket-ms 100 \
  --seconds $((COLD_BEFORE + COLD_RESTARTS * (COLD_AFTER + 10) + 5)) \
  --stop-file "$STOP_FILE" --out "$OUT/cold-start-buckets.csv" 2>"$OUT/load-probe.log" &
PROBE_PID=$!
track_pid "$PROBE_PID"
sleep "$COLD_BEFORE"
: >"$OUT/cold-start-events.txt"
for k in $(seq 1 "$COLD_RESTARTS"); do
  term_at=$(now)
  kill -TERM "$SESSIOND_PID"
  wait "$SESSIOND_PID" 2>/dev/null || true
  exited_at=$(now)
  start_at=$(now)
  start_sessiond "sessiond-restart-$k" "$API_PORT" "$ADMIN_PORT" "$REDIS_PORT"
  ready_at=$(now)
  SESSIOND_PID=$LAST_PID
  echo "$k $term_at $exited_at $start_at $ready_at" >>"$OUT/cold-start-events.txt"
  say "  restart $k: exited $(seconds_between "$term_at" "$exited_at") s after SIGTERM, ready $(seconds_between "$start_at" "$ready_at") s after start"
  sleep "$COLD_AFTER"
done
touch "$STOP_FILE"
wait "$PROBE_PID" || die "load-probe failed: $(tail -3 "$OUT/load-probe.log")"

finish_scenario
