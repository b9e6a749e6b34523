# syntax=docker/dockerfile:1
#
# The misql image: the one binary (it links only libc, libm and libgcc_s; no OpenSSL) on Debian
# slim, run as a non-root user, serving a file of syncs by default:
#
#   docker build -t misql .
#   docker run --rm -p 9187:9187 -v "$PWD/syncs.sql:/etc/misql/syncs.sql:ro" \
#     -e MONGODB_URI='mongodb://host.docker.internal:27017/?directConnection=true' misql
#
# Any other misql command line works too: `docker run --rm -it misql -e "SHOW DATABASES"`.
# The cache mounts below need BuildKit (the default builder since Docker 23).

# ---- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# The manifest declares benches and an integration-test target by path: cargo wants their files
# to exist even when it builds only the binary. Examples and scripts are not needed.
COPY src ./src
COPY benches ./benches
COPY tests ./tests
# The crates.io registry and target/ are cache mounts: after the first build a source change
# recompiles misql only. target/ is not part of the image, so the binary is copied out of it in
# the same step. PROFILE=dist (the default) links the whole program with LTO: a 107 MB binary,
# about 25 minutes and 9.5 GB of memory for the first build on 2 cores (8 for a source change);
# PROFILE=release builds in about 15 minutes with much less memory and gives a 165 MB binary
# (`docker build --build-arg PROFILE=release`). Either is stripped.
ARG PROFILE=dist
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --profile "$PROFILE" --locked --bin misql \
    && install -s -m 0755 "target/$PROFILE/misql" /usr/local/bin/misql

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to MongoDB, S3 and HTTPS catalogs. curl: for health checks only
# (compose's healthcheck runs `curl -f http://127.0.0.1:9187/readyz`); drop it if nothing in
# the container needs it (Kubernetes probes are made by the kubelet).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 misql \
    && useradd --system --uid 10001 --gid misql --home-dir /var/lib/misql --shell /usr/sbin/nologin misql \
    && mkdir -p /etc/misql /var/lib/misql/warehouse \
    && chown -R misql:misql /var/lib/misql
COPY --from=build /usr/local/bin/misql /usr/local/bin/misql

# The embedded Iceberg catalog `iceberg` (if a sync uses it) lives in the warehouse: mount a
# volume on /var/lib/misql to keep it. Syncs into a REST catalog keep nothing here.
ENV MISQL_WAREHOUSE=/var/lib/misql/warehouse
WORKDIR /var/lib/misql
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001

# /metrics, /healthz and /readyz (with the default command below).
EXPOSE 9187
# misql (PID 1 here) stops every sync at a batch boundary on SIGTERM, committing what it read,
# within --shutdown-timeout (default 10s): give the container a longer stop timeout than that
# (docker stop -t, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["misql"]
CMD ["-f", "/etc/misql/syncs.sql", "--http", "0.0.0.0:9187"]
