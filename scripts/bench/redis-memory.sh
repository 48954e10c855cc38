#!/usr/bin/env bash
# Redis bytes per session.
#
# What: Redis used_memory (and used_memory_rss) per session created through the API, the
# MEMORY USAGE and encoding of session hashes (200 sampled), and the bytes per entry of the
# per-user session index and the "active" sorted sets; twice: without a User-Agent and with a
# browser's (sessiond stores it in the session, and its length decides the Redis encoding of
# the hash).
#
# How: a throwaway redis-server and a sessiond with cheap argon2 parameters (256 KiB, 1
# iteration: logins are not what is measured); for each variant an empty Redis (FLUSHALL),
# FILL_SESSIONS / 25 users registered (wrk), INFO memory, then wrk logins until sessiond has
# created FILL_SESSIONS sessions (~25 per user, below the per-user cap of 50), INFO memory
# again, and SCAN / MEMORY USAGE / OBJECT ENCODING of the keys.
#
# Knobs: FILL_SESSIONS (100000), and those of scripts/bench/lib.sh.
#
# Output (BENCH_OUT): redis-<variant>-*.txt, redis-config-listpack.txt, fill-*.json;
# summary keys redis_memory, redis_listpack_config.
#
#   scripts/bench/redis-memory.sh
#   FILL_SESSIONS=2000 scripts/bench/redis-memory.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init redis-memory wrk
defaults FILL_SESSIONS=100000

ensure_built sessiond
phase redis-memory
read -r FILL_REDIS_PORT FILL_PORT FILL_ADMIN <<<"$(free_ports 3)"
start_redis "$FILL_REDIS_PORT"
start_sessiond sessiond-fill "$FILL_PORT" "$FILL_ADMIN" "$FILL_REDIS_PORT" \
  SESSIOND_ARGON2_MEMORY_KIB=256 SESSIOND_ARGON2_ITERATIONS=1 SESSIOND_HASH_QUEUE=1024
FILL_PID=$LAST_PID
FILL=http://127.0.0.1:$FILL_PORT
# ~25 sessions per user, well below the per-user cap of 50 even if the last fill round overshoots.
FILL_USERS=$(((FILL_SESSIONS + 24) / 25))
BROWSER_UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'

# Sample a list of keys with one command each: "<COMMAND> <key>" lines through redis-cli.
each_key() { # keys-file command output [max]
  sed -n "1,${4:-\$}s/^/$2 /p" "$1" | redis-cli -p "$FILL_REDIS_PORT" >"$3"
}
fill() { # variant user-agent: an empty Redis, FILL_USERS users, then FILL_SESSIONS sessions
  local v=$1 ua=$2 attempt users_now created=0 r=$FILL_REDIS_PORT base
  redis-cli -p "$r" flushall >/dev/null
  for attempt in 1 2 3 4 5; do
    run_wrk "fill-$v-register-$attempt" 16 3 "$FILL" loadtest/wrk/register.lua \
      USER_PREFIX=fill USERS="$FILL_USERS" PASSWORD="$PASSWORD"
    users_now=$(redis-cli -p "$r" dbsize)
    [ "$users_now" -ge "$FILL_USERS" ] && break
  done
  [ "$users_now" -ge "$FILL_USERS" ] || die "only $users_now of $FILL_USERS users registered"
  sleep 1
  redis-cli -p "$r" info memory >"$OUT/redis-$v-memory-before.txt"
  redis-cli -p "$r" dbsize >"$OUT/redis-$v-dbsize-before.txt"
  base=$(metrics_of "$FILL_ADMIN" | awk '/^sessiond_sessions_created_total /{print int($2)}')
  for attempt in $(seq 1 60); do
    run_wrk "fill-$v-login-$attempt" 32 3 "$FILL" loadtest/wrk/login.lua \
      USER_PREFIX=fill USERS="$FILL_USERS" PASSWORD="$PASSWORD" USER_AGENT="$ua" >/dev/null
    created=$(metrics_of "$FILL_ADMIN" | awk -v base="${base:-0}" '/^sessiond_sessions_created_total /{print int($2) - base}')
    [ "${created:-0}" -ge "$FILL_SESSIONS" ] && break
  done
  say "  $v: sessions created: $created"
  sleep 1
  redis-cli -p "$r" info memory >"$OUT/redis-$v-memory-after.txt"
  redis-cli -p "$r" dbsize >"$OUT/redis-$v-dbsize-after.txt"
  # Whole scans into files, then samples (a `| head` would end redis-cli with SIGPIPE).
  redis-cli -p "$r" --scan --pattern 'sessiond:*:sess:*' >"$OUT/redis-$v-session-keys.txt"
  sort -u "$OUT/redis-$v-session-keys.txt" | wc -l >"$OUT/redis-$v-sessions-count.txt"
  each_key "$OUT/redis-$v-session-keys.txt" "MEMORY USAGE" "$OUT/redis-$v-usage-sessions.txt" 200
  each_key "$OUT/redis-$v-session-keys.txt" "OBJECT ENCODING" "$OUT/redis-$v-encoding-sessions-raw.txt" 200
  sort "$OUT/redis-$v-encoding-sessions-raw.txt" | uniq -c >"$OUT/redis-$v-encoding-sessions.txt"
  redis-cli -p "$r" hgetall "$(sed -n 1p "$OUT/redis-$v-session-keys.txt")" >"$OUT/redis-$v-session-sample.txt"
  redis-cli -p "$r" --scan --pattern 'sessiond:*:user-sessions:*' >"$OUT/redis-$v-index-keys-all.txt"
  sed -n '1,200p' "$OUT/redis-$v-index-keys-all.txt" >"$OUT/redis-$v-index-keys.txt"
  each_key "$OUT/redis-$v-index-keys.txt" "MEMORY USAGE" "$OUT/redis-$v-usage-index.txt"
  each_key "$OUT/redis-$v-index-keys.txt" HLEN "$OUT/redis-$v-index-hlen.txt"
  redis-cli -p "$r" --scan --pattern 'sessiond:*:active:*' >"$OUT/redis-$v-active-keys.txt"
  each_key "$OUT/redis-$v-active-keys.txt" "MEMORY USAGE" "$OUT/redis-$v-usage-active.txt"
  each_key "$OUT/redis-$v-active-keys.txt" ZCARD "$OUT/redis-$v-active-zcard.txt"
  each_key "$OUT/redis-$v-active-keys.txt" "OBJECT ENCODING" "$OUT/redis-$v-encoding-active-raw.txt"
  sort "$OUT/redis-$v-encoding-active-raw.txt" | uniq -c >"$OUT/redis-$v-encoding-active.txt"
}
redis-cli -p "$FILL_REDIS_PORT" config get '*-max-listpack-*' >"$OUT/redis-config-listpack.txt"
fill no-user-agent ""
fill browser-user-agent "$BROWSER_UA"
stop_pid "$FILL_PID"

finish_scenario
