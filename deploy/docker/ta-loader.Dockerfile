# ta-loader image: docker build -f deploy/docker/ta-loader.Dockerfile .   (from the repository root)
# Multi-stage: the build stage compiles only this binary; the runtime stage is Debian slim
# with the binary, CA certificates, curl for health checks and a non-root user.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ta-loader \
 && install -m 0755 target/release/ta-loader /usr/local/bin/ta-loader

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home tiny
COPY --from=build /usr/local/bin/ta-loader /usr/local/bin/ta-loader
COPY deploy/config /etc/tiny-analytics
USER tiny
EXPOSE 9465
HEALTHCHECK --interval=10s --timeout=3s CMD curl -sf http://127.0.0.1:9465/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/ta-loader"]
