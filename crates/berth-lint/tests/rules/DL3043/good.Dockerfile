FROM debian:12
ONBUILD RUN echo hi
