FROM debian:12
RUN echo 'ssh vim top are just words here'
