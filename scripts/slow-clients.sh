#!/usr/bin/env bash
# Slow and many clients at full size, with the server's default bounds: the CI run of the same
# test (tests/api/slow_clients.rs,
# slow_and_idle_clients_are_cut_at_their_bounds_while_others_are_served) with SLOW connections
# that send their request headers one byte a second, IDLE keep-alive connections that make one
# request and then say nothing, and BODIES logins whose body trickles one byte a second after
# the headers, all at once against one sessiond on a real redis-server, each reconnecting as
# soon as it is cut, for HOLD seconds; meanwhile legitimate validations are timed. Figures: the
# server's open file descriptors (/proc/PID/fd) and resident memory (VmRSS) before, at most
# under load and after; p50/p99/max of legitimate requests unloaded and loaded; for each kind,
# how long its connections lived until the server cut them, and what it answered.
#
#   scripts/slow-clients.sh      # SLOW=1000 IDLE=1000 BODIES=100 HOLD=85, defaults 5s/75s/10s
#
# Knobs: SLOW, IDLE, BODIES, HOLD (seconds the load is held: longer than the keep-alive
# timeout, so that the idle connections are seen cut), HEADER_TIMEOUT (5s), KEEPALIVE_TIMEOUT
# (75s), REQUEST_TIMEOUT (10s), OUT (loadtest/results), SKIP_BUILD (0), CARGO_TARGET_DIR
# (target), SESSIOND_BIN (default: the release build). The test process holds one socket per
# connection too: the open-files limit is raised to its hard limit here, and the test says so
# if it is still too low.
# Output: standard error and OUT/slow-clients.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SLOW=${SLOW:-1000}
IDLE=${IDLE:-1000}
BODIES=${BODIES:-100}
HOLD=${HOLD:-85}
OUT=${OUT:-loadtest/results}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
SESSIOND_BIN=${SESSIOND_BIN:-$TARGET_DIR/release/sessiond}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --locked --release --bin sessiond
  cargo test --locked --test api --no-run
fi
[ -x "$SESSIOND_BIN" ] || { echo "no sessiond binary at $SESSIOND_BIN" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" || true
echo "open-files limit (soft) for the test and the server: $(ulimit -n)" >&2
mkdir -p "$OUT"
SESSIOND_BIN=$(realpath "$SESSIOND_BIN") SLOW_CLIENTS_SLOW=$SLOW SLOW_CLIENTS_IDLE=$IDLE SLOW_CLIENTS_BODIES=$BODIES \
  SLOW_CLIENTS_SECONDS=${HOLD}s SLOW_CLIENTS_HEADER_TIMEOUT=${HEADER_TIMEOUT:-5s} \
  SLOW_CLIENTS_KEEPALIVE_TIMEOUT=${KEEPALIVE_TIMEOUT:-75s} SLOW_CLIENTS_REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-10s} \
  RUST_BACKTRACE=0 cargo test --locked --test api slow_clients::slow_and_idle -- --nocapture 2>&1 |
  grep -v '^\s*Compiling\|^\s*Finished\|^\s*Running' | tee "$OUT/slow-clients.txt"
grep -q 'test result: ok' "$OUT/slow-clients.txt"
