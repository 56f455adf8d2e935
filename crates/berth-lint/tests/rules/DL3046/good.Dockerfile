FROM debian:12
RUN useradd -l -u 123456 app && useradd -u 1000 other
