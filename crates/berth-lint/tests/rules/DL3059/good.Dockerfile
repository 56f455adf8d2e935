FROM debian:12
RUN echo a
WORKDIR /x
RUN echo b
