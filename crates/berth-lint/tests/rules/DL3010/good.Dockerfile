FROM debian:12
COPY app.tar.gz /opt/
ADD lib.tar.gz /opt/
