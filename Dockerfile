# A small runtime image of the release binary.
#   docker build -t folio .
#   docker run --rm -p 8080:8080 -v "$PWD/policies:/policies:ro" folio \
#     --listen 0.0.0.0:8080 --upstream http://api:8081 --policies /policies
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY examples ./examples
RUN cargo build --release --locked --bin folio

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 folio
COPY --from=build /src/target/release/folio /usr/local/bin/folio
COPY policies /policies
USER folio
EXPOSE 8080
ENV FOLIO_POLICIES=/policies
ENTRYPOINT ["/usr/local/bin/folio"]
