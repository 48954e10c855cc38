#!/usr/bin/env bash
# The miss path: sessiond reading Redis on every validation, against tower-sessions.
#
# What: validation throughput (req/s) and p99 of sessiond with its validation cache off
# (SESSIOND_VALIDATION_CACHE_SIZE=0: every validation reads Redis), of
# bench/tower-sessions-baseline (axum + tower-sessions + tower-sessions-redis-store: what a
# Rust user would write instead) and of the bare axum baseline (examples/baseline.rs, no Redis);
# the ratio sessiond / tower-sessions; and, from Redis INFO commandstats, for each server the
# Redis commands executed per validation, the usec_per_call of each, and the Redis time per
# validation (usec of the commands a validation sends, summed, divided by the validations)
# against a plain GET's usec_per_call (tower-sessions loads a session with one GET, so its run
# gives GET's cost in the same Redis, in the same run).
#
# How: one throwaway redis-server shared by sessiond (rate limiters off), tower-sessions and
# the baseline, on free 127.0.0.1 ports; one login on each (sessiond: register + login;
# tower-sessions: POST /login); one validation of each under redis-cli MONITOR, which tells
# the commands a validation sends itself from those run inside Lua scripts (a script's usec
# already includes those, so they are not added twice); a WARMUP-second wrk run at each; then
# ROUNDS rounds, each running the same wrk load (GET profile with the session cookie,
# CONNECTIONS connections, DURATION seconds, loadtest/wrk/get.lua) at sessiond, tower-sessions
# and the baseline in turn. Redis INFO commandstats / INFO cpu and the CPU time of the server
# and of redis-server are read before and after each run; validations are the 2xx answers wrk
# counted. Which commands sessiond uses is not assumed anywhere: everything comes from the
# commandstats deltas.
#
# Knobs: ROUNDS (3), DURATION (15), CONNECTIONS (64), WARMUP (3), WRK_THREADS (2), MISS_AUTH
# (cookie: sessiond gets its session cookie like tower-sessions; bearer: Authorization header),
# MISS_BASELINE (1: also run the bare baseline), TS_ALWAYS_SAVE (0; 1: tower-sessions writes the
# session back on every request), SESSIOND_REDIS_POOL_SIZE (4, both servers' Redis
# connections), and those of scripts/bench/lib.sh (TOWER_SESSIONS_BIN among them).
#
# Output (BENCH_OUT): miss-<server>-<round>.{json,txt}, redis-stats-{before,after}-miss-*.txt,
# cpu-{before,after}-miss-*.txt, metrics-*-miss-sessiond-*.txt, monitor-miss.txt,
# rss-miss-path.txt; summary key miss_path.
#
#   scripts/bench/miss-path.sh
#   ROUNDS=1 DURATION=3 scripts/bench/miss-path.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init miss-path wrk
defaults ROUNDS=3 MISS_AUTH=cookie MISS_BASELINE=1 TS_ALWAYS_SAVE=0
export TS_ALWAYS_SAVE
case $MISS_AUTH in cookie | bearer) ;; *) die "MISS_AUTH must be cookie or bearer" ;; esac

ensure_built sessiond baseline tower-sessions
phase start-miss-path
read -r REDIS_PORT API_PORT ADMIN_PORT TS_PORT BASE_PORT <<<"$(free_ports 5)"
API=http://127.0.0.1:$API_PORT
TS=http://127.0.0.1:$TS_PORT
BASE=http://127.0.0.1:$BASE_PORT
start_redis "$REDIS_PORT"
start_sessiond sessiond "$API_PORT" "$ADMIN_PORT" "$REDIS_PORT" SESSIOND_VALIDATION_CACHE_SIZE=0
SESSIOND_PID=$LAST_PID
sample_rss "$SESSIOND_PID" "$OUT/rss-miss-path.txt"
start_tower_sessions "$TS_PORT" "$REDIS_PORT"
TS_PID=$LAST_PID
SERVERS=(sessiond tower-sessions)
if [ "$MISS_BASELINE" = 1 ]; then
  start_baseline "$BASE_PORT"
  SERVERS+=(baseline)
fi

