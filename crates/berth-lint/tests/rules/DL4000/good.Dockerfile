FROM debian:12
LABEL org.opencontainers.image.authors=someone@example.com
