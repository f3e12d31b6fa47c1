# soakd: multi-stage build, non-root runtime, health-checked.
#   docker build -t soakd .
#   docker run -p 9400:9400 -v $PWD/fixtures:/etc/soakd:ro soakd run --config /etc/soakd/http-api.yaml --listen 0.0.0.0:9400
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY migrations migrations
COPY fixtures fixtures
COPY src src
COPY web web
RUN cargo build --release --locked --bin soakd

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/soakd --create-home soakd
COPY --from=build /src/target/release/soakd /usr/local/bin/soakd
COPY fixtures /etc/soakd
USER soakd
EXPOSE 9400
# Without a control_token, mutating endpoints refuse requests on a non-loopback listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9400/healthz || exit 1
ENTRYPOINT ["soakd"]
CMD ["run", "--config", "/etc/soakd/demo.yaml", "--listen", "0.0.0.0:9400"]
