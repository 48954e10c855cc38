#!/usr/bin/env bash
# The malloc check: where sessiond's resident memory goes under logins.
#
# What: sessiond's resident memory (min/max per phase), login throughput and minor page
# faults and CPU time per login, for the same binary and load twice: with the default
# allocator settings, and with glibc malloc told to serve blocks above 1 MiB with mmap (and
# give them back on free: MALLOC_MMAP_THRESHOLD_=1048576) instead of keeping them in
# per-thread arenas. argon2id's 19 MiB blocks dominate: the difference shows whether they are
# what stays resident.
#
# How: one throwaway redis-server; LOGIN_USERS users; then, one after the other, a default
# sessiond and one with MALLOC_MMAP_THRESHOLD_, each: LOGIN_DURATION seconds of wrk logins
# (LOGIN_CONNECTIONS connections), SCALE_DURATION seconds of validations (CONNECTIONS
# connections), 2 s idle; RSS sampled every 0.5 s.
#
# Knobs: LOGIN_DURATION (6), LOGIN_CONNECTIONS (8), LOGIN_USERS (8), SCALE_DURATION (8),
# CONNECTIONS (64), and those of scripts/bench/lib.sh. (The driver runs it when MALLOC_CHECK=1.)
#
# Output (BENCH_OUT): login-memory-default.json, login-malloc.json,
# validation-memory-default.json, validation-malloc.json, faults-*-login-{memory-default,malloc}.txt,
# rss-memory.txt, rss-sessiond-malloc.txt; summary keys login.malloc_check_*,
# login.memory_default_*, rss_mib.sessiond_malloc_check.
#
#   scripts/bench/memory.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init memory wrk
defaults SCALE_DURATION=8
login_load_defaults

ensure_built sessiond
phase start-memory
start_stack
register_login_users "$API"

# One variant: logins, validations, idle; its RSS into rss_file.
measure() { # variant pid api rss_file
  local v=$1 pid=$2 api=$3
  [ "$4" = none ] || sample_rss "$pid" "$4"
  sleep 1
  phase memory-login
  faults_snapshot "$pid" "$OUT/faults-before-login-$v.txt"
  run_login_load "login-$v" "$api"
  faults_snapshot "$pid" "$OUT/faults-after-login-$v.txt"
  phase memory-validation
  run_wrk "validation-$v" "$CONNECTIONS" "$SCALE_DURATION" "$api" loadtest/wrk/profile.lua TOKEN="$TOKEN"
  phase memory-idle
  sleep 2
}
# The default sessiond of start_stack is already sampled into rss-memory.txt.
measure memory-default "$SESSIOND_PID" "$API" none
stop_pid "$SESSIOND_PID"

phase start-memory-malloc
read -r MALLOC_PORT MALLOC_ADMIN <<<"$(free_ports 2)"
start_sessiond sessiond-malloc "$MALLOC_PORT" "$MALLOC_ADMIN" "$REDIS_PORT" MALLOC_MMAP_THRESHOLD_=1048576
measure malloc "$LAST_PID" "http://127.0.0.1:$MALLOC_PORT" "$OUT/rss-sessiond-malloc.txt"
stop_pid "$LAST_PID"

finish_scenario
