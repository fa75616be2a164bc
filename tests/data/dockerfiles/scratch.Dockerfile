FROM rust:1.79-alpine AS build
RUN cargo build --release
FROM scratch
COPY --from=build /target/release/app /app
ENTRYPOINT ["/app"]
