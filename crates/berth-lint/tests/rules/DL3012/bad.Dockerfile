# lines: 4
FROM debian:12
HEALTHCHECK CMD ["true"]
HEALTHCHECK CMD ["false"]
