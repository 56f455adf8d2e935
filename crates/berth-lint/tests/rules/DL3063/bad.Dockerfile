# lines: 2
FROM debian:12 AS scratch
