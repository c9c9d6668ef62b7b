# syntax=docker/dockerfile:1
# The controller image: `docker build -t ghcr.io/switchyard-dev/switchyard:v0.1.0 .`
# The builder runs scripts/build-image-binary, which CI also runs to test the binary
# (non-root, only its workdir writable); the runtime is distroless `cc` as user 65532.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
# clang and libclang: pg_query's bindgen and its C parser.
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependencies first, against stub sources: this layer is rebuilt only when a manifest or
# Cargo.lock changes, not when the code does.
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY controller/Cargo.toml controller/
COPY e2e/Cargo.toml e2e/
COPY scripts/build-image-binary scripts/
RUN mkdir -p controller/src e2e/src/bin \
 && echo 'fn main() {}' > controller/src/main.rs \
 && touch controller/src/lib.rs e2e/src/lib.rs \
 && echo 'fn main() {}' > e2e/src/bin/kube-harness.rs \
 && scripts/build-image-binary \
 && rm -rf controller/src e2e/src

COPY controller controller
COPY e2e e2e
# NB: touch, so cargo rebuilds the crate over the stub's newer fingerprint.
RUN touch controller/src/main.rs controller/src/lib.rs \
 && cp "$(scripts/build-image-binary)" /switchyard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /switchyard /usr/local/bin/switchyard
USER 65532:65532
# Writes only to its workdir (the chart mounts volumes at /work and /tmp; the root file
# system can stay read-only).
ENV SWITCHYARD_WORKDIR=/work
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["controller"]
