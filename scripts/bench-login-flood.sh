#!/usr/bin/env bash
# Validation latency with and without a concurrent login flood.
#
# A k6 constant-arrival-rate load of GET /v1/profile (bearer) measures p50/p95/p99:
#   1. alone;
#   2. during a login flood of FLOOD_RATE wrong-password logins per second (open loop in
#      effect, real argon2id cost, per-address limiters off so the flood reaches the hashing
#      pool): by default ~20x what the hashing threads can verify, so the pool is saturated all
#      along and its admission control is what is being measured. The target: p99 here <= 2x
#      p99 alone. The flood is sent by wrk (FLOOD_WRK_CONNECTIONS connections, each waiting
#      between requests so that together they offer FLOOD_RATE): wrk costs ~50 us of CPU per
#      request, so on a machine shared with the generators the figure is sessiond's, not the
#      attacker's tooling's;
#   3. the same flood sent by k6 (constant-arrival-rate) instead, which costs ~7x as much CPU per
#      request on the same two CPUs: reported beside step 2 to show how much of a co-located
#      flood's effect is its generator (FLOOD_K6=0 skips it);
#   4. during a saturating flood: wrk sends wrong-password logins as fast as FLOOD_CONNECTIONS
#      connections allow (closed loop). Nearly all are refused without hashing (503), so this
#      measures the cost of answering ~30k refusals/s on the same two CPUs — an HTTP-level
#      flood that per-address limits and the network edge must stop, reported for
#      completeness (FLOOD_CONNECTIONS=0 skips it).
#
#   scripts/bench-login-flood.sh        # RATE=1000 DURATION=20 FLOOD_RATE=1000 ROUNDS=5 FLOOD_CONNECTIONS=64
#
# Steps 1-3 alternate ROUNDS times and the medians are compared. The CPU time stolen by the
# hypervisor (the steal column of /proc/stat) is read around every step: while the host runs
# other guests on our CPUs, latency measures the host, not sessiond, so a round in which step 1
# or 2 lost more than STEAL_MAX ticks (default: 1 % of the step's CPU time) is run again, up to
# MAX_TRIES times; the summary says how many rounds were run again and keeps the last try.
# sessiond's resident memory is sampled every 0.5 s through every step (flood-rss.txt); the
# maximum during the flooded steps is printed and written to flood-rss.json.
#
# Knobs: RATE, DURATION, FLOOD_RATE, ROUNDS, FLOOD_CONNECTIONS, FLOOD_WRK_CONNECTIONS (200),
# FLOOD_K6 (1), STEAL_MAX, MAX_TRIES (4), HASH_CAPACITY, OUT (loadtest/results), SKIP_BUILD (0),
# and the binary paths of scripts/bench/lib.sh (CARGO_TARGET_DIR, SESSIOND_BIN).
# Output (OUT): flood-*.json / .steal / .txt, flood-metrics*.txt, flood-rss.{txt,json}.
set -euo pipefail
. "$(dirname "$0")/bench/lib.sh"
defaults RATE=1000 DURATION=20 FLOOD_RATE=1000 ROUNDS=5 FLOOD_CONNECTIONS=64 FLOOD_WRK_CONNECTIONS=200 FLOOD_K6=1 \
  MAX_TRIES=4 OUT=loadtest/results
CLK_TCK=$(getconf CLK_TCK)
STEAL_MAX=${STEAL_MAX:-$(( $(nproc) * DURATION * CLK_TCK / 100 ))}
# Logins that wait for a hash instead of for their next turn: the hashing pool's capacity
# during a guessing flood, threads + the queue's share (defaults: CPUs - 1, 32, 2 %).
HASH_THREADS=$(hash_threads)
HASH_CAPACITY=${HASH_CAPACITY:-$(( HASH_THREADS + (32 * ${SESSIOND_HASH_FLOOD_SHARE:-2} + 99) / 100 ))}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
bench_traps
require_tools wrk k6 redis-server redis-cli curl
ensure_built sessiond

read -r redis_port port admin <<<"$(free_ports 3)"
start_redis "$redis_port"
start_sessiond flood-sessiond "$port" "$admin" "$redis_port"
SESSIOND_PID=$LAST_PID
rm -f "$OUT/flood-rss.txt"
echo flood-start >"$OUT/.phase"
sample_rss "$SESSIOND_PID" "$OUT/flood-rss.txt"
base=http://127.0.0.1:$port
register "$base" flood-reader
register "$base" flood-target
token=$(login "$base" flood-reader | json_field token)

