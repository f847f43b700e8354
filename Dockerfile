# imgedge: multi-stage build, slim non-root runtime. Same build steps as README.md.
FROM rust:1-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake nasm pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin imgedge
COPY --from=build /src/target/release/imgedge /usr/local/bin/imgedge
COPY conf/docker.yaml /etc/imgedge/imgedge.yaml
COPY samples /usr/share/imgedge/samples
WORKDIR /usr/share/imgedge
USER 10001:10001
EXPOSE 8080 9180
ENTRYPOINT ["/usr/local/bin/imgedge"]
CMD ["-c", "/etc/imgedge/imgedge.yaml"]
