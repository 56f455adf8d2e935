# lines: 2
FROM debian:12
LABEL version=1.2.3
