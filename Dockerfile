# Builds the single `mediaplane` binary and ships it on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
# nasm: libjpeg-turbo's SIMD JPEG decoding in the images crate (mozjpeg-sys builds without it, slower).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nasm && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin mediaplane

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mediaplane /usr/local/bin/mediaplane
ENV MEDIAPLANE_HTTP_ADDR=0.0.0.0:8080 \
    MEDIAPLANE_DATA_DIR=/var/lib/mediaplane
VOLUME /var/lib/mediaplane
EXPOSE 8080 3478/udp 3478/tcp 5349/tcp
ENTRYPOINT ["/usr/local/bin/mediaplane"]
