FROM debian:12
HEALTHCHECK CMD ["/app", "health"]
