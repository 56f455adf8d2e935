FROM debian:12
RUN wget -q https://example.com/a && curl -fsSL https://example.com/b -o b
