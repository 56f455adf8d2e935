FROM debian:12 AS base
WORKDIR /src
FROM base
COPY app.py app/
COPY app.py /abs/
