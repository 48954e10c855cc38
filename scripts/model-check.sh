#!/usr/bin/env bash
# The model check of the stores (tests/api/model_check.rs), run longer than in CI.
#
# Random sequences of register, login (with the per-user cap), validate, refresh, logout,
# revoke one, revoke all, list, disable, delete and clock advances run against the in-memory
# store and a real redis-server, every step compared with a plain model; a failure is shrunk
# to a minimal sequence and printed with the seed that reproduces it.
#
#   scripts/model-check.sh                  # PROPTEST_CASES=20000
#   PROPTEST_CASES=50000 MODEL_CHECK_MAX_OPS=40 scripts/model-check.sh
#   MODEL_CHECK_SEED=1234 scripts/model-check.sh   # replay a reported run
#
# Other knobs (see the test's module docs): MODEL_CHECK_LANES (cases at once, default 8),
# MODEL_CHECK_TICK_MS (the clock grid, default 10). Needs redis-server on PATH (or
# REDIS_SERVER_BIN). Prints the figures line of the run and its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
command -v "${REDIS_SERVER_BIN:-redis-server}" >/dev/null || {
    echo "redis-server not found: apt-get install -y redis-server (or set REDIS_SERVER_BIN)" >&2
    exit 1
}

cargo test --test api --no-run --quiet
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$(date +%s.%N)
status=0
cargo test --test api --quiet model_check::stores_agree_with_the_model_on_random_sequences -- --exact --nocapture \
    >"$log" 2>&1 || status=$?
end=$(date +%s.%N)

grep -E '^model check: ' "$log" || true
if [ "$status" -ne 0 ]; then
    # The failure: the minimal sequence, the divergence and the steps leading to it.
    sed -n '/panicked at/,/^note: /p' "$log"
    echo "FAILED after $(awk "BEGIN { printf \"%.1f\", $end - $start }") s (exit $status)"
    exit "$status"
fi
echo "passed: $PROPTEST_CASES cases, wall time $(awk "BEGIN { printf \"%.1f\", $end - $start }") s"
