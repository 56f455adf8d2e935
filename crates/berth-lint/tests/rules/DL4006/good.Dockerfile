FROM debian:12
RUN set -o pipefail && curl -fsSL https://example.com/x | tar -xz