script=$(mktemp --suffix=.js)
cat > "$script" <<JS
import http from 'k6/http';
import { check } from 'k6';
export const options = {
  scenarios: { validate: { executor: 'constant-arrival-rate', rate: ${RATE}, timeUnit: '1s',
    duration: '${DURATION}s', preAllocatedVUs: 50, maxVUs: 200 } },
  summaryTrendStats: ['p(50)', 'p(95)', 'p(99)', 'max'],
};
export default function () {
  const r = http.get('${base}/v1/profile', { headers: { Authorization: 'Bearer ${token}' } });
  check(r, { 'profile 200': (res) => res.status === 200 });
}
export function handleSummary(data) {
  const d = data.metrics.http_req_duration.values;
  const failed = data.metrics.http_req_failed.values.rate;
  return { stdout: JSON.stringify({ p50: d['p(50)'], p95: d['p(95)'], p99: d['p(99)'], max: d.max, failed }) + '\n' };
}
JS
flood_js=$(mktemp --suffix=.js)
cat > "$flood_js" <<JS
import http from 'k6/http';
export const options = {
  scenarios: { flood: { executor: 'constant-arrival-rate', rate: ${FLOOD_RATE}, timeUnit: '1s',
    duration: '$((DURATION + 4))s', preAllocatedVUs: 100, maxVUs: 400 } },
  summaryTrendStats: ['p(50)', 'p(99)'],
};
const body = JSON.stringify({ username: 'flood-target', password: 'wrong password, again' });
export default function () {
  http.post('${base}/v1/auth/login', body, { headers: { 'Content-Type': 'application/json' } });
}
JS
flood_lua=$(mktemp --suffix=.lua)
cat > "$flood_lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"flood-target","password":"wrong password, again"}'
LUA

# The rate-limited flood: each connection waits between requests. Up to the hashing pool's
# capacity (threads + queue) of them wait for a hash instead, so the wait is computed for the
# connections that do not: (connections - capacity) / rate.
flood_rate_lua=$(mktemp --suffix=.lua)
cat > "$flood_rate_lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"flood-target","password":"wrong password, again"}'
function delay() return $(( (FLOOD_WRK_CONNECTIONS - HASH_CAPACITY) * 1000 / FLOOD_RATE )) end
LUA

steal() { awk '/^cpu /{print $9}' /proc/stat; }
step() { # name, then the command that measures; the steal of the step goes to LAST_STEAL
  local name=$1; shift
  local s0; s0=$(steal)
  "$@" 2>/dev/null | tail -1 | tee "$OUT/flood-$name.json"
  LAST_STEAL=$(( $(steal) - s0 ))
  echo "$LAST_STEAL" >"$OUT/flood-$name.steal"
  echo "    (steal: $LAST_STEAL ticks)"
}

metrics() { metrics_of "$admin" | grep -E '^sessiond_(logins_total|rate_limited_total)' || true; }

# Alone and flooded alternate ROUNDS times; the medians are compared (single p99s of a 20 s
# run swing by tens of percent on a small shared machine).
metrics > "$OUT/flood-metrics-before.txt"
retried=0
for round in $(seq 1 "$ROUNDS"); do
 for try in $(seq 1 "$MAX_TRIES"); do
  echo "==> round $round/$ROUNDS (try $try): 1. validations alone: ${RATE}/s for ${DURATION}s"
  echo flood-alone >"$OUT/.phase"
  step "unloaded-$round" k6 run -q --no-color "$script"
  alone_steal=$LAST_STEAL
  echo "==> round $round/$ROUNDS (try $try): 2. validations during a login flood (wrk, ${FLOOD_RATE} wrong-password logins/s offered)"
  echo flood-wrk >"$OUT/.phase"
  wrk -t1 -c"$FLOOD_WRK_CONNECTIONS" -d"$((DURATION + 4))s" -s "$flood_rate_lua" "$base/v1/auth/login" \
    > "$OUT/flood-wrk-$round.txt" 2>&1 &
  flood=$!; track_pid "$flood"
  sleep 2
  step "loaded-$round" k6 run -q --no-color "$script"
  flood_steal=$LAST_STEAL
  wait "$flood" || true
  grep -E "Requests/sec" "$OUT/flood-wrk-$round.txt" | sed 's/^/    flood /' || true
  if [ "$FLOOD_K6" = 1 ]; then
    echo "==> round $round/$ROUNDS (try $try): 3. validations during the same flood sent by k6"
    echo flood-k6 >"$OUT/.phase"
    k6 run -q --no-color "$flood_js" > "$OUT/flood-k6-$round.txt" 2>&1 &
    flood=$!; track_pid "$flood"
    sleep 2
    step "loaded-k6-$round" k6 run -q --no-color "$script"
    wait "$flood" || true
  fi
  if [ "$alone_steal" -le "$STEAL_MAX" ] && [ "$flood_steal" -le "$STEAL_MAX" ]; then break; fi
  if [ "$try" -lt "$MAX_TRIES" ]; then
    echo "    round $round run again: the host stole $alone_steal / $flood_steal ticks (> $STEAL_MAX)"
    retried=$((retried + 1))
  fi
 done
done
echo "$retried" >"$OUT/flood-retried.txt"
metrics | tee "$OUT/flood-metrics.txt"

