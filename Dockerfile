# Builds a small image with the misql binary.
#   docker build -t misql .
#   docker run --rm -it -e MONGODB_URI=mongodb://host.docker.internal:27017 misql
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin misql

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/misql /usr/local/bin/misql
COPY sql /usr/share/misql/sql
WORKDIR /work
ENTRYPOINT ["misql"]
