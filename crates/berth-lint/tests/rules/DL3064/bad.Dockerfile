# lines: 3
FROM debian:12
ENV DB_PASSWORD=hunter2
