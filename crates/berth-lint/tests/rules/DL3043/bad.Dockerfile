# lines: 3
FROM debian:12
ONBUILD FROM debian:12
