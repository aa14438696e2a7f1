# queuegate: multi-stage build. The binary embeds its migrations and Lua scripts, so the
# runtime image holds nothing but the binary, CA certificates and a non-root user.

############################ build ############################
FROM rust:1.95-bookworm AS build
WORKDIR /app

# Dependency-caching layer: compile every dependency against stub sources, so a change to
# src/ does not recompile the crates.io graph. Stubs are made for every target path the
# manifest declares (plus the default ones) and removed again afterwards.
COPY Cargo.toml Cargo.lock ./
# $stubs is a list on purpose (word splitting).
# hadolint ignore=SC2086
RUN set -eux; \
    stubs="src/main.rs src/lib.rs $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\(.*\.rs\)".*/\1/p' Cargo.toml)"; \
    for f in $stubs; do mkdir -p "$(dirname "$f")"; echo '#![allow(warnings)] fn main() {}' > "$f"; done; \
    cargo build --release --locked --bin queuegate; \
    rm -f $stubs; \
    rm -rf target/release/.fingerprint/queuegate-* target/release/deps/queuegate-* \
           target/release/deps/libqueuegate-* target/release/queuegate target/release/queuegate.d

# The real sources (the .dockerignore keeps target/, .git and the ops files out).
COPY . .
RUN set -eux; \
    cargo build --release --locked --bin queuegate; \
    install -D -m 0755 target/release/queuegate /out/queuegate

############################ runtime ############################
FROM debian:bookworm-slim AS runtime
# ca-certificates tracks the distribution's current set; pinning it would only age it.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 queuegate; \
    useradd --system --uid 10001 --gid queuegate --home-dir /nonexistent --shell /usr/sbin/nologin queuegate

COPY --from=build /out/queuegate /usr/local/bin/queuegate

# In a container the gateway must listen on all interfaces; logs go out as JSON lines.
ENV LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# No curl in the image: bash's /dev/tcp sends one HTTP/1.1 request to /healthz and the
# status line must say 200. (The healthcheck assumes the default port 8080.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["queuegate"]
CMD ["serve"]
