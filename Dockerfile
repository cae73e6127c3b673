# folio's image: built in a Rust image, run from a slim Debian as a user
# without privileges. README's "Docker" section runs it.
#   docker build -t folio .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 folio --upstream http://api:8081
# The build context is only what this file COPYs (see .dockerignore), and
# scripts/check-docker-context.sh, run by scripts/test.sh, compiles exactly
# that, so the two cannot drift apart unnoticed.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Cargo reads the whole manifest, and it names these bench targets.
COPY benches ./benches
COPY src ./src
# Embedded in the binary and served as /_folio/openapi.json.
COPY docs/admin-api.yaml ./docs/admin-api.yaml
RUN cargo build --release --locked --bin folio

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin folio
COPY --from=build /src/target/release/folio /usr/local/bin/folio
# The example policies (the bookstore's); mount your own over /policies.
COPY policies /policies
# A number, so orchestrators can tell it is not root without reading /etc/passwd.
USER 10001
# A container is reached through its own interfaces, not its loopback.
ENV FOLIO_LISTEN=0.0.0.0:8080
ENV FOLIO_ADMIN_LISTEN=0.0.0.0:9090
ENV FOLIO_POLICIES=/policies
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/folio"]
