FROM debian:12
WORKDIR /tmp
RUN echo cd && make
