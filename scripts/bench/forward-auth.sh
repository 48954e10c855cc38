#!/usr/bin/env bash
# Forward authentication through nginx: what sessiond's check costs a proxied request.
#
# What: requests per second and latency through nginx with the shipped forward-auth site
# (deploy/nginx/sessiond-auth.conf: every request checked by sessiond's /v1/auth/verify over
# a kept-alive connection, the one bearer token answered from sessiond's validation cache)
# against the same nginx proxying the same upstream with no check; the ratio of the two and
# the latency the check adds; CPU time per request of nginx, sessiond and redis-server; Redis
# commands per check.
#
# How: a throwaway redis-server and sessiond (release build; rate limiters off: all the load
# comes from one address) on free 127.0.0.1 ports, one user logged in; one nginx run as the
# current user from BENCH_OUT/nginx/ with three servers: the shipped site (its `listen` port
# changed, deploy/nginx/upstreams.conf pointed at sessiond and at the third server), a plain
# proxy to the same upstream group, and the upstream itself (`return 200`). Access logs off in
# both. A WARMUP-second wrk run at each, then ROUNDS rounds of the same wrk load (CONNECTIONS
# connections, WRK_THREADS threads, DURATION seconds, loadtest/wrk/get.lua: GET /reports with
# the bearer token, answers counted by status) at the plain proxy, then at the site. wrk,
# nginx, sessiond and Redis share the machine's CPUs, so at CONNECTIONS connections the
# latency is mostly queueing (connections / throughput): a last pair of runs over one
# connection (LOW_DURATION seconds, one wrk thread) gives the latency of the check itself.
#
# Knobs: DURATION (25), ROUNDS (1), CONNECTIONS (64), WRK_THREADS (2), WARMUP (3),
# LOW_DURATION (10; 0: no one-connection runs), NGINX_WORKERS (auto), NGINX_BIN (nginx, else
# /usr/sbin/nginx), CHECKED_BY (sessiond; baseline: the checks answered by examples/baseline.rs,
# bare axum on the same runtime, fixed identity headers, no lookup and no middleware; nginx: by
# a fourth nginx server with fixed identity headers. Both are floors: what the check costs
# nginx and the machine when the checker does nothing. The "sessiond" CPU column is then the
# baseline's, or sessiond idle), SESSIOND_ENV
# (VAR=value words added to sessiond's environment, e.g. TOKIO_WORKER_THREADS=1), and those of
# scripts/bench/lib.sh (SKIP_BUILD, BENCH_OUT, CARGO_TARGET_DIR, SESSIOND_BIN).
#
# Output (BENCH_OUT): forward-auth-{plain,auth}-<round>.{json,txt}, forward-auth-{plain,auth}-c1.{json,txt},
# cpu-{before,after}-forward-auth-{plain,auth}-<round>.txt (sessiond, redis-server, nginx's
# master and workers, the machine), commandstats-{before,after}-forward-auth-<round>.txt,
# nginx/ (configuration and error log), nginx-version.txt; summary key forward_auth.
#
#   scripts/bench/forward-auth.sh
#   DURATION=30 ROUNDS=2 SKIP_BUILD=1 scripts/bench/forward-auth.sh
#
# Needs: nginx with auth_request (apt-get install -y nginx-light), wrk, and what lib.sh needs.
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
defaults DURATION=25 # before bench_init, whose default is 15
bench_init forward-auth wrk
defaults ROUNDS=1 LOW_DURATION=10 NGINX_WORKERS=auto CHECKED_BY=sessiond
SESSIOND_ENV=${SESSIOND_ENV:-}
if [ -z "${NGINX_BIN:-}" ]; then
  NGINX_BIN=$(command -v nginx || true)
  [ -n "$NGINX_BIN" ] || [ ! -x /usr/sbin/nginx ] || NGINX_BIN=/usr/sbin/nginx
fi
[ -n "$NGINX_BIN" ] || die "missing nginx (apt-get install -y nginx-light)"

