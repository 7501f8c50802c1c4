# syntax=docker/dockerfile:1
#
# One image for the three services: `ccp-proxy` (the default command), `ccp-projector` and
# `ccp-admin`, plus `ccpctl`, the admin command line. docker-compose.yml builds it once as
# `claudecodeproxy:local`; alone:
#
#   docker build -t claudecodeproxy:local --build-arg CCP_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
#   docker run --rm claudecodeproxy:local ccp-admin gen-secrets
#   docker run --rm claudecodeproxy:local ccp-proxy --version
#
# The build context has no .git (.dockerignore), so `--version`, /health and the build_info
# metric name the commit given as CCP_GIT_COMMIT, else `unknown`.
#
# Settings come from CCP__SECTION__KEY variables (or `--config PATH` / CCP_CONFIG). The listen
# addresses default to 127.0.0.1, so a container must set CCP__PROXY__LISTEN=0.0.0.0:8080 (and
# CCP__ADMIN__LISTEN / CCP__PROJECTOR__LISTEN) to be reachable; docker-compose.yml does.
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

# ---------------------------------------------------------------- build
# Same Rust as rust-toolchain.toml and the same Debian (bookworm, glibc 2.36) as the runtime.
FROM rust:1.95.0-bookworm AS builder

# The image's toolchain is the one rust-toolchain.toml pins; naming it here keeps rustup from
# downloading the rustfmt and clippy components that file also lists (a build does not use them).
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never

WORKDIR /src
COPY . .

# The git commit of the sources (runtime/build.rs embeds it; unset: `unknown`).
ARG CCP_GIT_COMMIT=

# The registry and the target dir live in cache mounts: after the first build only the
# workspace's own crates are recompiled. The binaries are copied out of the mount, which is not
# part of the image.
RUN --mount=type=cache,id=ccp-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=ccp-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=ccp-target-release,target=/src/target,sharing=locked \
    cargo build --release --locked --bins -p ccp-proxy -p ccp-projector -p ccp-admin-api \
    && mkdir -p /out \
    && cp target/release/ccp-proxy target/release/ccp-projector target/release/ccp-admin target/release/ccpctl /out/

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to Anthropic and Bedrock. curl: container healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ccp \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/ccp --no-create-home \
        --shell /usr/sbin/nologin ccp \
    && mkdir -p /var/lib/ccp/spool \
    && chown -R 10001:10001 /var/lib/ccp \
    && chmod 0750 /var/lib/ccp/spool

COPY --from=builder /out/ccp-proxy /out/ccp-projector /out/ccp-admin /out/ccpctl /usr/local/bin/

# The proxy's durable event spool (used while NATS is unreachable); mount a volume here. A named
# volume mounted on an empty path inherits this directory's owner (ccp).
ENV CCP__PROXY__SPOOL_DIR=/var/lib/ccp/spool

USER 10001:10001
WORKDIR /var/lib/ccp

# proxy, admin API, projector (/health, /ready); 9090: the ops listener (/health, /ready,
# /metrics) when CCP__OPS__LISTEN=0.0.0.0:9090 is set (the Kubernetes manifests do).
EXPOSE 8080 8081 8082 9090

CMD ["ccp-proxy"]
