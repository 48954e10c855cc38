#!/usr/bin/env bash
# Access tokens and introspection against session validation, in one run.
#
# What: requests per second and latency of (1) session validation (GET /v1/profile with a
# bearer token: the cached path every protected route takes), (2) minting an access token
# (POST /v1/auth/token: the session read from Redis itself, then an Ed25519 signature),
# (3) introspection of a session token (POST /v1/introspect, form body, backend API key:
# the key's hash compared, then the cached validation) and (4) introspection of an access
# token (signature check, then the owner's live sessions and record read from Redis); each
# as a ratio of (1).
#
# How: a throwaway redis-server and sessiond (release build; the per-address limits off, the
# per-key backend limit off: all load comes from one address and one key) on free 127.0.0.1
# ports, one user logged in, one access token minted; a WARMUP-second wrk run, then DURATION
# seconds of CONNECTIONS connections for each of the four, one after the other.
#
# Knobs: DURATION (15), CONNECTIONS (64), WRK_THREADS (2), WARMUP (3), and those of
# scripts/bench/lib.sh (SKIP_BUILD, BENCH_OUT, CARGO_TARGET_DIR, SESSIOND_BIN).
#
# Output (BENCH_OUT, default loadtest/results/bench-tokens): tokens-{validate,mint,
# introspect-session,introspect-jwt}.{json,txt}, tokens.md (the table).
#
#   scripts/bench/tokens.sh
#   DURATION=30 SKIP_BUILD=1 scripts/bench/tokens.sh
set -Eeuo pipefail
. "$(dirname "$0")/lib.sh"
bench_init tokens wrk

ensure_built sessiond
KEY_LINES=$("$SESSIOND_BIN" admin api-key new bench)
API_KEY=$(sed -n 1p <<<"$KEY_LINES")
KEY_ENTRY=$(sed -n 2p <<<"$KEY_LINES")
phase start-tokens
start_stack SESSIOND_BACKEND_KEYS="$KEY_ENTRY" SESSIOND_RATE_LIMIT_BACKEND=0
JWT=$(curl -fsS -X POST -H "Authorization: Bearer $TOKEN" "$API/v1/auth/token" | json_field access_token)

phase warmup
run_wrk tokens-warmup "$CONNECTIONS" "$WARMUP" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"

phase tokens
run_wrk tokens-validate "$CONNECTIONS" "$DURATION" "$API" loadtest/wrk/profile.lua TOKEN="$TOKEN"
run_wrk tokens-mint "$CONNECTIONS" "$DURATION" "$API" loadtest/wrk/post.lua TOKEN="$TOKEN" WRK_PATH=/v1/auth/token
run_wrk tokens-introspect-session "$CONNECTIONS" "$DURATION" "$API" loadtest/wrk/post.lua \
  API_KEY="$API_KEY" WRK_PATH=/v1/introspect BODY="token=$TOKEN"
run_wrk tokens-introspect-jwt "$CONNECTIONS" "$DURATION" "$API" loadtest/wrk/post.lua \
  API_KEY="$API_KEY" WRK_PATH=/v1/introspect BODY="token=$JWT"
cleanup

"$PY" - "$OUT" <<'PY' | tee "$OUT/tokens.md" | tee -a "$LOG"
import json, sys
out = sys.argv[1]
rows = [("validate", "session validation, `GET /v1/profile`"),
        ("mint", "mint an access token, `POST /v1/auth/token`"),
        ("introspect-session", "introspect a session token"),
        ("introspect-jwt", "introspect an access token")]
base = json.load(open(f"{out}/tokens-validate.json"))["rps"]
print("| operation | req/s | × validation | p50 ms | p99 ms | non-2xx |")
print("|---|---:|---:|---:|---:|---:|")
for name, label in rows:
    d = json.load(open(f"{out}/tokens-{name}.json"))
    bad = sum(n for s, n in (d.get("statuses") or {}).items() if not str(s).startswith("2"))
    bad += sum(d["errors"].values())
    print(f"| {label} | {d['rps']:.0f} | {d['rps'] / base:.2f} | {d['latency_ms']['p50']:.2f} | "
          f"{d['latency_ms']['p99']:.2f} | {bad} |")
PY
say "raw results in $OUT"
