FROM --platform=$BUILDPLATFORM debian:12 AS build
FROM debian:12
