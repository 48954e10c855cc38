#!/usr/bin/env bash
# Logins against the raw argon2id verification rate.
#
# What: how close sessiond's login throughput comes to the rate at which this machine can
# verify argon2id hashes with sessiond's parameters and hashing concurrency (target: >= 90 %),
# in throughput and in CPU time per login; sessiond's page faults per login and its resident
# memory under a closed-loop login load and idle after it.
#
# How: a throwaway redis-server and sessiond (rate limiters off); LOGIN_USERS users. Then,
# LOGIN_ROUNDS times in a row: examples/argon2_rate.rs verifies for ARGON2_SECONDS seconds on
# as many threads as sessiond hashes with (CPUs - 1, at least 1), its CPU time taken with
# /usr/bin/time when present; then wrk logs in for LOGIN_DURATION seconds over
# LOGIN_CONNECTIONS connections (loadtest/wrk/login.lua, round robin over the users). The two
# alternate because on a shared virtual machine the raw rate alone drifts by 10-20 % within
# minutes: only measurements taken back to back compare. The CPU time of sessiond's hashing
# thread (/proc/<pid>/task/<tid>/stat) per login is compared with the raw benchmark's CPU time
# per verification; /metrics gives the mean verification time inside sessiond.
#
# Knobs: ARGON2_SECONDS (6), LOGIN_DURATION (6), LOGIN_ROUNDS (6), LOGIN_CONNECTIONS (8),
# LOGIN_USERS (8), and those of scripts/bench/lib.sh (ARGON2_RATE_BIN among them).
#
# Output (BENCH_OUT): argon2-rate-<r>.json (+ -cpu.txt), login-<r>.{json,txt},
# hash-ticks-*.txt, cpu-*-login-<r>.txt, faults-*-login.txt, metrics-*-login.txt,
# rss-logins.txt; summary keys login, rss_mib.login_max.
#
#   scripts/bench/logins.sh
#   LOGIN_ROUNDS=2 ARGON2_SECONDS=3 LOGIN_DURATION=3 scripts/bench/logins.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init logins wrk
defaults ARGON2_SECONDS=6 LOGIN_ROUNDS=6
login_load_defaults
HASH_THREADS=$(hash_threads)

ensure_built sessiond argon2_rate
phase start-logins
start_stack

# The raw argon2id rate; with /usr/bin/time also its CPU time (user + system seconds), which
# unlike the rate does not depend on what else the machine is running.
argon2_raw() { # output-name
  local timed=()
  [ -x /usr/bin/time ] && timed=(/usr/bin/time -f '%U %S' -o "$OUT/$1-cpu.txt")
  ARGON2_THREADS=$HASH_THREADS ARGON2_SECONDS=$ARGON2_SECONDS "${timed[@]}" "$ARGON2_RATE_BIN" >"$OUT/$1.json"
  tee -a "$LOG" <"$OUT/$1.json"
}
register_login_users "$API"
login "$API" bench-login-0 >/dev/null
HASH_TID=$(grep -l '^sessiond-hash-0$' /proc/"$SESSIOND_PID"/task/*/comm 2>/dev/null | head -1 | xargs -r dirname | xargs -r basename)
hash_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$SESSIOND_PID/task/$HASH_TID/stat" 2>/dev/null || echo 0; }
metrics_of "$ADMIN_PORT" >"$OUT/metrics-before-login.txt"
faults_snapshot "$SESSIOND_PID" "$OUT/faults-before-login.txt"
for r in $(seq 1 "$LOGIN_ROUNDS"); do
  phase argon2-raw
  argon2_raw "argon2-rate-$r"
  phase login
  hash_ticks >"$OUT/hash-ticks-before-login-$r.txt"
  cpu_snapshot "$OUT/cpu-before-login-$r.txt" "$SESSIOND_PID" "$REDIS_PID"
  run_login_load "login-$r" "$API"
  cpu_snapshot "$OUT/cpu-after-login-$r.txt" "$SESSIOND_PID" "$REDIS_PID"
  hash_ticks >"$OUT/hash-ticks-after-login-$r.txt"
done
faults_snapshot "$SESSIOND_PID" "$OUT/faults-after-login.txt"
metrics_of "$ADMIN_PORT" >"$OUT/metrics-after-login.txt"

phase idle-after
sleep 3

finish_scenario
