# lines: 3
FROM debian:12
RUN curl -fsSL https://example.com/x | tar -xz
