# hadolint global ignore=DL3059
FROM debian:12
RUN a
RUN b
