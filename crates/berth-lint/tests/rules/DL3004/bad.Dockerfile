# lines: 3
FROM debian:12
RUN sudo make install
