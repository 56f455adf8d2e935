# lines: 3
FROM debian:12
LABEL Invalid_Key=x
