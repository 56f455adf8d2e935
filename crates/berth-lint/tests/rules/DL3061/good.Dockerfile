ARG V=12
FROM debian:${V}
