# The deploy image: the ecomind-db binary alone, with its migrations and environment files built
# in, running as a non-root user. Build from the repository root:
#   docker build -t ecomind-db:$(git rev-parse --short HEAD) .
# Run:
#   docker run --rm -v /path/to/password:/run/secrets/ecomind_db_password:ro ecomind-db:TAG migrate --env prod

# Build stage: the same stable Rust the workspace needs (rust-version 1.94 or newer).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependencies of Cargo.lock. rustls (ring) needs no OpenSSL and no C
# toolchain beyond the image's own.
RUN cargo build --release --locked --package ecomind-db --bin ecomind-db \
 && install -D -m 0755 target/release/ecomind-db /out/ecomind-db

# Run stage: glibc and CA certificates, no shell, no package manager; uid 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ecomind-db /usr/local/bin/ecomind-db
USER 65532:65532
ENTRYPOINT ["ecomind-db"]
CMD ["--help"]
