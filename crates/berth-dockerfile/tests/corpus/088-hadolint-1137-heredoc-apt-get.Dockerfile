FROM debian:bookworm-slim
RUN <<EOF
set -eux
apt-get update
apt-get install -y --no-install-recommends \
    curl=7.88.1-10+deb12u5 \
    git
rm -rf /var/lib/apt/lists/*
EOF
RUN apt-get install -y vim
