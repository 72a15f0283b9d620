# syntax=docker/dockerfile:1
#
# actionwarden in a container: a release build in the Rust image, then the stripped binary
# alone in a slim Debian image, run as an unprivileged user.
#
#   docker build --build-arg ACTIONWARDEN_COMMIT="$(git rev-parse --short HEAD)" -t actionwarden .
#   docker run -d --name actionwarden \
#     -v /srv/actionwarden/etc:/etc/actionwarden:ro \
#     -v actionwarden-state:/var/lib/actionwarden \
#     --env-file /srv/actionwarden/secrets.env \
#     -p 9464:9464 actionwarden
#
# The config is /etc/actionwarden/config.toml (actions files beside it); the journal and
# the audit file go to /var/lib/actionwarden, the working directory, so keep that volume.
# For the metrics port to be reachable, set [admin] listen = "0.0.0.0:9464". Without a
# mounted config the image runs the shipped demo against the embedded simulator.

ARG RUST_VERSION=1.91
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
# .git is not sent to the build (.dockerignore): the commit shown by --version and
# actionwarden_build_info comes from this argument.
ARG ACTIONWARDEN_COMMIT=unknown
ENV ACTIONWARDEN_COMMIT=${ACTIONWARDEN_COMMIT}
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/actionwarden /usr/local/bin/actionwarden \
    && strip /usr/local/bin/actionwarden \
    && /usr/local/bin/actionwarden --version

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 actionwarden \
    && useradd --system --uid 10001 --gid actionwarden --no-create-home \
       --home-dir /var/lib/actionwarden --shell /usr/sbin/nologin actionwarden \
    && install -d -m 0755 /etc/actionwarden \
    && install -d -m 0700 -o actionwarden -g actionwarden /var/lib/actionwarden
COPY --from=builder /usr/local/bin/actionwarden /usr/local/bin/actionwarden
COPY config.toml /etc/actionwarden/config.toml
COPY examples /etc/actionwarden/examples
WORKDIR /var/lib/actionwarden
VOLUME ["/etc/actionwarden", "/var/lib/actionwarden"]
USER 10001:10001
EXPOSE 9464
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/actionwarden"]
CMD ["run", "-c", "/etc/actionwarden/config.toml"]
