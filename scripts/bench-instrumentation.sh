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
#
# Knobs: DURATION (15), CONNECTIONS (64), THREADS (2, wrk's), ROUNDS (3), OUT (loadtest/results),
# SKIP_BUILD (0), and the binary paths of scripts/bench/lib.sh (CARGO_TARGET_DIR, SESSIOND_BIN;
# the build without instrumentation goes to target/bench-no-instrumentation; with SKIP_BUILD=1,
# SESSIOND_BARE_BIN names a binary built with --features bench-no-instrumentation instead).
# Output (OUT): instrumentation.txt (the table), instrumentation-<variant>.{txt,json}.
set -euo pipefail
. "$(dirname "$0")/bench/lib.sh"
defaults DURATION=15 CONNECTIONS=64 THREADS=2 ROUNDS=3 OUT=loadtest/results
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WRK_THREADS=$THREADS
bench_traps
require_tools wrk redis-server redis-cli curl

echo "==> building both variants"
ensure_built sessiond
bare=${SESSIOND_BARE_BIN:-target/bench-no-instrumentation/release/sessiond}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --locked --bin sessiond -q --features bench-no-instrumentation --target-dir target/bench-no-instrumentation
fi
[ -x "$bare" ] || die "$bare is missing (build it, or unset SKIP_BUILD)"
instrumented=$SESSIOND_BIN

read -r redis_port <<<"$(free_ports 1)"
start_redis "$redis_port"

run_variant() { # name binary -> $OUT/instrumentation-<name>.result: "rps p50_ms p99_ms cpu_us_per_request"
  local name=$1 SESSIOND_BIN=$2 port admin pid token before after user="bench$RANDOM$RANDOM"
  read -r port admin <<<"$(free_ports 2)"
  start_sessiond "instrumentation-$name-sessiond" "$port" "$admin" "$redis_port"
  pid=$LAST_PID
  register "http://127.0.0.1:$port" "$user"
  token=$(login "http://127.0.0.1:$port" "$user" | json_field token)
  run_wrk "instrumentation-warmup-$name" "$CONNECTIONS" 2 "http://127.0.0.1:$port" loadtest/wrk/profile.lua TOKEN="$token" >/dev/null
  before=$(cpu_ticks "$pid")
  run_wrk "instrumentation-$name" "$CONNECTIONS" "$DURATION" "http://127.0.0.1:$port" loadtest/wrk/profile.lua TOKEN="$token" >/dev/null
  after=$(cpu_ticks "$pid")
  stop_pid "$pid"
  python3 - "$OUT/instrumentation-$name.json" "$((after - before))" "$(getconf CLK_TCK)" >"$OUT/instrumentation-$name.result" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
assert not d["errors"]["status"], f"non-2xx responses: {d['errors']['status']}"
l = d["latency_ms"]
print(f"{d['rps']:.0f} {l['p50']:.3f} {l['p99']:.3f} {ticks / hz / d['requests'] * 1e6:.2f}")
PY
}

printf '%-6s %-14s %10s %9s %9s %11s\n' round variant req/s p50_ms p99_ms cpu_us/req | tee "$OUT/instrumentation.txt"
for round in $(seq 1 "$ROUNDS"); do
  order="instrumented bare"; [ $((round % 2)) = 0 ] && order="bare instrumented"
  for variant in $order; do
    bin=$instrumented; [ "$variant" = bare ] && bin=$bare
    run_variant "$variant" "$bin"
    read -r rps p50 p99 cpu <"$OUT/instrumentation-$variant.result"
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