# One login on each; the session cookie from its Set-Cookie (name=value).
set_cookie() { tr -d '\r' <"$1" | awk 'tolower($1) == "set-cookie:" { sub(/;.*/, "", $2); print $2; exit }'; }
register "$API" bench-miss
curl -fsS -D "$OUT/miss-login-sessiond.headers" -o "$OUT/miss-login-sessiond.body" -X POST "$API/v1/auth/login" \
  -H 'content-type: application/json' -d "{\"username\":\"bench-miss\",\"password\":\"$PASSWORD\"}"
TOKEN=$(json_field token <"$OUT/miss-login-sessiond.body")
SESSIOND_COOKIE=$(set_cookie "$OUT/miss-login-sessiond.headers")
curl -fsS -D "$OUT/miss-login-tower-sessions.headers" -o "$OUT/miss-login-tower-sessions.body" -X POST "$TS/login" \
  -H 'content-type: application/json' -d '{"username":"bench-miss"}'
TS_COOKIE=$(set_cookie "$OUT/miss-login-tower-sessions.headers")
[ -n "$SESSIOND_COOKIE" ] && [ -n "$TS_COOKIE" ] || die "no session cookie from a login"
say "  sessiond pid $SESSIOND_PID on $API (cache off), tower-sessions pid $TS_PID on $TS, redis :$REDIS_PORT"

# What each server is sent: server -> "url path" and the wrk variables of its credential.
target() { # server -> URL PATH_ AUTH (array) PID
  case $1 in
    sessiond)
      URL=$API PATH_=/v1/profile PID=$SESSIOND_PID
      if [ "$MISS_AUTH" = cookie ]; then AUTH=(COOKIE="$SESSIOND_COOKIE"); else AUTH=(TOKEN="$TOKEN"); fi ;;
    tower-sessions) URL=$TS PATH_=/profile PID=$TS_PID AUTH=(COOKIE="$TS_COOKIE") ;;
    baseline) URL=$BASE PATH_=/v1/profile PID=$BASELINE_PID AUTH=(TOKEN="$TOKEN") ;;
  esac
}
one_request() { # server: one validation with curl, which must answer 200
  local args=(-fsS -o /dev/null)
  target "$1"
  case ${AUTH[0]} in
    COOKIE=*) args+=(-H "cookie: ${AUTH[0]#COOKIE=}") ;;
    TOKEN=*) args+=(-H "authorization: Bearer ${AUTH[0]#TOKEN=}") ;;
  esac
  curl "${args[@]}" "$URL$PATH_" || die "$1: GET $PATH_ with the session failed"
}

# One validation of each Redis-backed server under MONITOR (after one unrecorded request, which
# may load scripts into Redis).
phase miss-monitor
for s in sessiond tower-sessions; do one_request "$s"; done
monitor_start "$REDIS_PORT" "$OUT/monitor-miss.txt"
for s in sessiond tower-sessions; do
  mark "miss-$s"
  one_request "$s"
  mark end
done
monitor_stop

phase miss-warmup
for s in "${SERVERS[@]}"; do
  target "$s"
  run_wrk "warmup-miss-$s" "$CONNECTIONS" "$WARMUP" "$URL" loadtest/wrk/get.lua WRK_PATH="$PATH_" "${AUTH[@]}"
done

validations_counter() { metrics_of "$ADMIN_PORT" | grep '^sessiond_session_validations_total' || true; }
for r in $(seq 1 "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    phase "miss-$s"
    target "$s"
    [ "$s" = sessiond ] && validations_counter >"$OUT/metrics-before-miss-sessiond-$r.txt"
    redis_stats "$REDIS_PORT" "$OUT/redis-stats-before-miss-$s-$r.txt"
    cpu_snapshot "$OUT/cpu-before-miss-$s-$r.txt" "$PID" "$REDIS_PID"
    run_wrk "miss-$s-$r" "$CONNECTIONS" "$DURATION" "$URL" loadtest/wrk/get.lua WRK_PATH="$PATH_" "${AUTH[@]}"
    cpu_snapshot "$OUT/cpu-after-miss-$s-$r.txt" "$PID" "$REDIS_PID"
    redis_stats "$REDIS_PORT" "$OUT/redis-stats-after-miss-$s-$r.txt"
    [ "$s" = sessiond ] && validations_counter >"$OUT/metrics-after-miss-sessiond-$r.txt"
  done
done

finish_scenario
