# lines: 3
FROM debian:12
COPY a b /dest
