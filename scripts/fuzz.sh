#!/usr/bin/env bash
# The fuzz harnesses (tests/fuzz.rs), each with FUZZ_CASES inputs (default 100000) instead of
# the quick run of every `cargo test`: the session token, Cookie header, client address,
# User-Agent labeller, configuration and JSON request bodies (through the HTTP edge).
#
#   scripts/fuzz.sh                       # every target, FUZZ_CASES=100000
#   FUZZ_CASES=1000000 scripts/fuzz.sh token cookie
#   FUZZ_SEED=42 scripts/fuzz.sh json     # replay a reported run
#
# Prints, per target, the inputs run, the panics and failed checks (a failure stops that target
# and prints its minimal input and seed) and the wall time; exits non-zero if any target failed.
# Every harness of a target gets FUZZ_CASES inputs (the JSON bodies are HTTP requests to a
# running instance: that target takes the longest).
set -euo pipefail
cd "$(dirname "$0")/.."

export FUZZ_CASES="${FUZZ_CASES:-100000}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token cookie client_ip device config json)

cargo test --test fuzz --no-run --quiet
failed=0
for target in "${targets[@]}"; do
    log="$(mktemp)"
    start=$(date +%s.%N)
    status=0
    cargo test --test fuzz --quiet "${target}::" -- --nocapture --test-threads 1 >"$log" 2>&1 || status=$?
    end=$(date +%s.%N)
    # (libtest prints "test <name> ... " on the line the harness's figures follow.)
    grep -oE '(fuzz|corpus) [a-z_ ]+: .*' "$log" | sed 's/^/  /' || true
    if [ "$status" -ne 0 ]; then
        failed=1
        grep -E 'panicked at|FAILED|minimal input' "$log" | sed 's/^/  /' || true
    fi
    printf '%-10s %s, wall %s s\n' "$target" "$([ "$status" -eq 0 ] && echo passed || echo FAILED)" \
        "$(awk "BEGIN { printf \"%.1f\", $end - $start }")"
    rm -f "$log"
done
exit "$failed"
