#!/usr/bin/env bash
# A rolling restart under load, longer than the CI run of the same test
# (tests/api/rolling_restart.rs, a_rolling_restart_behind_nginx_loses_no_request_and_no_session):
# two sessiond processes on one redis-server behind nginx with the shipped configuration
# (deploy/nginx/), TASKS client tasks validating, logging in and logging out through nginx,
# while each instance in turn is sent SIGTERM, drains, exits, is started again on its port and
# is waited for until nginx sends it traffic again; ROUNDS times over. The run fails on any
# client error, on any session lost (logged in, never logged out, no longer valid) and on any
# logged-out session valid again.
#
#   scripts/rolling-restart.sh              # ROUNDS=5 TASKS=12: 10 restarts, about 2 minutes
#
# Knobs: ROUNDS (5), TASKS (12), OUT (loadtest/results), SKIP_BUILD (0), CARGO_TARGET_DIR
# (target), SESSIOND_BIN (default: the release build under CARGO_TARGET_DIR). Needs nginx and
# redis-server (./test installs both).
# Output: the figures (requests, errors, p99 and max latency of the whole run and of each
# restart's window from SIGTERM until the instance is back in rotation) on standard error and
# in OUT/rolling-restart.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
TASKS=${TASKS:-12}
OUT=${OUT:-loadtest/results}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
SESSIOND_BIN=${SESSIOND_BIN:-$TARGET_DIR/release/sessiond}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --locked --release --bin sessiond
  cargo test --locked --test api --no-run
fi
[ -x "$SESSIOND_BIN" ] || { echo "no sessiond binary at $SESSIOND_BIN" >&2; exit 1; }
mkdir -p "$OUT"
SESSIOND_BIN=$(realpath "$SESSIOND_BIN") ROLLING_RESTART_ROUNDS=$ROUNDS ROLLING_RESTART_TASKS=$TASKS RUST_BACKTRACE=0 \
  cargo test --locked --test api rolling_restart::a_rolling_restart -- --nocapture 2>&1 |
  grep -v '^\s*Compiling\|^\s*Finished\|^\s*Running' | tee "$OUT/rolling-restart.txt"
grep -q 'test result: ok' "$OUT/rolling-restart.txt"
