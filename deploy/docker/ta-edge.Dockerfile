# ta-edge image: docker build -f deploy/docker/ta-edge.Dockerfile .   (from the repository root)
# Multi-stage: the build stage compiles only this binary; the runtime stage is Debian slim with
# the binary, CA certificates, curl for health checks and a non-root user. No configuration is
# copied in: sites, access lists, certificates and passwords are mounted by the deployment.
# RUST_IMAGE and RUNTIME_IMAGE name the two base images (a registry mirror, or the local
# stand-ins deploy/local/images builds where no registry is reachable).
ARG RUST_IMAGE=rust:1.89-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches are shared by the three service images' builds.
RUN --mount=type=cache,id=ta-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=ta-cargo-target,target=/src/target \
    cargo build --release --locked --bin ta-edge \
 && install -m 0755 target/release/ta-edge /usr/local/bin/ta-edge

FROM ${RUNTIME_IMAGE}
# A build's own label (CI build id, or anything that makes a rebuild a new image).
ARG TA_BUILD_STAMP=
LABEL org.tiny-analytics.build-stamp="${TA_BUILD_STAMP}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home tiny \
 && install -d -o tiny -g tiny /var/lib/tiny-analytics/spool
COPY --from=build /usr/local/bin/ta-edge /usr/local/bin/ta-edge
# The data-centre network list, for TA_DATACENTER_RANGES (off unless set; see deploy/edge/.env.example).
COPY --from=build /src/edge/data/datacenter-ranges.txt.gz /usr/share/tiny-analytics/datacenter-ranges.txt.gz
USER tiny
EXPOSE 8080 9464
HEALTHCHECK --interval=10s --timeout=3s CMD curl -sf http://127.0.0.1:9464/readyz || exit 1
ENTRYPOINT ["/usr/local/bin/ta-edge"]
