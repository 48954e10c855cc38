#!/usr/bin/env bash
# What instrumentation costs: validation throughput and latency of the normal release build
# against one compiled without the per-request span/metrics layer and the per-store-call
# instrumentation (feature `bench-no-instrumentation`), under the same wrk load, alternating
# builds ROUNDS times in one run (the order flips every round, so a drift in the machine's load
# weighs on both alike). Besides throughput it reports sessiond's CPU time per request
# (utime + stime from /proc over the measured run): on a shared 2-CPU machine throughput also
# moves with how the scheduler splits the CPUs between wrk and the server, CPU per request much
# less. Everything runs on loopback; processes are cleaned up.
#
#   scripts/bench-instrumentation.sh            # DURATION=15 CONNECTIONS=64 ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-loadtest/results}
mkdir -p "$OUT"
for tool in wrk redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk redis-server redis-tools curl" >&2; exit 1; }
done

echo "==> building both variants"
cargo build --release --locked --bin sessiond -q
cargo build --release --locked --bin sessiond -q --features bench-no-instrumentation --target-dir target/bench-no-instrumentation
instrumented=${CARGO_TARGET_DIR:-target}/release/sessiond
bare=target/bench-no-instrumentation/release/sessiond

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

redis_port=$(free_port)
redis-server --port "$redis_port" --save "" --appendonly no --daemonize no --loglevel warning >/dev/null &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done

lua=$(mktemp --suffix=.lua)
cpu_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
run_variant() { # name binary -> prints "rps p50_ms p99_ms cpu_us_per_request"
  local name=$1 bin=$2 port admin pid token
  port=$(free_port); admin=$(free_port)
  SESSIOND_REDIS_URL=redis://127.0.0.1:$redis_port SESSIOND_LISTEN=127.0.0.1:$port \
    SESSIOND_ADMIN_LISTEN=127.0.0.1:$admin SESSIOND_COOKIE_SECURE=false RUST_LOG=warn \
    SESSIOND_RATE_LIMIT_IP=0 SESSIOND_RATE_LIMIT_LOGIN_IP=0 SESSIOND_RATE_LIMIT_LOGIN_ACCOUNT=0 \
    SESSIOND_RATE_LIMIT_REGISTER_IP=0 "$bin" 2>/dev/null &
  pid=$!; pids+=($pid)
  until curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "sessiond ($bin) exited during start-up" >&2; exit 1; }
    sleep 0.05
  done
  local user="bench$RANDOM$RANDOM"
  curl -sf -X POST "http://127.0.0.1:$port/v1/auth/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"correct horse battery\"}" >/dev/null
  token=$(curl -sf -X POST "http://127.0.0.1:$port/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"password\":\"correct horse battery\"}" | sed 's/.*"token":"\([^"]*\)".*/\1/')
  printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" > "$lua"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -s "$lua" "http://127.0.0.1:$port/v1/profile" >/dev/null # warm-up
  local before after
  before=$(cpu_ticks "$pid")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$lua" "http://127.0.0.1:$port/v1/profile" \
    > "$OUT/instrumentation-$name.txt"
  after=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$OUT/instrumentation-$name.txt" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
def ms(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)" % label, text, re.M)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
assert not errors, "non-2xx responses: " + errors.group(1)
requests = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{rps:.0f} {ms('50%'):.3f} {ms('99%'):.3f} {ticks / hz / requests * 1e6:.2f}")
PY
}

printf '%-6s %-14s %10s %9s %9s %11s\n' round variant req/s p50_ms p99_ms cpu_us/req | tee "$OUT/instrumentation.txt"
for round in $(seq 1 "$ROUNDS"); do
  order="instrumented bare"; [ $((round % 2)) = 0 ] && order="bare instrumented"
  for variant in $order; do
    bin=$instrumented; [ "$variant" = bare ] && bin=$bare
    read -r rps p50 p99 cpu < <(run_variant "$variant" "$bin")
    printf '%-6s %-14s %10s %9s %9s %11s\n' "$round" "$variant" "$rps" "$p50" "$p99" "$cpu" | tee -a "$OUT/instrumentation.txt"
  done
done
python3 - "$OUT/instrumentation.txt" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
def column(n):
    return {v: [float(r[n]) for r in rows if r[1] == v] for v in ("instrumented", "bare")}
rps, cpu = column(2), column(5)
inst, bare = statistics.median(rps["instrumented"]), statistics.median(rps["bare"])
pairs = [100 * (1 - i / b) for i, b in zip(rps["instrumented"], rps["bare"])]
print(f"median req/s: instrumented {inst:.0f}, bare {bare:.0f}; throughput overhead {100 * (1 - inst / bare):.1f} %"
      f" (median of per-round pairs {statistics.median(pairs):.1f} %)")
ci, cb = statistics.median(cpu["instrumented"]), statistics.median(cpu["bare"])
cpairs = [100 * (i / b - 1) for i, b in zip(cpu["instrumented"], cpu["bare"])]
print(f"median CPU per request: instrumented {ci:.2f} us, bare {cb:.2f} us; CPU overhead {100 * (ci / cb - 1):.1f} %"
      f" (median of per-round pairs {statistics.median(cpairs):.1f} %)")
PY
