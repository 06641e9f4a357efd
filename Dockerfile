# syntax=docker/dockerfile:1
#
# The Troupe image: `troupe serve` as user 65532, built from this checkout.
#
#   docker build -t registry.example/troupe:0.1.0 .
#
# tests/image.rs reads this file (it needs no Docker engine): the user, what the final stage takes
# from the build stage, the shared libraries and CA certificates the binary needs, and a run of
# `troupe serve` with this file's command and nothing but its environment.

# ---- build --------------------------------------------------------------------------------------
# The official Rust image on Debian 12 (bookworm), at the toolchain the tests run with (Cargo.toml's
# rust-version, 1.89, is the oldest that builds it: edition 2024). The final stage is the same
# Debian release, so the binary runs against the library versions it was linked with.
FROM docker.io/library/rust:1.95.0-bookworm AS build
# git2 links the system's OpenSSL (HTTPS remotes; libssh2's crypto too) and zlib, found by
# pkg-config; libgit2 and libssh2 are compiled by their crates and linked statically. The Rust
# image ships these packages already: naming them keeps the build from depending on that.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# What `cargo build` reads: the manifest names the benches, so they are needed too.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
COPY src src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --bin troupe

# ---- image --------------------------------------------------------------------------------------
# debian:bookworm-slim rather than gcr.io/distroless/cc-debian12. `ldd troupe` lists libssl.so.3
# and libcrypto.so.3 (package libssl3), libz.so.1 (zlib1g), libgcc_s.so.1 (libgcc-s1) and glibc
# (libc6). Slim ships zlib1g, libgcc-s1 and libc6, and apt installs libssl3 and ca-certificates
# from the same release, so every file the binary needs comes from a Debian package that dpkg
# (and an image scanner) knows about. Distroless cc-debian12 has no zlib: libz.so.1 would have to
# be copied by hand from the build stage, invisible to its package list. What slim costs is size
# and a shell and apt in the image; deploy/deployment.yaml runs it with a read-only root
# filesystem, as this user, with no capabilities.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 troupe \
    && useradd --uid 65532 --gid 65532 --home-dir /home/troupe --create-home \
        --shell /usr/sbin/nologin troupe \
    && mkdir -p /var/lib/troupe \
    && chown 65532:65532 /var/lib/troupe
COPY --from=build /build/target/release/troupe /usr/local/bin/troupe
# HOME: libgit2 reads SSH host keys from $HOME/.ssh/known_hosts, and finds $HOME in the
# environment only (not in /etc/passwd); for an ssh:// source, mount a known_hosts file at
# /home/troupe/.ssh/known_hosts (and the key with --git-ssh-key-file). SSL_CERT_FILE: the CA
# bundle ca-certificates builds, which OpenSSL checks HTTPS remotes against.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/troupe \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# Rooms, operations and (local runtime) room logs: keep it on a volume so a new container adopts
# the rooms of the old one.
VOLUME ["/var/lib/troupe"]
# The rooms API, the management API, the dashboard, /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["troupe"]
# The repository (or directory) of scheduler YAML is mounted at /repo/fleets, as in
# deploy/deployment.yaml, which also passes --runtime=kubernetes and the cluster's settings.
CMD ["serve", "/repo/fleets", "--state-dir=/var/lib/troupe", "--listen=0.0.0.0:8080"]
