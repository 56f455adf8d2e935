# lines: 2
FROM debian:12
CMD ["app"]
