#!/usr/bin/env bash
# Validation throughput: sessiond against the bare axum baseline.
#
# What: requests per second and latency of session validation (GET /v1/profile with a bearer
# token) at sessiond, and at examples/baseline.rs (the same route answered from memory: what
# axum costs without sessiond's middleware and Redis round trip); Redis commands, and writes,
# per validation; CPU time per request of sessiond, redis-server, the baseline and the rest of
# the machine; sessiond's resident memory (idle after start-up, and under this load).
#
# How: a throwaway redis-server, sessiond (rate limiters off: the load comes from one
# address) and the baseline on free 127.0.0.1 ports; one user logged in; a WARMUP-second wrk
# run at each; then the same wrk load (CONNECTIONS connections, DURATION seconds,
# loadtest/wrk/profile.lua) at sessiond, then at the baseline. Redis INFO commandstats and
# sessiond's validation counter (/metrics) before and after the sessiond run give the Redis
# commands per validation; /proc/<pid>/stat and /proc/stat around each run the CPU time.
#
# Knobs: DURATION (15), CONNECTIONS (64), WRK_THREADS (2), WARMUP (3), and those of
# scripts/bench/lib.sh (SKIP_BUILD, BENCH_OUT, CARGO_TARGET_DIR, SESSIOND_BIN, BASELINE_BIN).
#
# Output (BENCH_OUT): validation-{sessiond,baseline}.{json,txt}, commandstats-{before,after}.txt,
# metrics-{before,after}-validation.txt, cpu-{before,after}-validation-*.txt,
# rss-validation.txt; summary keys validation, redis_per_validation, rss_mib.validation_max.
#
#   scripts/bench/validation.sh
#   DURATION=30 SKIP_BUILD=1 scripts/bench/validation.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init validation wrk

ensure_built sessiond baseline
phase start
start_stack baseline
sleep 2 # idle RSS after start-up

phase warmup
run_wrk warmup-sessiond "$CONNECTIONS" "$WARMUP" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"
run_wrk warmup-baseline "$CONNECTIONS" "$WARMUP" "$BASE" loadtest/wrk/profile.lua TOKEN="$TOKEN"

phase validation-sessiond
redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats-before.txt"
metrics_of "$ADMIN_PORT" >"$OUT/metrics-before-validation.txt"
cpu_snapshot "$OUT/cpu-before-validation-sessiond.txt" "$SESSIOND_PID" "$REDIS_PID" "$BASELINE_PID"
run_wrk validation-sessiond "$CONNECTIONS" "$DURATION" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"
cpu_snapshot "$OUT/cpu-after-validation-sessiond.txt" "$SESSIOND_PID" "$REDIS_PID" "$BASELINE_PID"
redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats-after.txt"
metrics_of "$ADMIN_PORT" >"$OUT/metrics-after-validation.txt"

phase validation-baseline
cpu_snapshot "$OUT/cpu-before-validation-baseline.txt" "$SESSIOND_PID" "$REDIS_PID" "$BASELINE_PID"
run_wrk validation-baseline "$CONNECTIONS" "$DURATION" "$BASE" loadtest/wrk/profile.lua TOKEN="$TOKEN"
cpu_snapshot "$OUT/cpu-after-validation-baseline.txt" "$SESSIOND_PID" "$REDIS_PID" "$BASELINE_PID"

finish_scenario
