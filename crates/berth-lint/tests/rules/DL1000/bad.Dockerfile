# lines: 3
FROM debian:12
FORM debian:12
