FROM debian:12
RUN apt-cache policy curl
