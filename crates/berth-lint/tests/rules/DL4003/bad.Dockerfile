# lines: 4
FROM debian:12
CMD ["a"]
CMD ["b"]
