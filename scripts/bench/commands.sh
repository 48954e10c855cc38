#!/usr/bin/env bash
# Redis commands and round trips per request, per endpoint.
#
# What: for one request of each endpoint (register, login, wrong password, unknown user,
# profile, sessions list, refresh, revoke one, revoke all but the current, logout, a revoked
# token), its HTTP status, the Redis round trips (top-level commands), the commands run inside
# Lua scripts and the writes among them.
#
# How: a throwaway redis-server and sessiond; redis-cli MONITOR records every command while
# one request of each endpoint is sent, each between two ECHO markers. The walk is done three
# times: a first one (recorded as "+first": it loads the Lua scripts into Redis, EVALSHA
# answering NOSCRIPT once per script), the steady one, and one against a second sessiond with
# the rate limiters and the shared failed-login guard at their defaults ("+limits").
#
# Knobs: those of scripts/bench/lib.sh (SKIP_BUILD, BENCH_OUT, CARGO_TARGET_DIR, SESSIOND_BIN).
#
# Output (BENCH_OUT): monitor.txt, endpoint-status.txt, endpoint-<label>.body; summary key
# redis_per_endpoint.
#
#   scripts/bench/commands.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init commands

ensure_built sessiond
phase start-commands
start_stack
read -r LIMITS_PORT LIMITS_ADMIN <<<"$(free_ports 2)"

phase per-endpoint-redis
monitor_start "$REDIS_PORT" "$OUT/monitor.txt"
: >"$OUT/endpoint-status.txt"
walk() { # api suffix: one request of each endpoint, each between two MONITOR markers
  local api=$1 sfx=$2 user="bench-walker${2//+/-}"
  req() { # label method path [token] [body]
    local label=$1$sfx method=$2 path=$3 token=${4:-} body=${5:-}
    local args=(-sS -o "$OUT/endpoint-$label.body" -w '%{http_code}' -X "$method" "$api$path")
    [ -n "$token" ] && args+=(-H "authorization: Bearer $token")
    [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
    mark "$label"
    local code
    code=$(curl "${args[@]}")
    mark "end"
    echo "$label $code" >>"$OUT/endpoint-status.txt"
  }
  local a b_sid
  req register POST /v1/auth/register "" "{\"username\":\"$user\",\"password\":\"$PASSWORD\"}"
  req login POST /v1/auth/login "" "{\"username\":\"$user\",\"password\":\"$PASSWORD\"}"
  a=$(json_field token <"$OUT/endpoint-login$sfx.body")
  req login_wrong_password POST /v1/auth/login "" "{\"username\":\"$user\",\"password\":\"wrong password\"}"
  req login_unknown_user POST /v1/auth/login "" "{\"username\":\"bench-nobody\",\"password\":\"$PASSWORD\"}"
  req profile GET /v1/profile "$a"
  req sessions_list GET /v1/sessions "$a"
  req refresh POST /v1/auth/refresh "$a"
  a=$(json_field token <"$OUT/endpoint-refresh$sfx.body")
  b_sid=$(login "$api" "$user" | json_field session_id)
  login "$api" "$user" >/dev/null
  req session_revoke DELETE "/v1/sessions/$b_sid" "$a"
  req sessions_revoke_all_except_current DELETE "/v1/sessions?except_current=true" "$a"
  req logout POST /v1/auth/logout "$a"
  req profile_revoked_token GET /v1/profile "$a"
}
walk "$API" "+first"
walk "$API" ""
WITH_LIMITS=1 start_sessiond sessiond-limits "$LIMITS_PORT" "$LIMITS_ADMIN" "$REDIS_PORT"
LIMITS_PID=$LAST_PID
walk "http://127.0.0.1:$LIMITS_PORT" "+limits"
monitor_stop
stop_pid "$LIMITS_PID"

finish_scenario
