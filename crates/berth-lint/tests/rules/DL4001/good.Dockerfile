FROM debian:12
RUN curl -fsSLO https://example.com/a