if [ "$FLOOD_CONNECTIONS" -gt 0 ]; then
  echo "==> 4. validations during a saturating flood (${FLOOD_CONNECTIONS} connections of wrong-password logins, closed loop)"
  echo flood-saturated >"$OUT/.phase"
  wrk -t2 -c"$FLOOD_CONNECTIONS" -d"$((DURATION + 4))s" -s "$flood_lua" "$base/v1/auth/login" > "$OUT/flood-wrk.txt" &
  flood=$!; track_pid "$flood"
  sleep 2
  step saturated k6 run -q --no-color "$script"
  wait "$flood" || true
  grep -E "Requests/sec" "$OUT/flood-wrk.txt" || true
fi

python3 - "$OUT" "$FLOOD_CONNECTIONS" "$ROUNDS" "$FLOOD_K6" <<'PY'
import json, os, re, statistics, sys
out, saturating, rounds, with_k6 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
def counts(path):
    c = {}
    for line in open(path):
        m = re.match(r'(\S+)\{(\w+)="(\w+)"\} (\S+)', line)
        if m: c[(m[1], m[3])] = float(m[4])
    return c
alone = [json.load(open(f"{out}/flood-unloaded-{r}.json")) for r in range(1, rounds + 1)]
flooded = [json.load(open(f"{out}/flood-loaded-{r}.json")) for r in range(1, rounds + 1)]
by_k6 = [json.load(open(f"{out}/flood-loaded-k6-{r}.json")) for r in range(1, rounds + 1)] if with_k6 else []
steal = lambda name: int(open(f"{out}/flood-{name}.steal").read())
for r, (x, y) in enumerate(zip(alone, flooded), 1):
    k = f"; {by_k6[r - 1]['p99']:.2f} ms flooded by k6 ({by_k6[r - 1]['p99'] / x['p99']:.2f}x)" if by_k6 else ""
    print(f"round {r}: p99 {x['p99']:.2f} ms alone, {y['p99']:.2f} ms flooded ({y['p99'] / x['p99']:.2f}x){k}; "
          f"steal {steal(f'unloaded-{r}')} / {steal(f'loaded-{r}')} ticks")
def wrk_rate(r):
    m = re.search(r"Requests/sec:\s+([\d.]+)", open(f"{out}/flood-wrk-{r}.txt").read())
    return float(m[1]) if m else 0.0
print(f"flood delivered by wrk: median {statistics.median(wrk_rate(r) for r in range(1, rounds + 1)):.0f} logins/s")
print(f"rounds run again because of steal: {open(f'{out}/flood-retried.txt').read().strip()}")
med = lambda runs, k: statistics.median(run[k] for run in runs)
a = {k: med(alone, k) for k in ("p50", "p99", "failed")}
b = {k: med(flooded, k) for k in ("p50", "p99", "failed")}
before, after = counts(f"{out}/flood-metrics-before.txt"), counts(f"{out}/flood-metrics.txt")
d = lambda k: after.get(k, 0) - before.get(k, 0)
print(f"login flood: {d(('sessiond_logins_total', 'invalid_credentials')):.0f} verified (wrong password), "
      f"{d(('sessiond_rate_limited_total', 'hash_pool')):.0f} refused by the full hashing pool")
print(f"median validation p99: {a['p99']:.2f} ms alone, {b['p99']:.2f} ms during the login flood "
      f"({b['p99'] / a['p99']:.2f}x; target <= 2x); p50 {a['p50']:.2f} -> {b['p50']:.2f} ms; "
      f"failed {a['failed']:.4f} -> {b['failed']:.4f}; median of the rounds' ratios "
      f"{statistics.median(y['p99'] / x['p99'] for x, y in zip(alone, flooded)):.2f}x")
if by_k6:
    c = {k: med(by_k6, k) for k in ("p50", "p99", "failed")}
    print(f"the same flood sent by k6: median validation p99 {c['p99']:.2f} ms ({c['p99'] / a['p99']:.2f}x); "
          f"median of the rounds' ratios {statistics.median(y['p99'] / x['p99'] for x, y in zip(alone, by_k6)):.2f}x")
if saturating and os.path.exists(f"{out}/flood-saturated.json"):
    c = json.load(open(f"{out}/flood-saturated.json"))
    print(f"validation p99 during the saturating flood: {c['p99']:.2f} ms ({c['p99'] / a['p99']:.2f}x); "
          f"p50 {c['p50']:.2f} ms; failed {c['failed']:.4f}")
rss = {}
for line in open(f"{out}/flood-rss.txt"):
    parts = line.split()
    if len(parts) == 3:
        rss.setdefault(parts[1], []).append(int(parts[2]) / 1024)
phases = {p: {"min": round(min(v), 1), "max": round(max(v), 1)} for p, v in rss.items()}
flooded = [v["max"] for p, v in phases.items() if p in ("flood-wrk", "flood-k6", "flood-saturated")]
json.dump({"max_mib": max(flooded) if flooded else None, "phases": phases}, open(f"{out}/flood-rss.json", "w"), indent=2)
print("sessiond RSS (MiB, max): " + ", ".join(f"{p} {v['max']:.1f}" for p, v in phases.items()))
PY
