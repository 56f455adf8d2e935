# lines: 3
FROM debian:12
RUN wget https://example.com/x.tgz
