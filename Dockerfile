# syntax=docker/dockerfile:1
# limen: one image for every pipeline task (`limen train`, `limen validate`) and the service
# (`limen serve`). Build:  docker build -t limen .
# Air-gapped builders: run `cargo vendor vendor > .cargo/config.toml` first (see README, Deploy);
# the build then uses ./vendor and never reaches the network.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: source changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The workspace's other member (benches/floor, a benchmark server): only its manifest, so cargo
# can read the workspace; the image builds limen alone.
COPY benches/floor/Cargo.toml benches/floor/
# Vendored crates and the .cargo/config.toml that points at them, when the context has them
# (the bracket globs match nothing otherwise, which BuildKit's COPY accepts).
COPY .carg[o] .cargo/
COPY vendo[r] vendor/
RUN mkdir -p src benches/floor/src \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/floor/src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/predict.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src/ src/
# The Iris table is built into the binary too (`include_bytes!`): the default data works
# without the repository (a downloaded binary, `limen quickstart` in an empty folder).
COPY data/iris.csv data/iris.csv
# COPY keeps the files' own timestamps, older than the placeholder build: touch them so cargo
# rebuilds limen itself (the dependencies stay cached).
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim AS runtime
# bookworm-slim already has what limen needs: /bin/bash (Liminal's python tasks run
# `/bin/bash -c "<cmd>"` in the image) and /bin/sleep (the pods' preStop). Nothing is installed,
# so this stage needs no network either: no compilers, no package caches, no secrets.
RUN groupadd --gid 10001 limen \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin limen \
    && mkdir -p /mnt/models /app/data \
    && chown 10001:10001 /mnt/models
COPY --from=build /src/target/release/limen /usr/local/bin/limen
# The CA certificates limen verifies S3's and STS's TLS with (`--data s3://…`, IRSA), from the
# build stage's ca-certificates package: copied, so this stage still installs nothing.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY data/iris.csv /app/data/iris.csv
WORKDIR /app
# MOUNT_PATH, not LIMEN_STORE: the store flag's precedence is --store, LIMEN_STORE, MOUNT_PATH,
# so a pipeline's own MOUNT_PATH (what Liminal sets) still wins over this default.
ENV MOUNT_PATH=/mnt/models \
    LIMEN_ADDR=0.0.0.0:8080 \
    LIMEN_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["limen"]
CMD ["serve"]
