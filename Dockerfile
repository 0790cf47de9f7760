# ionroller and trail in one small image: build with the Rust toolchain, run as a non-root
# user on Debian slim. The compose file runs the roller (`ionroller up`) and trail
# (`trail serve`) as separate services from it. Validated statically by the test suite
# (hadolint, and tests/tests/topology.rs); no container engine runs where the tests do.
#
#   docker build -t ionroller .

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ionroller --bin trail

FROM debian:bookworm-slim
# curl for the health checks; CA certificates for AWS, KurrentDB and PostgreSQL over TLS.
# Unpinned on purpose: the Debian security archive moves these forward.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/ionroller --create-home ionroller \
    && install -d -o ionroller -g ionroller /var/lib/trail
COPY --from=build /src/target/release/ionroller /src/target/release/trail /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/ionroller
# The roller's API and console; trail's API and dashboard.
EXPOSE 7878 7879
ENTRYPOINT ["ionroller"]
CMD ["--help"]
