# lines: 4
FROM debian:12
USER app
USER root
