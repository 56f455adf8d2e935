# lines: 2
LABEL a=b
FROM debian:12
