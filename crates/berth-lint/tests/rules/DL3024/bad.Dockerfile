# lines: 3
FROM debian:12 AS build
FROM debian:12 AS build
