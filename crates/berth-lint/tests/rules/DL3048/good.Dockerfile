FROM debian:12
LABEL org.opencontainers.image.title=x version=1