ensure_built sessiond
[ "$CHECKED_BY" != baseline ] || ensure_built baseline
phase start-forward-auth
# shellcheck disable=SC2086 # SESSIOND_ENV: VAR=value words, split on purpose
start_stack $SESSIOND_ENV
read -r SITE_PORT PLAIN_PORT APP_PORT FLOOR_PORT BASELINE_PORT <<<"$(free_ports 5)"
# Who answers the checks, and whose CPU the "sessiond" column of the results counts.
CHECKER_PID=$SESSIOND_PID
case $CHECKED_BY in
  sessiond) CHECK_ADDR=127.0.0.1:$API_PORT ;;
  nginx) CHECK_ADDR=127.0.0.1:$FLOOR_PORT ;;
  baseline)
    CHECK_ADDR=127.0.0.1:$BASELINE_PORT
    start_baseline "$BASELINE_PORT"
    CHECKER_PID=$BASELINE_PID
    ;;
  *) die "CHECKED_BY is sessiond, baseline or nginx, not $CHECKED_BY" ;;
esac

# nginx: the shipped site and upstream groups, a plain proxy and the upstream, in one process.
NGINX_DIR=$OUT/nginx
rm -rf "$NGINX_DIR"
mkdir -p "$NGINX_DIR/temp"
sed "s/listen 8080;/listen 127.0.0.1:$SITE_PORT;/" deploy/nginx/sessiond-auth.conf >"$NGINX_DIR/sessiond-auth.conf"
grep -q "listen 127.0.0.1:$SITE_PORT;" "$NGINX_DIR/sessiond-auth.conf" || die "sessiond-auth.conf does not listen on 8080"
# Every `server` line of upstreams.conf's groups replaced by this run's address (one each).
"$PY" - deploy/nginx/upstreams.conf "sessiond=$CHECK_ADDR" "protected_app=127.0.0.1:$APP_PORT" \
  >"$NGINX_DIR/upstreams.conf" <<'PY'
import re, sys
addrs = dict(a.split("=", 1) for a in sys.argv[2:])
block, done = None, set()
for line in open(sys.argv[1]):
    m = re.match(r"\s*upstream\s+(\S+)\s*\{", line)
    if m:
        block = m.group(1)
    elif line.strip() == "}":
        block = None
    elif block and line.strip().startswith("server "):
        if block in done:
            continue
        done.add(block)
        params = line.strip().rstrip(";").split()[2:]
        line = re.match(r"\s*", line).group(0) + " ".join(["server", addrs[block]] + params) + ";\n"
    sys.stdout.write(line)
missing = set(addrs) - done
if missing:
    sys.exit(f"upstreams.conf: no server line in {sorted(missing)}")
PY
user=""
[ "$(id -u)" != 0 ] || user="user $(id -un) $(id -gn);"
cat >"$NGINX_DIR/nginx.conf" <<EOF
$user
worker_processes $NGINX_WORKERS;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log warn;
events {
    worker_connections 4096;
}
http {
    # Off in all three servers: the check is what is measured, not the logging.
    access_log off;
    client_body_temp_path $NGINX_DIR/temp/body;
    proxy_temp_path $NGINX_DIR/temp/proxy;
    fastcgi_temp_path $NGINX_DIR/temp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/temp/uwsgi;
    scgi_temp_path $NGINX_DIR/temp/scgi;

    include $NGINX_DIR/upstreams.conf;
    include $NGINX_DIR/sessiond-auth.conf;

    # The same upstream group, proxied as the site proxies it, without the check.
    server {
        listen 127.0.0.1:$PLAIN_PORT;
        location / {
            proxy_pass http://protected_app;
            proxy_http_version 1.1;
            proxy_set_header Host \$http_host;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }

    # The floor (CHECKED_BY=nginx): a check answered by nginx itself, with sessiond's identity
    # headers and no logic (401 without an Authorization header, else 200): what the check
    # costs nginx and the machine when the checker costs as little as nginx's own return.
    server {
        listen 127.0.0.1:$FLOOR_PORT;
        location / {
            if (\$http_authorization = "") {
                return 401;
            }
            add_header X-Session-User bench-reader;
            add_header X-Session-User-Id 01J0000000000000000000000;
            add_header X-Session-Roles user;
            add_header X-Session-Id AAAAAAAAAAAAAAAAAAAAAA;
            add_header Cache-Control no-store;
            return 200;
        }
    }

    # The upstream: as fast as an upstream gets.
    server {
        listen 127.0.0.1:$APP_PORT;
        location / {
            return 200 "ok\n";
        }
    }
}
EOF
"$NGINX_BIN" -v >"$OUT/nginx-version.txt" 2>&1
"$NGINX_BIN" -e "$NGINX_DIR/error.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -t >>"$LOG" 2>&1 ||
  die "nginx -t failed: $(tail -3 "$NGINX_DIR/error.log")"
"$NGINX_BIN" -e "$NGINX_DIR/error.log" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -g 'daemon off;' \
  >"$OUT/nginx.log" 2>&1 &
NGINX_PID=$!
track_pid "$NGINX_PID"
wait_ready "http://127.0.0.1:$APP_PORT/" "$NGINX_PID" nginx "$APP_PORT"
SITE=http://127.0.0.1:$SITE_PORT
PLAIN=http://127.0.0.1:$PLAIN_PORT
say "  nginx pid $NGINX_PID ($(cat "$OUT/nginx-version.txt")): site $SITE, plain proxy $PLAIN, upstream :$APP_PORT, checked by $CHECKED_BY ($CHECK_ADDR)"

# Both answer 200 with the token; the site refuses without it (so the check is really made).
for url in "$SITE" "$PLAIN"; do
  curl -fsS -o /dev/null -H "authorization: Bearer $TOKEN" "$url/reports" || die "GET $url/reports with the token failed"
done
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'accept: application/json' "$SITE/reports")
[ "$code" = 401 ] || die "the site answered $code without a session, not 401"

