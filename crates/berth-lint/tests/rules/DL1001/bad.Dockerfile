# lines: 3
FROM debian:12
# hadolint ignore=DL3059
RUN a
RUN b
