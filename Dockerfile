# syntax=docker/dockerfile:1
#
# sessiond container image.
#   docker build -t sessiond .
# Two stages: a Rust builder, then a slim Debian runtime running as a
# non-root user. The public API listens on 8080, the admin listener
# (/metrics, /healthz) on 9464.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /build

# 1. Dependencies only. Built against stub sources from the real manifest and
#    lockfile, so this layer is reused until Cargo.toml or Cargo.lock change.
#    Every target path the manifest names gets a stub file.
COPY Cargo.toml Cargo.lock ./
RUN set -eux; \
    mkdir -p src; \
    printf '//! Stub.\nfn main() {}\n' > src/main.rs; \
    printf '//! Stub.\n' > src/lib.rs; \
    for p in $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' Cargo.toml); do \
        mkdir -p "$(dirname "$p")"; \
        [ -f "$p" ] || printf '//! Stub.\nfn main() {}\n' > "$p"; \
    done; \
    cargo fetch --locked; \
    cargo build --release --locked --bin sessiond; \
    rm -rf target/release/.fingerprint/sessiond-* \
           target/release/deps/sessiond-* \
           target/release/deps/libsessiond-*; \
    find . -path ./target -prune -o -name '*.rs' -print -exec rm -f {} +

# 2. The real build. Touch the sources so that cargo never mistakes the stubs'
#    build results for up to date. SESSIOND_GIT_SHA ends up in the git_sha
#    label of sessiond_build_info:
#      docker compose build --build-arg SESSIOND_GIT_SHA=$(git rev-parse --short HEAD)
COPY . .
ARG SESSIOND_GIT_SHA=unknown
RUN set -eux; \
    find . -path ./target -prune -o -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --bin sessiond; \
    cp target/release/sessiond /usr/local/bin/sessiond

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates for TLS to Redis or the trace collector; curl for the
# health check.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 sessiond; \
    useradd --system --uid 10001 --gid sessiond --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sessiond

COPY --from=builder /usr/local/bin/sessiond /usr/local/bin/sessiond

ENV SESSIOND_LOG_FORMAT=json \
    SESSIOND_LISTEN=0.0.0.0:8080 \
    SESSIOND_ADMIN_LISTEN=0.0.0.0:9464

EXPOSE 8080 9464

USER 10001:10001

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:9464/healthz || exit 1

ENTRYPOINT ["/usr/local/bin/sessiond"]