# CPU ticks of nginx: the master and its workers.
nginx_ticks() {
  local total=0 pid
  for pid in "$NGINX_PID" $(ps -o pid= --ppid "$NGINX_PID"); do total=$((total + $(cpu_ticks "$pid"))); done
  echo "$total"
}
snapshot() { echo "$(cpu_ticks "$CHECKER_PID") $(cpu_ticks "$REDIS_PID") $(nginx_ticks) $(machine_ticks)" >"$1"; }
# Every answer of a run must be a 2xx: a refused check would be measured as a fast one.
all_2xx() {
  "$PY" - "$OUT/$1.json" <<'PY' || die "$1: not every answer was 2xx"
import json, sys
d = json.load(open(sys.argv[1]))
s = d.get("statuses") or {}
sys.exit(0 if s.get("2xx") == d["requests"] and not sum(d["errors"].values()) else 1)
PY
}

phase forward-auth-warmup
run_wrk warmup-forward-auth-plain "$CONNECTIONS" "$WARMUP" "$PLAIN" loadtest/wrk/get.lua TOKEN="$TOKEN" WRK_PATH=/reports
run_wrk warmup-forward-auth-auth "$CONNECTIONS" "$WARMUP" "$SITE" loadtest/wrk/get.lua TOKEN="$TOKEN" WRK_PATH=/reports

for r in $(seq 1 "$ROUNDS"); do
  for kind in plain auth; do
    name=forward-auth-$kind-$r
    if [ "$kind" = plain ]; then url=$PLAIN; else url=$SITE; fi
    phase "$name"
    [ "$kind" = auth ] && redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats-before-forward-auth-$r.txt"
    snapshot "$OUT/cpu-before-$name.txt"
    run_wrk "$name" "$CONNECTIONS" "$DURATION" "$url" loadtest/wrk/get.lua TOKEN="$TOKEN" WRK_PATH=/reports
    snapshot "$OUT/cpu-after-$name.txt"
    [ "$kind" = auth ] && redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats-after-forward-auth-$r.txt"
    all_2xx "$name"
  done
done

if [ "$LOW_DURATION" != 0 ]; then
  for kind in plain auth; do
    name=forward-auth-$kind-c1
    if [ "$kind" = plain ]; then url=$PLAIN; else url=$SITE; fi
    phase "$name"
    run_wrk "$name" 1 "$LOW_DURATION" "$url" loadtest/wrk/get.lua TOKEN="$TOKEN" WRK_PATH=/reports
    all_2xx "$name"
  done
fi

finish_scenario
