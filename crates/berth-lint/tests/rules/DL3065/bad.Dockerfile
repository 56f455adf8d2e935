# lines: 2
FROM --platform=$TARGETPLATFORM debian:12
