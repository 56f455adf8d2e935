FROM debian:12
RUN apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u8 && apt-get install --yes --no-install-recommends wget=1.21.3-1+b2
