FROM --platform=$BUILDPLATFORM debian:12
